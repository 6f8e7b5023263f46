//! Work that the event loop thread hands back to Tokio, collected and delivered in batches.
//!
//! A response head or a body wake-up produced on the loop thread must reach the I/O thread.
//! Waking that thread for each one would cost a cross-thread wake-up (and on a busy core a
//! context switch) per response; instead items pile up here and the loop schedules one
//! [`Outbox::flush`] per iteration (`loop.call_soon`), so a whole iteration's worth of
//! responses crosses with one wake-up. Threads that block anyway (WSGI) deliver directly.

use std::mem;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Something the I/O thread must act on: send a response head, wake a body stream.
pub trait Deliver: Send {
    fn deliver(self);
}

pub struct Outbox<T> {
    queue: Mutex<Vec<T>>,
    ready: Notify,
}

impl<T: Deliver> Outbox<T> {
    pub fn new() -> Self {
        Self {
            queue: Mutex::new(Vec::with_capacity(64)),
            ready: Notify::new(),
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

    /// Runs on the I/O thread for the runtime's lifetime: delivers what each flush announces.
    pub async fn run(&self) {
        let mut batch = Vec::with_capacity(64);
        loop {
            self.ready.notified().await;
            mem::swap(&mut *self.queue.lock(), &mut batch);
            batch.drain(..).for_each(Deliver::deliver);
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
    use std::sync::atomic::{AtomicUsize, Ordering};
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
}
