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

/// At most this many bytes wait in a backlog; beyond it a send that must not wait is
/// refused (the caller sends it the waiting way), so a peer that stops reading cannot make
/// this side's memory grow without bound.
pub(crate) const MAX_BACKLOG_BYTES: usize = 64 * 1024 * 1024;

/// What [`Backlog::push_if_busy`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Nothing waits: the caller writes itself.
    Idle,
    /// Queued behind the frames that wait.
    Yes,
    /// Not queued: the backlog holds its bound already.
    Full,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Pending>,
    bytes: usize,
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
    /// behind them.
    pub(crate) fn push_if_busy(&self, len: usize, make: impl FnOnce() -> Pending) -> Queued {
        let mut s = self.lock();
        if !s.draining && s.frames.is_empty() {
            return Queued::Idle;
        }
        if s.bytes + len > MAX_BACKLOG_BYTES && !s.frames.is_empty() {
            return Queued::Full;
        }
        s.bytes += len;
        s.frames.push_back(make());
        Queued::Yes
    }

    /// Queues `p` last in line; true when the caller must start the task that drains.
    pub(crate) fn push_back(&self, p: Pending) -> bool {
        let mut s = self.lock();
        s.bytes += p.bytes.len();
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
        s.bytes -= next.as_ref().map_or(0, |p| p.bytes.len());
        s.draining = next.is_some();
        next
    }
}
