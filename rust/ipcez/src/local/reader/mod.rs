//! Reading a local connection: frames off the wire, an ack for each, into the inbox.
//!
//! Two kinds of thread take turns as the reader, whoever holds [`ReadSide::state`]:
//! - the connection's background task on the runtime, so that messages are read and acked
//!   even while nobody calls `recv`;
//! - on Unix, a thread blocked in `recv_blocking` (a Python thread, say), which waits with
//!   poll(2) and reads the socket itself (`direct`). That saves the hop from the runtime's I/O thread
//!   to the waiting thread — on two cores a cross-core wake-up costs tens of microseconds,
//!   the largest part of a local round trip.
//!
//! Frames are acked, then queued, while the lock is held, so the order on the wire is the
//! order of the inbox; a direct reader hands a frame straight to its caller only when the
//! inbox is empty.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use bytes::BufMut;

use super::acks::{ConnAck, PeerSide};
use crate::budget::ReadBudget;
use crate::error::{connection_lost, is_disconnect};
use crate::frame::FrameDecoder;
use crate::inbox::Inbox;
use crate::os::LocalStream;

#[cfg(unix)]
mod direct;

const READ_BUFFER: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct ReadState {
    decoder: FrameDecoder,
    buf: Vec<u8>,
    /// How messages from the peer are acked (decided by its first frame).
    peer: PeerSide,
}

/// The reading half of a local connection, shared by the background task and direct readers.
#[derive(Debug)]
pub(crate) struct ReadSide {
    stream: Arc<LocalStream>,
    acks: Arc<ConnAck>,
    inbox: Arc<Inbox>,
    /// Limits reading while the connection waits for `accept`.
    pub(crate) budget: Arc<ReadBudget>,
    state: Mutex<ReadState>,
    /// Rung when the peer asks for a doorbell with its acks.
    #[cfg(target_os = "linux")]
    bell: Arc<super::doorbell::Bell>,
}

/// What one read attempt gave.
pub(crate) enum Step {
    /// Bytes were read (zero or more frames completed into the output).
    Progress,
    /// Bytes were read, fewer than asked for: the socket had no more just then, so a
    /// direct reader waits for it (or lets the caller's poll do so) instead of reading
    /// again only to be told "would block".
    Drained,
    /// Nothing to read right now.
    WouldBlock,
}

impl ReadSide {
    pub(crate) fn new(
        stream: Arc<LocalStream>,
        acks: Arc<ConnAck>,
        inbox: Arc<Inbox>,
        budget: Arc<ReadBudget>,
        #[cfg(target_os = "linux")] bell: Arc<super::doorbell::Bell>,
    ) -> Self {
        #[allow(unused_mut)] // set on Windows only
        let mut decoder = FrameDecoder::new();
        #[cfg(windows)]
        decoder.set_control(acks.decoder_control());
        ReadSide {
            stream,
            acks,
            inbox,
            budget,
            state: Mutex::new(ReadState {
                decoder,
                buf: Vec::with_capacity(READ_BUFFER),
                peer: PeerSide::default(),
            }),
            #[cfg(target_os = "linux")]
            bell,
        }
    }

    /// True once the peer has hung up (it may have left unread bytes behind).
    pub(crate) fn peer_hung_up(&self) -> bool {
        self.stream.peer_hung_up()
    }

    /// See `Socket::held_by_loop`.
    #[cfg(target_os = "linux")]
    pub(crate) fn held_by_loop(&self, on: bool) -> Option<std::os::fd::RawFd> {
        self.stream.held_by_loop(on)
    }

    /// True while an event loop holds the stream (see `held_by_loop`).
    #[cfg(target_os = "linux")]
    pub(crate) fn is_held(&self) -> bool {
        self.stream.is_held()
    }

    /// Takes the reader's role if nobody has it.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, ReadState>> {
        match self.state.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Gives the reader's role back to the background task (see `LocalStream::hand_back`).
    #[cfg(unix)]
    pub(crate) fn unlock(&self, guard: MutexGuard<'_, ReadState>) {
        drop(guard);
        self.stream.hand_back();
    }

    /// One read: `direct` reads the fd itself (a thread that waited with poll), otherwise
    /// through tokio's readiness. Completed frames are appended to `out` (not yet acked:
    /// see [`acknowledge`](Self::acknowledge)). The error is the one that ends the connection.
    pub(crate) fn step(
        &self,
        st: &mut ReadState,
        direct: bool,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Step, io::Error> {
        let ReadState { decoder, buf, peer } = st;
        #[cfg(target_os = "linux")]
        let frames_before = out.len();
        // The caller waits while the budget is spent; otherwise it bounds this read.
        let allowance = self.budget.allowance();
        // Large bodies are read straight into their own buffer, small ones via `buf`.
        let mut short = false;
        let (read, into_body) = match decoder.direct_target() {
            Some((body, missing)) => (
                self.read(&mut body.limit(missing.min(allowance)), direct, &mut short),
                true,
            ),
            None if peer.wants_channel() => {
                buf.clear();
                let read = self.read_first(buf, direct, peer);
                // An ipcez peer may ring doorbells from now on (see `doorbell`).
                #[cfg(target_os = "linux")]
                if peer.is_ipcez() {
                    decoder.set_control(crate::frame::Control::On);
                }
                (read, false)
            }
            None => {
                buf.clear();
                (
                    self.read(&mut buf.limit(allowance), direct, &mut short),
                    false,
                )
            }
        };
        if let Ok(n) = read {
            self.budget.spend(n);
        }
        match read {
            // End of stream; a partial frame is dropped, never delivered.
            Ok(0) => return Err(connection_lost()),
            Ok(_) if into_body => out.extend(decoder.finish_if_complete()),
            Ok(_) => {
                let mut input = &buf[..];
                while !input.is_empty() {
                    let (used, msg) = decoder.feed(input)?;
                    input = &input[used..];
                    out.extend(msg);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Step::Progress),
            Err(e) if is_disconnect(&e) => return Err(connection_lost()),
            Err(e) => return Err(e),
        }
        #[cfg(windows)]
        if let Some(n) = decoder.take_acks() {
            self.acks.acks_received(n);
        }
        // A busy peer loop lets a frame stand for its doorbell (see `doorbell`): while this
        // side asks for them, a frame is heard as one too.
        #[cfg(target_os = "linux")]
        if decoder.take_acks().is_some()
            || (out.len() > frames_before && self.acks.wants_doorbells())
        {
            self.doorbell_heard(direct);
        }
        Ok(if short { Step::Drained } else { Step::Progress })
    }

    /// Acks `n` messages read whole. Called before they are queued or returned: a receiver
    /// that takes a message and exits at once must not take its ack with it.
    pub(crate) fn acknowledge(&self, st: &mut ReadState, n: usize) -> io::Result<()> {
        let ring = st.peer.acknowledge(&self.acks, n)?;
        #[cfg(target_os = "linux")]
        if ring && self.stream.is_held_here() {
            self.bell.defer(); // see `Bell::defer`: the loop's next frame or iteration end
        } else if ring {
            self.bell.ring();
        }
        #[cfg(not(target_os = "linux"))]
        let _ = ring;
        Ok(())
    }

    /// Rings a doorbell deferred by this thread's loop that no frame carried (see
    /// `Bell::ring_deferred`).
    #[cfg(target_os = "linux")]
    pub(crate) fn ring_deferred_doorbell(&self, turn_ends: bool) {
        self.bell.ring_deferred(turn_ends);
    }

    /// A doorbell came: the acks of our sends moved. An event loop that holds the socket
    /// on this thread looks at them after its read; anyone else has its poller told.
    #[cfg(target_os = "linux")]
    fn doorbell_heard(&self, direct: bool) {
        if !(direct && crate::os::unix::armed::holds_here()) {
            self.inbox.nudge();
        }
    }

    /// The reads until the peer's first bytes arrive also take the private ack channel
    /// that an ipcez peer attaches to its first frame; later reads never ask for ancillary
    /// data, so the kernel drops whatever a peer attaches then.
    fn read_first(
        &self,
        buf: &mut Vec<u8>,
        direct: bool,
        peer: &mut PeerSide,
    ) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        {
            let _ = direct;
            let (n, fds) = self.stream.read_with_fds(buf)?;
            if n > 0 {
                peer.first_read(&self.acks, fds);
            }
            Ok(n)
        }
        #[cfg(windows)]
        {
            let n = self.read(buf, direct, &mut false)?;
            if n > 0 {
                peer.first_read(&self.acks, buf[0])?;
            }
            Ok(n)
        }
        #[cfg(all(unix, not(target_os = "linux")))]
        {
            let n = self.read(buf, direct, &mut false)?;
            if n > 0 {
                peer.first_read(&self.acks);
            }
            Ok(n)
        }
    }

    /// One read; a direct one sets `short` when it got fewer bytes than it asked for.
    fn read<B: BufMut>(&self, buf: &mut B, direct: bool, short: &mut bool) -> io::Result<usize> {
        #[cfg(unix)]
        if direct {
            let (n, was_short) = self.stream.read_direct(buf)?;
            *short = was_short && n > 0;
            return Ok(n);
        }
        let _ = (direct, short);
        self.stream.try_read_buf(buf)
    }

    /// Queues frames in order; false when the inbox has ended.
    pub(crate) fn queue(&self, frames: &mut Vec<Vec<u8>>) -> bool {
        frames.drain(..).all(|f| self.inbox.push_now(f))
    }

    /// [`queue`](Self::queue) for an event loop that read them: its poller is not told.
    #[cfg(target_os = "linux")]
    pub(crate) fn queue_quietly(&self, frames: &mut Vec<Vec<u8>>) -> bool {
        frames.drain(..).all(|f| self.inbox.push_quietly(f))
    }

    /// Ends the stream in both directions (the user closed the connection).
    pub(crate) fn shutdown(&self) {
        self.stream.shutdown();
    }

    /// Ends the inbox with `e` and the stream with it.
    pub(crate) fn finish(&self, e: &io::Error) {
        self.inbox.end(e);
        self.stream.shutdown();
    }

    /// Where the stream cannot be read on the caller's thread, a blocking take waits for
    /// the background reader to fill the inbox.
    #[cfg(not(unix))]
    pub(crate) fn recv_blocking(
        &self,
        timeout: Option<std::time::Duration>,
    ) -> Result<Option<Vec<u8>>, crate::error::SocketError> {
        self.inbox.pop_blocking(timeout)
    }
}

/// Resolves once the peer has hung up (checked every 50 ms; where the OS cannot tell,
/// never): a reader paused on a full queue reads nothing, so it would not see the end
/// otherwise.
async fn hang_up(stream: &LocalStream) {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if stream.peer_hung_up() {
            return;
        }
    }
}

/// The background reader of a local connection.
pub(crate) async fn run(side: Arc<ReadSide>) {
    let mut frames = Vec::new();
    let end = loop {
        let open = if side.budget.allowance() == 0 {
            // Not accepted yet and its budget spent: read on once `accept` takes it.
            tokio::select! {
                biased;
                () = side.budget.lifted() => !side.inbox.has_ended(),
                () = hang_up(&side.stream) => false,
            }
        } else if side.inbox.has_room() {
            !side.inbox.has_ended()
        } else {
            // Paused on a full queue: still notice a peer that went away meanwhile.
            tokio::select! {
                biased;
                open = side.inbox.wait_room() => open,
                () = hang_up(&side.stream) => false,
            }
        };
        if !open {
            break connection_lost();
        }
        let attempt = side.try_lock().map(|mut st| {
            let step = side.step(&mut st, false, &mut frames);
            // Acked before they can be taken (a taker may exit at once), also the frames
            // read whole before an error.
            let acked = side.acknowledge(&mut st, frames.len());
            // In band, the acks must be out first; on Windows this task is the only reader.
            let open = cfg!(windows) || side.queue(&mut frames);
            (step.and_then(|s| acked.map(|()| s)), open)
        });
        #[cfg(windows)]
        let attempt = match attempt {
            Some((step, _)) if !frames.is_empty() => {
                side.acks.acks_out().await;
                Some((step, side.queue(&mut frames)))
            }
            other => other,
        };
        let Some((step, open)) = attempt else {
            // A thread reading the stream itself has it, and hands it back when done.
            #[cfg(unix)]
            if let Err(e) = side.stream.handed_back().await {
                break e;
            }
            #[cfg(not(unix))]
            tokio::task::yield_now().await;
            continue;
        };
        if !open {
            break connection_lost();
        }
        match step {
            Ok(Step::Progress | Step::Drained) => {}
            Ok(Step::WouldBlock) => {
                if let Err(e) = side.stream.readable().await {
                    break e;
                }
            }
            Err(e) => break e,
        }
    };
    side.finish(&end);
}
