//! The runtime ipcez owns for callers that are not async (the C ABI, blocking helpers).

use std::future::Future;
use std::io;
use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};

use crate::error::SocketError;

/// The library's own runtime, built on first use: one I/O worker thread, since a library
/// living inside someone else's process should cost little; every connection's reader
/// runs there. Async callers on their own runtime never touch it.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(64)
            .thread_name("ipcez-io")
            .enable_all()
            .build()
            .expect("ipcez: cannot start the I/O runtime (out of threads or memory?)")
    })
}

/// The runtime to spawn on: the caller's when inside one, else ipcez's own.
pub(crate) fn current_handle() -> Handle {
    Handle::try_current().unwrap_or_else(|_| runtime().handle().clone())
}

/// Runs `f` to completion on `handle` from a thread outside any runtime.
///
/// Blocking inside an async task would stall the runtime (and tokio panics on it), so that
/// is refused with an error instead.
pub(crate) fn block_on<F: Future>(handle: &Handle, f: F) -> Result<F::Output, SocketError> {
    if Handle::try_current().is_ok() {
        return Err(SocketError::Io(io::Error::other(
            "a blocking ipcez call was made from inside an async runtime; use the async method",
        )));
    }
    Ok(handle.block_on(f))
}

/// `now + timeout`, saturating: `Duration::MAX` (or any wait too long to represent) means
/// "practically forever" instead of an overflow panic.
pub(crate) fn deadline_after(timeout: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(100 * 365 * 24 * 3600))
}
