//! `Socket`: one connection on any transport, with its background reader.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{Sink, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::runtime::Handle;
use tokio::task::AbortHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::ack::AckPair;
use crate::error::{SocketError, WsError, connection_lost, is_disconnect};
use crate::frame::{check_len, header};
use crate::inbox::{DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES, Inbox};
use crate::local::LocalStream;
use crate::local_reader::{self, ReadSide};
use crate::resolve::{Resolution, Transport};
use crate::runtime::{block_on, current_handle, deadline_after};

/// The default time a local send waits for the recipient's ack.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a blocking send writes on the caller's thread before it hands the rest of a
/// frame to the runtime (so a caller such as Python can be interrupted).
#[cfg(unix)]
const WRITE_SLICE: Duration = Duration::from_millis(50);

/// How long a local ack wait sleeps before looking whether the connection ended.
const ACK_POLL: Duration = Duration::from_millis(20);

/// Per-connection settings. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How long a local send waits for "data acked" (default 5 s). Also bounds how long a
    /// send may wait for the peer to make room for the frame, on every transport.
    pub ack_timeout: Duration,
    /// Read-but-untaken messages kept per connection before the reader pauses (default 1,024).
    pub max_queued_messages: usize,
    /// Bytes those messages may hold before the reader pauses (default 64 MiB).
    pub max_queued_bytes: usize,
    /// How long a WebSocket connect (TCP, TLS and upgrade) may take (default 30 s).
    pub handshake_timeout: Duration,
    /// WebSocket liveness: after this long without anything from the peer, ipcez sends a
    /// ping; if another such period passes in silence, the connection is lost (default
    /// 20 s). This is how a silent network drop is noticed. Zero turns it off.
    pub ws_keepalive: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            max_queued_messages: DEFAULT_MAX_MESSAGES,
            max_queued_bytes: DEFAULT_MAX_BYTES,
            handshake_timeout: Duration::from_secs(30),
            ws_keepalive: Duration::from_secs(20),
        }
    }
}

impl ConnectOptions {
    /// Sets the ack timeout.
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Sets the bounds of the per-connection queue of received messages.
    pub fn queue_limits(mut self, messages: usize, bytes: usize) -> Self {
        self.max_queued_messages = messages;
        self.max_queued_bytes = bytes;
        self
    }

    /// Resolves `endpoint` (see [`crate::resolve`]) and connects.
    pub async fn connect(&self, endpoint: &str) -> Result<Socket, SocketError> {
        self.connect_to(&crate::resolve::resolve(endpoint)?).await
    }

    /// Connects to an already resolved endpoint (no environment is read).
    pub async fn connect_to(&self, resolution: &Resolution) -> Result<Socket, SocketError> {
        match resolution.transport {
            Transport::WebSocket => crate::ws::connect(&resolution.address, self).await,
            #[cfg(unix)]
            Transport::Unix => crate::os::unix::uds::connect(&resolution.address, self).await,
            #[cfg(windows)]
            Transport::NamedPipe => {
                crate::os::windows::pipe::connect(&resolution.address, self).await
            }
            #[allow(unreachable_patterns)]
            other => Err(SocketError::UnsupportedCombination(
                "local".into(),
                other.as_str().into(),
            )),
        }
    }

    /// [`connect`](Self::connect) for threads outside any async runtime.
    pub fn connect_blocking(&self, endpoint: &str) -> Result<Socket, SocketError> {
        block_on(crate::runtime::runtime().handle(), self.connect(endpoint))?
    }
}

type WsSink = Pin<Box<dyn Sink<Message, Error = WsError> + Send>>;

enum Link {
    Local {
        stream: Arc<LocalStream>,
        acks: Arc<AckPair>,
        reader: Arc<ReadSide>,
        /// Held for a whole frame so frames from several senders never interleave.
        write_lock: Arc<tokio::sync::Mutex<()>>,
    },
    Ws {
        /// `None` once closed: dropping it (with the reader's half) closes the TCP stream.
        sink: Arc<tokio::sync::Mutex<Option<WsSink>>>,
    },
}

struct Shared {
    transport: Transport,
    endpoint: String,
    link: Link,
    inbox: Arc<Inbox>,
    ack_timeout: Duration,
    handle: Handle,
    reader: Mutex<Option<AbortHandle>>,
    closed: AtomicBool,
    handler_registered: AtomicBool,
}

/// One connection. Cheap to clone (clones share the connection); the connection closes
/// when [`disconnect`](Socket::disconnect) is called or the last clone is dropped.
///
/// A background reader takes each message off the wire as soon as it arrives (and acks it,
/// on local transports) into a bounded queue that [`recv`](Socket::recv) or a
/// [`message_handler`](Socket::message_handler) drains.
#[derive(Clone)]
pub struct Socket {
    shared: Arc<Shared>,
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
    fn new(
        transport: Transport,
        endpoint: String,
        link: Link,
        inbox: Arc<Inbox>,
        ack_timeout: Duration,
    ) -> Self {
        Socket {
            shared: Arc::new(Shared {
                transport,
                endpoint,
                link,
                inbox,
                ack_timeout,
                handle: current_handle(),
                reader: Mutex::new(None),
                closed: AtomicBool::new(false),
                handler_registered: AtomicBool::new(false),
            }),
        }
    }

    fn start_reader(&self, reader: impl Future<Output = ()> + Send + 'static) {
        let task = self.shared.handle.spawn(reader);
        *self.shared.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
    }

    /// Wraps a connected local stream; starts its reader on the current runtime.
    pub(crate) fn from_local(
        transport: Transport,
        endpoint: String,
        stream: LocalStream,
        acks: Arc<AckPair>,
        opts: &ConnectOptions,
    ) -> Self {
        let stream = Arc::new(stream);
        let inbox = Arc::new(Inbox::new(opts.max_queued_messages, opts.max_queued_bytes));
        let reader = Arc::new(ReadSide::new(stream.clone(), acks.clone(), inbox.clone()));
        let link = Link::Local {
            stream,
            acks,
            reader: reader.clone(),
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
        };
        let socket = Socket::new(transport, endpoint, link, inbox, opts.ack_timeout);
        socket.start_reader(local_reader::run(reader));
        socket
    }

    /// Wraps an upgraded WebSocket; starts its reader on the current runtime.
    pub(crate) fn from_ws<S>(
        endpoint: String,
        ws: WebSocketStream<S>,
        opts: &ConnectOptions,
    ) -> Self
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, stream) = ws.split();
        let sink: WsSink = Box::pin(sink);
        let sink = Arc::new(tokio::sync::Mutex::new(Some(sink)));
        let link = Link::Ws { sink: sink.clone() };
        let inbox = Arc::new(Inbox::new(opts.max_queued_messages, opts.max_queued_bytes));
        let socket = Socket::new(
            Transport::WebSocket,
            endpoint,
            link,
            inbox.clone(),
            opts.ack_timeout,
        );
        socket.start_reader(read_ws(stream, inbox, sink, opts.ws_keepalive));
        socket
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
        self.shared.closed.load(Ordering::Acquire) || self.shared.inbox.has_ended()
    }

    fn check_open(&self) -> Result<(), SocketError> {
        if self.shared.closed.load(Ordering::Acquire) || self.shared.inbox.has_ended() {
            return Err(connection_lost().into());
        }
        Ok(())
    }

    /// Sends one message (0 to 4 MiB). On local transports it then waits up to the ack
    /// timeout for the recipient's "data acked"; none → [`SocketError::RecipientAckTimeout`].
    pub async fn send_message(&self, msg: &[u8]) -> Result<(), SocketError> {
        let deadline = deadline_after(self.shared.ack_timeout);
        match &self.shared.link {
            Link::Local { .. } => {
                self.write_local(msg, deadline).await?;
                let me = self.clone();
                self.shared
                    .handle
                    .spawn_blocking(move || me.wait_ack_until(deadline))
                    .await
                    .map_err(|e| SocketError::Io(io::Error::other(e)))?
            }
            Link::Ws { .. } => self.send_ws(msg, deadline).await,
        }
    }

    /// The first half of a send for threads outside the runtime: writes the frame (local:
    /// and signals "data ready") without waiting for the ack. Follow it with
    /// [`wait_ack_blocking`](Self::wait_ack_blocking).
    pub fn send_frame_blocking(&self, msg: &[u8]) -> Result<(), SocketError> {
        let deadline = deadline_after(self.shared.ack_timeout);
        match &self.shared.link {
            #[cfg(unix)]
            Link::Local {
                stream, write_lock, ..
            } => {
                self.check_open()?;
                check_len(msg.len())?;
                let guard = match write_lock.clone().try_lock_owned() {
                    Ok(g) => g,
                    Err(_) => block_on(&self.shared.handle, write_lock.clone().lock_owned())?,
                };
                let hdr = header(msg.len());
                let slice_end = deadline.min(Instant::now() + WRITE_SLICE);
                let done = self.write_frame_direct(stream, &hdr, msg, slice_end)?;
                if done == hdr.len() + msg.len() {
                    drop(guard);
                    return self.after_local_write();
                }
                // The peer is slow to make room: hand the rest of the frame to the runtime
                // (it keeps the write lock, so the frame stays whole) and return, so the
                // caller can wait for the ack in short, interruptible slices.
                let mut rest = Vec::with_capacity(hdr.len() + msg.len() - done);
                for part in unwritten(&hdr, msg, done) {
                    rest.extend_from_slice(&part);
                }
                let me = self.clone();
                self.shared.handle.spawn(async move {
                    let _guard = guard;
                    me.finish_frame_in_background(rest, deadline).await;
                });
                Ok(())
            }
            #[cfg(not(unix))]
            Link::Local { .. } => block_on(&self.shared.handle, self.write_local(msg, deadline))?,
            Link::Ws { .. } => block_on(&self.shared.handle, self.send_ws(msg, deadline))?,
        }
    }

    /// Waits up to `timeout` for one "data acked" token: `Ok(true)` when it came (always,
    /// at once, on WebSocket), `Ok(false)` when the time ran out, an error when the
    /// connection ended meanwhile.
    pub fn wait_ack_blocking(&self, timeout: Duration) -> Result<bool, SocketError> {
        match self.wait_ack_until(deadline_after(timeout)) {
            Ok(()) => Ok(true),
            Err(SocketError::RecipientAckTimeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn wait_ack_until(&self, deadline: Instant) -> Result<(), SocketError> {
        let Link::Local { acks, .. } = &self.shared.link else {
            return Ok(());
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if acks.wait_acked(left.min(ACK_POLL))? {
                return Ok(());
            }
            self.check_open()?;
            if left <= ACK_POLL {
                return Err(SocketError::RecipientAckTimeout);
            }
        }
    }

    /// Writes a frame on this thread until it is complete or `slice_end` passes, waiting
    /// for room with poll(2): a large message needs several rounds of "the peer drained the
    /// buffer", and each would otherwise cost two thread hops through the runtime's I/O
    /// thread. Returns how many bytes of header + message were written.
    #[cfg(unix)]
    fn write_frame_direct(
        &self,
        stream: &LocalStream,
        hdr: &[u8; 4],
        msg: &[u8],
        slice_end: Instant,
    ) -> Result<usize, SocketError> {
        let total = hdr.len() + msg.len();
        let mut done = 0;
        while done < total {
            match stream.write_direct(&unwritten(hdr, msg, done)) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = slice_end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    stream
                        .poll_writable(left)
                        .map_err(|e| self.write_failed(e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if done > 0 {
                        self.abandon_stream();
                    }
                    return Err(self.write_failed(e));
                }
            }
        }
        Ok(done)
    }

    /// The rest of a frame that `send_frame_blocking` could not write within its slice:
    /// written through the runtime until the ack deadline, then "data ready" is signalled.
    /// A failure ends the connection (half a frame is on the wire); the caller's ack wait
    /// then sees it.
    #[cfg(unix)]
    async fn finish_frame_in_background(&self, rest: Vec<u8>, deadline: Instant) {
        let Link::Local { stream, .. } = &self.shared.link else {
            return;
        };
        let mut done = 0;
        while done < rest.len() {
            match stream.try_write_vectored(&[IoSlice::new(&rest[done..])]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match tokio::time::timeout_at(deadline.into(), stream.writable()).await {
                        Ok(Ok(())) => {}
                        _ => return self.abandon_stream(),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.abandon_stream(),
            }
        }
        if self.after_local_write().is_err() {
            self.abandon_stream();
        }
    }

    /// The frame could not be handed to the kernel in time.
    fn write_timed_out(&self, written: usize) -> SocketError {
        if written > 0 {
            self.abandon_stream();
        }
        SocketError::RecipientAckTimeout
    }

    /// Half a frame is on the wire: the stream cannot carry another message, so the
    /// connection ends here — like a peer loss, messages already received stay takeable.
    fn abandon_stream(&self) {
        if let Link::Local { stream, .. } = &self.shared.link {
            stream.shutdown();
        }
        self.shared.inbox.end(&connection_lost());
    }

    async fn write_local(&self, msg: &[u8], deadline: Instant) -> Result<(), SocketError> {
        let Link::Local { write_lock, .. } = &self.shared.link else {
            unreachable!("write_local on a WebSocket")
        };
        self.check_open()?;
        check_len(msg.len())?;
        let hdr = header(msg.len());
        let _guard = write_lock.lock().await;
        self.write_frame(&hdr, msg, deadline).await?;
        self.after_local_write()
    }

    /// Writes a whole frame through the runtime's readiness (the async path).
    async fn write_frame(
        &self,
        hdr: &[u8; 4],
        msg: &[u8],
        deadline: Instant,
    ) -> Result<(), SocketError> {
        let Link::Local { stream, .. } = &self.shared.link else {
            unreachable!("write_frame on a WebSocket")
        };
        // If this future is dropped half-way (a timeout or select! around send_message), the
        // guard ends the connection: the next frame must never start inside this one.
        let mut progress = HalfFrameGuard {
            socket: self,
            done: 0,
            total: hdr.len() + msg.len(),
        };
        while progress.done < progress.total {
            let done = progress.done;
            match stream.try_write_vectored(&unwritten(hdr, msg, done)) {
                Ok(n) => progress.done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let ready = tokio::time::timeout_at(deadline.into(), stream.writable()).await;
                    match ready {
                        Ok(r) => r.map_err(|e| self.write_failed(e))?,
                        Err(_) => {
                            progress.total = 0; // handled here, not by the guard
                            return Err(self.write_timed_out(done));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.write_failed(e)),
            }
        }
        Ok(())
    }

    fn after_local_write(&self) -> Result<(), SocketError> {
        let Link::Local { acks, .. } = &self.shared.link else {
            return Ok(());
        };
        acks.signal_ready()?;
        Ok(())
    }

    fn write_failed(&self, e: io::Error) -> SocketError {
        if is_disconnect(&e) {
            connection_lost().into()
        } else {
            e.into()
        }
    }

    async fn send_ws(&self, msg: &[u8], deadline: Instant) -> Result<(), SocketError> {
        let Link::Ws { sink } = &self.shared.link else {
            unreachable!("send_ws on a local link")
        };
        self.check_open()?;
        check_len(msg.len())?;
        let frame = Message::Binary(Bytes::copy_from_slice(msg));
        let sent = tokio::time::timeout_at(deadline.into(), async {
            match sink.lock().await.as_mut() {
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

    /// The next message. After the connection ended, the error that ended it (a
    /// `ConnectionReset` "connection lost" `Io` error for a plain loss), every time.
    pub async fn recv(&self) -> Result<Vec<u8>, SocketError> {
        self.check_pull()?;
        self.shared.inbox.pop().await
    }

    /// [`recv`](Self::recv) for threads outside the runtime: `Ok(None)` when `timeout`
    /// passes first (`None` waits without limit).
    pub fn recv_blocking(&self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>, SocketError> {
        self.check_pull()?;
        #[cfg(unix)]
        if let Link::Local { reader, .. } = &self.shared.link {
            return recv_direct(reader, timeout);
        }
        self.shared.inbox.pop_blocking(timeout)
    }

    fn check_pull(&self) -> Result<(), SocketError> {
        if self.shared.closed.load(Ordering::Acquire) {
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
        // last `Socket` still closes the connection (and so ends this thread).
        let mut take: Box<dyn FnMut() -> Result<Option<Vec<u8>>, SocketError> + Send> =
            match &self.shared.link {
                // On Unix the handler thread reads the socket itself, like `recv_blocking`.
                #[cfg(unix)]
                Link::Local { reader, .. } => {
                    let reader = reader.clone();
                    Box::new(move || recv_direct(&reader, None))
                }
                _ => {
                    let inbox = self.shared.inbox.clone();
                    Box::new(move || inbox.pop_blocking(None))
                }
            };
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

/// Ends the connection when dropped with a frame half written (see `write_frame`).
struct HalfFrameGuard<'a> {
    socket: &'a Socket,
    done: usize,
    total: usize,
}

impl Drop for HalfFrameGuard<'_> {
    fn drop(&mut self) {
        if self.done > 0 && self.done < self.total {
            self.socket.abandon_stream();
        }
    }
}

/// What is left of a frame (`hdr` then `msg`) after `done` bytes were written.
fn unwritten<'a>(hdr: &'a [u8; 4], msg: &'a [u8], done: usize) -> [IoSlice<'a>; 2] {
    if done < hdr.len() {
        [IoSlice::new(&hdr[done..]), IoSlice::new(msg)]
    } else {
        [IoSlice::new(&msg[done - hdr.len()..]), IoSlice::new(&[])]
    }
}

impl Shared {
    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inbox.close();
        if let Some(reader) = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take() {
            reader.abort();
        }
        match &self.link {
            Link::Local { stream, .. } => stream.shutdown(),
            Link::Ws { sink } => {
                // Say goodbye with a Close frame, briefly, in the background; then the
                // sink is dropped and, with the reader's half gone, the TCP stream closes.
                let sink = sink.clone();
                self.handle.spawn(async move {
                    let Some(mut sink) = sink.lock().await.take() else {
                        return;
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
                });
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.close();
    }
}

/// `recv_blocking` on Unix: take the reader's role and read the socket on this thread
/// (see `local_reader`), or, while another thread has it, wait for the inbox.
#[cfg(unix)]
fn recv_direct(side: &ReadSide, timeout: Option<Duration>) -> Result<Option<Vec<u8>>, SocketError> {
    use crate::local_reader::Step;
    /// How long to wait on the inbox before trying again to become the reader.
    const RETRY: Duration = Duration::from_millis(5);
    let deadline = timeout.map(deadline_after);
    let left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let mut frames = Vec::new();
    loop {
        if let Some(next) = side.inbox.try_take() {
            return next.map(Some);
        }
        let Some(mut st) = side.try_lock() else {
            let wait = left().map_or(RETRY, |l| l.min(RETRY));
            if let Some(m) = side.inbox.pop_blocking(Some(wait))? {
                return Ok(Some(m));
            }
            if left().is_some_and(|l| l.is_zero()) {
                return Ok(None);
            }
            continue;
        };
        // Frames are only queued under this lock: an empty inbox now means none is older.
        if !side.inbox.is_empty() {
            side.unlock(st);
            continue;
        }
        let outcome = loop {
            match side.step(&mut st, true, &mut frames) {
                Err(e) => break Err(e),
                Ok(Step::Progress) if !frames.is_empty() => break Ok(true),
                Ok(Step::Progress) => {}
                Ok(Step::WouldBlock) => {
                    let wait = left().unwrap_or(Duration::from_secs(3600));
                    if wait.is_zero() {
                        break Ok(false);
                    }
                    if let Err(e) = side.stream.poll_readable(wait) {
                        break Err(e);
                    }
                }
            }
        };
        let n = frames.len();
        let first = (!frames.is_empty()).then(|| frames.remove(0));
        side.queue(&mut frames);
        let outcome = outcome.and_then(|got| side.acknowledge(n).map(|()| got));
        if let Err(e) = &outcome {
            side.finish(e);
        }
        side.unlock(st);
        return match (first, outcome) {
            (Some(m), _) => Ok(Some(m)),
            (None, Ok(_)) => Ok(None),
            (None, Err(_)) => side.inbox.try_take().map_or(Ok(None), |r| r.map(Some)),
        };
    }
}

/// Says goodbye with a Close frame, briefly; then the sink is dropped and, with the
/// reader's half gone too, the TCP stream closes.
async fn close_ws(sink: Arc<tokio::sync::Mutex<Option<WsSink>>>, frame: Option<CloseFrame>) {
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
async fn read_ws<S>(
    mut stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    inbox: Arc<Inbox>,
    sink: Arc<tokio::sync::Mutex<Option<WsSink>>>,
    keepalive: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
    close_ws(sink, goodbye).await;
}

fn ws_error_to_io(e: WsError) -> io::Error {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => connection_lost(),
        WsError::Io(e) if is_disconnect(&e) => connection_lost(),
        WsError::Io(e) => e,
        WsError::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => connection_lost(),
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

pub(crate) fn ws_error_to_socket_error(e: WsError) -> SocketError {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => connection_lost().into(),
        WsError::Io(e) if is_disconnect(&e) => connection_lost().into(),
        WsError::Io(e) => e.into(),
        other => other.into(),
    }
}
