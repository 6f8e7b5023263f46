//! ASGI: turning parsed requests into app calls on the event loop thread.

pub mod finish;
pub mod io;
pub mod scope;

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{intern, IntoPyObjectExt};

use crate::bridge::awaitable::Done;
use crate::error::ClientDisconnected;
use crate::http::exchange::Exchange;
use crate::server::shared::NewRequest;
use finish::{AccessInfo, RunApp};
use io::{received_to_dict, Receive, Send};
use scope::ScopeTemplate;

/// The Python objects one worker's requests need, looked up once.
pub struct LoopCtx {
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
    pub state: Option<Py<PyDict>>,
    pub error_logger: PyObject,
    pub access_logger: PyObject,
    /// The access log is on and its logger would emit INFO.
    pub access_log: bool,
    pub done: Py<Done>,
    pub scope: ScopeTemplate,
}

impl LoopCtx {
    pub fn log_error(&self, py: Python<'_>, msg: &str, exc: Option<&Bound<'_, PyAny>>) {
        let kwargs = PyDict::new(py);
        if let Some(exc) = exc {
            let _ = kwargs.set_item(intern!(py, "exc_info"), exc);
        }
        if let Err(e) =
            self.error_logger
                .call_method(py, intern!(py, "error"), (msg,), Some(&kwargs))
        {
            e.print(py);
        }
    }

    pub fn log(&self, py: Python<'_>, level: &str, msg: &str) {
        if let Err(e) = self.error_logger.call_method1(py, level, (msg,)) {
            e.print(py);
        }
    }
}

/// Calls the app for a new request and schedules it as a task on the loop.
pub fn start_request(py: Python<'_>, ctx: &Arc<LoopCtx>, req: Box<NewRequest>) {
    let NewRequest {
        exchange,
        parts,
        conn,
    } = *req;
    let access = ctx.access_log.then(|| AccessInfo::new(&parts, &conn));
    let result = (|| -> PyResult<()> {
        let state = ctx.state.as_ref().map(|s| s.bind(py));
        let scope = ctx.scope.build(py, &parts, &conn, state)?;
        let receive = Py::new(
            py,
            Receive {
                exchange: exchange.clone(),
                ctx: ctx.clone(),
            },
        )?;
        let send = Py::new(py, Send::new(exchange.clone(), ctx.clone()))?;
        let coro = ctx.app.call1(py, (scope, receive, send))?;
        let run = RunApp::new(coro, exchange.clone(), ctx.clone(), access.clone());
        let kwargs = ctx.task_kwargs.as_ref().map(|k| k.bind(py));
        ctx.create_task.call(py, (Py::new(py, run)?,), kwargs)?;
        Ok(())
    })();
    if let Err(err) = result {
        // The app could not even be called (not an ASGI callable, or it raised at once).
        finish::conclude(
            py,
            ctx,
            &exchange,
            access.as_ref(),
            finish::Ending::Raised(&err),
        );
    }
}

/// Resolves whatever `receive()`/`send()` futures the exchange's news satisfies.
pub fn wake(py: Python<'_>, exchange: &Arc<Exchange>) {
    let (receivers, sender) = exchange.take_waiters();
    for fut in receivers {
        if is_done(py, &fut) {
            continue;
        }
        loop {
            match exchange.next_received() {
                Some(msg) => {
                    let result = received_to_dict(py, msg)
                        .and_then(|d| fut.call_method1(py, intern!(py, "set_result"), (d,)));
                    if let Err(e) = result {
                        e.print(py);
                    }
                    break;
                }
                None => match exchange.add_receive_waiter(fut.clone_ref(py)) {
                    Ok(()) => break,
                    Err(_) => continue,
                },
            }
        }
    }
    if let Some(fut) = sender {
        if !is_done(py, &fut) {
            let result = if exchange.is_disconnected() {
                ClientDisconnected::new_err("client disconnected")
                    .into_bound_py_any(py)
                    .and_then(|exc| fut.call_method1(py, intern!(py, "set_exception"), (exc,)))
            } else {
                fut.call_method1(py, intern!(py, "set_result"), (py.None(),))
            };
            if let Err(e) = result {
                e.print(py);
            }
        }
    }
}

fn is_done(py: Python<'_>, fut: &PyObject) -> bool {
    fut.call_method0(py, intern!(py, "done"))
        .and_then(|d| d.is_truthy(py))
        .unwrap_or(true)
}
