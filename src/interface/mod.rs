//! What every interface (ASGI, WSGI) plugs into: the [`Interface`] trait, the worker's
//! [`Host`] (mailbox to the loop thread, registry, counters), and the `Server` pyclass that
//! runs the I/O thread for any interface. A new interface is a new folder implementing the
//! trait, with a pyclass whose `server()` method builds the `Server`.

pub mod access;
pub mod access_out;
pub mod log;
pub mod server;
pub mod watchdog;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use pyo3::prelude::*;

use crate::bridge::lag::LoopLag;
use crate::bridge::Mailbox;
use crate::config::CoreConfig;
use crate::http::{Dispatch, NewRequest};
use crate::transport::{LogLevel, Registry, Report};

/// An interface: takes requests on the I/O thread ([`Dispatch`]) and, for those it posts to
/// the loop thread, starts them there.
pub trait Interface: Dispatch {
    /// Loop thread, GIL held: a request this interface posted as [`LoopEvent::Request`].
    fn start(self: Arc<Self>, py: Python<'_>, request: Box<NewRequest>);
    /// I/O thread, inside the runtime, before the first connection is accepted.
    fn on_io_start(&self) {}
    /// I/O thread, each time it is about to sleep: deliver wake-ups held back meanwhile.
    fn on_io_park(&self) {}
    /// After the I/O thread ended, without the GIL: end threads of the interface's own.
    fn stop(&self) {}
    /// The app call that has been running longest on a thread of its own (WSGI): for how
    /// long, and which request it serves. Read by the worker's heartbeat.
    fn longest_call(&self) -> Option<(std::time::Duration, String)> {
        None
    }
    /// Threads of the interface's own (WSGI): (alive, running a call, calls waiting), for
    /// `--metrics-bind`.
    fn threads(&self) -> Option<(usize, usize, usize)> {
        None
    }
}

/// Something parked on the loop thread that can go on; woken with the GIL held.
pub trait LoopWake: Send + Sync {
    fn wake_on_loop(self: Arc<Self>, py: Python<'_>);
}

/// What the I/O thread (and WSGI threads) hand to the event loop thread.
pub enum LoopEvent {
    Request(Box<NewRequest>),
    Wake(Arc<dyn LoopWake>),
    /// After shutdown began, the last connection closed and the last app call returned.
    Drained,
    /// `--max-requests` reached: the worker should be recycled.
    RequestLimit,
    /// The heartbeat's timer fired on the I/O thread; the loop answers when it turns.
    Beat,
    /// A probe of the loop's lag ([`crate::bridge::lag`]), answered when the loop turns.
    Probe,
    /// A message for `juggler.error`.
    Log(LogLevel, String),
    /// The access line of a request the server answered itself, for Python's logging.
    Access(Box<(access::AccessInfo, http::StatusCode, u64)>),
}

impl Report for Mailbox<LoopEvent> {
    fn log(&self, level: LogLevel, message: String) {
        self.post(LoopEvent::Log(level, message));
    }

    fn drained(&self) {
        self.post(LoopEvent::Drained);
    }

    fn request_limit_reached(&self) {
        self.post(LoopEvent::RequestLimit);
    }
}

/// One worker's shared state below the interface.
pub struct Host {
    pub config: CoreConfig,
    pub mailbox: Arc<Mailbox<LoopEvent>>,
    pub registry: Arc<Registry>,
    pub inflight: Arc<AtomicUsize>,
    /// How far behind the event loop is (probed only when an option needs it).
    pub lag: Arc<LoopLag>,
    /// Which request the loop is stepping, for the watchdog (`--loop-watchdog`).
    pub current: Arc<watchdog::CurrentRequest>,
}

impl Host {
    /// A host for `config`, and the loggers its interface writes to.
    pub fn with_loggers(
        py: Python<'_>,
        config: &CoreConfig,
        error_logger: &PyObject,
        access_logger: &PyObject,
    ) -> PyResult<(Arc<Self>, Arc<log::Loggers>)> {
        let host = Self::new(config.clone()).map_err(crate::error::Error::from)?;
        let loggers = log::Loggers::new(
            py,
            error_logger.clone_ref(py),
            access_logger.clone_ref(py),
            config,
        )?;
        Ok((host, Arc::new(loggers)))
    }

    pub fn new(config: CoreConfig) -> std::io::Result<Arc<Self>> {
        let mailbox = Arc::new(Mailbox::new()?);
        let request_limit = config.max_requests;
        Ok(Arc::new(Self {
            config,
            registry: Registry::new(mailbox.clone(), request_limit),
            mailbox,
            inflight: Arc::new(AtomicUsize::new(0)),
            lag: Arc::new(LoopLag::new()),
            current: Arc::new(watchdog::CurrentRequest::default()),
        }))
    }
}

#[cfg(test)]
pub(crate) mod test_support;
