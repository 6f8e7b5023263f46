//! WSGI (PEP 3333): requests become calls of the app on a pool of blocking threads. The GIL
//! is held only while Python runs: a thread waiting for the client, for room to send, or
//! for work, waits with it released; all socket I/O stays on the Tokio thread.

pub mod busy;
pub mod call;
pub mod delivery;
pub mod environ;
pub mod file_wrapper;
pub mod input;
pub mod pool;
pub mod response;
pub mod wait;

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;

use crate::config::CoreConfig;
use crate::http::{Dispatch, NewRequest, OwnAnswer};
use crate::interface::access;
use crate::interface::log::Loggers;
use crate::interface::server::{Server, ServerOptions};
use crate::interface::{Host, Interface};
use crate::options::{self, PoolSize};
use crate::py::{LoadSlots, Metrics, TlsSettings};
use call::{Caller, Job};
use pool::Pool;

/// Idle pool threads end after this long without work.
const IDLE_THREAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Without `--queue-size`, a worker stops accepting connections while this many requests
/// wait for a thread, as a Gunicorn gthread worker does at its 1,000 worker connections:
/// a burst then waits in the listen backlog instead of being refused.
const HOLD_ACCEPTS_AT: usize = 1000;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<WsgiInterface>()?;
    m.add_class::<file_wrapper::FileWrapper>()?;
    Ok(())
}

/// `_juggler.WsgiInterface(app, event_loop, error_logger, access_logger, errors, pool)`: what
/// a WSGI worker serves (`pool` is juggler's `config.wsgi`: threads, queue_size,
/// queue_timeout); `server()` makes the [`Server`].
#[pyclass(frozen, module = "juggler._juggler")]
pub struct WsgiInterface {
    app: PyObject,
    event_loop: PyObject,
    error_logger: PyObject,
    access_logger: PyObject,
    errors: PyObject,
    pool: PoolSize,
}

#[pymethods]
impl WsgiInterface {
    #[new]
    fn new(
        app: PyObject,
        event_loop: PyObject,
        error_logger: PyObject,
        access_logger: PyObject,
        errors: PyObject,
        pool: options::Wsgi,
    ) -> PyResult<Self> {
        Ok(Self {
            app,
            event_loop,
            error_logger,
            access_logger,
            errors,
            pool: pool.pool_size()?,
        })
    }

    /// A server for this app on the listening socket `fd`, with everything it serves with
    /// (see `ServerOptions`); raises before building anything if an option is bad.
    /// `more_listeners`: further listening sockets `(fd, unix)` served alike (systemd's socket
    /// activation can pass several).
    #[pyo3(signature = (config, fd, unix, *, tls=None, load_slot=None, metrics_slot=None, heartbeat=None, on_request_limit=None, own_socket=false, more_listeners=Vec::new()))]
    #[allow(clippy::too_many_arguments)] // Python's keywords
    fn server(
        &self,
        py: Python<'_>,
        config: CoreConfig,
        fd: i32,
        unix: bool,
        tls: Option<Bound<'_, TlsSettings>>,
        load_slot: Option<(Bound<'_, LoadSlots>, usize)>,
        metrics_slot: Option<(Bound<'_, Metrics>, usize)>,
        heartbeat: Option<(f64, PyObject)>,
        on_request_limit: Option<PyObject>,
        own_socket: bool,
        more_listeners: Vec<(i32, bool)>,
    ) -> PyResult<Server> {
        let options = ServerOptions::new(
            tls.as_ref(),
            load_slot,
            metrics_slot,
            heartbeat,
            on_request_limit,
            own_socket,
        )?;
        let (host, loggers) =
            Host::with_loggers(py, &config, &self.error_logger, &self.access_logger)?;
        let file_wrapper = py
            .get_type::<file_wrapper::FileWrapper>()
            .into_any()
            .unbind();
        let delivery = Arc::new(delivery::Delivery::new());
        let caller = Arc::new(Caller {
            app: self.app.clone_ref(py),
            loggers: loggers.clone(),
            environ: environ::EnvironTemplate::new(
                py,
                &config.root_path,
                self.errors.clone_ref(py),
                file_wrapper,
            )?,
            write_timeout: config.write_timeout,
            delivery: delivery.clone(),
            busy: Arc::new(busy::Busy::default()),
            mailbox: host.mailbox.clone(),
        });
        let busy = caller.busy.clone();
        let (bounds, hold) = queue_bounds(&self.pool, &host);
        let pool = Pool::new(self.pool.threads, bounds, hold, IDLE_THREAD_TIMEOUT, caller);
        let core = Arc::new(WsgiCore {
            host: host.clone(),
            loggers: loggers.clone(),
            pool,
            delivery,
            busy,
        });
        Server::new(
            py,
            host,
            core,
            loggers,
            self.event_loop.bind(py),
            (fd, unix),
            &more_listeners,
            options,
        )
    }
}

/// What the pool does as its queue grows: what the operator asked for, and otherwise hold
/// accepting at [`HOLD_ACCEPTS_AT`].
fn queue_bounds(size: &PoolSize, host: &Host) -> (pool::Bounds, Option<pool::Hold>) {
    let bounds = pool::Bounds {
        max_queue: size.queue_size,
        timeout: size.queue_timeout,
        hold_at: size.queue_size.is_none().then_some(HOLD_ACCEPTS_AT),
    };
    let registry = host.registry.clone();
    let hold: pool::Hold = Arc::new(move |hold| registry.hold_accepts(hold));
    (bounds, bounds.hold_at.map(|_| hold))
}

struct WsgiCore {
    host: Arc<Host>,
    loggers: Arc<Loggers>,
    pool: Arc<Pool<Job>>,
    delivery: Arc<delivery::Delivery>,
    busy: Arc<busy::Busy>,
}

impl Dispatch for WsgiCore {
    fn dispatch(&self, request: NewRequest) -> Result<(), Box<NewRequest>> {
        let token = self.host.registry.call();
        self.pool
            .submit(Job { request, token })
            .map_err(|job| Box::new(job.request))
    }

    fn answered_here(&self, answer: OwnAnswer<'_>) {
        access::log_own_answer(&self.loggers, &self.host.mailbox, answer);
    }
}

impl Interface for WsgiCore {
    /// WSGI requests never go through the loop thread.
    fn start(self: Arc<Self>, _py: Python<'_>, _request: Box<NewRequest>) {}

    fn on_io_start(&self) {
        let outbox = self.delivery.outbox();
        tokio::spawn(async move { outbox.run().await });
        tokio::spawn(self.pool.clone().deliver_overdue());
        let pool = self.pool.clone();
        if pool.bounds().timeout.is_some() {
            tokio::spawn(async move { expire_waiting(pool).await });
        }
    }

    fn on_io_park(&self) {
        self.pool.flush_wakeups();
    }

    fn stop(&self) {
        // Idle threads end at once; busy ones are waited for a little (the drain already
        // waited for them up to the graceful time-out).
        self.pool.stop(Duration::from_secs(2));
    }

    fn longest_call(&self) -> Option<(Duration, String)> {
        self.busy.longest()
    }

    fn threads(&self) -> Option<(usize, usize, usize)> {
        Some(self.pool.stats())
    }
}

/// Answers 503 to requests as soon as they have waited past `--queue-timeout`, also while
/// every thread is busy for long: sleeps until the oldest one's time is up.
async fn expire_waiting(pool: Arc<Pool<Job>>) {
    while let Some(next) = pool.expire(std::time::Instant::now()) {
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
}

#[cfg(test)]
mod tests;
