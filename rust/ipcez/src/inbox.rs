//! The bounded queue between a connection's background reader and whoever takes messages:
//! async callers (`recv`, `message_handler`) and foreign threads (`recv_blocking`).

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::error::{PeerClosed, SocketError};
use crate::readiness::{Poller, Readiness};

/// Default bound on read-but-untaken messages per connection.
pub const DEFAULT_MAX_MESSAGES: usize = 1024;
/// Default bound on the bytes those messages hold.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Why the stream of messages ended. The first taker gets this reason; later ones get
/// "connection lost", since by then the connection is simply closed — except that a
/// WebSocket peer's close code and reason stay on every error, so no caller loses them.
#[derive(Debug, Clone)]
struct End {
    kind: io::ErrorKind,
    message: String,
    /// A WebSocket peer's close code and reason, kept for the error the first taker gets.
    close: Option<PeerClosed>,
    reported: bool,
}

#[derive(Debug, Default)]
struct State {
    messages: VecDeque<Vec<u8>>,
    bytes: usize,
    end: Option<End>,
    /// A taker holds messages of a batch it has not handed on yet (see
    /// [`Inbox::take_queued`]): they still count as waiting.
    held: bool,
    /// Ready while a message (or the end) waits: a descriptor, a poller to report to.
    readiness: Readiness,
    /// Threads asleep in [`Inbox::pop_blocking`]: a push wakes them only when there are any
    /// (a notify of std's `Condvar` is a system call even when nobody waits).
    sleepers: usize,
}

impl State {
    /// Keeps the readiness in line with the queue; call after every change.
    fn sync(&mut self) {
        let ready = self.ready();
        self.readiness.set(ready);
    }

    fn ready(&self) -> bool {
        !self.messages.is_empty() || self.held || self.end.is_some()
    }
}

/// A blocking take for a thread of its own (no timeout, so never `Ok(None)`), holding
/// the reading side of a connection only, never the connection itself.
pub(crate) type BlockingTaker = Box<dyn FnMut() -> Result<Option<Vec<u8>>, SocketError> + Send>;

#[derive(Debug)]
pub(crate) struct Inbox {
    state: Mutex<State>,
    /// Wakes foreign threads blocked in `pop_blocking`.
    ready_sync: Condvar,
    /// Wakes async takers.
    ready_async: Notify,
    /// Wakes the reader waiting for room.
    room: Notify,
    /// Wakes those waiting for the end (all at once; never a taker's wake-up).
    ended: Notify,
    max_messages: usize,
    max_bytes: usize,
    /// Closed by the user: nothing may be taken any more. Implies an end. The one record
    /// of a connection being closed.
    closed: AtomicBool,
}

impl Inbox {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        Inbox {
            state: Mutex::default(),
            ready_sync: Condvar::new(),
            ready_async: Notify::new(),
            room: Notify::new(),
            ended: Notify::new(),
            max_messages: max_messages.max(1),
            max_bytes: max_bytes.max(1),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_full(&self, s: &State) -> bool {
        s.messages.len() >= self.max_messages || s.bytes >= self.max_bytes
    }

    /// Queues a message, waiting while the queue is full. Returns false when the inbox
    /// has ended (the message is dropped: nobody can take it any more).
    #[cfg(test)]
    pub(crate) async fn push(&self, msg: Vec<u8>) -> bool {
        self.wait_room().await && self.push_now(msg)
    }

    /// Waits until the queue has room; false once the inbox has ended.
    pub(crate) async fn wait_room(&self) -> bool {
        loop {
            let room = self.room.notified();
            {
                let s = self.lock();
                if s.end.is_some() {
                    return false;
                }
                if !self.is_full(&s) {
                    return true;
                }
            }
            room.await;
        }
    }

    /// Queues a message now, even over the bound (callers check [`wait_room`] before they
    /// read, so the overshoot is at most one read's worth). False once ended.
    pub(crate) fn push_now(&self, msg: Vec<u8>) -> bool {
        self.push_reported(msg, true)
    }

    /// [`push_now`](Self::push_now) for an event loop that read the message itself: its
    /// poller is not told (the loop knows; a report would only wake it once more).
    #[cfg(target_os = "linux")]
    pub(crate) fn push_quietly(&self, msg: Vec<u8>) -> bool {
        self.push_reported(msg, false)
    }

    fn push_reported(&self, msg: Vec<u8>, report: bool) -> bool {
        let mut s = self.lock();
        if s.end.is_some() {
            return false;
        }
        s.bytes += msg.len();
        s.messages.push_back(msg);
        if report {
            s.sync();
        } else {
            let ready = s.ready();
            s.readiness.set_quietly(ready);
        }
        self.notify_ready(s);
        true
    }

    /// After a message was queued under `s`: wakes a sleeping taker of each kind.
    fn notify_ready(&self, s: MutexGuard<'_, State>) {
        let sleepers = s.sleepers > 0;
        drop(s);
        if sleepers {
            self.ready_sync.notify_one();
        }
        self.ready_async.notify_one();
    }

    /// True when a push would not have to wait (or the inbox has ended).
    pub(crate) fn has_room(&self) -> bool {
        let s = self.lock();
        s.end.is_some() || !self.is_full(&s)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().messages.is_empty()
    }

    /// No message and no end waits, and no taker holds a batch: while one does, the
    /// readiness stays up, so a message queued meanwhile reports to nobody.
    pub(crate) fn is_idle(&self) -> bool {
        let s = self.lock();
        s.messages.is_empty() && s.end.is_none() && !s.held && !self.is_closed()
    }

    /// The next message, or the end's error, without waiting; `None` when there is neither.
    #[cfg_attr(not(unix), allow(dead_code))] // the direct reads are Unix-only
    pub(crate) fn try_take(&self) -> Option<Result<Vec<u8>, SocketError>> {
        self.take(&mut self.lock())
    }

    /// The next message without waiting, never the end (which stays for the next taker,
    /// unreported).
    pub(crate) fn try_take_message(&self) -> Option<Vec<u8>> {
        let mut s = self.lock();
        if s.messages.is_empty() {
            return None;
        }
        self.take(&mut s).and_then(Result::ok)
    }

    /// Ends the stream (first reason wins); queued messages stay takeable.
    pub(crate) fn end(&self, error: &io::Error) {
        let mut s = self.lock();
        if s.end.is_none() {
            s.end = Some(End {
                kind: error.kind(),
                message: error.to_string(),
                close: error
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<PeerClosed>())
                    .cloned(),
                reported: false,
            });
        }
        s.sync();
        drop(s);
        self.ready_sync.notify_all();
        self.ready_async.notify_waiters();
        self.ready_async.notify_one();
        self.room.notify_waiters();
        self.ended.notify_waiters();
    }

    /// The WebSocket peer's close code and reason, once its Close frame ended the stream.
    pub(crate) fn peer_close(&self) -> Option<PeerClosed> {
        self.lock().end.as_ref().and_then(|e| e.close.clone())
    }

    /// The error for a call on an ended connection: "connection lost", with the peer's
    /// close code and reason when a WebSocket peer's Close frame ended it.
    pub(crate) fn lost(&self) -> io::Error {
        self.peer_close()
            .map_or_else(crate::error::connection_lost, PeerClosed::into_io)
    }

    /// Waits until the stream has ended, at most `limit`.
    pub(crate) async fn wait_end(&self, limit: Duration) {
        let ended = self.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable(); // registered before the check: an end in between wakes it
        if self.has_ended() {
            return;
        }
        let _ = tokio::time::timeout(limit, ended).await;
    }

    /// Ends the stream and drops what was queued (the user closed the socket). True the
    /// first time only.
    pub(crate) fn close(&self) -> bool {
        if self.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.end(&crate::error::connection_lost());
        let mut s = self.lock();
        s.messages.clear();
        s.bytes = 0;
        s.held = false;
        s.sync();
        true
    }

    /// Takes queued messages, oldest first, never the end and never waiting, while `keep`
    /// accepts them (it gets each one and says whether it took it; the first it refuses
    /// stays first in line). When it took any, the taker counts as holding messages, which
    /// keeps the readiness up until [`set_held`](Self::set_held)`(false)`: a batch handed to
    /// a caller still waits to be taken as far as `fileno` and pollers can tell.
    pub(crate) fn take_queued(&self, mut keep: impl FnMut(&[u8]) -> bool) -> usize {
        let mut s = self.lock();
        let mut taken = 0;
        while let Some(front) = s.messages.front() {
            if !keep(front) {
                break;
            }
            let msg = s.messages.pop_front().unwrap_or_default();
            s.bytes -= msg.len();
            crate::buffers::reuse_buffer(msg);
            taken += 1;
        }
        if taken > 0 {
            s.held = true;
            s.sync();
            drop(s);
            self.room.notify_one();
        }
        taken
    }

    /// Whether a taker holds messages it has not handed on yet (they count as waiting).
    pub(crate) fn set_held(&self, held: bool) {
        let mut s = self.lock();
        s.held = held && !self.is_closed();
        s.sync();
    }

    /// A descriptor that is readable while a message or the end of the stream waits to be
    /// taken (made on first call; owned by the inbox).
    #[cfg(unix)]
    pub(crate) fn fileno(&self) -> io::Result<std::os::fd::RawFd> {
        self.lock().readiness.fileno()
    }

    /// Reports to `poller` as `token` whenever the queue goes from empty to not empty (or
    /// the stream ends), and at once if a message already waits.
    pub(crate) fn watch(&self, poller: &Poller, token: u64) {
        self.lock().readiness.watch(poller, token);
    }

    /// Tells the poller watching this inbox, if any, to look (something other than a
    /// message came: a doorbell, see `local::doorbell`).
    #[cfg(target_os = "linux")]
    pub(crate) fn nudge(&self) {
        self.lock().readiness.nudge();
    }

    /// Puts a message back at the head of the queue (it was taken but not delivered).
    pub(crate) fn unget(&self, msg: Vec<u8>) {
        let mut s = self.lock();
        s.bytes += msg.len();
        s.messages.push_front(msg);
        s.sync();
        self.notify_ready(s);
    }

    /// True once the connection ended: lost, or closed by the user.
    pub(crate) fn has_ended(&self) -> bool {
        self.is_closed() || self.lock().end.is_some()
    }

    /// True once the user closed the connection.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn take(&self, s: &mut State) -> Option<Result<Vec<u8>, SocketError>> {
        if let Some(msg) = s.messages.pop_front() {
            s.bytes -= msg.len();
            s.sync();
            self.room.notify_one();
            return Some(Ok(msg));
        }
        s.end.as_mut().map(|e| Err(to_error(e)))
    }

    /// The next message; after the end, the end's error (every time).
    pub(crate) async fn pop(&self) -> Result<Vec<u8>, SocketError> {
        loop {
            let ready = self.ready_async.notified();
            if let Some(r) = self.take(&mut self.lock()) {
                return r;
            }
            ready.await;
        }
    }

    /// Like [`pop`](Self::pop) for threads outside the runtime; `Ok(None)` when `timeout`
    /// passes first (`None` waits without limit).
    pub(crate) fn pop_blocking(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, SocketError> {
        let deadline = timeout.map(crate::runtime::deadline_after);
        let mut s = self.lock();
        loop {
            if let Some(r) = self.take(&mut s) {
                return r.map(Some);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return Ok(None);
            }
            s.sleepers += 1;
            s = match left {
                None => self.ready_sync.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    self.ready_sync
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            s.sleepers -= 1;
        }
    }
}

fn to_error(e: &mut End) -> SocketError {
    if let Some(close) = &e.close {
        return SocketError::Io(io::Error::new(e.kind, close.clone()));
    }
    if std::mem::replace(&mut e.reported, true) {
        return crate::error::connection_lost().into();
    }
    SocketError::Io(io::Error::new(e.kind, e.message.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn full_queue_holds_the_reader_until_a_message_is_taken() {
        let inbox = Arc::new(Inbox::new(2, 1 << 20));
        assert!(inbox.push(b"1".to_vec()).await);
        assert!(inbox.push(b"2".to_vec()).await);
        let pusher = {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.push(b"3".to_vec()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !pusher.is_finished(),
            "push must wait while the queue is full"
        );
        assert_eq!(inbox.pop().await.unwrap(), b"1");
        assert!(pusher.await.unwrap());
        assert_eq!(
            inbox.pop_blocking(Some(Duration::ZERO)).unwrap().unwrap(),
            b"2"
        );
        assert_eq!(inbox.pop().await.unwrap(), b"3");
    }

    #[test]
    fn end_is_reported_after_queued_messages_and_every_time() {
        let inbox = Inbox::new(8, 1 << 20);
        futures_util::FutureExt::now_or_never(inbox.push(b"x".to_vec())).unwrap();
        inbox.end(&crate::error::connection_lost());
        assert_eq!(inbox.pop_blocking(None).unwrap().unwrap(), b"x");
        for _ in 0..2 {
            let e = inbox.pop_blocking(None).unwrap_err();
            assert!(
                matches!(e, SocketError::Io(ref io) if io.kind() == io::ErrorKind::ConnectionReset)
            );
        }
    }

    #[cfg(unix)]
    fn readable(fd: std::os::fd::RawFd) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a zero timeout only looks.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    }

    #[cfg(unix)]
    #[test]
    fn fileno_is_readable_exactly_while_something_waits() {
        let inbox = Inbox::new(8, 1 << 20);
        inbox.push_now(b"early".to_vec());
        let fd = inbox.fileno().unwrap();
        assert!(readable(fd), "a message queued before fileno counts");
        assert_eq!(inbox.fileno().unwrap(), fd, "one descriptor per inbox");
        inbox.push_now(b"2".to_vec());
        assert_eq!(inbox.try_take().unwrap().unwrap(), b"early");
        assert!(readable(fd), "one message still waits");
        let last = inbox.try_take().unwrap().unwrap();
        assert!(!readable(fd), "drained once the queue is empty");
        inbox.unget(last);
        assert!(readable(fd), "a message put back waits again");
        assert_eq!(inbox.try_take().unwrap().unwrap(), b"2");
        assert!(!readable(fd));
        inbox.end(&crate::error::connection_lost());
        assert!(readable(fd), "the end is something to take too");
        assert!(inbox.try_take().unwrap().is_err());
        assert!(readable(fd), "and stays so");
    }

    #[test]
    fn unget_puts_the_message_first_in_line() {
        let inbox = Inbox::new(8, 1 << 20);
        inbox.push_now(b"1".to_vec());
        inbox.push_now(b"2".to_vec());
        let first = inbox.try_take().unwrap().unwrap();
        inbox.unget(first);
        assert_eq!(inbox.try_take().unwrap().unwrap(), b"1");
        assert_eq!(inbox.try_take().unwrap().unwrap(), b"2");
    }

    #[test]
    fn blocking_pop_times_out() {
        let inbox = Inbox::new(8, 1 << 20);
        let t = Instant::now();
        assert!(
            inbox
                .pop_blocking(Some(Duration::from_millis(30)))
                .unwrap()
                .is_none()
        );
        assert!(t.elapsed() >= Duration::from_millis(30));
    }
}
