//! `Listener`: the server side, on the same endpoint rules as `connect`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{SocketError, connection_lost};
use crate::resolve::{Resolution, Transport, resolve};
use crate::runtime::{block_on, current_handle};
use crate::socket::{ConnectOptions, Socket};

/// Connections accepted in the background but not yet taken by `accept`.
const ACCEPT_BACKLOG: usize = 128;

/// Settings of a listener. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Permission bits of a Unix socket file (default `0o600`, owner only).
    pub mode: u32,
    /// PEM certificate chain, required for `wss://` listening.
    pub certfile: Option<PathBuf>,
    /// PEM private key, required for `wss://` listening.
    pub keyfile: Option<PathBuf>,
    /// Settings of each accepted connection.
    pub connection: ConnectOptions,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            mode: 0o600,
            certfile: None,
            keyfile: None,
            connection: ConnectOptions::default(),
        }
    }
}

impl ListenOptions {
    /// Resolves `endpoint` like [`crate::socket_init`] and starts listening on it.
    pub async fn listen(&self, endpoint: &str) -> Result<Listener, SocketError> {
        self.listen_on(&resolve(endpoint)?).await
    }

    /// Listens on an already resolved endpoint (no environment is read).
    pub async fn listen_on(&self, resolution: &Resolution) -> Result<Listener, SocketError> {
        let resolution = resolution.clone();
        let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
        let accepted = Accepted { tx };
        let (task, address, cleanup) = match resolution.transport {
            Transport::WebSocket => {
                let (task, address) =
                    crate::ws::listen(&resolution.address, self, accepted).await?;
                (task, address, None)
            }
            #[cfg(unix)]
            Transport::Unix => {
                let (task, cleanup) = crate::os::unix::uds::listen(
                    &resolution.address,
                    self.mode,
                    &self.connection,
                    accepted,
                )
                .await?;
                (task, resolution.address, Some(cleanup))
            }
            #[cfg(windows)]
            Transport::NamedPipe => {
                let task = crate::os::windows::pipe::listen(
                    &resolution.address,
                    &self.connection,
                    accepted,
                )
                .await?;
                (task, resolution.address, None)
            }
            #[allow(unreachable_patterns)]
            other => {
                return Err(SocketError::UnsupportedCombination(
                    "local".into(),
                    other.as_str().into(),
                ));
            }
        };
        Ok(Listener {
            shared: Arc::new(ListenerShared {
                address,
                transport: resolution.transport,
                incoming: tokio::sync::Mutex::new(rx),
                task,
                cleanup: Mutex::new(cleanup),
                closed: AtomicBool::new(false),
                closing: tokio::sync::Notify::new(),
                handle: current_handle(),
            }),
        })
    }

    /// [`listen`](Self::listen) for threads outside any async runtime.
    pub fn listen_blocking(&self, endpoint: &str) -> Result<Listener, SocketError> {
        block_on(crate::runtime::runtime().handle(), self.listen(endpoint))?
    }
}

/// The accept loop's end of the queue of accepted connections.
pub(crate) struct Accepted {
    tx: mpsc::Sender<Socket>,
}

impl Accepted {
    /// Hands a new connection to `accept`; false once the listener is closed.
    pub(crate) async fn deliver(&self, socket: Socket) -> bool {
        self.tx.send(socket).await.is_ok()
    }
}

#[cfg(unix)]
type Cleanup = crate::os::unix::uds::Cleanup;
#[cfg(not(unix))]
type Cleanup = ();

struct ListenerShared {
    address: String,
    transport: Transport,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Socket>>,
    task: JoinHandle<()>,
    cleanup: Mutex<Option<Cleanup>>,
    closed: AtomicBool,
    /// Wakes pending `accept` calls when the listener closes.
    closing: tokio::sync::Notify,
    handle: Handle,
}

/// Accepts connections on one endpoint. Cheap to clone; closes when
/// [`close`](Listener::close) is called or the last clone is dropped.
#[derive(Clone)]
pub struct Listener {
    shared: Arc<ListenerShared>,
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

    /// Stops accepting (idempotent): removes the socket file and unlinks the ack names of a
    /// Unix endpoint. Connections already accepted stay open.
    pub fn close(&self) {
        self.shared.close();
    }
}

impl ListenerShared {
    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.task.abort();
        self.closing.notify_waiters();
        if let Some(cleanup) = self
            .cleanup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            #[cfg(unix)]
            cleanup.run();
            #[cfg(not(unix))]
            let () = cleanup;
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
