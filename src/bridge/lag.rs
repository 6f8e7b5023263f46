//! How far behind the event loop is (its lag), measured by the crossing itself.
//!
//! A timer on the I/O thread posts a probe into the mailbox; the loop thread answers it when it
//! next drains the mailbox, which it does once per turn. The time between the two is what any
//! event, a new request included, waits before the loop looks at it. While a probe is
//! unanswered its age is a lower bound of the lag, so a loop that stopped turning is seen while
//! it is still stuck, not only once it turns again. The loop carries no timer of its own (a
//! pending asyncio timer makes every turn of the loop dearer), and between probes nothing is
//! paid: answering one is a clock read and two atomic stores.
//!
//! The lag as last known ([`LoopLag::lag`]) is the last answered probe's, raised by the age of
//! the unanswered one at each tick; a request deciding whether to queue behind the loop reads it
//! with one atomic load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a tick of the probing timer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// No probe is out: post one ([`LoopLag::tick`] has recorded when).
    Post,
    /// The probe `id` has waited `age` so far.
    Waiting { id: u64, age: Duration },
}

/// A probe the loop answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The same id its ticks reported while it waited.
    pub id: u64,
    /// How long it waited for the loop.
    pub lag: Duration,
}

pub struct LoopLag {
    base: Instant,
    /// When the unanswered probe was posted, in ns since `base`, plus one (it doubles as the
    /// probe's id); 0 while none is out.
    sent: AtomicU64,
    /// The lag as last known, in ns.
    lag: AtomicU64,
}

impl Default for LoopLag {
    fn default() -> Self {
        Self::new()
    }
}

impl LoopLag {
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            sent: AtomicU64::new(0),
            lag: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    /// The probing timer, on the I/O thread: starts a probe when none is out, or raises the
    /// known lag to the unanswered probe's age.
    pub fn tick(&self) -> Tick {
        let sent = self.sent.load(Ordering::Acquire);
        let now = self.now();
        if sent == 0 {
            self.sent.store(now, Ordering::Release);
            return Tick::Post;
        }
        let age = now.saturating_sub(sent);
        self.lag.fetch_max(age, Ordering::Relaxed);
        Tick::Waiting {
            id: sent,
            age: Duration::from_nanos(age),
        }
    }

    /// The loop thread, when the probe comes through the mailbox.
    pub fn answer(&self) -> Option<Answer> {
        let sent = self.sent.swap(0, Ordering::AcqRel);
        if sent == 0 {
            return None;
        }
        let lag = self.now().saturating_sub(sent);
        self.lag.store(lag, Ordering::Relaxed);
        Some(Answer {
            id: sent,
            lag: Duration::from_nanos(lag),
        })
    }

    /// The unanswered probe, if one is out: its id.
    pub fn waiting(&self) -> Option<u64> {
        match self.sent.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    /// How long probe `id` has waited, if it still waits.
    pub fn age(&self, id: u64) -> Option<Duration> {
        (self.waiting() == Some(id)).then(|| Duration::from_nanos(self.now().saturating_sub(id)))
    }

    /// The lag as last known.
    pub fn lag(&self) -> Duration {
        Duration::from_nanos(self.lag.load(Ordering::Relaxed))
    }

    /// Whether the lag as last known is `bound` or more (one load: asked per request).
    #[inline]
    pub fn exceeds(&self, bound: Duration) -> bool {
        u128::from(self.lag.load(Ordering::Relaxed)) >= bound.as_nanos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_is_posted_once_and_its_age_raises_the_lag_until_answered() {
        let lag = LoopLag::new();
        assert_eq!(lag.answer(), None, "nothing to answer before a probe");
        assert_eq!(lag.tick(), Tick::Post);
        let id = lag.waiting().expect("a probe is out");
        std::thread::sleep(Duration::from_millis(20));
        assert!(lag.age(id).expect("waiting") >= Duration::from_millis(20));
        assert_eq!(
            lag.age(id + 1),
            None,
            "another probe's age is not this one's"
        );
        match lag.tick() {
            Tick::Waiting { id: waiting, age } => {
                assert_eq!(waiting, id, "the same probe, not a second one");
                assert!(age >= Duration::from_millis(20), "{age:?}");
            }
            Tick::Post => panic!("a second probe was posted while one is out"),
        }
        assert!(
            lag.exceeds(Duration::from_millis(20)),
            "the age raised the known lag"
        );
        assert!(!lag.exceeds(Duration::from_secs(10)));
        let answer = lag.answer().expect("the probe");
        assert_eq!(answer.id, id);
        assert!(answer.lag >= Duration::from_millis(20));
        assert_eq!(lag.waiting(), None);
        assert_eq!(lag.age(id), None, "answered: no age");
        assert_eq!(lag.answer(), None, "answered once");
    }

    #[test]
    fn a_quick_answer_brings_the_lag_down_again() {
        let lag = LoopLag::new();
        assert_eq!(lag.tick(), Tick::Post);
        std::thread::sleep(Duration::from_millis(15));
        lag.tick();
        lag.answer();
        assert!(lag.lag() >= Duration::from_millis(15));
        assert_eq!(lag.tick(), Tick::Post);
        let answer = lag.answer().expect("the second probe");
        assert!(answer.lag < Duration::from_millis(15), "{answer:?}");
        assert_eq!(lag.lag(), answer.lag);
        assert!(!lag.exceeds(Duration::from_millis(15)));
    }

    #[test]
    fn probes_answered_on_another_thread() {
        let lag = std::sync::Arc::new(LoopLag::new());
        let mut ids = std::collections::HashSet::new();
        for _ in 0..100 {
            assert_eq!(lag.tick(), Tick::Post);
            let id = lag.waiting().expect("out");
            assert!(ids.insert(id), "every probe has its own id");
            let other = lag.clone();
            let answer = std::thread::spawn(move || other.answer())
                .join()
                .expect("thread");
            assert_eq!(answer.map(|a| a.id), Some(id));
        }
    }
}
