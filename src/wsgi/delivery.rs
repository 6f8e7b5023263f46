//! Handing finished responses from WSGI threads to the I/O thread, in batches when that is
//! free.
//!
//! Waking the I/O thread per response makes a pool thread and the I/O thread take turns per
//! request on a busy core. So while a pool thread works through jobs back to back (a
//! session), the responses it completes wait in the bridge's outbox and leave together when
//! the session ends. A response may wait at most for the next job of the session: one that
//! took long (it blocked: the next one likely blocks too) or that came after a response held
//! for a millisecond already sends everything at once. Streamed chunks are never held: their
//! timing is the app's.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bridge::{Deliver, Outbox};
use crate::http::exchange::Handover;

/// A job longer than this sends what its session held back right after it.
const SLOW_JOB: Duration = Duration::from_micros(200);
/// Nothing is held back longer than this (checked between jobs).
const MAX_HOLD: Duration = Duration::from_millis(1);

thread_local! {
    static IN_SESSION: Cell<bool> = const { Cell::new(false) };
    /// When this thread first held a response back since its last flush.
    static HOLDING_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

pub struct Delivery {
    outbox: Arc<Outbox<Handover>>,
}

impl Delivery {
    pub fn new() -> Self {
        Self {
            outbox: Arc::new(Outbox::with_lookout()),
        }
    }

    pub fn outbox(&self) -> Arc<Outbox<Handover>> {
        self.outbox.clone()
    }

    /// Hands `handover` to the I/O thread; one that `completes` a response may wait for the
    /// end of the session.
    pub fn hand_over(&self, handover: Handover, completes: bool) {
        if completes && IN_SESSION.with(Cell::get) {
            self.outbox.defer(handover);
            HOLDING_SINCE.with(|h| {
                if h.get().is_none() {
                    h.set(Some(Instant::now()));
                }
            });
        } else {
            handover.deliver();
        }
    }

    /// Sends what this thread held back (before it sleeps, waits, or ends a session).
    pub fn flush(&self) {
        if HOLDING_SINCE.with(Cell::take).is_some() {
            self.outbox.flush();
        }
    }

    /// Between two jobs of a session: sends what was held back unless holding on is cheap
    /// and short. After a slow (blocking) job the next is likely slow too: its response goes
    /// within the outbox's look-out, without a wake-up of its own while responses come thick.
    pub fn after_job(&self, job_started: Instant) {
        let holding = HOLDING_SINCE.with(Cell::get);
        if let Some(since) = holding {
            if job_started.elapsed() > SLOW_JOB {
                HOLDING_SINCE.with(Cell::take);
                self.outbox.flush_soon();
            } else if since.elapsed() > MAX_HOLD {
                self.flush();
            }
        }
    }

    /// Runs `jobs` as a session: completed responses may be held back until it ends.
    pub fn session(&self, jobs: impl FnOnce()) {
        IN_SESSION.with(|s| s.set(true));
        jobs();
        IN_SESSION.with(|s| s.set(false));
        self.flush();
    }
}

impl Default for Delivery {
    fn default() -> Self {
        Self::new()
    }
}
