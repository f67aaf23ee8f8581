//! Core errors as plain data for the JavaScript side, which turns them into `Error`
//! subclasses: the name, the Node-style `code` and the message all come from here.

use std::io;

use ipcez::{MessageTooLarge, PeerClosed, SocketError};
use napi_derive::napi;

/// One failure, as JavaScript sees it before `errors.js` gives it its class.
#[napi(object)]
#[derive(Clone, Debug)]
pub struct ErrorInfo {
    /// The class name: `ConnectionLost`, `MessageTooLarge`, `IoError`, `WsError`,
    /// `UnsupportedCombination`, `DetectionError` or `RecipientAckTimeout`.
    pub name: String,
    /// The Node-style code: an errno name (`ENOENT`, `ECONNREFUSED`, …) for I/O errors, else
    /// `ERR_IPCEZ_…`.
    pub code: String,
    /// The core's message, unchanged.
    pub message: String,
    /// The OS error number, when the failure came from the OS (`ENOENT` is 2 on Linux).
    pub errno: Option<i32>,
    /// The close code a WebSocket peer ended the connection with.
    pub close_code: Option<u32>,
    /// The close reason a WebSocket peer gave.
    pub close_reason: Option<String>,
    /// The environment variable at fault (`DetectionError`).
    pub variable: Option<String>,
    /// How to fix a detection failure (`DetectionError`).
    pub guidance: Option<String>,
}

impl ErrorInfo {
    fn new(name: &str, code: &str, message: String) -> Self {
        ErrorInfo {
            name: name.into(),
            code: code.into(),
            message,
            errno: None,
            close_code: None,
            close_reason: None,
            variable: None,
            guidance: None,
        }
    }

    /// A bad argument found by the binding itself (a wrong type, a negative timeout).
    pub fn invalid_argument(message: String) -> Self {
        ErrorInfo::new("IoError", "ERR_INVALID_ARG_VALUE", message)
    }
}

impl From<SocketError> for ErrorInfo {
    fn from(e: SocketError) -> Self {
        let message = e.to_string();
        match e {
            SocketError::Io(io) => from_io(&io, message),
            SocketError::Ws(_) => ErrorInfo::new("WsError", "ERR_IPCEZ_WEBSOCKET", message),
            SocketError::UnsupportedCombination(..) => ErrorInfo::new(
                "UnsupportedCombination",
                "ERR_IPCEZ_UNSUPPORTED_COMBINATION",
                message,
            ),
            SocketError::Detection(d) => ErrorInfo {
                variable: Some(d.variable.clone()),
                guidance: Some(d.guidance()),
                ..ErrorInfo::new("DetectionError", "ERR_IPCEZ_DETECTION", message)
            },
            SocketError::RecipientAckTimeout => ErrorInfo::new(
                "RecipientAckTimeout",
                "ERR_IPCEZ_RECIPIENT_ACK_TIMEOUT",
                message,
            ),
        }
    }
}

fn from_io(io: &io::Error, message: String) -> ErrorInfo {
    let inner = io.get_ref();
    if inner.is_some_and(|i| i.is::<MessageTooLarge>()) {
        return ErrorInfo::new("MessageTooLarge", "ERR_IPCEZ_MESSAGE_TOO_LARGE", message);
    }
    let name = if io.kind() == io::ErrorKind::ConnectionReset {
        "ConnectionLost"
    } else {
        "IoError"
    };
    let close = inner.and_then(|i| i.downcast_ref::<PeerClosed>());
    ErrorInfo {
        errno: io.raw_os_error(),
        close_code: close.map(|c| u32::from(c.code)),
        close_reason: close.map(|c| c.reason.clone()),
        ..ErrorInfo::new(name, errno_name(io), message)
    }
}

/// Node's code for an I/O error: the OS's errno name when known (from the kind when the
/// core added context), as `net` reports it.
fn errno_name(e: &io::Error) -> &'static str {
    use io::ErrorKind as K;
    if let Some(name) = e.raw_os_error().and_then(os_errno_name) {
        return name;
    }
    match e.kind() {
        K::NotFound => "ENOENT",
        K::PermissionDenied => "EACCES",
        K::ConnectionRefused => "ECONNREFUSED",
        K::ConnectionReset => "ECONNRESET",
        K::ConnectionAborted => "ECONNABORTED",
        K::NotConnected => "ENOTCONN",
        K::AddrInUse => "EADDRINUSE",
        K::AddrNotAvailable => "EADDRNOTAVAIL",
        K::BrokenPipe => "EPIPE",
        K::AlreadyExists => "EEXIST",
        K::InvalidInput => "EINVAL",
        K::InvalidData => "EBADMSG",
        K::TimedOut => "ETIMEDOUT",
        K::Unsupported => "ENOTSUP",
        _ => "ERR_IPCEZ_IO",
    }
}

/// The errno names a socket, a path or a pipe gives; others fall back to the kind.
fn os_errno_name(n: i32) -> Option<&'static str> {
    #[cfg(unix)]
    {
        let name = match n {
            libc::ENOENT => "ENOENT",
            libc::EACCES => "EACCES",
            libc::EPERM => "EPERM",
            libc::ECONNREFUSED => "ECONNREFUSED",
            libc::ECONNRESET => "ECONNRESET",
            libc::EPIPE => "EPIPE",
            libc::EADDRINUSE => "EADDRINUSE",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::ENAMETOOLONG => "ENAMETOOLONG",
            libc::ENOTSOCK => "ENOTSOCK",
            libc::EMFILE => "EMFILE",
            libc::ETIMEDOUT => "ETIMEDOUT",
            libc::EHOSTUNREACH => "EHOSTUNREACH",
            libc::ENETUNREACH => "ENETUNREACH",
            _ => return None,
        };
        Some(name)
    }
    #[cfg(not(unix))]
    {
        let _ = n;
        None
    }
}
