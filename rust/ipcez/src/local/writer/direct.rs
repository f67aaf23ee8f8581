//! The direct writer (Unix): `send_frame_blocking` writes on the caller's thread, waiting
//! for room with poll(2), and hands a frame the peer is slow to take to the runtime.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::{Writer, unwritten, write_failed};
use crate::error::SocketError;
use crate::frame::header;
use crate::runtime::block_on;

/// How long a blocking send writes on the caller's thread before it hands the rest of a
/// frame to the runtime (so a caller such as Python can be interrupted).
const WRITE_SLICE: Duration = Duration::from_millis(50);

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
        let guard = match self.lock.clone().try_lock_owned() {
            Ok(g) => g,
            Err(_) => block_on(handle, self.lock.clone().lock_owned())?,
        };
        let hdr = header(msg.len());
        let slice_end = deadline.min(Instant::now() + WRITE_SLICE);
        let done = self.write_frame_direct(&hdr, msg, slice_end)?;
        // Numbered now: the write lock keeps the order, even for a rest written later.
        self.keep_ticket(self.acks.frame_written());
        if done == hdr.len() + msg.len() {
            drop(guard);
            return self.signal_ready();
        }
        // The peer is slow to make room: hand the rest of the frame to the runtime (it
        // keeps the write lock, so the frame stays whole) and return, so the caller can
        // wait for the ack in short, interruptible slices.
        let mut rest = Vec::with_capacity(hdr.len() + msg.len() - done);
        for part in unwritten(&hdr, msg, done) {
            rest.extend_from_slice(&part);
        }
        let (me, owner) = (self.clone(), owner.clone());
        handle.spawn(async move {
            let _owner = owner;
            let _guard = guard;
            me.finish_in_background(rest, deadline).await;
        });
        Ok(())
    }

    /// Writes a frame on this thread until it is complete or `slice_end` passes, waiting
    /// for room with poll(2): a large message needs several rounds of "the peer drained the
    /// buffer", and each would otherwise cost two thread hops through the runtime's I/O
    /// thread. Returns how many bytes of header + message were written.
    fn write_frame_direct(
        &self,
        hdr: &[u8; 4],
        msg: &[u8],
        slice_end: Instant,
    ) -> Result<usize, SocketError> {
        let total = hdr.len() + msg.len();
        let mut done = 0;
        while done < total {
            let bufs = unwritten(hdr, msg, done);
            match self.write_direct(&bufs) {
                Ok(n) => done += n,
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

    /// The rest of a frame that `write_blocking` could not write within its slice: written
    /// through the runtime until the ack deadline, then "data ready" is signalled. A
    /// failure ends the connection (half a frame is on the wire); the caller's ack wait
    /// then sees it.
    async fn finish_in_background(&self, rest: Vec<u8>, deadline: Instant) {
        let mut done = 0;
        while done < rest.len() {
            // The channel still rides along when not a byte of the frame went out yet.
            match self.try_write(&[IoSlice::new(&rest[done..])]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match tokio::time::timeout_at(deadline.into(), self.stream.writable()).await {
                        Ok(Ok(())) => {}
                        _ => return self.abandon(),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.abandon(),
            }
        }
        if self.signal_ready().is_err() {
            self.abandon();
        }
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
