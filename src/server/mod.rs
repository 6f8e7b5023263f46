//! One worker's server: the Tokio thread that accepts and speaks HTTP, and the hand-over of its
//! events to the asyncio loop (`process`, called by the loop when the mailbox fd is readable).

pub mod accept;
pub mod linger;
pub mod listener;
pub mod shared;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::asgi::{self, scope::ScopeTemplate, LoopCtx};
use crate::bridge::awaitable::Done;
use crate::config::CoreConfig;
use shared::{Event, LogLevel, Phase, Shared};

/// `loop.call_soon(flush)`: one wake-up of the I/O thread per loop iteration.
#[pyclass(frozen, module = "juggler._juggler")]
pub struct FlushOutbox(Arc<Shared>);

#[pymethods]
impl FlushOutbox {
    fn __call__(&self) {
        self.0.flush_outbox();
    }
}

#[pyclass(frozen, module = "juggler._juggler")]
pub struct Server {
    shared: Arc<Shared>,
    ctx: Arc<LoopCtx>,
    listener: Mutex<Option<(OwnedFd, bool)>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    batch: Mutex<Vec<Event>>,
    drained: Mutex<(bool, Option<PyObject>)>,
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (config, fd, unix, app, event_loop, state, error_logger, access_logger))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        config: CoreConfig,
        fd: i32,
        unix: bool,
        app: PyObject,
        event_loop: &Bound<'_, PyAny>,
        state: Option<Py<PyDict>>,
        error_logger: PyObject,
        access_logger: PyObject,
    ) -> PyResult<Self> {
        let listener = listener::dup_fd(fd).map_err(crate::error::Error::from)?;
        let access_log = config.access_log
            && access_logger
                .call_method1(py, intern!(py, "isEnabledFor"), (20,))?
                .is_truthy(py)?;
        let (create_task, task_kwargs) = task_spawner(py, event_loop)?;
        let shared = Shared::new(config.clone()).map_err(crate::error::Error::from)?;
        let flush = Py::new(py, FlushOutbox(shared.clone()))?.into_any();
        let ctx = LoopCtx {
            app,
            create_task,
            task_kwargs,
            create_future: event_loop.getattr(intern!(py, "create_future"))?.unbind(),
            call_soon: event_loop.getattr(intern!(py, "call_soon"))?.unbind(),
            flush,
            state,
            error_logger,
            access_logger,
            access_log,
            done: Py::new(py, Done)?,
            scope: ScopeTemplate::new(py, &config.root_path)?,
        };
        Ok(Self {
            shared,
            ctx: Arc::new(ctx),
            listener: Mutex::new(Some((listener, unix))),
            thread: Mutex::new(None),
            batch: Mutex::new(Vec::with_capacity(64)),
            drained: Mutex::new((false, None)),
        })
    }

    /// The descriptor the loop watches (`loop.add_reader(server.fileno(), server.process)`).
    fn fileno(&self) -> i32 {
        self.shared.mailbox.fileno()
    }

    /// Starts accepting on a Tokio thread of its own.
    fn start(&self) -> PyResult<()> {
        let (fd, unix) = self
            .listener
            .lock()
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("server already started"))?;
        let parking = self.shared.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(move || parking.mailbox.flush())
            .build()
            .map_err(crate::error::Error::from)?;
        let listener = {
            let _guard = rt.enter();
            listener::Listener::adopt(fd, unix).map_err(crate::error::Error::from)?
        };
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("juggler-io".into())
            .spawn(move || {
                crate::bridge::mailbox::defer_wakeups_on_this_thread();
                rt.block_on(accept::accept_loop(listener, shared.clone()));
                // The thread ends without parking again: deliver what it held back.
                shared.mailbox.flush();
            })
            .map_err(crate::error::Error::from)?;
        *self.thread.lock() = Some(handle);
        Ok(())
    }

    /// Drains the mailbox: starts new requests and wakes waiting `receive`/`send` calls.
    fn process(&self, py: Python<'_>) {
        let mut batch = std::mem::take(&mut *self.batch.lock());
        self.shared.mailbox.drain_into(&mut batch);
        for event in batch.drain(..) {
            match event {
                Event::Request(req) => asgi::start_request(py, &self.ctx, req),
                Event::Wake(exchange) => asgi::wake(py, &exchange),
                Event::Drained => self.set_drained(py),
                Event::Log(level, msg) => {
                    let name = match level {
                        LogLevel::Debug => "debug",
                        LogLevel::Warning => "warning",
                    };
                    self.ctx.log(py, name, &msg);
                }
            }
        }
        *self.batch.lock() = batch;
    }

    /// Stops accepting and lets open connections finish their current request.
    fn shutdown(&self) {
        self.shared.phase.send_replace(Phase::Draining);
    }

    /// Drops every connection at once; apps waiting in `receive()` get `http.disconnect`.
    fn abort(&self) {
        self.shared.phase.send_replace(Phase::Abort);
    }

    /// A future that completes once every connection is closed after `shutdown()`.
    fn wait_drained(&self, py: Python<'_>) -> PyResult<PyObject> {
        let fut = self.ctx.create_future.call0(py)?;
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
    }

    #[getter]
    fn connections(&self) -> usize {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::Acquire)
    }

    #[getter]
    fn inflight(&self) -> usize {
        self.shared
            .inflight
            .load(std::sync::atomic::Ordering::Relaxed)
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

impl Server {
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
