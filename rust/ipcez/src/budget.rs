//! How much a connection the application has not accepted yet may read: a small fixed
//! budget, handshake bytes included, so that a peer the application never takes costs
//! little however much it sends. `accept` lifts the budget.
//!
//! The same gate drains a WebSocket stream whose peer broke the protocol (an oversize
//! message, say): after our Close frame went out, what still arrives is read and thrown
//! away until the peer hangs up, so that closing our end sends a FIN, not a reset (a
//! socket closed with unread data resets the connection, and the peer may then lose our
//! Close frame).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Bytes a connection may read before it is accepted (handshakes included).
pub const PENDING_READ_BUDGET: usize = 64 * 1024;

const UNLIMITED: usize = usize::MAX;

/// What is left of a connection's read budget.
#[derive(Debug)]
pub(crate) struct ReadBudget {
    left: AtomicUsize,
    /// Wakes readers waiting for the budget to be lifted.
    lifted: Notify,
    /// Everything read from now on is discarded (see the module comment).
    draining: AtomicBool,
}

impl ReadBudget {
    /// The budget of a connection a listener has not handed out yet.
    pub(crate) fn pending() -> Arc<Self> {
        Arc::new(ReadBudget {
            left: AtomicUsize::new(PENDING_READ_BUDGET),
            lifted: Notify::new(),
            draining: AtomicBool::new(false),
        })
    }

    /// No limit (connections made by `connect`, and accepted ones).
    pub(crate) fn unlimited() -> Arc<Self> {
        Arc::new(ReadBudget {
            left: AtomicUsize::new(UNLIMITED),
            lifted: Notify::new(),
            draining: AtomicBool::new(false),
        })
    }

    /// Bytes that may be read now (0: wait for [`lifted`](Self::lifted)).
    pub(crate) fn allowance(&self) -> usize {
        self.left.load(Ordering::Acquire)
    }

    /// Counts `n` bytes read.
    pub(crate) fn spend(&self, n: usize) {
        let _ = self
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                (left != UNLIMITED).then(|| left.saturating_sub(n))
            });
    }

    /// The application took the connection: reading is no longer limited.
    pub(crate) fn lift(&self) {
        self.left.store(UNLIMITED, Ordering::Release);
        self.lifted.notify_waiters();
    }

    /// From now on a [`Budgeted`] stream discards what it reads and reports only the end.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.lift();
    }

    /// Resolves once the budget has room again (it only ever gets some by being lifted).
    pub(crate) async fn lifted(&self) {
        loop {
            let wake = self.lifted.notified();
            if self.allowance() > 0 {
                return;
            }
            wake.await;
        }
    }
}

/// A stream whose reads are counted against a [`ReadBudget`]; with the budget spent, reads
/// wait (the peer's bytes stay in the kernel) until it is lifted.
pub(crate) struct Budgeted<S> {
    inner: S,
    budget: Arc<ReadBudget>,
    waiting: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl<S> Budgeted<S> {
    pub(crate) fn new(inner: S, budget: Arc<ReadBudget>) -> Self {
        Budgeted {
            inner,
            budget,
            waiting: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Budgeted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.budget.draining.load(Ordering::Acquire) {
            return poll_discard(Pin::new(&mut this.inner), cx);
        }
        loop {
            let allowance = this.budget.allowance();
            if allowance > 0 {
                this.waiting = None;
                let limit = allowance.min(buf.remaining());
                let mut limited = buf.take(limit);
                let before = limited.filled().len();
                let poll = Pin::new(&mut this.inner).poll_read(cx, &mut limited);
                let n = limited.filled().len() - before;
                if n > 0 {
                    // SAFETY: `limited` wrote `n` initialized bytes into `buf`'s unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    this.budget.spend(n);
                }
                return poll;
            }
            let budget = this.budget.clone();
            let wait = this
                .waiting
                .get_or_insert_with(|| Box::pin(async move { budget.lifted().await }));
            match wait.as_mut().poll(cx) {
                Poll::Ready(()) => this.waiting = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Reads and drops everything until the end of the stream (or an error).
fn poll_discard<S: AsyncRead>(
    mut inner: Pin<&mut S>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    let mut scratch = [0u8; 8192];
    // A peer that keeps sending must not keep this task on the thread: yield now and then.
    for _ in 0..64 {
        let mut buf = ReadBuf::new(&mut scratch);
        match inner.as_mut().poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    /// While draining, a flush also reads (and drops) what arrives, and completes only at
    /// the end of the stream: the WebSocket layer stops reading after a protocol error, so
    /// its flush is what keeps the socket drained until the peer hangs up.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        if !self.budget.draining.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        poll_discard(Pin::new(&mut self.inner), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_pending_stream_reads_its_budget_then_waits_until_lifted() {
        let (mut peer, ours) = tokio::io::duplex(1 << 20);
        let budget = ReadBudget::pending();
        let mut stream = Budgeted::new(ours, budget.clone());
        peer.write_all(&vec![7u8; PENDING_READ_BUDGET + 1000])
            .await
            .unwrap();
        let mut got = vec![0u8; PENDING_READ_BUDGET + 1000];
        let mut read = 0;
        while read < PENDING_READ_BUDGET {
            read += stream.read(&mut got[read..]).await.unwrap();
        }
        assert_eq!(read, PENDING_READ_BUDGET, "never past the budget");
        let more = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut got[read..]));
        assert!(
            more.await.is_err(),
            "reading waits once the budget is spent"
        );
        budget.lift();
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut got[read..]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1000);
    }
}
