//! A connected Unix domain socket, with the raw calls a thread outside the runtime uses
//! to read, write and wait on it directly.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use bytes::BufMut;
use tokio::net::UnixStream;

/// A connected local stream on Unix.
#[derive(Debug)]
pub(crate) struct UdsStream(UnixStream);

impl From<UnixStream> for UdsStream {
    fn from(s: UnixStream) -> Self {
        UdsStream(s)
    }
}

impl UdsStream {
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.0.readable().await
    }

    pub(crate) async fn writable(&self) -> io::Result<()> {
        self.0.writable().await
    }

    pub(crate) fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        self.0.try_read_buf(buf)
    }

    /// Reads straight from the file descriptor, bypassing tokio's readiness cache: for a
    /// thread outside the runtime that waited with [`poll_readable`](Self::poll_readable)
    /// (the cache is only updated by the runtime's I/O driver, a thread hop away).
    pub(crate) fn read_direct<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        if !buf.has_remaining_mut() {
            return Ok(0);
        }
        let chunk = buf.chunk_mut();
        // SAFETY: `chunk` is writable memory of `chunk.len()` bytes; read(2) writes at most
        // that many and we advance by exactly what it reports.
        let n = unsafe { libc::read(self.fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: read(2) initialized the first `n` bytes of the chunk.
        unsafe { buf.advance_mut(n as usize) };
        Ok(n as usize)
    }

    /// Writes what it can straight to the file descriptor (the counterpart of
    /// [`read_direct`](Self::read_direct)); `WouldBlock` when nothing could be written.
    /// `fds` ride along with these bytes (`SCM_RIGHTS`): the private ack channel of the
    /// first frame (see `local::acks`); usually there are none.
    pub(crate) fn write_direct(
        &self,
        bufs: &[IoSlice<'_>],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<usize> {
        super::fdpass::send(self.fd(), bufs, fds)
    }

    /// Writes what it can without blocking, through tokio's readiness; `WouldBlock` when
    /// nothing could be written. `fds` as for [`write_direct`](Self::write_direct).
    pub(crate) fn try_write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<usize> {
        self.0.try_io(tokio::io::Interest::WRITABLE, || {
            self.write_direct(bufs, fds)
        })
    }

    /// Reads like [`try_read_buf`](Self::try_read_buf) (or, `direct`, like
    /// [`read_direct`](Self::read_direct)) and also takes the descriptors the peer attached
    /// to these bytes. Only the first read of a connection asks for them.
    #[cfg(target_os = "linux")]
    pub(crate) fn read_with_fds<B: BufMut>(
        &self,
        buf: &mut B,
        direct: bool,
    ) -> io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
        let mut read = || super::fdpass::recv(self.fd(), buf);
        if direct {
            read()
        } else {
            self.0.try_io(tokio::io::Interest::READABLE, read)
        }
    }

    /// Waits up to `timeout` for the stream to be readable (or closed), with poll(2) on the
    /// calling thread. True when it is.
    pub(crate) fn poll_readable(&self, timeout: Duration) -> io::Result<bool> {
        self.poll(libc::POLLIN, timeout)
    }

    /// Like [`poll_readable`](Self::poll_readable), for room to write.
    pub(crate) fn poll_writable(&self, timeout: Duration) -> io::Result<bool> {
        self.poll(libc::POLLOUT, timeout)
    }

    /// True when the peer has closed or shut down its side, without reading. Only Linux
    /// can tell (POLLRDHUP); elsewhere this is always false.
    pub(crate) fn peer_hung_up(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            let mut pfd = libc::pollfd {
                fd: self.fd(),
                events: libc::POLLRDHUP,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a zero timeout only looks.
            let n = unsafe { libc::poll(&mut pfd, 1, 0) };
            n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
        }
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Ends the connection in both directions now: the peer sees end-of-stream and our
    /// reader wakes up, even while other handles to the stream are alive.
    pub(crate) fn shutdown(&self) {
        // SAFETY: the fd is open while `self` lives; shutdown does not close it.
        unsafe { libc::shutdown(self.fd(), libc::SHUT_RDWR) };
    }

    fn fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }

    fn poll(&self, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd(),
            events,
            revents: 0,
        };
        // Rounded up: a wait of less than a millisecond must not become a busy loop.
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            n if n > 0 => Ok(true),
            0 => Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }
}
