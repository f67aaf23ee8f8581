//! How long waits (the next messages, the next connection) reach JavaScript, and what keeps
//! the process alive.
//!
//! Each socket and listener owns one threadsafe function: the core's runtime calls it with
//! what it waited for. It is referenced (keeps Node's event loop alive) while the object
//! is open and not `unref()`'d, like a `net.Socket`'s handle. Short operations (connect,
//! send) settle promises instead; those keep the loop alive only until they settle.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use napi::bindgen_prelude::ToNapiValue;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};

/// A JavaScript callback the runtime's threads may call with a `T`.
pub(crate) type Callback<T> = ThreadsafeFunction<T, (), T, Status, false>;

/// One object's way to JavaScript, with its keep-alive state.
pub(crate) struct Channel<T: ToNapiValue + 'static> {
    callback: Option<Arc<Callback<T>>>,
    /// Whether JavaScript asked for `unref()`.
    unrefd: bool,
    /// The end (close or loss) reached JavaScript: nothing more will come.
    ended: bool,
    /// A wait is running on the runtime (at most one at a time).
    busy: Arc<AtomicBool>,
}

impl<T: ToNapiValue + 'static> Default for Channel<T> {
    fn default() -> Self {
        Channel {
            callback: None,
            unrefd: false,
            ended: false,
            busy: Default::default(),
        }
    }
}

impl<T: ToNapiValue + 'static> Channel<T> {
    /// Sets where values go; `owner` is closed when `env` (the thread or worker) ends.
    pub(crate) fn start(
        &mut self,
        env: &Env,
        callback: Callback<T>,
        owner: Weak<dyn Closable>,
    ) -> napi::Result<()> {
        self.callback = Some(Arc::new(callback));
        self.apply(env)?;
        close_with_env(env, owner)
    }

    /// Runs `wait` on the core's runtime and calls the callback with its value, unless a
    /// wait is running already (or `start` was not called).
    pub(crate) fn pull(&self, wait: impl Future<Output = T> + Send + 'static)
    where
        T: Send,
    {
        let Some(callback) = self.callback.clone() else {
            return;
        };
        if self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let busy = self.busy.clone();
        ipcez::runtime().spawn(async move {
            let value = wait.await;
            busy.store(false, Ordering::Release);
            // A callback whose environment is gone (a terminated worker) drops the value.
            let _ = callback.call(value, ThreadsafeFunctionCallMode::NonBlocking);
        });
    }

    /// Refs the callback while the object may still deliver and was not `unref()`'d. (A
    /// closed object stays referenced until its end was delivered: a close answers the
    /// pull in flight at once.)
    fn apply(&self, env: &Env) -> napi::Result<()> {
        let Some(cb) = self.callback.as_ref().filter(|cb| !cb.aborted()) else {
            return Ok(());
        };
        // SAFETY: called on the environment's own thread with a live (not aborted) function.
        let status = unsafe {
            if !self.ended && !self.unrefd {
                napi::sys::napi_ref_threadsafe_function(env.raw(), cb.raw())
            } else {
                napi::sys::napi_unref_threadsafe_function(env.raw(), cb.raw())
            }
        };
        napi::check_status!(status, "cannot ref/unref an ipcez handle")
    }

    /// `ref()` / `unref()`.
    pub(crate) fn set_unrefd(&mut self, env: &Env, unrefd: bool) -> napi::Result<()> {
        self.unrefd = unrefd;
        self.apply(env)
    }

    /// JavaScript has the end: the object no longer keeps the process alive, and the
    /// callback is released (it holds the JavaScript object strongly: kept, no closed
    /// socket or listener could ever be garbage-collected).
    pub(crate) fn end(&mut self, env: &Env) -> napi::Result<()> {
        self.ended = true;
        let status = self.apply(env);
        self.callback = None;
        status
    }
}

/// Closes a socket or listener when its environment (the main thread or a worker) ends.
pub(crate) trait Closable: Send + Sync {
    fn close_now(&self);
}

thread_local! {
    /// What this thread's environment opened; closed when it tears down. Each Node
    /// environment (the main thread, each worker) runs on a thread of its own.
    static OPEN: RefCell<Option<Vec<Weak<dyn Closable>>>> = const { RefCell::new(None) };
}

/// Registers `item` to be closed when `env` tears down (a worker ending, the process
/// exiting): closing a worker closes its sockets and listeners.
fn close_with_env(env: &Env, item: Weak<dyn Closable>) -> napi::Result<()> {
    let first = OPEN.with_borrow_mut(|open| {
        let first = open.is_none();
        let list = open.get_or_insert_with(Vec::new);
        if list.len() >= 64 && list.len().is_power_of_two() {
            list.retain(|w| w.strong_count() > 0);
        }
        list.push(item);
        first
    });
    if first {
        env.add_env_cleanup_hook((), |()| {
            let items = OPEN.with_borrow_mut(|open| open.take()).unwrap_or_default();
            for item in items.iter().filter_map(Weak::upgrade) {
                item.close_now();
            }
        })?;
    }
    Ok(())
}
