//! A local connection (Unix domain socket or named pipe) above the OS backend: a
//! [`Writer`] that sends whole frames and waits for their acks, and a [`ReadSide`] that
//! reads frames, acks them and queues them, on the runtime or on a caller's thread.

mod acks;
#[cfg(target_os = "linux")]
mod doorbell;
mod reader;
mod writer;

#[cfg(target_os = "linux")]
pub(crate) use doorbell::turn_ends;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::ack::AckPair;
use crate::budget::ReadBudget;
use crate::error::SocketError;
use crate::inbox::{BlockingTaker, Inbox};
use crate::os::LocalStream;
use acks::ConnAck;
use reader::ReadSide;
use writer::Writer;

/// One local connection.
#[derive(Debug)]
pub(crate) struct LocalConn {
    writer: Arc<Writer>,
    reader: Arc<ReadSide>,
}

impl LocalConn {
    /// Wraps a connected stream and its ack signals; the returned future is the
    /// connection's background reader, to be spawned.
    pub(crate) fn start(
        stream: LocalStream,
        acks: Arc<AckPair>,
        inbox: Arc<Inbox>,
        budget: Arc<ReadBudget>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        #[cfg(unix)]
        let acks = ConnAck::new(acks);
        #[cfg(windows)]
        let (stream, acks) = {
            let mut stream = stream;
            let handshake = stream.take_handshake();
            (stream, ConnAck::for_pipe(acks, handshake))
        };
        let (stream, acks) = (Arc::new(stream), Arc::new(acks));
        #[cfg(target_os = "linux")]
        let bell = Arc::new(doorbell::Bell::new(stream.clone(), acks.clone()));
        let reader = Arc::new(ReadSide::new(
            stream.clone(),
            acks.clone(),
            inbox.clone(),
            budget,
            #[cfg(target_os = "linux")]
            bell.clone(),
        ));
        let writer = Arc::new(Writer::new(
            stream,
            acks,
            inbox,
            #[cfg(target_os = "linux")]
            bell,
        ));
        let task = reader::run(reader.clone());
        #[cfg(windows)]
        let task = {
            // On a pipe the acks between ipcez endpoints go in band; their writer never
            // ends by itself: the connection ends with its reader.
            let ack_writer = writer.clone();
            async move {
                tokio::select! {
                    () = task => {}
                    () = ack_writer.send_acks() => {}
                }
            }
        };
        (LocalConn { writer, reader }, task)
    }

    /// Writes one message (checked by the caller), then waits until `deadline` for its ack
    /// on a blocking thread of `handle` (the wait may spin briefly, then sleeps).
    pub(crate) async fn send(
        &self,
        msg: &[u8],
        deadline: Instant,
        handle: &Handle,
    ) -> Result<(), SocketError> {
        let seq = self.writer.write(msg, deadline).await?;
        let writer = self.writer.clone();
        handle
            .spawn_blocking(move || writer.wait_ack_of(seq, deadline))
            .await
            .map_err(|e| SocketError::Io(io::Error::other(e)))?
    }

    /// Writes one message (checked by the caller) from a thread outside the runtime,
    /// without waiting for the ack; see [`Writer::write_blocking`] for `owner`.
    pub(crate) fn send_frame_blocking<K: Clone + Send + 'static>(
        &self,
        msg: &[u8],
        deadline: Instant,
        handle: &Handle,
        owner: &K,
    ) -> Result<(), SocketError> {
        self.writer.write_blocking(msg, deadline, handle, owner)
    }

    /// Writes several messages (checked by the caller) back to back from a thread outside
    /// the runtime (without `wait`: never waiting, and `Ok(None)` with nothing sent when
    /// the frames that wait hold their bound); `Some` number of the last frame, see
    /// [`Writer::write_many_blocking`].
    pub(crate) fn send_frames_blocking<K: Clone + Send + 'static>(
        &self,
        msgs: &[&[u8]],
        deadline: Instant,
        handle: &Handle,
        owner: &K,
        wait: bool,
    ) -> Result<Option<u64>, SocketError> {
        self.writer
            .write_many_blocking(msgs, deadline, handle, owner, wait)
    }

    /// The number of the last frame numbered so far (see [`Self::wait_ack_of`]).
    pub(crate) fn last_frame(&self) -> u64 {
        self.writer.last_frame()
    }

    /// Waits until `deadline` for the ack of frame `seq` (with a custom peer: one "data
    /// acked" token).
    pub(crate) fn wait_ack_of(&self, seq: u64, deadline: Instant) -> Result<(), SocketError> {
        self.writer.wait_ack_of(seq, deadline)
    }

    /// Waits until `deadline` for the ack of this thread's last frame (see
    /// [`Writer::wait_ack_until`]).
    pub(crate) fn wait_ack_until(&self, deadline: Instant) -> Result<(), SocketError> {
        self.writer.wait_ack_until(deadline)
    }

    /// A blocking take (`None` waits without limit).
    pub(crate) fn recv_blocking(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, SocketError> {
        self.reader.recv_blocking(timeout)
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn held_by_loop(&self, on: bool) -> Option<std::os::fd::RawFd> {
        self.reader.held_by_loop(on)
    }

    /// See `Socket::read_held`.
    #[cfg(target_os = "linux")]
    pub(crate) fn read_held(&self) -> bool {
        self.reader.read_held()
    }

    /// See `Socket::ring_deferred_doorbell`.
    #[cfg(target_os = "linux")]
    pub(crate) fn ring_deferred_doorbell(&self, turn_ends: bool) {
        self.reader.ring_deferred_doorbell(turn_ends)
    }

    /// See `Socket::ack_doorbells`.
    #[cfg(target_os = "linux")]
    pub(crate) fn ack_doorbells(&self, on: bool) -> bool {
        // Only a loop that watches the socket reads them as they come.
        if on && !self.reader.is_held() {
            return false;
        }
        self.writer.ack_doorbells(on)
    }

    /// A blocking taker that holds the reading side only, not the connection.
    pub(crate) fn blocking_taker(&self) -> BlockingTaker {
        let reader = self.reader.clone();
        Box::new(move || reader.recv_blocking(None))
    }

    /// True once the peer has hung up.
    pub(crate) fn peer_hung_up(&self) -> bool {
        self.reader.peer_hung_up()
    }

    /// Ends the connection in both directions now; never waits.
    pub(crate) fn close(&self) {
        self.reader.shutdown();
    }
}
