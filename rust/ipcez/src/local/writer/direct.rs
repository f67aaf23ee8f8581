//! The direct writer (Unix): `send_frame_blocking` and its relatives write on the caller's
//! thread, waiting for room with poll(2), and hand what the peer is slow to take to the
//! runtime. Sends that must not wait at all (an event loop's thread) write what the socket
//! takes now and queue the rest, in order, in the backlog.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::backlog::{Pending, Turn};
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
    /// and written by the runtime; `Ok(None)`, with nothing sent, when that queue holds its
    /// bound already (send the waiting way then). With `wait`, never `Ok(None)`.
    ///
    /// `Ok(Some(last))`: the number of the last frame (the one before has `last - 1`, and
    /// so on); with `wait` it is also this thread's ticket for `wait_ack_until`.
    pub(crate) fn write_many_blocking<K: Clone + Send + 'static>(
        self: &Arc<Self>,
        msgs: &[&[u8]],
        deadline: Instant,
        handle: &Handle,
        owner: &K,
        wait: bool,
    ) -> Result<Option<u64>, SocketError> {
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
        let guard = match self.lock.clone().try_lock_owned() {
            Ok(g) => Some(self.held(g)),
            Err(_) if !wait => None,
            Err(_) => {
                // About to block: an event loop on this thread must not hold back the reads
                // (and acks) that would let the holder of the lock finish.
                #[cfg(target_os = "linux")]
                crate::os::unix::armed::let_go_here();
                Some(self.held(block_on(handle, self.lock.clone().lock_owned())?))
            }
        };
        let count = msgs.len();
        let turn = self
            .backlog
            .turn(&self.acks, count, total, guard.is_some(), !wait, || {
                pending(&all_parts)
            });
        let last = match turn {
            Turn::Direct(last) => last,
            Turn::Full => return Ok(None),
            Turn::Queued { last, drain } => {
                // Behind frames that wait already: the task that writes them takes ours too.
                drop(guard);
                if wait {
                    self.keep_ticket(last);
                }
                if drain {
                    let (me, owner) = (self.clone(), owner.clone());
                    handle.spawn(async move {
                        let _owner = owner;
                        let _guard = me.held(me.lock.clone().lock_owned().await);
                        me.drain_backlog().await;
                    });
                }
                return Ok(Some(last));
            }
        };
        if wait {
            self.keep_ticket(last);
        }
        let mut parts = &mut all_parts[..];
        let slice = if wait { WRITE_SLICE } else { Duration::ZERO };
        let slice_end = deadline.min(Instant::now() + slice);
        let done = match self.write_parts_direct(&mut parts, slice_end) {
            Ok(done) => done,
            Err(e) => {
                self.unnumber(last, count);
                return Err(e);
            }
        };
        if done == total {
            drop(guard);
            msgs.iter().try_for_each(|_| self.signal_ready())?;
            return Ok(Some(last));
        }
        // The peer is slow to make room: hand the rest to the runtime (it keeps the write
        // lock, so the frames stay whole and in their place) and return, so the caller can
        // wait for the acks in short, interruptible slices (or on its event loop).
        let rest = pending(parts);
        let (me, owner) = (self.clone(), owner.clone());
        handle.spawn(async move {
            let _owner = owner;
            let _guard = guard;
            me.finish_in_background(rest).await;
        });
        Ok(Some(last))
    }

    /// Writes `parts` on this thread until they are complete or `slice_end` passes,
    /// waiting for room with poll(2): a large message needs several rounds of "the peer
    /// drained the buffer", and each would otherwise cost two thread hops through the
    /// runtime's I/O thread. Returns how many bytes were written; `parts` is advanced past
    /// them. An error after some bytes ends the connection (half a frame is out).
    fn write_parts_direct(
        &self,
        parts: &mut &mut [IoSlice<'_>],
        slice_end: Instant,
    ) -> Result<usize, SocketError> {
        let mut done = 0;
        while !parts.is_empty() {
            let batch = &parts[..parts.len().min(MAX_SLICES)];
            let failed = match self.write_direct(batch) {
                Ok(n) => {
                    done += n;
                    IoSlice::advance_slices(parts, n);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = slice_end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    #[cfg(target_os = "linux")]
                    crate::os::unix::armed::let_go_here(); // the peer may be this thread's loop
                    match self.stream.poll_writable(left) {
                        Ok(_) => continue,
                        Err(e) => e,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            if done > 0 {
                self.abandon();
            }
            return Err(write_failed(failed));
        }
        Ok(done)
    }

    /// Writes what it can on this thread, with the private ack channel while the
    /// connection's first bytes have not carried it yet.
    fn write_direct(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        return self.acks.write(|fds| self.stream.write_direct(bufs, fds));
        #[cfg(not(target_os = "linux"))]
        self.stream.write_direct(bufs, &[])
    }
}
