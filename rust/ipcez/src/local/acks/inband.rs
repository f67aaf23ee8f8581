//! Named pipes: acks in band between two ipcez endpoints.
//!
//! Once both ends know the other is ipcez (see `os::windows::private_ack`), each reader
//! answers the messages it read whole with a 4-byte ack record on the pipe itself, written
//! between frames. Only the two ends of this connection can put bytes on it, so no other
//! process, connection or leftover token can give, take or delay these acks. A custom peer
//! never gets a record: nothing private is written before its kind is known.
//!
//! The listener's end does not know at first: its sends wait, taking no shared token, until
//! the client's first byte says (the hello, or a frame), or until the client's process holds
//! no intent marker any more (then no hello is coming: a custom client).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{CUSTOM, ConnAck, PRIVATE, UNKNOWN};
use crate::frame::Control;
use crate::os::windows::private_ack::{Handshake, Marker};

/// How often a listener's send looks again whether a client of unknown kind is custom.
const LOOK_AGAIN: Duration = Duration::from_millis(5);

/// How long a reader waits at most for its acks to be out before it queues the messages
/// (a bound only: it waits until then, or until a frame of ours starts being written).
const ACKS_OUT: Duration = Duration::from_secs(1);

/// The largest count one ack record carries.
const MAX_PER_RECORD: u64 = crate::frame::MAX_ACK_RECORD as u64;

/// The in-band side of one pipe connection's acks.
#[derive(Debug, Default)]
pub(super) struct InBand {
    /// Acks the peer sent in band so far.
    received: Mutex<u64>,
    /// Wakes ack waiters: an ack came, or the peer's kind became known.
    news: Condvar,
    owed: Mutex<Owed>,
    /// Wakes the task that writes our ack records.
    to_write: tokio::sync::Notify,
    /// Wakes a reader waiting for its acks to be out (see `acks_out`).
    out: tokio::sync::Notify,
    /// A frame of ours is being written: an ack record waits for it.
    writing: AtomicBool,
    /// Client: our intent marker, held until the listener answered our hello.
    intent: Mutex<Option<Marker>>,
    /// Listener: the intent marker name of the client's process (`None` on a client).
    client_intent: Option<String>,
    listener: bool,
}

#[derive(Debug, Default)]
struct Owed {
    /// Not written yet.
    count: u64,
    /// Owed so far, and how many of those are on the wire.
    total: u64,
    sent: u64,
    /// A record could not be written (the connection is ending).
    failed: bool,
    /// The answer to the client's hello (a record of 0 acks) is still to go.
    answer: bool,
}

impl InBand {
    /// The in-band state of a new connection, and the ack mode it starts in.
    pub(super) fn new(handshake: Handshake) -> (Self, u8) {
        match handshake {
            Handshake::Client { intent: Some(m) } => (
                InBand {
                    intent: Mutex::new(Some(m)),
                    ..InBand::default()
                },
                PRIVATE,
            ),
            Handshake::Client { intent: None } => (InBand::default(), CUSTOM),
            // Without the client's process id nothing can tell a custom client that never
            // writes: acked as one, and a hello is refused.
            Handshake::Server { client_intent } => {
                let mode = if client_intent.is_some() {
                    UNKNOWN
                } else {
                    CUSTOM
                };
                let pipe = InBand {
                    client_intent,
                    listener: true,
                    ..InBand::default()
                };
                (pipe, mode)
            }
        }
    }

    fn received(&self) -> MutexGuard<'_, u64> {
        self.received.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn owed(&self) -> MutexGuard<'_, Owed> {
        self.owed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ConnAck {
    /// How our reader parses what the peer writes: a client that sent the hello reads ack
    /// records from the start; a listener looks for the hello first.
    pub(crate) fn decoder_control(&self) -> Control {
        match self.mode.load(Ordering::Acquire) {
            PRIVATE => Control::On,
            _ if self.pipe.listener => Control::First,
            _ => Control::Off,
        }
    }

    /// Settles the peer's kind once; false when it was settled otherwise before.
    fn decide(&self, mode: u8) -> bool {
        let won = self
            .mode
            .compare_exchange(UNKNOWN, mode, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        let _wake = self.pipe.received();
        self.pipe.news.notify_all();
        won || self.mode.load(Ordering::Acquire) == mode
    }

    /// Listener's reader: the client's first byte came. `0xFF` starts the hello of an
    /// ipcez client (answered at once); anything else is a custom client's frame. Errors
    /// when the hello comes from a client already taken for custom (it held no intent
    /// marker, which every ipcez client does).
    pub(crate) fn first_byte(&self, byte: u8) -> io::Result<bool> {
        if !self.pipe.listener {
            return Ok(self.is_private());
        }
        if byte != 0xFF {
            self.decide(CUSTOM);
            return Ok(false);
        }
        if !self.decide(PRIVATE) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "protocol violation: the client sent the ipcez hello without announcing it; \
                 closing the connection",
            ));
        }
        self.pipe.owed().answer = true;
        self.pipe.to_write.notify_one();
        Ok(true)
    }

    /// Reader: the peer sent ack records for `n` of our messages (0: the hello's answer).
    pub(crate) fn acks_received(&self, n: u64) {
        // The listener has read our hello: a custom connection of this process that the
        // listener is deciding about need not wait for us any more.
        drop(
            self.pipe
                .intent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        *self.pipe.received() += n;
        self.pipe.news.notify_all();
    }

    /// Reader: `n` messages of the peer were read whole; their acks go out in band.
    pub(crate) fn owe(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut owed = self.pipe.owed();
        owed.count += n as u64;
        owed.total += n as u64;
        drop(owed);
        self.pipe.to_write.notify_one();
    }

    /// Writer's ack task: waits until there is something to write.
    pub(crate) async fn records_wanted(&self) {
        self.pipe.to_write.notified().await
    }

    /// Writer's ack task: the next ack record to write, if any.
    pub(crate) fn next_record(&self) -> Option<[u8; 4]> {
        let mut owed = self.pipe.owed();
        if owed.count == 0 && !owed.answer {
            return None;
        }
        let n = owed.count.min(MAX_PER_RECORD);
        owed.count -= n;
        owed.answer = false;
        Some(crate::frame::ack_record(n as u32))
    }

    /// Writer's ack task: the record of `n` acks went out (`ok`), or could not.
    pub(crate) fn record_done(&self, n: u32, ok: bool) {
        let mut owed = self.pipe.owed();
        owed.sent += u64::from(n);
        owed.failed |= !ok;
        drop(owed);
        self.pipe.out.notify_waiters();
    }

    /// Reader: waits until the acks owed so far are on the wire (or cannot be), so that
    /// a receiver that takes a message and closes at once does not take its ack with it.
    /// Not while a frame of ours is being written (nor longer than `ACKS_OUT`): that frame
    /// may wait for the peer to read, and the peer's reader for our acks — both would stop.
    pub(crate) async fn acks_out(&self) {
        let _ = tokio::time::timeout(ACKS_OUT, self.all_acks_out()).await;
    }

    async fn all_acks_out(&self) {
        loop {
            let out = self.pipe.out.notified();
            tokio::pin!(out);
            out.as_mut().enable();
            let done = {
                let owed = self.pipe.owed();
                owed.sent >= owed.total || owed.failed || self.pipe.writing.load(Ordering::Acquire)
            };
            if done {
                return;
            }
            out.await;
        }
    }

    /// Writer: frames of ours are being written until the guard drops.
    pub(crate) fn writing_frames(&self) -> WritingFrames<'_> {
        self.pipe.writing.store(true, Ordering::Release);
        // A reader waiting for its acks stops waiting: they now come after this frame.
        self.pipe.out.notify_waiters();
        WritingFrames(self)
    }

    /// Sender on a pipe: waits up to `timeout` for the ack of frame `seq`.
    pub(super) fn pipe_wait(&self, seq: u64, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut got = self.pipe.received();
        loop {
            let mode = self.mode.load(Ordering::Acquire);
            match mode {
                PRIVATE if *got >= seq => return Ok(true),
                CUSTOM => {
                    drop(got);
                    let left = deadline.saturating_duration_since(Instant::now());
                    return self.shared.wait_acked(left);
                }
                UNKNOWN if self.pipe.custom_client() => {
                    drop(got);
                    self.decide(CUSTOM);
                    got = self.pipe.received();
                    continue;
                }
                _ => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let slice = if mode == UNKNOWN {
                left.min(LOOK_AGAIN)
            } else {
                left
            };
            got = self
                .pipe
                .news
                .wait_timeout(got, slice)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl InBand {
    /// Listener: the client's process announces no ipcez connection in progress on this
    /// pipe. An ipcez client holds its marker from before it connects until our reader
    /// answered its hello, so by now our reader has seen the hello if one was sent.
    fn custom_client(&self) -> bool {
        self.client_intent
            .as_ref()
            .is_some_and(|name| Marker::find(name).is_none())
    }
}

/// See [`ConnAck::writing_frames`].
pub(crate) struct WritingFrames<'a>(&'a ConnAck);

impl Drop for WritingFrames<'_> {
    fn drop(&mut self) {
        self.0.pipe.writing.store(false, Ordering::Release);
    }
}
