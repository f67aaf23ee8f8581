//! `Listener`: the server side, on the same endpoint rules as `connect`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{SocketError, connection_lost};
use crate::options::{ConnectOptions, ListenOptions};
use crate::readiness::{Poller, ReadyCount};
use crate::resolve::{Resolution, Transport, resolve};
use crate::runtime::{ProcessEpoch, block_on, current_handle};
use crate::socket::Socket;

/// Connections accepted in the background but not yet taken by `accept`.
const ACCEPT_BACKLOG: usize = 128;

impl ListenOptions {
    /// Resolves `endpoint` like [`crate::socket_init`] and starts listening on it.
    pub async fn listen(&self, endpoint: &str) -> Result<Listener, SocketError> {
        self.listen_on(&resolve(endpoint)?).await
    }

    /// Listens on an already resolved endpoint (no environment is read).
    pub async fn listen_on(&self, resolution: &Resolution) -> Result<Listener, SocketError> {
        let transport = resolution.transport;
        let (acceptor, address, cleanup) = match transport {
            Transport::WebSocket => {
                let (certfile, keyfile) = (self.certfile.as_deref(), self.keyfile.as_deref());
                let (acceptor, address) =
                    crate::ws::listen(&resolution.address, certfile, keyfile).await?;
                (Acceptor::Ws(acceptor), address, None)
            }
            local if local == crate::os::TRANSPORT => {
                let (acceptor, cleanup) = crate::os::listen(&resolution.address, self.mode).await?;
                let address = resolution.address.clone();
                (Acceptor::Local(acceptor), address, Some(cleanup))
            }
            other => {
                return Err(SocketError::UnsupportedCombination(
                    "local".into(),
                    other.as_str().into(),
                ));
            }
        };
        let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
        let wrap = Wrap {
            transport,
            endpoint: address.clone(),
            opts: self.connection.clone(),
        };
        let pending = Arc::new(ReadyCount::default());
        let task = tokio::spawn(accept_loop(acceptor, wrap, tx, pending.clone()));
        Ok(Listener {
            shared: Arc::new(ListenerShared {
                address,
                transport,
                incoming: tokio::sync::Mutex::new(rx),
                pending,
                task,
                cleanup: Mutex::new(cleanup),
                closed: AtomicBool::new(false),
                closing: tokio::sync::Notify::new(),
                handle: current_handle(),
                epoch: ProcessEpoch::current(),
            }),
        })
    }

    /// [`listen`](Self::listen) for threads outside any async runtime.
    pub fn listen_blocking(&self, endpoint: &str) -> Result<Listener, SocketError> {
        block_on(crate::runtime::runtime().handle(), self.listen(endpoint))?
    }
}

/// Where new connections come from: a transport's acceptor.
enum Acceptor {
    Local(crate::os::Acceptor),
    Ws(crate::ws::Acceptor),
}

/// What every accepted connection becomes a `Socket` with.
struct Wrap {
    transport: Transport,
    endpoint: String,
    opts: ConnectOptions,
}

/// Accepts connections, starts each one's reader at once (so messages are read and acked
/// before `accept` is called) and queues it for `accept`; ends when the listener closes.
async fn accept_loop(
    mut acceptor: Acceptor,
    wrap: Wrap,
    tx: mpsc::Sender<Socket>,
    pending: Arc<ReadyCount>,
) {
    let Wrap {
        transport,
        endpoint,
        opts,
    } = wrap;
    loop {
        let socket = match &mut acceptor {
            Acceptor::Local(a) => a.accept().await.map(|(stream, acks)| {
                Socket::from_local(transport, endpoint.clone(), stream, acks, &opts)
            }),
            Acceptor::Ws(a) => a
                .accept()
                .await
                .map(|ws| Socket::from_ws(endpoint.clone(), ws, &opts)),
        };
        match socket {
            Ok(socket) => {
                if tx.send(socket).await.is_err() {
                    break;
                }
                pending.added();
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

struct ListenerShared {
    address: String,
    transport: Transport,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Socket>>,
    /// Connections waiting in `incoming`, for `fileno` and pollers.
    pending: Arc<ReadyCount>,
    task: JoinHandle<()>,
    cleanup: Mutex<Option<crate::os::Cleanup>>,
    closed: AtomicBool,
    /// Wakes pending `accept` calls when the listener closes.
    closing: tokio::sync::Notify,
    handle: Handle,
    /// The process the listener belongs to: a forked child leaves it alone.
    epoch: ProcessEpoch,
}

/// Accepts connections on one endpoint. Cheap to clone; closes when
/// [`close`](Listener::close) is called or the last clone is dropped.
///
/// After a `fork()`, a listener made by the parent is left to the parent: in the child
/// `accept` fails, and `close` and dropping it leave the socket file and semaphores alone.
#[derive(Clone)]
pub struct Listener {
    shared: Arc<ListenerShared>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !self.shared.epoch.is_current() {
            // A forked child: see `Socket`'s drop. Kept alive forever instead.
            std::mem::forget(Arc::clone(&self.shared));
        }
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.shared.address)
            .field("transport", &self.shared.transport)
            .finish()
    }
}

impl Listener {
    /// The address it listens on: the socket path, the pipe, or the `ws://` URL with the
    /// real port when port 0 was asked.
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// The transport it listens on.
    pub fn transport(&self) -> Transport {
        self.shared.transport
    }

    /// The next connection. After [`close`](Self::close): a connection-lost `Io` error.
    pub async fn accept(&self) -> Result<Socket, SocketError> {
        self.shared.epoch.check("listener")?;
        let closing = self.shared.closing.notified();
        tokio::pin!(closing);
        closing.as_mut().enable();
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(connection_lost().into());
        }
        let next = async { self.shared.incoming.lock().await.recv().await };
        let socket = tokio::select! {
            biased;
            () = closing => None,
            socket = next => socket,
        };
        if socket.is_some() {
            self.shared.pending.taken();
        }
        match socket {
            Some(socket) if !self.shared.closed.load(Ordering::Acquire) => Ok(socket),
            other => {
                // Closed meanwhile: this connection, and any still queued, go with it
                // (`close` cannot drain the queue while an accept holds it).
                if let Some(socket) = other {
                    socket.close();
                }
                self.shared.close_queued();
                Err(connection_lost().into())
            }
        }
    }

    /// [`accept`](Self::accept) for threads outside the runtime; `Ok(None)` when `timeout`
    /// passes first (`None` waits without limit).
    pub fn accept_blocking(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<Socket>, SocketError> {
        self.shared.epoch.check("listener")?;
        block_on(&self.shared.handle, async {
            match timeout {
                None => self.accept().await.map(Some),
                Some(t) => match tokio::time::timeout(t, self.accept()).await {
                    Ok(r) => r.map(Some),
                    Err(_) => Ok(None),
                },
            }
        })?
    }

    /// The next connection if one is waiting, without blocking: `Ok(None)` when none is
    /// (or another thread is in `accept` right now). After close: connection lost.
    pub fn try_accept(&self) -> Result<Option<Socket>, SocketError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(connection_lost().into());
        }
        let Ok(mut rx) = self.shared.incoming.try_lock() else {
            return Ok(None);
        };
        match rx.try_recv() {
            Ok(socket) => {
                self.shared.pending.taken();
                Ok(Some(socket))
            }
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(connection_lost().into()),
        }
    }

    /// A descriptor that is readable while a connection waits to be accepted (or the
    /// listener is closed): for `select`/`poll`/`epoll` and event loops. Owned by the
    /// listener; valid until its last clone is dropped. Unix only.
    #[cfg(unix)]
    pub fn fileno(&self) -> std::io::Result<std::os::fd::RawFd> {
        self.shared.pending.fileno()
    }

    /// Reports to `poller` as `token` whenever a connection comes to wait where none waited
    /// (or the listener closes), and at once if one already waits. Then take connections
    /// with [`try_accept`](Self::try_accept) until it gives `None`.
    pub fn watch(&self, poller: &Poller, token: u64) {
        self.shared.pending.watch(poller, token);
    }

    /// Stops accepting (idempotent): removes the socket file and unlinks the ack names of a
    /// Unix endpoint. Connections already accepted stay open.
    pub fn close(&self) {
        self.shared.close();
    }
}

impl ListenerShared {
    fn close(&self) {
        if !self.epoch.is_current() || self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.task.abort();
        self.pending.end();
        self.closing.notify_waiters();
        if let Some(cleanup) = self
            .cleanup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            cleanup.run();
        }
        self.close_queued();
    }

    /// Closes connections accepted in the background that nobody took (if no `accept`
    /// holds the queue right now; that `accept` does it when it wakes up).
    fn close_queued(&self) {
        if let Ok(mut rx) = self.incoming.try_lock() {
            rx.close();
            while let Ok(socket) = rx.try_recv() {
                socket.close();
            }
        }
    }
}

impl Drop for ListenerShared {
    fn drop(&mut self) {
        self.close();
    }
}
