//! `NativeSocket`: one core connection as the JavaScript `Socket` class sees it.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use napi::bindgen_prelude::{Buffer, Either, Object, Uint8Array};
use napi::{Env, JsDeferred, Result};
use napi_derive::napi;
use tokio::sync::mpsc;

use crate::deliver::{Callback, Channel, Closable};
use crate::errors::ErrorInfo;

/// Messages a batch carries at most, and the bytes past which it stops growing: a
/// batch costs one call into JavaScript however many messages it holds.
const BATCH_MESSAGES: usize = 256;
const BATCH_BYTES: usize = 1 << 20;

/// What one wait for messages gives JavaScript: messages in order, or the end.
#[napi(object, object_from_js = false)]
pub struct Messages {
    /// The messages, oldest first (empty when `error` is set).
    pub items: Vec<Buffer>,
    /// Why the connection ended; after it no message comes.
    pub error: Option<ErrorInfo>,
}

struct Cell(ipcez::Socket);

impl Closable for Cell {
    fn close_now(&self) {
        self.0.close();
    }
}

/// The promise of one `send`, settled with `null` or the failure.
type Settle = Box<dyn FnOnce(Env) -> Result<Option<ErrorInfo>>>;
type Pending = (Vec<u8>, JsDeferred<Option<ErrorInfo>, Settle>);

/// A connection of the core library (the JavaScript `Socket` wraps it).
#[napi]
pub struct NativeSocket {
    cell: Arc<Cell>,
    channel: Channel<Messages>,
    /// Sends in call order, to the socket's sending task (started by the first send).
    sends: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
    /// Sends queued and not finished: `try_send` may go first only when there are none.
    queued: Arc<AtomicUsize>,
}

impl NativeSocket {
    pub(crate) fn new(socket: ipcez::Socket) -> Self {
        NativeSocket {
            cell: Arc::new(Cell(socket)),
            channel: Channel::default(),
            sends: Mutex::new(None),
            queued: Arc::default(),
        }
    }

    /// Queues a send behind the earlier ones. One task per socket sends them in call order
    /// (each waiting for its ack), as `net` writes in call order; separate tasks would race.
    fn queue_send(&self, pending: Pending) {
        let mut sends = self.sends.lock().unwrap_or_else(|p| p.into_inner());
        let tx = sends.get_or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
            let socket = self.socket().clone();
            let queued = self.queued.clone();
            ipcez::runtime().spawn(async move {
                while let Some((msg, deferred)) = rx.recv().await {
                    let outcome = socket.send_message(&msg).await.err().map(ErrorInfo::from);
                    queued.fetch_sub(1, Ordering::AcqRel);
                    deferred.resolve(Box::new(move |_| Ok(outcome)));
                }
            });
            tx
        });
        self.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError((_, deferred))) = tx.send(pending) {
            // The sending task is gone (the runtime shut down): the connection is too.
            let lost = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection lost");
            let info = ErrorInfo::from(ipcez::SocketError::Io(lost));
            deferred.resolve(Box::new(move |_| Ok(Some(info))));
        }
    }

    fn socket(&self) -> &ipcez::Socket {
        &self.cell.0
    }
}

impl Drop for NativeSocket {
    /// Collected by the garbage collector without `close()`: close it now.
    fn drop(&mut self) {
        self.cell.0.close();
    }
}

/// A message as a Node `Buffer` without copying it. (An empty `Vec` has no allocation of
/// its own, and napi-rs refuses two buffers over one pointer: give it a real one.)
fn to_buffer(msg: Vec<u8>) -> Buffer {
    if msg.is_empty() {
        return Vec::with_capacity(1).into();
    }
    msg.into()
}

#[napi]
impl NativeSocket {
    /// Sets the function messages go to; from then on the socket keeps the process alive
    /// until it is closed or `unref()`'d, and closes with its environment (worker).
    #[napi(catch_unwind, ts_args_type = "onMessages: (batch: Messages) => void")]
    pub fn start(&mut self, env: Env, on_messages: Callback<Messages>) -> Result<()> {
        let owner: Weak<dyn Closable> = Arc::downgrade(&self.cell) as Weak<dyn Closable>;
        self.channel.start(&env, on_messages, owner)
    }

    /// Asks for the next messages: one call of the `start` function follows, with every
    /// message already waiting (up to a batch) or with the end. Does nothing while a pull
    /// is still running.
    #[napi(catch_unwind)]
    pub fn pull(&self) {
        let socket = self.socket().clone();
        self.channel.pull(async move {
            match socket.recv().await {
                Ok(first) => Messages {
                    items: more(&socket, first),
                    error: None,
                },
                Err(e) => Messages {
                    items: Vec::new(),
                    error: Some(e.into()),
                },
            }
        });
    }

    /// Sends `data`; the promise gives `null` once the core's send completed (the ack came,
    /// on a local transport) or the failure.
    #[napi(catch_unwind, ts_return_type = "Promise<ErrorInfo | null>")]
    pub fn send<'env>(&self, env: &'env Env, data: Uint8Array) -> Result<Object<'env>> {
        let (deferred, promise) = env.create_deferred()?;
        // Copied: the caller may reuse its buffer as soon as `send` returns.
        self.queue_send((data.to_vec(), deferred));
        Ok(promise)
    }

    /// A WebSocket send done at once on this thread, when nothing is queued before it and
    /// the connection can take it without waiting (the usual case): `null` when sent,
    /// the failure, or `false` when `send` must be used (always on local transports,
    /// whose sends wait for an ack).
    #[napi(catch_unwind, ts_return_type = "ErrorInfo | null | false")]
    pub fn try_send(&self, data: Uint8Array) -> Either<Option<ErrorInfo>, bool> {
        let socket = self.socket();
        if socket.transport() != ipcez::Transport::WebSocket
            || self.queued.load(Ordering::Acquire) != 0
        {
            return Either::B(false);
        }
        match socket.start_send(&data) {
            Ok(true) => Either::A(None),
            Ok(false) => Either::B(false),
            Err(e) => Either::A(Some(e.into())),
        }
    }

    /// Closes the connection (idempotent). A pull answers at once with the end.
    #[napi(catch_unwind)]
    pub fn close(&mut self) -> Result<()> {
        self.socket().close();
        Ok(())
    }

    /// JavaScript got the end (the error that ended it): stop keeping the process alive.
    #[napi(catch_unwind)]
    pub fn release(&mut self, env: Env) -> Result<()> {
        self.channel.end(&env)
    }

    /// Whether an open socket keeps the process alive (`ref()` / `unref()`).
    #[napi(catch_unwind)]
    pub fn set_ref(&mut self, env: Env, keep_alive: bool) -> Result<()> {
        self.channel.set_unrefd(&env, !keep_alive)
    }

    /// True once closed or lost.
    #[napi(catch_unwind, getter)]
    pub fn closed(&self) -> bool {
        self.socket().is_closed()
    }

    /// `unix`, `pipe` or `websocket`.
    #[napi(catch_unwind, getter)]
    pub fn transport(&self) -> String {
        self.socket().transport().as_str().to_string()
    }

    /// The endpoint connected to (for an accepted socket: the listener's address).
    #[napi(catch_unwind, getter)]
    pub fn endpoint(&self) -> String {
        self.socket().endpoint().to_string()
    }

    /// The WebSocket subprotocol agreed on, or null.
    #[napi(catch_unwind, getter)]
    pub fn subprotocol(&self) -> Option<String> {
        self.socket().subprotocol().map(str::to_string)
    }

    /// The ack timeout in milliseconds.
    #[napi(catch_unwind, getter)]
    pub fn ack_timeout(&self) -> f64 {
        self.socket().ack_timeout().as_secs_f64() * 1000.0
    }
}

/// `first` and whatever else is already waiting, up to a batch.
fn more(socket: &ipcez::Socket, first: Vec<u8>) -> Vec<Buffer> {
    let mut bytes = first.len();
    let mut batch = vec![to_buffer(first)];
    while batch.len() < BATCH_MESSAGES && bytes < BATCH_BYTES {
        match poll_once(socket.recv()) {
            Some(Ok(msg)) => {
                bytes += msg.len();
                batch.push(to_buffer(msg));
            }
            _ => break,
        }
    }
    batch
}

/// Polls `f` once: a message already queued is taken, none is waited for. (`recv` takes a
/// message only when it completes, so giving up loses nothing; a zero timeout instead
/// would wait for the next timer tick, a millisecond.)
fn poll_once<F: Future>(f: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}
