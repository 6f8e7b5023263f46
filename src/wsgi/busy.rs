//! Which request each pool thread is running, and since when it last made progress: the
//! worker's heartbeat reads the oldest so that the supervisor can recycle a worker whose call
//! hangs (threads cannot be cancelled), while a long download that keeps sending is left be.
//! A call costs two uncontended lock round-trips on its own thread's slot and no allocation
//! once the slot's text buffer has grown.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Default)]
struct Slot {
    call: Mutex<Call>,
}

#[derive(Default)]
struct Call {
    /// When the running call last made progress (None when the thread is idle).
    since: Option<Instant>,
    /// Waiting for the client (to send the body, or to take the response): not the app's
    /// doing, and bounded by `--timeout-write`.
    on_client: bool,
    /// `METHOD path`.
    what: String,
}

#[derive(Default)]
pub struct Busy {
    slots: Mutex<Vec<Arc<Slot>>>,
}

thread_local! {
    /// The slot of the pool thread this is, set for the thread's whole life.
    static SLOT: RefCell<Option<Arc<Slot>>> = const { RefCell::new(None) };
}

impl Busy {
    /// Runs a pool thread's main function with a slot of its own.
    pub fn with_slot(&self, main: impl FnOnce()) {
        let slot = Arc::new(Slot::default());
        self.slots.lock().push(slot.clone());
        SLOT.with(|s| *s.borrow_mut() = Some(slot.clone()));
        main();
        SLOT.with(|s| *s.borrow_mut() = None);
        self.slots.lock().retain(|s| !Arc::ptr_eq(s, &slot));
    }

    /// Marks this thread busy with `method path` until the returned guard drops.
    pub fn enter(method: &str, path: &str) -> CallGuard {
        let slot = SLOT.with(|s| s.borrow().clone());
        if let Some(slot) = &slot {
            let mut call = slot.call.lock();
            call.since = Some(Instant::now());
            call.on_client = false;
            call.what.clear();
            call.what.push_str(method);
            call.what.push(' ');
            call.what.push_str(path);
        }
        CallGuard(slot)
    }

    /// The call on this thread made progress (sent a chunk): its age starts again.
    pub fn progress() {
        SLOT.with(|s| {
            if let Some(slot) = &*s.borrow() {
                let mut call = slot.call.lock();
                if call.since.is_some() {
                    call.since = Some(Instant::now());
                }
            }
        });
    }

    /// This thread's call waits for the client until the guard drops; the time does not
    /// count, and the call's age starts again after.
    pub fn waiting_on_client() -> ClientWait {
        let slot = SLOT.with(|s| s.borrow().clone());
        if let Some(slot) = &slot {
            slot.call.lock().on_client = true;
        }
        ClientWait(slot)
    }

    /// The call without progress for longest: its age and its `method path`.
    pub fn longest(&self) -> Option<(Duration, String)> {
        let slots = self.slots.lock();
        let mut oldest: Option<(Instant, String)> = None;
        for slot in slots.iter() {
            let call = slot.call.lock();
            if let (Some(since), false) = (call.since, call.on_client) {
                if oldest.as_ref().is_none_or(|(t, _)| since < *t) {
                    oldest = Some((since, call.what.clone()));
                }
            }
        }
        oldest.map(|(since, what)| (since.elapsed(), what))
    }
}

pub struct CallGuard(Option<Arc<Slot>>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(slot) = &self.0 {
            slot.call.lock().since = None;
        }
    }
}

pub struct ClientWait(Option<Arc<Slot>>);

impl Drop for ClientWait {
    fn drop(&mut self) {
        if let Some(slot) = &self.0 {
            let mut call = slot.call.lock();
            call.on_client = false;
            if call.since.is_some() {
                call.since = Some(Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_running_call_is_reported_until_it_ends() {
        let busy = Arc::new(Busy::default());
        assert!(busy.longest().is_none());
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
        let b = busy.clone();
        let first = std::thread::spawn(move || {
            b.with_slot(|| {
                let _g = Busy::enter("GET", "/slow");
                entered_tx.send(()).expect("send");
                end_rx.recv().expect("recv");
            })
        });
        entered_rx.recv().expect("entered");
        std::thread::sleep(Duration::from_millis(5));
        busy.with_slot(|| {
            let _g = Busy::enter("POST", "/quick");
            let (age, what) = busy.longest().expect("two calls run");
            assert_eq!(what, "GET /slow");
            assert!(age >= Duration::from_millis(5));
        });
        end_tx.send(()).expect("send");
        first.join().expect("join");
        busy.with_slot(|| {
            let _g = Busy::enter("GET", "/stream");
            std::thread::sleep(Duration::from_millis(20));
            Busy::progress();
            let (age, _) = busy.longest().expect("a call runs");
            assert!(age < Duration::from_millis(20), "progress restarts the age");
            let waiting = Busy::waiting_on_client();
            assert!(
                busy.longest().is_none(),
                "waiting for the client is not a stall"
            );
            std::thread::sleep(Duration::from_millis(20));
            drop(waiting);
            let (age, _) = busy.longest().expect("a call runs");
            assert!(age < Duration::from_millis(20), "the wait does not count");
        });
        assert!(busy.longest().is_none(), "both calls ended");
        assert!(
            busy.slots.lock().is_empty(),
            "threads that ended leave no slot"
        );
    }

    #[test]
    fn a_thread_without_a_slot_is_not_tracked() {
        let busy = Busy::default();
        let _g = Busy::enter("GET", "/");
        assert!(busy.longest().is_none());
    }

    #[test]
    fn the_oldest_call_wins_whichever_slot_it_is_in_and_an_ended_one_is_gone() {
        let busy = Arc::new(Busy::default());
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let (go_tx, go) = std::sync::mpsc::channel::<()>();
        let (end_tx, end) = std::sync::mpsc::channel::<()>();
        let b = busy.clone();
        // The first slot's call starts last.
        let first = std::thread::spawn(move || {
            b.with_slot(|| {
                ready_tx.send(()).expect("slot");
                go.recv().expect("go");
                let _g = Busy::enter("GET", "/young");
                ready_tx.send(()).expect("entered");
                end.recv().expect("end");
            })
        });
        ready.recv().expect("first slot taken");
        busy.with_slot(|| {
            let g = Busy::enter("GET", "/old");
            std::thread::sleep(Duration::from_millis(5));
            go_tx.send(()).expect("go");
            ready.recv().expect("entered");
            assert_eq!(busy.longest().map(|(_, w)| w), Some("GET /old".into()));
            drop(g);
            assert_eq!(
                busy.longest().map(|(_, w)| w),
                Some("GET /young".into()),
                "an ended call is not reported"
            );
        });
        end_tx.send(()).expect("end");
        first.join().expect("join");
    }
}
