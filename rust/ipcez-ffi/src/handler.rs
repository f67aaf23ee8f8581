//! Message handlers: a C callback run on a native thread of its own, and the one record of
//! "this thread is a handler thread".

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use ipcez::Socket;

use crate::error::{FfiError, ipcez_error};

/// Called for each message and then once more with a non-NULL `err` when the connection
/// ends; after that call the handler is never called again and `userdata` is not touched.
/// `data` and `err` are borrowed for the duration of the call only.
#[allow(non_camel_case_types)]
pub type ipcez_handler_fn = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        data: *const u8,
        len: usize,
        err: *const ipcez_error,
    ),
>;

/// The C callback to run: never NULL (checked at registration).
pub(crate) type HandlerFn = unsafe extern "C" fn(*mut c_void, *const u8, usize, *const ipcez_error);

thread_local! {
    /// True on ipcez handler threads: a close or free from one of them never waits for a
    /// handler, so two handlers closing each other's sockets cannot deadlock.
    static ON_HANDLER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `userdata` is only handed back to the callback on the handler thread.
struct Userdata(*mut c_void);
// SAFETY: ipcez never dereferences userdata; the caller chose to receive it on another
// thread by registering a handler.
unsafe impl Send for Userdata {}

/// How long a close waits for the handler's final call before leaving a stuck call behind.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a close and the handler thread share.
#[derive(Default)]
struct Progress {
    /// Set by a close that gave up waiting: the handler is called no more.
    abandoned: AtomicBool,
    /// Set once the thread is done calling the handler.
    finished: Mutex<bool>,
    finished_changed: Condvar,
}

impl Progress {
    /// Waits up to `limit` for the thread to finish; true when it did.
    fn wait_finished(&self, limit: Duration) -> bool {
        let finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        let (finished, _) = self
            .finished_changed
            .wait_timeout_while(finished, limit, |f| !*f)
            .unwrap_or_else(|p| p.into_inner());
        *finished
    }
}

/// Owned by the handler closure: marks the thread finished when the closure is dropped,
/// which is when the thread ends (normally or by unwinding).
struct FinishOnDrop(Arc<Progress>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        *self.0.finished.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.0.finished_changed.notify_all();
    }
}

/// A running handler thread.
pub(crate) struct HandlerThread {
    thread: JoinHandle<()>,
    id: ThreadId,
    progress: Arc<Progress>,
}

impl HandlerThread {
    /// Starts `cb` as `socket`'s handler.
    ///
    /// # Safety
    /// `cb` stays callable, and `userdata` valid for it, until the final call (the one
    /// with a non-NULL `err`) has returned.
    pub(crate) unsafe fn start(
        socket: &Socket,
        cb: HandlerFn,
        userdata: *mut c_void,
    ) -> Result<Self, FfiError> {
        let userdata = Userdata(userdata);
        let progress = Arc::new(Progress::default());
        let finish = FinishOnDrop(progress.clone());
        let thread = socket.message_handler_thread(move |next| {
            ON_HANDLER_THREAD.with(|on| on.set(true));
            if finish.0.abandoned.load(Ordering::Acquire) {
                return;
            }
            let userdata = &userdata;
            match next {
                // SAFETY: per the `# Safety` section, cb and userdata are valid until the final call.
                Ok(m) => unsafe { cb(userdata.0, m.as_ptr(), m.len(), std::ptr::null()) },
                Err(e) => {
                    let e = FfiError::from(e);
                    let e_ptr: *const FfiError = &e;
                    unsafe { cb(userdata.0, std::ptr::null(), 0, e_ptr.cast()) }
                }
            }
        })?;
        let id = thread.thread().id();
        Ok(HandlerThread {
            thread,
            id,
            progress,
        })
    }

    /// Waits until the handler's final call has returned, at most [`CLOSE_GRACE`]: a call
    /// still running then is left to finish on its own, and the handler is not called
    /// again. Never waits when the caller is itself a handler thread (this one or another:
    /// two handlers closing each other's sockets must not wait for each other). The
    /// connection must already be closed.
    pub(crate) fn join_unless_on_handler(self) {
        let on_a_handler = ON_HANDLER_THREAD.with(|on| on.get());
        if self.id == std::thread::current().id() || on_a_handler {
            return;
        }
        if self.progress.wait_finished(CLOSE_GRACE) {
            let _ = self.thread.join();
        } else {
            self.progress.abandoned.store(true, Ordering::Release);
        }
    }
}
