//! A connected named pipe, client or server end, with the same calls as the Unix stream
//! minus the direct ones (Windows readers and writers always go through the runtime).

use std::io::{self, IoSlice};

use bytes::BufMut;
use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer};

use super::private_ack::Handshake;

/// A connected local stream on Windows, with what its end learned about the peer.
#[derive(Debug)]
pub(crate) struct PipeStream {
    end: End,
    handshake: Option<Handshake>,
}

#[derive(Debug)]
pub(crate) enum End {
    Client(NamedPipeClient),
    Server(NamedPipeServer),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $body:expr) => {
        match &$self.end {
            End::Client($s) => $body,
            End::Server($s) => $body,
        }
    };
}

impl PipeStream {
    pub(crate) fn new(end: End, handshake: Handshake) -> Self {
        PipeStream {
            end,
            handshake: Some(handshake),
        }
    }

    /// What the connection's acks start from (taken once, when the connection starts).
    pub(crate) fn take_handshake(&mut self) -> Handshake {
        self.handshake
            .take()
            .unwrap_or(Handshake::Client { intent: None })
    }

    pub(crate) async fn readable(&self) -> io::Result<()> {
        dispatch!(self, s => s.readable().await)
    }

    pub(crate) async fn writable(&self) -> io::Result<()> {
        dispatch!(self, s => s.writable().await)
    }

    pub(crate) fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        dispatch!(self, s => s.try_read_buf(buf))
    }

    /// Writes what it can without blocking; `WouldBlock` when nothing could be written.
    pub(crate) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        dispatch!(self, s => s.try_write_vectored(bufs))
    }

    /// Whether the peer hung up cannot be seen without reading here: always false.
    pub(crate) fn peer_hung_up(&self) -> bool {
        false
    }

    /// Ends the connection now (the server end disconnects; a client end has no such call).
    pub(crate) fn shutdown(&self) {
        if let End::Server(s) = &self.end {
            let _ = s.disconnect();
        }
    }
}
