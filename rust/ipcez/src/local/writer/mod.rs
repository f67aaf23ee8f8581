//! Writing a local connection: whole frames only, then "data ready", then the wait for
//! "data acked".
//!
//! Three writers put frames on the wire: the async one below (through the runtime's
//! readiness), and on Unix the direct one of `send_frame_blocking` (on the caller's thread,
//! with poll(2)) and its background finisher for a frame the peer is slow to take (see
//! `direct`). A frame is never left half written with the stream still open: the next
//! frame would start inside it, so a writer that stops half-way ends the connection.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ack::AckPair;
use crate::error::{SocketError, connection_lost, is_disconnect};
use crate::frame::header;
use crate::inbox::Inbox;
use crate::os::LocalStream;

mod backlog;
#[cfg(unix)]
mod direct;

use backlog::Backlog;

/// How long a local ack wait sleeps before looking whether the connection ended.
const ACK_POLL: Duration = Duration::from_millis(20);

/// The writing half of a local connection.
#[derive(Debug)]
pub(crate) struct Writer {
    stream: Arc<LocalStream>,
    acks: Arc<AckPair>,
    inbox: Arc<Inbox>,
    /// Held for a whole frame so frames from several senders never interleave.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Frames of sends that must not wait, queued while the stream was busy.
    #[cfg_attr(not(unix), allow(dead_code))]
    backlog: Backlog,
}

impl Writer {
    pub(crate) fn new(stream: Arc<LocalStream>, acks: Arc<AckPair>, inbox: Arc<Inbox>) -> Self {
        Writer {
            stream,
            acks,
            inbox,
            lock: Arc::new(tokio::sync::Mutex::new(())),
            backlog: Backlog::default(),
        }
    }

    /// Writes one frame of `msg` (already checked) and signals "data ready".
    pub(crate) async fn write(&self, msg: &[u8], deadline: Instant) -> Result<(), SocketError> {
        let hdr = header(msg.len());
        let _guard = self.lock.lock().await;
        self.write_frame(&hdr, msg, deadline).await?;
        self.signal_ready()
    }

    /// [`write`](Self::write) for threads outside the runtime, where the stream cannot be
    /// written on the caller's thread.
    #[cfg(not(unix))]
    pub(crate) fn write_blocking<K>(
        &self,
        msg: &[u8],
        deadline: Instant,
        handle: &tokio::runtime::Handle,
        _owner: &K,
    ) -> Result<(), SocketError> {
        crate::runtime::block_on(handle, self.write(msg, deadline))?
    }

    /// [`write`](Self::write) of several messages for threads outside the runtime, one
    /// after the other (named pipes are written through the runtime, so this may wait even
    /// without `wait`).
    #[cfg(not(unix))]
    pub(crate) fn write_many_blocking<K>(
        &self,
        msgs: &[&[u8]],
        deadline: Instant,
        handle: &tokio::runtime::Handle,
        _owner: &K,
        _wait: bool,
    ) -> Result<bool, SocketError> {
        msgs.iter()
            .try_for_each(|m| crate::runtime::block_on(handle, self.write(m, deadline))?)
            .map(|()| true)
    }

    /// Takes one "data acked" token, waiting until `deadline`; looks every `ACK_POLL`
    /// whether the connection ended meanwhile.
    pub(crate) fn wait_ack_until(&self, deadline: Instant) -> Result<(), SocketError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.acks.wait_acked(left.min(ACK_POLL))? {
                return Ok(());
            }
            if self.inbox.has_ended() {
                return Err(connection_lost().into());
            }
            if left <= ACK_POLL {
                return Err(SocketError::RecipientAckTimeout);
            }
        }
    }

    /// Writes a whole frame through the runtime's readiness (the async path).
    async fn write_frame(
        &self,
        hdr: &[u8; 4],
        msg: &[u8],
        deadline: Instant,
    ) -> Result<(), SocketError> {
        // If this future is dropped half-way (a timeout or select! around send_message), the
        // guard ends the connection: the next frame must never start inside this one.
        let mut progress = HalfFrameGuard {
            writer: self,
            done: 0,
            total: hdr.len() + msg.len(),
        };
        while progress.done < progress.total {
            let done = progress.done;
            match self.stream.try_write_vectored(&unwritten(hdr, msg, done)) {
                Ok(n) => progress.done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let ready =
                        tokio::time::timeout_at(deadline.into(), self.stream.writable()).await;
                    match ready {
                        Ok(r) => r.map_err(write_failed)?,
                        Err(_) => {
                            progress.total = 0; // handled here, not by the guard
                            return Err(self.timed_out(done));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(write_failed(e)),
            }
        }
        Ok(())
    }

    fn signal_ready(&self) -> Result<(), SocketError> {
        self.acks.signal_ready()?;
        Ok(())
    }

    /// The frame could not be handed to the kernel in time.
    fn timed_out(&self, written: usize) -> SocketError {
        if written > 0 {
            self.abandon();
        }
        SocketError::RecipientAckTimeout
    }

    /// Half a frame is on the wire: the stream cannot carry another message, so the
    /// connection ends here — like a peer loss, messages already received stay takeable.
    fn abandon(&self) {
        self.stream.shutdown();
        self.inbox.end(&connection_lost());
    }
}

/// Ends the connection when dropped with a frame half written (see `write_frame`).
struct HalfFrameGuard<'a> {
    writer: &'a Writer,
    done: usize,
    total: usize,
}

impl Drop for HalfFrameGuard<'_> {
    fn drop(&mut self) {
        if self.done > 0 && self.done < self.total {
            self.writer.abandon();
        }
    }
}

/// What is left of a frame (`hdr` then `msg`) after `done` bytes were written.
fn unwritten<'a>(hdr: &'a [u8; 4], msg: &'a [u8], done: usize) -> [IoSlice<'a>; 2] {
    if done < hdr.len() {
        [IoSlice::new(&hdr[done..]), IoSlice::new(msg)]
    } else {
        [IoSlice::new(&msg[done - hdr.len()..]), IoSlice::new(&[])]
    }
}

/// A write error as the user sees it: a dead peer is "connection lost".
fn write_failed(e: io::Error) -> SocketError {
    if is_disconnect(&e) {
        connection_lost().into()
    } else {
        e.into()
    }
}
