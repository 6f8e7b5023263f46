//! `--timeout-write`: a connection whose client has taken nothing of what is sent for that
//! long is closed, as nginx's `send_timeout` does. What counts is progress on the socket, not
//! the age of one `send()`: a slow client that keeps taking bytes, however few, is never cut
//! off, and a response that waits on its app is never the client's fault.
//!
//! The connection's stream (`Watched`) tells the [`WriteClock`] when a write or a flush
//! could not go on and when one went through; the clock keeps only since when the writes
//! have been blocked. The task that writes (the connection's `drive`, or the task of an
//! upgraded WebSocket) polls a [`WriteDeadline`] after each poll of what writes: it reads
//! the clock, and arms a timer only while the writes are blocked. So a write that goes
//! through costs a load of one atomic, and no timer exists while the client keeps up.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::watched_io::IoWatcher;

/// Since when a connection's writes have been blocked, if they are.
pub struct WriteClock {
    /// What `blocked` counts from.
    base: Instant,
    /// Nanoseconds from `base` to the start of the current block, plus one; 0 while writes
    /// go through. Only the connection's own task writes it, so relaxed loads and stores do.
    blocked: AtomicU64,
}

impl Default for WriteClock {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            blocked: AtomicU64::new(0),
        }
    }
}

impl WriteClock {
    fn block(&self) {
        // Only the first of a run of blocked writes reads the time.
        if self.blocked.load(Ordering::Relaxed) == 0 {
            let since = (Instant::now() - self.base).as_nanos();
            let since = u64::try_from(since).unwrap_or(u64::MAX - 1);
            self.blocked.store(since + 1, Ordering::Relaxed);
        }
    }

    fn flow(&self) {
        if self.blocked.load(Ordering::Relaxed) != 0 {
            self.blocked.store(0, Ordering::Relaxed);
        }
    }

    /// The start of the current block, as the clock's own count (0: not blocked).
    fn blocked_mark(&self) -> u64 {
        self.blocked.load(Ordering::Relaxed)
    }

    fn instant_of(&self, mark: u64) -> Instant {
        self.base + Duration::from_nanos(mark - 1)
    }
}

impl IoWatcher for Arc<WriteClock> {
    fn written(&self, n: usize) {
        if n > 0 {
            self.flow();
        }
    }

    fn write_blocked(&self) {
        self.block();
    }

    fn flushed(&self) {
        self.flow();
    }
}

/// A connection's write clock with its limit, as the tasks that write on it watch it.
#[derive(Clone)]
pub struct WriteWatch {
    pub clock: Arc<WriteClock>,
    pub limit: Duration,
}

impl WriteWatch {
    pub fn new(limit: Duration) -> Self {
        Self {
            clock: Arc::new(WriteClock::default()),
            limit,
        }
    }

    pub fn deadline(&self) -> WriteDeadline {
        WriteDeadline {
            watch: self.clone(),
            sleep: None,
            armed_for: 0,
        }
    }
}

/// Ready once the writes have been blocked for the limit. Polled by the task that writes,
/// right after it polled the writing itself, so it sees a block as soon as one begins
/// without being told.
pub struct WriteDeadline {
    watch: WriteWatch,
    /// Made on the first block, moved for each later one.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The block the timer is set for (0: none).
    armed_for: u64,
}

impl WriteDeadline {
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mark = self.watch.clock.blocked_mark();
        if mark == 0 {
            self.armed_for = 0;
            return Poll::Pending;
        }
        let at = self.watch.clock.instant_of(mark) + self.watch.limit;
        if self.armed_for != mark {
            self.armed_for = mark;
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(at),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// The writes of `task`'s connection were blocked for the limit.
#[derive(Debug, PartialEq, Eq)]
pub struct WriteTimedOut;

/// Runs `task` (which writes on the watched connection) until it ends, or until its writes
/// have been blocked for the limit; it is then dropped.
pub async fn within<F: Future>(watch: &WriteWatch, task: F) -> Result<F::Output, WriteTimedOut> {
    let mut deadline = watch.deadline();
    tokio::pin!(task);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = task.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        deadline.poll_expired(cx).map(|()| Err(WriteTimedOut))
    })
    .await
}

#[cfg(test)]
mod tests;
