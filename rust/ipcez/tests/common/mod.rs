//! Helpers shared by the integration tests: unique addresses, resolutions that need no
//! environment, and a watchdog.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipcez::{ConnectOptions, ListenOptions, Listener, Resolution, Socket, Transport};

/// A fresh socket path in a fresh directory, unique per process and call. (The directories
/// of test processes that have ended are removed on the first call.)
pub fn socket_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_dirs_of_ended_runs);
    let dir = std::env::temp_dir().join(format!(
        "ipcez-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Removes `ipcez-test-<pid>-<n>` directories whose process is gone.
fn remove_dirs_of_ended_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("ipcez-test-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true // not checked: nothing is removed
}

pub fn unix(path: &std::path::Path) -> Resolution {
    Resolution {
        transport: Transport::Unix,
        address: path.to_str().unwrap().to_string(),
    }
}

/// A named-pipe resolution with a name unique to this process and call (Windows).
pub fn pipe(tag: &str) -> Resolution {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "ipcez-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let (target, os) = (Some(("target", "local")), Some(("os", "windows")));
    ipcez::decide(&name, target, os, ipcez::Os::Windows).unwrap()
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
