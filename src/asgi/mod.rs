//! ASGI 3 over HTTP: requests become app calls on the asyncio event loop thread.

pub mod awaitable;
pub mod finish;
pub mod io;
pub mod scope;
pub mod websocket;

#[cfg(test)]
pub(crate) mod test_support;

use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bridge::Outbox;
use crate::config::CoreConfig;
use crate::http::exchange::Handover;
use crate::http::{Dispatch, NewRequest};
use crate::interface::access::AccessInfo;
use crate::interface::log::Loggers;
use crate::interface::server::Server;
use crate::interface::watchdog::{RequestLabel, Watched};
use crate::interface::{Host, Interface, LoopEvent};
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

    /// A server for this app on the listening socket `fd`.
    fn server(&self, py: Python<'_>, config: CoreConfig, fd: i32, unix: bool) -> PyResult<Server> {
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
        Server::new(py, host, core, loggers, event_loop, fd, unix)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http::StatusCode;

    use super::*;
    use crate::asgi::test_support::{exchange, module, parts, tcp_conn, with_py, Fixture};
    use crate::http::body::ResponseBody;

    const APPS: &std::ffi::CStr = cr#"
import asyncio
import collections.abc

seen = []

async def echo(scope, receive, send):
    seen.append((scope["type"], scope["path"], asyncio.current_task().get_name()))
    message = await receive()
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": message["body"]})

async def sleeps(scope, receive, send):
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        seen.append("cancelled")
        raise

async def ws(scope, receive, send):
    seen.append((scope["type"], scope["scheme"], scope["subprotocols"]))
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept", "subprotocol": "b"})

def run_tasks(loop):
    """Runs the loop until the tasks it has are done (or 5 s pass)."""
    tasks = asyncio.all_tasks(loop)
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=5))
    loop.run_until_complete(asyncio.sleep(0))
    return len(tasks)

def one_turn(loop):
    loop.run_until_complete(asyncio.sleep(0))

factory_calls = []

def factory(loop, coro, **kwargs):
    factory_calls.append(type(coro).__name__)
    return asyncio.Task(coro, loop=loop, **kwargs)
"#;

    fn register_run_app(py: Python<'_>) {
        let abc = py.import("collections.abc").expect("abc");
        abc.getattr("Coroutine")
            .and_then(|c| c.call_method1("register", (py.get_type::<RunApp>(),)))
            .expect("register");
    }

    fn request(
        exchange: Arc<crate::http::exchange::Exchange>,
        websocket: Option<Arc<crate::ws::Session>>,
        headers: &[(&str, &str)],
    ) -> Box<NewRequest> {
        Box::new(NewRequest {
            exchange,
            parts: parts("GET", "/p", headers),
            conn: Arc::new(tcp_conn()),
            websocket,
            forwarded: None,
        })
    }

    fn status_of(response: &Option<http::Response<ResponseBody>>) -> Option<StatusCode> {
        response.as_ref().map(|r| r.status())
    }

    #[test]
    fn a_request_runs_as_a_named_task_and_its_response_is_flushed_by_the_loop() {
        with_py(|py| {
            register_run_app(py);
            let apps = module(py, APPS);
            let fx = Fixture::serving(py, apps.getattr("echo").expect("app"), |_| {});
            let (ex, mut rx) = exchange(false);
            ex.push_body(Bytes::from_static(b"ping"));
            ex.finish_body();
            start_request(py, fx.core.clone(), request(ex.clone(), None, &[]));
            let ran: usize = apps
                .getattr("run_tasks")
                .and_then(|f| f.call1((&fx.event_loop,)))
                .and_then(|n| n.extract())
                .expect("run");
            assert_eq!(ran, 1);
            assert_eq!(
                apps.getattr("seen")
                    .expect("seen")
                    .repr()
                    .expect("repr")
                    .to_string(),
                "[('http', '/p', 'juggler.request')]"
            );
            // Delivered by the flush the loop ran, not by the test's.
            let mut response = fx.delivered_if_flushed(&mut rx);
            assert_eq!(status_of(&response), Some(StatusCode::OK));
            let body = response
                .as_mut()
                .map(|r| crate::asgi::test_support::body_now(r.body_mut()));
            assert_eq!(body, Some((b"ping".to_vec(), true)));
            assert!(fx.lines().is_empty());
        })
    }

    #[test]
    fn a_loop_with_a_task_factory_makes_the_tasks() {
        with_py(|py| {
            register_run_app(py);
            let apps = module(py, APPS);
            let fx = Fixture::serving(py, apps.getattr("echo").expect("app"), |_| {});
            // The spawner is chosen when the core is made: make it again with the factory set.
            fx.event_loop
                .call_method1("set_task_factory", (apps.getattr("factory").expect("f"),))
                .expect("factory");
            let (task, kwargs) = task_spawner(py, &fx.event_loop).expect("spawner");
            assert!(kwargs.is_none());
            assert!(task
                .bind(py)
                .eq(fx.event_loop.getattr("create_task").expect("ct"))
                .expect("eq"));
            let core = Arc::new(AsgiCore {
                create_task: task,
                task_kwargs: kwargs,
                app: fx.core.app.clone_ref(py),
                create_future: fx.core.create_future.clone_ref(py),
                call_soon: fx.core.call_soon.clone_ref(py),
                flush: fx.core.flush.clone_ref(py),
                outbox: fx.core.outbox.clone(),
                state: None,
                loggers: fx.core.loggers.clone(),
                done: fx.core.done.clone_ref(py),
                scope: ScopeTemplate::new(py, "").expect("scope"),
                host: fx.core.host.clone(),
            });
            let (ex, mut rx) = exchange(false);
            ex.finish_body();
            start_request(py, core, request(ex, None, &[]));
            apps.getattr("run_tasks")
                .and_then(|f| f.call1((&fx.event_loop,)))
                .expect("run");
            let calls = apps.getattr("factory_calls").expect("calls");
            assert_eq!(calls.get_item(0).expect("first").to_string(), "RunApp");
            assert_eq!(
                status_of(&fx.delivered_if_flushed(&mut rx)),
                Some(StatusCode::OK)
            );
        })
    }

    #[test]
    fn an_app_that_cannot_be_called_is_answered_500_and_logged() {
        with_py(|py| {
            let not_an_app = 5i32.into_pyobject(py).expect("int").into_any();
            let fx = Fixture::serving(py, not_an_app, |_| {});
            let (ex, mut rx) = exchange(false);
            start_request(py, fx.core.clone(), request(ex, None, &[]));
            assert_eq!(
                status_of(&fx.delivered(&mut rx)),
                Some(StatusCode::INTERNAL_SERVER_ERROR)
            );
            assert_eq!(
                fx.lines(),
                [(
                    "error".into(),
                    "Exception in ASGI application".into(),
                    Some("TypeError".into())
                )]
            );
        })
    }

    #[test]
    fn the_server_answering_in_the_apps_place_cancels_its_task() {
        with_py(|py| {
            register_run_app(py);
            let apps = module(py, APPS);
            let fx = Fixture::serving(py, apps.getattr("sleeps").expect("app"), |c| {
                c.request_timeout = Some(Duration::from_secs(1));
            });
            let (ex, _rx) = exchange(false);
            start_request(py, fx.core.clone(), request(ex.clone(), None, &[]));
            apps.getattr("one_turn")
                .and_then(|f| f.call1((&fx.event_loop,)))
                .expect("turn");
            let answer = http::Response::new(ResponseBody::Full(None));
            let canceller = ex
                .answer_instead(answer)
                .ok()
                .flatten()
                .expect("a canceller");
            canceller.wake();
            assert_eq!(fx.run_wakeups(py), 1);
            apps.getattr("run_tasks")
                .and_then(|f| f.call1((&fx.event_loop,)))
                .expect("run");
            assert_eq!(
                apps.getattr("seen")
                    .expect("seen")
                    .repr()
                    .expect("r")
                    .to_string(),
                "['cancelled']"
            );
            // Without --timeout-request no canceller is registered at all.
            let fx = Fixture::serving(py, apps.getattr("sleeps").expect("app"), |_| {});
            let (ex, _rx) = exchange(false);
            start_request(py, fx.core.clone(), request(ex.clone(), None, &[]));
            let answer = http::Response::new(ResponseBody::Full(None));
            assert!(ex.answer_instead(answer).ok().flatten().is_none());
            for task in fx
                .event_loop
                .py()
                .import("asyncio")
                .and_then(|a| a.call_method1("all_tasks", (&fx.event_loop,)))
                .expect("tasks")
                .try_iter()
                .expect("iter")
            {
                task.and_then(|t| t.call_method0("cancel")).expect("cancel");
            }
            apps.getattr("run_tasks")
                .and_then(|f| f.call1((&fx.event_loop,)))
                .expect("run");
        })
    }

    #[test]
    fn a_websocket_handshake_gets_a_websocket_scope_and_its_accept_reaches_the_session() {
        with_py(|py| {
            register_run_app(py);
            let apps = module(py, APPS);
            let fx = Fixture::serving(py, apps.getattr("ws").expect("app"), |_| {});
            let (ex, _rx) = exchange(false);
            let (session, mut accepted) = crate::ws::Session::new(4);
            let headers = [("sec-websocket-protocol", "a, b")];
            start_request(py, fx.core.clone(), request(ex, Some(session), &headers));
            apps.getattr("run_tasks")
                .and_then(|f| f.call1((&fx.event_loop,)))
                .expect("run");
            assert_eq!(
                apps.getattr("seen")
                    .expect("seen")
                    .repr()
                    .expect("repr")
                    .to_string(),
                "[('websocket', 'ws', ['a', 'b'])]"
            );
            let accept = accepted.try_recv().expect("accepted");
            assert_eq!(accept.subprotocol.as_deref(), Some("b"));
        })
    }

    #[test]
    fn dispatch_posts_the_request_to_the_loop() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let (ex, _rx) = exchange(false);
            assert!(fx.core.dispatch(*request(ex, None, &[])).is_ok());
            let mut events = Vec::new();
            fx.core.host.mailbox.drain_into(&mut events);
            assert!(matches!(events.as_slice(), [LoopEvent::Request(_)]));
        })
    }
}
