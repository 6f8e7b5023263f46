//! The `Server` pyclass: one worker's I/O thread serving one interface, and the loop-thread
//! end of the mailbox (`process`, called by the loop when the mailbox fd is readable).

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::exceptions::{PyIndexError, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;

use super::log::Loggers;
use super::watchdog::{Notifier, Watchdog};
use super::{Host, Interface, LoopEvent};
use crate::bridge::lag::{LoopLag, Tick};
use crate::bridge::Mailbox;
use crate::error::Error;
use crate::http::conn::HttpProtocol;
use crate::http::Http;
use crate::metrics::Slot;
use crate::py::{LoadSlots, Metrics, TlsSettings};
use crate::transport::balance::Balance;
use crate::transport::{listener, Phase};

#[pyclass(frozen, module = "juggler._juggler")]
pub struct Server {
    host: Arc<Host>,
    interface: Arc<dyn Interface>,
    loggers: Arc<Loggers>,
    create_future: PyObject,
    listener: Mutex<Option<(OwnedFd, bool)>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    batch: Mutex<Vec<LoopEvent>>,
    drained: Mutex<(bool, Option<PyObject>)>,
    on_request_limit: Mutex<Option<PyObject>>,
    heartbeat: Mutex<Option<(Duration, PyObject)>>,
    tls: Mutex<Option<Arc<rustls::ServerConfig>>>,
    /// With `--loop-watchdog`: the watchdog, and its thread until `join()`.
    watchdog: Option<Arc<Watchdog>>,
    watchdog_thread: Mutex<Option<JoinHandle<()>>>,
    /// With `--metrics-bind`: this worker's slot in the shared metrics.
    metrics: Mutex<Option<Slot>>,
}

/// With `--metrics-bind` and nothing else probing the loop: how often its lag is measured,
/// and the gauges sampled (WSGI threads). Far below any scrape interval, and ten probes a
/// second cost nothing measurable.
const METRICS_SAMPLE_PERIOD: Duration = Duration::from_millis(100);

impl Server {
    /// Built by an interface pyclass's `server()` method.
    pub fn new(
        py: Python<'_>,
        host: Arc<Host>,
        interface: Arc<dyn Interface>,
        loggers: Arc<Loggers>,
        event_loop: &Bound<'_, PyAny>,
        fd: i32,
        unix: bool,
    ) -> PyResult<Self> {
        let listener = listener::dup_fd(fd).map_err(Error::from)?;
        // Built here, on the loop thread: the stack it will take is this thread's.
        let watchdog = match host.config.loop_watchdog {
            Some(threshold) => Some(Arc::new(Watchdog::new(
                py,
                threshold,
                host.lag.clone(),
                host.current.clone(),
                loggers.clone(),
            )?)),
            None => None,
        };
        Ok(Self {
            host,
            interface,
            loggers,
            create_future: event_loop.getattr(intern!(py, "create_future"))?.unbind(),
            listener: Mutex::new(Some((listener, unix))),
            thread: Mutex::new(None),
            batch: Mutex::new(Vec::with_capacity(64)),
            drained: Mutex::new((false, None)),
            on_request_limit: Mutex::new(None),
            heartbeat: Mutex::new(None),
            tls: Mutex::new(None),
            watchdog,
            watchdog_thread: Mutex::new(None),
            metrics: Mutex::new(None),
        })
    }

    fn set_drained(&self, py: Python<'_>) {
        let fut = {
            let mut d = self.drained.lock();
            d.0 = true;
            d.1.take()
        };
        if let Some(fut) = fut {
            let done = fut
                .call_method0(py, intern!(py, "done"))
                .and_then(|d| d.is_truthy(py));
            if let Ok(false) = done {
                if let Err(e) = fut.call_method1(py, intern!(py, "set_result"), (py.None(),)) {
                    e.print(py);
                }
            }
        }
    }
}

#[pymethods]
impl Server {
    /// The descriptor the loop watches (`loop.add_reader(server.fileno(), server.process)`).
    fn fileno(&self) -> i32 {
        self.host.mailbox.fileno()
    }

    /// Starts accepting on a Tokio thread of its own.
    fn start(&self) -> PyResult<()> {
        let (fd, unix) = self
            .listener
            .lock()
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("server already started"))?;
        let metrics = self.metrics.lock().take();
        if let Some(slot) = &metrics {
            self.host.registry.set_metrics(slot.clone());
        }
        let http = Arc::new(Http {
            config: self.host.config.clone(),
            registry: self.host.registry.clone(),
            dispatch: self.interface.clone(),
            inflight: self.host.inflight.clone(),
            lag: self.host.lag.clone(),
            metrics: metrics.clone(),
        });
        let mailbox = self.host.mailbox.clone();
        let parking = self.interface.clone();
        let loggers = self.loggers.clone();
        let interface = self.interface.clone();
        let beats = self
            .heartbeat
            .lock()
            .as_ref()
            .map(|(every, _)| (*every, self.host.mailbox.clone()));
        let notifier = match &self.watchdog {
            Some(w) => {
                let (notifier, thread) = w.spawn().map_err(Error::from)?;
                *self.watchdog_thread.lock() = Some(thread);
                Some(notifier)
            }
            None => None,
        };
        let probes = self
            .host
            .config
            .loop_probe_period()
            .or(metrics.as_ref().map(|_| METRICS_SAMPLE_PERIOD))
            .map(|every| (every, self.host.lag.clone(), self.host.mailbox.clone()));
        let sampled = metrics.map(|slot| (slot, self.host.lag.clone(), self.interface.clone()));
        let handle = crate::transport::spawn_io_thread(
            fd,
            unix,
            self.host.registry.clone(),
            Arc::new(HttpProtocol::new(http)),
            self.tls.lock().take(),
            move || {
                mailbox.flush();
                parking.on_io_park();
                // Access lines of requests finished since the last park go out together.
                loggers.access_out.flush();
            },
            move || {
                crate::bridge::mailbox::defer_wakeups_on_this_thread();
                interface.on_io_start();
                if let Some((every, mailbox)) = beats {
                    tokio::spawn(async move {
                        let mut ticks = tokio::time::interval(every);
                        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        loop {
                            ticks.tick().await;
                            mailbox.post(LoopEvent::Beat);
                        }
                    });
                }
                if let Some((every, lag, mailbox)) = probes {
                    tokio::spawn(probe_loop(every, lag, mailbox, notifier));
                }
                if let Some((slot, lag, interface)) = sampled {
                    tokio::spawn(sample_gauges(slot, lag, interface));
                }
            },
        )
        .map_err(Error::from)?;
        *self.thread.lock() = Some(handle);
        Ok(())
    }

    /// Drains the mailbox: starts new requests and wakes whatever waits on the loop.
    fn process(&self, py: Python<'_>) {
        let mut batch = std::mem::take(&mut *self.batch.lock());
        self.host.mailbox.drain_into(&mut batch);
        for event in batch.drain(..) {
            match event {
                LoopEvent::Request(req) => self.interface.clone().start(py, req),
                LoopEvent::Wake(w) => w.wake_on_loop(py),
                LoopEvent::Drained => self.set_drained(py),
                LoopEvent::Beat => {
                    let callback = self
                        .heartbeat
                        .lock()
                        .as_ref()
                        .map(|(_, cb)| cb.clone_ref(py));
                    if let Some(cb) = callback {
                        if let Err(e) = cb.call0(py) {
                            self.loggers
                                .error(py, "Exception in the heartbeat callback", Some(&e));
                        }
                    }
                }
                LoopEvent::Probe => {
                    if let (Some(answer), Some(w)) = (self.host.lag.answer(), &self.watchdog) {
                        w.answered(py, answer);
                    }
                }
                LoopEvent::RequestLimit => {
                    let callback = self.on_request_limit.lock().take();
                    if let Some(cb) = callback {
                        if let Err(e) = cb.call0(py) {
                            self.loggers.error(
                                py,
                                "Exception in the request-limit callback",
                                Some(&e),
                            );
                        }
                    }
                }
                LoopEvent::Log(level, msg) => self.loggers.log(py, level, &msg),
                LoopEvent::Access(answer) => {
                    let (info, status, bytes) = *answer;
                    info.log(py, &self.loggers, Some(status), bytes);
                }
            }
        }
        *self.batch.lock() = batch;
    }

    /// Stops accepting and lets open connections finish their current request.
    fn shutdown(&self) {
        self.host.registry.set_phase(Phase::Draining);
    }

    /// Drops every connection at once; apps waiting on the request get a disconnect.
    fn abort(&self) {
        self.host.registry.set_phase(Phase::Abort);
    }

    /// A future that completes once, after `shutdown()`, every connection is closed and
    /// every app call has returned.
    fn wait_drained(&self, py: Python<'_>) -> PyResult<PyObject> {
        let fut = self.create_future.call0(py)?;
        let mut d = self.drained.lock();
        if d.0 {
            fut.call_method1(py, intern!(py, "set_result"), (py.None(),))?;
        } else {
            d.1 = Some(fut.clone_ref(py));
        }
        Ok(fut)
    }

    /// Waits for the Tokio thread to end (after `shutdown` or `abort`).
    fn join(&self, py: Python<'_>) {
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            py.allow_threads(|| {
                let _ = h.join();
            });
        }
        // The I/O thread's end dropped the notifier, which ends the watchdog thread (it may
        // need the GIL for a last report).
        let watchdog = self.watchdog_thread.lock().take();
        if let Some(h) = watchdog {
            py.allow_threads(|| {
                let _ = h.join();
            });
            if let Some(w) = &self.watchdog {
                w.release(py);
            }
        }
        // Threads of the interface may need the GIL to end.
        py.allow_threads(|| self.interface.stop());
        self.loggers.access_out.flush();
    }

    /// Calls `callback()` on the loop thread every `interval` seconds, from a timer on the I/O
    /// thread: the event loop runs it only when it turns, and it costs the loop nothing in
    /// between (a timer on the loop itself would make every turn dearer). Before `start()`.
    fn on_heartbeat(&self, interval: f64, callback: PyObject) -> PyResult<()> {
        if !(interval.is_finite() && interval >= 0.001) {
            return Err(Error::Config(format!(
                "heartbeat interval must be at least 0.001 seconds, got {interval}"
            ))
            .into());
        }
        *self.heartbeat.lock() = Some((Duration::from_secs_f64(interval), callback));
        Ok(())
    }

    /// The event loop's lag as last measured, in seconds (0 unless `--loop-watchdog` or
    /// `--max-loop-lag` has it probed).
    #[getter]
    fn loop_lag(&self) -> f64 {
        self.host.lag.lag().as_secs_f64()
    }

    /// Publishes this worker's open connections in `slots[index]` and, when a connection is
    /// pending, leaves it briefly to a sibling holding fewer (workers sharing one socket).
    /// Before `start()`.
    fn share_load(&self, slots: &LoadSlots, index: usize) -> PyResult<()> {
        if index >= slots.0.capacity() {
            return Err(PyIndexError::new_err(format!(
                "slot {index} of {} does not exist",
                slots.0.capacity()
            )));
        }
        self.host.registry.set_balance(Balance {
            slots: slots.0.clone(),
            me: index,
        });
        Ok(())
    }

    /// Counts this worker's requests, connections and bytes in `metrics[index]`, for the
    /// supervisor's `--metrics-bind`. Before `start()`.
    fn share_metrics(&self, metrics: &Metrics, index: usize) -> PyResult<()> {
        let slot = Slot::new(metrics.0.clone(), index).ok_or_else(|| {
            PyIndexError::new_err(format!(
                "metrics slot {index} of {} does not exist",
                metrics.0.slots()
            ))
        })?;
        *self.metrics.lock() = Some(slot);
        Ok(())
    }

    /// Serves TLS with these settings (a handshake before each connection's HTTP). Before
    /// `start()`.
    fn use_tls(&self, settings: &TlsSettings) {
        *self.tls.lock() = Some(settings.config.clone());
    }

    /// Calls `callback()` on the loop thread once the worker has taken in `max_requests`.
    fn on_request_limit(&self, callback: PyObject) {
        *self.on_request_limit.lock() = Some(callback);
    }

    /// Requests handed to the app since the server started.
    #[getter]
    fn requests(&self) -> u64 {
        self.host.registry.requests()
    }

    /// The app call running longest on a thread of its own (WSGI), as `(seconds, "METHOD
    /// path")`, or None.
    fn longest_call(&self) -> Option<(f64, String)> {
        self.interface
            .longest_call()
            .map(|(age, what)| (age.as_secs_f64(), what))
    }

    #[getter]
    fn connections(&self) -> usize {
        self.host.registry.connections()
    }

    /// Requests taken in whose app has not finished yet (queued WSGI requests included).
    #[getter]
    fn inflight(&self) -> usize {
        self.host
            .inflight
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// App calls still running on threads of their own (WSGI).
    #[getter]
    fn running_calls(&self) -> usize {
        self.host.registry.calls()
    }
}

/// Copies the gauges that are not counted where they change into the worker's metrics slot:
/// the loop's lag, and the interface's threads.
async fn sample_gauges(slot: Slot, lag: Arc<LoopLag>, interface: Arc<dyn Interface>) {
    let mut ticks = tokio::time::interval(METRICS_SAMPLE_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        slot.loop_lag(lag.lag());
        if let Some((alive, busy, queued)) = interface.threads() {
            slot.threads(alive, busy, queued);
        }
    }
}

/// The I/O thread's probing of the loop: a probe into the mailbox whenever the last one was
/// answered, and meanwhile the unanswered one's age, for admission and for the watchdog.
async fn probe_loop(
    every: Duration,
    lag: Arc<LoopLag>,
    mailbox: Arc<Mailbox<LoopEvent>>,
    mut watchdog: Option<Notifier>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let tick = lag.tick();
        if tick == Tick::Post {
            mailbox.post(LoopEvent::Probe);
        }
        if let Some(w) = &mut watchdog {
            w.tick(tick);
        }
    }
}
