//! The acks of one local connection.
//!
//! Between two ipcez endpoints on Linux each message is acked on a channel private to the
//! connection (see `os::unix::private_ack`): the first frame each side writes carries it,
//! and the peer's reader counts every message it reads whole on it. A custom peer never
//! takes the channel, and the shared named signals of the endpoint ([`AckPair`]) stay the
//! ack protocol with it.
//!
//! A sender starts not knowing which kind of peer it has. The peer's read of the first
//! frame decides: an ack on the private channel (an ipcez reader) makes the connection
//! private for good, and shared tokens are never looked at; the channel's end-of-file (a
//! custom reader's kernel closed the descriptors it did not ask for) makes it custom. Until
//! then the message cannot have been read, so nothing is taken as its ack — no stale or
//! forged shared token can acknowledge it.
//!
//! Named pipes have no such channel: between ipcez endpoints the acks go in band there
//! (see `inband`).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crate::ack::AckPair;

#[cfg(windows)]
mod inband;

/// Which ack protocol the peer of a connection speaks, as far as we know.
const UNKNOWN: u8 = 0;
/// An ipcez peer: acks come on the private channel only.
const PRIVATE: u8 = 1;
/// A custom peer: the endpoint's shared signals.
const CUSTOM: u8 = 2;

/// What our reader learned from the peer's first frame (`UNKNOWN` until it came).
const PEER_IPCEZ: u8 = 1;
const PEER_CUSTOM: u8 = 2;

/// The ack state of one connection, shared by its writers, its ack waiters and its reader.
#[derive(Debug)]
pub(crate) struct ConnAck {
    shared: Arc<AckPair>,
    /// UNKNOWN, PRIVATE or CUSTOM: how our sends are acked.
    mode: AtomicU8,
    /// What the peer's own first frame said about it (set by our reader).
    peer: AtomicU8,
    /// Frames written so far, in write order: frame `k` is acked once `k` acks came.
    written: AtomicU64,
    /// The peer's reader rings doorbells when asked (its page says so).
    #[cfg(target_os = "linux")]
    peer_rings: std::sync::atomic::AtomicBool,
    #[cfg(target_os = "linux")]
    channel: linux::Channel,
    #[cfg(windows)]
    pipe: inband::InBand,
}

impl ConnAck {
    /// A new connection's acks over the endpoint's `shared` signals.
    #[cfg(unix)]
    pub(crate) fn new(shared: Arc<AckPair>) -> Self {
        ConnAck {
            shared,
            mode: AtomicU8::new(if cfg!(target_os = "linux") {
                UNKNOWN
            } else {
                CUSTOM
            }),
            peer: AtomicU8::new(UNKNOWN),
            written: AtomicU64::new(0),
            #[cfg(target_os = "linux")]
            peer_rings: std::sync::atomic::AtomicBool::new(false),
            #[cfg(target_os = "linux")]
            channel: linux::Channel::default(),
        }
    }

    /// A new pipe connection's acks, starting from what its end learned when it connected.
    #[cfg(windows)]
    pub(crate) fn for_pipe(
        shared: Arc<AckPair>,
        handshake: crate::os::windows::private_ack::Handshake,
    ) -> Self {
        let (pipe, mode) = inband::InBand::new(handshake);
        ConnAck {
            shared,
            mode: AtomicU8::new(mode),
            peer: AtomicU8::new(UNKNOWN),
            written: AtomicU64::new(0),
            pipe,
        }
    }

    /// The endpoint's shared signals (the reader acks a custom peer on them).
    pub(crate) fn shared(&self) -> &AckPair {
        &self.shared
    }

    /// True once the peer is known to be ipcez (acks are private both ways).
    pub(crate) fn is_private(&self) -> bool {
        self.mode.load(Ordering::Acquire) == PRIVATE
    }

    /// Writer: one more frame has its place on the wire (frames are numbered in the order
    /// they go out). Returns its number, which [`wait`](Self::wait) takes. Call under the
    /// writer's backlog lock, which settles that order.
    pub(crate) fn frame_written(&self) -> u64 {
        self.written.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Writer: the `count` frames numbered up to `last` never went out. Takes their numbers
    /// back when nothing was numbered after them; false (nothing changed) otherwise. Call
    /// under the writer's backlog lock.
    pub(crate) fn frames_unwritten(&self, last: u64, count: u64) -> bool {
        self.written
            .compare_exchange(last, last - count, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The number of the last frame written (waiting for it covers every earlier one).
    pub(crate) fn last_written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Writer, after a frame: signals "data ready" unless the peer is known to be ipcez
    /// (a custom reader takes one token per message; an ipcez reader takes none from us).
    pub(crate) fn after_frame(&self) -> io::Result<()> {
        if self.is_private() {
            return Ok(());
        }
        self.shared.signal_ready()
    }

    /// Reader: what the peer's first frame came with. `ipcez`: it carried a private
    /// channel, so the peer is ipcez.
    pub(crate) fn peer_seen(&self, ipcez: bool) {
        let kind = if ipcez { PEER_IPCEZ } else { PEER_CUSTOM };
        self.peer.store(kind, Ordering::Release);
    }

    /// Sender: waits up to `timeout` for the ack of frame `seq`. `peer_gone` says whether
    /// the peer has hung up (it decides what a closed private channel means when the peer
    /// has not written to us yet). False when the time ran out.
    pub(crate) fn wait(
        &self,
        seq: u64,
        timeout: Duration,
        peer_gone: &dyn Fn() -> bool,
    ) -> io::Result<bool> {
        #[cfg(target_os = "linux")]
        {
            let deadline = std::time::Instant::now() + timeout;
            let mut spin = crate::ack::Spin::new(timeout);
            loop {
                if self.look(seq, peer_gone)? {
                    return Ok(true);
                }
                if self.mode.load(Ordering::Acquire) == CUSTOM {
                    break;
                }
                if spin.keep_spinning() {
                    continue;
                }
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                crate::os::unix::armed::let_go_here();
                self.channel.wait(left)?;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            crate::os::unix::armed::let_go_here();
            self.shared.wait_acked(left)
        }
        #[cfg(windows)]
        {
            let _ = peer_gone;
            self.pipe_wait(seq, timeout)
        }
        #[cfg(all(unix, not(target_os = "linux")))]
        {
            let _ = (seq, peer_gone);
            self.shared.wait_acked(timeout)
        }
    }

    /// Takes in what the private channel has; true when frame `seq` is acked on it.
    #[cfg(target_os = "linux")]
    fn look(&self, seq: u64, peer_gone: &dyn Fn() -> bool) -> io::Result<bool> {
        let seen = self.channel.drain()?;
        if seen.total > 0 {
            // Only an ipcez reader holds the channel: the connection is private for good.
            self.mode.store(PRIVATE, Ordering::Release);
        }
        match self.mode.load(Ordering::Acquire) {
            PRIVATE => return Ok(seen.total >= seq),
            UNKNOWN if seen.closed && seen.total == 0 => {
                // Nobody holds the channel any more. A peer that is still connected read our
                // first frame without taking it: a custom reader. One that hung up may have
                // gone without reading at all, so it proves nothing — unless its own first
                // frame already told us what it is.
                let custom = match self.peer.load(Ordering::Acquire) {
                    PEER_CUSTOM => true,
                    PEER_IPCEZ => false,
                    _ => !peer_gone(),
                };
                if custom {
                    let _ = self.mode.compare_exchange(
                        UNKNOWN,
                        CUSTOM,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
            }
            _ => {}
        }
        Ok(false)
    }

    /// Sender: true while it asks the peer for doorbells.
    #[cfg(target_os = "linux")]
    pub(crate) fn wants_doorbells(&self) -> bool {
        self.channel.own().is_some_and(|own| own.wants_doorbells())
    }

    /// Sender: asks the peer for doorbells with its acks (`on`), or no more. False (nothing
    /// asked) when the peer is not known to be an ipcez that rings them.
    #[cfg(target_os = "linux")]
    pub(crate) fn want_doorbells(&self, on: bool) -> bool {
        let able = self.is_private() && self.peer_rings.load(Ordering::Acquire);
        match self.channel.own() {
            Some(own) if able || !on => {
                own.want_doorbells(on);
                on
            }
            _ => false,
        }
    }

    /// Writer: calls `write` for the next piece of a frame, with the descriptors of the
    /// private channel to attach while the first frame has not carried them yet. Call under
    /// the write lock.
    #[cfg(target_os = "linux")]
    pub(crate) fn write(
        &self,
        write: impl FnMut(&[std::os::fd::BorrowedFd<'_>]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        match self.channel.write_with(write) {
            linux::Sent::Written(r) => r,
            linux::Sent::NoChannel(r) => {
                // Without a channel to offer, the peer can only ack us on the shared signals.
                self.mode.store(CUSTOM, Ordering::Release);
                r
            }
        }
    }
}

/// What the reader does with the acks of one connection (it holds this under its lock).
#[derive(Debug, Default)]
pub(crate) struct PeerSide {
    state: PeerState,
}

#[derive(Debug, Default)]
enum PeerState {
    /// Nothing read from the peer yet: the first read looks for its private channel.
    #[default]
    First,
    /// An ipcez peer: acks go on its private channel.
    #[cfg(target_os = "linux")]
    Private(crate::os::unix::private_ack::PeerAcks),
    /// An ipcez peer on a named pipe: acks go in band.
    #[cfg(windows)]
    InBand,
    /// A custom peer: the endpoint's shared signals.
    Shared,
}

impl PeerSide {
    /// True until the peer's first bytes were read (that read must take ancillary data).
    pub(crate) fn wants_channel(&self) -> bool {
        matches!(self.state, PeerState::First)
    }

    /// The first read from the peer returned bytes, with the descriptors `fds` attached:
    /// an ipcez peer's private channel, or anything else (refused and closed).
    #[cfg(target_os = "linux")]
    pub(crate) fn first_read(&mut self, conn: &ConnAck, fds: Vec<std::os::fd::OwnedFd>) {
        let channel = crate::os::unix::private_ack::PeerAcks::accept(fds);
        conn.peer_seen(channel.is_some());
        conn.peer_rings.store(
            channel.as_ref().is_some_and(|c| c.rings()),
            Ordering::Release,
        );
        self.state = match channel {
            Some(acks) => PeerState::Private(acks),
            None => PeerState::Shared,
        };
    }

    /// The first read from the peer returned bytes, `first` the first of them (on a pipe,
    /// it tells a listener whether the client is ipcez).
    #[cfg(windows)]
    pub(crate) fn first_read(&mut self, conn: &ConnAck, first: u8) -> io::Result<()> {
        let ipcez = conn.first_byte(first)?;
        conn.peer_seen(ipcez);
        self.state = if ipcez {
            PeerState::InBand
        } else {
            PeerState::Shared
        };
        Ok(())
    }

    /// The first read from the peer returned bytes, on a system without private channels.
    #[cfg(all(unix, not(target_os = "linux")))]
    pub(crate) fn first_read(&mut self, conn: &ConnAck) {
        conn.peer_seen(false);
        self.state = PeerState::Shared;
    }

    /// True once the peer's first frame showed an ipcez peer.
    #[cfg(target_os = "linux")]
    pub(crate) fn is_ipcez(&self) -> bool {
        matches!(self.state, PeerState::Private(_))
    }

    /// Acks `n` messages read whole from the peer. True when the peer also asked for a
    /// doorbell (see `local::doorbell`).
    pub(crate) fn acknowledge(&mut self, conn: &ConnAck, n: usize) -> io::Result<bool> {
        #[cfg(target_os = "linux")]
        if let PeerState::Private(acks) = &mut self.state {
            return Ok(acks.ack(n));
        }
        #[cfg(windows)]
        if let PeerState::InBand = self.state {
            conn.owe(n);
            return Ok(false);
        }
        // A custom peer (or, before any bytes, nothing to ack).
        (0..n).try_for_each(|_| conn.shared().acknowledge())?;
        Ok(false)
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, OnceLock};
    use std::time::Duration;

    use crate::os::unix::private_ack::{self, OwnEnds, ToSend};

    /// Our ends of the private channel, and what goes to the peer until the first frame
    /// took it.
    #[derive(Debug, Default)]
    pub(super) struct Channel {
        own: OnceLock<OwnEnds>,
        write: Mutex<WriteEnd>,
        /// The channel has left (or there is none): later frames go plain.
        settled: AtomicBool,
        seen: Mutex<Seen>,
    }

    #[derive(Debug, Default)]
    enum WriteEnd {
        /// Made with the first frame, so that a child forked before it never holds it.
        #[default]
        NotMade,
        /// What goes to the peer with the first bytes.
        Pending(ToSend),
        Gone,
    }

    /// What the channel said so far.
    #[derive(Debug, Default, Clone, Copy)]
    pub(super) struct Seen {
        /// Acks counted.
        pub(super) total: u64,
        /// Before any ack: nobody holds the pipe's write end any more.
        pub(super) closed: bool,
        /// One of the two happened, and the pipe was let go.
        settled: bool,
    }

    pub(super) enum Sent {
        Written(io::Result<usize>),
        NoChannel(io::Result<usize>),
    }

    impl Channel {
        pub(super) fn write_with(
            &self,
            mut write: impl FnMut(&[std::os::fd::BorrowedFd<'_>]) -> io::Result<usize>,
        ) -> Sent {
            if self.settled.load(Ordering::Acquire) {
                return Sent::Written(write(&[]));
            }
            let mut end = self.write.lock().unwrap_or_else(|p| p.into_inner());
            if let WriteEnd::NotMade = *end {
                match private_ack::channel() {
                    Ok((own, to_send)) => {
                        let _ = self.own.set(own);
                        *end = WriteEnd::Pending(to_send);
                    }
                    Err(_) => {
                        *end = WriteEnd::Gone;
                        self.settled.store(true, Ordering::Release);
                        return Sent::NoChannel(write(&[]));
                    }
                }
            }
            let WriteEnd::Pending(to_send) = &*end else {
                return Sent::Written(write(&[]));
            };
            let result = write(&to_send.fds());
            if let Err(e) = &result
                && matches!(e.raw_os_error(), Some(libc::ETOOMANYREFS | libc::EPERM))
            {
                // The kernel refuses descriptors in flight (too many of this user's are
                // queued unread): go without the channel, acked like a custom peer.
                *end = WriteEnd::Gone;
                self.settled.store(true, Ordering::Release);
                return Sent::NoChannel(write(&[]));
            }
            if matches!(result, Ok(n) if n > 0) {
                // It went with these bytes; our copies must go, so that the peer's kernel
                // dropping its copy of the write end shows here as end-of-file.
                *end = WriteEnd::Gone;
                self.settled.store(true, Ordering::Release);
            }
            Sent::Written(result)
        }

        /// Our ends, once the first frame made them.
        pub(super) fn own(&self) -> Option<&OwnEnds> {
            self.own.get()
        }

        /// Takes in what arrived.
        pub(super) fn drain(&self) -> io::Result<Seen> {
            let Some(own) = self.own.get() else {
                return Ok(Seen::default());
            };
            // One look at a time: the total and the end-of-file are judged together.
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.total += own.take_acks()?;
            if seen.total == 0 && !seen.closed && own.peer_dropped()? {
                // An ipcez reader closes its end after its first ack: look at the count again.
                seen.total += own.take_acks()?;
                seen.closed = seen.total == 0;
            }
            if !seen.settled && (seen.total > 0 || seen.closed) {
                own.settle();
                seen.settled = true;
            }
            Ok(*seen)
        }

        /// Sleeps until the channel may have news, at most `timeout`.
        pub(super) fn wait(&self, timeout: Duration) -> io::Result<()> {
            let seen = *self.seen.lock().unwrap_or_else(|p| p.into_inner());
            match self.own.get() {
                // Before the first ack, the end-of-file is news too.
                Some(own) if !seen.closed => own.wait(timeout, seen.total == 0),
                Some(own) if seen.total > 0 => own.wait(timeout, false),
                // Nothing more can come: the caller looks at the connection meanwhile.
                _ => {
                    std::thread::sleep(timeout.min(Duration::from_millis(5)));
                    Ok(())
                }
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::os::unix::sem::NamedSemaphore;

    fn conn(what: &str) -> ConnAck {
        let name = format!("/ipcez.ackstest-{what}.{}", std::process::id());
        let pair = AckPair::new(
            NamedSemaphore::open(&format!("{name}.r"), 0o600).unwrap(),
            NamedSemaphore::open(&format!("{name}.a"), 0o600).unwrap(),
        );
        NamedSemaphore::unlink(&format!("{name}.r")).unwrap();
        NamedSemaphore::unlink(&format!("{name}.a")).unwrap();
        ConnAck::new(Arc::new(pair))
    }

    #[test]
    fn a_refused_channel_is_dropped_and_the_frame_goes_plain() {
        for errno in [libc::ETOOMANYREFS, libc::EPERM] {
            let acks = conn("refs");
            let mut calls = Vec::new();
            let n = acks
                .write(|fds| {
                    calls.push(fds.len());
                    if fds.is_empty() {
                        Ok(7)
                    } else {
                        Err(io::Error::from_raw_os_error(errno))
                    }
                })
                .expect("the frame is written without the channel");
            assert_eq!(n, 7);
            assert_eq!(calls, [2, 0], "tried with the channel, then without");
            assert_eq!(acks.mode.load(Ordering::Acquire), CUSTOM);
            // Later frames go plain at once.
            calls.clear();
            acks.write(|fds| {
                calls.push(fds.len());
                Ok(1)
            })
            .unwrap();
            assert_eq!(calls, [0]);
        }
    }

    #[test]
    fn other_errors_keep_the_channel_for_the_retry() {
        let acks = conn("again");
        let e = acks
            .write(|_| Err(io::ErrorKind::WouldBlock.into()))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let mut sent = 0;
        acks.write(|fds| {
            sent = fds.len();
            Ok(1)
        })
        .unwrap();
        assert_eq!(sent, 2, "the channel still rides with the first bytes");
        assert_eq!(acks.mode.load(Ordering::Acquire), UNKNOWN);
    }
}
