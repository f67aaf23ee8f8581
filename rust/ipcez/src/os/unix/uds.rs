//! Unix domain socket client and listener: each gives connected streams with the
//! endpoint's ack signals.

use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio::net::{UnixListener, UnixStream};

use super::bind::{BoundFile, bind_exclusive, clear_stale, listen_error, with_path};
use super::lock::{PathLock, lock_path};
use super::sem::{FileId, NamedSemaphore};
use super::sockpath::SocketPath;
use super::stream::UdsStream;
use crate::ack::AckPair;
use crate::error::SocketError;
use crate::resolve::{canonical_path, unix_ack_names};

/// Mode of ack semaphores a client creates, where a custom listener has not: owner only
/// (an existing one is opened as it is, never widened).
const SEM_MODE: u32 = 0o600;

/// How long a connect waits for room in a busy listener's backlog.
const BACKLOG_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects like a blocking `connect(2)` would: while the listener's backlog is full
/// (EAGAIN, e.g. during a flood of connections), tries again every few milliseconds, for
/// up to [`BACKLOG_WAIT`].
async fn connect_waiting(path: &str) -> io::Result<UnixStream> {
    let deadline = tokio::time::Instant::now() + BACKLOG_WAIT;
    let address = SocketPath::new(Path::new(path))?;
    loop {
        match UnixStream::connect(address.address()).await {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{e}: the listener's backlog stayed full for {BACKLOG_WAIT:?}"),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            other => return other,
        }
    }
}

/// How long a listener waits for another one starting on the same path (a setup takes
/// milliseconds).
const SETUP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects to the socket at `path` and opens its ack signals.
pub(crate) async fn connect(path: &str) -> Result<(UdsStream, Arc<AckPair>), SocketError> {
    let stream = connect_waiting(path)
        .await
        .map_err(|e| with_path(e, "cannot connect to the Unix socket", path))?;
    // After connecting: the socket file exists, so its canonical path is known, and the
    // listener made the names before it bound.
    let names = unix_ack_names(Path::new(path))?;
    let acks = Arc::new(AckPair::new(
        NamedSemaphore::open(&names.0, SEM_MODE)?,
        NamedSemaphore::open(&names.1, SEM_MODE)?,
    ));
    Ok((UdsStream::new(stream)?, acks))
}

/// What a Unix listener removes when it closes: only what is still its own.
#[derive(Debug)]
pub(crate) struct Cleanup {
    file: Option<BoundFile>,
    names: Vec<(String, Option<FileId>)>,
    /// Kept open (mapped) until the names are removed, so that their inodes cannot be
    /// reused by a newer listener's semaphores meanwhile.
    _acks: Option<Arc<AckPair>>,
}

impl Cleanup {
    pub(crate) fn run(&self) {
        if let Some(file) = &self.file {
            file.remove();
        }
        for (name, id) in &self.names {
            let _ = NamedSemaphore::unlink_if_same(name, *id);
        }
    }
}

/// Accepts connections on a bound socket; every one shares the endpoint's ack signals.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: UnixListener,
    acks: Arc<AckPair>,
}

impl Acceptor {
    /// The next connection (cancel-safe).
    pub(crate) async fn accept(&mut self) -> io::Result<(UdsStream, Arc<AckPair>)> {
        let (stream, _) = self.listener.accept().await?;
        Ok((UdsStream::new(stream)?, self.acks.clone()))
    }
}

/// Binds `path` with permission bits `mode` (the stale-file rule: `docs/protocol.md`).
pub(crate) async fn listen(path: &str, mode: u32) -> Result<(Acceptor, Cleanup), SocketError> {
    let absolute = std::path::absolute(path)?;
    // A path no client could connect to is refused here, the way connect refuses it.
    SocketPath::new(&absolute).map_err(|e| listen_error(e, path))?;
    // Listeners starting on one path take turns until bound: the semaphores below are
    // replaced only after the path was found free by the one holding the lock.
    let _setup = PathLock::acquire(&lock_path(&canonical_path(&absolute)?), SETUP_WAIT)
        .await
        .map_err(|e| listen_error(e, path))?;
    // A live listener's path (and so its semaphores) is left alone.
    clear_stale(&absolute, path)?;
    // The ack names are ready before the path is: a client that connects the moment the
    // socket appears must find the semaphores the listener uses. They are new, so no token
    // a previous owner (or anyone else) left can be taken for an ack.
    let names = unix_ack_names(&absolute)?;
    let mut cleanup = Cleanup {
        file: None,
        names: Vec::new(),
        _acks: None,
    };
    let mut sems = Vec::new();
    for name in [&names.0, &names.1] {
        let (sem, id) = NamedSemaphore::create_fresh(name, mode).inspect_err(|_| cleanup.run())?;
        cleanup.names.push((name.clone(), id));
        sems.push(sem);
    }
    let acked = sems.pop().expect("two semaphores were made");
    let ready = sems.pop().expect("two semaphores were made");
    let acks = Arc::new(AckPair::new(ready, acked));
    cleanup._acks = Some(acks.clone());
    let (listener, file) = bind_exclusive(&absolute, mode, path).inspect_err(|_| cleanup.run())?;
    cleanup.file = Some(file);
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| UnixListener::from_std(listener))
        .inspect_err(|_| cleanup.run())?;
    Ok((Acceptor { listener, acks }, cleanup))
}
