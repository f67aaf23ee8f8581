//! What a listener lets in: at most `max_connections` open connections (accepted by the
//! application or still waiting for `accept`), and an accept loop that backs off when the
//! process runs out of file descriptors instead of spinning on the error.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a new connection at the cap waits for a closing one's place.
const ADMIT_WAIT: Duration = Duration::from_millis(100);

/// How often refusals at the cap are logged, at most.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Default cap on a listener's open connections (accepted plus not yet accepted), where
/// the process's descriptor limit allows it (see [`default_max_connections`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The process's soft limit on open file descriptors (`ulimit -n`), when it has one.
pub(crate) fn descriptor_limit() -> Option<usize> {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into `r`.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0
            && r.rlim_cur != libc::RLIM_INFINITY
        {
            return usize::try_from(r.rlim_cur).ok();
        }
    }
    None
}

/// How many connections fit under a descriptor limit of `limit`: a connection may hold
/// two descriptors (its socket, and the one `fileno` or a blocked receive adds), and an
/// eighth of the limit (at least 16) is left for the rest of the process.
pub(crate) fn connections_that_fit(limit: usize) -> usize {
    let spare = (limit / 8).max(16);
    (limit.saturating_sub(spare) / 2).max(1)
}

/// The default cap on a listener's open connections: [`DEFAULT_MAX_CONNECTIONS`], or fewer
/// where the process's descriptor limit would run out first (e.g. 448 under `ulimit -n
/// 1024`, 24 under 64), so the cap, not a failing `accept`, is what turns peers away.
pub fn default_max_connections() -> usize {
    descriptor_limit().map_or(DEFAULT_MAX_CONNECTIONS, |limit| {
        connections_that_fit(limit).min(DEFAULT_MAX_CONNECTIONS)
    })
}

/// Logs a cap that does not fit under the descriptor limit, or one the limit lowered.
pub(crate) fn log_cap(max: usize, endpoint: &str) {
    let Some(limit) = descriptor_limit() else {
        return;
    };
    let fit = connections_that_fit(limit);
    if max > fit {
        log::warn!(
            "{endpoint}: max_connections={max} needs more file descriptors than `ulimit -n` \
             ({limit}) gives; past about {fit} connections new ones are refused at once"
        );
    } else if max == fit && max < DEFAULT_MAX_CONNECTIONS {
        log::info!(
            "{endpoint}: max_connections={max}, to fit under the descriptor limit \
             (`ulimit -n` {limit}); raise the limit or set max_connections for more"
        );
    }
}

/// Counts a listener's open connections against its cap.
pub(crate) struct Gate {
    open: AtomicUsize,
    max: usize,
    /// A wait at the cap ended without a place coming back, and none has since: the cap
    /// is full of live connections, so newcomers are refused at once instead of each
    /// holding the accept loop for `ADMIT_WAIT`.
    saturated: AtomicBool,
    /// Refusals since the last log line about them, and when that was.
    refused: AtomicU64,
    logged: Mutex<Option<Instant>>,
    endpoint: String,
    /// Called once at the cap before refusing: gives back the places of connections that
    /// ended while waiting for `accept`.
    prune: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("open", &self.open)
            .field("max", &self.max)
            .finish()
    }
}

/// One open connection's place under the cap, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    gate: Arc<Gate>,
}

impl Gate {
    pub(crate) fn new(
        max: usize,
        endpoint: &str,
        prune: impl Fn() + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Gate {
            open: AtomicUsize::new(0),
            max: max.max(1),
            saturated: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            logged: Mutex::new(None),
            endpoint: endpoint.to_string(),
            prune: Box::new(prune),
        })
    }

    fn take_place(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// A place for a new connection, or `None` at the cap (the caller closes it at once).
    pub(crate) fn admit(self: &Arc<Self>, peer: &str) -> Option<Permit> {
        if let Some(permit) = self.try_admit() {
            return Some(permit);
        }
        // Logged at the first refusal, then at most every few seconds with a count, so a
        // flood does not flood the log too.
        let refused = self.refused.fetch_add(1, Ordering::AcqRel) + 1;
        let mut last = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL) {
            *last = Some(Instant::now());
            self.refused.store(0, Ordering::Release);
            log::warn!(
                "{}: max_connections={} reached; {refused} new connection(s) closed at once \
                 (latest from {peer})",
                self.endpoint,
                self.max
            );
        }
        None
    }

    /// [`admit`](Self::admit) that neither refuses nor logs: `None` at the cap.
    pub(crate) fn try_admit(self: &Arc<Self>) -> Option<Permit> {
        let admitted = self.take_place() || {
            (self.prune)();
            self.take_place()
        };
        admitted.then(|| Permit { gate: self.clone() })
    }

    /// A place for a new connection; at the cap, first gives connections that are closing
    /// (their tasks run on this runtime) up to `ADMIT_WAIT` to hand theirs back. The accept
    /// loop waits meanwhile, so new peers wait in the kernel's backlog instead of being
    /// turned away: under a connect/close flood the dead connections' places come back
    /// within a few polls, and a good client is let in. Once such a wait found no place,
    /// the next ones are refused at once until a place comes back.
    pub(crate) async fn admit_soon(self: &Arc<Self>, peer: &str) -> Option<Permit> {
        let deadline = tokio::time::Instant::now() + ADMIT_WAIT;
        while !self.saturated.load(Ordering::Acquire) && tokio::time::Instant::now() < deadline {
            if let Some(permit) = self.try_admit() {
                return Some(permit);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let admitted = self.admit(peer);
        if admitted.is_none() {
            self.saturated.store(true, Ordering::SeqCst);
            // A place given back just before the store above must not leave it set.
            if self.open.load(Ordering::SeqCst) < self.max {
                self.saturated.store(false, Ordering::SeqCst);
            }
        }
        admitted
    }

    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::SeqCst);
        self.gate.saturated.store(false, Ordering::SeqCst);
    }
}

/// Pauses of an accept loop whose `accept` keeps failing: 10 ms, doubling up to 640 ms,
/// back to the start after a success. Logged once per episode, not per failure.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Option<Duration>,
    failures: u64,
}

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_millis(640);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            next: None,
            failures: 0,
        }
    }

    /// How long to wait after `error`; the first failure of an episode is logged.
    pub(crate) fn failed(&mut self, error: &io::Error, endpoint: &str) -> Duration {
        let pause = self.next.unwrap_or(FIRST_PAUSE);
        if self.failures == 0 {
            let why = if is_out_of_descriptors(error) {
                "the process is out of file descriptors (raise `ulimit -n` or lower \
                 max_connections); slow handshakes are dropped and new connections refused \
                 at once until descriptors are free again"
            } else {
                "accepting failed; retrying with a growing pause"
            };
            log::warn!("{endpoint}: {why}: {error}");
        }
        self.failures += 1;
        self.next = Some((pause * 2).min(LONGEST_PAUSE));
        pause
    }

    /// An accept succeeded: the episode, if any, is over.
    pub(crate) fn succeeded(&mut self, endpoint: &str) {
        if self.failures > 0 {
            log::info!(
                "{endpoint}: accepting again after {} failed attempts",
                self.failures
            );
        }
        self.failures = 0;
        self.next = None;
    }
}

/// EMFILE / ENFILE (and the Windows equivalent).
pub(crate) fn is_out_of_descriptors(e: &io::Error) -> bool {
    #[cfg(unix)]
    if let Some(n) = e.raw_os_error() {
        return n == libc::EMFILE || n == libc::ENFILE;
    }
    let _ = e;
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_up_to_the_cap_and_frees_places() {
        let gate = Gate::new(2, "test", || {});
        let a = gate.admit("a").unwrap();
        let _b = gate.admit("b").unwrap();
        assert!(gate.admit("c").is_none());
        assert_eq!(gate.open(), 2);
        drop(a);
        assert!(gate.admit("d").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn at_a_full_cap_only_the_first_newcomer_waits_until_a_place_comes_back() {
        let gate = Gate::new(1, "test", || {});
        let live = gate.admit("live").unwrap();
        let started = tokio::time::Instant::now();
        assert!(gate.admit_soon("first").await.is_none());
        assert_eq!(
            started.elapsed(),
            ADMIT_WAIT,
            "the first one waits for a place"
        );
        let started = tokio::time::Instant::now();
        for _ in 0..100 {
            assert!(gate.admit_soon("next").await.is_none());
        }
        assert!(
            started.elapsed() < ADMIT_WAIT,
            "the rest are refused at once"
        );
        // A place came back: the next newcomer gets it, and a wait is worth it again.
        drop(live);
        let again = gate.admit_soon("again").await.unwrap();
        let started = tokio::time::Instant::now();
        let freed = {
            let gate = gate.clone();
            tokio::spawn(async move {
                tokio::time::sleep(ADMIT_WAIT / 2).await;
                drop(again);
                gate
            })
        };
        assert!(gate.admit_soon("waits").await.is_some());
        assert!(started.elapsed() < ADMIT_WAIT);
        freed.await.unwrap();
    }

    #[test]
    fn the_default_cap_fits_under_the_descriptor_limit() {
        assert_eq!(connections_that_fit(64), 24);
        assert_eq!(connections_that_fit(1024), 448);
        assert_eq!(connections_that_fit(20), 2);
        assert_eq!(connections_that_fit(4), 1);
        assert!(connections_that_fit(1 << 20) > DEFAULT_MAX_CONNECTIONS);
        // Windows has no such limit (None): the default stays.
        let expected = descriptor_limit().map_or(DEFAULT_MAX_CONNECTIONS, |limit| {
            connections_that_fit(limit).min(DEFAULT_MAX_CONNECTIONS)
        });
        assert_eq!(default_max_connections(), expected);
        #[cfg(unix)]
        assert!(descriptor_limit().is_some());
    }

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let e = io::Error::from_raw_os_error(24);
        let pauses: Vec<_> = (0..9).map(|_| b.failed(&e, "x").as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 640, 640]);
        b.succeeded("x");
        assert_eq!(b.failed(&e, "x"), FIRST_PAUSE);
    }
}
