//! The byte stream under the local transports, one variant per OS backend, with the
//! readiness-based calls the reader and the writers share through `&self`.

use std::io::{self, IoSlice};

use bytes::BufMut;

/// A connected local stream: a Unix domain socket, or a named pipe on Windows.
#[derive(Debug)]
pub(crate) enum LocalStream {
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
    #[cfg(windows)]
    PipeClient(tokio::net::windows::named_pipe::NamedPipeClient),
    #[cfg(windows)]
    PipeServer(tokio::net::windows::named_pipe::NamedPipeServer),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $body:expr) => {
        match $self {
            #[cfg(unix)]
            LocalStream::Unix($s) => $body,
            #[cfg(windows)]
            LocalStream::PipeClient($s) => $body,
            #[cfg(windows)]
            LocalStream::PipeServer($s) => $body,
        }
    };
}

impl LocalStream {
    pub(crate) async fn readable(&self) -> io::Result<()> {
        dispatch!(self, s => s.readable().await)
    }

    pub(crate) async fn writable(&self) -> io::Result<()> {
        dispatch!(self, s => s.writable().await)
    }

    pub(crate) fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        dispatch!(self, s => s.try_read_buf(buf))
    }

    /// Reads straight from the file descriptor, bypassing tokio's readiness cache: for a
    /// thread outside the runtime that waited with [`poll_readable`](Self::poll_readable)
    /// (the cache is only updated by the runtime's I/O driver, a thread hop away).
    #[cfg(unix)]
    pub(crate) fn read_direct<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let LocalStream::Unix(s) = self;
        if !buf.has_remaining_mut() {
            return Ok(0);
        }
        let chunk = buf.chunk_mut();
        // SAFETY: `chunk` is writable memory of `chunk.len()` bytes; read(2) writes at most
        // that many and we advance by exactly what it reports.
        let n = unsafe { libc::read(s.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: read(2) initialized the first `n` bytes of the chunk.
        unsafe { buf.advance_mut(n as usize) };
        Ok(n as usize)
    }

    /// Writes what it can straight to the file descriptor (the counterpart of
    /// [`read_direct`](Self::read_direct)); `WouldBlock` when nothing could be written.
    ///
    /// sendmsg with MSG_NOSIGNAL instead of write: a dead peer must give EPIPE, not a
    /// SIGPIPE that kills the host process (a C or Python host may not ignore it the way
    /// Rust binaries do).
    #[cfg(unix)]
    pub(crate) fn write_direct(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let LocalStream::Unix(s) = self;
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        // SAFETY: IoSlice is ABI-compatible with iovec on Unix, the slices outlive the
        // call, and the fd is open while `s` lives.
        let n = unsafe { libc::sendmsg(s.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Waits up to `timeout` for the stream to be readable (or closed), with poll(2) on the
    /// calling thread. True when it is.
    #[cfg(unix)]
    pub(crate) fn poll_readable(&self, timeout: std::time::Duration) -> io::Result<bool> {
        self.poll(libc::POLLIN, timeout)
    }

    /// True when the peer has closed or shut down its side (POLLRDHUP), without reading.
    #[cfg(target_os = "linux")]
    pub(crate) fn peer_hung_up(&self) -> bool {
        use std::os::fd::AsRawFd;
        let LocalStream::Unix(s) = self;
        let mut pfd = libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a zero timeout only looks.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }

    /// Like [`poll_readable`](Self::poll_readable), for room to write.
    #[cfg(unix)]
    pub(crate) fn poll_writable(&self, timeout: std::time::Duration) -> io::Result<bool> {
        self.poll(libc::POLLOUT, timeout)
    }

    #[cfg(unix)]
    fn poll(&self, events: libc::c_short, timeout: std::time::Duration) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let LocalStream::Unix(s) = self;
        let mut pfd = libc::pollfd {
            fd: s.as_raw_fd(),
            events,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
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

    /// Writes what it can without blocking; `WouldBlock` when nothing could be written.
    pub(crate) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            #[cfg(unix)]
            LocalStream::Unix(s) => {
                s.try_io(tokio::io::Interest::WRITABLE, || self.write_direct(bufs))
            }
            #[cfg(windows)]
            LocalStream::PipeClient(s) => s.try_write_vectored(bufs),
            #[cfg(windows)]
            LocalStream::PipeServer(s) => s.try_write_vectored(bufs),
        }
    }

    /// Ends the connection in both directions now: the peer sees end-of-stream and our
    /// reader wakes up, even while other handles to the stream are alive.
    pub(crate) fn shutdown(&self) {
        match self {
            #[cfg(unix)]
            LocalStream::Unix(s) => {
                use std::os::fd::AsRawFd;
                // SAFETY: the fd is open while `s` lives; shutdown does not close it.
                unsafe { libc::shutdown(s.as_raw_fd(), libc::SHUT_RDWR) };
            }
            #[cfg(windows)]
            LocalStream::PipeClient(_) => {}
            #[cfg(windows)]
            LocalStream::PipeServer(s) => {
                let _ = s.disconnect();
            }
        }
    }
}
