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
    /// The last direct read got fewer bytes than it asked for: the socket had no more just
    /// then, so the next read on this thread says "pending" without a system call that
    /// would only say "would block" (the poll(2) or the event loop that comes next sees
    /// whatever arrives meanwhile).
    static DRY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's reads of every `DirectTcp` going to the descriptor first.
#[cfg(unix)]
pub(crate) fn reading_directly<R>(f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DIRECT.with(|d| d.set(false));
            DRY.with(|d| d.set(false));
        }
    }
    DIRECT.with(|d| d.set(true));
    DRY.with(|d| d.set(false));
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
///
/// On ipcez's own runtime (Linux) the socket is not in tokio's epoll set but in the one-shot
/// one of `os::unix::armed`: the runtime's thread hears of it only when the reader task is
/// about to wait for it (or a write for room), never while a thread blocked in `recv` reads
/// it itself. Elsewhere it is tokio's stream.
pub(crate) struct DirectTcp(Inner);

enum Inner {
    Tokio(TcpStream),
    #[cfg(target_os = "linux")]
    Armed(std::sync::Arc<ArmedTcp>),
}

/// The socket and its place in the one-shot reactor.
#[cfg(target_os = "linux")]
pub(crate) struct ArmedTcp {
    /// Dropped before the socket: a registration leaves its reactor while the fd is open.
    reg: crate::os::unix::armed::Registration,
    sock: std::net::TcpStream,
}

/// Which descriptor a thread outside the runtime waits on with poll(2) (Unix; elsewhere
/// nothing), and, armed, the registration it takes over and hands back. Valid while the
/// stream lives.
#[derive(Debug, Clone)]
pub(crate) struct TcpFd(
    #[cfg(unix)] pub(crate) std::os::fd::RawFd,
    #[cfg(target_os = "linux")] Option<std::sync::Weak<ArmedTcp>>,
);

#[cfg(target_os = "linux")]
impl std::fmt::Debug for ArmedTcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmedTcp")
            .field("sock", &self.sock)
            .finish()
    }
}

impl TcpFd {
    /// A thread reads the stream itself from now on: the reader task's arming is taken
    /// back (see `UdsStream::taken_over`).
    #[cfg(unix)]
    pub(crate) fn taken_over(&self) {
        #[cfg(target_os = "linux")]
        if let Some(tcp) = self.1.as_ref().and_then(std::sync::Weak::upgrade) {
            let _ = tcp.reg.disarm_read();
        }
    }

    /// That thread is done: the socket is armed for the reader task again, which is woken
    /// if bytes wait or come.
    #[cfg(unix)]
    pub(crate) fn hand_back(&self) {
        #[cfg(target_os = "linux")]
        if let Some(tcp) = self.1.as_ref().and_then(std::sync::Weak::upgrade)
            && tcp.reg.arm_read().is_err()
        {
            // Cannot fail for a registered socket; if it did, the task must not sleep on it.
            let _ = tcp.sock.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl TcpFd {
    /// An event loop reads the stream itself while `on` (see `UdsStream::held_by_loop`).
    #[cfg(target_os = "linux")]
    pub(crate) fn held_by_loop(&self, on: bool) -> Option<std::os::fd::RawFd> {
        let tcp = self.1.as_ref().and_then(std::sync::Weak::upgrade)?;
        let done = if on {
            tcp.reg.hold()
        } else {
            tcp.reg.release()
        };
        if done.is_err() {
            let _ = tcp.sock.shutdown(std::net::Shutdown::Both);
        }
        Some(self.0)
    }
}

impl DirectTcp {
    /// Wraps a stream tokio connected or accepted (inside a runtime).
    pub(crate) fn new(tcp: TcpStream) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        if crate::runtime::on_own_runtime() {
            return Self::armed(tcp);
        }
        Ok(DirectTcp(Inner::Tokio(tcp)))
    }

    /// Moves `tcp` to the one-shot reactor, or back to tokio's when that cannot be done.
    #[cfg(target_os = "linux")]
    fn armed(tcp: TcpStream) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        crate::os::unix::armed::prepare();
        let sock = tcp.into_std()?;
        match crate::os::unix::armed::Registration::new(sock.as_raw_fd()) {
            Ok(reg) => Ok(DirectTcp(Inner::Armed(std::sync::Arc::new(ArmedTcp {
                reg,
                sock,
            })))),
            // Out of descriptors for the reactor, say: tokio's registration instead.
            Err(_) => Ok(DirectTcp(Inner::Tokio(TcpStream::from_std(sock)?))),
        }
    }

    pub(crate) fn fd(&self) -> TcpFd {
        #[cfg(target_os = "linux")]
        if let Inner::Armed(tcp) = &self.0 {
            return TcpFd(self.raw_fd(), Some(std::sync::Arc::downgrade(tcp)));
        }
        #[cfg(target_os = "linux")]
        return TcpFd(self.raw_fd(), None);
        #[cfg(all(unix, not(target_os = "linux")))]
        return TcpFd(self.raw_fd());
        #[cfg(not(unix))]
        TcpFd()
    }

    #[cfg(unix)]
    fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match &self.0 {
            Inner::Tokio(tcp) => tcp.as_raw_fd(),
            #[cfg(target_os = "linux")]
            Inner::Armed(tcp) => tcp.sock.as_raw_fd(),
        }
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
        let short = n > 0 && n < unfilled.len();
        // SAFETY: read(2) initialized the first `n` bytes of the unfilled part.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        if DIRECT.with(std::cell::Cell::get) {
            DIRECT_BYTES.with(|b| b.set(b.get() + n as u64));
            DRY.with(|d| d.set(short));
        }
        Ok(())
    }

    /// One send(2) of `data`; `WouldBlock` when the socket has no room. MSG_NOSIGNAL: a
    /// dead peer gives EPIPE, not a SIGPIPE that kills a host process that does not ignore it.
    #[cfg(target_os = "linux")]
    fn write_now(&self, data: &[u8]) -> io::Result<usize> {
        // SAFETY: `data` is readable for its length.
        let n = unsafe {
            libc::send(
                self.raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl AsyncRead for DirectTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        #[cfg(target_os = "linux")]
        if let Inner::Armed(tcp) = &self.0 {
            // A direct reader that read the socket dry waits with poll(2) itself.
            if DIRECT.with(std::cell::Cell::get) && DRY.with(|d| d.replace(false)) {
                return Poll::Pending;
            }
            let tcp = tcp.clone();
            loop {
                match self.read_now(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    done => return Poll::Ready(done),
                }
                // A thread reading directly waits with poll(2) itself: no arming for it.
                if DIRECT.with(std::cell::Cell::get) {
                    return Poll::Pending;
                }
                std::task::ready!(tcp.reg.poll_read_ready(cx))?;
            }
        }
        #[cfg(unix)]
        if buf.remaining() > 0 && DIRECT.with(std::cell::Cell::get) {
            match self.read_now(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => return Poll::Ready(done),
            }
        }
        match &mut self.0 {
            Inner::Tokio(tcp) => Pin::new(tcp).poll_read(cx, buf),
            #[cfg(target_os = "linux")]
            Inner::Armed(_) => unreachable!("handled above"),
        }
    }
}

impl AsyncWrite for DirectTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.0 {
            Inner::Tokio(tcp) => Pin::new(tcp).poll_write(cx, data),
            #[cfg(target_os = "linux")]
            Inner::Armed(tcp) => {
                let tcp = tcp.clone();
                loop {
                    match self.write_now(data) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        done => return Poll::Ready(done),
                    }
                    std::task::ready!(tcp.reg.poll_write_ready(cx))?;
                }
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.0 {
            Inner::Tokio(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            #[cfg(target_os = "linux")]
            Inner::Armed(_) => {
                let first = bufs
                    .iter()
                    .find(|b| !b.is_empty())
                    .map_or(&[][..], |b| &b[..]);
                self.poll_write(cx, first)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            Inner::Tokio(tcp) => tcp.is_write_vectored(),
            #[cfg(target_os = "linux")]
            Inner::Armed(_) => false,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.0 {
            Inner::Tokio(tcp) => Pin::new(tcp).poll_flush(cx),
            #[cfg(target_os = "linux")]
            Inner::Armed(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.0 {
            Inner::Tokio(tcp) => Pin::new(tcp).poll_shutdown(cx),
            #[cfg(target_os = "linux")]
            Inner::Armed(tcp) => Poll::Ready(tcp.sock.shutdown(std::net::Shutdown::Write)),
        }
    }
}
