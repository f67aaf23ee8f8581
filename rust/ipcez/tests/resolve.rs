//! Every row of the transport table and every resolution error.

use ipcez::{Os, SocketError, Transport, decide, pipe_ack_names, pipe_path, unix_ack_names};

fn local_linux(endpoint: &str) -> Result<ipcez::Resolution, SocketError> {
    decide(
        endpoint,
        Some(("target", "local")),
        Some(("os", "linux")),
        Os::Linux,
    )
}

#[test]
fn websocket_urls_need_no_environment_and_ignore_case() {
    for url in ["ws://h:1/p", "wss://h/p", "WS://h:1/", "Wss://h"] {
        let r = decide(url, None, None, Os::Linux).unwrap();
        assert_eq!(r.transport, Transport::WebSocket, "{url}");
        assert_eq!(r.address, url);
        // Even with invalid variables around: a URL never reads them.
        let r = decide(url, Some(("target", "bogus")), None, Os::Windows).unwrap();
        assert_eq!(r.transport, Transport::WebSocket);
    }
}

#[test]
fn bad_websocket_url_is_invalid_input() {
    let e = decide("ws://", None, None, Os::Linux).unwrap_err();
    assert!(
        matches!(&e, SocketError::Io(io) if io.kind() == std::io::ErrorKind::InvalidInput),
        "{e:?}"
    );
}

fn assert_not_a_ws_url(endpoint: &str, e: &SocketError) {
    let SocketError::Io(io) = e else {
        panic!("{endpoint}: {e:?}")
    };
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput, "{endpoint}");
    let text = e.to_string();
    assert!(
        text.contains(endpoint) && text.contains("is not a ws:// or wss:// URL"),
        "{text}"
    );
    assert!(text.contains("a socket path, a pipe name"), "{text}");
}

#[test]
fn another_url_scheme_is_an_error_never_a_path() {
    for endpoint in [
        "http://h/p",
        "https://h:443/p",
        "tcp://127.0.0.1:5555",
        "foo://bar",
        "HTTP://H",
        "svn+ssh://h/x",
        "a.b-c://x",
    ] {
        // With a complete local environment, and with none at all.
        for (target, os) in [
            (Some(("target", "local")), Some(("os", "linux"))),
            (None, None),
        ] {
            let e = decide(endpoint, target, os, Os::Linux).unwrap_err();
            assert_not_a_ws_url(endpoint, &e);
        }
        // `ack_names` resolves the same way (and reads no environment for a URL).
        let e = ipcez::ack_names(endpoint).unwrap_err();
        assert_not_a_ws_url(endpoint, &e);
    }
}

#[test]
fn paths_that_merely_contain_a_colon_stay_paths() {
    for path in [
        "/tmp/a://b",
        "./x://y",
        "1abc://z",
        "_x://y",
        "C:\\sock",
        "dir/a:b",
    ] {
        let r = local_linux(path).unwrap();
        assert_eq!(r.transport, Transport::Unix, "{path}");
        assert_eq!(r.address, path);
    }
}

#[test]
fn a_websocket_port_outside_0_to_65535_is_invalid_input() {
    for url in [
        "ws://h:99999/p",
        "ws://h:abc/p",
        "wss://h:-1/p",
        "ws://h:65536",
    ] {
        let e = decide(url, None, None, Os::Linux).unwrap_err();
        assert!(
            matches!(&e, SocketError::Io(io) if io.kind() == std::io::ErrorKind::InvalidInput),
            "{url}: {e:?}"
        );
    }
    assert!(decide("ws://h:65535/p", None, None, Os::Linux).is_ok());
}

#[test]
fn local_linux_is_a_unix_socket_with_the_path_as_given() {
    let r = local_linux("/tmp/ipcez.sock").unwrap();
    assert_eq!(r.transport, Transport::Unix);
    assert_eq!(r.address, "/tmp/ipcez.sock");
    let r = local_linux("rel/ipcez.sock").unwrap();
    assert_eq!(r.address, "rel/ipcez.sock");
}

#[test]
fn values_are_trimmed_and_case_insensitive() {
    let r = decide(
        "x.sock",
        Some(("target", " LOCAL\n")),
        Some(("os", "Linux ")),
        Os::Linux,
    )
    .unwrap();
    assert_eq!(r.transport, Transport::Unix);
}

#[test]
fn local_windows_is_a_named_pipe_with_the_prefix_added_once() {
    let w = |ep| {
        decide(
            ep,
            Some(("target", "local")),
            Some(("os", "windows")),
            Os::Windows,
        )
    };
    assert_eq!(w("mypipe").unwrap().transport, Transport::NamedPipe);
    assert_eq!(w("mypipe").unwrap().address, r"\\.\pipe\mypipe");
    assert_eq!(w(r"\\.\pipe\mypipe").unwrap().address, r"\\.\pipe\mypipe");
    assert_eq!(pipe_path(r"\\.\PIPE\x"), r"\\.\PIPE\x");
}

#[test]
fn other_pairs_are_unsupported_combinations() {
    let e = decide(
        "p",
        Some(("target", "local")),
        Some(("os", "windows")),
        Os::Linux,
    )
    .unwrap_err();
    match e {
        SocketError::UnsupportedCombination(t, o) => {
            assert_eq!((t.as_str(), o.as_str()), ("local", "windows"))
        }
        other => panic!("{other:?}"),
    }
    let e = decide(
        "p",
        Some(("target", "local")),
        Some(("os", "LINUX")),
        Os::Windows,
    )
    .unwrap_err();
    assert!(
        matches!(e, SocketError::UnsupportedCombination(ref t, ref o) if t == "local" && o == "linux")
    );
    assert!(e.to_string().contains("ws://"), "{e}");
}

fn detection(e: SocketError) -> ipcez::DetectionError {
    match e {
        SocketError::Detection(d) => d,
        other => panic!("expected Detection, got {other:?}"),
    }
}

#[test]
fn missing_target_names_the_variable_and_the_allowed_values() {
    let d = detection(decide("p", None, Some(("os", "linux")), Os::Linux).unwrap_err());
    assert_eq!(d.variable, "target");
    assert_eq!(d.value, None);
    assert!(d.message.contains("`target` is not set"), "{}", d.message);
    assert!(d.message.contains("local, remote"), "{}", d.message);
}

#[test]
fn missing_os_names_the_variable_and_the_allowed_values() {
    let d = detection(decide("p", Some(("target", "local")), None, Os::Linux).unwrap_err());
    assert_eq!(d.variable, "os");
    assert!(d.message.contains("linux, windows"), "{}", d.message);
}

#[test]
fn invalid_values_are_quoted_with_the_variable_read() {
    let d = detection(
        decide(
            "p",
            Some(("IPCEZ_TARGET", "cloud")),
            Some(("os", "linux")),
            Os::Linux,
        )
        .unwrap_err(),
    );
    assert_eq!(d.variable, "IPCEZ_TARGET");
    assert_eq!(d.value.as_deref(), Some("cloud"));
    assert!(
        d.message.contains("\"cloud\"") && d.message.contains("local, remote"),
        "{}",
        d.message
    );
    let d = detection(
        decide(
            "p",
            Some(("target", "local")),
            Some(("os", "macos")),
            Os::Linux,
        )
        .unwrap_err(),
    );
    assert_eq!(d.variable, "os");
    assert!(d.message.contains("\"macos\""), "{}", d.message);
}

#[test]
fn remote_with_a_path_says_a_url_is_needed() {
    let d = detection(
        decide(
            "/tmp/x.sock",
            Some(("target", "remote")),
            Some(("os", "linux")),
            Os::Linux,
        )
        .unwrap_err(),
    );
    assert!(
        d.message.contains("ws://") && d.message.contains("wss://"),
        "{}",
        d.message
    );
}

#[test]
fn empty_or_nul_endpoint_is_invalid_input_not_a_panic() {
    for ep in ["", "a\0b", "ws://\0"] {
        let e = local_linux(ep).unwrap_err();
        assert!(
            matches!(&e, SocketError::Io(io) if io.kind() == std::io::ErrorKind::InvalidInput),
            "{ep:?}: {e:?}"
        );
    }
}

// Unix socket paths: on Windows `/tmp/…` is relative to the current drive.
#[cfg(unix)]
#[test]
fn unix_ack_names_follow_the_documented_rule() {
    // Expected hash computed independently: sha256("/tmp/ipcez test.sock")[:16] by Python's hashlib.
    let (ready, acked) = unix_ack_names(std::path::Path::new("/tmp/./ipcez test.sock")).unwrap();
    assert_eq!(ready, "/ipcez.ipcez_test_sock.3a604a7d84fe954f.data_ready");
    assert_eq!(acked, "/ipcez.ipcez_test_sock.3a604a7d84fe954f.data_acked");
    // The tag is cut to 32 bytes.
    let long = format!("/tmp/{}.sock", "x".repeat(40));
    let (ready, _) = unix_ack_names(std::path::Path::new(&long)).unwrap();
    assert_eq!(ready.split('.').nth(1).unwrap(), "x".repeat(32));
}

#[test]
fn relative_paths_are_made_absolute_against_the_current_directory() {
    let rel = unix_ack_names(std::path::Path::new("some.sock")).unwrap();
    let abs = unix_ack_names(&std::env::current_dir().unwrap().join("some.sock")).unwrap();
    assert_eq!(rel, abs);
}

#[test]
fn pipe_ack_names_use_global_events() {
    assert_eq!(
        pipe_ack_names("mypipe"),
        (
            r"Global\mypipe.data_ready".to_string(),
            r"Global\mypipe.data_acked".to_string()
        )
    );
    assert_eq!(
        pipe_ack_names(r"\\.\pipe\mypipe").0,
        r"Global\mypipe.data_ready"
    );
}
