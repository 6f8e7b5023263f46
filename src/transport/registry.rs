//! What is open in one worker (connections, and app calls still running on their own threads),
//! and the shutdown phase every connection watches.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::watch;

use super::balance::Balance;
use crate::metrics::Slot;

/// Shutdown phases, broadcast to the accept loop and every connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    Running,
    /// Stop accepting; finish in-flight requests; close idle keep-alive connections.
    Draining,
    /// Drop every connection now.
    Abort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Warning,
}

/// How the transport tells the layer above about itself, from the I/O thread.
pub trait Report: Send + Sync + 'static {
    fn log(&self, level: LogLevel, message: String);
    /// After shutdown began, the last connection closed and the last app call returned.
    fn drained(&self);
    /// The worker has taken in as many requests as `--max-requests` allows it (once).
    fn request_limit_reached(&self) {}
}

pub struct Registry {
    phase: watch::Sender<Phase>,
    connections: AtomicUsize,
    /// App calls that outlive their connection's task (WSGI threads); drain waits for them.
    calls: AtomicUsize,
    /// Requests taken in since the worker started.
    requests: AtomicU64,
    /// `requests` at which `request_limit_reached` is reported (0: never).
    request_limit: u64,
    report: Arc<dyn Report>,
    /// This worker's place among siblings sharing the listening socket, if any.
    balance: OnceLock<Balance>,
    /// Where this worker counts its connections (`--metrics-bind`).
    metrics: OnceLock<Slot>,
    /// The worker is leaving (`--shutdown-delay`): health checks fail while it still serves.
    leaving: AtomicBool,
    /// The layer above has more work waiting than it wants: the accept loop takes no new
    /// connection until it lets go, so that they wait in the listen backlog.
    held: watch::Sender<bool>,
}

#[derive(Clone, Copy)]
enum Kind {
    Connection,
    Call,
}

/// Counts one open connection or running call for as long as it lives.
pub struct Token {
    registry: Arc<Registry>,
    kind: Kind,
}

impl Registry {
    pub fn new(report: Arc<dyn Report>, request_limit: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            phase: watch::channel(Phase::Running).0,
            connections: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            request_limit: request_limit.unwrap_or(0),
            report,
            balance: OnceLock::new(),
            metrics: OnceLock::new(),
            leaving: AtomicBool::new(false),
            held: watch::channel(false).0,
        })
    }

    /// Holds (`true`) or resumes accepting new connections; any thread may call it.
    pub fn hold_accepts(&self, hold: bool) {
        self.held
            .send_if_modified(|held| std::mem::replace(held, hold) != hold);
    }

    /// Whether accepting is held, watched by the accept loop.
    pub fn accepts_held(&self) -> watch::Receiver<bool> {
        self.held.subscribe()
    }

    /// Joins the siblings' connection counts; before the accept loop starts.
    pub fn set_balance(&self, balance: Balance) {
        balance.publish(self.connections());
        let _ = self.balance.set(balance);
    }

    pub fn balance(&self) -> Option<&Balance> {
        self.balance.get()
    }

    /// Counts connections (and, through [`crate::watched_io`], their bytes) in `slot`; before
    /// the accept loop starts.
    pub fn set_metrics(&self, slot: Slot) {
        let _ = self.metrics.set(slot);
    }

    pub fn metrics(&self) -> Option<&Slot> {
        self.metrics.get()
    }

    /// Counts a request handed to the app; reports once when the limit is reached.
    pub fn count_request(&self) {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.request_limit {
            self.report.request_limit_reached();
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> &dyn Report {
        &*self.report
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// From now on health checks fail, so that load balancers stop sending here, while
    /// everything else is served as before; the drain comes later (`--shutdown-delay`).
    pub fn set_leaving(&self) {
        self.leaving.store(true, Ordering::Relaxed);
    }

    /// Whether health checks should fail: leaving, or no longer running.
    pub fn unhealthy(&self) -> bool {
        self.leaving.load(Ordering::Relaxed) || self.phase() != Phase::Running
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Acquire)
    }

    pub fn connection(self: &Arc<Self>) -> Token {
        let n = self.connections.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(b) = self.balance.get() {
            b.publish(n);
        }
        if let Some(m) = self.metrics.get() {
            m.connection_opened();
        }
        Token {
            registry: self.clone(),
            kind: Kind::Connection,
        }
    }

    pub fn call(self: &Arc<Self>) -> Token {
        self.calls.fetch_add(1, Ordering::AcqRel);
        Token {
            registry: self.clone(),
            kind: Kind::Call,
        }
    }

    /// Reports `drained` if shutdown began and nothing is open; the accept loop checks once
    /// when it stops, the last token to go checks again.
    pub fn check_drained(&self) {
        if self.phase() != Phase::Running && self.connections() == 0 && self.calls() == 0 {
            self.report.drained();
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        let counter = match self.kind {
            Kind::Connection => &self.registry.connections,
            Kind::Call => &self.registry.calls,
        };
        let left = counter.fetch_sub(1, Ordering::AcqRel) - 1;
        if let (Kind::Connection, Some(m)) = (self.kind, self.registry.metrics.get()) {
            m.connection_closed();
        }
        if let (Kind::Connection, Some(b)) = (self.kind, self.registry.balance.get()) {
            if self.registry.phase() == Phase::Running {
                b.publish(left);
            }
        }
        if left == 0 {
            self.registry.check_drained();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Seen(Mutex<usize>, Mutex<usize>);

    impl Report for Seen {
        fn log(&self, _: LogLevel, _: String) {}
        fn drained(&self) {
            *self.0.lock() += 1;
        }
        fn request_limit_reached(&self) {
            *self.1.lock() += 1;
        }
    }

    #[test]
    fn open_connections_are_published_for_siblings_while_running() {
        use crate::transport::balance::{Balance, SharedSlots};
        let slots = Arc::new(SharedSlots::new(2).expect("mmap"));
        let reg = Registry::new(Arc::new(Seen::default()), None);
        reg.set_balance(Balance {
            slots: slots.clone(),
            me: 1,
        });
        assert!(reg.balance().is_some());
        assert_eq!(slots.get(1), Some(0));
        let a = reg.connection();
        let b = reg.connection();
        assert_eq!((reg.connections(), slots.get(1)), (2, Some(2)));
        drop(a);
        assert_eq!(slots.get(1), Some(1));
        // Draining: the worker left the balance; closing connections must not rejoin it.
        reg.set_phase(Phase::Draining);
        slots.set(1, None);
        drop(b);
        assert_eq!(slots.get(1), None);
    }

    #[test]
    fn request_limit_is_reported_once_when_reached() {
        let seen = Arc::new(Seen::default());
        let reg = Registry::new(seen.clone(), Some(3));
        reg.count_request();
        reg.count_request();
        assert_eq!(*seen.1.lock(), 0);
        reg.count_request();
        assert_eq!(*seen.1.lock(), 1);
        reg.count_request();
        assert_eq!((*seen.1.lock(), reg.requests()), (1, 4));
        let unlimited = Registry::new(seen.clone(), None);
        (0..5).for_each(|_| unlimited.count_request());
        assert_eq!(*seen.1.lock(), 1);
    }

    #[test]
    fn drained_once_connections_and_calls_are_gone_after_shutdown() {
        let seen = Arc::new(Seen::default());
        let reg = Registry::new(seen.clone(), None);
        let conn = reg.connection();
        let call = reg.call();
        drop(reg.connection());
        assert_eq!(*seen.0.lock(), 0, "still running: no drain report");
        reg.set_phase(Phase::Draining);
        drop(conn);
        assert_eq!(*seen.0.lock(), 0, "a call is still running");
        drop(call);
        assert_eq!(*seen.0.lock(), 1);
        assert_eq!((reg.connections(), reg.calls()), (0, 0));
    }
}
