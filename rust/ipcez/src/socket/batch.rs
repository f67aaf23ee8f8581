//! Receiving several messages per call, for callers that pay for every call they make (a
//! binding over a C ABI, such as Python's ctypes).

use std::time::Duration;

use super::Socket;
use crate::error::SocketError;

/// What [`Socket::recv_batch_blocking`] took.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// No message came within the timeout.
    TimedOut,
    /// This many messages (at least one), copied into the caller's buffer.
    Copied(usize),
    /// The next message alone, too long for the caller's buffer (nothing was copied).
    Whole(Vec<u8>),
}

impl Socket {
    /// Waits up to `timeout` for the next message like [`recv_blocking`](Self::recv_blocking),
    /// then takes the messages already waiting behind it, without waiting, while they fit:
    /// at most `lens.len()` messages, copied back to back into `buf` (message `i` is
    /// `lens[i]` bytes long). A first message longer than `buf` comes back alone as
    /// [`Batch::Whole`]. The end of the connection is never part of a batch: the next
    /// call reports it.
    ///
    /// When more than one message was taken, the socket counts them as still waiting:
    /// [`fileno`](Self::fileno) stays readable and a watching poller is not told again
    /// until [`set_held`](Self::set_held)`(false)` (call it once the caller has handed on
    /// the last of them).
    pub fn recv_batch_blocking(
        &self,
        buf: &mut [u8],
        lens: &mut [usize],
        timeout: Option<Duration>,
    ) -> Result<Batch, SocketError> {
        let Some(first) = self.recv_blocking(timeout)? else {
            return Ok(Batch::TimedOut);
        };
        Ok(self.batch_after(first, buf, lens))
    }

    /// For an event loop that holds this socket: [`recv_batch_blocking`](Self::recv_batch_blocking)
    /// without waiting, and whether the library keeps nothing more for it (`true`): until
    /// the socket's descriptor turns readable or the socket reports to its poller, another
    /// take would find nothing, so the loop may wait for those without looking first.
    pub fn take_batch_now(
        &self,
        buf: &mut [u8],
        lens: &mut [usize],
    ) -> Result<(Batch, bool), SocketError> {
        let batch = self.recv_batch_blocking(buf, lens, Some(Duration::ZERO))?;
        let dry = self.shared.inbox.is_idle() && self.shared.conn.nothing_read_ahead();
        Ok((batch, dry))
    }

    /// For an event loop that holds this socket and found it readable while no receive
    /// waits: [`read_held`](Self::read_held), then the messages queued by then, taken as
    /// [`recv_batch_blocking`](Self::recv_batch_blocking) takes them, without reading
    /// again ([`Batch::TimedOut`]: none is queued). The end of the connection is left for
    /// the next receive. The `bool` is `read_held`'s: let go of the socket.
    pub fn read_held_batch(&self, buf: &mut [u8], lens: &mut [usize]) -> (bool, Batch) {
        let let_go = self.read_held();
        let first = match self.check_pull() {
            Ok(()) => self.shared.inbox.try_take_message(),
            Err(_) => None,
        };
        match first {
            Some(first) => (let_go, self.batch_after(first, buf, lens)),
            None => (let_go, Batch::TimedOut),
        }
    }

    /// `first`, then the messages queued behind it while they fit (see
    /// [`recv_batch_blocking`](Self::recv_batch_blocking)).
    fn batch_after(&self, first: Vec<u8>, buf: &mut [u8], lens: &mut [usize]) -> Batch {
        let (Some(dst), Some(len0)) = (buf.get_mut(..first.len()), lens.first_mut()) else {
            return Batch::Whole(first);
        };
        dst.copy_from_slice(&first);
        *len0 = first.len();
        let mut used = first.len();
        crate::buffers::reuse_buffer(first);
        let mut count = 1;
        self.shared.inbox.take_queued(|msg| {
            let (Some(dst), Some(len)) = (buf.get_mut(used..used + msg.len()), lens.get_mut(count))
            else {
                return false;
            };
            dst.copy_from_slice(msg);
            *len = msg.len();
            used += msg.len();
            count += 1;
            true
        });
        Batch::Copied(count)
    }

    /// Whether the caller holds messages it took from this socket but has not handed on
    /// yet: while it does, they count as waiting ([`fileno`](Self::fileno) readable, a
    /// watching poller not told again). [`recv_batch_blocking`](Self::recv_batch_blocking)
    /// sets it when it takes more than one message; clear it once the last is handed on.
    pub fn set_held(&self, held: bool) {
        self.shared.inbox.set_held(held);
    }
}
