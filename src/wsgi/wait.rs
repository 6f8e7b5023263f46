//! How a WSGI thread waits for the client: parked on the exchange, asleep on a condition
//! variable with the GIL released, woken by the I/O thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;

use super::delivery::Delivery;
use crate::error::Error;
use crate::http::exchange::{AppWaker, Exchange, Want};

/// One per pool thread, reused for every request it runs.
#[derive(Default)]
pub struct ThreadWaker {
    woken: Mutex<bool>,
    cond: Condvar,
}

thread_local! {
    static WAKER: Arc<ThreadWaker> = Arc::new(ThreadWaker::default());
}

impl ThreadWaker {
    pub fn for_this_thread() -> Arc<Self> {
        WAKER.with(Arc::clone)
    }

    /// Sleeps until woken or `deadline`; false on time-out. A stale wake-up from an earlier
    /// park only makes the caller look again.
    fn sleep(&self, deadline: Option<Instant>) -> bool {
        let mut woken = self.woken.lock();
        while !*woken {
            match deadline {
                Some(d) => {
                    if self.cond.wait_until(&mut woken, d).timed_out() {
                        return std::mem::take(&mut *woken);
                    }
                }
                None => self.cond.wait(&mut woken),
            }
        }
        *woken = false;
        true
    }
}

impl AppWaker for ThreadWaker {
    fn wake(self: Arc<Self>) {
        *self.woken.lock() = true;
        self.cond.notify_one();
    }
}

/// What a blocking read or write needs to wait well.
pub struct Waiter {
    pub exchange: Arc<Exchange>,
    pub waker: Arc<ThreadWaker>,
    /// How long the client may keep a thread waiting (`--timeout-write`).
    pub timeout: Option<Duration>,
    pub delivery: Arc<Delivery>,
}

impl Waiter {
    /// Waits (GIL released) until `ready` holds or what it wants may have changed, then lets
    /// the caller look again. A client that keeps the thread waiting past the time-out is
    /// disconnected, so the app gets an error instead of holding its thread forever.
    pub fn wait(&self, py: Python<'_>, want: Want, started: Instant) -> Result<(), Error> {
        if !self.exchange.park(want, self.waker.clone()) {
            return Ok(());
        }
        // What this thread held back may be what the client waits for before it sends more.
        self.delivery.flush();
        let deadline = self.timeout.map(|t| started + t);
        let woken = {
            let _on_client = super::busy::Busy::waiting_on_client();
            py.allow_threads(|| self.waker.sleep(deadline))
        };
        if !woken {
            self.exchange.disconnect();
            return Err(Error::Io(std::io::Error::from_raw_os_error(
                libc::ETIMEDOUT,
            )));
        }
        Ok(())
    }

    /// Blocks (GIL released) while the response queue is over its high-water mark.
    pub fn wait_room(&self, py: Python<'_>) -> Result<(), Error> {
        let started = Instant::now();
        while !self.exchange.has_room() {
            self.wait(py, Want::Room, started)?;
        }
        if self.exchange.is_disconnected() {
            return Err(Error::Disconnected);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_returns_at_once_for_a_wake_up_that_came_first_and_only_once() {
        let w = Arc::new(ThreadWaker::default());
        w.clone().wake();
        assert!(w.sleep(None), "the earlier wake-up counts");
        let soon = Instant::now() + Duration::from_millis(10);
        assert!(!w.sleep(Some(soon)), "spent: this one times out");
        assert!(Instant::now() >= soon);
    }

    #[test]
    fn sleep_is_ended_by_a_wake_up_from_another_thread() {
        let w = Arc::new(ThreadWaker::default());
        let waker = w.clone();
        let t = std::thread::spawn(move || waker.wake());
        assert!(w.sleep(Some(Instant::now() + Duration::from_secs(10))));
        t.join().expect("join");
    }
}
