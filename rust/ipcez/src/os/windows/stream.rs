//! A connected named pipe, client or server end, with the same calls as the Unix stream
//! minus the direct ones (Windows readers and writers always go through the runtime).

use std::io::{self, IoSlice};
use std::os::windows::io::AsRawHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BufMut;
use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer};

use windows_sys::Win32::Storage::FileSystem::FlushFileBuffers;

use super::private_ack::Handshake;

/// A connected local stream on Windows, with what its end learned about the peer.
#[derive(Debug)]
pub(crate) struct PipeStream {
    end: End,
    handshake: Option<Handshake>,
    /// The server end is being closed (once).
    closing: AtomicBool,
    /// An ack record went out: a close lets the client read it first.
    acked_in_band: AtomicBool,
}

/// How long a closing server end lets the client read what is still in the pipe (the last
/// acks among it) before it disconnects, which would discard it.
const FLUSH_WAIT: Duration = Duration::from_millis(200);

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
            closing: AtomicBool::new(false),
            acked_in_band: AtomicBool::new(false),
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

    /// Ends the connection (the server end disconnects; a client end has no such call).
    /// Never waits: a server end that wrote ack records first lets the client read what is
    /// still in the pipe, on a thread of its own, for at most `FLUSH_WAIT`
    /// (`FlushFileBuffers` returns once it is read), since a disconnect discards it.
    pub(crate) fn shutdown(self: &Arc<Self>) {
        if !matches!(self.end, End::Server(_)) || self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        if !self.acked_in_band.load(Ordering::Acquire) {
            return self.disconnect();
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("ipcez-close".into())
            .spawn(move || me.flush_then_disconnect());
        if spawned.is_err() {
            self.disconnect();
        }
    }

    /// An ack record was written (see `shutdown`).
    pub(crate) fn acked_in_band(&self) {
        self.acked_in_band.store(true, Ordering::Release);
    }

    fn flush_then_disconnect(self: Arc<Self>) {
        let (done, flushed) = std::sync::mpsc::channel();
        let me = self.clone();
        let flusher = std::thread::Builder::new()
            .name("ipcez-flush".into())
            .spawn(move || {
                if let End::Server(s) = &me.end {
                    // SAFETY: the handle is open while `me` lives; the call only waits.
                    unsafe { FlushFileBuffers(s.as_raw_handle() as _) };
                }
                let _ = done.send(());
            });
        if flusher.is_ok() {
            let _ = flushed.recv_timeout(FLUSH_WAIT);
        }
        // Also ends a flush still waiting for a client that does not read.
        self.disconnect();
    }

    fn disconnect(&self) {
        if let End::Server(s) = &self.end {
            let _ = s.disconnect();
        }
    }
}
