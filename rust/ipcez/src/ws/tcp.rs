//! The TCP stream under a WebSocket, readable from a thread outside the runtime.
//!
//! tokio reads a socket only once its I/O driver (another thread) has seen it become
//! readable. A thread blocked in `recv` that waited with poll(2) itself must not wait for
//! that hop too, so on Unix such a thread (inside [`reading_directly`]) first tries the
//! descriptor directly and asks tokio only when nothing is there (which also registers the
//! waker). The runtime's own reads go through tokio, and so through its cooperative
//! budget. Elsewhere it is tokio's stream as it is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

#[cfg(unix)]
thread_local! {
    /// This thread reads directly (inside `reading_directly`).
    static DIRECT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Bytes this thread has read directly, ever: a direct reader tells by it whether a
    /// poll of the stream made progress.
    static DIRECT_BYTES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Runs `f` with this thread's reads of every `DirectTcp` going to the descriptor first.
#[cfg(unix)]
pub(crate) fn reading_directly<R>(f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DIRECT.with(|d| d.set(false));
        }
    }
    DIRECT.with(|d| d.set(true));
    let _reset = Reset;
    f()
}

/// How many bytes this thread has read directly so far.
#[cfg(unix)]
pub(crate) fn bytes_read_directly() -> u64 {
    DIRECT_BYTES.with(std::cell::Cell::get)
}

/// A connected TCP stream whose reads, on a direct reader's thread, try the descriptor
/// first (Unix).
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
        DIRECT_BYTES.with(|b| b.set(b.get() + n as u64));
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
        if buf.remaining() > 0 && DIRECT.with(std::cell::Cell::get) {
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
