//! The I/O thread's periodic work: the heartbeat, the probe of the loop's lag, and the
//! sampled metrics gauges, each a plain `FnMut()` run by one [`every`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::bridge::lag::{LoopLag, Tick};
use crate::bridge::Mailbox;
use crate::interface::watchdog::Notifier;
use crate::interface::{Interface, LoopEvent};
use crate::metrics::Slot;

/// A zero period would make Tokio's interval panic; none of the timers means that anyway.
const MIN_PERIOD: Duration = Duration::from_millis(1);

/// Calls `f` at once and then every `period`, for as long as the task lives (the runtime
/// drops it when the I/O thread ends). A tick that comes late, because the thread was busy,
/// pushes the next ones back rather than firing the missed ones in a burst: every timer here
/// samples the present, and a burst would only post the same news several times.
pub async fn every(period: Duration, mut f: impl FnMut()) {
    let mut ticks = tokio::time::interval(period.max(MIN_PERIOD));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        f();
    }
}

/// One probe of the loop: a new probe into the mailbox when the last one was answered, else
/// the unanswered one's age, which raises the known lag (for admission) and may wake the
/// watchdog.
pub fn probe(
    lag: Arc<LoopLag>,
    mailbox: Arc<Mailbox<LoopEvent>>,
    mut watchdog: Option<Notifier>,
) -> impl FnMut() {
    move || {
        let tick = lag.tick();
        if tick == Tick::Post {
            mailbox.post(LoopEvent::Probe);
        }
        if let Some(w) = &mut watchdog {
            w.tick(tick);
        }
    }
}

/// Copies the gauges that are not counted where they change into the worker's metrics slot:
/// the loop's lag, and the interface's threads.
pub fn sample_gauges(slot: Slot, lag: Arc<LoopLag>, interface: Arc<dyn Interface>) -> impl FnMut() {
    move || {
        slot.loop_lag(lag.lag());
        if let Some((alive, busy, queued)) = interface.threads() {
            slot.threads(alive, busy, queued);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use tokio::time::{advance, sleep, Instant};

    /// Spawns `every(period)` recording, in milliseconds since `start`, when each call came.
    fn recorded(period: Duration, start: Instant) -> Arc<Mutex<Vec<u128>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(every(period, move || {
            log.lock().push((Instant::now() - start).as_millis())
        }));
        seen
    }

    /// Lets the spawned timer run whatever is due, without moving the clock.
    async fn settle() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_at_once_then_every_period() {
        let start = Instant::now();
        let seen = recorded(Duration::from_millis(10), start);
        sleep(Duration::from_millis(35)).await;
        assert_eq!(*seen.lock(), [0, 10, 20, 30]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_tick_pushes_the_next_back_instead_of_bursting() {
        let start = Instant::now();
        let seen = recorded(Duration::from_millis(10), start);
        settle().await;
        assert_eq!(*seen.lock(), [0]);
        // The thread was busy through three ticks: one call now, the next a period later.
        advance(Duration::from_millis(35)).await;
        settle().await;
        assert_eq!(*seen.lock(), [0, 35]);
        advance(Duration::from_millis(9)).await;
        settle().await;
        assert_eq!(*seen.lock(), [0, 35]);
        advance(Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(*seen.lock(), [0, 35, 45]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_period_is_a_millisecond_not_a_panic() {
        let start = Instant::now();
        let seen = recorded(Duration::ZERO, start);
        sleep(Duration::from_micros(2500)).await;
        assert_eq!(*seen.lock(), [0, 1, 2]);
    }
}
