//! The runtime ipcez owns for callers that are not async (the C ABI, blocking helpers), and
//! what `fork()` does to it.
//!
//! A forked child inherits the parent's memory but none of its threads, while the epoll
//! instance, sockets and semaphores it inherits are still shared with the parent. Using the
//! parent's runtime there hangs (its worker is gone) and can corrupt the parent's I/O driver
//! (both processes would drive one epoll instance). So the child never touches it, not
//! even to drop it: the inherited runtime is leaked and the child builds its own on first
//! use. [`ProcessEpoch`] tells code holding other inherited state that it is in a child.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicPtr, Ordering};

use tokio::runtime::{Handle, Runtime};

use crate::error::SocketError;

/// Which process, and which side of each `fork()`, a value was made in.
///
/// Take one when creating something that owns process-wide state (a connection, a runtime)
/// and check [`is_current`](Self::is_current) before using it: it is false in a forked
/// child, where such state must be left alone. The check is one atomic load: the value is
/// refreshed by a `pthread_atfork` hook, so a `fork()` from any language is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessEpoch(u64);

impl ProcessEpoch {
    /// The epoch of the calling process.
    pub fn current() -> Self {
        Self(epoch::current())
    }

    /// True in the process this epoch was taken in; false in any child forked since.
    pub fn is_current(self) -> bool {
        self.0 == epoch::current()
    }

    /// `Ok` in the process this epoch was taken in; in a child forked since, the error for
    /// using the `what` (socket, listener) the parent made.
    pub(crate) fn check(self, what: &str) -> Result<(), SocketError> {
        if self.is_current() {
            return Ok(());
        }
        Err(SocketError::Io(io::Error::other(format!(
            "this {what} was created before fork; connect again in the child"
        ))))
    }
}

#[cfg(unix)]
mod epoch {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// `pid << 32 | generation`; 0 until first used. The generation grows by one in every
    /// child, so an epoch is never taken for an ancestor's even if a pid is reused.
    static EPOCH: AtomicU64 = AtomicU64::new(0);
    static HOOKED: AtomicBool = AtomicBool::new(false);

    fn pack(pid: libc::pid_t, generation: u32) -> u64 {
        (u64::from(pid as u32) << 32) | u64::from(generation)
    }

    fn pid() -> libc::pid_t {
        // SAFETY: getpid has no preconditions.
        unsafe { libc::getpid() }
    }

    /// Runs in the child right after `fork()` (async-signal-safe: two atomics and getpid).
    extern "C" fn after_fork_in_child() {
        let generation = (EPOCH.load(Ordering::Relaxed) as u32)
            .wrapping_add(1)
            .max(1);
        EPOCH.store(pack(pid(), generation), Ordering::Release);
    }

    pub(super) fn current() -> u64 {
        match EPOCH.load(Ordering::Acquire) {
            0 => start(),
            e => e,
        }
    }

    #[cold]
    fn start() -> u64 {
        if !HOOKED.swap(true, Ordering::AcqRel) {
            // SAFETY: registers a plain function that stays valid for the whole process.
            unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        }
        let fresh = pack(pid(), 1);
        match EPOCH.compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(set) => set,
        }
    }

    /// [`current`], verified against the real pid: also catches a child made without the
    /// fork hooks (a raw `clone` system call). Costs a system call, so only on rare paths.
    pub(super) fn verified() -> u64 {
        let e = current();
        if (e >> 32) as u32 == pid() as u32 {
            return e;
        }
        after_fork_in_child();
        current()
    }
}

#[cfg(not(unix))]
mod epoch {
    // No fork() here: one epoch for the life of the process.
    pub(super) fn current() -> u64 {
        1
    }
    pub(super) fn verified() -> u64 {
        1
    }
}

struct Owned {
    epoch: ProcessEpoch,
    runtime: Runtime,
}

/// The runtime of this process, or NULL. One inherited through `fork()` belongs to the
/// parent: it is replaced, never dropped.
static RUNTIME: AtomicPtr<Owned> = AtomicPtr::new(std::ptr::null_mut());

fn build() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(64)
        .thread_name("ipcez-io")
        .on_thread_start(|| OWN_THREAD.set(true))
        .enable_all()
        .build()
        .expect("ipcez: cannot start the I/O runtime (out of threads or memory?)")
}

thread_local! {
    /// True on the threads of ipcez's own runtime.
    static OWN_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True once ipcez's own runtime runs in this process (a parent's does not count); never
/// starts it.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the armed readiness is Linux-only
pub(crate) fn started() -> bool {
    let seen = RUNTIME.load(Ordering::Acquire);
    // SAFETY: a non-NULL pointer came from Box::into_raw in `runtime` and is never freed.
    unsafe { seen.as_ref() }.is_some_and(|owned| owned.epoch.is_current())
}

tokio::task_local! {
    /// Set around the futures a caller's thread runs on ipcez's runtime (`block_on_own`).
    static OWN_BLOCK_ON: ();
}

/// True on a thread of ipcez's own runtime, or inside [`block_on_own`]: what runs here
/// runs on ipcez's runtime (not a caller's).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // the armed readiness is Linux-only
pub(crate) fn on_own_runtime() -> bool {
    OWN_THREAD.get() || OWN_BLOCK_ON.try_with(|_| ()).is_ok()
}

/// [`block_on`] on ipcez's own runtime, with [`on_own_runtime`] true inside.
pub(crate) fn block_on_own<F: Future>(f: F) -> Result<F::Output, SocketError> {
    block_on(runtime().handle(), OWN_BLOCK_ON.scope((), f))
}

/// The library's own runtime, built on first use in each process (a forked child gets a
/// new one): one I/O worker thread, since a library living inside someone else's process
/// should cost little; every connection's reader runs there. Async callers on their own
/// runtime never touch it.
pub fn runtime() -> &'static Runtime {
    let epoch = ProcessEpoch(epoch::verified());
    loop {
        let seen = RUNTIME.load(Ordering::Acquire);
        // SAFETY: a non-NULL pointer came from Box::into_raw below and is never freed.
        if let Some(owned) = unsafe { seen.as_ref() }
            && owned.epoch == epoch
        {
            return &owned.runtime;
        }
        // No lock: one held by a parent thread at fork time would never be released here.
        let fresh = Box::into_raw(Box::new(Owned {
            epoch,
            runtime: build(),
        }));
        match RUNTIME.compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: just installed, never freed: it lives for the rest of the process.
            Ok(_) => return unsafe { &(*fresh).runtime },
            Err(_) => {
                // Another thread won the race; ours was never used. (A plain drop would
                // panic when called from inside an async context.)
                // SAFETY: `fresh` was not published, so this is its only owner.
                unsafe { Box::from_raw(fresh) }
                    .runtime
                    .shutdown_background();
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_runtime_per_process() {
        let a: *const Runtime = runtime();
        let b: *const Runtime = runtime();
        assert_eq!(a, b);
        assert!(ProcessEpoch::current().is_current());
    }
}
