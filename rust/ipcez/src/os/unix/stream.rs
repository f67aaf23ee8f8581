//! A connected Unix domain socket, with the raw calls a thread outside the runtime uses
//! to read, write and wait on it directly.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream as StdStream;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::BufMut;
use tokio::io::unix::AsyncFd;
use tokio::net::UnixStream;
use tokio::sync::Notify;

/// A connected local stream on Unix.
///
/// Every read and write is a plain non-blocking system call, from whichever thread; only
/// the waits of the runtime's tasks go through a registration, made by the first of them:
/// on ipcez's own runtime (Linux), the one-shot one of `armed`, elsewhere tokio's.
#[derive(Debug)]
pub(crate) struct UdsStream {
    /// Dropped before the socket: a registration leaves its reactor while the fd is open.
    watch: OnceLock<Watch>,
    /// Held while `watch` is made: a second registration of the descriptor would fail.
    making: Mutex<()>,
    /// A thread gave the reading role back before `watch` existed (see `hand_back`).
    handed_early: AtomicBool,
    sock: StdStream,
}

#[derive(Debug)]
enum Watch {
    #[cfg(target_os = "linux")]
    Armed(super::armed::Registration),
    Tokio {
        fd: AsyncFd<Fd>,
        /// Wakes the background reader when a thread gives the reading role back.
        handed_back: Notify,
    },
}

/// The socket's descriptor, for tokio's registration (owned by `UdsStream::sock`).
#[derive(Debug)]
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl UdsStream {
    /// Takes a stream tokio connected or accepted (it leaves tokio's registration).
    pub(crate) fn new(s: UnixStream) -> io::Result<Self> {
        // The reactor needs a descriptor of its own: made now, while one is likely free.
        // Only where ipcez's runtime runs already: async callers on their own runtime never
        // use it, and must not get its thread.
        #[cfg(target_os = "linux")]
        if crate::runtime::started() {
            super::armed::prepare();
        }
        Ok(UdsStream {
            watch: OnceLock::new(),
            making: Mutex::new(()),
            handed_early: AtomicBool::new(false),
            sock: s.into_std()?,
        })
    }

    /// The registration, made on the first wait (always in a task of the stream's runtime).
    fn watch(&self) -> io::Result<&Watch> {
        if let Some(w) = self.watch.get() {
            return Ok(w);
        }
        // The reader's and a writer's first waits may race (on a multi-threaded runtime).
        let _making = self.making.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = self.watch.get() {
            return Ok(w);
        }
        #[cfg(target_os = "linux")]
        let armed = crate::runtime::on_own_runtime()
            .then(|| super::armed::Registration::new(self.fd()).ok())
            .flatten();
        // Without the reactor (out of descriptors when it was to be made), tokio's.
        let made = match armed {
            Some(r) => Watch::Armed(r),
            None => self.tokio_watch()?,
        };
        #[cfg(not(target_os = "linux"))]
        let made = self.tokio_watch()?;
        Ok(self.watch.get_or_init(|| made))
    }

    fn tokio_watch(&self) -> io::Result<Watch> {
        // SAFETY: the descriptor belongs to `self.sock`, which is dropped after `watch`.
        let fd = unsafe { AsyncFd::register(Fd(self.fd())) }.map_err(|e| e.into_parts().1)?;
        Ok(Watch::Tokio {
            fd,
            handed_back: Notify::new(),
        })
    }

    /// Waits until the stream may be readable (or closed); the caller then reads and comes
    /// back on `WouldBlock`.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self.watch()? {
            #[cfg(target_os = "linux")]
            Watch::Armed(r) => r.readable().await,
            Watch::Tokio { fd, .. } => loop {
                let mut ready = fd.readable().await?;
                if self.poll(libc::POLLIN, Duration::ZERO)? {
                    return Ok(());
                }
                ready.clear_ready();
            },
        }
    }

    /// Waits until the stream may have room to write.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self.watch()? {
            #[cfg(target_os = "linux")]
            Watch::Armed(r) => r.writable().await,
            Watch::Tokio { fd, .. } => loop {
                let mut ready = fd.writable().await?;
                if self.poll(libc::POLLOUT, Duration::ZERO)? {
                    return Ok(());
                }
                ready.clear_ready();
            },
        }
    }

    /// Background reader: waits until a thread that read the stream itself gives the
    /// reading role back ([`hand_back`](Self::hand_back)) and bytes may be waiting.
    pub(crate) async fn handed_back(&self) -> io::Result<()> {
        let watch = self.watch()?;
        // Pairs with the fence of `note_early_hand_back`: one of the two sees the other.
        fence(Ordering::SeqCst);
        if self.handed_early.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        match watch {
            #[cfg(target_os = "linux")]
            Watch::Armed(r) => r.armed_elsewhere().await,
            Watch::Tokio { handed_back, .. } => handed_back.notified().await,
        }
        Ok(())
    }

    /// A thread takes the reading role to read the stream itself: the background reader's
    /// arming is taken back, so bytes that come meanwhile wake only that thread.
    pub(crate) fn taken_over(&self) {
        #[cfg(target_os = "linux")]
        if let Some(Watch::Armed(r)) = self.watch.get() {
            let _ = r.disarm_read();
        }
    }

    /// An event loop reads the stream itself while `on` (see `armed::Registration::hold`):
    /// the descriptor it watches, or `None` where the stream is not in the one-shot set
    /// (then the background reader goes on as before).
    #[cfg(target_os = "linux")]
    pub(crate) fn held_by_loop(&self, on: bool) -> Option<RawFd> {
        let Some(Watch::Armed(r)) = self.watch.get() else {
            return None;
        };
        let done = if on { r.hold() } else { r.release() };
        // Cannot fail for a registered socket; if it did, the reader must not sleep on it.
        if done.is_err() {
            self.shutdown();
        }
        Some(self.fd())
    }

    /// True while an event loop holds the stream (see [`held_by_loop`](Self::held_by_loop)).
    #[cfg(target_os = "linux")]
    pub(crate) fn is_held(&self) -> bool {
        matches!(self.watch.get(), Some(Watch::Armed(r)) if r.is_held())
    }

    /// True while the event loop of the calling thread holds the stream (it reads it).
    #[cfg(target_os = "linux")]
    pub(crate) fn is_held_here(&self) -> bool {
        matches!(self.watch.get(), Some(Watch::Armed(r)) if r.is_held_here())
    }

    /// A thread that read the stream itself gives the reading role back to the background
    /// reader. Armed, that costs no wake-up unless bytes wait (or come).
    pub(crate) fn hand_back(&self) {
        match self.watch.get().or_else(|| self.note_early_hand_back()) {
            #[cfg(target_os = "linux")]
            // Cannot fail for a registered socket; if it did, the reader must not sleep on it.
            Some(Watch::Armed(r)) if r.arm_read().is_err() => self.shutdown(),
            Some(Watch::Armed(_)) => {}
            Some(Watch::Tokio { handed_back, .. }) => handed_back.notify_one(),
            // Noted for the background reader's first wait.
            None => {}
        }
    }

    /// A hand-back before the first wait made the registration: the background reader may
    /// have found the role taken and be on its way to wait for it, so it is left a note,
    /// read once the registration exists. The registration if it appeared meanwhile.
    fn note_early_hand_back(&self) -> Option<&Watch> {
        self.handed_early.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.watch.get()
    }

    pub(crate) fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        self.read_direct(buf).map(|(n, _)| n)
    }

    /// Reads straight from the file descriptor, from any thread (one that waited with
    /// [`poll_readable`](Self::poll_readable), or a task after [`readable`](Self::readable)).
    /// Also says whether the read was short: the socket had no more bytes just then.
    pub(crate) fn read_direct<B: BufMut>(&self, buf: &mut B) -> io::Result<(usize, bool)> {
        if !buf.has_remaining_mut() {
            return Ok((0, false));
        }
        let chunk = buf.chunk_mut();
        let asked = chunk.len();
        // SAFETY: `chunk` is writable memory of `chunk.len()` bytes; read(2) writes at most
        // that many and we advance by exactly what it reports.
        let n = unsafe { libc::read(self.fd(), chunk.as_mut_ptr().cast(), asked) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: read(2) initialized the first `n` bytes of the chunk.
        unsafe { buf.advance_mut(n as usize) };
        Ok((n as usize, (n as usize) < asked))
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

    /// Writes what it can without blocking (a task's write; see
    /// [`write_direct`](Self::write_direct)).
    pub(crate) fn try_write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<usize> {
        self.write_direct(bufs, fds)
    }

    /// Reads like [`read_direct`](Self::read_direct) and also takes the descriptors the
    /// peer attached to these bytes. Only the first read of a connection asks for them.
    #[cfg(target_os = "linux")]
    pub(crate) fn read_with_fds<B: BufMut>(
        &self,
        buf: &mut B,
    ) -> io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
        super::fdpass::recv(self.fd(), buf)
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

    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use super::*;

    /// One end as ipcez holds it, the other as a plain socket.
    fn pair() -> (UdsStream, StdStream) {
        let (ours, theirs) = StdStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        let _in_runtime = crate::runtime::runtime().enter();
        let ours = UnixStream::from_std(ours).expect("tokio stream");
        (UdsStream::new(ours).expect("UdsStream"), theirs)
    }

    const BOUND: Duration = Duration::from_secs(5);

    /// A thread that read the stream itself gives the role back while the background
    /// reader, which found the role taken, has not made its registration yet: the reader
    /// must still be woken for the bytes that wait (else they are never read nor acked).
    #[test]
    fn a_hand_back_before_the_first_wait_wakes_the_reader() {
        // On ipcez's own runtime (the armed registration) and on another one (tokio's).
        for own in [true, false] {
            let (stream, mut peer) = pair();
            peer.write_all(b"waiting").expect("peer write");
            stream.hand_back();
            let stream = Arc::new(stream);
            let waited = async move { tokio::time::timeout(BOUND, stream.handed_back()).await };
            let woken = if own {
                let task = crate::runtime::runtime().spawn(waited);
                crate::runtime::runtime().block_on(task).expect("task")
            } else {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(waited)
            };
            let woken = woken.map(|r| r.expect("registration")).is_ok();
            assert!(
                woken,
                "own runtime: {own}: a hand-back before the first wait was lost"
            );
        }
    }

    /// The first waits of two tasks on a multi-threaded runtime (the reader's and a
    /// writer's) race to register the stream: neither may fail for it.
    #[test]
    fn racing_first_waits_both_get_the_registration() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        for _ in 0..300 {
            let (stream, mut peer) = pair();
            peer.write_all(b"x").expect("peer write");
            let gate = std::sync::Barrier::new(2);
            // Two threads of their own, not two tasks: a task blocking at the gate could
            // hold the one worker the other task is queued on.
            let results: Vec<_> = std::thread::scope(|scope| {
                let waits: Vec<_> = (0..2)
                    .map(|i| {
                        let (s, gate, handle) = (&stream, &gate, rt.handle());
                        scope.spawn(move || {
                            gate.wait();
                            handle.block_on(async {
                                let wait = async {
                                    if i == 0 {
                                        s.readable().await
                                    } else {
                                        s.writable().await
                                    }
                                };
                                tokio::time::timeout(BOUND, wait).await
                            })
                        })
                    })
                    .collect();
                waits
                    .into_iter()
                    .map(|w| w.join().expect("thread"))
                    .collect()
            });
            for r in results {
                let r = r.expect("bounded wait");
                assert!(r.is_ok(), "a first wait failed: {r:?}");
            }
        }
    }
}
