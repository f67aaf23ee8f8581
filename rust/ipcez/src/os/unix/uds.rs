//! Unix domain socket client and listener: each gives connected streams with the
//! endpoint's ack signals.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{UnixListener, UnixStream};

use super::stream::UdsStream;
use crate::ack::AckPair;
use crate::error::SocketError;
use crate::resolve::unix_ack_names;

/// Mode of ack semaphores a client creates (first use): owner only. A listener gives its
/// semaphores the read/write bits of its socket file instead.
const SEM_MODE: u32 = 0o600;

/// Adds the path and a hint to an I/O error, keeping its kind (and so its errno mapping).
fn with_path(e: io::Error, what: &str, path: &str) -> io::Error {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => "; is the listener running, and is the path right?",
        io::ErrorKind::ConnectionRefused => "; the socket file is stale: nothing listens on it",
        io::ErrorKind::PermissionDenied => "; check the socket file's permissions",
        _ => "",
    };
    io::Error::new(e.kind(), format!("{what} {path}: {e}{hint}"))
}

/// Connects to the socket at `path` and opens its ack signals.
pub(crate) async fn connect(path: &str) -> Result<(UdsStream, Arc<AckPair>), SocketError> {
    let names = unix_ack_names(Path::new(path))?;
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| with_path(e, "cannot connect to the Unix socket", path))?;
    let acks = Arc::new(AckPair::open(&names, SEM_MODE)?);
    Ok((stream.into(), acks))
}

/// What a Unix listener removes when it closes.
#[derive(Debug)]
pub(crate) struct Cleanup {
    path: PathBuf,
    names: (String, String),
}

impl Cleanup {
    pub(crate) fn run(&self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = AckPair::unlink(&self.names);
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
        Ok((stream.into(), self.acks.clone()))
    }
}

/// Binds `path` (see the README for the stale-file rule) with permission bits `mode`.
pub(crate) async fn listen(path: &str, mode: u32) -> Result<(Acceptor, Cleanup), SocketError> {
    let absolute = std::path::absolute(path)?;
    clear_stale(&absolute, path)?;
    // The ack names are ready before the path is: a client that connects the moment the
    // socket appears must find the same semaphores the listener uses. A previous owner
    // that crashed may have left tokens behind, so they start fresh.
    let names = unix_ack_names(&absolute)?;
    AckPair::unlink(&names)?;
    let acks = Arc::new(AckPair::open(&names, SEM_MODE)?);
    if mode & 0o666 != SEM_MODE {
        // Whoever may open the socket must be able to open its acks too.
        AckPair::set_mode(&names, mode)?;
    }
    let listener = UnixListener::bind(&absolute).map_err(|e| {
        let _ = AckPair::unlink(&names);
        with_path(e, "cannot listen on", path)
    })?;
    std::fs::set_permissions(&absolute, std::fs::Permissions::from_mode(mode))?;
    let cleanup = Cleanup {
        path: absolute,
        names,
    };
    Ok((Acceptor { listener, acks }, cleanup))
}

/// Makes room for a new socket at `path`: a socket file nobody answers on is removed; a
/// live one, or anything that is not a socket, is an error and left untouched.
fn clear_stale(absolute: &Path, shown: &str) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(absolute) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(with_path(e, "cannot inspect", shown)),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "cannot listen on {shown}: it exists and is not a socket; remove it or choose \
                 another path (ipcez leaves it untouched)"
            ),
        ));
    }
    match std::os::unix::net::UnixStream::connect(absolute) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "cannot listen on {shown}: another process is listening on it; stop it or \
                 choose another path"
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(absolute)
            .or_else(|e| match e.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(with_path(e, "cannot remove the stale socket", shown)),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(with_path(e, "cannot check the existing socket", shown)),
    }
}
