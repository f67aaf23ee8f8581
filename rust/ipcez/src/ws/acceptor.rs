//! The listening side: binds `host:port` and hands up upgraded WebSockets for the URL's
//! path. Every handshake runs in a task of its own, so a slow or hostile client holds up
//! nobody; each counts against the listener's connection cap from its first byte, and
//! reads no more than a pending connection's budget. Handshakes still under way belong to
//! the library: when a newcomer finds no place under the cap or no file descriptor, the
//! oldest one that has taken longer than [`SHED_AFTER`] is dropped to make room (slowloris).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::policy::Policy;
use super::server::upgrade;
use super::stream::WsStream;
use super::tcp::DirectTcp;
use super::tls::server_tls;
use super::url::WsUrl;
use crate::admission::{Gate, Permit};
use crate::budget::{Budgeted, ReadBudget};
use crate::error::SocketError;

/// How long an incoming connection may take to finish its TLS and upgrade handshakes.
const SERVER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Upgraded connections not yet taken by `accept`.
const UPGRADED_BACKLOG: usize = 16;

/// A handshake older than this may be dropped to make room for a newcomer: on loopback
/// and LANs a real client finishes in milliseconds.
pub(crate) const SHED_AFTER: Duration = Duration::from_millis(200);

/// An upgraded connection with its place under the listener's cap.
type Upgraded = (WsStream, Permit);

/// Accepts TCP connections and upgrades them.
pub(crate) struct Acceptor {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    policy: Policy,
    gate: Arc<Gate>,
    upgraded_tx: mpsc::Sender<Upgraded>,
    upgraded: mpsc::Receiver<Upgraded>,
    handshakes: Arc<Handshakes>,
}

/// The handshakes under way, oldest first (by number), each with its task.
#[derive(Default)]
struct Handshakes {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, (Instant, tokio::task::JoinHandle<()>)>>,
}

/// Takes a finished (or dropped) handshake off the list.
struct Running(Arc<Handshakes>, u64);

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.0.running).remove(&self.1);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What making room for a newcomer came to.
pub(crate) enum Room {
    /// A slow handshake was dropped: its descriptor and place are free.
    Made,
    /// Handshakes are under way but none is slow yet: try again after this long.
    WaitFor(Duration),
    /// No handshake to drop.
    None,
}

/// What a WebSocket listener is told besides its URL.
pub(crate) struct ListenSettings<'a> {
    pub(crate) certfile: Option<&'a Path>,
    pub(crate) keyfile: Option<&'a Path>,
    pub(crate) origins: &'a [String],
    pub(crate) subprotocols: &'a [String],
}

/// Binds the host and port of `url` (the certificate and key are needed for `wss://`).
/// Returns the acceptor and the URL it serves, with the real port when port 0 was asked.
pub(crate) async fn listen(
    url: &str,
    settings: ListenSettings<'_>,
    gate: Arc<Gate>,
) -> Result<(Acceptor, String), SocketError> {
    let parsed = WsUrl::parse(url)?;
    let tls = if parsed.secure {
        Some(server_tls(settings.certfile, settings.keyfile)?)
    } else {
        None
    };
    let tcp = TcpListener::bind((parsed.host.as_str(), parsed.port))
        .await
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}:{}: {e}", parsed.host, parsed.port),
            )
        })?;
    let local: SocketAddr = tcp.local_addr()?;
    let scheme = if parsed.secure { "wss" } else { "ws" };
    let address = format!("{scheme}://{local}{}", parsed.path);
    let (upgraded_tx, upgraded) = mpsc::channel(UPGRADED_BACKLOG);
    let policy = Policy {
        path: parsed.path.into(),
        origins: settings.origins.into(),
        subprotocols: settings.subprotocols.into(),
        secure: parsed.secure,
    };
    let acceptor = Acceptor {
        tcp,
        tls,
        policy,
        gate,
        upgraded_tx,
        upgraded,
        handshakes: Arc::default(),
    };
    Ok((acceptor, address))
}

impl Acceptor {
    /// The next upgraded connection (cancel-safe). An error is one failed TCP accept (out
    /// of file descriptors and the like); failed handshakes are logged and dropped.
    pub(crate) async fn accept(&mut self) -> io::Result<Upgraded> {
        loop {
            tokio::select! {
                // Never `None`: this acceptor holds a sender.
                Some(upgraded) = self.upgraded.recv() => return Ok(upgraded),
                tcp = self.tcp.accept() => {
                    let (tcp, peer) = tcp?;
                    // At the cap a slow handshake makes way; else the newcomer is dropped
                    // here, so closed at once (and logged by the gate), and the connections
                    // that are closing get to finish first.
                    let mut permit = self.gate.try_admit();
                    if permit.is_none() && matches!(self.make_room().await, Room::Made) {
                        permit = self.gate.try_admit();
                    }
                    match permit.or_else(|| self.gate.admit(&peer.to_string())) {
                        Some(permit) => self.start_handshake(tcp, peer, permit),
                        None => {
                            drop(tcp);
                            tokio::task::yield_now().await;
                        }
                    }
                }
            }
        }
    }

    /// Drops the oldest handshake under way if it has taken longer than [`SHED_AFTER`],
    /// and waits until its descriptor is closed and its place given back.
    pub(crate) async fn make_room(&self) -> Room {
        let oldest = {
            let mut running = lock(&self.handshakes.running);
            let Some(entry) = running.first_entry() else {
                return Room::None;
            };
            let age = entry.get().0.elapsed();
            if age < SHED_AFTER {
                return Room::WaitFor(SHED_AFTER - age);
            }
            entry.remove()
        };
        let (_, task) = oldest;
        task.abort();
        let _ = task.await; // resolves once the task, with its stream and permit, is dropped
        log::info!("dropped a WebSocket handshake slower than {SHED_AFTER:?} to make room");
        Room::Made
    }

    /// Takes the TCP connections waiting in the backlog and closes them at once, before any
    /// handshake (for when no descriptor is left for them): how many there were.
    pub(crate) fn refuse_waiting(&self) -> usize {
        crate::reserve::refuse_all(|| crate::reserve::refuse_one(self.tcp.accept()))
    }

    fn start_handshake(&self, tcp: tokio::net::TcpStream, peer: SocketAddr, permit: Permit) {
        let _ = tcp.set_nodelay(true);
        let (tls, policy, done) = (
            self.tls.clone(),
            self.policy.clone(),
            self.upgraded_tx.clone(),
        );
        let handshakes = self.handshakes.clone();
        let id = handshakes.next.fetch_add(1, Ordering::Relaxed);
        // Listed before the task can run (and take itself off the list at its end).
        let mut running = lock(&handshakes.running);
        let entry = Running(handshakes.clone(), id);
        let task = tokio::spawn(async move {
            let _entry = entry;
            let peer = peer.to_string();
            let budget = ReadBudget::pending();
            let tcp = match DirectTcp::new(tcp) {
                Ok(tcp) => tcp,
                Err(e) => return log::debug!("connection from {peer} dropped: {e}"),
            };
            let fd = tcp.fd();
            let tcp = Budgeted::new(tcp, budget.clone());
            let handshake = async {
                match tls {
                    Some(tls) => {
                        let tls = tls.accept(tcp).await.inspect_err(|e| {
                            log::info!("TLS handshake with {peer} failed: {e}");
                        })?;
                        upgrade(tls, &policy, (peer.clone(), fd), budget).await
                    }
                    None => upgrade(tcp, &policy, (peer.clone(), fd), budget).await,
                }
            };
            match tokio::time::timeout(SERVER_HANDSHAKE_TIMEOUT, handshake).await {
                // Fails only once the listener is gone; the connection closes with it.
                Ok(Ok(ws)) => drop(done.send((ws, permit)).await),
                Ok(Err(e)) => log::debug!("handshake with {peer} failed: {e}"),
                Err(_) => log::info!(
                    "handshake with {peer} did not finish within {SERVER_HANDSHAKE_TIMEOUT:?}; \
                     closed"
                ),
            }
        });
        running.insert(id, (Instant::now(), task));
    }
}
