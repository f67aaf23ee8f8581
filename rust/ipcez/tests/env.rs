//! The one test binary that touches the process environment; a single test, so nothing
//! races the variables.

use ipcez::{Os, SocketError, Transport, resolve};

/// The `os` value this build supports, its transport, and the value it does not support.
const HERE: (&str, Transport, &str) = match Os::BUILD {
    Os::Linux => ("linux", Transport::Unix, "windows"),
    Os::Windows => ("windows", Transport::NamedPipe, "linux"),
};

#[test]
fn environment_is_read_with_ipcez_prefix_taking_precedence() {
    // SAFETY (edition 2024 set_var): this binary runs this one test only, on one thread.
    let set = |k: &str, v: Option<&str>| unsafe {
        match v {
            Some(v) => std::env::set_var(k, v),
            None => std::env::remove_var(k),
        }
    };
    for k in ["target", "os", "IPCEZ_TARGET", "IPCEZ_OS"] {
        set(k, None);
    }
    let e = resolve("/tmp/x.sock").unwrap_err();
    assert!(
        matches!(&e, SocketError::Detection(d) if d.variable == "target"),
        "{e:?}"
    );

    let (os, transport, other_os) = HERE;
    set("target", Some("local"));
    set("os", Some(os));
    assert_eq!(resolve("/tmp/x.sock").unwrap().transport, transport);

    set("IPCEZ_OS", Some(other_os));
    let e = resolve("/tmp/x.sock").unwrap_err();
    assert!(
        matches!(e, SocketError::UnsupportedCombination(_, ref o) if o == other_os),
        "{e:?}"
    );

    set("IPCEZ_OS", Some(os));
    set("os", Some("bogus"));
    assert_eq!(resolve("/tmp/x.sock").unwrap().transport, transport);

    set("IPCEZ_TARGET", Some("nope"));
    let e = resolve("/tmp/x.sock").unwrap_err();
    assert!(
        matches!(&e, SocketError::Detection(d) if d.variable == "IPCEZ_TARGET"),
        "{e:?}"
    );

    // Which variable decided, as `ipcez which` shows it.
    let pair = |n: &str, v: &str| Some((n.to_string(), v.to_string()));
    assert_eq!(ipcez::env_source("target"), pair("IPCEZ_TARGET", "nope"));
    assert_eq!(ipcez::env_source("os"), pair("IPCEZ_OS", os));
    set("IPCEZ_OS", None);
    assert_eq!(ipcez::env_source("os"), pair("os", "bogus"));
    set("os", None);
    assert_eq!(ipcez::env_source("os"), None);
    assert_eq!(ipcez::env_source("colour"), None);

    // A URL reads nothing, whatever the environment says.
    assert_eq!(
        resolve("ws://127.0.0.1:1/").unwrap().transport,
        Transport::WebSocket
    );
}
