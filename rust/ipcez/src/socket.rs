//! `Socket`: one connection on any transport, with its background reader.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use crate::ack::AckPair;
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
}

/// A place in the order of one connection's sends (see [`Socket::sent_mark`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SentMark(u64);

impl SentMark {
    /// The mark of the message `n` places earlier on the same connection: the messages of
    /// a batch written back to back are consecutive, so `mark.before(i)` after a batch of
    /// `k` names its message `k - 1 - i` (or a later one).
    pub fn before(self, n: usize) -> SentMark {
        SentMark(self.0.saturating_sub(n as u64))
    }
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
        opts: &ConnectOptions,
    ) -> Self {
        let handle = current_handle();
        let task = handle.spawn(reader);
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
            }),
        }
    }

    fn inbox(opts: &ConnectOptions) -> Arc<Inbox> {
        Arc::new(Inbox::new(opts.max_queued_messages, opts.max_queued_bytes))
    }

    /// Wraps a connected local stream and its ack signals.
    pub(crate) fn from_local(
        transport: Transport,
        endpoint: String,
        stream: LocalStream,
        acks: Arc<AckPair>,
        opts: &ConnectOptions,
    ) -> Self {
        let inbox = Self::inbox(opts);
        let (conn, reader) = LocalConn::start(stream, acks, inbox.clone());
        let conn = (Conn::Local(conn), inbox);
        Socket::start(transport, endpoint, conn, reader, opts)
    }

    /// Wraps an upgraded WebSocket.
    pub(crate) fn from_ws(endpoint: String, ws: WsStream, opts: &ConnectOptions) -> Self {
        let inbox = Self::inbox(opts);
        let (conn, reader) = WsConn::start(ws, inbox.clone(), opts.ws_keepalive);
        let conn = (Conn::Ws(conn), inbox);
        Socket::start(Transport::WebSocket, endpoint, conn, reader, opts)
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
            return Err(connection_lost().into());
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

    /// Like [`send_frame_blocking`](Self::send_frame_blocking), but never waits (for an
    /// event loop's thread). `Ok(true)`: the message was handed over — on a Unix socket
    /// what the socket takes now is written on this thread and the rest by the runtime,
    /// in order behind earlier such frames (the frame stays whole, or the connection ends);
    /// on a WebSocket it was written or is being flushed. `Ok(false)`: nothing was sent
    /// because that would mean waiting (frames already waiting for a Unix socket hold their
    /// 64 MiB bound, a WebSocket is busy with another send, a named pipe): send it with
    /// `send_frame_blocking` from a thread that may wait.
    pub fn start_send(&self, msg: &[u8]) -> Result<bool, SocketError> {
        self.start_send_many(&[msg])
    }

    /// Sends several messages as frames written back to back (on a Unix socket in as few
    /// system calls as possible, so the peer also reads them in a batch) and signals "data
    /// ready" once per message, without waiting for acks: follow it with one
    /// [`wait_ack_blocking`](Self::wait_ack_blocking) per message. Frames from other senders
    /// never come between them. Every message is checked before anything is written.
    pub fn send_many_frames_blocking(&self, msgs: &[&[u8]]) -> Result<(), SocketError> {
        self.send_frames(msgs)
    }

    /// [`send_many_frames_blocking`](Self::send_many_frames_blocking) that never waits, like
    /// [`start_send`](Self::start_send) (several WebSocket messages always give `Ok(false)`).
    pub fn start_send_many(&self, msgs: &[&[u8]]) -> Result<bool, SocketError> {
        let deadline = self.ack_deadline();
        msgs.iter().try_for_each(|m| self.check_send(m))?;
        let shared = &self.shared;
        shared.conn.start_send(msgs, deadline, &shared.handle, self)
    }

    fn send_frames(&self, msgs: &[&[u8]]) -> Result<(), SocketError> {
        let deadline = self.ack_deadline();
        msgs.iter().try_for_each(|m| self.check_send(m))?;
        let shared = &self.shared;
        shared
            .conn
            .send_frames_blocking(msgs, deadline, &shared.handle, self, true)
    }

    /// Waits up to `timeout` for one "data acked" token: `Ok(true)` when it came (always,
    /// at once, on WebSocket), `Ok(false)` when the time ran out, an error when the
    /// connection ended meanwhile.
    pub fn wait_ack_blocking(&self, timeout: Duration) -> Result<bool, SocketError> {
        self.shared.epoch.check("socket")?;
        match self.shared.conn.wait_ack_until(deadline_after(timeout)) {
            Ok(()) => Ok(true),
            Err(SocketError::RecipientAckTimeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Where this connection's sends stand: the last message handed over so far, by any
    /// thread. Taken right after a send of your own (`start_send`, `start_send_many`,
    /// `send_many_frames_blocking`), it names that send's last message or a later one, so
    /// [`wait_ack_of_blocking`](Self::wait_ack_of_blocking) on it never returns before that
    /// message was read.
    pub fn sent_mark(&self) -> SentMark {
        SentMark(self.shared.conn.last_frame())
    }

    /// Like [`wait_ack_blocking`](Self::wait_ack_blocking), for the ack of the message
    /// `mark` names (which covers every message sent before it on this connection). With a
    /// custom peer each call takes one "data acked" token, as `wait_ack_blocking` does.
    pub fn wait_ack_of_blocking(
        &self,
        mark: SentMark,
        timeout: Duration,
    ) -> Result<bool, SocketError> {
        self.shared.epoch.check("socket")?;
        match self
            .shared
            .conn
            .wait_ack_of(mark.0, deadline_after(timeout))
        {
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
        self.shared.conn.recv_blocking(timeout)
    }

    /// The next message if one is waiting, without blocking: `Ok(None)` when none is.
    /// (On a local connection the socket itself is read on this thread when nothing is
    /// queued, which saves a thread hop.)
    pub fn try_recv(&self) -> Result<Option<Vec<u8>>, SocketError> {
        self.recv_blocking(Some(Duration::ZERO))
    }

    /// Like [`recv_blocking`](Self::recv_blocking), into `buf`: `Ok(Some(n))` with the
    /// message in `buf[..n]`. When the message is longer than `buf`, nothing is written and
    /// `Ok(Some(len))` gives its length (`len > buf.len()`); the message stays first in
    /// line for the next receive.
    pub fn recv_into_blocking(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<Option<usize>, SocketError> {
        let Some(msg) = self.recv_blocking(timeout)? else {
            return Ok(None);
        };
        let n = msg.len();
        match buf.get_mut(..n) {
            Some(dst) => dst.copy_from_slice(&msg),
            None => self.shared.inbox.unget(msg),
        }
        Ok(Some(n))
    }

    /// A descriptor that is readable while a message (or the end of the connection) waits
    /// to be taken: for `select`/`poll`/`epoll` and event loops. Owned by the socket (do not
    /// close it); valid until the last clone of the socket is dropped. Unix only.
    #[cfg(unix)]
    pub fn fileno(&self) -> io::Result<std::os::fd::RawFd> {
        self.shared.inbox.fileno()
    }

    /// Reports to `poller` as `token` whenever a message comes to wait where none waited
    /// (or the connection ends), and at once if one already waits. Then take messages with
    /// [`try_recv`](Self::try_recv) until it gives `None`: the next report comes only after
    /// that. Replaces an earlier poller.
    pub fn watch(&self, poller: &crate::Poller, token: u64) {
        self.shared.inbox.watch(poller, token);
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
        self.shared.close();
    }
}

impl Shared {
    fn close(&self) {
        if !self.epoch.is_current() || !self.inbox.close() {
            return;
        }
        if let Some(reader) = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take() {
            reader.abort();
        }
        self.conn.close(&self.handle);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.close();
    }
}
