//! Work that the event loop thread hands back to Tokio, collected and delivered in batches.
//!
//! A response head or a body wake-up produced on the loop thread must reach the I/O thread.
//! Waking that thread for each one would cost a cross-thread wake-up (and on a busy core a
//! context switch) per response; instead items pile up here and the loop schedules one
//! [`Outbox::flush`] per iteration (`loop.call_soon`), so a whole iteration's worth of
//! responses crosses with one wake-up.
//!
//! Producers that have no natural batch (WSGI threads finishing blocking calls one by one)
//! use [`Outbox::flush_soon`]: while deliveries come thick (two within [`LOOKOUT`]), the I/O
//! thread keeps a timer and looks again after `LOOKOUT` on its own, so those producers need
//! not wake it at all; a response then waits at most `LOOKOUT`. When they come sparse, each
//! wakes the I/O thread at once.

use std::mem;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long the I/O thread looks out for more deliveries after a busy one.
pub const LOOKOUT: Duration = Duration::from_millis(1);

/// Something the I/O thread must act on: send a response head, wake a body stream.
pub trait Deliver: Send {
    fn deliver(self);
}

pub struct Outbox<T> {
    queue: Mutex<Vec<T>>,
    ready: Notify,
    /// Set while the I/O thread has a timer that will make it look again within LOOKOUT.
    lookout: AtomicBool,
    /// Whether [`Outbox::flush_soon`] is used at all; without it `run` keeps no timer.
    looks_out: bool,
}

impl<T: Deliver> Outbox<T> {
    /// An outbox whose producers batch by themselves and always [`Outbox::flush`].
    pub fn new() -> Self {
        Self {
            queue: Mutex::new(Vec::with_capacity(64)),
            ready: Notify::new(),
            lookout: AtomicBool::new(false),
            looks_out: false,
        }
    }

    /// An outbox that also serves [`Outbox::flush_soon`].
    pub fn with_lookout() -> Self {
        Self {
            looks_out: true,
            ..Self::new()
        }
    }

    /// Queues an item; true if the outbox was empty, so the caller must arrange a
    /// [`Outbox::flush`] (the loop does it with `call_soon`, at the end of its iteration).
    pub fn defer(&self, item: T) -> bool {
        let mut q = self.queue.lock();
        q.push(item);
        q.len() == 1
    }

    /// One wake-up of the I/O thread for everything deferred so far.
    pub fn flush(&self) {
        self.ready.notify_one();
    }

    /// Delivery within [`LOOKOUT`]: wakes the I/O thread only if it is not looking out
    /// already. Call after [`Outbox::defer`].
    pub fn flush_soon(&self) {
        // Ordered after the item's push (by the queue's lock): if the I/O thread stopped
        // looking out before taking its batch, this sees it and wakes it.
        if !self.lookout.load(Ordering::SeqCst) {
            self.ready.notify_one();
        }
    }

    /// Runs on the I/O thread for the runtime's lifetime: delivers what each flush announces,
    /// and while deliveries come thick, every LOOKOUT without being asked.
    pub async fn run(&self) {
        let mut batch = Vec::with_capacity(64);
        if !self.looks_out {
            loop {
                self.ready.notified().await;
                mem::swap(&mut *self.queue.lock(), &mut batch);
                batch.drain(..).for_each(Deliver::deliver);
            }
        }
        let mut last = Instant::now();
        let mut deadline: Option<Instant> = None;
        loop {
            // A look-out that finds something means deliveries still come thick.
            let looked_out = match deadline {
                Some(d) => {
                    tokio::select! {
                        biased;
                        _ = self.ready.notified() => false,
                        _ = tokio::time::sleep_until(d) => true,
                    }
                }
                None => {
                    self.ready.notified().await;
                    false
                }
            };
            // Stop looking out before taking the batch: a producer that pushes after the
            // swap then sees it and wakes us.
            self.lookout.store(false, Ordering::SeqCst);
            mem::swap(&mut *self.queue.lock(), &mut batch);
            let now = Instant::now();
            let thick = !batch.is_empty() && (looked_out || now.duration_since(last) < LOOKOUT);
            if !batch.is_empty() {
                last = now;
            }
            batch.drain(..).for_each(Deliver::deliver);
            deadline = thick.then(|| now + LOOKOUT);
            if thick {
                self.lookout.store(true, Ordering::SeqCst);
            }
        }
    }
}

impl<T: Deliver> Default for Outbox<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    struct Count(Arc<AtomicUsize>);

    impl Deliver for Count {
        fn deliver(self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn delivers_a_batch_per_flush_from_another_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let outbox = Arc::new(Outbox::new());
        let delivered = Arc::new(AtomicUsize::new(0));
        let o = outbox.clone();
        rt.spawn(async move { o.run().await });
        let (o, d) = (outbox.clone(), delivered.clone());
        std::thread::spawn(move || {
            assert!(o.defer(Count(d.clone())));
            assert!(!o.defer(Count(d.clone())));
            assert!(!o.defer(Count(d)));
            o.flush();
        })
        .join()
        .expect("producer");
        rt.block_on(async {
            while delivered.load(Ordering::SeqCst) < 3 {
                tokio::task::yield_now().await;
            }
        });
        // The outbox is empty again, so the next item asks for a flush.
        assert!(outbox.defer(Count(delivered.clone())));
    }

    #[test]
    fn thick_deliveries_need_no_wake_up_and_sparse_ones_get_one() {
        let outbox = Arc::new(Outbox::with_lookout());
        let delivered = Arc::new(AtomicUsize::new(0));
        let o = outbox.clone();
        // The I/O thread of the test; it ends with the process.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move { o.run().await });
        });
        let wait_for = |n: usize| {
            let give_up = std::time::Instant::now() + Duration::from_secs(5);
            while delivered.load(Ordering::SeqCst) < n && std::time::Instant::now() < give_up {
                std::thread::yield_now();
            }
            delivered.load(Ordering::SeqCst) == n
        };
        assert!(!outbox.lookout.load(Ordering::SeqCst));
        // Quick deliveries (two within a look-out) arm it, and then an item deferred with no
        // wake-up at all is delivered by the look-out's timer. A loaded machine may need a few
        // tries to deliver two close together, or to defer before the look-out lapses.
        let mut n = 0;
        let mut by_timer = false;
        while !by_timer && n < 500 {
            if outbox.lookout.load(Ordering::SeqCst) {
                outbox.defer(Count(delivered.clone()));
                n += 1;
                by_timer = wait_for(n);
                if !by_timer {
                    // The look-out lapsed first: deliver it the ordinary way and try again.
                    outbox.flush();
                    assert!(wait_for(n));
                }
            } else {
                n += 1;
                outbox.defer(Count(delivered.clone()));
                outbox.flush_soon();
                assert!(wait_for(n));
            }
        }
        assert!(
            by_timer,
            "deliveries came thick and the look-out delivered one unasked"
        );
        // Quiet for a few look-outs: it stops looking out, so the next one must wake it.
        std::thread::sleep(LOOKOUT * 5);
        assert!(!outbox.lookout.load(Ordering::SeqCst));
    }
}
