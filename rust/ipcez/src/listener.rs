//! `Listener`: the server side, on the same endpoint rules as `connect`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::admission::{Backoff, Gate, is_out_of_descriptors};
use crate::budget::ReadBudget;
use crate::error::{SocketError, connection_lost, invalid_input};
use crate::options::{ConnectOptions, ListenOptions};
use crate::readiness::{Poller, ReadyCount};
use crate::reserve::{Reserve, refuse_all, refuse_one};
use crate::resolve::{Resolution, Transport, resolve};
use crate::runtime::{ProcessEpoch, block_on, current_handle};
use crate::socket::Socket;

impl ListenOptions {
    /// Resolves `endpoint` like [`crate::socket_init`] and starts listening on it.
    pub async fn listen(&self, endpoint: &str) -> Result<Listener, SocketError> {
        self.listen_on(&resolve(endpoint)?).await
    }

    /// Listens on an already resolved endpoint (no environment is read).
    pub async fn listen_on(&self, resolution: &Resolution) -> Result<Listener, SocketError> {
        let transport = resolution.transport;
        if transport != Transport::WebSocket
            && !(self.origins.is_empty() && self.subprotocols.is_empty())
        {
            return Err(invalid_input(format!(
                "origins and subprotocols apply to WebSocket listeners only; {} is a {} \
                 endpoint",
                resolution.address,
                transport.as_str()
            )));
        }
        crate::admission::log_cap(self.max_connections, &resolution.address);
        let pending = Arc::new(Pending::default());
        let gate = Gate::new(self.max_connections, &resolution.address, {
            let pending = Arc::downgrade(&pending);
            move || {
                if let Some(p) = pending.upgrade() {
                    p.prune();
                }
            }
        });
        let (acceptor, address, cleanup) = match transport {
            Transport::WebSocket => {
                let settings = crate::ws::ListenSettings {
                    certfile: self.certfile.as_deref(),
                    keyfile: self.keyfile.as_deref(),
                    origins: &self.origins,
                    subprotocols: &self.subprotocols,
                };
                let (acceptor, address) =
                    crate::ws::listen(&resolution.address, settings, gate.clone()).await?;
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
        let wrap = Wrap {
            transport,
            endpoint: address.clone(),
            opts: self.connection.clone(),
            gate,
        };
        // Taken before `listen` returns, not when the loop first runs: by then the
        // descriptors may all be gone.
        let reserve = Reserve::new();
        let task = tokio::spawn(accept_loop(acceptor, wrap, reserve, pending.clone()));
        Ok(Listener {
            shared: Arc::new(ListenerShared {
                address,
                transport,
                pending,
                task: Mutex::new(Some(task)),
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
        crate::runtime::block_on_own(self.listen(endpoint))?
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
    gate: Arc<Gate>,
}

/// Connections accepted in the background, waiting for `accept`. Their number is bounded by
/// the listener's cap (each holds a place), not by this queue.
#[derive(Default)]
struct Pending {
    queue: Mutex<VecDeque<Socket>>,
    /// Wakes an `accept` waiting for a connection.
    ready: tokio::sync::Notify,
    /// How many wait, for `fileno` and pollers.
    count: ReadyCount,
}

impl Pending {
    fn push(&self, socket: Socket) {
        lock(&self.queue).push_back(socket);
        self.count.added();
        self.ready.notify_one();
    }

    /// Counts `n` connections out of the queue.
    fn taken(&self, n: usize) {
        (0..n).for_each(|_| self.count.taken());
    }

    /// The oldest connection worth handing out; spent ones are closed on the way (outside
    /// the lock: the accept loop must not wait for that).
    fn pop(&self) -> Option<Socket> {
        let mut spent = Vec::new();
        let found = {
            let mut queue = lock(&self.queue);
            loop {
                match queue.pop_front() {
                    Some(socket) if socket.is_spent() => spent.push(socket),
                    other => break other,
                }
            }
        };
        self.taken(spent.len() + usize::from(found.is_some()));
        spent.iter().for_each(Socket::close);
        found
    }

    /// Closes the connections that ended before anyone took them, giving back their
    /// places (called when the cap is reached, e.g. under a connect/close flood).
    fn prune(&self) {
        let spent = {
            let mut queue = lock(&self.queue);
            let (spent, live): (VecDeque<Socket>, VecDeque<Socket>) =
                queue.drain(..).partition(Socket::is_spent);
            *queue = live;
            spent
        };
        self.taken(spent.len());
        spent.iter().for_each(Socket::close);
    }

    /// Closes every waiting connection, telling WebSocket peers the listener went away.
    fn close_all(&self) {
        let all: Vec<Socket> = lock(&self.queue).drain(..).collect();
        self.count.end();
        all.iter().for_each(Socket::close_going_away);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Accepts connections, starts each one's reader at once (so messages are read and acked
/// before `accept` is called, up to a pending connection's budget) and queues it for
/// `accept`; ends when the listener closes. A connection over the cap is closed at once;
/// so is one that finds no file descriptor left (see [`make_room`]); another failing
/// accept is retried after a growing pause.
async fn accept_loop(
    mut acceptor: Acceptor,
    wrap: Wrap,
    mut reserve: Reserve,
    pending: Arc<Pending>,
) {
    let Wrap {
        transport,
        endpoint,
        opts,
        gate,
    } = wrap;
    let mut backoff = Backoff::new();
    loop {
        let accepted = match &mut acceptor {
            Acceptor::Local(a) => match a.accept().await {
                // Dropped when still over the cap: the connection closes at once.
                Ok((stream, acks)) => Ok(gate.admit_soon("a local peer").await.map(|permit| {
                    let gated = (ReadBudget::pending(), Some(permit));
                    let name = (transport, endpoint.clone());
                    Socket::from_local(name, stream, acks, gated, &opts)
                })),
                Err(e) => Err(e),
            },
            Acceptor::Ws(a) => a.accept().await.map(|(ws, permit)| {
                Some(Socket::from_ws(endpoint.clone(), ws, Some(permit), &opts))
            }),
        };
        match accepted {
            Ok(admitted) => {
                backoff.succeeded(&endpoint);
                match admitted {
                    Some(socket) => pending.push(socket),
                    // Refused at the cap: let the connections that are closing finish
                    // (giving their places back) before turning the next one away.
                    None => tokio::task::yield_now().await,
                }
            }
            Err(e) => {
                let pause = backoff.failed(&e, &endpoint);
                if !is_out_of_descriptors(&e) {
                    tokio::time::sleep(pause).await;
                    continue;
                }
                match make_room(&mut acceptor, &mut reserve).await {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => tokio::time::sleep(pause).await,
                }
            }
        }
    }
}

/// Out of file descriptors, the newcomers in the backlog would wait there until their own
/// timeouts. Instead a WebSocket handshake slower than the others makes way; failing that,
/// the spare descriptor is lent to take the newcomers and close them at once, so they learn
/// at once. Returns how long to wait before accepting again (zero: at once), or `None`
/// when nothing could be done (no spare): then the caller backs off.
async fn make_room(acceptor: &mut Acceptor, reserve: &mut Reserve) -> Option<Duration> {
    let refused = match acceptor {
        Acceptor::Ws(a) => match a.make_room().await {
            crate::ws::Room::Made => return Some(Duration::ZERO),
            crate::ws::Room::WaitFor(wait) => return Some(wait),
            crate::ws::Room::None => reserve.lend(|| a.refuse_waiting())?,
        },
        Acceptor::Local(a) => reserve.lend(|| refuse_all(|| refuse_one(a.accept())))?,
    };
    if refused > 0 {
        log::debug!("out of file descriptors: {refused} new connection(s) refused at once");
    }
    // Nothing more waits now: the next accept waits for the next newcomer, no spinning.
    Some(Duration::ZERO)
}

struct ListenerShared {
    address: String,
    transport: Transport,
    pending: Arc<Pending>,
    /// The accept loop; taken by `close`.
    task: Mutex<Option<JoinHandle<()>>>,
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
    /// Connections that ended before they were taken, with nothing to read, are skipped.
    pub async fn accept(&self) -> Result<Socket, SocketError> {
        self.shared.epoch.check("listener")?;
        loop {
            let closing = self.shared.closing.notified();
            let ready = self.shared.pending.ready.notified();
            tokio::pin!(closing, ready);
            closing.as_mut().enable();
            ready.as_mut().enable();
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(connection_lost().into());
            }
            if let Some(socket) = self.shared.pending.pop() {
                socket.mark_accepted();
                return Ok(socket);
            }
            tokio::select! {
                biased;
                () = closing => return Err(connection_lost().into()),
                () = ready => {}
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

    /// The next connection if one is waiting, without blocking: `Ok(None)` when none is.
    /// After close: connection lost.
    pub fn try_accept(&self) -> Result<Option<Socket>, SocketError> {
        self.shared.epoch.check("listener")?;
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(connection_lost().into());
        }
        let socket = self.shared.pending.pop();
        if let Some(socket) = &socket {
            socket.mark_accepted();
        }
        Ok(socket)
    }

    /// A descriptor that is readable while a connection waits to be accepted (or the
    /// listener is closed): for `select`/`poll`/`epoll` and event loops. Owned by the
    /// listener; valid until its last clone is dropped. Unix only.
    #[cfg(unix)]
    pub fn fileno(&self) -> std::io::Result<std::os::fd::RawFd> {
        self.shared.pending.count.fileno()
    }

    /// Reports to `poller` as `token` whenever a connection comes to wait where none waited
    /// (or the listener closes), and at once if one already waits. Then take connections
    /// with [`try_accept`](Self::try_accept) until it gives `None`.
    pub fn watch(&self, poller: &Poller, token: u64) {
        self.shared.pending.count.watch(poller, token);
    }

    /// Stops accepting (idempotent): removes the socket file and unlinks the ack names of a
    /// Unix endpoint, and closes the connections nobody accepted (a WebSocket peer is told
    /// 1001, going away). Connections already accepted stay open.
    pub fn close(&self) {
        self.shared.close();
    }
}

impl ListenerShared {
    fn close(&self) {
        if !self.epoch.is_current() || self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(task) = lock(&self.task).take() {
            task.abort();
            // Off the runtime, wait until the loop (with the listening socket) is gone, so a
            // client connecting after `close` returned is refused, not accepted and reset.
            if Handle::try_current().is_err() {
                self.handle.block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
                });
            }
        }
        self.pending.count.end();
        self.closing.notify_waiters();
        if let Some(cleanup) = lock(&self.cleanup).take() {
            cleanup.run();
        }
        self.pending.close_all();
    }
}

impl Drop for ListenerShared {
    fn drop(&mut self) {
        self.close();
    }
}
