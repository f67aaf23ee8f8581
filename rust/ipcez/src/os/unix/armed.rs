//! One-shot readiness (Linux): the runtime hears of a connection's socket only when one of
//! its tasks asked since the last time.
//!
//! tokio keeps every registered socket armed, edge-triggered, for reading and writing. So
//! each message that arrives wakes the runtime's thread even while a caller's thread reads
//! the socket itself with poll(2) (see `local::reader`), and each message the peer reads
//! from us wakes it again for room to write: two wake-ups of a thread with nothing to do,
//! per message, on a path that exists to save one. tokio offers no one-shot interest, so
//! the sockets of ipcez's own runtime sit in an epoll instance of their own instead, with
//! `EPOLLONESHOT`: a task arms what it is about to wait for, the first event disarms the
//! socket, and a thread that gives the reading role back arms it for the background
//! reader (one `epoll_ctl`, no wake-up unless bytes are waiting). That epoll instance is
//! registered with the runtime like any descriptor, and one task hands its events on.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::runtime::ProcessEpoch;

/// Interest in reading (with the peer's hang-up, which a read reports as end-of-stream).
const READ: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
const WRITE: u32 = libc::EPOLLOUT as u32;
/// How long a socket may be held by an event loop before the watchdog, finding it
/// readable, has the background reader read it after all (the loop is blocked: its acks
/// must not wait). The watchdog looks every `HOLD_UNREAD / 2`, so that is a bound of
/// 150 ms. Holding the socket anew, and each read of it, start the count again.
const HOLD_UNREAD: std::time::Duration = std::time::Duration::from_millis(100);

/// Reported whatever was asked: both kinds of waiter must look.
const FAILED: u32 = (libc::EPOLLERR | libc::EPOLLHUP) as u32;

/// The epoll instance of one process's runtime and the sockets in it.
struct Reactor {
    epoll: RawFd,
    slots: Mutex<HashMap<u64, Weak<Slot>>>,
    next_key: AtomicU64,
    /// The watchdog of held sockets runs (see `watch_holds`), and what wakes it.
    watching: AtomicBool,
    holds_began: Notify,
    /// The sockets held by an event loop (and some that were: the watchdog prunes them).
    /// Lock order: this list, then a slot's `held`, never the other way.
    held: Mutex<Vec<Weak<Slot>>>,
}

thread_local! {
    /// The sockets this thread's event loop holds: a blocking wait of this thread lets go
    /// of them first (see [`let_go_here`]).
    static HELD_HERE: std::cell::RefCell<Vec<Weak<Slot>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// This thread is about to block in a call of the library: the sockets its event loop
/// holds go back to the background reader, which reads and acks what comes meanwhile
/// (without this, a blocking send on the loop's thread to a peer on the same loop would
/// wait for the watchdog for its ack).
pub(crate) fn let_go_here() {
    let held = HELD_HERE.with(|h| std::mem::take(&mut *h.borrow_mut()));
    for slot in held.iter().filter_map(Weak::upgrade) {
        let _ = slot.release(); // a failure has woken the background reader
    }
}

/// True when this thread's event loop holds a socket (it reads what comes itself).
pub(crate) fn holds_here() -> bool {
    HELD_HERE.with(|h| !h.borrow().is_empty())
}

/// One socket in the reactor.
#[derive(Debug)]
struct Slot {
    reactor: &'static Reactor,
    fd: RawFd,
    key: u64,
    read: Notify,
    write: Notify,
    /// The same events for waiters that poll (`poll_read_ready`): the last waker of each
    /// kind, and whether its event came since it was last taken.
    read_waker: Polled,
    write_waker: Polled,
    /// What the tasks asked for since it was last reported (the kernel's armed set);
    /// `None` once the socket left: its descriptor number may be another socket's by now.
    wanted: Mutex<Option<u32>>,
    /// An event loop reads the socket itself (see [`Registration::hold`]): a read arming
    /// waits, noted in `deferred`, until it lets go.
    held: Mutex<Held>,
    /// In the reactor's list of held sockets; changed only under that list's lock, so
    /// that a socket held and let go again and again is listed once.
    listed: AtomicBool,
}

#[derive(Debug, Default)]
struct Held {
    on: bool,
    deferred: bool,
    since: Option<std::time::Instant>,
}

/// An event for a waiter that polls.
#[derive(Debug, Default)]
struct Polled {
    waker: AtomicWaker,
    came: AtomicBool,
}

impl Polled {
    fn fire(&self) {
        self.came.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready when the event came since the last call; otherwise `cx` is woken by the next
    /// one, after `arm` (which may report at once).
    fn poll(&self, cx: &Context<'_>, arm: impl FnOnce() -> io::Result<()>) -> Poll<io::Result<()>> {
        self.waker.register(cx.waker());
        if self.came.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Ok(()));
        }
        arm()?;
        if self.came.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

/// A socket's place in the reactor; leaves it when dropped (before the socket closes).
#[derive(Debug)]
pub(crate) struct Registration {
    slot: Arc<Slot>,
    /// A forked child leaves the parent's registration alone (the epoll instance is shared).
    epoch: ProcessEpoch,
}

/// The reactor of this process, or NULL; one inherited through `fork()` belongs to the
/// parent (its epoll instance is shared with it) and is leaked, like the runtime.
static REACTOR: AtomicPtr<(ProcessEpoch, Reactor)> = AtomicPtr::new(std::ptr::null_mut());

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Makes this process's reactor if it is not made yet (a failure shows again on use).
pub(crate) fn prepare() {
    let _ = reactor();
}

/// The reactor of this process, started on ipcez's runtime on first use.
fn reactor() -> io::Result<&'static Reactor> {
    let epoch = ProcessEpoch::current();
    loop {
        let seen = REACTOR.load(Ordering::Acquire);
        // SAFETY: a non-NULL pointer came from Box::into_raw below and is never freed.
        if let Some((made_in, reactor)) = unsafe { seen.as_ref() }
            && *made_in == epoch
        {
            return Ok(reactor);
        }
        // SAFETY: plain call; a non-negative result is a new descriptor we own.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: as above.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // Watched before it is published: a reactor nobody waits on would strand every
        // socket put in it.
        let handle = crate::runtime::runtime().handle();
        let watched = {
            let _in_runtime = handle.enter();
            // SAFETY: the AsyncFd owns the descriptor, so it stays open while registered.
            unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?
        };
        let fresh = Box::into_raw(Box::new((
            epoch,
            Reactor {
                epoll: fd,
                slots: Mutex::new(HashMap::new()),
                next_key: AtomicU64::new(1),
                watching: AtomicBool::new(false),
                holds_began: Notify::new(),
                held: Mutex::new(Vec::new()),
            },
        )));
        match REACTOR.compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                // SAFETY: just published, never freed.
                let reactor: &'static Reactor = unsafe { &(*fresh).1 };
                handle.spawn(reactor.dispatch(watched));
                handle.spawn(reactor.watch_holds());
                return Ok(reactor);
            }
            Err(_) => {
                // Another thread won; ours was never used (`watched` closes its descriptor).
                // SAFETY: `fresh` was not published, so this is its only owner.
                drop(unsafe { Box::from_raw(fresh) });
            }
        }
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("epoll", &self.epoll)
            .finish_non_exhaustive()
    }
}

impl Reactor {
    fn slots(&self) -> MutexGuard<'_, HashMap<u64, Weak<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands the events of the epoll instance to the tasks waiting for them, for the life
    /// of the process.
    async fn dispatch(&'static self, watched: AsyncFd<OwnedFd>) {
        const BATCH: usize = 64;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; BATCH];
        loop {
            let Ok(mut ready) = watched.readable().await else {
                return;
            };
            loop {
                // SAFETY: `events` has room for BATCH entries; a zero timeout never blocks.
                let n = unsafe {
                    libc::epoll_wait(self.epoll, events.as_mut_ptr(), BATCH as libc::c_int, 0)
                };
                let n = usize::try_from(n).unwrap_or(0);
                for e in &events[..n] {
                    let slot = self.slots().get(&{ e.u64 }).and_then(Weak::upgrade);
                    if let Some(slot) = slot {
                        slot.fired(e.events);
                    }
                }
                if n < BATCH {
                    break;
                }
            }
            ready.clear_ready();
        }
    }

    /// The watchdog of held sockets: while any socket is held by an event loop, every
    /// `HOLD_UNREAD` it gives the background reader back each one that has been held that
    /// long and is readable (its loop is blocked, and the acks of what came must not wait
    /// for it). Sleeps while nothing is held, so a busy loop's holds cost no wake-ups but
    /// this one every `HOLD_UNREAD`.
    async fn watch_holds(&'static self) {
        loop {
            self.holds_began.notified().await;
            loop {
                tokio::time::sleep(HOLD_UNREAD / 2).await;
                if self.check_holds() {
                    continue;
                }
                self.watching.store(false, Ordering::SeqCst);
                // A hold that began meanwhile saw `watching` still set: look once more.
                if !self.check_holds() || self.watching.swap(true, Ordering::SeqCst) {
                    break;
                }
            }
        }
    }

    /// Releases the held sockets that have stayed readable and unread too long; true while
    /// any socket is still held. One poll(2) for all of those held long enough.
    fn check_holds(&self) -> bool {
        let held: Vec<Arc<Slot>> = {
            let mut list = self.held.lock().unwrap_or_else(|p| p.into_inner());
            list.retain(|w| {
                w.upgrade().is_some_and(|s| {
                    let on = s.held().on;
                    if !on {
                        s.listed.store(false, Ordering::Relaxed);
                    }
                    on
                })
            });
            list.iter().filter_map(Weak::upgrade).collect()
        };
        let due: Vec<&Arc<Slot>> = held
            .iter()
            .filter(|s| s.held().since.is_some_and(|t| t.elapsed() >= HOLD_UNREAD))
            .collect();
        let mut fds: Vec<libc::pollfd> = due
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd,
                events: libc::POLLIN | libc::POLLRDHUP,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of its length. A registration dropped meanwhile
        // closed its descriptor (POLLNVAL) or the number is reused: the answer is then wrong
        // but harmless, as `arm` does nothing for a slot that left.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        if n > 0 {
            for (slot, p) in due.iter().zip(&fds) {
                if p.revents != 0 && slot.release_unread() {
                    log::debug!(
                        "an event loop left a socket unread for {HOLD_UNREAD:?}: read in the \
                         background"
                    );
                }
            }
        }
        held.iter().any(|s| s.held().on)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: key };
        // SAFETY: `ev` is a valid event for the call; the descriptors are open.
        cvt(unsafe { libc::epoll_ctl(self.epoll, op, fd, &mut ev) }).map(drop)
    }
}

impl Registration {
    /// Adds `fd` to this process's reactor, disarmed. The caller keeps `fd` open until the
    /// registration is dropped.
    pub(crate) fn new(fd: RawFd) -> io::Result<Self> {
        let reactor = reactor()?;
        let key = reactor.next_key.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            reactor,
            fd,
            key,
            read: Notify::new(),
            write: Notify::new(),
            read_waker: Polled::default(),
            write_waker: Polled::default(),
            wanted: Mutex::new(Some(0)),
            held: Mutex::default(),
            listed: AtomicBool::new(false),
        });
        reactor.slots().insert(key, Arc::downgrade(&slot));
        let added = reactor.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLONESHOT as u32, key);
        if let Err(e) = added {
            reactor.slots().remove(&key);
            return Err(e);
        }
        Ok(Registration {
            slot,
            epoch: ProcessEpoch::current(),
        })
    }

    /// Arms the socket for reading: the next bytes (or the end) wake [`readable`].
    pub(crate) fn arm_read(&self) -> io::Result<()> {
        self.slot.arm(READ)
    }

    /// Takes back an arming for reading not reported yet: a thread reads the socket
    /// itself now (it arms again when it is done).
    pub(crate) fn disarm_read(&self) -> io::Result<()> {
        self.slot.disarm(READ)
    }

    /// An event loop watches the socket and reads it itself from now on: arming for
    /// reading (the background reader's, a hand-back's) waits until [`release`], or until
    /// the watchdog finds the socket readable and neither held anew nor read for
    /// `HOLD_UNREAD`, or until this thread blocks in the library ([`let_go_here`]). What is
    /// armed now is taken back.
    pub(crate) fn hold(&self) -> io::Result<()> {
        let reactor = self.slot.reactor;
        HELD_HERE.with(|h| {
            let mut h = h.borrow_mut();
            if !h
                .iter()
                .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.slot)))
            {
                h.push(Arc::downgrade(&self.slot));
            }
        });
        let mut held = self.slot.held();
        let newly = !held.on;
        held.on = true;
        held.since = Some(std::time::Instant::now());
        let was = matches!(*self.slot.wanted(), Some(w) if w & READ != 0);
        held.deferred |= was;
        // Taken back under the lock: a release meanwhile would let a reader arm, and this
        // would take that arming back with nobody left to read.
        let unarmed = self.slot.unarm(READ);
        drop(held);
        // Listed for the watchdog once the slot's lock is let go (the watchdog takes the
        // list's lock, then each slot's), and after `on` is set (it prunes what is not on).
        if newly {
            let mut list = reactor.held.lock().unwrap_or_else(|p| p.into_inner());
            if !self.slot.listed.swap(true, Ordering::Relaxed) {
                list.push(Arc::downgrade(&self.slot));
            }
        }
        if !reactor.watching.swap(true, Ordering::SeqCst) {
            reactor.holds_began.notify_one();
        }
        unarmed
    }

    /// True while an event loop holds the socket (not let go, nor handed back by the
    /// watchdog).
    pub(crate) fn is_held(&self) -> bool {
        self.slot.held().on
    }

    /// True while the event loop of the calling thread holds the socket.
    pub(crate) fn is_held_here(&self) -> bool {
        let mine = HELD_HERE.with(|h| {
            (h.borrow().iter()).any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.slot)))
        });
        mine && self.is_held()
    }

    /// The event loop stopped watching: a read arming held back is made now.
    pub(crate) fn release(&self) -> io::Result<()> {
        HELD_HERE.with(|h| {
            h.borrow_mut()
                .retain(|w| !std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.slot)))
        });
        self.slot.release()
    }

    /// Waits until the socket may be readable: arms it, then waits.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        let woken = self.slot.read.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        self.slot.arm(READ)?;
        woken.await;
        Ok(())
    }

    /// Waits for the event of an arming made elsewhere (see [`arm_read`](Self::arm_read)).
    pub(crate) async fn armed_elsewhere(&self) {
        self.slot.read.notified().await
    }

    /// [`readable`](Self::readable) for a caller that polls: `Ready` when the socket may be
    /// readable; otherwise it is armed and `cx` woken by its event.
    pub(crate) fn poll_read_ready(&self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        self.slot.read_waker.poll(cx, || self.slot.arm(READ))
    }

    /// [`writable`](Self::writable) for a caller that polls.
    pub(crate) fn poll_write_ready(&self, cx: &Context<'_>) -> Poll<io::Result<()>> {
        self.slot.write_waker.poll(cx, || self.slot.arm(WRITE))
    }

    /// Waits until the socket may have room to write.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        let woken = self.slot.write.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        self.slot.arm(WRITE)?;
        woken.await;
        Ok(())
    }
}

impl Slot {
    fn wanted(&self) -> MutexGuard<'_, Option<u32>> {
        self.wanted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends a hold: a read arming held back is made now.
    fn release(&self) -> io::Result<()> {
        let mut held = self.held();
        held.on = false;
        let deferred = std::mem::take(&mut held.deferred);
        drop(held);
        if deferred && let Err(e) = self.arm(READ) {
            self.read.notify_one(); // the background reader sees the failure when it reads
            return Err(e);
        }
        Ok(())
    }

    /// The watchdog's release of a socket readable and unread since it was held long
    /// enough: the background reader reads it. False when the hold ended meanwhile.
    fn release_unread(&self) -> bool {
        let mut held = self.held();
        if !held.on || held.since.is_none_or(|t| t.elapsed() < HOLD_UNREAD) {
            return false;
        }
        held.on = false;
        held.deferred = false;
        drop(held);
        // Whoever of the background reader's waits is pending hears of it.
        if self.arm(READ).is_err() {
            self.read.notify_one();
        }
        true
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arm(&self, mut interest: u32) -> io::Result<()> {
        // Kept until armed: a `hold` meanwhile finds the arming and takes it back.
        let mut held = (interest & READ != 0).then(|| self.held());
        if let Some(held) = held.as_mut().filter(|h| h.on) {
            held.deferred = true;
            interest &= !READ;
            if interest == 0 {
                return Ok(());
            }
        }
        let mut guard = self.wanted();
        let Some(wanted) = guard.as_mut() else {
            return Ok(()); // left (only a registration arms, and it is alive)
        };
        *wanted |= interest;
        let events = *wanted | libc::EPOLLONESHOT as u32;
        self.reactor
            .ctl(libc::EPOLL_CTL_MOD, self.fd, events, self.key)
    }

    fn disarm(&self, interest: u32) -> io::Result<()> {
        if interest & READ != 0 {
            let mut held = self.held();
            held.deferred = false;
            // A thread reads the held socket: the watchdog counts "unread" from here, so
            // a loop that keeps reading need not hold it anew before each wait.
            if held.on {
                held.since = Some(std::time::Instant::now());
            }
        }
        self.unarm(interest)
    }

    /// Takes `interest` out of the kernel's armed set.
    fn unarm(&self, interest: u32) -> io::Result<()> {
        let mut guard = self.wanted();
        let Some(wanted) = guard.as_mut() else {
            return Ok(());
        };
        if *wanted & interest == 0 {
            return Ok(());
        }
        *wanted &= !interest;
        let events = *wanted | libc::EPOLLONESHOT as u32;
        self.reactor
            .ctl(libc::EPOLL_CTL_MOD, self.fd, events, self.key)
    }

    /// The socket reported `events` and is disarmed: wake whoever waited for them, and arm
    /// again what is still wanted but did not come.
    fn fired(&self, events: u32) {
        let mut guard = self.wanted();
        // Reported before the socket left, taken after: nobody waits, and the descriptor
        // number may be a new socket's, whose arming must not be touched.
        let Some(wanted) = guard.as_mut() else {
            return;
        };
        let failed = events & FAILED != 0;
        let read = failed || events & READ != 0;
        let write = failed || events & WRITE != 0;
        let mut rest = *wanted;
        if read {
            rest &= !READ;
        }
        if write {
            rest &= !WRITE;
        }
        *wanted = rest;
        if rest != 0 {
            let _ = self.reactor.ctl(
                libc::EPOLL_CTL_MOD,
                self.fd,
                rest | libc::EPOLLONESHOT as u32,
                self.key,
            );
        }
        drop(guard);
        if read {
            self.read.notify_one();
            self.read_waker.fire();
        }
        if write {
            self.write.notify_one();
            self.write_waker.fire();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.epoch.is_current() {
            let reactor = self.slot.reactor;
            reactor.slots().remove(&self.slot.key);
            // Under the lock: an event the dispatcher took already finds the slot left.
            let mut wanted = self.slot.wanted();
            *wanted = None;
            let _ = reactor.ctl(libc::EPOLL_CTL_DEL, self.slot.fd, 0, self.slot.key);
        }
    }
}

impl AsRawFd for Registration {
    fn as_raw_fd(&self) -> RawFd {
        self.slot.fd
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::*;

    fn within<F: std::future::Future>(ms: u64, f: F) -> Option<F::Output> {
        let handle = crate::runtime::runtime().handle();
        handle.block_on(async {
            tokio::time::timeout(Duration::from_millis(ms), f)
                .await
                .ok()
        })
    }

    #[test]
    fn an_event_comes_once_per_arming_and_never_while_disarmed() {
        let (mut ours, mut peer) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let reg = Registration::new(ours.as_raw_fd()).unwrap();
        assert!(within(50, reg.readable()).is_none(), "nothing to read yet");
        peer.write_all(b"x").unwrap();
        assert!(
            within(5000, reg.readable()).is_some(),
            "armed: the byte wakes it"
        );
        // Armed for the background reader, then taken back by a thread reading itself: the
        // next byte wakes nobody here.
        let mut b = [0; 8];
        assert_eq!(ours.read(&mut b).unwrap(), 1);
        // The waits above armed it twice while the byte sat there: the second event may
        // have left a wake-up behind (the reader tolerates those, as it reads without
        // blocking). Let it come now, so that only the arming below is under test.
        let _ = within(100, reg.armed_elsewhere());
        reg.arm_read().unwrap();
        reg.disarm_read().unwrap();
        peer.write_all(b"y").unwrap();
        assert!(
            within(100, reg.armed_elsewhere()).is_none(),
            "disarmed, yet woken"
        );
        // Handed back with a byte already waiting: the arming itself reports it.
        reg.arm_read().unwrap();
        assert!(within(5000, reg.armed_elsewhere()).is_some());
        // A hang-up wakes a reader too.
        assert_eq!(ours.read(&mut b).unwrap(), 1);
        drop(peer);
        assert!(within(5000, reg.readable()).is_some());
    }

    /// Holds taken and let go on one thread while the watchdog looks on another: the two
    /// take the same two locks, and must never wait for each other.
    #[test]
    fn holding_and_the_watchdog_never_wait_for_each_other() {
        let (ours, _peer) = UnixStream::pair().unwrap();
        let reg = Arc::new(Registration::new(ours.as_raw_fd()).unwrap());
        let reactor = reactor().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let holder = {
            let (reg, done) = (reg.clone(), done.clone());
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    reg.hold().unwrap();
                    reg.release().unwrap();
                }
                let _ = done.send(());
            })
        };
        let watchdog = std::thread::spawn(move || {
            for _ in 0..20_000 {
                reactor.check_holds();
            }
            let _ = done.send(());
        });
        for _ in 0..2 {
            finished
                .recv_timeout(Duration::from_secs(30))
                .expect("a hold and the watchdog deadlocked");
        }
        holder.join().unwrap();
        watchdog.join().unwrap();
    }

    /// A loop holds and lets go once per message: its socket is listed for the watchdog
    /// once, however many times that happens between two looks.
    #[test]
    fn a_socket_held_again_and_again_is_listed_once() {
        let (ours, _peer) = UnixStream::pair().unwrap();
        let reg = Registration::new(ours.as_raw_fd()).unwrap();
        for _ in 0..1000 {
            reg.hold().unwrap();
            reg.release().unwrap();
        }
        reg.hold().unwrap();
        let listed = reg
            .slot
            .reactor
            .held
            .lock()
            .unwrap()
            .iter()
            .filter(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&reg.slot)))
            .count();
        assert_eq!(listed, 1);
        reg.release().unwrap();
    }

    #[test]
    fn writers_wake_when_room_comes_back() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let reg = Registration::new(ours.as_raw_fd()).unwrap();
        let chunk = [0u8; 65536];
        while (&ours).write(&chunk).is_ok() {}
        assert!(within(50, reg.writable()).is_none(), "full: no room yet");
        let mut sink = vec![0u8; 1 << 20];
        let _ = peer.read(&mut sink).unwrap();
        assert!(within(5000, reg.writable()).is_some());
    }

    /// The dispatcher may have taken a socket's slot from an event just as the socket
    /// leaves the reactor and closes; a new socket given the same descriptor number must
    /// not get the old slot's arming (its events would go to a key nobody has).
    #[test]
    fn a_late_event_for_a_closed_socket_leaves_its_descriptor_number_alone() {
        let rt = crate::runtime::runtime();
        let (old, _old_peer) = UnixStream::pair().expect("socketpair");
        let fd = old.as_raw_fd();
        let gone = Registration::new(fd).expect("register");
        // What the dispatcher holds: the slot of an event that reported room to write
        // while reading was wanted too.
        let late = gone.slot.clone();
        *late.wanted() = Some(READ | WRITE);
        drop(gone);
        drop(old);
        // A new socket on the same descriptor number, registered and armed for reading.
        let (new, mut new_peer) = UnixStream::pair().expect("socketpair");
        let new = std::os::fd::OwnedFd::from(new);
        let reused = if new.as_raw_fd() == fd {
            new
        } else {
            // SAFETY: `fd` was closed above; dup2 puts the new socket there, ours to own.
            assert_eq!(unsafe { libc::dup2(new.as_raw_fd(), fd) }, fd);
            unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
        };
        let registration = Registration::new(reused.as_raw_fd()).expect("register");
        registration.arm_read().expect("arm");
        late.fired(WRITE);
        new_peer.write_all(b"x").expect("peer write");
        let woken = rt.block_on(async {
            let waited = registration.armed_elsewhere();
            tokio::time::timeout(Duration::from_secs(5), waited).await
        });
        assert!(woken.is_ok(), "the new socket's reader was never woken");
        drop(registration);
    }
}
