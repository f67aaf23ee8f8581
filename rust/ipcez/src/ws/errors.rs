//! How WebSocket failures reach the user: a plain loss is the one "connection lost"
//! error of every transport; a misbehaving peer is an `InvalidData` protocol violation.

use std::io;

use tokio_tungstenite::tungstenite::error::ProtocolError;

use crate::error::{SocketError, WsError, connection_lost, is_disconnect};

/// The error that ends a connection whose reader met `e`.
pub(crate) fn ws_error_to_io(e: WsError) -> io::Error {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => connection_lost(),
        WsError::Io(e) if is_disconnect(&e) => connection_lost(),
        WsError::Io(e) => e,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => connection_lost(),
        WsError::Capacity(c) => io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "protocol violation: the WebSocket peer sent more than the 4 MiB limit ({c}); \
                 closing the connection"
            ),
        ),
        other => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("WebSocket protocol error from the peer: {other}; closing the connection"),
        ),
    }
}

/// The error a send (or a connect) that met `e` returns.
pub(crate) fn ws_error_to_socket_error(e: WsError) -> SocketError {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => connection_lost().into(),
        // The reader took the peer's Close frame: the connection is over.
        WsError::Protocol(ProtocolError::SendAfterClosing) => connection_lost().into(),
        WsError::Io(e) if is_disconnect(&e) => connection_lost().into(),
        WsError::Io(e) => e.into(),
        other => other.into(),
    }
}

/// True for the plain "connection lost" error (no close code attached yet).
pub(crate) fn is_loss(e: &SocketError) -> bool {
    matches!(e, SocketError::Io(io) if io.kind() == io::ErrorKind::ConnectionReset)
}
