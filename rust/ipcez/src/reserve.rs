//! A spare file descriptor, kept the way libuv keeps one: when the process has run out,
//! the accept loop lends it back to take the connections waiting in the backlog and close
//! them at once. Their clients learn at once that they were turned away, instead of
//! waiting in the backlog until their own timeouts.

use std::future::Future;

/// Connections that one lending takes from the backlog and closes, at most.
const REFUSE_BATCH: usize = 64;

/// Takes one connection, if one is waiting now (`accept` is polled once, never waits), and
/// closes it at once: true when there was one.
pub(crate) fn refuse_one<T>(accept: impl Future<Output = std::io::Result<T>>) -> bool {
    use futures_util::FutureExt;
    matches!(accept.now_or_never(), Some(Ok(_)))
}

/// Calls `refuse_one` while it takes a connection, up to a batch: how many it took.
pub(crate) fn refuse_all(mut refuse_one: impl FnMut() -> bool) -> usize {
    (0..REFUSE_BATCH).take_while(|_| refuse_one()).count()
}

/// The spare descriptor (`/dev/null`), when one could be had.
#[derive(Debug)]
pub(crate) struct Reserve {
    #[cfg(unix)]
    fd: Option<std::fs::File>,
}

impl Reserve {
    pub(crate) fn new() -> Self {
        Reserve {
            #[cfg(unix)]
            fd: std::fs::File::open("/dev/null").ok(),
        }
    }

    /// Runs `f` with the spare descriptor closed, then takes one again. `None` (and `f`
    /// not run) when there is no spare to lend: on Windows, or when none could be taken
    /// back last time and none can be now.
    pub(crate) fn lend<R>(&mut self, f: impl FnOnce() -> R) -> Option<R> {
        #[cfg(unix)]
        {
            let spare = self.fd.take();
            drop(spare.or_else(|| std::fs::File::open("/dev/null").ok())?);
            let r = f();
            self.fd = std::fs::File::open("/dev/null").ok();
            Some(r)
        }
        #[cfg(not(unix))]
        {
            let _ = f;
            None
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn lending_runs_the_work_and_takes_the_spare_back() {
        let mut r = Reserve::new();
        assert_eq!(r.lend(|| 7), Some(7));
        assert!(r.fd.is_some(), "taken back");
        r.fd = None; // could not be taken back last time: one is taken now if it can be
        assert_eq!(r.lend(|| 8), Some(8));
        assert!(r.fd.is_some());
    }
}
