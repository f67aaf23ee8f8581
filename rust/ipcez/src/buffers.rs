//! Spare receive buffers: a large message body is read into a buffer that an earlier
//! message gave back (`reuse_buffer`), not into fresh memory.
//!
//! Why: a binding copies each message out (into a Python `bytes`, say) and frees it. A
//! fresh 1 MiB body per message, freed next to the copy, leaves glibc enough free memory at
//! the top of its heap to hand back to the system, and the next message faults it all in
//! again: 185–440 page faults per 1 MiB message received from Python, measured here. A kept
//! buffer keeps the heap as it is.
//!
//! The pool is process-wide and small (`MAX_KEPT` buffers, `MAX_KEPT_BYTES` in all). Its
//! lock is only ever tried, never waited for: a busy pool means a fresh buffer (or a freed
//! one), and a child forked while another thread held the lock just never uses the pool.

use std::sync::Mutex;

/// Bodies smaller than this come from the allocator as usual.
const MIN_LEN: usize = 64 * 1024;

const MAX_KEPT: usize = 4;

const MAX_KEPT_BYTES: usize = 8 * 1024 * 1024;

/// The kept buffers.
struct Spare(Mutex<Vec<Vec<u8>>>);

static SPARE: Spare = Spare(Mutex::new(Vec::new()));

impl Spare {
    /// The smallest spare buffer that holds `len` bytes without being more than twice that
    /// (a small message does not tie up a large buffer), or a fresh one.
    fn take(&self, len: usize, fresh_capacity: usize) -> Vec<u8> {
        if len >= MIN_LEN
            && let Ok(mut spare) = self.0.try_lock()
            && let Some(best) = (spare.iter().enumerate())
                .filter(|(_, b)| (len..=len.saturating_mul(2)).contains(&b.capacity()))
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i)
        {
            return spare.swap_remove(best);
        }
        Vec::with_capacity(fresh_capacity)
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        if buf.capacity() < MIN_LEN {
            return;
        }
        let Ok(mut spare) = self.0.try_lock() else {
            return;
        };
        let kept: usize = spare.iter().map(Vec::capacity).sum();
        // The same buffer twice (a caller that freed a message twice) would be two owners.
        let known = spare.iter().any(|b| b.as_ptr() == buf.as_ptr());
        if !known && spare.len() < MAX_KEPT && kept + buf.capacity() <= MAX_KEPT_BYTES {
            buf.clear();
            spare.push(buf);
        }
    }
}

/// An empty buffer for a body of `len` bytes: a spare one when `len` is large and one is
/// free, otherwise a fresh one with `fresh_capacity`.
pub(crate) fn take(len: usize, fresh_capacity: usize) -> Vec<u8> {
    SPARE.take(len, fresh_capacity)
}

/// Gives a received message's buffer back, for a later large message to be read into. Only
/// buffers of at least 64 KiB are kept, a few at most (8 MiB in all); the rest are freed.
/// Calling this is optional: dropping a message frees it as usual.
pub fn reuse_buffer(buf: Vec<u8>) {
    SPARE.give_back(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_come_back_small_ones_and_the_excess_do_not() {
        let pool = Spare(Mutex::new(Vec::new()));
        let kept = |pool: &Spare| {
            pool.0
                .lock()
                .unwrap()
                .iter()
                .map(Vec::capacity)
                .sum::<usize>()
        };
        pool.give_back(Vec::with_capacity(MIN_LEN - 1));
        assert_eq!(kept(&pool), 0, "a small buffer is not kept");
        let mut big = Vec::with_capacity(1 << 20);
        big.extend_from_slice(b"old contents");
        let ptr = big.as_ptr();
        pool.give_back(big);
        let small = pool.take(MIN_LEN, 0);
        assert_ne!(
            small.as_ptr(),
            ptr,
            "a message a sixteenth of its size does not take it"
        );
        let again = pool.take(1 << 20, 0);
        assert_eq!(again.as_ptr(), ptr, "the same memory is used again");
        assert!(again.is_empty(), "and handed out empty");
        pool.give_back(again);
        assert!(
            pool.take(MIN_LEN - 1, 7).capacity() < MIN_LEN,
            "small bodies are fresh"
        );
        for _ in 0..10 {
            pool.give_back(Vec::with_capacity(3 << 20));
        }
        assert!(kept(&pool) <= MAX_KEPT_BYTES, "{} bytes kept", kept(&pool));
        assert!(pool.0.lock().unwrap().len() <= MAX_KEPT);
    }
}
