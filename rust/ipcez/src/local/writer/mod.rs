//! Writing a local connection: whole frames only, numbered in write order, then "data
//! ready" (unless the peer is known to be ipcez), then the wait for the frame's ack (see
//! `acks`).
//!
//! Three writers put frames on the wire: the async one below (through the runtime's
//! readiness), and on Unix the direct one of `send_frame_blocking` (on the caller's thread,
//! with poll(2)) and its background finisher for a frame the peer is slow to take (see
//! `direct`). A frame is never left half written with the stream still open: the next
//! frame would start inside it, so a writer that stops half-way ends the connection.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::acks::ConnAck;
use crate::error::{SocketError, connection_lost, is_disconnect};
use crate::frame::header;
use crate::inbox::Inbox;
use crate::os::LocalStream;

mod backlog;
#[cfg(unix)]
mod direct;

use backlog::{Backlog, Pending, Turn};

#[cfg(target_os = "linux")]
type Held<G> = super::doorbell::Flushing<G>;
#[cfg(not(target_os = "linux"))]
type Held<G> = G;

/// How long a local ack wait sleeps before looking whether the connection ended.
const ACK_POLL: Duration = Duration::from_millis(20);

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// The writer and number of the last frame this thread wrote with `write_blocking`:
    /// the one its `wait_ack_until` waits for.
    static TICKET: std::cell::Cell<Option<(u64, u64)>> = const { std::cell::Cell::new(None) };
}

/// The writing half of a local connection.
#[derive(Debug)]
pub(crate) struct Writer {
    /// Unique in this process (the key of a thread's ticket).
    id: u64,
    stream: Arc<LocalStream>,
    acks: Arc<ConnAck>,
    inbox: Arc<Inbox>,
    /// Held for a whole frame so frames from several senders never interleave.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The reader's doorbell, rung between frames (it shares `lock`).
    #[cfg(target_os = "linux")]
    bell: Arc<super::doorbell::Bell>,
    /// Frames queued while the stream was busy; numbers every frame (see `backlog`).
    backlog: Backlog,
}

impl Writer {
    pub(crate) fn new(
        stream: Arc<LocalStream>,
        acks: Arc<ConnAck>,
        inbox: Arc<Inbox>,
        #[cfg(target_os = "linux")] bell: Arc<super::doorbell::Bell>,
    ) -> Self {
        Writer {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            stream,
            acks,
            inbox,
            #[cfg(target_os = "linux")]
            lock: bell.lock().clone(),
            #[cfg(not(target_os = "linux"))]
            lock: Arc::new(tokio::sync::Mutex::new(())),
            #[cfg(target_os = "linux")]
            bell,
            backlog: Backlog::default(),
        }
    }

    /// A guard of the write lock that rings the reader's owed doorbell once dropped.
    fn held<G>(&self, guard: G) -> Held<G> {
        #[cfg(target_os = "linux")]
        return self.bell.holding(guard);
        #[cfg(not(target_os = "linux"))]
        guard
    }

    /// Writes one frame of `msg` (already checked) and signals "data ready"; returns the
    /// frame's number for [`wait_ack_of`](Self::wait_ack_of).
    pub(crate) async fn write(&self, msg: &[u8], deadline: Instant) -> Result<u64, SocketError> {
        let hdr = header(msg.len());
        let _guard = self.held(self.lock.lock().await);
        #[cfg(windows)]
        let _writing = self.acks.writing_frames();
        let pending = || Pending {
            bytes: [&hdr[..], msg].concat(),
            count: 1,
            deadline,
        };
        let len = hdr.len() + msg.len();
        let seq = match self.backlog.turn(&self.acks, 1, len, true, false, pending) {
            Turn::Direct(seq) => seq,
            // Frames of sends that must not wait are queued: ours goes behind them, and
            // we write them all (we hold the write lock), whether or not a task to drain
            // them was started already.
            Turn::Queued { last, drain } => {
                let _ = drain;
                self.drain_backlog().await;
                return Ok(last);
            }
            Turn::Full => unreachable!("an unbounded turn is never refused"),
        };
        if let Err(e) = self.write_frame(&hdr, msg, deadline).await {
            self.unnumber(seq, 1);
            return Err(e);
        }
        self.signal_ready()?;
        Ok(seq)
    }

    /// Takes back the numbers of frames that failed before a byte of them went out; when
    /// later frames were numbered meanwhile, their numbers cannot match the wire any more,
    /// so the connection ends.
    fn unnumber(&self, last: u64, count: usize) {
        if !self.backlog.unnumber(&self.acks, last, count) {
            self.abandon();
        }
    }

    /// Writes the queued frames, in order; call with the write lock held.
    async fn drain_backlog(&self) {
        while let Some(p) = self.backlog.pop() {
            self.finish_in_background(p).await;
        }
    }

    /// Frames (or the rest of one) that a send could not write at once: written through
    /// the runtime until their deadline, then "data ready" is signalled once per message.
    /// A failure ends the connection (half a frame may be on the wire); the senders' ack
    /// waits then see it. Call with the write lock held.
    async fn finish_in_background(&self, p: Pending) {
        let rest = p.bytes;
        let mut done = 0;
        while done < rest.len() {
            // The channel still rides along when not a byte of the connection went out yet.
            match self.try_write(&[IoSlice::new(&rest[done..])]) {
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

    /// Named pipes: writes the ack records our reader owes the peer, each between two
    /// frames (under the write lock, which is taken only for the write itself: waiting for
    /// room happens without it, so no send waits on a peer that does not read). Runs for
    /// the connection's life; after a failed write the reader ends the connection.
    #[cfg(windows)]
    pub(crate) async fn send_acks(&self) {
        loop {
            self.acks.records_wanted().await;
            while let Some(record) = self.acks.next_record() {
                let n = u32::from_be_bytes(record) & crate::frame::MAX_ACK_RECORD;
                let ok = self.write_record(&record).await.is_ok();
                self.acks.record_done(n, ok);
                if !ok {
                    return std::future::pending().await;
                }
            }
        }
    }

    #[cfg(windows)]
    async fn write_record(&self, record: &[u8; 4]) -> io::Result<()> {
        loop {
            {
                let _guard = self.lock.lock().await;
                match self.stream.try_write_vectored(&[IoSlice::new(record)]) {
                    // A pipe write takes the whole buffer or nothing.
                    Ok(n) if n == record.len() => {
                        self.stream.acked_in_band();
                        break;
                    }
                    Ok(_) => return Err(io::ErrorKind::WriteZero.into()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            self.stream.writable().await?;
        }
        // Until the write completes it could still be cancelled (a close disconnects the
        // pipe): a pipe takes one write at a time, so an empty one goes through only then.
        loop {
            match self.stream.try_write_vectored(&[]) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            self.stream.writable().await?;
        }
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
        let seq = crate::runtime::block_on(handle, self.write(msg, deadline))??;
        self.keep_ticket(seq);
        Ok(())
    }

    /// Remembers, for this thread, the frame that [`wait_ack_until`](Self::wait_ack_until)
    /// is to wait for.
    fn keep_ticket(&self, seq: u64) {
        TICKET.with(|t| t.set(Some((self.id, seq))));
    }

    /// [`write`](Self::write) of several messages for threads outside the runtime, one
    /// after the other (named pipes are written through the runtime, so this may wait even
    /// without `wait`). Returns the number of the last frame; this thread's ticket.
    #[cfg(not(unix))]
    pub(crate) fn write_many_blocking<K>(
        &self,
        msgs: &[&[u8]],
        deadline: Instant,
        handle: &tokio::runtime::Handle,
        _owner: &K,
        _wait: bool,
    ) -> Result<Option<u64>, SocketError> {
        let mut last = self.acks.last_written();
        for m in msgs {
            last = crate::runtime::block_on(handle, self.write(m, deadline))??;
            self.keep_ticket(last);
        }
        Ok(Some(last))
    }

    /// See `Socket::ack_doorbells`.
    #[cfg(target_os = "linux")]
    pub(crate) fn ack_doorbells(&self, on: bool) -> bool {
        self.acks.want_doorbells(on)
    }

    /// The number of the last frame numbered so far: waiting for its ack covers every
    /// frame numbered before.
    pub(crate) fn last_frame(&self) -> u64 {
        self.acks.last_written()
    }

    /// Waits until `deadline` for the ack of the last frame this thread wrote with
    /// `write_blocking`; on a thread that wrote none, for the last frame written (whose ack
    /// covers every earlier one).
    pub(crate) fn wait_ack_until(&self, deadline: Instant) -> Result<(), SocketError> {
        let seq = TICKET
            .with(|t| t.get())
            .filter(|&(id, _)| id == self.id)
            .map_or_else(|| self.acks.last_written(), |(_, seq)| seq);
        self.wait_ack_of(seq, deadline)
    }

    /// Waits until `deadline` for the ack of frame `seq`; looks every `ACK_POLL` whether
    /// the connection ended meanwhile.
    pub(crate) fn wait_ack_of(&self, seq: u64, deadline: Instant) -> Result<(), SocketError> {
        let peer_gone = || self.stream.peer_hung_up();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.acks.wait(seq, left.min(ACK_POLL), &peer_gone)? {
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
            match self.try_write(&unwritten(hdr, msg, done)) {
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

    /// Writes what it can through the runtime's readiness, with the private ack channel
    /// while the connection's first bytes have not carried it yet.
    fn try_write(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        return self
            .acks
            .write(|fds| self.stream.try_write_vectored(bufs, fds));
        #[cfg(all(unix, not(target_os = "linux")))]
        return self.stream.try_write_vectored(bufs, &[]);
        #[cfg(windows)]
        self.stream.try_write_vectored(bufs)
    }

    fn signal_ready(&self) -> Result<(), SocketError> {
        self.acks.after_frame()?;
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
