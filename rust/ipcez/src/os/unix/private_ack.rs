//! The private ack channel of one connection between two ipcez endpoints.
//!
//! Each side makes an eventfd (the ack counter) and a pipe, and sends the eventfd and the
//! pipe's write end with the first frame it writes (as `SCM_RIGHTS`); it keeps the eventfd
//! and the pipe's read end. The peer's reader adds one to the counter for every message it
//! has read whole from that side. Nobody else holds the counter, so nobody else can ack,
//! and the count belongs to this connection alone.
//!
//! The pipe carries no data: it says whether the peer kept what it was sent. A custom peer
//! reads with plain `read`, its kernel closes the descriptors it did not ask for, and the
//! read end here reports end-of-file. So the sender learns which protocol the peer speaks
//! from the peer's own read of the first frame, without a grace period in which a stale
//! shared token could be taken for an ack. (An eventfd alone cannot say that; a pipe alone
//! could carry the acks too, but a write to a pipe whose reader is gone raises SIGPIPE,
//! and blocking that signal costs two more system calls per ack.)

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// The sender's ends of a channel.
#[derive(Debug)]
pub(crate) struct OwnEnds {
    /// The ack counter (an eventfd, non-blocking); a copy goes to the peer.
    counter: OwnedFd,
    /// The read end of the pipe whose write end goes to the peer.
    alive: OwnedFd,
}

/// Makes the channel of a new connection: our ends, and the pipe's write end, which goes
/// to the peer (with a copy of the counter, [`OwnEnds::counter`]) and must then be closed
/// here. Everything is close-on-exec and non-blocking.
pub(crate) fn channel() -> io::Result<(OwnEnds, OwnedFd)> {
    // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
    let counter = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if counter < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let counter = unsafe { OwnedFd::from_raw_fd(counter) };
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are new descriptors that we own from here on.
    let (alive, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((OwnEnds { counter, alive }, write))
}

impl OwnEnds {
    /// The counter, to send with the pipe's write end.
    pub(crate) fn counter(&self) -> BorrowedFd<'_> {
        self.counter.as_fd()
    }

    /// Takes the acks that arrived, without blocking.
    pub(crate) fn take_acks(&self) -> io::Result<u64> {
        let mut v = 0u64;
        loop {
            // SAFETY: `v` is 8 writable bytes, what a read of an eventfd fills.
            let n = unsafe { libc::read(self.counter.as_raw_fd(), (&raw mut v).cast(), 8) };
            if n == 8 {
                return Ok(v);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(0),
                io::ErrorKind::Interrupted => {}
                _ => return Err(e),
            }
        }
    }

    /// True once no process holds the pipe's write end any more: the peer's kernel closed
    /// it (a custom reader) or the peer is gone.
    pub(crate) fn peer_dropped(&self) -> io::Result<bool> {
        let mut b = [0u8; 16];
        loop {
            // SAFETY: `b` is writable for its length.
            let n = unsafe { libc::read(self.alive.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
            match n {
                0 => return Ok(true),
                n if n > 0 => continue, // nothing is ever written; a peer that does is ignored
                _ => {}
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(false),
                io::ErrorKind::Interrupted => {}
                _ => return Err(e),
            }
        }
    }

    /// Waits up to `timeout` for acks, and with `alive` also for the pipe's end-of-file.
    pub(crate) fn wait(&self, timeout: Duration, alive: bool) -> io::Result<()> {
        let pfd = |fd: &OwnedFd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [pfd(&self.counter), pfd(&self.alive)];
        let n = if alive { 2 } else { 1 };
        // Round up: a sub-millisecond remainder must not become a busy loop of zero timeouts.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` holds `n` valid pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), n, ms) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// The reader's end of a peer's channel: acks for what it read from that peer.
#[derive(Debug)]
pub(crate) struct PeerAcks {
    counter: OwnedFd,
    /// Held, never written: closing it would tell the peer we are not ipcez.
    _alive: OwnedFd,
    /// Acks the counter had no room for (it is near 2^64), added with the next.
    owed: u64,
}

impl PeerAcks {
    /// Takes what a peer attached to its first frame when it is exactly what an ipcez peer
    /// sends: an eventfd and the write end of a pipe. Anything else is refused (and closed
    /// when dropped).
    pub(crate) fn accept(fds: Vec<OwnedFd>) -> Option<Self> {
        let [counter, alive]: [OwnedFd; 2] = fds.try_into().ok()?;
        if !is_eventfd(counter.as_fd()) || !is_pipe_write_end(alive.as_fd()) {
            return None;
        }
        // A peer's blocking eventfd must not stall this reader (see `ack`).
        set_nonblocking(counter.as_fd());
        Some(PeerAcks {
            counter,
            _alive: alive,
            owed: 0,
        })
    }

    /// Acks `n` more messages: one write, whatever `n`.
    pub(crate) fn ack(&mut self, n: usize) {
        self.owed += n as u64;
        while self.owed > 0 {
            let v = self.owed;
            // SAFETY: `v` is 8 readable bytes, what a write to an eventfd takes.
            let w = unsafe { libc::write(self.counter.as_raw_fd(), (&raw const v).cast(), 8) };
            if w == 8 {
                self.owed = 0;
                return;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted => {}
                _ => return, // full (a peer that never reads it): owed, added next time
            }
        }
    }
}

/// An eventfd, as Linux names it in /proc (no /proc: refused, and the shared acks serve).
fn is_eventfd(fd: BorrowedFd<'_>) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .is_ok_and(|target| target.as_os_str() == "anon_inode:[eventfd]")
}

/// The write end of a pipe (not a socket, a file or a read end).
fn is_pipe_write_end(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: stat is plain data; fstat fills it for a valid descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for the call; `st` is writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    st.st_mode & libc::S_IFMT == libc::S_IFIFO
        && flags >= 0
        && flags & libc::O_ACCMODE == libc::O_WRONLY
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    // SAFETY: F_GETFL/F_SETFL on an open descriptor.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags >= 0 && flags & libc::O_NONBLOCK == 0 {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}
