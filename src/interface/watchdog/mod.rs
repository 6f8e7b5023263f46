//! The blocked-loop watchdog (`--loop-watchdog SECONDS`): when the event loop has not turned
//! for that long, a thread of ours logs which request the loop is running, for how long it has
//! been stuck, and the loop thread's Python stack down to the line that blocks; when the loop
//! turns again, a second line says for how long it was blocked in all.
//!
//! Who notices: the I/O thread's probing timer ([`crate::bridge::lag`]) sees a probe that the
//! loop has not answered for the threshold and hands its id to the watchdog thread, which
//! takes the stack without the GIL ([`stack`]) and then takes the GIL to name the
//! request and log. Which request: the loop thread publishes the label of the request whose
//! coroutine it is stepping in [`CurrentRequest`] (two stores per step, nothing when the
//! watchdog is off).
//!
//! Never a flood: one report per stall, whatever its length, and reports draw on a budget of
//! [`BURST`] that refills by one every [`REFILL`] (a few distinct stalls in a row are each
//! reported; a loop that stalls all the time logs a report every ten seconds); stalls beyond
//! the budget are counted and the count goes with the next report.

mod stack;

use std::fmt;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http::request::Parts;
use http::{Method, Uri};
use parking_lot::Mutex;
use pyo3::prelude::*;

use crate::bridge::lag::{Answer, LoopLag, Tick};
use crate::interface::log::Loggers;
use crate::transport::LogLevel;
use stack::{format_dump, ThreadStack};

/// Reports that may go out in a row ...
pub const BURST: u32 = 5;
/// ... and how often one more may, once they have.
pub const REFILL: Duration = Duration::from_secs(10);

/// What a request is, for a report: its method and target.
pub struct RequestLabel {
    method: Method,
    uri: Uri,
}

impl RequestLabel {
    /// Cheap: both are shared buffers (or, for the usual methods, a tag).
    pub fn new(parts: &Parts) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
        }
    }
}

impl fmt::Display for RequestLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self
            .uri
            .path_and_query()
            .map_or_else(|| self.uri.path(), |pq| pq.as_str());
        write!(f, "{} {}", self.method, target)
    }
}

/// Which request's coroutine the loop thread is stepping, published for the watchdog.
#[derive(Default)]
pub struct CurrentRequest {
    /// The label of the request being stepped, null between steps. It points into an `Arc`
    /// that the stepping `RunApp` holds, and is set and cleared with the GIL held.
    label: AtomicPtr<RequestLabel>,
    /// Steps begun so far: tells whether the loop moved on between two looks.
    steps: AtomicU64,
}

/// While alive, the loop thread is stepping a request's coroutine.
pub struct Entered<'a> {
    slot: &'a CurrentRequest,
    previous: *mut RequestLabel,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.slot.label.store(self.previous, Ordering::Relaxed);
    }
}

impl CurrentRequest {
    /// Loop thread, GIL held, around one step of `label`'s coroutine. Relaxed stores suffice:
    /// the watchdog reads the label under the GIL, whose hand-over orders them.
    #[inline]
    pub fn enter<'a>(&'a self, label: &Arc<RequestLabel>) -> Entered<'a> {
        let previous = self.label.load(Ordering::Relaxed);
        self.label
            .store(Arc::as_ptr(label).cast_mut(), Ordering::Relaxed);
        // Only the loop thread writes: no read-modify-write needed.
        let steps = self.steps.load(Ordering::Relaxed);
        self.steps.store(steps.wrapping_add(1), Ordering::Relaxed);
        Entered {
            slot: self,
            previous,
        }
    }

    /// Any thread: where the loop is, to compare with a later look (no dereference).
    fn mark(&self) -> (u64, *mut RequestLabel) {
        (
            self.steps.load(Ordering::Relaxed),
            self.label.load(Ordering::Relaxed),
        )
    }

    /// The label of the request being stepped, as text, if the loop is still at `mark`.
    fn describe_if_at(&self, _py: Python<'_>, mark: (u64, *mut RequestLabel)) -> Whose {
        if self.mark() != mark {
            return Whose::MovedOn;
        }
        let label = mark.1;
        if label.is_null() {
            return Whose::NoRequest;
        }
        // SAFETY: we hold the GIL (the `_py` token), and the loop thread sets and clears the
        // slot only while holding it, so the step that published `label` is still running:
        // its `RunApp`, which owns the `Arc` the label lives in, cannot be dropped before the
        // step ends, which needs the GIL back.
        Whose::Request(unsafe { &*label }.to_string())
    }
}

/// Whose code the loop was running when its stack was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Whose {
    Request(String),
    /// A loop callback or a task of the app's own, not a request's coroutine.
    NoRequest,
    /// The loop went on to another step between the stack and the GIL.
    MovedOn,
}

impl fmt::Display for Whose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request(label) => write!(f, "while serving {label}"),
            Self::NoRequest => {
                f.write_str("outside any request (in a loop callback or a task of the app's own)")
            }
            Self::MovedOn => f.write_str(
                "in a request that could not be told (the loop went on to another task while \
                 its stack was taken)",
            ),
        }
    }
}

/// Where one stall's report stands.
#[derive(Debug, Clone, PartialEq)]
enum Stall {
    /// The watchdog thread is taking its stack; if the loop turns meanwhile, how long it was
    /// blocked in all is kept here for the report.
    Reporting { ended: Option<Duration> },
    /// Reported; the loop's turn gets a follow-up line naming this request.
    Reported { whose: Whose },
    /// Counted only (the report budget was spent).
    Counted,
}

/// What the loop thread logs when a stall it took part in ends.
#[derive(Debug, PartialEq)]
enum Ending {
    Nothing,
    FollowUp(Whose),
    /// Over the threshold, but over before the watchdog looked: no stack.
    Unseen {
        unreported: u32,
    },
}

/// How many reports may go out now: a token bucket of [`BURST`] refilled every [`REFILL`].
#[derive(Debug)]
struct Budget {
    tokens: u32,
    /// When the bucket last gained a token (or was found full).
    since: Option<Instant>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            tokens: BURST,
            since: None,
        }
    }
}

impl Budget {
    fn take(&mut self, now: Instant) -> bool {
        let since = *self.since.get_or_insert(now);
        let gained = now.saturating_duration_since(since).as_secs_f64() / REFILL.as_secs_f64();
        // Whole refills only; at most a bucketful, so a long calm does not bank more.
        let gained = gained.min(f64::from(BURST)) as u32;
        if gained > 0 {
            self.tokens = (self.tokens + gained).min(BURST);
            self.since = Some(since + REFILL * gained);
        }
        if self.tokens == BURST {
            self.since = Some(now);
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Report bookkeeping, kept apart from Python so that it can be tested alone.
#[derive(Default)]
struct Ledger {
    stall: Option<(u64, Stall)>,
    budget: Budget,
    /// Stalls not reported since the last report.
    unreported: u32,
}

impl Ledger {
    /// The watchdog thread noticed stall `id`: whether to take its stack and report it.
    fn noticed(&mut self, id: u64, now: Instant) -> bool {
        if matches!(self.stall, Some((seen, _)) if seen == id) {
            return false;
        }
        let report = self.budget.take(now);
        let stall = if report {
            Stall::Reporting { ended: None }
        } else {
            self.unreported += 1;
            Stall::Counted
        };
        self.stall = Some((id, stall));
        report
    }

    /// The report of `id` is about to be logged: how long the loop was blocked in all if it
    /// has turned since, and how many stalls went unreported before it.
    fn reporting(&mut self, id: u64, whose: &Whose) -> (Option<Duration>, u32) {
        let Some((seen, stall)) = &mut self.stall else {
            return (None, 0);
        };
        if *seen != id {
            return (None, 0);
        }
        let ended = match stall {
            Stall::Reporting { ended } => *ended,
            _ => None,
        };
        *stall = if ended.is_some() {
            Stall::Counted
        } else {
            Stall::Reported {
                whose: whose.clone(),
            }
        };
        (ended, std::mem::take(&mut self.unreported))
    }

    /// The loop answered probe `id` after `lag`, over the threshold.
    fn ended(&mut self, id: u64, lag: Duration, now: Instant) -> Ending {
        match &mut self.stall {
            Some((seen, stall)) if *seen == id => match stall {
                Stall::Reporting { ended } => {
                    *ended = Some(lag);
                    Ending::Nothing
                }
                Stall::Reported { whose } => {
                    let whose = whose.clone();
                    *stall = Stall::Counted;
                    Ending::FollowUp(whose)
                }
                Stall::Counted => Ending::Nothing,
            },
            _ => {
                self.stall = Some((id, Stall::Counted));
                if self.budget.take(now) {
                    Ending::Unseen {
                        unreported: std::mem::take(&mut self.unreported),
                    }
                } else {
                    self.unreported += 1;
                    Ending::Nothing
                }
            }
        }
    }
}

pub struct Watchdog {
    threshold: Duration,
    lag: Arc<LoopLag>,
    current: Arc<CurrentRequest>,
    loggers: Arc<Loggers>,
    stack: ThreadStack,
    ledger: Mutex<Ledger>,
    pid: u32,
    /// juggler's own package directory, whose outer frames a report leaves out.
    own_dir: String,
}

/// The I/O thread's end: hands stalls over the threshold to the watchdog thread, once each.
pub struct Notifier {
    threshold: Duration,
    last: u64,
    tx: mpsc::Sender<u64>,
}

impl Notifier {
    pub fn tick(&mut self, tick: Tick) {
        if let Tick::Waiting { id, age } = tick {
            if age >= self.threshold && id != self.last {
                self.last = id;
                let _ = self.tx.send(id);
            }
        }
    }
}

impl Watchdog {
    /// On the loop thread, GIL held (the stack to take is this thread's).
    pub fn new(
        py: Python<'_>,
        threshold: Duration,
        lag: Arc<LoopLag>,
        current: Arc<CurrentRequest>,
        loggers: Arc<Loggers>,
    ) -> PyResult<Self> {
        Ok(Self {
            threshold,
            lag,
            current,
            loggers,
            stack: ThreadStack::of_this_thread(py)?,
            ledger: Mutex::new(Ledger::default()),
            pid: std::process::id(),
            own_dir: own_dir(py).unwrap_or_default(),
        })
    }

    /// Starts the watchdog thread; it ends once the returned notifier is dropped.
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<(Notifier, JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel();
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name("juggler-watchdog".into())
            .spawn(move || {
                while let Ok(id) = rx.recv() {
                    me.report(id);
                }
            })?;
        let notifier = Notifier {
            threshold: self.threshold,
            last: 0,
            tx,
        };
        Ok((notifier, handle))
    }

    /// Watchdog thread: stall `id` went over the threshold.
    fn report(&self, id: u64) {
        if self.lag.waiting() != Some(id) || !self.ledger.lock().noticed(id, Instant::now()) {
            return;
        }
        let mark = self.current.mark();
        let stuck_for = self.lag.age(id).unwrap_or(self.threshold);
        // Without the GIL: a loop stuck in a C call holding it answers all the same.
        let dump = self.stack.take();
        Python::with_gil(|py| {
            let whose = self.current.describe_if_at(py, mark);
            let (ended, unreported) = self.ledger.lock().reporting(id, &whose);
            let stack = match &dump {
                Some(d) => format_dump(py, d, &self.own_dir),
                None => "  (no stack: the loop thread did not answer within 1 s)".to_owned(),
            };
            let mut msg = format!(
                "Event loop of worker [{}] blocked for {:.2} s (--loop-watchdog {}) {whose}",
                self.pid,
                stuck_for.as_secs_f64(),
                self.threshold.as_secs_f64(),
            );
            if let Some(total) = ended {
                msg.push_str(&format!(
                    "; it turned again after {:.2} s in all",
                    total.as_secs_f64()
                ));
            }
            if unreported > 0 {
                msg.push_str(&format!(
                    " ({unreported} more stall(s) since the last report were not logged)"
                ));
            }
            msg.push_str(". The loop thread was at (most recent call last):\n");
            msg.push_str(&stack);
            self.loggers.error(py, &msg, None);
        });
    }

    /// Loop thread, GIL held: the loop answered a probe.
    pub fn answered(&self, py: Python<'_>, answer: Answer) {
        if answer.lag < self.threshold {
            return;
        }
        let ending = self
            .ledger
            .lock()
            .ended(answer.id, answer.lag, Instant::now());
        let blocked = answer.lag.as_secs_f64();
        let msg = match ending {
            Ending::Nothing => return,
            Ending::FollowUp(whose) => format!(
                "Event loop of worker [{}] turned again after being blocked for {blocked:.2} s \
                 ({whose})",
                self.pid
            ),
            Ending::Unseen { unreported } => {
                let mut msg = format!(
                    "Event loop of worker [{}] was blocked for {blocked:.2} s (--loop-watchdog \
                     {}); it turned again before its stack could be taken",
                    self.pid,
                    self.threshold.as_secs_f64()
                );
                if unreported > 0 {
                    msg.push_str(&format!(
                        " ({unreported} more stall(s) since the last report were not logged)"
                    ));
                }
                msg
            }
        };
        self.loggers.log(py, LogLevel::Warning, &msg);
    }

    /// GIL held, once the watchdog thread has ended.
    pub fn release(&self, py: Python<'_>) {
        self.stack.release(py);
    }
}

/// The directory of the `juggler` package, with a trailing separator.
fn own_dir(py: Python<'_>) -> PyResult<String> {
    let init: String = py.import("juggler")?.getattr("__file__")?.extract()?;
    let dir = std::path::Path::new(&init)
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(format!("{dir}{}", std::path::MAIN_SEPARATOR))
}

/// What `RunApp` keeps to publish its request while it steps it (watchdog on).
pub struct Watched {
    pub current: Arc<CurrentRequest>,
    pub label: Arc<RequestLabel>,
}

impl Watched {
    #[inline]
    pub fn enter(&self) -> Entered<'_> {
        self.current.enter(&self.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_stall_is_reported_once_then_followed_up_once() {
        let mut l = Ledger::default();
        let t = Instant::now();
        assert!(l.noticed(7, t));
        assert!(!l.noticed(7, t), "the same stall is not reported twice");
        let whose = Whose::Request("GET /".into());
        assert_eq!(l.reporting(7, &whose), (None, 0));
        assert_eq!(l.ended(7, 500 * MS, t), Ending::FollowUp(whose));
        assert_eq!(l.ended(7, 500 * MS, t), Ending::Nothing, "one follow-up");
    }

    #[test]
    fn a_stall_that_ends_while_its_stack_is_taken_is_told_in_the_report() {
        let mut l = Ledger::default();
        let t = Instant::now();
        assert!(l.noticed(7, t));
        assert_eq!(l.ended(7, 300 * MS, t), Ending::Nothing);
        assert_eq!(l.reporting(7, &Whose::NoRequest), (Some(300 * MS), 0));
        assert_eq!(
            l.ended(7, 300 * MS, t),
            Ending::Nothing,
            "no follow-up after it"
        );
    }

    #[test]
    fn stalls_beyond_the_budget_are_counted_for_the_next_report() {
        let mut l = Ledger::default();
        let t = Instant::now();
        for id in 1..=u64::from(BURST) {
            assert!(
                l.noticed(id, t + MS * id as u32),
                "stall {id} is within the burst"
            );
            l.reporting(id, &Whose::NoRequest);
            assert!(matches!(l.ended(id, 200 * MS, t), Ending::FollowUp(_)));
        }
        assert!(!l.noticed(10, t + 100 * MS), "budget spent: counted");
        assert_eq!(l.ended(10, 200 * MS, t + 300 * MS), Ending::Nothing);
        assert_eq!(
            l.ended(11, 200 * MS, t + 400 * MS),
            Ending::Nothing,
            "unseen, counted"
        );
        assert!(!l.noticed(12, t + REFILL - MS));
        assert!(
            l.noticed(13, t + REFILL + 5 * MS),
            "one more after a refill"
        );
        assert_eq!(l.reporting(13, &Whose::NoRequest), (None, 3));
        assert!(!l.noticed(14, t + REFILL + 6 * MS), "and only one");
    }

    #[test]
    fn the_budget_refills_to_a_burst_at_most() {
        let mut b = Budget::default();
        let t = Instant::now();
        for _ in 0..BURST {
            assert!(b.take(t));
        }
        assert!(!b.take(t));
        let later = t + REFILL * 100;
        for _ in 0..BURST {
            assert!(b.take(later), "a long calm refills the burst ...");
        }
        assert!(!b.take(later), "... and no more");
        assert!(!b.take(later + REFILL / 2));
        assert!(b.take(later + REFILL));
    }

    #[test]
    fn a_stall_over_before_the_watchdog_looked_gets_a_line_of_its_own() {
        let mut l = Ledger::default();
        let t = Instant::now();
        assert_eq!(
            l.ended(5, 120 * MS, t),
            Ending::Unseen { unreported: 0 },
            "over the threshold, never noticed"
        );
        assert_eq!(l.ended(5, 120 * MS, t), Ending::Nothing, "once");
        assert!(!l.noticed(5, t), "a late notice of it is no report");
    }

    #[test]
    fn the_notifier_hands_over_each_stall_once_and_only_over_the_threshold() {
        let (tx, rx) = mpsc::channel();
        let mut n = Notifier {
            threshold: 100 * MS,
            last: 0,
            tx,
        };
        n.tick(Tick::Post);
        n.tick(Tick::Waiting {
            id: 3,
            age: 99 * MS,
        });
        n.tick(Tick::Waiting {
            id: 3,
            age: 100 * MS,
        });
        n.tick(Tick::Waiting {
            id: 3,
            age: 900 * MS,
        });
        n.tick(Tick::Waiting {
            id: 4,
            age: 150 * MS,
        });
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![3, 4]);
    }

    #[test]
    fn the_current_request_is_published_per_step_and_restored_after() {
        let slot = CurrentRequest::default();
        let parts = http::Request::get("/a?b=1")
            .body(())
            .expect("request")
            .into_parts()
            .0;
        let a = Arc::new(RequestLabel::new(&parts));
        let b = Arc::new(RequestLabel::new(&parts));
        assert!(slot.mark().1.is_null());
        {
            let _outer = slot.enter(&a);
            assert_eq!(slot.mark(), (1, Arc::as_ptr(&a).cast_mut()));
            {
                let _inner = slot.enter(&b);
                assert_eq!(slot.mark().1, Arc::as_ptr(&b).cast_mut());
            }
            assert_eq!(slot.mark(), (2, Arc::as_ptr(&a).cast_mut()));
        }
        assert!(slot.mark().1.is_null());
        assert_eq!(a.to_string(), "GET /a?b=1");
    }
}
