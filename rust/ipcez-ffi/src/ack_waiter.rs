//! Waiting for acks on behalf of an event loop.
//!
//! A named semaphore or an ack counter cannot be handed to `epoll`, so a few native
//! threads (never more than [`THREADS`], shared by every socket of the process) wait for
//! the acks of sends that an event loop started, and tell the loop through the socket's
//! poller. No Python thread and no GIL are involved on that path.
//!
//! Where the peer rings doorbells (Linux, two ipcez endpoints: see `Socket::ack_doorbells`)
//! the loop hears of its acks on the socket itself and looks at them in
//! [`AckWaits::take`]; the threads then come in only after [`DOORBELL_GRACE`], for what
//! is still expected by then (a doorbell that could not be written: the socket was full).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipcez::{Poller, SentMark, Socket, SocketError};

use crate::per_process::PerProcess;

/// The ack-waiting threads of the process.
const THREADS: usize = 2;
/// Longest single wait on one socket, so that sockets take turns on the threads.
const SLICE: Duration = Duration::from_millis(20);
/// With doorbells, how long the threads leave a socket's acks to them.
const DOORBELL_GRACE: Duration = Duration::from_millis(20);
/// A thread that wakes for a job also serves those due within this much after it: with
/// doorbells every socket has a job every 20 ms, and one wake-up per job was a futex call
/// and two context switches each (coming up to 5 ms early only looks at the acks sooner).
const COALESCE: Duration = Duration::from_millis(5);

/// Acks one socket waits for, and what became of them since the loop last looked.
#[derive(Default)]
pub(crate) struct AckWaits {
    state: Mutex<WaitState>,
    /// The loop let go of the socket: its doorbells may not be read, so the threads look
    /// now rather than after the grace.
    hurry: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct WaitState {
    /// The deadline of each ack still expected and the message it is for, oldest first.
    expected: VecDeque<(Instant, SentMark)>,
    acked: usize,
    timed_out: usize,
    ended: Option<SocketError>,
    /// On the threads' queue (or being waited on) now.
    queued: bool,
    /// The peer rings doorbells for these acks (asked while any is expected).
    doorbells: bool,
    /// Where to report.
    poller: Option<(Poller, u64)>,
}

/// What became of the expected acks since the last look.
pub(crate) struct Progress {
    pub(crate) acked: usize,
    pub(crate) timed_out: usize,
    pub(crate) ended: Option<SocketError>,
}

struct Job {
    socket: Socket,
    waits: Arc<AckWaits>,
    /// Not waited on before then (the doorbells' grace).
    not_before: Instant,
}

#[derive(Default)]
struct Queue {
    jobs: Mutex<Jobs>,
    ready: Condvar,
}

#[derive(Default)]
struct Jobs {
    waiting: VecDeque<Job>,
    threads: usize,
    /// Threads asleep until woken (they found no job), which no deadline wakes.
    idle: usize,
}

/// The threads' queue: a child of `fork` has none of its parent's threads (nor its
/// sockets), so it gets its own.
fn queue() -> &'static Queue {
    static QUEUE: PerProcess<Queue> = PerProcess::new();
    QUEUE.get(Queue::default)
}

impl AckWaits {
    fn lock(&self) -> MutexGuard<'_, WaitState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports progress to `poller` as `token` from now on.
    pub(crate) fn report_to(&self, poller: &Poller, token: u64) {
        self.lock().poller = Some((poller.clone(), token));
    }

    /// Whether a poller was given (`report_to`), which [`expect`](Self::expect) needs.
    pub(crate) fn has_poller(&self) -> bool {
        self.lock().poller.is_some()
    }

    /// Expects the acks of the last `count` messages sent on `socket` (called right after
    /// that send: every message of it has its place by then), each within the socket's ack
    /// timeout. Each wait is for its own message's place or a later one, never an earlier.
    pub(crate) fn expect(self: &Arc<Self>, socket: &Socket, count: usize) -> Result<(), String> {
        let mut s = self.lock();
        if s.poller.is_none() {
            return Err("watch the socket with a poller before expecting acks".into());
        }
        let now = Instant::now();
        let deadline = now + socket.ack_timeout();
        let last = socket.sent_mark();
        s.expected
            .extend((0..count).rev().map(|i| (deadline, last.before(i))));
        if s.expected.is_empty() {
            return Ok(());
        }
        if !s.doorbells {
            s.doorbells = socket.ack_doorbells(true);
            // Asked, then looked: an ack counted before the asking shows now.
            if s.doorbells && settle(&mut s, socket) {
                report(&s);
            }
        }
        if !s.queued && !s.expected.is_empty() {
            s.queued = true;
            let not_before = if s.doorbells {
                now + DOORBELL_GRACE
            } else {
                now
            };
            drop(s);
            submit(Job {
                socket: socket.clone(),
                waits: self.clone(),
                not_before,
            });
        }
        Ok(())
    }

    /// Takes the progress made since the last call (with doorbells, looks at the acks
    /// first). `keep_end`: an end found with no progress stays for the next call (reported
    /// to the poller again), for a caller that has a message to hand over first.
    pub(crate) fn take(&self, socket: &Socket, keep_end: bool) -> Progress {
        let mut s = self.lock();
        if s.doorbells {
            settle(&mut s, socket);
        }
        let p = Progress {
            acked: std::mem::take(&mut s.acked),
            timed_out: std::mem::take(&mut s.timed_out),
            ended: None,
        };
        if p.acked == 0 && p.timed_out == 0 {
            if keep_end {
                if s.ended.is_some() {
                    report(&s);
                }
                return p;
            }
            return Progress {
                ended: s.ended.take(),
                ..p
            };
        }
        if s.ended.is_some() {
            report(&s); // the end comes with the next look: have it made
        }
        p
    }

    /// The loop let go of the socket (`ipcez_socket_read_held`): its doorbells may go
    /// unread, so the threads wait for what is expected on the counter, from now on (an
    /// `expect` while the socket is held again asks anew).
    pub(crate) fn hurry(&self, socket: &Socket) {
        let mut s = self.lock();
        if !s.doorbells {
            return;
        }
        socket.ack_doorbells(false);
        s.doorbells = false;
        drop(s);
        self.hurry.store(true, Ordering::Release);
        // Under the queue's lock: a thread between its look and its sleep sees the flag.
        let q = queue();
        let _jobs = q.jobs.lock().unwrap_or_else(|p| p.into_inner());
        q.ready.notify_all();
    }

    fn hurried(&self) -> bool {
        self.hurry.load(Ordering::Acquire)
    }
}

/// With doorbells: settles the expected acks that came or ran out of time, without
/// waiting, and stops asking for doorbells once none is expected. True when any settled.
fn settle(s: &mut WaitState, socket: &Socket) -> bool {
    let before = (s.acked, s.timed_out);
    while let Some(&(deadline, mark)) = s.expected.front() {
        match socket.wait_ack_of_blocking(mark, Duration::ZERO) {
            Ok(true) => s.acked += 1,
            Ok(false) if Instant::now() >= deadline => s.timed_out += 1,
            Ok(false) => break,
            Err(e) => {
                s.expected.clear();
                s.ended = Some(e);
                break;
            }
        }
        s.expected.pop_front();
    }
    if s.expected.is_empty() && s.doorbells {
        socket.ack_doorbells(false);
        s.doorbells = false;
    }
    (s.acked, s.timed_out) != before || s.ended.is_some()
}

/// Tells the loop that progress waits to be taken.
fn report(s: &WaitState) {
    if let Some((poller, token)) = &s.poller {
        poller.push(*token);
    }
}

fn submit(job: Job) {
    let q = queue();
    let mut jobs = q.jobs.lock().unwrap_or_else(|p| p.into_inner());
    // A thread asleep until a deadline wakes by itself in time for any job due after the
    // earliest one queued: only an earlier job, or a thread asleep without a deadline,
    // needs a wake-up (with doorbells every socket submits a job per 20 ms, and waking a
    // thread for each was a futex call and two switches).
    let wake = jobs.idle > 0 || jobs.waiting.iter().all(|j| j.not_before > job.not_before);
    jobs.waiting.push_back(job);
    if jobs.threads < THREADS {
        let started = std::thread::Builder::new()
            .name("ipcez-acks".into())
            .spawn(move || work(q))
            .is_ok();
        jobs.threads += usize::from(started);
    }
    drop(jobs);
    if wake {
        q.ready.notify_one();
    }
}

fn work(q: &'static Queue) {
    loop {
        let job = {
            let mut jobs = q.jobs.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let now = Instant::now();
                let due = |j: &Job| j.not_before <= now + COALESCE || j.waits.hurried();
                if let Some(i) = jobs.waiting.iter().position(due) {
                    break jobs.waiting.remove(i).expect("the index was just found");
                }
                let next = jobs.waiting.iter().map(|j| j.not_before).min();
                jobs = match next {
                    Some(t) => {
                        q.ready
                            .wait_timeout(jobs, t.saturating_duration_since(now))
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    }
                    None => {
                        jobs.idle += 1;
                        let mut woken = q.ready.wait(jobs).unwrap_or_else(|p| p.into_inner());
                        woken.idle -= 1;
                        woken
                    }
                };
            }
        };
        if let Some(not_before) = serve(&job) {
            // More to wait for: to the back of the line.
            submit(Job { not_before, ..job });
        }
    }
}

/// Waits one slice for `job`'s acks; while more are expected, when to come back. With
/// doorbells (and the loop not letting go) it only looks: the loop hears of the acks, this
/// is the fallback for a doorbell that did not come.
fn serve(job: &Job) -> Option<Instant> {
    let slice_end = Instant::now() + SLICE;
    if !job.waits.hurry.swap(false, Ordering::AcqRel) {
        let mut s = job.waits.lock();
        if s.doorbells {
            if settle(&mut s, &job.socket) {
                report(&s);
            }
            if s.doorbells {
                return Some(Instant::now() + DOORBELL_GRACE);
            }
        }
    }
    loop {
        let (oldest, mark) = {
            let mut s = job.waits.lock();
            match s.expected.front() {
                None => {
                    s.queued = false;
                    if s.doorbells {
                        job.socket.ack_doorbells(false);
                        s.doorbells = false;
                    }
                    return None;
                }
                Some(&d) => d,
            }
        };
        let now = Instant::now();
        let wait = oldest.min(slice_end).saturating_duration_since(now);
        let outcome = job.socket.wait_ack_of_blocking(mark, wait);
        let mut s = job.waits.lock();
        // The loop hears once until it looks: no token per ack.
        let first = s.acked == 0 && s.timed_out == 0 && s.ended.is_none();
        // The loop may have settled some meanwhile (doorbells): only what is still there.
        let still = s.expected.front() == Some(&(oldest, mark));
        match outcome {
            _ if !still => continue,
            Ok(true) => {
                s.expected.pop_front();
                s.acked += 1;
            }
            Ok(false) if Instant::now() >= oldest => {
                s.expected.pop_front();
                s.timed_out += 1;
            }
            // The slice is over: let other sockets have a turn.
            Ok(false) => return Some(Instant::now()),
            Err(e) => {
                s.expected.clear();
                s.ended = Some(e);
            }
        }
        if first {
            report(&s);
        }
    }
}
