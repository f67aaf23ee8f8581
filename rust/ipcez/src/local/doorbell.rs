//! Doorbells (Linux): acks that an event loop can wait for on the socket itself.
//!
//! Between two ipcez endpoints the acks are counted on the sender's private page (see
//! `os::unix::private_ack`), which no event loop can poll. While a loop waits for acks it
//! asks for doorbells on that page; the peer's reader then also writes a 4-byte doorbell
//! record on the socket after counting acks (a header word over the size limit, which
//! the peer's decoder knows from this connection's first frame; a custom peer never sees
//! one, since only an ipcez page can ask). The loop, watching the socket for messages
//! already, wakes on it and looks at the count. A doorbell is a wake-up only: it carries
//! no ack, so a forged, stale or repeated one acknowledges nothing.
//!
//! A record is written between frames: under the write lock, taken without waiting. When
//! a writer holds the lock, the doorbell is left owed and that writer rings it once it
//! lets go; when the socket is full, it stays owed for the next writer (the sender's
//! fallback, a thread that looks at the count every 20 ms, bounds that case).
//!
//! A busy event loop defers them. When the loop that holds the socket counted the acks in
//! a turn in which it already read a socket it holds (this one or another), the doorbell
//! waits: that loop
//! usually answers at once, and any frame that starts after the count wakes the peer's
//! loop as well (it looks at its acks whenever its socket wakes it). So a frame written
//! next carries it, and the loop rings what is still deferred at the end of its turn
//! ([`Bell::ring_deferred`]). Under load a request and its reply then cost one write and
//! one wake-up each way, not two. The first read of a turn rings at once unless the turn
//! before read several sockets: for a loop with one busy socket, the peer then settles its
//! send while this side works on the answer (measured: a one-client echo is faster so,
//! twice as slow with every doorbell deferred), while a loop under load defers them all.
//! Only a thread whose loop calls [`turn_ends`] (or `ring_deferred` at the end of a turn)
//! defers at all.
//!
//! [`turn_ends`] serves all the sockets of a loop in one call per turn. The loop calls it
//! when the turn in which it read held sockets is over, but a task woken by a read late in
//! that turn may not have answered yet then; so a doorbell deferred in a turn is rung by the
//! call after next, if no frame carried it by then (at most one turn of the loop later).

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::acks::ConnAck;
use crate::os::LocalStream;
use crate::runtime::ProcessEpoch;

/// How long the rest of a record that went out in part may take (a 4-byte write is
/// taken whole in practice); past it the connection ends, a frame cannot follow half a
/// record.
const REST_OF_RECORD: Duration = Duration::from_millis(50);

thread_local! {
    /// This thread's loop rings deferred doorbells at the end of its turns (it called
    /// [`Bell::ring_deferred`] with `turn_ends`): only then are any deferred, so a loop
    /// written against the C ABI without that call keeps ringing at once.
    static RINGS_DEFERRED: Cell<bool> = const { Cell::new(false) };
    /// This thread's loop read a held socket in its current turn (see [`Bell::defer`]) ...
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// ... more than one, in this turn and in the last one that [`turn_ends`] ended.
    static CROWDED: Cell<bool> = const { Cell::new(false) };
    static WAS_CROWDED: Cell<bool> = const { Cell::new(false) };
    /// This thread's loop ends its turns with [`turn_ends`], which rings what is deferred.
    static COUNTS_TURNS: Cell<bool> = const { Cell::new(false) };
    /// The turn count of [`turn_ends`] and the doorbells deferred in each turn.
    static DEFERRED: RefCell<Deferred> = const { RefCell::new(Deferred::new()) };
}

/// This thread's deferred doorbells, each with the turn it was deferred in, and the process
/// they belong to (a child forked since rings none of them).
struct Deferred {
    turn: u64,
    bells: Vec<(u64, Weak<Bell>)>,
    epoch: Option<ProcessEpoch>,
}

impl Deferred {
    const fn new() -> Self {
        Deferred {
            turn: 0,
            bells: Vec::new(),
            epoch: None,
        }
    }
}

/// The loop of this thread ended a turn: its next read of a held socket is the first of a
/// turn again (it rings at once, unless the turn that ended read several), and the doorbells deferred before the turn that just
/// ended are rung if no frame carried them (see the module docs). Returns how many are
/// still deferred: call again at the end of the next turn while it is not 0. Opts this
/// thread in to deferring, as [`Bell::ring_deferred`] at the end of a turn does.
pub(crate) fn turn_ends() -> usize {
    RINGS_DEFERRED.with(|r| r.set(true));
    COUNTS_TURNS.with(|c| c.set(true));
    BUSY.with(|b| b.set(false));
    WAS_CROWDED.with(|w| w.set(CROWDED.with(|c| c.replace(false))));
    let due = DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        if d.epoch.is_some_and(|e| !e.is_current()) {
            d.bells.clear(); // the parent's, inherited through fork: never rung from here
            d.epoch = None;
        }
        let turn = d.turn;
        d.turn += 1;
        let split = d.bells.partition_point(|(t, _)| *t < turn);
        d.bells.drain(..split).collect::<Vec<_>>()
    });
    for (_, bell) in due {
        if let Some(bell) = bell.upgrade() {
            bell.ring_deferred(false);
        }
    }
    DEFERRED.with(|d| d.borrow().bells.len())
}

/// The doorbell of one connection's reader, and the write lock it shares with the writer.
#[derive(Debug)]
pub(crate) struct Bell {
    lock: Arc<tokio::sync::Mutex<()>>,
    stream: Arc<LocalStream>,
    acks: Arc<ConnAck>,
    owed: AtomicBool,
    /// Counted by the loop that holds the socket, not rung yet (see the module docs).
    deferred: AtomicBool,
}

impl Bell {
    /// A connection's doorbell, with its (new) write lock.
    pub(crate) fn new(stream: Arc<LocalStream>, acks: Arc<ConnAck>) -> Self {
        Bell {
            lock: Arc::new(tokio::sync::Mutex::new(())),
            stream,
            acks,
            owed: AtomicBool::new(false),
            deferred: AtomicBool::new(false),
        }
    }

    /// The connection's write lock, held for a whole frame (see [`Flushing`]).
    pub(crate) fn lock(&self) -> &Arc<tokio::sync::Mutex<()>> {
        &self.lock
    }

    /// Reader: the sender asked for a doorbell with the acks just counted.
    pub(crate) fn ring(&self) {
        self.owed.store(true, Ordering::SeqCst);
        // The store before the look at the lock: tokio's lock is not SeqCst itself.
        std::sync::atomic::fence(Ordering::SeqCst);
        self.flush();
    }

    /// Reader on the thread of the loop that holds the socket: the sender asked for a
    /// doorbell with the acks just counted; the next frame or [`ring_deferred`] gives it.
    ///
    /// [`ring_deferred`]: Self::ring_deferred
    pub(crate) fn defer(self: &Arc<Self>) {
        // The first read of a loop's turn rings at once: an idle loop gains nothing from
        // waiting, and the peer settles its send while this side answers. Later reads of
        // the same turn (a busy loop) defer, and so does the first after a turn of several.
        if !RINGS_DEFERRED.with(Cell::get) {
            self.ring();
            return;
        }
        let first = !BUSY.with(|b| b.replace(true));
        if !first {
            CROWDED.with(|c| c.set(true));
        } else if !WAS_CROWDED.with(Cell::get) {
            self.ring();
            return;
        }
        // Listed for `turn_ends` (once while deferred); a thread that rings per socket
        // instead keeps no list.
        if !self.deferred.swap(true, Ordering::SeqCst) && COUNTS_TURNS.with(Cell::get) {
            DEFERRED.with(|d| {
                let mut d = d.borrow_mut();
                if !d.epoch.is_some_and(ProcessEpoch::is_current) {
                    // The first here, or a child forked since: the parent's are not ours.
                    d.bells.clear();
                    d.epoch = Some(ProcessEpoch::current());
                }
                let turn = d.turn;
                d.bells.push((turn, Arc::downgrade(self)));
            });
        }
    }

    /// Rings a deferred doorbell that no frame carried. `turn_ends`: the loop's turn is
    /// over (its own call, which also lets this thread defer from now on); otherwise the
    /// library rings it because the loop lets go of the socket.
    pub(crate) fn ring_deferred(&self, turn_ends: bool) {
        if turn_ends {
            RINGS_DEFERRED.with(|r| r.set(true));
            BUSY.with(|b| b.set(false));
        }
        if self.deferred.swap(false, Ordering::SeqCst) {
            self.ring();
        }
    }

    /// The write lock was just taken for a frame or a record: what it writes starts after
    /// every count deferred so far, so it carries those.
    fn carried(&self) {
        self.deferred.store(false, Ordering::SeqCst);
    }

    /// Rings what is owed if the write lock is free. Whoever fails to take the lock left
    /// the doorbell owed before trying, and the holder looks again after letting go.
    fn flush(&self) {
        while self.owed.load(Ordering::SeqCst) {
            let Ok(_guard) = self.lock.try_lock() else {
                return;
            };
            self.carried();
            if self.owed.swap(false, Ordering::SeqCst) && !self.write_record() {
                self.owed.store(true, Ordering::SeqCst);
                return;
            }
        }
    }

    /// Writes one record under the lock; false when the socket has no room for it now.
    fn write_record(&self) -> bool {
        let record = crate::frame::ack_record(0);
        let mut done = 0;
        let mut deadline = None;
        while done < record.len() {
            let rest = [IoSlice::new(&record[done..])];
            // The private channel rides along if these are the connection's first bytes.
            match self.acks.write(|fds| self.stream.write_direct(&rest, fds)) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && done == 0 => return false,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let end = *deadline.get_or_insert_with(|| Instant::now() + REST_OF_RECORD);
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() || self.stream.poll_writable(left).is_err() {
                        self.stream.shutdown();
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The connection is failing: its reader ends it.
                Err(_) => return true,
            }
        }
        true
    }

    /// Writer: `guard` of the write lock, just taken, ringing what was owed meanwhile once
    /// dropped.
    pub(crate) fn holding<G>(self: &Arc<Self>, guard: G) -> Flushing<G> {
        self.carried();
        Flushing {
            guard: Some(guard),
            bell: self.clone(),
        }
    }
}

/// A write lock guard that rings an owed doorbell after letting go.
pub(crate) struct Flushing<G> {
    guard: Option<G>,
    bell: Arc<Bell>,
}

impl<G> Drop for Flushing<G> {
    fn drop(&mut self) {
        drop(self.guard.take());
        std::sync::atomic::fence(Ordering::SeqCst); // the release before the look at `owed`
        if self.bell.owed.load(Ordering::SeqCst) {
            self.bell.flush();
        }
    }
}
