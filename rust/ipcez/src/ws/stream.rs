//! A connected WebSocket as the transport hands it up: its two halves, with the plain or
//! TLS stream underneath hidden, so clients and servers of both kinds look the same.

use std::pin::Pin;

use futures_util::{Sink, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

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
}

impl WsStream {
    pub(crate) fn new<S>(ws: WebSocketStream<S>) -> Self
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, source) = ws.split();
        WsStream {
            sink: Box::pin(sink),
            source: Box::pin(source),
        }
    }
}

/// The 4 MiB limit, enforced by tungstenite on what the peer sends.
pub(crate) fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_LEN))
        .max_frame_size(Some(MAX_MESSAGE_LEN))
}
