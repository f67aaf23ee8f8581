//! The direct writer (Unix): `send_frame_blocking` and its relatives write on the caller's
//! thread, waiting for room with poll(2), and hand what the peer is slow to take to the
//! runtime. Sends that must not wait at all (an event loop's thread) write what the socket
//! takes now and queue the rest, in order, in the [`Backlog`].

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::backlog::{Pending, Queued};
use super::{Writer, write_failed};
use crate::error::SocketError;
use crate::frame::header;
use crate::runtime::block_on;

/// How long a blocking send writes on the caller's thread before it hands the rest of a
/// frame to the runtime (so a caller such as Python can be interrupted).
const WRITE_SLICE: Duration = Duration::from_millis(50);

/// sendmsg takes at most IOV_MAX (1,024 on Linux) slices at a time.
const MAX_SLICES: usize = 1024;

impl Writer {
    /// [`write`](Self::write) for threads outside the runtime. Returns once the frame is
    /// written and "data ready" signalled, or once what is left of it was handed to the
    /// runtime (which signals when done, or ends the connection when it cannot finish).
    /// That task holds a clone of `owner`, so the connection stays open until it is done.
    pub(crate) fn write_blocking<K: Clone + Send + 'static>(
        self: &Arc<Self>,
        msg: &[u8],
        deadline: Instant,
        handle: &Handle,
        owner: &K,
    ) -> Result<(), SocketError> {
        self.write_many_blocking(&[msg], deadline, handle, owner, true)
            .map(|_| ())
    }

    /// Writes the frames of `msgs` (already checked) back to back, with no other frame
    /// between them, and signals "data ready" once per message; like
    /// [`write_blocking`](Self::write_blocking). Without `wait` it never waits, not even
    /// for the write lock: what cannot be written now is queued behind earlier such frames
    /// and written by the runtime; `Ok(false)`, with nothing sent, when that queue holds its
    /// bound already (send the waiting way then). With `wait`, always `Ok(true)`.
    pub(crate) fn write_many_blocking<K: Clone + Send + 'static>(
        self: &Arc<Self>,
        msgs: &[&[u8]],
        deadline: Instant,
        handle: &Handle,
        owner: &K,
        wait: bool,
    ) -> Result<bool, SocketError> {
        let headers: Vec<[u8; 4]> = msgs.iter().map(|m| header(m.len())).collect();
        let mut all_parts: Vec<IoSlice<'_>> = (headers.iter().zip(msgs))
            .flat_map(|(h, m)| [IoSlice::new(h), IoSlice::new(m)])
            .collect();
        let total: usize = all_parts.iter().map(|p| p.len()).sum();
        let pending = |parts: &[IoSlice<'_>]| Pending {
            bytes: parts.iter().flat_map(|p| p.iter().copied()).collect(),
            count: msgs.len(),
            deadline,
        };
        let no_wait = !wait;
        // A send that must not wait goes behind frames that are waiting already.
        if no_wait {
            match self.backlog.push_if_busy(total, || pending(&all_parts)) {
                Queued::Idle => {}
                Queued::Yes => return Ok(true),
                Queued::Full => return Ok(false),
            }
        }
        let guard = match self.lock.clone().try_lock_owned() {
            Ok(g) => Some(g),
            Err(_) if no_wait => None,
            Err(_) => Some(block_on(handle, self.lock.clone().lock_owned())?),
        };
        let mut parts = &mut all_parts[..];
        let done = match guard {
            Some(_) => {
                let slice = if no_wait { Duration::ZERO } else { WRITE_SLICE };
                let slice_end = deadline.min(Instant::now() + slice);
                self.write_parts_direct(&mut parts, slice_end)?
            }
            None => 0,
        };
        if done == total {
            drop(guard);
            return msgs
                .iter()
                .try_for_each(|_| self.signal_ready())
                .map(|()| true);
        }
        // The peer is slow to make room (or another frame is being written): hand the rest
        // to the runtime and return, so the caller can wait for the acks in short,
        // interruptible slices (or on its event loop).
        let rest = pending(parts);
        let (me, owner) = (self.clone(), owner.clone());
        match guard {
            // Half a frame may be out: finish it before letting go of the lock (and then
            // what queued meanwhile behind a send that must not wait).
            Some(guard) => {
                let drain = no_wait && self.backlog.claim();
                handle.spawn(async move {
                    let _owner = owner;
                    let _guard = guard;
                    me.finish_in_background(rest).await;
                    if drain {
                        me.drain_backlog().await;
                    }
                });
            }
            None => {
                if self.backlog.push_back(rest) {
                    handle.spawn(async move {
                        let _owner = owner;
                        let _guard = me.lock.clone().lock_owned().await;
                        me.drain_backlog().await;
                    });
                }
            }
        }
        Ok(true)
    }

    async fn drain_backlog(&self) {
        while let Some(p) = self.backlog.pop() {
            self.finish_in_background(p).await;
        }
    }

    /// Writes `parts` on this thread until they are complete or `slice_end` passes,
    /// waiting for room with poll(2): a large message needs several rounds of "the peer
    /// drained the buffer", and each would otherwise cost two thread hops through the
    /// runtime's I/O thread. Returns how many bytes were written; `parts` is advanced past
    /// them.
    fn write_parts_direct(
        &self,
        parts: &mut &mut [IoSlice<'_>],
        slice_end: Instant,
    ) -> Result<usize, SocketError> {
        let mut done = 0;
        while !parts.is_empty() {
            let batch = &parts[..parts.len().min(MAX_SLICES)];
            match self.stream.write_direct(batch) {
                Ok(n) => {
                    done += n;
                    IoSlice::advance_slices(parts, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = slice_end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    self.stream.poll_writable(left).map_err(write_failed)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if done > 0 {
                        self.abandon();
                    }
                    return Err(write_failed(e));
                }
            }
        }
        Ok(done)
    }

    /// Frames (or the rest of one) that a send could not write within its slice: written
    /// through the runtime until their deadline, then "data ready" is signalled once per
    /// message. A failure ends the connection (half a frame may be on the wire); the
    /// senders' ack waits then see it.
    async fn finish_in_background(&self, p: Pending) {
        let rest = p.bytes;
        let mut done = 0;
        while done < rest.len() {
            match self
                .stream
                .try_write_vectored(&[IoSlice::new(&rest[done..])])
            {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match tokio::time::timeout_at(p.deadline.into(), self.stream.writable()).await {
                        Ok(Ok(())) => {}
                        _ => return self.abandon(),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.abandon(),
            }
        }
        if (0..p.count).try_for_each(|_| self.signal_ready()).is_err() {
            self.abandon();
        }
    }
}
