//! The calls of [`Socket`] for event loops and batches: sends that never wait, batches
//! written back to back, marks to wait for their acks, receives that never wait or go into
//! caller memory, and readiness.

use std::time::Duration;

use super::Socket;
use crate::error::SocketError;
use crate::runtime::deadline_after;

/// A place in the order of one connection's sends (see [`Socket::sent_mark`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SentMark(u64);

impl SentMark {
    /// The mark of the message `n` places earlier on the same connection: the messages of
    /// a batch written back to back are consecutive, so `mark.before(i)` after a batch of
    /// `k` names its message `k - 1 - i` (or a later one).
    pub fn before(self, n: usize) -> SentMark {
        SentMark(self.0.saturating_sub(n as u64))
    }
}

/// Ends a turn of the event loop on this thread, for every socket it holds: the loop's
/// next read of a held socket rings its doorbell at once again (unless the turn that ended
/// read several: under load every doorbell waits for an answer), and the doorbells its busy
/// turns deferred (see [`Socket::ring_deferred_doorbell`]) are rung once no frame carried
/// them by the end of the next turn. Call it once per turn of a loop that read sockets it
/// holds, after the tasks those messages woke have run (asyncio: `call_soon`), instead of
/// `ring_deferred_doorbell` per socket. Returns how many doorbells are still deferred:
/// call it again at the end of the next turn while that is not 0. Only a thread that calls
/// one of the two defers doorbells at all. Linux only (0 elsewhere).
pub fn loop_turn_ends() -> usize {
    #[cfg(target_os = "linux")]
    return crate::local::turn_ends();
    #[cfg(not(target_os = "linux"))]
    0
}

impl Socket {
    /// Like [`send_frame_blocking`](Self::send_frame_blocking), but never waits (for an
    /// event loop's thread). `Ok(true)`: the message was handed over — on a Unix socket
    /// what the socket takes now is written on this thread and the rest by the runtime,
    /// in order behind earlier such frames (the frame stays whole, or the connection ends);
    /// on a WebSocket it was written or is being flushed. `Ok(false)`: nothing was sent
    /// because that would mean waiting (frames already waiting for a Unix socket hold their
    /// 64 MiB bound, a WebSocket is busy with another send, a named pipe): send it with
    /// `send_frame_blocking` from a thread that may wait.
    pub fn start_send(&self, msg: &[u8]) -> Result<bool, SocketError> {
        self.start_send_many(&[msg])
    }

    /// Sends several messages as frames written back to back (on a Unix socket in as few
    /// system calls as possible, so the peer also reads them in a batch) and signals "data
    /// ready" once per message, without waiting for acks: follow it with one
    /// [`wait_ack_blocking`](Self::wait_ack_blocking) per message. Frames from other senders
    /// never come between them. Every message is checked before anything is written.
    pub fn send_many_frames_blocking(&self, msgs: &[&[u8]]) -> Result<(), SocketError> {
        self.send_frames(msgs)
    }

    /// [`send_many_frames_blocking`](Self::send_many_frames_blocking) that never waits, like
    /// [`start_send`](Self::start_send) (several WebSocket messages always give `Ok(false)`).
    pub fn start_send_many(&self, msgs: &[&[u8]]) -> Result<bool, SocketError> {
        let deadline = self.ack_deadline();
        msgs.iter().try_for_each(|m| self.check_send(m))?;
        let shared = &self.shared;
        shared.conn.start_send(msgs, deadline, &shared.handle, self)
    }

    fn send_frames(&self, msgs: &[&[u8]]) -> Result<(), SocketError> {
        let deadline = self.ack_deadline();
        msgs.iter().try_for_each(|m| self.check_send(m))?;
        let shared = &self.shared;
        shared
            .conn
            .send_frames_blocking(msgs, deadline, &shared.handle, self, true)
    }

    /// Where this connection's sends stand: the last message handed over so far, by any
    /// thread. Taken right after a send of your own (`start_send`, `start_send_many`,
    /// `send_many_frames_blocking`), it names that send's last message or a later one, so
    /// [`wait_ack_of_blocking`](Self::wait_ack_of_blocking) on it never returns before that
    /// message was read.
    pub fn sent_mark(&self) -> SentMark {
        SentMark(self.shared.conn.last_frame())
    }

    /// Like [`wait_ack_blocking`](Self::wait_ack_blocking), for the ack of the message
    /// `mark` names (which covers every message sent before it on this connection). With a
    /// custom peer each call takes one "data acked" token, as `wait_ack_blocking` does.
    pub fn wait_ack_of_blocking(
        &self,
        mark: SentMark,
        timeout: Duration,
    ) -> Result<bool, SocketError> {
        self.shared.epoch.check("socket")?;
        match self
            .shared
            .conn
            .wait_ack_of(mark.0, deadline_after(timeout))
        {
            Ok(()) => Ok(true),
            Err(SocketError::RecipientAckTimeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// An event loop reads this socket itself while `on`: it watches the descriptor this
    /// returns for readability and calls [`try_recv`](Self::try_recv) (or a batch that does
    /// not wait) when it is readable, and the library's background reader stands aside
    /// meanwhile, so a message wakes the loop's thread only. Call it with `false` once the
    /// loop stops watching; the background reader then reads (and acks) what comes. Stop
    /// watching before you close the socket (the descriptor is the socket's own, closed
    /// with it). `None` with `on`: this socket cannot be read so (not on Linux, not on the
    /// library's own runtime, not read in the background yet, or closed), and the loop
    /// waits as before. Unix only.
    ///
    /// While it is held, messages are read (and acked) when the loop reads. The background
    /// reader reads after all when the socket, held for 100 ms, is found readable and
    /// unread (the loop is blocked: acks wait at most about 150 ms), when the thread that
    /// holds it blocks in a receive or a send of the library, and once it is closed.
    #[cfg(unix)]
    pub fn held_by_loop(&self, on: bool) -> Option<std::os::fd::RawFd> {
        // A forked child leaves the parent's socket alone; a handler reads it itself.
        if on {
            self.check_pull().ok()?;
        } else {
            self.shared.epoch.check("socket").ok()?;
        }
        // A loop that lets go rings what it deferred at once.
        #[cfg(target_os = "linux")]
        if !on {
            self.shared.conn.ring_deferred_doorbell(false);
        }
        #[cfg(target_os = "linux")]
        return self.shared.conn.held_by_loop(on);
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// An event loop that holds this socket ([`held_by_loop`](Self::held_by_loop)) and
    /// found it readable while no receive waits (it waits for acks): reads what came
    /// without taking a message. Messages go to the queue, acked as usual, without a
    /// report to the poller (the caller knows: take them before waiting for a report);
    /// doorbells (see [`ack_doorbells`](Self::ack_doorbells)) are heard. At most 16 reads
    /// of up to 64 KiB; what is left keeps the socket readable. `true`: let go of the socket
    /// (`held_by_loop(false)`) instead, the library's reader takes over: the socket is not
    /// held any more, the queue is full, or it is not a local socket of Linux.
    pub fn read_held(&self) -> bool {
        if self.check_pull().is_err() {
            return true;
        }
        #[cfg(target_os = "linux")]
        {
            let let_go = self.shared.conn.read_held();
            if let_go {
                self.shared.conn.ring_deferred_doorbell(false);
            }
            let_go
        }
        #[cfg(not(target_os = "linux"))]
        true
    }

    /// Ends an event loop's turn for this socket: the loop read the socket it holds
    /// ([`read_held`](Self::read_held), or a receive on its thread), and in a busy turn the
    /// acks it gave left the peer's doorbell to the next frame written here; this rings it
    /// if no frame went out meanwhile. Call it for each such socket once the loop has run
    /// what the messages woke (asyncio: `call_soon`); cheap when nothing waits. Only a
    /// thread that calls it defers doorbells at all: without it, each rings at once.
    pub fn ring_deferred_doorbell(&self) {
        if self.shared.epoch.is_current() {
            #[cfg(target_os = "linux")]
            self.shared.conn.ring_deferred_doorbell(true);
        }
    }

    /// Asks the peer to also ring a doorbell on the socket with each ack (`on`), or no
    /// more: an event loop that watches the socket then learns of its acks there, instead
    /// of from a thread waiting on the ack counter. A doorbell carries no ack (look with
    /// [`wait_ack_of_blocking`](Self::wait_ack_of_blocking) and a zero timeout): it only
    /// wakes the watcher. `true` when they were asked for: Linux, a Unix socket whose
    /// peer is an ipcez endpoint that rings them (known once the peer wrote to us).
    pub fn ack_doorbells(&self, on: bool) -> bool {
        if self.shared.epoch.check("socket").is_err() {
            return false;
        }
        #[cfg(target_os = "linux")]
        return self.shared.conn.ack_doorbells(on);
        #[cfg(not(target_os = "linux"))]
        {
            let _ = on;
            false
        }
    }

    /// The next message if one is waiting, without blocking: `Ok(None)` when none is.
    /// (On a local connection the socket itself is read on this thread when nothing is
    /// queued, which saves a thread hop.)
    pub fn try_recv(&self) -> Result<Option<Vec<u8>>, SocketError> {
        self.recv_blocking(Some(Duration::ZERO))
    }

    /// Like [`recv_blocking`](Self::recv_blocking), into `buf`: `Ok(Some(n))` with the
    /// message in `buf[..n]`. When the message is longer than `buf`, nothing is written and
    /// `Ok(Some(len))` gives its length (`len > buf.len()`); the message stays first in
    /// line for the next receive.
    pub fn recv_into_blocking(
        &self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<Option<usize>, SocketError> {
        let Some(msg) = self.recv_blocking(timeout)? else {
            return Ok(None);
        };
        let n = msg.len();
        match buf.get_mut(..n) {
            Some(dst) => {
                dst.copy_from_slice(&msg);
                crate::buffers::reuse_buffer(msg);
            }
            None => self.shared.inbox.unget(msg),
        }
        Ok(Some(n))
    }

    /// A descriptor that is readable while a message (or the end of the connection) waits
    /// to be taken: for `select`/`poll`/`epoll` and event loops. Owned by the socket (do not
    /// close it); valid until the last clone of the socket is dropped. Unix only.
    #[cfg(unix)]
    pub fn fileno(&self) -> std::io::Result<std::os::fd::RawFd> {
        self.shared.inbox.fileno()
    }

    /// Reports to `poller` as `token` whenever a message comes to wait where none waited
    /// (or the connection ends), and at once if one already waits. Then take messages with
    /// [`try_recv`](Self::try_recv) until it gives `None`: the next report comes only after
    /// that. Replaces an earlier poller.
    pub fn watch(&self, poller: &crate::Poller, token: u64) {
        self.shared.inbox.watch(poller, token);
    }
}
