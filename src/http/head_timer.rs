//! `--timeout-request-head`: a request head must be complete within a bound of its first
//! byte, however long the connection idled before it. hyper's own header-read timer starts
//! as soon as a connection waits for a head, so it bounds idle keep-alive and slow heads
//! together (it stays the keep-alive timeout); a long keep-alive (behind a load balancer)
//! would otherwise give a slowloris client that long to trickle in a head.
//!
//! The clock watches the connection's reads: bytes that arrive while no request is in
//! progress begin a head and start the clock; hyper calling the service ends the head.
//! A request is in progress from then until hyper drops its response body, so request body
//! bytes, and bytes pipelined behind a long response, never count as a slow head.
//!
//! The same count of requests in progress tells when an HTTP/2 connection has no open
//! stream, and since when ([`HeadClock::idle_for`]): such a connection is closed with GOAWAY
//! after `--timeout-keep-alive`, as an idle HTTP/1.1 connection is by hyper's own timer.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::watched_io::IoWatcher;

struct State {
    /// Requests whose response body hyper still holds.
    active: usize,
    /// When the bytes of a head began to arrive, while one is arriving.
    started: Option<Instant>,
    /// Since when no request has been in progress (the connection's start at first).
    idle_since: Instant,
}

/// One connection's head clock.
pub struct HeadClock {
    state: Mutex<State>,
    started: Notify,
    /// Told when the last request in progress ends.
    idle: Notify,
}

impl Default for HeadClock {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                active: 0,
                started: None,
                idle_since: Instant::now(),
            }),
            started: Notify::new(),
            idle: Notify::new(),
        }
    }
}

impl HeadClock {
    fn on_bytes(&self) {
        let mut s = self.state.lock();
        if s.active == 0 && s.started.is_none() {
            s.started = Some(Instant::now());
            drop(s);
            self.started.notify_one();
        }
    }

    /// hyper parsed a head and calls the service.
    pub fn request_began(&self) {
        let mut s = self.state.lock();
        s.active += 1;
        s.started = None;
    }

    /// hyper is done with a response (its body was dropped).
    pub fn response_done(&self) {
        let mut s = self.state.lock();
        s.active = s.active.saturating_sub(1);
        if s.active == 0 {
            s.idle_since = Instant::now();
            drop(s);
            self.idle.notify_one();
        }
    }

    /// Resolves once no request has been in progress for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        self.held_for(&self.idle, limit, |s| {
            (s.active == 0).then_some(s.idle_since)
        })
        .await
    }

    /// Resolves once a head has been arriving for longer than `limit`.
    pub async fn expired(&self, limit: Duration) {
        self.held_for(&self.started, limit, |s| {
            s.started.filter(|_| s.active == 0)
        })
        .await
    }

    /// Resolves once `since` has named the same instant for `limit`; `changed` is told
    /// whenever what it names may have changed.
    async fn held_for(
        &self,
        changed: &Notify,
        limit: Duration,
        since: impl Fn(&State) -> Option<Instant>,
    ) {
        loop {
            let wake = changed.notified();
            tokio::pin!(wake);
            // Registered before the state is read, so that a change in between still wakes.
            wake.as_mut().enable();
            let start = since(&self.state.lock());
            match start {
                None => wake.await,
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t + limit) => {
                            if since(&self.state.lock()) == Some(t) {
                                return;
                            }
                        }
                        _ = wake => {}
                    }
                }
            }
        }
    }
}

/// Held in a response body; tells the clock when hyper drops it.
pub struct ResponseDone(pub Arc<HeadClock>);

impl Drop for ResponseDone {
    fn drop(&mut self) {
        self.0.response_done();
    }
}

/// A connection's stream notes its reads for its head clock (`Watched<I, Arc<HeadClock>>`).
impl IoWatcher for Arc<HeadClock> {
    fn read(&self, _n: usize) {
        self.on_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_head_expires_and_idle_time_does_not_count() {
        let clock = Arc::new(HeadClock::default());
        let limit = Duration::from_secs(2);
        // Idle for long: nothing expires.
        let idle = tokio::time::timeout(Duration::from_secs(60), clock.expired(limit)).await;
        assert!(idle.is_err());
        clock.on_bytes();
        let t0 = Instant::now();
        clock.expired(limit).await;
        assert_eq!(Instant::now() - t0, limit);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_counts_from_the_start_and_from_the_last_request_ending() {
        let clock = Arc::new(HeadClock::default());
        let limit = Duration::from_secs(5);
        let t0 = Instant::now();
        clock.idle_for(limit).await;
        assert_eq!(
            Instant::now() - t0,
            limit,
            "a connection that never sent a request"
        );

        clock.request_began();
        clock.request_began();
        let busy = tokio::time::timeout(limit * 4, clock.idle_for(limit)).await;
        assert!(busy.is_err(), "never idle while a request is in progress");
        drop(ResponseDone(clock.clone()));
        let one_open = tokio::time::timeout(limit * 4, clock.idle_for(limit)).await;
        assert!(one_open.is_err(), "nor while another stream is open");

        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(ResponseDone(clock.clone()));
        let t1 = Instant::now();
        clock.idle_for(limit).await;
        assert_eq!(
            Instant::now() - t1,
            limit,
            "idle from the last response's end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_during_a_request_do_not_start_the_clock() {
        let clock = Arc::new(HeadClock::default());
        let limit = Duration::from_secs(2);
        clock.on_bytes();
        clock.request_began();
        clock.on_bytes(); // request body, or pipelined behind the response
        let busy = tokio::time::timeout(Duration::from_secs(10), clock.expired(limit)).await;
        assert!(
            busy.is_err(),
            "no head is arriving while a request is in progress"
        );
        drop(ResponseDone(clock.clone()));
        clock.on_bytes();
        let next = tokio::time::timeout(Duration::from_secs(3), clock.expired(limit)).await;
        assert!(next.is_ok(), "the next head is timed");
    }
}
