//! Frames handed over by sends that must not wait (an event loop's thread) while the
//! stream was busy: one background task writes them, in the order they were handed over.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Whole frames (or the rest of one) still to be written.
pub(crate) struct Pending {
    pub(crate) bytes: Vec<u8>,
    /// How many messages they end ("data ready" is signalled once per message).
    pub(crate) count: usize,
    pub(crate) deadline: Instant,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Pending>,
    /// A task is writing them (it holds, or waits for, the write lock).
    draining: bool,
}

#[derive(Default)]
pub(crate) struct Backlog {
    state: Mutex<State>,
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backlog").finish_non_exhaustive()
    }
}

impl Backlog {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues what `make` gives when frames are already waiting, so that later frames stay
    /// behind them; false (nothing queued) when the backlog is idle.
    pub(crate) fn push_if_busy(&self, make: impl FnOnce() -> Pending) -> bool {
        let mut s = self.lock();
        if !s.draining && s.frames.is_empty() {
            return false;
        }
        s.frames.push_back(make());
        true
    }

    /// Queues `p` last in line; true when the caller must start the task that drains.
    pub(crate) fn push_back(&self, p: Pending) -> bool {
        let mut s = self.lock();
        s.frames.push_back(p);
        !std::mem::replace(&mut s.draining, true)
    }

    /// Marks the backlog busy (the caller writes first, then drains); true when nobody
    /// drained it yet, so the caller must drain it.
    pub(crate) fn claim(&self) -> bool {
        !std::mem::replace(&mut self.lock().draining, true)
    }

    /// The next frames to write; `None` ends the draining task.
    pub(crate) fn pop(&self) -> Option<Pending> {
        let mut s = self.lock();
        let next = s.frames.pop_front();
        s.draining = next.is_some();
        next
    }
}
