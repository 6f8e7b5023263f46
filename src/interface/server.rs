//! The `Server` pyclass: one worker's I/O thread serving one interface, and the loop-thread
//! end of the mailbox (`process`, called by the loop when the mailbox fd is readable).
//!
//! An interface's `server()` builds it whole ([`ServerOptions`]): what it serves with never
//! changes after that, and only what `start()`, the loop and `join()` move on is locked.

pub mod options;
pub mod timers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;

use super::log::Loggers;
use super::watchdog::Watchdog;
use super::{Host, Interface, LoopEvent};
use crate::error::Error;
use crate::http::conn::HttpProtocol;
use crate::http::Http;
use crate::metrics::Slot;
use crate::transport::listener::{self, ListenSocket};
use crate::transport::Phase;
use options::Heartbeat;
pub use options::ServerOptions;
use timers::every;

#[pyclass(frozen, module = "juggler._juggler")]
pub struct Server {
    host: Arc<Host>,
    interface: Arc<dyn Interface>,
    loggers: Arc<Loggers>,
    create_future: PyObject,
    /// With `--ssl-certfile`: a handshake before each connection's HTTP.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// With `--timeout-worker`: the worker's sign of life to the supervisor.
    heartbeat: Option<Heartbeat>,
    /// With `--max-requests`: asks the supervisor for a replacement.
    on_request_limit: Option<PyObject>,
    /// With `--metrics-bind`: this worker's slot in the shared metrics.
    metrics: Option<Slot>,
    /// With `--loop-watchdog`: the watchdog (its thread is `watchdog_thread`).
    watchdog: Option<Arc<Watchdog>>,
    /// The listening sockets until `start()` takes them.
    listeners: Mutex<Option<Vec<ListenSocket>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    watchdog_thread: Mutex<Option<JoinHandle<()>>>,
    batch: Mutex<Vec<LoopEvent>>,
    drained: Mutex<(bool, Option<PyObject>)>,
    /// The request-limit callback runs once, whatever the mailbox brings.
    request_limit_called: AtomicBool,
}

/// With `--metrics-bind` and nothing else probing the loop: how often its lag is measured,
/// and the gauges sampled (WSGI threads). Far below any scrape interval, and ten probes a
/// second cost nothing measurable.
const METRICS_SAMPLE_PERIOD: Duration = Duration::from_millis(100);

impl Server {
    /// Built by an interface pyclass's `server()` method, with `options` checked before it
    /// built anything.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        py: Python<'_>,
        host: Arc<Host>,
        interface: Arc<dyn Interface>,
        loggers: Arc<Loggers>,
        event_loop: &Bound<'_, PyAny>,
        first: (i32, bool),
        more: &[(i32, bool)],
        options: ServerOptions,
    ) -> PyResult<Self> {
        let create_future = event_loop.getattr(intern!(py, "create_future"))?.unbind();
        let own = options.own_socket;
        let listeners = std::iter::once(&first)
            .chain(more)
            .map(|&(fd, unix)| {
                Ok(ListenSocket {
                    fd: listener::dup_fd(fd)?,
                    unix,
                    own,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(Error::from)?;
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
        let ServerOptions {
            tls,
            balance,
            metrics,
            heartbeat,
            on_request_limit,
            own_socket: _,
        } = options;
        if let Some(balance) = balance {
            host.registry.set_balance(balance);
        }
        if let Some(slot) = &metrics {
            host.registry.set_metrics(slot.clone());
        }
        Ok(Self {
            create_future,
            host,
            interface,
            loggers,
            tls,
            heartbeat,
            on_request_limit,
            metrics,
            watchdog,
            listeners: Mutex::new(Some(listeners)),
            thread: Mutex::new(None),
            watchdog_thread: Mutex::new(None),
            batch: Mutex::new(Vec::with_capacity(64)),
            drained: Mutex::new((false, None)),
            request_limit_called: AtomicBool::new(false),
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

    /// Calls a callback of the worker's with this server; what it raises is logged, since
    /// the loop's reader callback has nobody to raise it to.
    fn call_back(server: &Bound<'_, Self>, callback: &PyObject, what: &str) {
        let py = server.py();
        if let Err(e) = callback.call1(py, (server,)) {
            let message = format!("Exception in the {what} callback");
            server.get().loggers.error(py, &message, Some(&e));
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
        let sockets = self
            .listeners
            .lock()
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("server already started"))?;
        let http = Arc::new(Http {
            config: self.host.config.clone(),
            registry: self.host.registry.clone(),
            dispatch: self.interface.clone(),
            inflight: self.host.inflight.clone(),
            lag: self.host.lag.clone(),
            metrics: self.metrics.clone(),
        });
        let mailbox = self.host.mailbox.clone();
        let parking = self.interface.clone();
        let loggers = self.loggers.clone();
        let interface = self.interface.clone();
        let overdue = self.host.mailbox.clone();
        let beats = self
            .heartbeat
            .as_ref()
            .map(|h| (h.period, self.host.mailbox.clone()));
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
            .or(self.metrics.as_ref().map(|_| METRICS_SAMPLE_PERIOD))
            .map(|period| {
                let probe =
                    timers::probe(self.host.lag.clone(), self.host.mailbox.clone(), notifier);
                (period, probe)
            });
        let gauges = self
            .metrics
            .clone()
            .map(|slot| timers::sample_gauges(slot, self.host.lag.clone(), self.interface.clone()));
        let handle = crate::transport::spawn_io_thread(
            sockets,
            self.host.registry.clone(),
            Arc::new(HttpProtocol::new(http)),
            self.tls.clone(),
            self.host.config.proxy_protocol.clone(),
            move || {
                mailbox.flush();
                parking.on_io_park();
                // Access lines of requests finished since the last park go out together.
                loggers.access_out.flush();
            },
            move || {
                crate::bridge::mailbox::defer_wakeups_on_this_thread();
                tokio::spawn(async move { overdue.deliver_overdue().await });
                interface.on_io_start();
                if let Some((period, mailbox)) = beats {
                    tokio::spawn(every(period, move || mailbox.post(LoopEvent::Beat)));
                }
                if let Some((period, probe)) = probes {
                    tokio::spawn(every(period, probe));
                }
                if let Some(sample) = gauges {
                    tokio::spawn(every(METRICS_SAMPLE_PERIOD, sample));
                }
            },
        )
        .map_err(Error::from)?;
        *self.thread.lock() = Some(handle);
        Ok(())
    }

    /// Drains the mailbox: starts new requests and wakes whatever waits on the loop.
    fn process(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        let mut batch = std::mem::take(&mut *this.batch.lock());
        this.host.mailbox.drain_into(&mut batch);
        for event in batch.drain(..) {
            match event {
                LoopEvent::Request(req) => this.interface.clone().start(py, req),
                LoopEvent::Wake(w) => w.wake_on_loop(py),
                LoopEvent::Drained => this.set_drained(py),
                LoopEvent::Beat => {
                    if let Some(h) = &this.heartbeat {
                        Self::call_back(slf, &h.callback, "heartbeat");
                    }
                }
                LoopEvent::Probe => {
                    if let (Some(answer), Some(w)) = (this.host.lag.answer(), &this.watchdog) {
                        w.answered(py, answer);
                    }
                }
                LoopEvent::RequestLimit => {
                    if let Some(cb) = &this.on_request_limit {
                        if !this.request_limit_called.swap(true, Ordering::Relaxed) {
                            Self::call_back(slf, cb, "request-limit");
                        }
                    }
                }
                LoopEvent::Log(level, msg) => this.loggers.log(py, level, &msg),
                LoopEvent::Access(answer) => {
                    let (info, status, bytes) = *answer;
                    info.log(py, &this.loggers, Some(status), bytes);
                }
            }
        }
        *this.batch.lock() = batch;
    }

    /// Health checks (`--health-path`) answer 503 from now on, while everything else is served
    /// as before: the load balancer's cue to stop sending here (`--shutdown-delay`).
    fn leave(&self) {
        self.host.registry.set_leaving();
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

    /// The event loop's lag as last measured, in seconds (0 unless `--loop-watchdog` or
    /// `--max-loop-lag` has it probed).
    #[getter]
    fn loop_lag(&self) -> f64 {
        self.host.lag.lag().as_secs_f64()
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
        self.host.inflight.load(Ordering::Relaxed)
    }

    /// App calls still running on threads of their own (WSGI).
    #[getter]
    fn running_calls(&self) -> usize {
        self.host.registry.calls()
    }
}

#[cfg(test)]
mod tests;
