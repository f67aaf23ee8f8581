//! Telling event loops that something waits to be taken (a received message, a pending
//! connection), in two ways:
//!
//! - per source, a file descriptor that is readable exactly while something waits
//!   ([`Socket::fileno`](crate::Socket::fileno)): for `select`, `poll`, `selectors`;
//! - per event loop, one [`Poller`] that any number of sources report to: when a source
//!   goes from "nothing waits" to "something waits" it puts its token on the poller's list
//!   and the poller's one descriptor becomes readable. Ten thousand connections then cost
//!   one descriptor, not ten thousand.
//!
//! The owner of a source calls [`Readiness::set`] with the current state under its own
//! lock every time that state may have changed.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(unix)]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A descriptor that is readable while signalled: an eventfd on Linux, a pipe elsewhere.
#[derive(Debug)]
pub(crate) struct EventFd {
    #[cfg(unix)]
    read: OwnedFd,
    /// The pipe's write end (an eventfd's one descriptor does both).
    #[cfg(all(unix, not(target_os = "linux")))]
    write: OwnedFd,
    signalled: bool,
}

impl EventFd {
    /// A new, unsignalled descriptor (close-on-exec, non-blocking).
    #[cfg(target_os = "linux")]
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EventFd {
            // SAFETY: `fd` is a fresh descriptor owned by nobody else.
            read: unsafe { OwnedFd::from_raw_fd(fd) },
            signalled: false,
        })
    }

    /// A new, unsignalled descriptor (close-on-exec, non-blocking).
    #[cfg(all(unix, not(target_os = "linux")))]
    pub(crate) fn new() -> io::Result<Self> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both are fresh descriptors owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [&read, &write] {
            // SAFETY: plain fcntl calls on descriptors we own.
            unsafe {
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
                let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        Ok(EventFd {
            read,
            write,
            signalled: false,
        })
    }

    #[cfg(not(unix))]
    fn new() -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "readiness descriptors (fileno) are only available on Unix",
        ))
    }

    #[cfg(unix)]
    pub(crate) fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Brings the descriptor in line with `ready` (cheap when it already is).
    fn set(&mut self, ready: bool) {
        if ready == self.signalled {
            return;
        }
        self.signalled = ready;
        #[cfg(unix)]
        if ready {
            self.signal();
        } else {
            self.drain();
        }
    }

    #[cfg(unix)]
    pub(crate) fn signal(&self) {
        #[cfg(target_os = "linux")]
        let fd = self.read.as_raw_fd();
        #[cfg(not(target_os = "linux"))]
        let fd = self.write.as_raw_fd();
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 (a pipe takes any of them; an eventfd
        // adds the value). It cannot block; a full pipe or counter is still readable.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }

    #[cfg(unix)]
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reads into a live local buffer of that size.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            // An eventfd is empty after one read; a pipe may need more.
            if n <= 0 || cfg!(target_os = "linux") {
                return;
            }
        }
    }
}

/// Made on first use: a descriptor, or why there is none.
#[cfg(unix)]
fn fd_of(slot: &mut Option<EventFd>, ready: bool) -> io::Result<RawFd> {
    if slot.is_none() {
        let mut e = EventFd::new()?;
        e.set(ready);
        *slot = Some(e);
    }
    Ok(slot.as_ref().map_or(-1, EventFd::fd))
}

/// One descriptor for many sources: readable while the list of sources that became ready
/// is not empty. For an event loop (an asyncio loop, say) that serves many connections.
#[derive(Debug, Clone)]
pub struct Poller {
    shared: Arc<Mutex<PollerState>>,
}

#[derive(Debug)]
struct PollerState {
    tokens: Vec<u64>,
    fd: EventFd,
}

impl Poller {
    /// A new poller with an empty list. Unix only (an `Unsupported` error elsewhere).
    pub fn new() -> io::Result<Self> {
        Ok(Poller {
            shared: Arc::new(Mutex::new(PollerState {
                tokens: Vec::new(),
                fd: EventFd::new()?,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PollerState> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The descriptor: readable while tokens wait in the list. Owned by the poller.
    #[cfg(unix)]
    pub fn fileno(&self) -> RawFd {
        self.lock().fd.fd()
    }

    /// Moves up to `out.len()` tokens, oldest first, into `out`; returns how many.
    ///
    /// A token means "this source went from nothing waiting to something waiting" (or
    /// ended): take from it until it says it is empty, since it reports again only after
    /// that.
    pub fn take(&self, out: &mut [u64]) -> usize {
        let mut s = self.lock();
        let n = out.len().min(s.tokens.len());
        out[..n].copy_from_slice(&s.tokens[..n]);
        s.tokens.drain(..n);
        let waiting = !s.tokens.is_empty();
        s.fd.set(waiting);
        n
    }

    /// Puts `token` on the list, for sources outside this library (say, an ack waiter).
    pub fn push(&self, token: u64) {
        let mut s = self.lock();
        s.tokens.push(token);
        s.fd.set(true);
    }
}

/// The readiness of one source: its own descriptor (made on demand) and the poller it
/// reports to, if any.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    ready: bool,
    fd: Option<EventFd>,
    watch: Option<(Poller, u64)>,
}

impl Readiness {
    /// Records whether something waits now; signals on the way up, drains on the way down.
    pub(crate) fn set(&mut self, ready: bool) {
        if self.set_quietly(ready)
            && let (true, Some((poller, token))) = (ready, &self.watch)
        {
            poller.push(*token);
        }
    }

    /// [`set`](Self::set) without a report to the poller (its owner knows already). True
    /// when the state changed.
    pub(crate) fn set_quietly(&mut self, ready: bool) -> bool {
        if ready == self.ready {
            return false;
        }
        self.ready = ready;
        if let Some(fd) = &mut self.fd {
            fd.set(ready);
        }
        true
    }

    /// This source's own descriptor, made on first call.
    #[cfg(unix)]
    pub(crate) fn fileno(&mut self) -> io::Result<RawFd> {
        fd_of(&mut self.fd, self.ready)
    }

    /// Reports to the poller now, whatever waits (news that is not a waiting item).
    #[cfg(target_os = "linux")]
    pub(crate) fn nudge(&self) {
        if let Some((poller, token)) = &self.watch {
            poller.push(*token);
        }
    }

    /// Reports to `poller` as `token` from now on (replacing any earlier poller); reports
    /// at once when something already waits.
    pub(crate) fn watch(&mut self, poller: &Poller, token: u64) {
        if self.ready {
            poller.push(token);
        }
        self.watch = Some((poller.clone(), token));
    }
}

/// A count of waiting items (pending connections) with their [`Readiness`]: ready while
/// the count is above zero or the source has ended.
#[derive(Debug, Default)]
pub(crate) struct ReadyCount {
    state: Mutex<CountState>,
}

#[derive(Debug, Default)]
struct CountState {
    /// May dip below zero for a moment: a taker can see an item before it is counted.
    waiting: isize,
    ended: bool,
    readiness: Readiness,
}

impl ReadyCount {
    fn update<R>(&self, f: impl FnOnce(&mut CountState) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut s);
        let ready = s.waiting > 0 || s.ended;
        s.readiness.set(ready);
        r
    }

    /// One more item waits.
    pub(crate) fn added(&self) {
        self.update(|s| s.waiting += 1);
    }

    /// One item was taken.
    pub(crate) fn taken(&self) {
        self.update(|s| s.waiting -= 1);
    }

    /// The source ended: takers get its end at once.
    pub(crate) fn end(&self) {
        self.update(|s| s.ended = true);
    }

    /// The source's own descriptor, made on first call.
    #[cfg(unix)]
    pub(crate) fn fileno(&self) -> io::Result<RawFd> {
        self.update(|s| s.readiness.fileno())
    }

    /// Reports to `poller` as `token` from now on.
    pub(crate) fn watch(&self, poller: &Poller, token: u64) {
        self.update(|s| s.readiness.watch(poller, token));
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    pub(crate) fn readable(fd: RawFd) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a zero timeout only looks.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    }

    #[test]
    fn own_descriptor_follows_the_state() {
        let mut r = Readiness::default();
        r.set(true);
        let fd = r.fileno().unwrap();
        assert!(readable(fd), "made while ready: signalled at once");
        r.set(true); // idempotent
        r.set(false);
        assert!(!readable(fd), "drained on the way back to idle");
        r.set(true);
        assert!(readable(fd));
    }

    #[test]
    fn poller_gets_one_token_per_rise() {
        let poller = Poller::new().unwrap();
        let (mut a, mut b) = (Readiness::default(), Readiness::default());
        a.set(true);
        a.watch(&poller, 1); // already ready: reported at once
        b.watch(&poller, 2);
        assert!(readable(poller.fileno()));
        b.set(true);
        b.set(true); // no second report while still ready
        let mut out = [0u64; 8];
        assert_eq!(poller.take(&mut out), 2);
        assert_eq!(&out[..2], &[1, 2]);
        assert!(!readable(poller.fileno()), "list empty: drained");
        b.set(false);
        b.set(true);
        assert_eq!(poller.take(&mut out[..1]), 1);
        assert_eq!(out[0], 2);
    }

    #[test]
    fn count_is_ready_while_positive_or_ended() {
        let c = ReadyCount::default();
        c.added();
        let fd = c.fileno().unwrap();
        assert!(readable(fd));
        c.taken();
        assert!(!readable(fd));
        c.taken(); // taken before it was counted
        c.added();
        assert!(!readable(fd));
        c.end();
        assert!(readable(fd));
    }
}
