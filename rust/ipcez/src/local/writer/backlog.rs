//! Frames waiting for their turn on the wire, and the one place where frames are numbered.
//!
//! Sends that must not wait (an event loop's thread) queue their frames here while the
//! stream is busy; a task holding the write lock writes them in the order they came. Acks
//! count frames in wire order, so a frame gets its number here, under this mutex, at the
//! moment its place on the wire is settled: a writer holding the write lock writes its
//! frames itself only while nothing is queued or being drained; otherwise they are
//! numbered and queued behind the others.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::super::acks::ConnAck;

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

/// Where a writer's frames go (see [`Backlog::turn`]). The numbers are those of the last
/// frame; the frames before it have the numbers just below.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Nothing is queued and the caller holds the write lock: it writes them itself.
    Direct(u64),
    /// Queued; `drain`: the caller must start the task that writes the queue.
    Queued { last: u64, drain: bool },
    /// Not queued, not numbered: the queue holds its bound already.
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

    /// Numbers `count` frames of `len` bytes in all and settles where they go: written by
    /// the caller (`holds_lock`, nothing queued or draining) or queued (made by `make`).
    /// `bounded`: refuse rather than queue past [`MAX_BACKLOG_BYTES`].
    pub(crate) fn turn(
        &self,
        acks: &ConnAck,
        count: usize,
        len: usize,
        holds_lock: bool,
        bounded: bool,
        make: impl FnOnce() -> Pending,
    ) -> Turn {
        let mut s = self.lock();
        let idle = !s.draining && s.frames.is_empty();
        if holds_lock && idle {
            return Turn::Direct(number(acks, count));
        }
        if bounded && s.bytes + len > MAX_BACKLOG_BYTES && !s.frames.is_empty() {
            return Turn::Full;
        }
        let last = number(acks, count);
        s.bytes += len;
        s.frames.push_back(make());
        let drain = !std::mem::replace(&mut s.draining, true);
        Turn::Queued { last, drain }
    }

    /// Takes back the numbers of `count` frames ending with `last` that never went out (not
    /// a byte of them); false when later frames were numbered meanwhile, so the numbers can
    /// no longer match the wire (the caller must end the connection).
    pub(crate) fn unnumber(&self, acks: &ConnAck, last: u64, count: usize) -> bool {
        let _s = self.lock();
        acks.frames_unwritten(last, count as u64)
    }

    /// The next frames to write; `None` ends the draining task. Call under the write lock.
    pub(crate) fn pop(&self) -> Option<Pending> {
        let mut s = self.lock();
        let next = s.frames.pop_front();
        s.bytes -= next.as_ref().map_or(0, |p| p.bytes.len());
        s.draining = next.is_some();
        next
    }
}

/// Numbers `count` frames; the number of the last (the backlog's mutex is held).
fn number(acks: &ConnAck, count: usize) -> u64 {
    let mut last = acks.last_written();
    for _ in 0..count {
        last = acks.frame_written();
    }
    last
}
