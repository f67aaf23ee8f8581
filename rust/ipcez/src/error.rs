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
    #[error("websocket error: {0}")]
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
        "the recipient did not acknowledge the message within the ack timeout; \
         is the peer reading (and posting data_acked)?"
    )]
    RecipientAckTimeout,
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

/// The one error every transport reports when the connection ends.
pub(crate) fn connection_lost() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection lost")
}

/// True for the errors a dead peer produces on a write.
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    #[cfg(windows)]
    if crate::os::windows::is_pipe_disconnect(e) {
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
