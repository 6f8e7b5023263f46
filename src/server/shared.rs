//! State shared by the accept loop, every connection task and the loop thread of one worker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::request::Parts;
use pyo3::sync::GILOnceCell;
use pyo3::PyObject;
use tokio::sync::watch;

use crate::bridge::Mailbox;
use crate::config::CoreConfig;
use crate::http::exchange::Exchange;

/// Where a connection came from and arrived at; the Python tuples are built once per connection.
pub struct ConnInfo {
    pub client: Option<(String, u16)>,
    pub server: ServerAddr,
    pub client_py: GILOnceCell<PyObject>,
    pub server_py: GILOnceCell<PyObject>,
}

pub enum ServerAddr {
    Tcp(String, u16),
    Unix(String),
}

pub struct NewRequest {
    pub exchange: Arc<Exchange>,
    pub parts: Parts,
    pub conn: Arc<ConnInfo>,
}

pub enum Event {
    Request(Box<NewRequest>),
    /// Something the app waits on changed: body data, room to send, or a disconnect.
    Wake(Arc<Exchange>),
    /// After shutdown began, the last connection closed.
    Drained,
    /// A message for `juggler.error` from the Tokio side.
    Log(LogLevel, String),
}

#[derive(Clone, Copy, Debug)]
pub enum LogLevel {
    Debug,
    Warning,
    Error,
}

/// Shutdown phases, broadcast to the accept loop and every connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    Running,
    /// Stop accepting; finish in-flight requests; close idle keep-alive connections.
    Draining,
    /// Drop every connection now.
    Abort,
}

pub struct Shared {
    pub config: CoreConfig,
    pub mailbox: Mailbox<Event>,
    pub inflight: AtomicUsize,
    pub connections: AtomicUsize,
    pub phase: watch::Sender<Phase>,
}

impl Shared {
    pub fn new(config: CoreConfig) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            config,
            mailbox: Mailbox::new()?,
            inflight: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            phase: watch::channel(Phase::Running).0,
        }))
    }

    pub fn post(&self, event: Event) {
        self.mailbox.post(event);
    }

    pub fn log(&self, level: LogLevel, message: String) {
        self.post(Event::Log(level, message));
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }
}

/// Counts an open connection; the last one to close after shutdown began reports `Drained`.
pub struct ConnectionToken(pub Arc<Shared>);

impl ConnectionToken {
    pub fn new(shared: &Arc<Shared>) -> Self {
        shared.connections.fetch_add(1, Ordering::AcqRel);
        Self(shared.clone())
    }
}

impl Drop for ConnectionToken {
    fn drop(&mut self) {
        let left = self.0.connections.fetch_sub(1, Ordering::AcqRel) - 1;
        if left == 0 && self.0.phase() != Phase::Running {
            self.0.post(Event::Drained);
        }
    }
}
