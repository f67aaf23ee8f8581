//! Choosing the transport: a pure decision over (endpoint, target, os, build OS), and the
//! thin layer that reads the environment for it.

use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use crate::error::{DetectionError, SocketError, invalid_input};

/// The transport an endpoint resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A Unix domain socket (local, Linux/Unix builds).
    Unix,
    /// A Windows named pipe (local, Windows builds).
    NamedPipe,
    /// A WebSocket, `ws://` or `wss://` (remote).
    WebSocket,
}

impl Transport {
    /// The lowercase name bindings use: `unix`, `named_pipe` or `websocket`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Unix => "unix",
            Transport::NamedPipe => "named_pipe",
            Transport::WebSocket => "websocket",
        }
    }
}

/// The operating-system families `os` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    /// `os=linux`: Unix domain sockets.
    Linux,
    /// `os=windows`: named pipes.
    Windows,
}

impl Os {
    /// The OS family this library was built for.
    pub const BUILD: Os = if cfg!(windows) {
        Os::Windows
    } else {
        Os::Linux
    };
}

/// What [`resolve`] decided: the transport and the address it will use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The transport.
    pub transport: Transport,
    /// The normalized address: the socket path, the URL, or `\\.\pipe\name`.
    pub address: String,
}

const PIPE_PREFIX: &str = r"\\.\pipe\";
const TARGET_VALUES: &str = "local, remote";
const OS_VALUES: &str = "linux, windows";

/// Resolves `endpoint` the way [`crate::socket_init`] does, reading `target`/`os`
/// (`IPCEZ_TARGET`/`IPCEZ_OS` win when set) from the environment for local endpoints.
///
/// On a detection failure the guidance is also printed to stderr, once per process.
pub fn resolve(endpoint: &str) -> Result<Resolution, SocketError> {
    let needs_env = check_endpoint(endpoint).is_ok() && url_scheme(endpoint).is_none();
    let (target, os) = if needs_env {
        (env_source("target"), env_source("os"))
    } else {
        (None, None)
    };
    let result = decide(
        endpoint,
        target.as_ref().map(|(n, v)| (n.as_str(), v.as_str())),
        os.as_ref().map(|(n, v)| (n.as_str(), v.as_str())),
        Os::BUILD,
    );
    if let Err(SocketError::Detection(d)) = &result {
        print_guidance_once(d);
    }
    result
}

/// The settings [`resolve`] reads for a local endpoint, each as (preferred variable, bare
/// name): the `IPCEZ_` one wins when it is set.
const SETTINGS: [(&str, &str); 2] = [("IPCEZ_TARGET", "target"), ("IPCEZ_OS", "os")];

/// Which environment variable [`resolve`] reads for `setting` (`"target"` or `"os"`) and
/// its value: `IPCEZ_TARGET`/`IPCEZ_OS` when set, else the bare name. `None` when neither is
/// set, or for another setting.
pub fn env_source(setting: &str) -> Option<(String, String)> {
    let (preferred, bare) = SETTINGS.iter().find(|(_, bare)| *bare == setting)?;
    [preferred, bare]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v)))
}

/// Whether [`resolve`] prints the detection guidance to stderr (see
/// [`detection_guidance_to_stderr`]).
static GUIDANCE_TO_STDERR: AtomicBool = AtomicBool::new(true);

/// Turns the stderr copy of the detection guidance on (the default) or off. A binding that
/// shows [`DetectionError::guidance`] through its host (Python's `sys.stderr`, say) turns it
/// off, so that nothing is written to file descriptor 2 behind the host's back.
pub fn detection_guidance_to_stderr(enabled: bool) {
    GUIDANCE_TO_STDERR.store(enabled, Ordering::Relaxed);
}

fn print_guidance_once(d: &DetectionError) {
    static ONCE: Once = Once::new();
    if !GUIDANCE_TO_STDERR.load(Ordering::Relaxed) {
        return;
    }
    ONCE.call_once(|| eprintln!("{}", d.guidance()));
}

/// The scheme of an endpoint written as a URL (`scheme://…`, the scheme being a letter
/// then letters, digits, `+`, `.` or `-`), if it is one.
fn url_scheme(endpoint: &str) -> Option<&str> {
    let (scheme, _) = endpoint.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'));
    valid.then_some(scheme)
}

fn check_endpoint(endpoint: &str) -> Result<(), SocketError> {
    if endpoint.is_empty() {
        return Err(invalid_input(
            "the endpoint is empty; pass a socket path, a pipe name or a ws:// / wss:// URL",
        ));
    }
    if endpoint.contains('\0') {
        return Err(invalid_input("the endpoint contains a NUL byte; remove it"));
    }
    Ok(())
}

/// The pure decision behind [`resolve`]: `target` and `os` are `(variable name, value)`
/// pairs as read from the environment (or `None` when unset).
pub fn decide(
    endpoint: &str,
    target: Option<(&str, &str)>,
    os: Option<(&str, &str)>,
    build: Os,
) -> Result<Resolution, SocketError> {
    check_endpoint(endpoint)?;
    if let Some(scheme) = url_scheme(endpoint) {
        // Only a WebSocket URL selects a transport; any other URL is a mistake, never a path.
        if !(scheme.eq_ignore_ascii_case("ws") || scheme.eq_ignore_ascii_case("wss")) {
            return Err(invalid_input(format!(
                "{endpoint:?} is not a ws:// or wss:// URL; ipcez takes a socket path, a pipe \
                 name, or a ws:// / wss:// URL"
            )));
        }
        crate::ws::validate_url(endpoint)?;
        return Ok(Resolution {
            transport: Transport::WebSocket,
            address: endpoint.to_string(),
        });
    }
    let target_value = parse_var(target, "target", TARGET_VALUES)?;
    if target_value == "remote" {
        return Err(SocketError::Detection(DetectionError {
            variable: target.map_or("target", |(n, _)| n).to_string(),
            value: Some(target_value),
            message: format!(
                "target=remote needs a ws:// or wss:// URL as the endpoint, got {endpoint:?}; \
                 a remote endpoint must be a WebSocket URL"
            ),
        }));
    }
    let os_value = parse_var(os, "os", OS_VALUES)?;
    match (os_value.as_str(), build) {
        ("linux", Os::Linux) => Ok(Resolution {
            transport: Transport::Unix,
            address: endpoint.to_string(),
        }),
        ("windows", Os::Windows) => Ok(Resolution {
            transport: Transport::NamedPipe,
            address: pipe_path(endpoint),
        }),
        _ => Err(SocketError::UnsupportedCombination(target_value, os_value)),
    }
}

/// Validates one variable; returns its trimmed, lowercased value.
fn parse_var(var: Option<(&str, &str)>, name: &str, allowed: &str) -> Result<String, SocketError> {
    let Some((read_as, raw)) = var else {
        return Err(SocketError::Detection(DetectionError {
            variable: name.to_string(),
            value: None,
            message: format!(
                "environment variable `{name}` is not set; set it to one of: {allowed} \
                 (or set IPCEZ_{upper})",
                upper = name.to_ascii_uppercase()
            ),
        }));
    };
    let value = raw.trim().to_ascii_lowercase();
    if allowed.split(", ").any(|a| a == value) {
        return Ok(value);
    }
    Err(SocketError::Detection(DetectionError {
        variable: read_as.to_string(),
        value: Some(raw.to_string()),
        message: format!(
            "environment variable `{read_as}` has invalid value {raw:?}; expected one of: {allowed}"
        ),
    }))
}

/// `name` → `\\.\pipe\name`, unless the prefix is already there.
pub fn pipe_path(name: &str) -> String {
    let has_prefix = name
        .get(..PIPE_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PIPE_PREFIX));
    if has_prefix {
        name.to_string()
    } else {
        format!("{PIPE_PREFIX}{name}")
    }
}

/// The `(data_ready, data_acked)` names for an endpoint; see `docs/protocol.md`.
///
/// No environment is read: a `\\.\pipe\` name (or any endpoint on Windows) gets the
/// named-pipe events, any other path the Unix semaphores of its canonical path.
/// WebSocket endpoints have none (WebSocket sends are not acked) and get an `Io` error.
pub fn ack_names(endpoint: &str) -> Result<(String, String), SocketError> {
    check_endpoint(endpoint)?;
    if url_scheme(endpoint).is_some() {
        // A URL that is not ws:// or wss:// is refused as `decide` refuses it.
        decide(endpoint, None, None, Os::BUILD)?;
        return Err(invalid_input(
            "WebSocket endpoints have no ack names: WebSocket sends are not acknowledged",
        ));
    }
    let is_pipe = endpoint
        .get(..PIPE_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PIPE_PREFIX));
    if is_pipe || cfg!(windows) {
        return Ok(pipe_ack_names(endpoint));
    }
    unix_ack_names(Path::new(endpoint))
}

/// Semaphore names for a Unix socket path: `/ipcez.<tag>.<hash>.data_ready` and
/// `/ipcez.<tag>.<hash>.data_acked`, where `<hash>` is the first 16 hex digits of SHA-256 of
/// the canonical path (symlinks and `..` resolved by realpath) and `<tag>` its file name
/// with every byte outside `[A-Za-z0-9_-]` replaced by `_`, cut to 32 bytes. Every spelling of one socket
/// (symlinks, `..`, a relative path) gives the same names.
pub fn unix_ack_names(path: &Path) -> Result<(String, String), SocketError> {
    let canonical = canonical_path(path)?;
    let bytes = path_bytes(&canonical)?;
    let file_name = canonical.file_name().map(path_bytes).transpose()?;
    let tag: String = file_name
        .unwrap_or_default()
        .iter()
        .take(32)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    let digest = Sha256::digest(&bytes);
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let base = format!("/ipcez.{tag}.{hash}");
    Ok((format!("{base}.data_ready"), format!("{base}.data_acked")))
}

/// The canonical form of a socket path: `realpath(3)` of the file when it exists; otherwise
/// the `realpath` of its deepest existing ancestor joined with the rest (`..` applied), which
/// for a listener about to bind is the directory's real path joined with the file name —
/// the same path the file has once it exists.
pub(crate) fn canonical_path(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let absolute = std::path::absolute(path)?;
    let parts: Vec<_> = absolute.components().collect();
    for split in (1..=parts.len()).rev() {
        let head: std::path::PathBuf = parts[..split].iter().collect();
        let Ok(mut real) = std::fs::canonicalize(&head) else {
            continue;
        };
        for part in &parts[split..] {
            match part {
                std::path::Component::ParentDir => {
                    real.pop();
                }
                std::path::Component::CurDir => {}
                other => real.push(other),
            }
        }
        return Ok(real);
    }
    Ok(absolute)
}

#[cfg(unix)]
fn path_bytes(p: impl AsRef<std::ffi::OsStr>) -> Result<Vec<u8>, SocketError> {
    use std::os::unix::ffi::OsStrExt;
    Ok(p.as_ref().as_bytes().to_vec())
}

#[cfg(not(unix))]
fn path_bytes(p: impl AsRef<std::ffi::OsStr>) -> Result<Vec<u8>, SocketError> {
    let p = p.as_ref();
    p.to_str().map(|s| s.as_bytes().to_vec()).ok_or_else(|| {
        invalid_input(format!(
            "the socket path {p:?} is not valid UTF-8; use a UTF-8 path"
        ))
    })
}

/// Event names for a pipe path: `Global\<pipename>.data_ready` / `.data_acked`, where
/// `<pipename>` is the pipe path without its `\\.\pipe\` prefix.
pub fn pipe_ack_names(pipe_path_: &str) -> (String, String) {
    let full = pipe_path(pipe_path_);
    let name = &full[PIPE_PREFIX.len()..];
    (
        format!(r"Global\{name}.data_ready"),
        format!(r"Global\{name}.data_acked"),
    )
}
