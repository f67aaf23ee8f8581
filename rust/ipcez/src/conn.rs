//! The connection under a `Socket`: local or WebSocket. Each kind carries its own send,
//! ack wait, blocking take and close; this enum only picks one, once per call.

use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::error::SocketError;
use crate::inbox::BlockingTaker;
use crate::local::LocalConn;
use crate::ws::WsConn;

pub(crate) enum Conn {
    Local(LocalConn),
    Ws(WsConn),
}

impl Conn {
    /// Sends one checked message; on local transports also waits for its ack.
    pub(crate) async fn send(
        &self,
        msg: &[u8],
        deadline: Instant,
        handle: &Handle,
    ) -> Result<(), SocketError> {
        match self {
            Conn::Local(c) => c.send(msg, deadline, handle).await,
            Conn::Ws(c) => c.send(msg, deadline).await,
        }
    }

    /// Writes one checked message from a thread outside the runtime, without the ack wait.
    /// A local frame the peer is slow to take may be finished in the background while
    /// `owner` is kept alive.
    pub(crate) fn send_frame_blocking<K: Clone + Send + 'static>(
        &self,
        msg: &[u8],
        deadline: Instant,
        handle: &Handle,
        owner: &K,
    ) -> Result<(), SocketError> {
        match self {
            Conn::Local(c) => c.send_frame_blocking(msg, deadline, handle, owner),
            Conn::Ws(c) => c.send_frame_blocking(msg, deadline, handle),
        }
    }

    /// Writes several checked messages back to back from a thread outside the runtime,
    /// without the ack waits. Without `wait` it never waits: on a Unix socket the rest is
    /// finished in the background, in order.
    pub(crate) fn send_frames_blocking<K: Clone + Send + 'static>(
        &self,
        msgs: &[&[u8]],
        deadline: Instant,
        handle: &Handle,
        owner: &K,
        wait: bool,
    ) -> Result<(), SocketError> {
        match self {
            Conn::Local(c) => c
                .send_frames_blocking(msgs, deadline, handle, owner, wait)
                .map(|_| ()),
            Conn::Ws(c) => msgs
                .iter()
                .try_for_each(|m| c.send_frame_blocking(m, deadline, handle)),
        }
    }

    /// Hands checked messages over without waiting, as far as the transport allows:
    /// `Ok(true)` when they were taken (on a Unix socket what cannot be written now is
    /// finished in the background, in order), `Ok(false)` with nothing sent when they must
    /// be sent the waiting way (a Unix socket whose waiting frames hold their bound, a busy
    /// WebSocket, several WebSocket messages, a named pipe).
    pub(crate) fn start_send<K: Clone + Send + 'static>(
        &self,
        msgs: &[&[u8]],
        deadline: Instant,
        handle: &Handle,
        owner: &K,
    ) -> Result<bool, SocketError> {
        match self {
            #[cfg(unix)]
            Conn::Local(c) => c
                .send_frames_blocking(msgs, deadline, handle, owner, false)
                .map(|last| last.is_some()),
            #[cfg(not(unix))]
            Conn::Local(_) => {
                let _ = owner; // a named pipe is written the waiting way
                Ok(false)
            }
            Conn::Ws(c) => match msgs {
                [msg] => c.try_send(msg, deadline, handle),
                _ => Ok(false),
            },
        }
    }

    /// The number of the last frame handed over so far (0 on WebSocket, which has no acks).
    pub(crate) fn last_frame(&self) -> u64 {
        match self {
            Conn::Local(c) => c.last_frame(),
            Conn::Ws(_) => 0,
        }
    }

    /// Waits until `deadline` for the ack of frame `seq` (WebSocket: at once).
    pub(crate) fn wait_ack_of(&self, seq: u64, deadline: Instant) -> Result<(), SocketError> {
        match self {
            Conn::Local(c) => c.wait_ack_of(seq, deadline),
            Conn::Ws(c) => c.wait_ack_until(deadline),
        }
    }

    pub(crate) fn wait_ack_until(&self, deadline: Instant) -> Result<(), SocketError> {
        match self {
            Conn::Local(c) => c.wait_ack_until(deadline),
            Conn::Ws(c) => c.wait_ack_until(deadline),
        }
    }

    pub(crate) fn recv_blocking(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, SocketError> {
        match self {
            Conn::Local(c) => c.recv_blocking(timeout),
            Conn::Ws(c) => c.recv_blocking(timeout),
        }
    }

    /// See `Socket::read_held` (a WebSocket: true, nothing to read this way).
    #[cfg(target_os = "linux")]
    pub(crate) fn read_held(&self) -> bool {
        match self {
            Conn::Local(c) => c.read_held(),
            Conn::Ws(_) => true,
        }
    }

    /// See `Socket::ring_deferred_doorbell` (a WebSocket has no acks).
    #[cfg(target_os = "linux")]
    pub(crate) fn ring_deferred_doorbell(&self, turn_ends: bool) {
        if let Conn::Local(c) = self {
            c.ring_deferred_doorbell(turn_ends);
        }
    }

    /// See `Socket::ack_doorbells` (a WebSocket has no acks).
    #[cfg(target_os = "linux")]
    pub(crate) fn ack_doorbells(&self, on: bool) -> bool {
        match self {
            Conn::Local(c) => c.ack_doorbells(on),
            Conn::Ws(_) => false,
        }
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn held_by_loop(&self, on: bool) -> Option<std::os::fd::RawFd> {
        match self {
            Conn::Local(c) => c.held_by_loop(on),
            Conn::Ws(c) => c.held_by_loop(on),
        }
    }

    /// True when the connection keeps nothing read for the inbox that is not in it yet
    /// (see `ReadHalf::nothing_read_ahead`; a local reader queues every whole frame it reads).
    pub(crate) fn nothing_read_ahead(&self) -> bool {
        match self {
            Conn::Local(_) => true,
            Conn::Ws(c) => c.nothing_read_ahead(),
        }
    }

    pub(crate) fn blocking_taker(&self) -> BlockingTaker {
        match self {
            Conn::Local(c) => c.blocking_taker(),
            Conn::Ws(c) => c.blocking_taker(),
        }
    }

    /// True when a local peer is known to have hung up, before the reader noticed.
    pub(crate) fn peer_hung_up(&self) -> bool {
        match self {
            Conn::Local(c) => c.peer_hung_up(),
            Conn::Ws(_) => false,
        }
    }

    /// Ends the connection (a WebSocket peer is sent `ws_code`); never waits.
    pub(crate) fn close(&self, handle: &Handle, ws_code: u16) {
        // A loop's hold ends with the connection: the closing handshake reads in the
        // background.
        #[cfg(target_os = "linux")]
        let _ = self.held_by_loop(false);
        match self {
            Conn::Local(c) => c.close(),
            Conn::Ws(c) => c.close(handle, ws_code),
        }
    }
}
