//! The private ack channel of one connection between two ipcez endpoints.
//!
//! Each side makes a sealed memfd of one page and a pipe. It sends the memfd and the pipe's
//! write end with the first frame it writes (as `SCM_RIGHTS`), and keeps the page mapped
//! and the pipe's read end. Both sides close every descriptor of the channel as soon as the
//! peer's kind is known (the first ack, or the end-of-file): a connection holds no more
//! descriptors than its socket. The page holds an ack counter: the peer's reader adds one for
//! every message it has read whole from that side, and wakes the sender with a futex only
//! when the sender sleeps. Nobody else holds the page, so nobody else can ack, and the
//! count belongs to this connection alone. An ack costs what an uncontended semaphore post
//! costs: no system call while the sender is still spinning.
//!
//! The pipe carries no data: it says whether the peer kept what it was sent. A custom peer
//! reads with plain `read`, its kernel closes the descriptors it did not ask for, and the
//! read end here reports end-of-file. So the sender learns which protocol the peer speaks
//! from the peer's own read of the first frame, without a grace period in which a stale
//! shared token could be taken for an ack.
//!
//! The page layout is ipcez's own (not a libc `sem_t`, whose layout differs between C
//! libraries): a little-endian `u32` count of acks at offset 0 (it wraps), a `u32` count
//! of sleeping waiters at offset 4, the owner's feature bits at offset 8 (bit 0: its
//! reader rings doorbells, see `local::doorbell`) and at offset 12 a word the owner sets
//! while it wants a doorbell for each ack (its event loop waits on the socket, not on the
//! counter). A doorbell is only a wake-up: the count stays the one authority on acks.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The size of the shared page.
const PAGE: usize = 4096;

/// Feature bit of a page's owner: its reader writes a doorbell when the peer asks.
const RINGS: u32 = 1;

/// How long a sender that does not know its peer yet sleeps on the counter before it looks
/// at the pipe again (a custom peer shows only there).
const ALIVE_SLICE: Duration = Duration::from_millis(1);

/// The shared page, mapped.
#[derive(Debug)]
struct Page(NonNull<u8>);

// SAFETY: the mapping is only accessed through atomics, from any thread, until drop.
unsafe impl Send for Page {}
// SAFETY: as above.
unsafe impl Sync for Page {}

impl Page {
    /// Maps the first page of `fd`, which must be at least a page long and unable to shrink
    /// (a file cut short under a mapping turns accesses into SIGBUS).
    fn map(fd: BorrowedFd<'_>) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping of a descriptor; nothing else is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(p.cast())
            .map(Page)
            .ok_or_else(io::Error::last_os_error)
    }

    fn count(&self) -> &AtomicU32 {
        // SAFETY: the page is mapped, writable and page-aligned while `self` lives.
        unsafe { AtomicU32::from_ptr(self.0.as_ptr().cast()) }
    }

    fn waiters(&self) -> &AtomicU32 {
        self.word(4)
    }

    fn features(&self) -> &AtomicU32 {
        self.word(8)
    }

    fn ring(&self) -> &AtomicU32 {
        self.word(12)
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset.is_multiple_of(4) && offset < PAGE);
        // SAFETY: as in `count`; every caller's offset is inside the page and 4-aligned.
        unsafe { AtomicU32::from_ptr(self.0.as_ptr().add(offset).cast()) }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: mapped in `map` with this length, unmapped once.
        unsafe { libc::munmap(self.0.as_ptr().cast(), PAGE) };
    }
}

/// The sender's ends of a channel.
#[derive(Debug)]
pub(crate) struct OwnEnds {
    page: Page,
    /// The count already taken in.
    taken: AtomicU32,
    /// The read end of the pipe whose write end goes to the peer, until the peer's kind is
    /// known.
    alive: std::sync::Mutex<Option<OwnedFd>>,
}

/// What goes to the peer with the first frame: the page's memfd and the pipe's write end.
/// Dropped (closed here) once sent.
#[derive(Debug)]
pub(crate) struct ToSend {
    mem: OwnedFd,
    write: OwnedFd,
}

impl ToSend {
    /// The descriptors, in the order the peer expects them.
    pub(crate) fn fds(&self) -> [BorrowedFd<'_>; 2] {
        [self.mem.as_fd(), self.write.as_fd()]
    }
}

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Makes the channel of a new connection: our ends, and what goes to the peer (to be
/// dropped here once sent). Everything is close-on-exec; the pipe is non-blocking.
pub(crate) fn channel() -> io::Result<(OwnEnds, ToSend)> {
    // memfd_create through syscall(2): the libc wrapper is newer than the wheel's glibc.
    // SAFETY: a NUL-terminated name and flags; a non-negative result is a new descriptor.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_memfd_create,
            c"ipcez-ack".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    })?;
    // SAFETY: as above; we own it from here on.
    let mem = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    // SAFETY: plain calls on a descriptor we own.
    unsafe {
        cvt(libc::ftruncate(mem.as_raw_fd(), PAGE as libc::off_t).into())?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        cvt(libc::fcntl(mem.as_raw_fd(), libc::F_ADD_SEALS, seals).into())?;
    }
    let page = Page::map(mem.as_fd())?;
    page.features().store(RINGS, Ordering::SeqCst);
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are new descriptors that we own from here on.
    let (alive, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let own = OwnEnds {
        page,
        taken: AtomicU32::new(0),
        alive: std::sync::Mutex::new(Some(alive)),
    };
    Ok((own, ToSend { mem, write }))
}

impl OwnEnds {
    /// The peer's kind is known: the pipe has nothing more to say.
    pub(crate) fn settle(&self) {
        self.alive.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Asks the peer's reader for a doorbell with each ack from now on (`on`), or no more.
    /// Set before looking at the count: an ack after that look sees the request.
    pub(crate) fn want_doorbells(&self, on: bool) {
        self.page.ring().store(u32::from(on), Ordering::SeqCst);
    }

    /// True while this side asks for doorbells.
    pub(crate) fn wants_doorbells(&self) -> bool {
        self.page.ring().load(Ordering::SeqCst) != 0
    }

    /// Takes in the acks that arrived since the last call (never blocks).
    pub(crate) fn take_acks(&self) -> io::Result<u64> {
        let now = self.page.count().load(Ordering::SeqCst);
        let before = self.taken.swap(now, Ordering::AcqRel);
        Ok(u64::from(now.wrapping_sub(before)))
    }

    /// True once no process holds the pipe's write end any more: the peer's kernel closed
    /// it (a custom reader) or the peer is gone. False after [`settle`](Self::settle).
    pub(crate) fn peer_dropped(&self) -> io::Result<bool> {
        let alive = self.alive.lock().unwrap_or_else(|p| p.into_inner());
        let Some(alive) = alive.as_ref() else {
            return Ok(false);
        };
        // Bounded: the peer may write all the time, and the caller holds locks. Junk it
        // wrote is taken in slices over later calls; any means not dropped yet.
        let mut b = [0u8; 4096];
        for _ in 0..4 {
            // SAFETY: `b` is writable for its length.
            let n = unsafe { libc::read(alive.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
            match n {
                0 => return Ok(true),
                n if n > 0 => return Ok(false),
                _ => {}
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(false),
                io::ErrorKind::Interrupted => {}
                _ => return Err(e),
            }
        }
        Ok(false)
    }

    /// Sleeps until the count moves past what was taken in, at most `timeout` (with `alive`,
    /// at most `ALIVE_SLICE`, so that the caller looks at the pipe again).
    pub(crate) fn wait(&self, timeout: Duration, alive: bool) -> io::Result<()> {
        let timeout = if alive {
            timeout.min(ALIVE_SLICE)
        } else {
            timeout
        };
        let expected = self.taken.load(Ordering::Acquire);
        let waiters = self.page.waiters();
        waiters.fetch_add(1, Ordering::SeqCst);
        // Registered first, then looked: a post after the look sees us and wakes us.
        let r = if self.page.count().load(Ordering::SeqCst) != expected {
            Ok(())
        } else {
            futex_wait(self.page.count(), expected, timeout)
        };
        waiters.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned u32 for the call; a shared (not private) futex,
    // since the other process waits and wakes on the same page.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        )
    };
    if r == 0 {
        return Ok(());
    }
    match io::Error::last_os_error() {
        e if matches!(
            e.raw_os_error(),
            Some(libc::EAGAIN | libc::ETIMEDOUT | libc::EINTR)
        ) =>
        {
            Ok(())
        }
        e => Err(e),
    }
}

/// The reader's end of a peer's channel: acks for what it read from that peer.
#[derive(Debug)]
pub(crate) struct PeerAcks {
    page: Page,
    /// Held, never written, until the first ack: closing it earlier would tell the peer we
    /// are not ipcez.
    alive: Option<OwnedFd>,
}

impl PeerAcks {
    /// Takes what a peer attached to its first frame when it is exactly what an ipcez peer
    /// sends: a sealed memfd of at least a page and the write end of a pipe. Anything else
    /// is refused (and closed when dropped).
    pub(crate) fn accept(fds: Vec<OwnedFd>) -> Option<Self> {
        let [mem, alive]: [OwnedFd; 2] = fds.try_into().ok()?;
        if !is_sealed_page(mem.as_fd()) || !is_pipe_write_end(alive.as_fd()) {
            return None;
        }
        let page = Page::map(mem.as_fd()).ok()?;
        // The mapping stays; the descriptor is not needed any more.
        drop(mem);
        Some(PeerAcks {
            page,
            alive: Some(alive),
        })
    }

    /// True when the peer's reader rings doorbells (it is an ipcez of this kind or later).
    pub(crate) fn rings(&self) -> bool {
        self.page.features().load(Ordering::SeqCst) & RINGS != 0
    }

    /// Acks `n` more messages; wakes the sender only when it sleeps. True when the sender
    /// asked for a doorbell too.
    pub(crate) fn ack(&mut self, n: usize) -> bool {
        if n == 0 {
            return false;
        }
        let count = self.page.count();
        count.fetch_add(n as u32, Ordering::SeqCst);
        // The count shows the peer what we are now (it looks at the count again after an
        // end-of-file, so closing after the add is safe).
        self.alive = None;
        if self.page.waiters().load(Ordering::SeqCst) > 0 {
            // SAFETY: a valid, aligned u32 in our mapping; wakes every waiter.
            unsafe {
                libc::syscall(libc::SYS_futex, count.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
            }
        }
        // After the add: a sender that asked and then looked at the count either saw this
        // ack or is seen asking here.
        self.page.ring().load(Ordering::SeqCst) != 0
    }
}

/// A memfd of ordinary shared memory (not huge pages, whose mappings come in other sizes)
/// that cannot shrink and holds at least a page (so mapping it cannot fault).
fn is_sealed_page(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: F_GET_SEALS only reads; stat and statfs are plain data filled by the calls.
    unsafe {
        let seals = libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS);
        let mut st: libc::stat = std::mem::zeroed();
        let mut fs: libc::statfs = std::mem::zeroed();
        seals >= 0
            && seals & libc::F_SEAL_SHRINK != 0
            && libc::fstat(fd.as_raw_fd(), &mut st) == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFREG
            && st.st_size >= PAGE as libc::off_t
            && libc::fstatfs(fd.as_raw_fd(), &mut fs) == 0
            && fs.f_type == libc::TMPFS_MAGIC
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_look_reads_a_bounded_amount() {
        let (own, to_send) = channel().unwrap();
        let junk = [7u8; 4096];
        // SAFETY: `junk` is readable; the write end is non-blocking: fill the pipe.
        while unsafe { libc::write(to_send.write.as_raw_fd(), junk.as_ptr().cast(), junk.len()) }
            > 0
        {}
        assert!(!own.peer_dropped().unwrap());
        let alive = own.alive.lock().unwrap();
        let mut left: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        let rc = unsafe {
            libc::ioctl(
                alive.as_ref().unwrap().as_raw_fd(),
                libc::FIONREAD,
                &mut left,
            )
        };
        assert_eq!(rc, 0);
        assert!(
            left > 0,
            "the look stopped early instead of draining the pipe"
        );
    }

    fn memfd(flags: libc::c_uint) -> io::Result<OwnedFd> {
        // SAFETY: as in `channel`.
        let fd =
            cvt(unsafe { libc::syscall(libc::SYS_memfd_create, c"ipcez-test".as_ptr(), flags) })?;
        // SAFETY: a new descriptor we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
    }

    fn sealed(fd: &OwnedFd, size: usize) -> io::Result<()> {
        // SAFETY: plain calls on a descriptor we own.
        unsafe {
            cvt(libc::ftruncate(fd.as_raw_fd(), size as libc::off_t).into())?;
            cvt(libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK).into())?;
        }
        Ok(())
    }

    #[test]
    fn only_a_sealed_page_of_ordinary_memory_is_taken() {
        let ok = memfd(libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING).unwrap();
        sealed(&ok, PAGE).unwrap();
        assert!(is_sealed_page(ok.as_fd()));
        let unsealed = memfd(libc::MFD_CLOEXEC).unwrap();
        assert!(!is_sealed_page(unsealed.as_fd()));
        let huge = 2 * 1024 * 1024;
        match memfd(libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | libc::MFD_HUGETLB)
            .and_then(|fd| sealed(&fd, huge).map(|()| fd))
        {
            Ok(fd) => assert!(!is_sealed_page(fd.as_fd()), "huge pages are refused"),
            Err(e) => eprintln!("skipped the huge-page case: {e}"),
        }
    }
}
