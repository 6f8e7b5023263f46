//! State shared by the accept loop, every connection task and the loop thread of one worker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::request::Parts;
use pyo3::sync::GILOnceCell;
use pyo3::PyObject;
use std::task::Waker;

use http::Response;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch, Notify};

use crate::bridge::Mailbox;
use crate::config::CoreConfig;
use crate::http::body::ResponseBody;
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

/// Wake-ups of the I/O thread that the loop thread collects and hands over once per loop
/// iteration, instead of paying a cross-thread wake-up (and on a busy core, a context switch)
/// for every response.
pub enum Deferred {
    Respond(
        oneshot::Sender<Response<ResponseBody>>,
        Response<ResponseBody>,
    ),
    Wake(Waker),
}

pub struct Shared {
    pub config: CoreConfig,
    pub mailbox: Mailbox<Event>,
    outbox: Mutex<Vec<Deferred>>,
    outbox_ready: Notify,
    pub inflight: AtomicUsize,
    pub connections: AtomicUsize,
    pub phase: watch::Sender<Phase>,
}

impl Shared {
    pub fn new(config: CoreConfig) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            config,
            mailbox: Mailbox::new()?,
            outbox: Mutex::new(Vec::with_capacity(64)),
            outbox_ready: Notify::new(),
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

    /// Queues a hand-over; true if the outbox was empty, so the caller must arrange a
    /// [`Shared::flush_outbox`] (the loop does it with `call_soon`, at the end of its iteration).
    pub fn defer(&self, item: Deferred) -> bool {
        let mut q = self.outbox.lock();
        q.push(item);
        q.len() == 1
    }

    /// One wake-up of the I/O thread for everything deferred so far.
    pub fn flush_outbox(&self) {
        self.outbox_ready.notify_one();
    }

    /// Runs on the I/O thread: completes deferred hand-overs as they are flushed.
    pub async fn outbox_loop(&self) {
        let mut batch = Vec::with_capacity(64);
        loop {
            self.outbox_ready.notified().await;
            std::mem::swap(&mut *self.outbox.lock(), &mut batch);
            for item in batch.drain(..) {
                match item {
                    // A dropped receiver means the client left; the guard already said so.
                    Deferred::Respond(tx, response) => drop(tx.send(response)),
                    Deferred::Wake(waker) => waker.wake(),
                }
            }
        }
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
