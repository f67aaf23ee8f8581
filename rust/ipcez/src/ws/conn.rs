//! A WebSocket connection above the transport: sending, closing, and its reader task
//! (which answers silence with a ping and a misbehaving peer with a Close frame).
//!
//! Closing is the reader's job, whoever starts it, so that it happens the way peers expect:
//! a Close frame with a code (1000 from `close`, 1001 when a listener shuts down, 1009 for
//! an oversize message, 1002/1007 for other violations), then reading on — and throwing
//! away — until the peer's Close frame or its end of the stream, at most [`LINGER`]; only
//! then is the TCP connection closed, so the peer sees the code, not a reset.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::errors::{is_loss, ws_error_to_io, ws_error_to_socket_error};
use super::reading::{Got, ReadHalf};
use super::stream::{WsSink, WsStream};
use crate::budget::ReadBudget;
use crate::error::{PeerClosed, SocketError, WsError, connection_lost};
use crate::inbox::{BlockingTaker, Inbox};
use crate::runtime::block_on;

/// The sending half, shared with the reader (which pings and says goodbye through it).
/// `None` once closed: dropping it (with the reader's half) closes the TCP stream.
type SharedSink = Arc<tokio::sync::Mutex<Option<WsSink>>>;

/// How long closing waits for the Close frame to go out, and then for the peer's.
const LINGER: Duration = Duration::from_secs(1);

/// How long a send that found the connection gone waits for the reader to learn why: the
/// peer's Close frame (with its code) usually arrives just before the write fails.
const LOSS_REASON_GRACE: Duration = Duration::from_millis(250);

/// Ping payload a peer may send before ipcez makes sure the pongs are being read.
const CONTROL_BUDGET: usize = 64 * 1024;

/// The user's request to close, with the code to send.
struct Closing {
    requested: Notify,
    code: AtomicU16,
}

/// One WebSocket connection. Its reader fills `inbox`.
pub(crate) struct WsConn {
    sink: SharedSink,
    inbox: Arc<Inbox>,
    #[cfg_attr(not(unix), allow(dead_code))]
    half: Arc<ReadHalf>,
    closing: Arc<Closing>,
}

impl WsConn {
    /// Wraps `ws`; the returned future is the connection's reader, to be spawned.
    pub(crate) fn start(
        ws: WsStream,
        inbox: Arc<Inbox>,
        keepalive: Duration,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let sink: SharedSink = Arc::new(tokio::sync::Mutex::new(Some(ws.sink)));
        let closing = Arc::new(Closing {
            requested: Notify::new(),
            code: AtomicU16::new(1000),
        });
        let half = Arc::new(ReadHalf::new(ws.source, inbox.clone(), ws.fd));
        let reader = Reader {
            half: half.clone(),
            sink: sink.clone(),
            inbox: inbox.clone(),
            budget: ws.budget,
            closing: closing.clone(),
            peer: ws.peer,
            keepalive,
        };
        let conn = WsConn {
            sink,
            inbox,
            half,
            closing,
        };
        (conn, reader.run())
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
            Ok(Err(e)) => Err(self.send_error(e).await),
            Err(_) => Err(SocketError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "the WebSocket peer did not take the message within the ack timeout",
            ))),
        }
    }

    /// The error of a send that met `e`. When the connection is gone, it carries the peer's
    /// close code and reason if its Close frame came (the reader is given a moment to read it).
    async fn send_error(&self, e: WsError) -> SocketError {
        let error = ws_error_to_socket_error(e);
        if !is_loss(&error) {
            return error;
        }
        self.inbox.wait_end(LOSS_REASON_GRACE).await;
        self.inbox.lost().into()
    }

    /// The error of [`try_send`](Self::try_send), which cannot wait: a loss whose reason is
    /// not known yet gives `Ok(false)`, so the waiting send finds the reason.
    fn try_send_error(&self, e: WsError) -> Result<bool, SocketError> {
        let error = ws_error_to_socket_error(e);
        if !is_loss(&error) {
            return Err(error);
        }
        match self.inbox.peer_close() {
            Some(close) => Err(close.into_io().into()),
            None => Ok(false),
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
            return self.try_send_error(WsError::AlreadyClosed);
        };
        // Polled once with a waker that does nothing: where it would have to wait, the
        // runtime takes over (or the caller sends the waiting way).
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let _runtime = handle.enter();
        match sink.as_mut().poll_ready(&mut cx) {
            Poll::Pending => return Ok(false),
            Poll::Ready(Err(e)) => return self.try_send_error(e),
            Poll::Ready(Ok(())) => {}
        }
        let frame = Message::Binary(Bytes::copy_from_slice(msg));
        if let Err(e) = sink.as_mut().start_send(frame) {
            return self.try_send_error(e);
        }
        match sink.as_mut().poll_flush(&mut cx) {
            Poll::Ready(Err(e)) => return self.try_send_error(e),
            Poll::Ready(Ok(())) => {}
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
                        if matches!(flushed, Ok(Err(_))) {
                            // The reader may be about to learn the peer's close code.
                            inbox.wait_end(LOSS_REASON_GRACE).await;
                        }
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

    /// A blocking take for threads outside the runtime (`None` waits without limit). On
    /// Unix the stream is read on the calling thread itself while nobody else reads it.
    pub(crate) fn recv_blocking(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, SocketError> {
        #[cfg(unix)]
        return self.half.recv_blocking(timeout);
        #[cfg(not(unix))]
        self.inbox.pop_blocking(timeout)
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn held_by_loop(&self, on: bool) -> Option<std::os::fd::RawFd> {
        self.half.held_by_loop(on)
    }

    pub(crate) fn nothing_read_ahead(&self) -> bool {
        self.half.nothing_read_ahead()
    }

    /// A blocking taker that holds the queue only, not the connection.
    pub(crate) fn blocking_taker(&self) -> BlockingTaker {
        let inbox = self.inbox.clone();
        Box::new(move || inbox.pop_blocking(None))
    }

    /// Asks the reader to say goodbye with close code `code`; never waits. (When the
    /// reader has already ended, it said goodbye already.)
    pub(crate) fn close(&self, _handle: &Handle, code: u16) {
        self.closing.code.store(code, Ordering::Release);
        self.closing.requested.notify_one();
    }
}

/// How the read loop ended.
enum End {
    /// The user closed: send this code, then wait for the peer's Close frame.
    Local(u16),
    /// The peer sent its Close frame (tungstenite answers it): wait for the end.
    Peer(io::Error),
    /// The peer broke the protocol: send this Close frame and drain what still comes.
    Violation(io::Error, CloseFrame),
    /// The connection is simply gone (or must be cut off without ceremony).
    Lost(io::Error),
}

struct Reader {
    half: Arc<ReadHalf>,
    sink: SharedSink,
    inbox: Arc<Inbox>,
    budget: Arc<ReadBudget>,
    closing: Arc<Closing>,
    peer: String,
    keepalive: Duration,
}

impl Reader {
    /// Reads until the connection ends, then closes it as described in the module comment.
    async fn run(mut self) {
        let end = self.read_loop().await;
        let (error, goodbye) = match end {
            End::Local(code) => (connection_lost(), Some(close_frame(code, ""))),
            End::Peer(e) => (e, None),
            End::Violation(e, frame) => {
                self.budget.drain();
                (e, Some(frame))
            }
            End::Lost(e) => {
                self.inbox.end(&e);
                // Dropping both halves closes the stream.
                drop(self.sink.lock().await.take());
                drop(self.half.take_source().await);
                return;
            }
        };
        self.inbox.end(&error);
        let source = self.half.take_source().await;
        let (Some(mut sink), Some(mut source)) = (self.sink.lock().await.take(), source) else {
            return;
        };
        let deadline = tokio::time::Instant::now() + LINGER;
        if let Some(frame) = goodbye {
            let sent = tokio::time::timeout_at(deadline, sink.send(Message::Close(Some(frame))));
            if !matches!(sent.await, Ok(Ok(()))) {
                return;
            }
        }
        // Read on (and throw away) until the peer's Close frame and its end of the stream.
        // After a protocol error the WebSocket layer reads no more: the flush drains then.
        let _ = tokio::time::timeout_at(deadline + LINGER, async {
            while let Some(Ok(_)) = source.next().await {}
            sink.flush().await
        })
        .await;
    }

    async fn read_loop(&mut self) -> End {
        let mut pinged = false;
        let mut control = 0usize;
        loop {
            // With pings answered but not seen to leave, wait no longer than the pongs may
            // take: reading can stall while they cannot be written.
            let wait = match control {
                0 => self.keepalive,
                _ if self.keepalive.is_zero() => LINGER,
                _ => self.keepalive.min(LINGER),
            };
            // Only the task queues messages: room now is room after the next read.
            if !self.inbox.wait_room().await {
                return End::Local(self.closing.code.load(Ordering::Acquire));
            }
            let next = tokio::select! {
                biased;
                () = self.closing.requested.notified() => {
                    return End::Local(self.closing.code.load(Ordering::Acquire));
                }
                next = next_within(&self.half, wait) => next,
            };
            let next = match next {
                Some(next) => next,
                None if control > 0 => {
                    if !pongs_leave(&self.sink).await {
                        return End::Lost(self.pongs_unread());
                    }
                    control = 0;
                    continue;
                }
                // A connection not yet accepted that spent its budget is not read, so
                // silence proves nothing about it.
                None if self.budget.allowance() == 0 => continue,
                // A thread reading directly heard from the peer meanwhile.
                None if self.half.heard() => {
                    pinged = false;
                    continue;
                }
                // Silent for a whole period after our ping: the network is gone.
                None if pinged => return End::Lost(connection_lost()),
                None => {
                    pinged = true;
                    let ping = Message::Ping(Bytes::new());
                    if !send_now(&self.sink, ping, self.keepalive.max(LINGER)).await {
                        return End::Lost(connection_lost());
                    }
                    continue;
                }
            };
            // Anything from the peer, a pong included, proves it is there.
            pinged = false;
            self.half.heard();
            let next = match next {
                Got::Queued => continue,
                Got::Unwanted => return End::Local(self.closing.code.load(Ordering::Acquire)),
                Got::Other(item) => item,
            };
            match next {
                None => return End::Lost(connection_lost()),
                Some(Ok(Message::Close(frame))) => return End::Peer(peer_closed(frame)),
                Some(Ok(Message::Ping(data))) => {
                    control += data.len() + 2;
                    if control > CONTROL_BUDGET {
                        if !pongs_leave(&self.sink).await {
                            return End::Lost(self.pongs_unread());
                        }
                        control = 0;
                    }
                    continue;
                }
                // Pongs and raw frames (messages come as `Got::Queued`).
                Some(Ok(_)) => continue,
                Some(Err(e)) => return self.violation(e),
            }
        }
    }

    fn pongs_unread(&self) -> io::Error {
        let why = format!(
            "the WebSocket peer {} sends pings but does not read the pongs; disconnected",
            self.peer
        );
        log::warn!("{why}");
        io::Error::new(io::ErrorKind::InvalidData, why)
    }

    /// The end for a read error: a protocol violation gets a Close frame and is logged.
    fn violation(&self, e: WsError) -> End {
        let frame = match &e {
            WsError::Capacity(_) => close_frame(1009, "message larger than the 4 MiB limit"),
            WsError::Utf8(_) => close_frame(1007, "text message that is not UTF-8"),
            WsError::Protocol(p) if !is_plain_loss(p) => close_frame(1002, "protocol error"),
            _ => return End::Lost(ws_error_to_io(e)),
        };
        let error = ws_error_to_io(e);
        log::info!("WebSocket peer {}: {error}", self.peer);
        End::Violation(error, frame)
    }
}

/// Sends `msg` (a ping) at once, giving up after `limit`; false when it failed.
async fn send_now(sink: &SharedSink, msg: Message, limit: Duration) -> bool {
    let send = async {
        match sink.lock().await.as_mut() {
            Some(sink) => sink.send(msg).await,
            None => Err(WsError::AlreadyClosed),
        }
    };
    matches!(tokio::time::timeout(limit, send).await, Ok(Ok(())))
}

/// True when the queued pongs can be written out within [`LINGER`].
async fn pongs_leave(sink: &SharedSink) -> bool {
    let flush = async {
        match sink.lock().await.as_mut() {
            Some(sink) => sink.flush().await,
            None => Err(WsError::AlreadyClosed),
        }
    };
    matches!(tokio::time::timeout(LINGER, flush).await, Ok(Ok(())))
}

/// The next item, or `None` when the peer was silent for `keepalive` (zero: no limit).
async fn next_within(half: &ReadHalf, keepalive: Duration) -> Option<Got> {
    if keepalive.is_zero() {
        return Some(half.next().await);
    }
    tokio::time::timeout(keepalive, half.next()).await.ok()
}

fn is_plain_loss(p: &tokio_tungstenite::tungstenite::error::ProtocolError) -> bool {
    matches!(
        p,
        tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
    )
}

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }
}

/// The connection-lost error for a peer's Close frame (1005 when it carried no code).
fn peer_closed(frame: Option<CloseFrame>) -> io::Error {
    let (code, reason) = frame.map_or((1005, String::new()), |f| {
        (u16::from(f.code), f.reason.to_string())
    });
    PeerClosed { code, reason }.into_io()
}
