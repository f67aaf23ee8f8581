//! Helpers shared by the integration tests: unique addresses, resolutions that need no
//! environment, and a watchdog.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipcez::{ConnectOptions, ListenOptions, Listener, Resolution, Socket, Transport};

/// A fresh socket path in a fresh directory, unique per process and call.
pub fn socket_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ipcez-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

pub fn unix(path: &std::path::Path) -> Resolution {
    Resolution {
        transport: Transport::Unix,
        address: path.to_str().unwrap().to_string(),
    }
}

pub fn ws(url: &str) -> Resolution {
    Resolution {
        transport: Transport::WebSocket,
        address: url.to_string(),
    }
}

pub async fn listen(r: &Resolution) -> Listener {
    ListenOptions::default().listen_on(r).await.unwrap()
}

pub async fn connect(r: &Resolution) -> Socket {
    ConnectOptions::default().connect_to(r).await.unwrap()
}

/// A connected pair: (client, accepted server side).
pub async fn pair(r: &Resolution) -> (Listener, Socket, Socket) {
    let listener = listen(r).await;
    let addr = Resolution {
        transport: r.transport,
        address: listener.address().to_string(),
    };
    let client = connect(&addr).await;
    let server = listener.accept().await.unwrap();
    (listener, client, server)
}

/// Fails the test instead of hanging CI when `f` takes longer than `secs`.
pub async fn within<F: Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("watchdog: the test took too long")
}

pub fn is_connection_lost(e: &ipcez::SocketError) -> bool {
    matches!(e, ipcez::SocketError::Io(io)
        if io.kind() == std::io::ErrorKind::ConnectionReset
            && io.to_string().starts_with("connection lost"))
}

/// The ipcez semaphores present in /dev/shm whose names contain `tag`.
pub fn shm_semaphores(tag: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("sem.ipcez.") && n.contains(tag))
                .collect()
        })
        .unwrap_or_default()
}
