//! Process-wide values that a `fork()` child must not inherit.
//!
//! A child has only the thread that forked. A lock that another thread of the parent
//! held at that moment stays held in the child forever, and a thread the value expects
//! (a queue's worker) does not exist there. So a child gets a fresh value on first use,
//! and the parent's copy is left alone: never locked, never dropped.

use std::sync::atomic::{AtomicPtr, Ordering};

use ipcez::ProcessEpoch;

/// `Send + Sync`, as for `OnceLock`: every thread of the process gets the same `&T`.
pub(crate) struct PerProcess<T: Send + Sync + 'static>(AtomicPtr<(ProcessEpoch, T)>);

impl<T: Send + Sync + 'static> PerProcess<T> {
    pub(crate) const fn new() -> Self {
        Self(AtomicPtr::new(std::ptr::null_mut()))
    }

    /// This process's value, made by `init` on first use in each process. Two threads
    /// racing to make it may both call `init`; one value wins, the other is dropped.
    pub(crate) fn get(&'static self, init: impl Fn() -> T) -> &'static T {
        let epoch = ProcessEpoch::current();
        loop {
            let seen = self.0.load(Ordering::Acquire);
            // SAFETY: a non-NULL pointer came from Box::into_raw below and is never freed.
            if let Some((made_in, value)) = unsafe { seen.as_ref() }
                && *made_in == epoch
            {
                return value;
            }
            let fresh = Box::into_raw(Box::new((epoch, init())));
            if self
                .0
                .compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // SAFETY: just published, and never freed.
                return unsafe { &(*fresh).1 };
            }
            // SAFETY: not published: this is its only owner.
            drop(unsafe { Box::from_raw(fresh) });
        }
    }
}
