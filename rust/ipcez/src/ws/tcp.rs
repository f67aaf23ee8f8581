//! The TCP stream under a WebSocket, readable from a thread outside the runtime.
//!
//! tokio reads a socket only once its I/O driver (another thread) has seen it become
//! readable. A thread blocked in `recv` that waited with poll(2) itself must not wait for
//! that hop too, so on Unix every read first tries the descriptor directly and asks tokio
//! only when nothing is there (which also registers the waker). Elsewhere it is tokio's
//! stream as it is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connected TCP stream whose reads try the descriptor first (Unix).
pub(crate) struct DirectTcp(TcpStream);

/// Which descriptor a thread outside the runtime waits on with poll(2) (Unix; elsewhere
/// nothing). Valid while the stream lives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpFd(#[cfg(unix)] pub(crate) std::os::fd::RawFd);

impl DirectTcp {
    pub(crate) fn new(tcp: TcpStream) -> Self {
        DirectTcp(tcp)
    }

    pub(crate) fn fd(&self) -> TcpFd {
        #[cfg(unix)]
        return TcpFd(self.raw_fd());
        #[cfg(not(unix))]
        TcpFd()
    }

    #[cfg(unix)]
    fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }

    /// One read(2) straight from the descriptor into `buf`; `WouldBlock` when empty.
    #[cfg(unix)]
    fn read_now(&self, buf: &mut ReadBuf<'_>) -> io::Result<()> {
        // SAFETY: only written to by read(2) below, never de-initialized.
        let unfilled = unsafe { buf.unfilled_mut() };
        // SAFETY: `unfilled` is writable memory of its length; read(2) writes at most that.
        let n = unsafe { libc::read(self.raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // SAFETY: read(2) initialized the first `n` bytes of the unfilled part.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        Ok(())
    }
}

impl AsyncRead for DirectTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        #[cfg(unix)]
        if buf.remaining() > 0 {
            match self.read_now(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => return Poll::Ready(done),
            }
        }
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for DirectTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
