//! Rust's log records (the `log` facade: ipcez's own events and those of its dependencies)
//! handed to a C callback, so a binding can route them into its host's logging.
//!
//! Records never call the callback from the thread that made them: the runtime's threads
//! must not wait for a host lock (Python's GIL, say). They go into a bounded queue that a
//! thread of their own, `ipcez-log`, drains; when the queue is full a record is dropped and
//! counted, and the count is reported as a record of its own once there is room again.

use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::boundary::call_or;
use crate::per_process::PerProcess;

/// Records waiting for the callback; beyond this they are dropped (and counted).
const QUEUE: usize = 1024;

/// Receives one log record on the `ipcez-log` thread. `level` is 1 (error), 2 (warn),
/// 3 (info), 4 (debug) or 5 (trace). `target` is where the record comes from: a Rust module
/// path such as `ipcez::listener`, or a dependency's (`rustls::conn`). Both strings are
/// UTF-8, not NUL-terminated, and borrowed for the duration of the call only.
#[allow(non_camel_case_types)]
pub type ipcez_log_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        level: u32,
        target: *const u8,
        target_len: usize,
        message: *const u8,
        message_len: usize,
    ),
>;

struct Callback {
    f: unsafe extern "C" fn(*mut c_void, u32, *const u8, usize, *const u8, usize),
    userdata: *mut c_void,
}

/// The callback (NULL: none), boxed by `ipcez_set_log_callback`; a `fork()` child keeps it.
static CALLBACK: AtomicPtr<Callback> = AtomicPtr::new(std::ptr::null_mut());
/// Held while the callback runs and while it is replaced, so that replacing it waits for a
/// call in progress. Per process: in a child, the parent's `ipcez-log` thread that may have
/// held it at the fork does not exist.
static CALLING: PerProcess<Mutex<()>> = PerProcess::new();

fn calling() -> MutexGuard<'static, ()> {
    let lock = CALLING.get(Mutex::default);
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

/// The most verbose level passed on for ipcez's own records (0: none).
static MAX_LEVEL: AtomicU32 = AtomicU32::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

struct Record {
    level: u32,
    target: String,
    message: String,
}

/// The queue's sending end (None until the `ipcez-log` thread runs). After `fork` the
/// child has no `ipcez-log` thread, so it starts its own.
static QUEUE_TX: PerProcess<Mutex<Option<SyncSender<Record>>>> = PerProcess::new();

struct Forwarder;

impl log::Log for Forwarder {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        let max = MAX_LEVEL.load(Ordering::Relaxed);
        let level = meta.level() as u32;
        // Dependencies are chatty below warn (tungstenite traces every frame): their
        // records pass only when everything is asked for.
        let own = meta.target() == "ipcez" || meta.target().starts_with("ipcez::");
        level <= max && (own || level <= log::Level::Warn as u32 || max >= 5)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            enqueue(Record {
                level: record.level() as u32,
                target: record.target().to_string(),
                message: record.args().to_string(),
            });
        }
    }

    fn flush(&self) {}
}

fn enqueue(record: Record) {
    let queue = QUEUE_TX.get(Mutex::default);
    let mut tx = queue.lock().unwrap_or_else(|p| p.into_inner());
    if tx.is_none() {
        let (sender, receiver) = sync_channel(QUEUE);
        let started = std::thread::Builder::new()
            .name("ipcez-log".into())
            .spawn(move || deliver_all(receiver));
        // Not started (out of threads): dropped and counted; the next record tries again.
        *tx = started.ok().map(|_| sender);
    }
    if tx
        .as_ref()
        .is_none_or(|sender| sender.try_send(record).is_err())
    {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

fn deliver_all(records: Receiver<Record>) {
    while let Ok(record) = records.recv() {
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            deliver(&Record {
                level: log::Level::Warn as u32,
                target: "ipcez::log".into(),
                message: format!(
                    "{dropped} log records were dropped: they came faster than the log callback took them"
                ),
            });
        }
        deliver(&record);
    }
}

fn deliver(record: &Record) {
    let _calling = calling();
    // SAFETY: a non-NULL pointer came from Box::into_raw in `ipcez_set_log_callback`,
    // which frees it only after swapping it out under `CALLING`, which is held here.
    if let Some(cb) = unsafe { CALLBACK.load(Ordering::Acquire).as_ref() } {
        // SAFETY: the callback's contract (see `ipcez_set_log_callback`); the strings live
        // for the call.
        unsafe {
            (cb.f)(
                cb.userdata,
                record.level,
                record.target.as_ptr(),
                record.target.len(),
                record.message.as_ptr(),
                record.message.len(),
            )
        };
    }
}

static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Routes Rust's log records to `cb` (NULL: to nowhere), keeping records up to `max_level`
/// (0 none, 1 error … 5 trace) of ipcez itself; a dependency's records pass at warn and
/// error only, unless `max_level` is 5. Returns false when another logger already owns the
/// process's `log` facade (a Rust host that set its own), in which case nothing changes.
///
/// The callback runs on a thread of ipcez's own, one record at a time. Once this call
/// returns, a callback it replaced is not running and is never called again, so its
/// `userdata` may be freed (call with NULL before the host shuts down). So this call waits
/// for a call of the callback in progress: never make it from inside the callback.
///
/// # Safety
/// `cb`, when not NULL, may be called with `userdata` from another thread until it is
/// replaced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ipcez_set_log_callback(
    cb: ipcez_log_fn,
    userdata: *mut c_void,
    max_level: u32,
) -> bool {
    call_or(false, || {
        let installed = *INSTALLED.get_or_init(|| log::set_logger(&Forwarder).is_ok());
        if !installed {
            return false;
        }
        let new = cb.map_or(std::ptr::null_mut(), |f| {
            Box::into_raw(Box::new(Callback { f, userdata }))
        });
        let calling = calling();
        let old = CALLBACK.swap(new, Ordering::AcqRel);
        let max = if new.is_null() { 0 } else { max_level.min(5) };
        MAX_LEVEL.store(max, Ordering::Relaxed);
        // The facade's own filter too: a record above it costs a branch, not a call through
        // the logger (tungstenite traces every frame).
        log::set_max_level(level_filter(max));
        drop(calling);
        if !old.is_null() {
            // SAFETY: from Box::into_raw above, swapped out: no call uses it any more.
            drop(unsafe { Box::from_raw(old) });
        }
        true
    })
}

/// The `log` facade's filter for `max` (0 none, 1 error … 5 trace).
fn level_filter(max: u32) -> log::LevelFilter {
    match max {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    static SEEN: Mutex<Option<mpsc::Sender<(u32, String, String)>>> = Mutex::new(None);

    unsafe extern "C" fn collect(
        _userdata: *mut c_void,
        level: u32,
        target: *const u8,
        target_len: usize,
        message: *const u8,
        message_len: usize,
    ) {
        let text = |p: *const u8, n: usize| {
            // SAFETY: the strings are valid for the call.
            String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(p, n) }).into_owned()
        };
        if let Some(tx) = SEEN.lock().unwrap().as_ref() {
            let _ = tx.send((level, text(target, target_len), text(message, message_len)));
        }
    }

    #[test]
    fn records_reach_the_callback_filtered_by_level_and_origin() {
        let (tx, rx) = mpsc::channel();
        *SEEN.lock().unwrap() = Some(tx);
        // SAFETY: `collect` is thread-safe and uses no userdata.
        assert!(unsafe { ipcez_set_log_callback(Some(collect), std::ptr::null_mut(), 3) });
        // Records above the level stop at the facade's filter, before the logger.
        assert_eq!(log::max_level(), log::LevelFilter::Info);
        log::debug!(target: "ipcez::listener", "too verbose");
        log::info!(target: "rustls::conn", "a dependency's info");
        log::info!(target: "ipcez::listener", "accepted from {}", "peer");
        log::warn!(target: "tungstenite::protocol", "a dependency's warning");
        let got = |rx: &mpsc::Receiver<_>| rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            got(&rx),
            (3, "ipcez::listener".into(), "accepted from peer".into())
        );
        assert_eq!(
            got(&rx),
            (
                2,
                "tungstenite::protocol".into(),
                "a dependency's warning".into()
            )
        );
        // SAFETY: NULL unregisters.
        assert!(unsafe { ipcez_set_log_callback(None, std::ptr::null_mut(), 5) });
        assert_eq!(log::max_level(), log::LevelFilter::Off);
        log::error!(target: "ipcez::listener", "nobody listens");
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    }
}
