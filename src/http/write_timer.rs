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
//!
//! HTTP/2 adds a second way to take nothing: a client can read the socket and still never
//! open a stream's flow-control window. hyper then stops polling that stream's body, so the
//! socket is never blocked. Each stream whose app waits for room tells the clock
//! ([`WriteClock::stall_began`], from the exchange), and the clock counts from the later of
//! that and the last chunk of body hyper took on any of the connection's streams
//! ([`WriteClock::stream_progress`]): a connection with a waiting stream whose client takes
//! no data on any stream for the limit has a client taking nothing, and is closed, all its
//! streams with it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};

use crate::watched_io::IoWatcher;

/// Since when a connection's writes have been blocked, if they are.
pub struct WriteClock {
    /// What `blocked` counts from.
    base: Instant,
    /// Nanoseconds from `base` to the start of the current block, plus one; 0 while writes
    /// go through. Only the connection's own task writes it, so relaxed loads and stores do.
    blocked: AtomicU64,
    /// HTTP/2: how many streams have an app waiting for room. Read for every chunk of body
    /// hyper takes on the connection; changed only under `drive`'s lock.
    stalled: AtomicUsize,
    /// While `stalled` is above 0: the mark of the last progress (the first stream's wait, or
    /// a chunk taken since); 0 otherwise. Written by app threads and the I/O thread, under
    /// `drive`'s lock.
    stalled_mark: AtomicU64,
    /// The connection's task, to be woken when a stream starts waiting: it arms its timer
    /// then (nothing else wakes it, since the stream's own task is the one that writes).
    drive: Mutex<Option<Waker>>,
}

impl Default for WriteClock {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            blocked: AtomicU64::new(0),
            stalled: AtomicUsize::new(0),
            stalled_mark: AtomicU64::new(0),
            drive: Mutex::new(None),
        }
    }
}

impl WriteClock {
    fn now_mark(&self) -> u64 {
        let since = (Instant::now() - self.base).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX - 1) + 1
    }

    fn block(&self) {
        // Only the first of a run of blocked writes reads the time.
        if self.blocked.load(Ordering::Relaxed) == 0 {
            self.blocked.store(self.now_mark(), Ordering::Relaxed);
        }
    }

    fn flow(&self) {
        if self.blocked.load(Ordering::Relaxed) != 0 {
            self.blocked.store(0, Ordering::Relaxed);
        }
    }

    /// hyper took a chunk of response body on one of the connection's HTTP/2 streams: the
    /// client opened a window, so it is taking data, and the streams that wait are only
    /// waiting their turn. (Bytes on the socket would not say so: hyper writes PINGs and
    /// SETTINGS and WINDOW_UPDATE frames to a client that takes no data at all.)
    pub fn stream_progress(&self) {
        if self.stalled.load(Ordering::Relaxed) != 0 {
            let _guard = self.drive.lock();
            if self.stalled.load(Ordering::Relaxed) != 0 {
                self.stalled_mark.store(self.now_mark(), Ordering::Relaxed);
            }
        }
    }

    /// An HTTP/2 stream's app waits for room in its response queue. Returns the connection
    /// task's waker when it must be woken (the first wait): the caller wakes it once its own
    /// locks are released.
    #[must_use]
    pub fn stall_began(&self) -> Option<Waker> {
        let mut drive = self.drive.lock();
        if self.stalled.fetch_add(1, Ordering::Relaxed) == 0 {
            self.stalled_mark.store(self.now_mark(), Ordering::Relaxed);
            drive.take()
        } else {
            None
        }
    }

    /// A stream that waited got room, or ended.
    pub fn stall_ended(&self) {
        let _guard = self.drive.lock();
        if self.stalled.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.stalled_mark.store(0, Ordering::Relaxed);
        }
    }

    /// The start of the current block, as the clock's own count (0: not blocked): the
    /// earlier of the socket's block and the waiting streams'.
    fn blocked_mark(&self) -> u64 {
        let socket = self.blocked.load(Ordering::Relaxed);
        let streams = self.stalled_mark.load(Ordering::Relaxed);
        match (socket, streams) {
            (0, m) | (m, 0) => m,
            (a, b) => a.min(b),
        }
    }

    #[cfg(test)]
    pub fn stalled_streams(&self) -> usize {
        self.stalled.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub fn stall_mark_for_tests(&self) -> u64 {
        self.stalled_mark.load(Ordering::Relaxed)
    }

    /// Wakes `waker` when a stream starts waiting while none did.
    fn watch_stalls(&self, waker: &Waker) {
        let mut drive = self.drive.lock();
        match &*drive {
            Some(w) if w.will_wake(waker) => {}
            _ => *drive = Some(waker.clone()),
        }
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
            streams: false,
        }
    }

    /// The deadline of an HTTP/2 connection, which also watches its streams' waits.
    pub fn deadline_with_streams(&self) -> WriteDeadline {
        WriteDeadline {
            streams: true,
            ..self.deadline()
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
    /// HTTP/2: woken when a stream begins to wait, which no write tells.
    streams: bool,
}

impl WriteDeadline {
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.streams {
            self.watch.clock.watch_stalls(cx.waker());
        }
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
