//! ASGI 3 over HTTP: requests become app calls on the asyncio event loop thread.

pub mod awaitable;
pub mod finish;
pub mod io;
pub mod scope;
pub mod websocket;

use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bridge::Outbox;
use crate::config::CoreConfig;
use crate::http::exchange::Handover;
use crate::http::{Dispatch, NewRequest, OwnAnswer};
use crate::interface::access::{self, AccessInfo};
use crate::interface::log::Loggers;
use crate::interface::server::{Server, ServerOptions};
use crate::interface::watchdog::{RequestLabel, Watched};
use crate::interface::{Host, Interface, LoopEvent};
use crate::py::{LoadSlots, Metrics, TlsSettings};
use awaitable::Done;
use finish::{RunApp, Target};
use io::{AsgiReceive, AsgiSend, RequestIo};
use scope::ScopeTemplate;
use websocket::WsIo;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AsgiInterface>()?;
    m.add_class::<awaitable::Ready>()?;
    m.add_class::<awaitable::Done>()?;
    m.add_class::<RunApp>()?;
    Ok(())
}

/// `_juggler.AsgiInterface(app, event_loop, state, error_logger, access_logger)`: what an
/// ASGI worker serves; `server()` turns it into a [`Server`].
#[pyclass(frozen, module = "juggler._juggler")]
pub struct AsgiInterface {
    app: PyObject,
    event_loop: PyObject,
    state: Option<Py<PyDict>>,
    error_logger: PyObject,
    access_logger: PyObject,
}

#[pymethods]
impl AsgiInterface {
    #[new]
    #[pyo3(signature = (app, event_loop, state, error_logger, access_logger))]
    fn new(
        app: PyObject,
        event_loop: PyObject,
        state: Option<Py<PyDict>>,
        error_logger: PyObject,
        access_logger: PyObject,
    ) -> Self {
        Self {
            app,
            event_loop,
            state,
            error_logger,
            access_logger,
        }
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
        let event_loop = self.event_loop.bind(py);
        let (host, loggers) =
            Host::with_loggers(py, &config, &self.error_logger, &self.access_logger)?;
        let (create_task, task_kwargs) = task_spawner(py, event_loop)?;
        let outbox = Arc::new(Outbox::new());
        let flush = Py::new(py, FlushOutbox(outbox.clone()))?.into_any();
        let core = Arc::new(AsgiCore {
            app: self.app.clone_ref(py),
            create_task,
            task_kwargs,
            create_future: event_loop.getattr(intern!(py, "create_future"))?.unbind(),
            call_soon: event_loop.getattr(intern!(py, "call_soon"))?.unbind(),
            flush,
            outbox,
            state: self.state.as_ref().map(|s| s.clone_ref(py)),
            loggers: loggers.clone(),
            done: Py::new(py, Done)?,
            scope: ScopeTemplate::new(py, &config.root_path)?,
            host: host.clone(),
        });
        Server::new(
            py,
            host,
            core,
            loggers,
            event_loop,
            (fd, unix),
            &more_listeners,
            options,
        )
    }
}

/// `loop.call_soon(flush)`: one wake-up of the I/O thread per loop iteration.
#[pyclass(frozen, module = "juggler._juggler")]
pub struct FlushOutbox(Arc<Outbox<Handover>>);

#[pymethods]
impl FlushOutbox {
    fn __call__(&self) {
        self.0.flush();
    }
}

/// The Python objects one worker's requests need, looked up once.
pub struct AsgiCore {
    pub app: PyObject,
    /// `asyncio.Task` (or the loop's own `create_task` when a task factory is set) ...
    pub create_task: PyObject,
    /// ... and its keyword arguments: the loop, and a fixed name, which spares Python from
    /// formatting "Task-N" for every request.
    pub task_kwargs: Option<Py<PyDict>>,
    pub create_future: PyObject,
    pub call_soon: PyObject,
    /// Hands deferred responses to the I/O thread; scheduled with `call_soon`.
    pub flush: PyObject,
    pub outbox: Arc<Outbox<Handover>>,
    pub state: Option<Py<PyDict>>,
    pub loggers: Arc<Loggers>,
    pub done: Py<Done>,
    pub scope: ScopeTemplate,
    pub host: Arc<Host>,
}

impl AsgiCore {
    /// Queues a hand-over for the I/O thread, scheduling a flush if the outbox was empty.
    pub fn hand_over(&self, py: Python<'_>, handover: Option<Handover>) -> PyResult<()> {
        if let Some(h) = handover {
            if self.outbox.defer(h) {
                self.call_soon.call1(py, (&self.flush,))?;
            }
        }
        Ok(())
    }
}

impl Dispatch for AsgiCore {
    fn dispatch(&self, request: NewRequest) -> Result<(), Box<NewRequest>> {
        self.host
            .mailbox
            .post(LoopEvent::Request(Box::new(request)));
        Ok(())
    }

    fn answered_here(&self, answer: OwnAnswer<'_>) {
        access::log_own_answer(&self.loggers, &self.host.mailbox, answer);
    }
}

impl Interface for AsgiCore {
    fn start(self: Arc<Self>, py: Python<'_>, request: Box<NewRequest>) {
        start_request(py, self, request);
    }

    fn on_io_start(&self) {
        let outbox = self.outbox.clone();
        tokio::spawn(async move { outbox.run().await });
    }
}

/// Calls the app for a new request and schedules it as a task on the loop.
fn start_request(py: Python<'_>, core: Arc<AsgiCore>, req: Box<NewRequest>) {
    let NewRequest {
        exchange,
        parts,
        conn,
        websocket,
        forwarded,
    } = *req;
    let forwarded = forwarded.as_deref();
    let mut access = AccessInfo::capture(&core.loggers, &parts, &conn, forwarded);

    let watched = core.host.config.loop_watchdog.map(|_| Watched {
        current: core.host.current.clone(),
        label: Arc::new(RequestLabel::new(&parts)),
    });
    let io = Arc::new(RequestIo::new(exchange, core));
    let core = io.core.clone();
    let state = core.state.as_ref().map(|s| s.bind(py));
    let (result, target) = match websocket {
        None => {
            let result = (|| -> PyResult<PyObject> {
                let scope = core.scope.build(py, &parts, &conn, state, forwarded)?;
                let receive = Py::new(py, AsgiReceive::new(io.clone()))?;
                let send = Py::new(py, AsgiSend::new(io.clone()))?;
                core.app.call1(py, (scope, receive, send))
            })();
            (result, Target::Http(io))
        }
        Some(session) => {
            let ws = Arc::new(WsIo::new(io, session));
            let result = (|| -> PyResult<PyObject> {
                let protocols = crate::ws::handshake::subprotocols(&parts.headers);
                let scope = core
                    .scope
                    .build_websocket(py, &parts, &conn, state, protocols, forwarded)?;
                let receive = Py::new(py, websocket::WebSocketReceive::new(ws.clone()))?;
                let send = Py::new(py, websocket::WebSocketSend::new(ws.clone()))?;
                core.app.call1(py, (scope, receive, send))
            })();
            (result, Target::WebSocket(ws))
        }
    };
    let result = result.and_then(|coro| {
        let run = Py::new(
            py,
            RunApp::new(coro, target.clone(), access.take(), watched),
        )?;
        let kwargs = core.task_kwargs.as_ref().map(|k| k.bind(py));
        let task = core.create_task.call(py, (run,), kwargs)?;
        if core.host.config.request_timeout.is_some() {
            if let Target::Http(io) = &target {
                let cancel = CancelTask {
                    task: parking_lot::Mutex::new(Some(task)),
                    mailbox: core.host.mailbox.clone(),
                };
                io.exchange.set_canceller(Arc::new(cancel));
            }
        }
        Ok(())
    });
    if let Err(err) = result {
        // The app could not even be called (not an ASGI callable, or it raised at once).
        target.conclude(py, access.as_ref(), finish::Ending::Raised(&err));
    }
}

/// Cancels a request's task on the loop thread once the server answered in its place
/// (`--timeout-request`). The exchange drops it when the app is done, which ends the
/// reference cycle task -> exchange -> task.
struct CancelTask {
    task: parking_lot::Mutex<Option<PyObject>>,
    mailbox: Arc<crate::bridge::Mailbox<LoopEvent>>,
}

impl crate::bridge::AppWaker for CancelTask {
    fn wake(self: Arc<Self>) {
        let mailbox = self.mailbox.clone();
        mailbox.post(LoopEvent::Wake(self));
    }
}

impl crate::interface::LoopWake for CancelTask {
    fn wake_on_loop(self: Arc<Self>, py: Python<'_>) {
        let task = self.task.lock().take();
        if let Some(task) = task {
            if let Err(e) = task.call_method0(py, intern!(py, "cancel")) {
                e.print(py);
            }
        }
    }
}

/// How request tasks are made: `asyncio.Task(coro, loop=loop, name=...)` directly, unless the
/// loop has a task factory, which `loop.create_task` must then go through.
fn task_spawner(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
) -> PyResult<(PyObject, Option<Py<PyDict>>)> {
    let factory = event_loop.call_method0(intern!(py, "get_task_factory"))?;
    if !factory.is_none() {
        return Ok((
            event_loop.getattr(intern!(py, "create_task"))?.unbind(),
            None,
        ));
    }
    let task = py.import("asyncio")?.getattr(intern!(py, "Task"))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "loop"), event_loop)?;
    kwargs.set_item(intern!(py, "name"), intern!(py, "juggler.request"))?;
    Ok((task.unbind(), Some(kwargs.unbind())))
}

/// Declared down here so that the code's line numbers (which name cargo-mutants' mutants)
/// stay those of the commit the first measurement ran on.
#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests;
