//! A WebSocket connection above the transport: sending, closing, and its reader task
//! (which answers silence with a ping and a misbehaving peer with a Close frame).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::runtime::Handle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::errors::{ws_error_to_io, ws_error_to_socket_error};
use super::stream::{WsSink, WsSource, WsStream};
use crate::error::{SocketError, WsError, connection_lost};
use crate::inbox::{BlockingTaker, Inbox};
use crate::runtime::block_on;

/// The sending half, shared with the reader (which pings and says goodbye through it).
/// `None` once closed: dropping it (with the reader's half) closes the TCP stream.
type SharedSink = Arc<tokio::sync::Mutex<Option<WsSink>>>;

/// One WebSocket connection. Its reader fills `inbox`.
pub(crate) struct WsConn {
    sink: SharedSink,
    inbox: Arc<Inbox>,
}

impl WsConn {
    /// Wraps `ws`; the returned future is the connection's reader, to be spawned.
    pub(crate) fn start(
        ws: WsStream,
        inbox: Arc<Inbox>,
        keepalive: Duration,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let sink: SharedSink = Arc::new(tokio::sync::Mutex::new(Some(ws.sink)));
        let reader = read(ws.source, inbox.clone(), sink.clone(), keepalive);
        (WsConn { sink, inbox }, reader)
    }

    /// Sends one message (checked by the caller), giving up at `deadline`.
    pub(crate) async fn send(&self, msg: &[u8], deadline: Instant) -> Result<(), SocketError> {
        let frame = Message::Binary(Bytes::copy_from_slice(msg));
        let sent = tokio::time::timeout_at(deadline.into(), async {
            match self.sink.lock().await.as_mut() {
                Some(sink) => sink.send(frame).await,
                None => Err(WsError::AlreadyClosed),
            }
        })
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ws_error_to_socket_error(e)),
            Err(_) => Err(SocketError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "the WebSocket peer did not take the message within the ack timeout",
            ))),
        }
    }

    /// [`send`](Self::send) for threads outside the runtime.
    pub(crate) fn send_frame_blocking(
        &self,
        msg: &[u8],
        deadline: Instant,
        handle: &Handle,
    ) -> Result<(), SocketError> {
        block_on(handle, self.send(msg, deadline))?
    }

    /// Hands one message (checked by the caller) to the connection without waiting:
    /// `Ok(true)` when it was taken (written, or being flushed by the runtime until
    /// `deadline`, after which the connection ends), `Ok(false)` with nothing sent when
    /// the connection is busy right now (another send, or no room): send it the waiting
    /// way then.
    pub(crate) fn try_send(
        &self,
        msg: &[u8],
        deadline: Instant,
        handle: &Handle,
    ) -> Result<bool, SocketError> {
        let Ok(mut guard) = self.sink.clone().try_lock_owned() else {
            return Ok(false);
        };
        let Some(sink) = guard.as_mut() else {
            return Err(connection_lost().into());
        };
        // Polled once with a waker that does nothing: where it would have to wait, the
        // runtime takes over (or the caller sends the waiting way).
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let _runtime = handle.enter();
        match sink.as_mut().poll_ready(&mut cx) {
            Poll::Pending => return Ok(false),
            Poll::Ready(r) => r.map_err(ws_error_to_socket_error)?,
        }
        let frame = Message::Binary(Bytes::copy_from_slice(msg));
        sink.as_mut()
            .start_send(frame)
            .map_err(ws_error_to_socket_error)?;
        match sink.as_mut().poll_flush(&mut cx) {
            Poll::Ready(r) => r.map_err(ws_error_to_socket_error)?,
            Poll::Pending => {
                let inbox = self.inbox.clone();
                handle.spawn(async move {
                    let flushed = tokio::time::timeout_at(deadline.into(), async {
                        match guard.as_mut() {
                            Some(sink) => sink.flush().await,
                            None => Err(WsError::AlreadyClosed),
                        }
                    })
                    .await;
                    if !matches!(flushed, Ok(Ok(()))) {
                        inbox.end(&connection_lost());
                        guard.take(); // drop the sink: the TCP stream closes with the reader
                    }
                });
            }
        }
        Ok(true)
    }

    /// WebSocket sends are not acknowledged: there is nothing to wait for.
    pub(crate) fn wait_ack_until(&self, _deadline: Instant) -> Result<(), SocketError> {
        Ok(())
    }

    /// A blocking take for threads outside the runtime (`None` waits without limit).
    pub(crate) fn recv_blocking(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, SocketError> {
        self.inbox.pop_blocking(timeout)
    }

    /// A blocking taker that holds the queue only, not the connection.
    pub(crate) fn blocking_taker(&self) -> BlockingTaker {
        let inbox = self.inbox.clone();
        Box::new(move || inbox.pop_blocking(None))
    }

    /// Says goodbye in the background; never waits.
    pub(crate) fn close(&self, handle: &Handle) {
        handle.spawn(close(self.sink.clone(), None));
    }
}

/// Says goodbye with a Close frame (with `frame`'s code when given), briefly; then the
/// sink is dropped and, with the reader's half gone too, the TCP stream closes.
async fn close(sink: SharedSink, frame: Option<CloseFrame>) {
    let Some(mut sink) = sink.lock().await.take() else {
        return;
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        if let Some(frame) = frame {
            sink.send(Message::Close(Some(frame))).await?;
        }
        sink.close().await
    })
    .await;
}

/// The reader of a WebSocket connection. When the connection ends for any reason it is
/// closed, so a misbehaving peer is cut off rather than left hanging.
async fn read(mut stream: WsSource, inbox: Arc<Inbox>, sink: SharedSink, keepalive: Duration) {
    let mut goodbye = None;
    let mut pinged = false;
    let end = loop {
        let next = if keepalive.is_zero() {
            stream.next().await
        } else {
            match tokio::time::timeout(keepalive, stream.next()).await {
                Ok(next) => next,
                // Silent for a whole period after our ping: the network is gone.
                Err(_) if pinged => break connection_lost(),
                Err(_) => {
                    pinged = true;
                    let ping = async {
                        match sink.lock().await.as_mut() {
                            Some(sink) => sink.send(Message::Ping(Bytes::new())).await,
                            None => Err(WsError::AlreadyClosed),
                        }
                    };
                    match tokio::time::timeout(keepalive, ping).await {
                        Ok(Ok(())) => continue,
                        _ => break connection_lost(),
                    }
                }
            }
        };
        pinged = false; // anything from the peer, a pong included, proves it is there
        let msg = match next {
            None | Some(Ok(Message::Close(_))) => break connection_lost(),
            Some(Ok(Message::Binary(b))) => Vec::from(b),
            Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
            Some(Ok(_)) => continue, // ping/pong (answered by tungstenite), raw frames
            Some(Err(e)) => {
                if matches!(e, WsError::Capacity(_)) {
                    goodbye = Some(CloseFrame {
                        code: CloseCode::Size,
                        reason: "message larger than the 4 MiB limit".into(),
                    });
                }
                break ws_error_to_io(e);
            }
        };
        if !inbox.push(msg).await {
            break connection_lost();
        }
    };
    inbox.end(&end);
    drop(stream);
    close(sink, goodbye).await;
}
