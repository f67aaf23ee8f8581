//! `Socket`: one connection on any transport, with its background reader.

mod batch;
mod event_loop;

pub use batch::Batch;
pub use event_loop::{SentMark, loop_turn_ends};

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use crate::ack::AckPair;
use crate::admission::Permit;
use crate::budget::ReadBudget;
use crate::conn::Conn;
use crate::error::{SocketError, connection_lost};
use crate::frame::check_len;
use crate::inbox::Inbox;
use crate::local::LocalConn;
use crate::options::ConnectOptions;
use crate::os::LocalStream;
use crate::resolve::Transport;
use crate::runtime::{ProcessEpoch, current_handle, deadline_after};
use crate::ws::{WsConn, WsStream};

/// What a socket is started with besides its connection: the subprotocol, the read
/// budget and the place under a listener's cap.
type Extra = (Option<String>, Arc<ReadBudget>, Option<Permit>);

struct Shared {
    transport: Transport,
    endpoint: String,
    conn: Conn,
    /// Received messages; also the one record of the connection having ended or been
    /// closed.
    inbox: Arc<Inbox>,
    ack_timeout: Duration,
    handle: Handle,
    reader: Mutex<Option<AbortHandle>>,
    handler_registered: AtomicBool,
    /// The process the connection belongs to: a forked child leaves it alone.
    epoch: ProcessEpoch,
    /// The WebSocket subprotocol agreed on in the handshake.
    subprotocol: Option<String>,
    /// What the reader may read; limited until a listener's `accept` hands this out.
    budget: Arc<ReadBudget>,
    /// This connection's place under its listener's cap (shared with the reader task, so
    /// it is given back once both are gone: when the descriptor is really closed).
    _permit: Option<Arc<Permit>>,
}

/// One connection. Cheap to clone (clones share the connection); the connection closes
/// when [`disconnect`](Socket::disconnect) is called or the last clone is dropped.
///
/// A background reader takes each message off the wire as soon as it arrives (and acks it,
/// on local transports) into a bounded queue that [`recv`](Socket::recv) or a
/// [`message_handler`](Socket::message_handler) drains.
///
/// After a `fork()`, a socket made by the parent is left to the parent: in the child its
/// methods fail, `close` does nothing and dropping it leaks it.
#[derive(Clone)]
pub struct Socket {
    shared: Arc<Shared>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        if !self.shared.epoch.is_current() {
            // A forked child: the last drop would shut the parent's connection down and
            // drop tokio objects of the parent's runtime. Keep it alive forever instead.
            std::mem::forget(Arc::clone(&self.shared));
        }
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("transport", &self.shared.transport)
            .field("endpoint", &self.shared.endpoint)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Socket {
    /// Wraps `conn` and starts its `reader` on the current runtime.
    fn start(
        transport: Transport,
        endpoint: String,
        (conn, inbox): (Conn, Arc<Inbox>),
        reader: impl Future<Output = ()> + Send + 'static,
        (subprotocol, budget, permit): Extra,
        opts: &ConnectOptions,
    ) -> Self {
        let handle = current_handle();
        let permit = permit.map(Arc::new);
        let held = permit.clone();
        let task = handle.spawn(async move {
            reader.await;
            drop(held);
        });
        Socket {
            shared: Arc::new(Shared {
                transport,
                endpoint,
                conn,
                inbox,
                ack_timeout: opts.ack_timeout,
                handle,
                reader: Mutex::new(Some(task.abort_handle())),
                handler_registered: AtomicBool::new(false),
                epoch: ProcessEpoch::current(),
                subprotocol,
                budget,
                _permit: permit,
            }),
        }
    }

    fn inbox(opts: &ConnectOptions) -> Arc<Inbox> {
        Arc::new(Inbox::new(opts.max_queued_messages, opts.max_queued_bytes))
    }

    /// Wraps a connected local stream and its ack signals; it reads within `budget`, and
    /// holds `permit` (a place under a listener's cap) until its descriptor is closed.
    pub(crate) fn from_local(
        (transport, endpoint): (Transport, String),
        stream: LocalStream,
        acks: Arc<AckPair>,
        (budget, permit): (Arc<ReadBudget>, Option<Permit>),
        opts: &ConnectOptions,
    ) -> Self {
        let inbox = Self::inbox(opts);
        let (conn, reader) = LocalConn::start(stream, acks, inbox.clone(), budget.clone());
        let conn = (Conn::Local(conn), inbox);
        Socket::start(
            transport,
            endpoint,
            conn,
            reader,
            (None, budget, permit),
            opts,
        )
    }

    /// Wraps an upgraded WebSocket (holding `permit` like [`from_local`](Self::from_local)).
    pub(crate) fn from_ws(
        endpoint: String,
        ws: WsStream,
        permit: Option<Permit>,
        opts: &ConnectOptions,
    ) -> Self {
        let inbox = Self::inbox(opts);
        let extra = (ws.subprotocol.clone(), ws.budget.clone(), permit);
        let (conn, reader) = WsConn::start(ws, inbox.clone(), opts.ws_keepalive);
        let conn = (Conn::Ws(conn), inbox);
        Socket::start(Transport::WebSocket, endpoint, conn, reader, extra, opts)
    }

    /// `accept` hands this connection out: its reader may read without limit now.
    pub(crate) fn mark_accepted(&self) {
        self.shared.budget.lift();
    }

    /// Ended (or its peer hung up) before anyone took it, with no message read: not worth
    /// handing out. (Bytes a gone peer left unread were never acked to it.)
    pub(crate) fn is_spent(&self) -> bool {
        let inbox = &self.shared.inbox;
        inbox.is_empty() && (inbox.has_ended() || self.shared.conn.peer_hung_up())
    }

    /// Closes like [`close`](Self::close), telling a WebSocket peer the listener is going
    /// away (close code 1001) rather than a normal closure (1000).
    pub(crate) fn close_going_away(&self) {
        self.shared.close(CLOSE_GOING_AWAY);
    }

    /// The WebSocket subprotocol the handshake agreed on; `None` when none was (and on
    /// local transports).
    pub fn subprotocol(&self) -> Option<&str> {
        self.shared.subprotocol.as_deref()
    }

    /// The transport this connection uses.
    pub fn transport(&self) -> Transport {
        self.shared.transport
    }

    /// The endpoint this socket was connected to (for accepted sockets: the listener's address).
    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    /// The ack timeout of this connection.
    pub fn ack_timeout(&self) -> Duration {
        self.shared.ack_timeout
    }

    /// True after [`disconnect`](Self::disconnect) or once the connection was lost.
    pub fn is_closed(&self) -> bool {
        self.shared.inbox.has_ended()
    }

    /// When a send that starts now gives up: the ack timeout bounds the write and the ack.
    fn ack_deadline(&self) -> Instant {
        deadline_after(self.shared.ack_timeout)
    }

    /// Refuses a send on an ended connection, or of a message over the limit.
    fn check_send(&self, msg: &[u8]) -> Result<(), SocketError> {
        self.shared.epoch.check("socket")?;
        if self.is_closed() {
            return Err(self.shared.inbox.lost().into());
        }
        check_len(msg.len())?;
        Ok(())
    }

    /// Sends one message (0 to 4 MiB). On local transports it then waits up to the ack
    /// timeout for the recipient's "data acked"; none → [`SocketError::RecipientAckTimeout`].
    pub async fn send_message(&self, msg: &[u8]) -> Result<(), SocketError> {
        let deadline = self.ack_deadline();
        self.check_send(msg)?;
        self.shared
            .conn
            .send(msg, deadline, &self.shared.handle)
            .await
    }

    /// The first half of a send for threads outside the runtime: writes the frame (local:
    /// and signals "data ready") without waiting for the ack. Follow it with
    /// [`wait_ack_blocking`](Self::wait_ack_blocking).
    pub fn send_frame_blocking(&self, msg: &[u8]) -> Result<(), SocketError> {
        let deadline = self.ack_deadline();
        self.check_send(msg)?;
        let shared = &self.shared;
        shared
            .conn
            .send_frame_blocking(msg, deadline, &shared.handle, self)
    }

    /// Waits up to `timeout` for the ack of the last frame this thread sent on this socket
    /// (on a thread that sent none: of the last frame sent): `Ok(true)` when it came
    /// (always, at once, on WebSocket), `Ok(false)` when the time ran out, an error when
    /// the connection ended meanwhile.
    pub fn wait_ack_blocking(&self, timeout: Duration) -> Result<bool, SocketError> {
        self.shared.epoch.check("socket")?;
        match self.shared.conn.wait_ack_until(deadline_after(timeout)) {
            Ok(()) => Ok(true),
            Err(SocketError::RecipientAckTimeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The next message. After the connection ended, the error that ended it (a
    /// `ConnectionReset` "connection lost" `Io` error for a plain loss), every time.
    pub async fn recv(&self) -> Result<Vec<u8>, SocketError> {
        self.check_pull()?;
        self.shared.inbox.pop().await
    }

    /// [`recv`](Self::recv) for threads outside the runtime: `Ok(None)` when `timeout`
    /// passes first (`None` waits without limit). On Unix a local socket is read on the
    /// calling thread itself while nobody else reads it, which saves a thread hop.
    pub fn recv_blocking(&self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>, SocketError> {
        self.check_pull()?;
        #[cfg(target_os = "linux")]
        if timeout != Some(Duration::ZERO) {
            // A loop's thread about to block: its held sockets must not wait for it.
            crate::os::unix::armed::let_go_here();
        }
        self.shared.conn.recv_blocking(timeout)
    }

    fn check_pull(&self) -> Result<(), SocketError> {
        self.shared.epoch.check("socket")?;
        if self.shared.inbox.is_closed() {
            return Err(connection_lost().into());
        }
        if self.shared.handler_registered.load(Ordering::Acquire) {
            return Err(SocketError::Io(io::Error::other(
                "a message handler is registered on this socket; messages go to it, not to recv",
            )));
        }
        Ok(())
    }

    fn claim_handler(&self) -> Result<(), SocketError> {
        self.check_pull()?;
        if self.shared.handler_registered.swap(true, Ordering::AcqRel) {
            return Err(SocketError::Io(io::Error::other(
                "a message handler is already registered on this socket",
            )));
        }
        Ok(())
    }

    /// Calls `callback` with `Ok(message)` for each message (those already queued first, in
    /// order), then once with `Err` when the connection ends; then the handler task stops.
    ///
    /// The callback runs on the socket's runtime; one handler per socket.
    pub fn message_handler<F, Fut>(&self, mut callback: F) -> Result<(), SocketError>
    where
        F: FnMut(Result<Vec<u8>, SocketError>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        self.claim_handler()?;
        let inbox = self.shared.inbox.clone();
        self.shared.handle.spawn(async move {
            loop {
                let next = inbox.pop().await;
                let last = next.is_err();
                callback(next).await;
                if last {
                    break;
                }
            }
        });
        Ok(())
    }

    /// Like [`message_handler`](Self::message_handler) with a plain callback run on a
    /// dedicated thread of its own (for callers that must not run on the runtime, such as
    /// the C ABI). Returns that thread's handle.
    pub fn message_handler_thread<F>(
        &self,
        mut callback: F,
    ) -> Result<std::thread::JoinHandle<()>, SocketError>
    where
        F: FnMut(Result<Vec<u8>, SocketError>) + Send + 'static,
    {
        self.claim_handler()?;
        // The thread holds the reading side only, never the socket itself, so dropping the
        // last `Socket` still closes the connection (and so ends this thread). It takes
        // messages like `recv_blocking` does.
        let mut take = self.shared.conn.blocking_taker();
        std::thread::Builder::new()
            .name("ipcez-handler".into())
            .spawn(move || {
                loop {
                    let next = take().and_then(|m| {
                        m.ok_or_else(|| {
                            SocketError::Io(io::Error::other("unreachable: no timeout"))
                        })
                    });
                    let last = next.is_err();
                    callback(next);
                    if last {
                        break;
                    }
                }
            })
            .map_err(SocketError::Io)
    }

    /// Closes the connection (idempotent). Afterwards sends fail with a connection-lost
    /// `Io` error and the handler gets its one `Err`.
    pub async fn disconnect(&self) {
        self.close();
    }

    /// [`disconnect`](Self::disconnect) without `async`: it never waits.
    pub fn close(&self) {
        self.shared.close(CLOSE_NORMAL);
    }
}

/// WebSocket close codes ipcez sends when it closes.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;

impl Shared {
    /// Closes once; `ws_code` is the close code a WebSocket peer is sent.
    fn close(&self, ws_code: u16) {
        if !self.epoch.is_current() || !self.inbox.close() {
            return;
        }
        // A WebSocket reader says goodbye itself (see `WsConn::close`); a local one stops.
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let (Some(reader), Conn::Local(_)) = (reader, &self.conn) {
            reader.abort();
        }
        self.conn.close(&self.handle, ws_code);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.close(CLOSE_NORMAL);
    }
}
