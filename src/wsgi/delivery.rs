//! Handing finished responses from WSGI threads to the I/O thread, in batches when that is
//! free.
//!
//! Waking the I/O thread per response makes a pool thread and the I/O thread take turns per
//! request on a busy core. So the responses a pool thread completes go into the bridge's
//! outbox with a request for delivery "soon" ([`Outbox::flush_soon`]): while responses come
//! thick the I/O thread is looking out for them anyway and collects them within a
//! millisecond without being woken; otherwise it is woken at once. When the thread runs out
//! of jobs (or is about to wait for a client) it wakes the I/O thread for what it handed
//! over. So a response never waits on what the app does next (its close(), the next job).
//! Streamed chunks are never held: their timing is the app's.

use std::cell::Cell;
use std::sync::Arc;

use crate::bridge::{Deliver, Outbox};
use crate::http::exchange::Handover;

thread_local! {
    static IN_SESSION: Cell<bool> = const { Cell::new(false) };
    /// This thread handed responses to the outbox since it last woke the I/O thread.
    static HANDED_OVER: Cell<bool> = const { Cell::new(false) };
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

    /// Hands `handover` to the I/O thread; one that `completes` a response joins the batch.
    pub fn hand_over(&self, handover: Handover, completes: bool) {
        if completes && IN_SESSION.with(Cell::get) {
            self.outbox.defer(handover);
            self.outbox.flush_soon();
            HANDED_OVER.with(|h| h.set(true));
        } else {
            handover.deliver();
        }
    }

    /// Wakes the I/O thread for what this thread handed over (before it sleeps or waits).
    pub fn flush(&self) {
        if HANDED_OVER.with(Cell::take) {
            self.outbox.flush();
        }
    }

    /// Runs `jobs` as a session: completed responses are batched until it ends.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::{Duration, Instant};

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_response_is_not_held_while_the_app_goes_on() {
        let delivery = Delivery::new();
        let outbox = delivery.outbox();
        // The I/O thread of the test; it ends with the process.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move { outbox.run().await });
        });
        let delivered = Arc::new(Count(AtomicUsize::new(0)));
        delivery.session(|| {
            // A job completes a response...
            delivery.hand_over(Handover::Wake(delivered.clone().into()), true);
            // ... then its close() or the next job takes long: the response arrives meanwhile.
            let give_up = Instant::now() + Duration::from_secs(5);
            while delivered.0.load(Ordering::SeqCst) == 0 && Instant::now() < give_up {
                std::thread::yield_now();
            }
            assert_eq!(delivered.0.load(Ordering::SeqCst), 1);
        });
    }
}
