//! The error type every ipcez operation returns.

use std::fmt;
use std::io;

pub use tokio_tungstenite::tungstenite::Error as WsError;

/// Everything that can go wrong in ipcez.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// An I/O failure: connection refused, socket path missing, connection lost
    /// (`ConnectionReset`, "connection lost"), message too large (`InvalidInput`), a
    /// protocol violation by the peer (`InvalidData`), …
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The WebSocket handshake or protocol failed.
    #[error("websocket error: {0}{hint}", hint = ws_hint(.0))]
    Ws(#[from] Box<WsError>),
    /// This `(target, os)` pair is not supported by this build (e.g. `local` + `windows` on Linux).
    #[error(
        "target={0} with os={1} is not supported by this build of ipcez ({build}); \
         use a ws:// or wss:// URL to reach a peer on another machine",
        build = std::env::consts::OS
    )]
    UnsupportedCombination(String, String),
    /// `target` / `os` are missing or invalid in the environment.
    #[error("{0}")]
    Detection(DetectionError),
    /// The recipient did not signal "data acked" within the ack timeout.
    #[error(
        "the recipient did not acknowledge the message within the ack timeout; is the \
         peer process running and reading (a peer written without ipcez: does it post \
         data_acked)? A longer ack_timeout gives a busy peer more time"
    )]
    RecipientAckTimeout,
}

/// What to check when the server refused the handshake with an HTTP status.
fn ws_hint(e: &WsError) -> &'static str {
    match e {
        WsError::Http(r) if r.status() == 404 => {
            "; check the URL's path: the server takes WebSocket connections on another one"
        }
        WsError::Http(r) if r.status() == 401 || r.status() == 403 => {
            "; the server refused this client (its Origin, credentials or address)"
        }
        _ => "",
    }
}

impl From<WsError> for SocketError {
    fn from(e: WsError) -> Self {
        SocketError::Ws(Box::new(e))
    }
}

/// Why the environment could not decide the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectionError {
    /// The variable at fault, as read: `target`, `os`, `IPCEZ_TARGET` or `IPCEZ_OS`.
    pub variable: String,
    /// The value seen, when the variable was set but invalid.
    pub value: Option<String>,
    /// The whole explanation, including the allowed values and how to fix it.
    pub message: String,
}

impl fmt::Display for DetectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl DetectionError {
    /// The message with how to fix it: the text printed to stderr (once per process) when
    /// detection fails.
    pub fn guidance(&self) -> String {
        format!(
            "ipcez: {}\n\
             ipcez: a local endpoint needs `target` (local or remote) and `os` (linux or windows) \
             in the environment;\n\
             ipcez: fix it with e.g. `export target=local os=linux` (IPCEZ_TARGET / IPCEZ_OS take \
             precedence when set), or connect to a ws:// or wss:// URL for a remote peer.",
            self.message
        )
    }
}

impl std::error::Error for DetectionError {}

/// The payload of the `Io(InvalidInput)` error a send of more than 4 MiB returns.
///
/// Bindings downcast to it (`io::Error::get_ref`) to tell it from other invalid input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageTooLarge {
    /// The size that was refused.
    pub len: usize,
}

impl fmt::Display for MessageTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "message of {} bytes is larger than the 4 MiB limit ({} bytes); nothing was sent, \
             split it into smaller messages",
            self.len,
            crate::MAX_MESSAGE_LEN
        )
    }
}

impl std::error::Error for MessageTooLarge {}

/// The payload of the connection-lost `Io` error (`ConnectionReset`) when a WebSocket peer
/// ended the connection with a close frame: its code and reason.
///
/// Bindings downcast to it (`io::Error::get_ref`) to show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerClosed {
    /// The close code (1000 normal, 1001 going away, 1009 too big, …; 1005 when the frame
    /// carried none).
    pub code: u16,
    /// The reason text, possibly empty.
    pub reason: String,
}

impl fmt::Display for PeerClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection lost: the peer closed it with code {}",
            self.code
        )?;
        if let Some(name) = close_code_name(self.code) {
            write!(f, " ({name})")?;
        }
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for PeerClosed {}

impl PeerClosed {
    /// The connection-lost error that carries this close.
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionReset, self)
    }
}

fn close_code_name(code: u16) -> Option<&'static str> {
    Some(match code {
        1000 => "normal closure",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1005 => "no status code",
        1007 => "invalid data",
        1008 => "policy violation",
        1009 => "message too big",
        1010 => "extension required",
        1011 => "internal error",
        1012 => "service restart",
        1013 => "try again later",
        _ => return None,
    })
}

/// The one error every transport reports when the connection ends.
pub(crate) fn connection_lost() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection lost")
}

/// True for the errors a dead peer produces on a write.
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    #[cfg(windows)]
    if is_pipe_disconnect(e) {
        return true;
    }
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof
    )
}

pub(crate) fn invalid_input(msg: impl Into<String>) -> SocketError {
    SocketError::Io(io::Error::new(io::ErrorKind::InvalidInput, msg.into()))
}

/// True for the errors a named pipe gives once the other end has gone: closed
/// (`ERROR_BROKEN_PIPE`), closing (`ERROR_NO_DATA`) or disconnected by the server
/// (`ERROR_PIPE_NOT_CONNECTED`, which std does not map to an `ErrorKind`).
#[cfg(windows)]
fn is_pipe_disconnect(e: &io::Error) -> bool {
    use windows_sys::Win32::Foundation::{
        ERROR_BROKEN_PIPE, ERROR_NO_DATA, ERROR_PIPE_NOT_CONNECTED,
    };
    matches!(
        e.raw_os_error().map(|c| c as u32),
        Some(ERROR_BROKEN_PIPE | ERROR_NO_DATA | ERROR_PIPE_NOT_CONNECTED)
    )
}
