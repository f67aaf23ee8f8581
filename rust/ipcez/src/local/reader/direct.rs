//! The direct reader (Unix): a thread blocked in `recv_blocking` waits with poll(2) and
//! reads the socket itself, taking turns with the background task (see the parent module).

use std::time::{Duration, Instant};

use super::{ReadSide, Step};
use crate::error::SocketError;
use crate::runtime::deadline_after;

/// How many reads (of up to 64 KiB each) one `read_held` makes at most.
#[cfg(target_os = "linux")]
const MAX_HELD_READS: usize = 16;

impl ReadSide {
    /// An event loop that holds the stream reads what came, without taking a message:
    /// frames go to the inbox (acked), doorbells are heard. True when the loop should let
    /// go instead (the stream is not held any more, another thread reads it, or the inbox
    /// is full), so that the background reader takes over.
    #[cfg(target_os = "linux")]
    pub(crate) fn read_held(&self) -> bool {
        if !self.stream.is_held() || self.budget.allowance() == 0 || self.inbox.has_ended() {
            return true;
        }
        let Some(mut st) = self.try_lock() else {
            return true;
        };
        self.stream.taken_over();
        let mut frames = Vec::new();
        // Bounded, so that one call does not keep the loop from its other work: what is
        // left keeps the socket readable for the next.
        let mut reads = 0;
        let outcome = loop {
            if !self.inbox.has_room() {
                break Ok(true);
            }
            if reads == MAX_HELD_READS {
                break Ok(false);
            }
            reads += 1;
            let step = self.step(&mut st, true, &mut frames);
            if matches!(step, Ok(Step::Progress | Step::Drained)) && !frames.is_empty() {
                // Acked before they can be taken, as everywhere.
                if let Err(e) = self.acknowledge(&mut st, frames.len()) {
                    break Err(e);
                }
                self.queue_quietly(&mut frames);
            }
            match step {
                Ok(Step::Progress) => {}
                // Read dry: what comes next makes the socket readable for the loop again.
                Ok(Step::Drained | Step::WouldBlock) => break Ok(false),
                Err(e) => break Err(e),
            }
        };
        let let_go = outcome.unwrap_or_else(|e| {
            // Frames read whole before the error are acked and queued, then the end (the
            // loop lets go: nothing more to read).
            let acked = self.acknowledge(&mut st, frames.len());
            self.queue(&mut frames);
            self.finish(&acked.err().unwrap_or(e));
            true
        });
        self.unlock(st);
        let_go
    }

    /// A blocking take: take the reader's role and read the socket on this thread, or, while
    /// another thread has it, wait for the inbox.
    pub(crate) fn recv_blocking(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<Vec<u8>>, SocketError> {
        /// How long to wait on the inbox before trying again to become the reader.
        const RETRY: Duration = Duration::from_millis(5);
        let deadline = timeout.map(deadline_after);
        let left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let mut frames = Vec::new();
        loop {
            if let Some(next) = self.inbox.try_take() {
                return next.map(Some);
            }
            let Some(mut st) = self.try_lock() else {
                let wait = left().map_or(RETRY, |l| l.min(RETRY));
                if let Some(m) = self.inbox.pop_blocking(Some(wait))? {
                    return Ok(Some(m));
                }
                if left().is_some_and(|l| l.is_zero()) {
                    return Ok(None);
                }
                continue;
            };
            // Frames are only queued under this lock: an empty inbox now means none is older.
            if !self.inbox.is_empty() {
                self.unlock(st);
                continue;
            }
            self.stream.taken_over();
            let outcome = loop {
                match self.step(&mut st, true, &mut frames) {
                    Err(e) => break Err(e),
                    Ok(Step::Progress | Step::Drained) if !frames.is_empty() => break Ok(true),
                    Ok(Step::Progress) => {}
                    // Read dry (a frame's start, say): wait for the rest without a read
                    // that would only say "would block".
                    Ok(Step::Drained | Step::WouldBlock) => {
                        let wait = left().unwrap_or(Duration::from_secs(3600));
                        if wait.is_zero() {
                            break Ok(false);
                        }
                        if let Err(e) = self.stream.poll_readable(wait) {
                            break Err(e);
                        }
                    }
                }
            };
            // Acked before any can be taken, also those read whole before an error.
            let acked = self.acknowledge(&mut st, frames.len());
            let first = (!frames.is_empty()).then(|| frames.remove(0));
            self.queue(&mut frames);
            let outcome = outcome.and_then(|got| acked.map(|()| got));
            if let Err(e) = &outcome {
                self.finish(e);
            }
            self.unlock(st);
            return match (first, outcome) {
                (Some(m), _) => Ok(Some(m)),
                (None, Ok(_)) => Ok(None),
                (None, Err(_)) => self.inbox.try_take().map_or(Ok(None), |r| r.map(Some)),
            };
        }
    }
}
