//! Work that Tokio hands to the event loop thread.
//!
//! Events pile up in a vector and the loop is woken once for the whole pile. On the I/O thread
//! the wake-up is held back until that thread is about to park (or the pile is large or old),
//! because on a busy core every wake-up of the loop thread costs a context switch: waking it
//! per request would make the two threads ping-pong instead of each working through a batch.
//! A thread that never parks (one connection keeping it busy, such as a flood of cheap HTTP/2
//! frames) must not hold a wake-up back for long: [`Mailbox::deliver_overdue`] ends a hold once
//! the thread has run through what it had queued.

use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::mem;
use std::task::Poll;

use parking_lot::Mutex;

use super::held_wakeup::{HeldWakeup, Look};
use super::wakeup::Wakeup;

thread_local! {
    static DEFERS_WAKEUPS: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one that calls [`Mailbox::flush`] before it sleeps.
pub fn defer_wakeups_on_this_thread() {
    DEFERS_WAKEUPS.with(|d| d.set(true));
}

/// Whether the calling thread is one that delivers held-back wake-ups before it sleeps (the
/// I/O thread), so that other queues may hold theirs back too.
pub fn defers_wakeups() -> bool {
    DEFERS_WAKEUPS.with(Cell::get)
}

struct Queue<E> {
    events: Vec<E>,
    /// The wake-up held back while events wait, and [`Mailbox::deliver_overdue`]'s task.
    held: HeldWakeup,
}

pub struct Mailbox<E> {
    queue: Mutex<Queue<E>>,
    wakeup: Wakeup,
}

impl<E> Mailbox<E> {
    pub fn new() -> io::Result<Self> {
        let queue = Queue {
            events: Vec::with_capacity(64),
            held: HeldWakeup::default(),
        };
        Ok(Self {
            queue: Mutex::new(queue),
            wakeup: Wakeup::new()?,
        })
    }

    pub fn fileno(&self) -> i32 {
        self.wakeup.fileno()
    }

    pub fn post(&self, event: E) {
        let defer = DEFERS_WAKEUPS.with(Cell::get);
        let mut watcher = None;
        let notify = {
            let mut q = self.queue.lock();
            let was_empty = q.events.is_empty();
            q.events.push(event);
            if !defer {
                // Also covers events an I/O thread deferred: they go out with this one.
                was_empty | q.held.end()
            } else if was_empty {
                watcher = q.held.begin(1);
                false
            } else {
                // Not held with events waiting: a wake-up is on its way already.
                q.held.is_held() && q.held.is_due(q.events.len()) && q.held.end()
            }
        };
        if notify {
            self.wakeup.notify();
        } else if let Some(w) = watcher {
            w.wake();
        }
    }

    /// Delivers held-back wake-ups; the I/O thread calls it before parking.
    pub fn flush(&self) {
        if self.queue.lock().held.end() {
            self.wakeup.notify();
        }
    }

    /// Runs on the deferring (I/O) thread for its lifetime, so that a hold ends even if the
    /// thread never parks and nothing else is posted (otherwise a single busy connection
    /// would hold every other request back until the next post, a second away when that is
    /// the heartbeat). The post that starts a hold wakes this task, which Tokio runs after
    /// the tasks already queued: if none of them posted more, the thread has nothing more
    /// for this batch and the wake-up goes out now (when the thread is about to park, this is
    /// the flush the park would have done, a moment earlier); while they keep posting, it
    /// looks again after one more turn, and the post limits (MAX_HELD, MAX_HOLD_TIME)
    /// still apply. It costs a task wake and poll per hold (about 300 instructions of a
    /// 92,000-instruction request, `benches/callgrind.sh`); a timer per hold cost twice that,
    /// since registering one wakes the driver (a write and one more turn of the thread) and
    /// it may fire later on an idle thread to find nothing.
    pub async fn deliver_overdue(&self) {
        poll_fn(|cx| {
            let mut q = self.queue.lock();
            let waiting = q.events.len();
            let look = q.held.look(waiting, cx);
            drop(q);
            match look {
                Look::Again => cx.waker().wake_by_ref(),
                Look::Deliver => self.wakeup.notify(),
                Look::Idle => {}
            }
            Poll::<()>::Pending
        })
        .await
    }

    /// Moves every pending event into `into` (which should be empty).
    /// Clearing before swapping means an event posted after the swap always wakes us again.
    pub fn drain_into(&self, into: &mut Vec<E>) {
        self.wakeup.clear();
        let mut q = self.queue.lock();
        mem::swap(&mut q.events, into);
        q.held.end();
    }
}

#[cfg(test)]
mod tests {
    use super::super::held_wakeup::{MAX_HELD, MAX_HOLD_TIME};
    use super::super::wakeup::readable;
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

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

    #[test]
    fn deferring_thread_wakes_on_flush_or_when_the_pile_is_large() {
        let mb = Arc::new(Mailbox::new().expect("mailbox"));
        let fd = mb.fileno();
        let m = mb.clone();
        std::thread::spawn(move || {
            defer_wakeups_on_this_thread();
            m.post(1);
            assert!(!readable(m.fileno()));
            m.flush();
            assert!(readable(m.fileno()));
        })
        .join()
        .expect("thread");
        let mut batch = Vec::new();
        mb.drain_into(&mut batch);
        assert_eq!(batch, vec![1]);
        assert!(!readable(fd));
        let m = mb.clone();
        std::thread::spawn(move || {
            defer_wakeups_on_this_thread();
            (0..MAX_HELD as i32).for_each(|i| m.post(i));
            assert!(readable(m.fileno()));
        })
        .join()
        .expect("thread");
    }

    /// A hold ends while the deferring thread stays busy (never parks) and posts nothing more.
    #[test]
    fn a_held_wake_up_is_delivered_while_the_thread_never_parks() {
        let mb = Arc::new(Mailbox::<i32>::new().expect("mailbox"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let delivered = rt.block_on(async {
            defer_wakeups_on_this_thread();
            let m = mb.clone();
            tokio::spawn(async move { m.deliver_overdue().await });
            tokio::task::yield_now().await;
            mb.post(1);
            assert!(!readable(mb.fileno()), "held back at first");
            // Busy, as under a flood: always a task to run, so the runtime never parks. Bounded
            // by a generous cap; the wake-up comes after MAX_HOLD_TIME.
            let cap = std::time::Instant::now() + Duration::from_secs(10);
            while !readable(mb.fileno()) && std::time::Instant::now() < cap {
                tokio::task::yield_now().await;
            }
            readable(mb.fileno())
        });
        assert!(
            delivered,
            "the held wake-up went out without a park or another post"
        );
    }

    /// How many wake-ups the loop would find (the eventfd's counter), clearing it.
    fn wake_ups(fd: i32) -> u64 {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (none) leaves it 0.
        unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) };
        value
    }

    /// A hold lasts while the tasks run along with it keep posting, and ends when a turn
    /// posts nothing more: one wake-up for the batch, without a park and without a timer
    /// (this runtime has no time driver and no park hook).
    #[test]
    fn a_hold_ends_after_the_turn_that_posts_nothing_more() {
        let mb = Arc::new(Mailbox::<i32>::new().expect("mailbox"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let (second, third, in_time) = rt.block_on(async {
            defer_wakeups_on_this_thread();
            let m = mb.clone();
            tokio::spawn(async move { m.deliver_overdue().await });
            tokio::task::yield_now().await;
            // Queued ahead of the watcher that the first post wakes: posts in the same turn,
            // and queues one more poster behind the watcher's first look.
            let m = mb.clone();
            let second = tokio::spawn(async move {
                m.post(2);
                let m2 = m.clone();
                let third = tokio::spawn(async move {
                    m2.post(3);
                    readable(m2.fileno())
                });
                (readable(m.fileno()), third)
            });
            let start = Instant::now();
            mb.post(1);
            assert!(!readable(mb.fileno()), "held back at first");
            let (second, third) = second.await.expect("second poster");
            let third = third.await.expect("third poster");
            // A machine that stalled past MAX_HOLD_TIME between the posts rightly delivered
            // at the third post; the hold's turns are then not what decided.
            (second, third, start.elapsed() < MAX_HOLD_TIME)
        });
        if in_time {
            assert!(!second, "held while the first turn posts");
            assert!(!third, "held while the next turn posts");
        }
        assert_eq!(wake_ups(mb.fileno()), 1, "one wake-up for the three events");
        let mut batch = Vec::new();
        mb.drain_into(&mut batch);
        assert_eq!(batch, vec![1, 2, 3]);
    }

    #[test]
    fn other_threads_wake_at_once_and_take_deferred_events_along() {
        let mb = Arc::new(Mailbox::new().expect("mailbox"));
        let m = mb.clone();
        std::thread::spawn(move || {
            defer_wakeups_on_this_thread();
            m.post(1);
        })
        .join()
        .expect("thread");
        assert!(!readable(mb.fileno()));
        mb.post(2);
        assert!(readable(mb.fileno()));
    }
}
