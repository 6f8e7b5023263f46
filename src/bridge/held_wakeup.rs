//! A wake-up that the I/O thread holds back while it has more work, so that the thread it
//! would wake (the event loop, a WSGI thread) takes a batch at once instead of taking turns
//! with it per request. Shared by the [`Mailbox`](super::Mailbox) and the WSGI pool, each
//! keeping a `HeldWakeup` under its own lock beside what it queues.
//!
//! A hold ends when the I/O thread is about to park (the owner's flush), when it has grown
//! past [`MAX_HELD`] items or [`MAX_HOLD_TIME`], or when a turn of the I/O thread adds nothing
//! more: the hold's start wakes the owner's overdue task, which Tokio runs after the tasks
//! already queued, and which then [`looks`](HeldWakeup::look). That last way matters when one
//! connection keeps the thread from ever parking (a flood of cheap HTTP/2 frames): without
//! it, every other request would wait for the flood to pause.

use std::task::{Context, Waker};
use std::time::{Duration, Instant};

/// Held wake-ups go out at once past this many items waiting, or this old.
pub const MAX_HELD: usize = 64;
pub const MAX_HOLD_TIME: Duration = Duration::from_millis(1);

/// Whether a wake-up is held back, since when, and who ends it when it is overdue.
#[derive(Default)]
pub struct HeldWakeup {
    since: Option<Instant>,
    /// Items waiting when the overdue task last looked, or when the hold began.
    seen: usize,
    /// The overdue task while it waits for a hold to begin.
    watcher: Option<Waker>,
}

/// What the overdue task does after a [`HeldWakeup::look`].
#[derive(Debug, PartialEq, Eq)]
pub enum Look {
    /// The turn added more: look again after one more turn (wake the task, stay pending).
    Again,
    /// The turn added nothing: the hold is over, deliver the wake-up now.
    Deliver,
    /// Nothing is held: wait to be woken by the next hold.
    Idle,
}

impl HeldWakeup {
    pub fn is_held(&self) -> bool {
        self.since.is_some()
    }

    /// Begins a hold with `waiting` items. Returns the overdue task, for the caller to wake
    /// once its lock is released.
    #[must_use]
    pub fn begin(&mut self, waiting: usize) -> Option<Waker> {
        self.since = Some(Instant::now());
        self.seen = waiting;
        self.watcher.take()
    }

    /// Whether a wake-up may not be held (any longer) with `waiting` items.
    pub fn is_due(&self, waiting: usize) -> bool {
        waiting >= MAX_HELD || self.since.is_some_and(|t| t.elapsed() >= MAX_HOLD_TIME)
    }

    /// Ends the hold. True if there was one: the caller delivers the wake-up.
    pub fn end(&mut self) -> bool {
        self.since.take().is_some()
    }

    /// The overdue task's look, under the owner's lock, with `waiting` items queued now.
    pub fn look(&mut self, waiting: usize, cx: &Context<'_>) -> Look {
        if self.since.is_some() {
            if waiting > self.seen {
                self.seen = waiting;
                return Look::Again;
            }
            self.since = None;
            self.watcher = Some(cx.waker().clone());
            return Look::Deliver;
        }
        self.watcher = Some(cx.waker().clone());
        Look::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_that_adds_nothing_ends_the_hold() {
        let cx = Context::from_waker(Waker::noop());
        let mut hold = HeldWakeup::default();
        assert!(hold.begin(1).is_none(), "no task waits yet");
        assert!(hold.end());
        assert_eq!(hold.look(0, &cx), Look::Idle, "the task waits for a hold");
        assert!(
            hold.begin(1).is_some(),
            "the hold's start hands back the task to wake"
        );
        // The turn that ran before the task queued two more: one more turn.
        assert_eq!(hold.look(3, &cx), Look::Again);
        assert!(hold.is_held());
        assert_eq!(hold.look(3, &cx), Look::Deliver);
        assert!(!hold.is_held() && !hold.end(), "delivered once");
        assert!(
            hold.begin(1).is_some(),
            "the task waits for the next hold again"
        );
    }

    #[test]
    fn a_hold_is_due_when_large_or_old() {
        let mut hold = HeldWakeup::default();
        assert!(!hold.is_due(1));
        assert!(hold.is_due(MAX_HELD), "too many, held or not");
        let _ = hold.begin(1);
        assert!(!hold.is_due(2));
        std::thread::sleep(MAX_HOLD_TIME * 2);
        assert!(hold.is_due(2));
        assert!(hold.end());
    }
}
