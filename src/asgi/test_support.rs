//! What the unit tests of `asgi` and `wsgi` share: an embedded interpreter, an [`AsgiCore`]
//! whose loggers and `call_soon` record what they are given, and the I/O thread's side of an
//! exchange (its outbox and the response body) stepped by hand, so that a test sees exactly
//! what a send handed over and nothing runs behind its back.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};
use tokio::sync::oneshot;

use super::awaitable::Done;
use super::scope::ScopeTemplate;
use super::{AsgiCore, FlushOutbox};
use crate::bridge::Outbox;
use crate::config::CoreConfig;
use crate::http::body::ResponseBody;
use crate::http::exchange::Exchange;
use crate::interface::log::Loggers;
use crate::interface::{Host, LoopEvent};
use crate::server::{ConnInfo, ServerAddr};

pub fn with_py<R>(f: impl FnOnce(Python<'_>) -> R) -> R {
    pyo3::prepare_freethreaded_python();
    Python::with_gil(f)
}

const HELPERS: &std::ffi::CStr = cr#"
class Recorder:
    """Stands in for the loggers and the loop's call_soon, keeping what they get."""

    def __init__(self):
        self.lines = []
        self.soon = []

    def error(self, msg, exc_info=None):
        self.lines.append(("error", msg, exc_info[0].__name__ if exc_info else None))

    def debug(self, msg):
        self.lines.append(("debug", msg, None))

    def warning(self, msg):
        self.lines.append(("warning", msg, None))

    def isEnabledFor(self, level):
        return False

    def call_soon(self, callback):
        self.soon.append(callback)


def step(awaitable):
    """Steps an awaitable once: ("ready", value) if it finished without waiting, else
    ("waits", what it yielded)."""
    it = awaitable.__await__()
    try:
        yielded = next(it)
    except StopIteration as stop:
        return ("ready", stop.value)
    return ("waits", yielded)
"#;

pub fn helpers(py: Python<'_>) -> Bound<'_, PyModule> {
    module(py, HELPERS)
}

/// A module of its own for `code`: `PyModule::from_code` reuses a module of the same name
/// from `sys.modules`, and tests running side by side would share its state.
pub fn module<'py>(py: Python<'py>, code: &std::ffi::CStr) -> Bound<'py, PyModule> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = std::ffi::CString::new(format!("juggler_test_{n}")).expect("name");
    let file = std::ffi::CString::new(format!("juggler_test_{n}.py")).expect("file");
    PyModule::from_code(py, code, &file, &name).expect("module")
}

/// A core as a worker makes it, with a [`Recorder`](HELPERS) for loggers and `call_soon`.
pub struct Fixture<'py> {
    pub core: Arc<AsgiCore>,
    pub recorder: Bound<'py, PyAny>,
    pub helpers: Bound<'py, PyModule>,
    pub event_loop: Bound<'py, PyAny>,
}

impl<'py> Fixture<'py> {
    pub fn new(py: Python<'py>) -> Self {
        Self::build(py, None, |_| {})
    }

    /// A core that serves `app` as a worker does: tasks made by `task_spawner` on a real
    /// event loop, flushes scheduled with the loop's own `call_soon`.
    pub fn serving(
        py: Python<'py>,
        app: Bound<'py, PyAny>,
        configure: impl FnOnce(&mut CoreConfig),
    ) -> Self {
        Self::build(py, Some(app), configure)
    }

    fn build(
        py: Python<'py>,
        app: Option<Bound<'py, PyAny>>,
        configure: impl FnOnce(&mut CoreConfig),
    ) -> Self {
        let helpers = helpers(py);
        let recorder = helpers
            .getattr("Recorder")
            .and_then(|r| r.call0())
            .expect("recorder");
        let event_loop = py
            .import("asyncio")
            .and_then(|a| a.call_method0("new_event_loop"))
            .expect("loop");
        let mut config =
            CoreConfig::build(5.0, None, 8192, true, vec![], String::new(), false).expect("config");
        configure(&mut config);
        let host = Host::new(config.clone()).expect("host");
        let rec = recorder.clone().unbind();
        let loggers = Arc::new(Loggers::new(py, rec.clone_ref(py), rec, &config).expect("loggers"));
        let outbox = Arc::new(Outbox::new());
        let (create_task, task_kwargs, call_soon) = match &app {
            Some(_) => {
                let (task, kwargs) = super::task_spawner(py, &event_loop).expect("spawner");
                let soon = event_loop.getattr("call_soon").expect("call_soon");
                (task, kwargs, soon)
            }
            None => (
                py.None(),
                None,
                recorder.getattr("call_soon").expect("call_soon"),
            ),
        };
        let core = Arc::new(AsgiCore {
            app: app.map_or_else(|| py.None(), Bound::unbind),
            create_task,
            task_kwargs,
            create_future: event_loop
                .getattr("create_future")
                .expect("create_future")
                .unbind(),
            call_soon: call_soon.unbind(),
            flush: Py::new(py, FlushOutbox(outbox.clone()))
                .expect("flush")
                .into_any(),
            outbox,
            state: None,
            loggers,
            done: Py::new(py, Done).expect("done"),
            scope: ScopeTemplate::new(py, "").expect("scope"),
            host,
        });
        Self {
            core,
            recorder,
            helpers,
            event_loop,
        }
    }

    /// What the loggers got, as `(level, message, exception type)`.
    pub fn lines(&self) -> Vec<(String, String, Option<String>)> {
        self.recorder
            .getattr("lines")
            .and_then(|l| l.extract())
            .expect("lines")
    }

    /// How many flushes the core asked the loop to schedule.
    pub fn flushes_scheduled(&self) -> usize {
        self.recorder
            .getattr("soon")
            .and_then(|s| s.len())
            .expect("soon")
    }

    /// `("ready", value)` or `("waits", yielded)` after one step of `awaitable`.
    pub fn step(&self, awaitable: &Bound<'py, PyAny>) -> (String, Bound<'py, PyAny>) {
        self.helpers
            .getattr("step")
            .and_then(|s| s.call1((awaitable,)))
            .and_then(|r| r.extract())
            .expect("step")
    }

    /// Runs the wake-ups posted to the loop's mailbox, as the loop would; how many ran.
    pub fn run_wakeups(&self, py: Python<'_>) -> usize {
        let mut events = Vec::new();
        self.core.host.mailbox.drain_into(&mut events);
        let mut ran = 0;
        for event in events {
            if let LoopEvent::Wake(w) = event {
                w.wake_on_loop(py);
                ran += 1;
            }
        }
        ran
    }

    /// The response head the core handed to the I/O thread, delivered as its outbox would.
    pub fn delivered(
        &self,
        rx: &mut oneshot::Receiver<Response<ResponseBody>>,
    ) -> Option<Response<ResponseBody>> {
        self.core.outbox.flush();
        self.delivered_if_flushed(rx)
    }

    /// The response head, if something flushed the outbox since the last delivery.
    pub fn delivered_if_flushed(
        &self,
        rx: &mut oneshot::Receiver<Response<ResponseBody>>,
    ) -> Option<Response<ResponseBody>> {
        // One poll delivers everything deferred so far, then waits for the next flush.
        let run = pin!(self.core.outbox.run());
        let _ = run.poll(&mut Context::from_waker(Waker::noop()));
        rx.try_recv().ok()
    }
}

/// An exchange for a request (a HEAD request when `head`), and where its response arrives.
pub fn exchange(head: bool) -> (Arc<Exchange>, oneshot::Receiver<Response<ResponseBody>>) {
    static INFLIGHT: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    let inflight = INFLIGHT.get_or_init(Default::default);
    let (tx, rx) = oneshot::channel();
    (Exchange::new(inflight, tx, head), rx)
}

/// The body bytes available now, and whether the body has ended.
pub fn body_now(body: &mut ResponseBody) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match std::pin::Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => return (out, true),
            Poll::Pending => return (out, false),
        }
    }
}

pub fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = Request::builder().uri(uri).method(method);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request").into_parts().0
}

pub fn tcp_conn() -> ConnInfo {
    ConnInfo {
        client: Some(("10.0.0.7".into(), 5000)),
        server: ServerAddr::Tcp("127.0.0.1".into(), 8000),
        derived: OnceLock::new(),
        refused: Default::default(),
        secure: Default::default(),
        alpn_h2: Default::default(),
    }
}

pub fn dict<'py>(py: Python<'py>, code: &str) -> Bound<'py, PyDict> {
    let code = std::ffi::CString::new(code).expect("code");
    py.eval(&code, None, None)
        .and_then(|d| Ok(d.downcast_into::<PyDict>()?))
        .expect("a dict")
}
