//! The receiving half of a WebSocket, read by two kinds of thread in turn, like a local
//! connection (see `local::reader`):
//! - the connection's reader task on the runtime, which queues messages in the inbox and
//!   deals with everything else (pings, the peer's Close frame, errors, keepalive);
//! - on Unix, a thread blocked in `recv_blocking` (a Python thread, say), which waits on the
//!   TCP descriptor with poll(2) and drives the WebSocket stream itself, so a message needs
//!   no hop from the runtime's I/O thread. It takes messages only: anything else it hands
//!   over to the task.
//!
//! Whoever holds `state` reads. The task queues messages while it holds it, and a direct
//! reader returns one only when the inbox is empty, so messages keep the order of the wire.

use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll};

use futures_util::StreamExt;
use futures_util::task::AtomicWaker;
use tokio_tungstenite::tungstenite::Message;

use super::stream::WsSource;
use super::tcp::TcpFd;
use crate::error::WsError;
use crate::inbox::Inbox;

/// What the stream gave: a frame, an error, or its end (`None`).
pub(crate) type Item = Option<Result<Message, WsError>>;

/// What the reader task got next.
pub(crate) enum Got {
    /// A message, queued in the inbox.
    Queued,
    /// A message, but the inbox has ended (the user closed the connection).
    Unwanted,
    /// Anything but a message: a control frame, an error, or the end.
    Other(Item),
}

struct SourceState {
    /// `None` once the task took it for the closing handshake.
    source: Option<WsSource>,
    /// What a direct reader took but did not return (anything but a message, or the
    /// message after the one it returned): the next reader deals with it first.
    handed_over: Option<Item>,
}

pub(crate) struct ReadHalf {
    state: Mutex<SourceState>,
    /// The reader task's waker. A direct reader polls the stream with a waker that wakes
    /// whatever the task registered here (and the direct reader), and wakes it when the
    /// task has work or waits for `state`.
    task: Arc<AtomicWaker>,
    /// The task found `state` taken and waits for it to be let go.
    task_waits: AtomicBool,
    /// A direct reader heard from the peer since the task last looked (for keepalive).
    heard: AtomicBool,
    inbox: Arc<Inbox>,
    #[cfg_attr(not(unix), allow(dead_code))]
    fd: TcpFd,
    /// How a direct reader waiting in poll(2) is told to look again: the stream may be
    /// able to go on for reasons the socket does not show (its sending half let go of it,
    /// TLS has bytes decrypted already), or the task wants the stream back to close it.
    /// Made by the first direct read.
    #[cfg(unix)]
    kick: std::sync::OnceLock<direct::Kick>,
}

impl ReadHalf {
    pub(crate) fn new(source: WsSource, inbox: Arc<Inbox>, fd: TcpFd) -> Self {
        ReadHalf {
            state: Mutex::new(SourceState {
                source: Some(source),
                handed_over: None,
            }),
            task: Arc::new(AtomicWaker::new()),
            task_waits: AtomicBool::new(false),
            heard: AtomicBool::new(false),
            inbox,
            fd,
            #[cfg(unix)]
            kick: std::sync::OnceLock::new(),
        }
    }

    /// `state` for the task (registered to be woken when a direct reader lets go of it).
    fn lock_for_task(&self, cx: &Context<'_>) -> Option<MutexGuard<'_, SourceState>> {
        self.task.register(cx.waker());
        self.task_waits.store(true, Ordering::Relaxed);
        // Pairs with the fence in `let_go`: either the direct reader sees `task_waits`, or
        // this `try_lock` sees its unlock.
        fence(Ordering::SeqCst);
        let Some(st) = self.try_lock() else {
            #[cfg(unix)]
            if let Some(kick) = self.kick.get() {
                kick.fd.signal();
            }
            return None;
        };
        self.task_waits.store(false, Ordering::Relaxed);
        Some(st)
    }

    /// After a direct reader let go of `state`: wakes the task if it waits for it.
    #[cfg(unix)]
    fn let_go(&self) {
        fence(Ordering::SeqCst);
        if self.task_waits.swap(false, Ordering::Relaxed) {
            self.task.wake();
        }
    }

    fn try_lock(&self) -> Option<MutexGuard<'_, SourceState>> {
        match self.state.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// The reader task's next item; a message is queued before the stream is let go.
    /// Call only while the inbox has room.
    pub(crate) async fn next(&self) -> Got {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Got> {
        let Some(mut st) = self.lock_for_task(cx) else {
            return Poll::Pending;
        };
        let item = match st.handed_over.take() {
            Some(item) => item,
            None => match st.source.as_mut() {
                Some(source) => std::task::ready!(source.poll_next_unpin(cx)),
                None => None,
            },
        };
        Poll::Ready(match item {
            Some(Ok(m)) if is_message(&m) => {
                if self.inbox.push_now(into_vec(m)) {
                    Got::Queued
                } else {
                    Got::Unwanted
                }
            }
            other => Got::Other(other),
        })
    }

    /// True when nothing a direct reader took waits to be handed over. A message read ahead
    /// waits there for the reader task, woken to queue it (and so to report it, a turn
    /// later: saying "nothing" only then spares the loop that turn). False when it cannot
    /// tell: another thread reads.
    pub(crate) fn nothing_read_ahead(&self) -> bool {
        self.try_lock().is_some_and(|st| st.handed_over.is_none())
    }

    /// True (once) when a direct reader heard from the peer since the last call.
    pub(crate) fn heard(&self) -> bool {
        self.heard.swap(false, Ordering::AcqRel)
    }

    /// See `Socket::held_by_loop`.
    #[cfg(target_os = "linux")]
    pub(crate) fn held_by_loop(&self, on: bool) -> Option<std::os::fd::RawFd> {
        self.fd.held_by_loop(on)
    }

    /// Takes the stream for the closing handshake; direct readers stop reading it.
    pub(crate) async fn take_source(&self) -> Option<WsSource> {
        std::future::poll_fn(|cx| match self.lock_for_task(cx) {
            Some(mut st) => Poll::Ready(st.source.take()),
            None => Poll::Pending,
        })
        .await
    }
}

fn is_message(m: &Message) -> bool {
    matches!(m, Message::Binary(_) | Message::Text(_))
}

fn into_vec(m: Message) -> Vec<u8> {
    match m {
        Message::Text(t) => t.as_bytes().to_vec(),
        other => Vec::from(other.into_data()),
    }
}

#[cfg(unix)]
mod direct {
    use std::time::{Duration, Instant};

    use std::task::Waker;

    use futures_util::task::ArcWake;

    use super::*;
    use crate::error::SocketError;
    use crate::readiness::EventFd;
    use crate::runtime::deadline_after;
    use crate::ws::tcp::{bytes_read_directly, reading_directly};

    /// A direct reader's wake-up: a descriptor it waits on, and the waker it polls the
    /// stream with, which wakes both the task and it. (A wake-up meant for the task only
    /// would leave it asleep while it holds the stream; one meant for it only would leave
    /// the task asleep once it stops reading.)
    pub(super) struct Kick {
        pub(super) fd: Arc<EventFd>,
        waker: Waker,
    }

    struct BothWaker {
        task: Arc<AtomicWaker>,
        fd: Arc<EventFd>,
    }

    impl ArcWake for BothWaker {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.task.wake();
            arc_self.fd.signal();
        }
    }

    /// How a turn as the direct reader ended.
    enum Turn {
        Message(Vec<u8>),
        /// The time is up.
        TimedOut,
        /// The inbox has something (or ended), or the task has work: look there.
        Yield,
    }

    /// How long to wait on the inbox before trying again to become the reader.
    const RETRY: Duration = Duration::from_millis(5);

    /// How often in a row the socket may be readable while the stream reads nothing from
    /// it before the task takes over.
    const STALLS: u32 = 3;

    impl ReadHalf {
        /// A blocking take: read the stream on this thread while nobody else does,
        /// otherwise wait for the inbox. `None` waits without limit.
        pub(crate) fn recv_blocking(
            &self,
            timeout: Option<Duration>,
        ) -> Result<Option<Vec<u8>>, SocketError> {
            let kick = match self.kick.get() {
                Some(kick) => kick,
                None => match EventFd::new() {
                    Ok(fd) => {
                        let fd = Arc::new(fd);
                        let both = Arc::new(BothWaker {
                            task: self.task.clone(),
                            fd: fd.clone(),
                        });
                        let waker = futures_util::task::waker(both);
                        self.kick.get_or_init(|| Kick { fd, waker })
                    }
                    // Out of descriptors, say: wait for the reader task instead.
                    Err(_) => return self.inbox.pop_blocking(timeout),
                },
            };
            let deadline = timeout.map(deadline_after);
            let left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
            loop {
                if let Some(next) = self.inbox.try_take() {
                    return next.map(Some);
                }
                let turn = match self.try_lock() {
                    Some(mut st) => {
                        self.fd.taken_over();
                        let turn = reading_directly(|| self.read_turn(&mut st, kick, &left));
                        drop(st);
                        self.fd.hand_back();
                        self.let_go();
                        turn?
                    }
                    None => Turn::Yield,
                };
                match turn {
                    Turn::Message(m) => return Ok(Some(m)),
                    Turn::TimedOut => return Ok(None),
                    Turn::Yield => {
                        let wait = left().map_or(RETRY, |l| l.min(RETRY));
                        if let Some(m) = self.inbox.pop_blocking(Some(wait))? {
                            return Ok(Some(m));
                        }
                        if left().is_some_and(|l| l.is_zero()) {
                            return Ok(None);
                        }
                    }
                }
            }
        }

        /// One turn as the reader. The stream is polled with the kick's waker, so that when
        /// this thread stops reading, the task is woken for what comes next; the task is
        /// woken at once only when it has work (or, see `let_go`, waits for the stream).
        fn read_turn(
            &self,
            st: &mut SourceState,
            kick: &Kick,
            left: &dyn Fn() -> Option<Duration>,
        ) -> std::io::Result<Turn> {
            // Messages are only queued under this lock: an empty inbox now means none is
            // older than what this thread reads.
            if !self.inbox.is_empty() || self.inbox.has_ended() {
                return Ok(Turn::Yield);
            }
            match st.handed_over.take() {
                // Read ahead by an earlier turn: the oldest message there is.
                Some(Some(Ok(m))) if is_message(&m) => return Ok(Turn::Message(into_vec(m))),
                Some(item) => {
                    st.handed_over = Some(item);
                    self.task.wake();
                    return Ok(Turn::Yield);
                }
                None => {}
            }
            let Some(source) = st.source.as_mut() else {
                return Ok(Turn::Yield);
            };
            let mut cx = Context::from_waker(&kick.waker);
            let mut stalls = 0;
            let mut socket_readable = false;
            let mut found = None;
            loop {
                let before = bytes_read_directly();
                match source.poll_next_unpin(&mut cx) {
                    Poll::Ready(Some(Ok(Message::Pong(_) | Message::Frame(_)))) => {
                        self.heard.store(true, Ordering::Release);
                        stalls = 0;
                        continue;
                    }
                    Poll::Ready(item) if found.is_none() => {
                        if item.is_some() {
                            self.heard.store(true, Ordering::Release);
                        }
                        match item {
                            Some(Ok(m)) if is_message(&m) => {
                                // Polled once more, so that the waker is registered for
                                // what comes next (or that is read ahead).
                                found = Some(into_vec(m));
                                continue;
                            }
                            other => {
                                st.handed_over = Some(other);
                                self.task.wake();
                                return Ok(Turn::Yield);
                            }
                        }
                    }
                    Poll::Ready(item) => {
                        st.handed_over = Some(item);
                        self.task.wake();
                        return Ok(found.map_or(Turn::Yield, Turn::Message));
                    }
                    Poll::Pending if found.is_some() => {
                        return Ok(found.map_or(Turn::Yield, Turn::Message));
                    }
                    Poll::Pending => {}
                }
                // The socket said readable, yet nothing was read: something else holds the
                // stream (its sending half, say). After a few tries the task takes over.
                if socket_readable && bytes_read_directly() == before {
                    stalls += 1;
                    if stalls > STALLS {
                        self.task.wake();
                        return Ok(Turn::Yield);
                    }
                } else {
                    stalls = 0;
                }
                let wait = left().unwrap_or(Duration::from_secs(3600));
                if wait.is_zero() {
                    return Ok(Turn::TimedOut);
                }
                let ready = wait_readable(self.fd.0, kick.fd.fd(), wait)?;
                socket_readable = ready.socket;
                if ready.kicked {
                    kick.fd.drain();
                    // The task wants the stream back to close it.
                    if self.inbox.has_ended() {
                        return Ok(Turn::Yield);
                    }
                }
            }
        }
    }

    /// What poll(2) reported.
    struct Ready {
        socket: bool,
        kicked: bool,
    }

    /// Waits up to `timeout` for `socket` (data, or its end) or `kick` to be readable.
    fn wait_readable(
        socket: std::os::fd::RawFd,
        kick: std::os::fd::RawFd,
        timeout: Duration,
    ) -> std::io::Result<Ready> {
        let mut fds = [socket, kick].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // Rounded up: a wait of less than a millisecond must not become a busy loop.
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: two valid pollfds; both descriptors are open while the caller holds the
        // stream (the socket) and the `ReadHalf` (the kick).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(Ready {
                    socket: false,
                    kicked: false,
                });
            }
            return Err(e);
        }
        Ok(Ready {
            socket: fds[0].revents != 0,
            kicked: fds[1].revents != 0,
        })
    }
}
