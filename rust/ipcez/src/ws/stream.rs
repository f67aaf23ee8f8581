//! A connected WebSocket as the transport hands it up: its two halves, with the plain or
//! TLS stream underneath hidden, so clients and servers of both kinds look the same.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Sink, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::tcp::TcpFd;
use crate::budget::ReadBudget;
use crate::error::WsError;
use crate::frame::MAX_MESSAGE_LEN;

/// The sending half.
pub(crate) type WsSink = Pin<Box<dyn Sink<Message, Error = WsError> + Send>>;
/// The receiving half.
pub(crate) type WsSource = Pin<Box<dyn Stream<Item = Result<Message, WsError>> + Send>>;

/// A connected WebSocket, split.
pub(crate) struct WsStream {
    pub(crate) sink: WsSink,
    pub(crate) source: WsSource,
    /// The subprotocol the handshake agreed on.
    pub(crate) subprotocol: Option<String>,
    /// The read gate of the byte stream underneath: a pending connection's budget, and
    /// the drain after a protocol violation.
    pub(crate) budget: Arc<ReadBudget>,
    /// Who is at the other end, for log lines (`ip:port`).
    pub(crate) peer: String,
    /// The TCP socket underneath, for a thread that reads it directly.
    pub(crate) fd: TcpFd,
}

impl WsStream {
    /// Splits an upgraded WebSocket over a stream read through `budget` (see
    /// [`crate::budget::Budgeted`]).
    pub(crate) fn new<S>(
        ws: WebSocketStream<S>,
        subprotocol: Option<String>,
        budget: Arc<ReadBudget>,
        peer: String,
        fd: TcpFd,
    ) -> Self
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, source) = ws.split();
        WsStream {
            sink: Box::pin(sink),
            source: Box::pin(source),
            subprotocol,
            budget,
            peer,
            fd,
        }
    }
}

/// The largest write buffer: one message of the maximum size with room to spare. It also
/// bounds the pongs queued for a peer that sends pings but does not read.
const MAX_WRITE_BUFFER: usize = MAX_MESSAGE_LEN + 64 * 1024;

/// How much tungstenite reads at most per call (it zeroes that much of its buffer before
/// each read: 128 KiB by default, about 2.5 µs per small message here).
const READ_BUFFER: usize = 32 * 1024;

/// The 4 MiB limit, enforced by tungstenite on what the peer sends, and the bound on
/// what waits to be written.
pub(crate) fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_MESSAGE_LEN))
        .max_frame_size(Some(MAX_MESSAGE_LEN))
        .max_write_buffer_size(MAX_WRITE_BUFFER)
}
