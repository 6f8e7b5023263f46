//! Work that Tokio hands to the event loop thread. Events pile up in a vector; the loop is
//! woken only when the vector goes from empty to non-empty, so a burst of requests costs one
//! wake-up and one GIL acquisition for the whole batch.

use std::io;
use std::mem;

use parking_lot::Mutex;

use super::wakeup::Wakeup;

pub struct Mailbox<E> {
    queue: Mutex<Vec<E>>,
    wakeup: Wakeup,
}

impl<E> Mailbox<E> {
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            queue: Mutex::new(Vec::with_capacity(64)),
            wakeup: Wakeup::new()?,
        })
    }

    pub fn fileno(&self) -> i32 {
        self.wakeup.fileno()
    }

    pub fn post(&self, event: E) {
        let was_empty = {
            let mut q = self.queue.lock();
            let was_empty = q.is_empty();
            q.push(event);
            was_empty
        };
        if was_empty {
            self.wakeup.notify();
        }
    }

    /// Moves every pending event into `into` (which should be empty).
    /// Clearing before swapping means an event posted after the swap always wakes us again.
    pub fn drain_into(&self, into: &mut Vec<E>) {
        self.wakeup.clear();
        mem::swap(&mut *self.queue.lock(), into);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn batches_and_keeps_order_across_threads() {
        let mb = Arc::new(Mailbox::new().expect("mailbox"));
        let producers: Vec<_> = (0..4)
            .map(|t| {
                let mb = mb.clone();
                std::thread::spawn(move || (0..1000).for_each(|i| mb.post((t, i))))
            })
            .collect();
        let mut seen = vec![Vec::new(); 4];
        let mut batch = Vec::new();
        let mut total = 0;
        while total < 4000 {
            mb.drain_into(&mut batch);
            for (t, i) in batch.drain(..) {
                seen[t].push(i);
                total += 1;
            }
        }
        producers
            .into_iter()
            .for_each(|p| p.join().expect("producer"));
        for s in seen {
            assert_eq!(s, (0..1000).collect::<Vec<_>>());
        }
    }
}
