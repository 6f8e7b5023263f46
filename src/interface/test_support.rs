//! What the unit tests of `asgi` and `wsgi` share: an embedded interpreter, a module of
//! helpers (a `Recorder` standing in for loggers and `call_soon`, a `step` for awaitables),
//! and the I/O thread's side of an exchange (the response body) stepped by hand, so that a
//! test sees exactly what a send handed over and nothing runs behind its back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};
use tokio::sync::oneshot;

use crate::http::body::ResponseBody;
use crate::http::exchange::Exchange;
use crate::transport::{ConnInfo, ServerAddr};

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
        write_timed_out: Default::default(),
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

const SERVER_KEYWORDS: &std::ffi::CStr = cr#"
def outcomes(iface, config, fd, LoadSlots, Metrics):
    def build(**options):
        try:
            iface.server(config, fd, False, **options)
        except Exception as exc:
            return (type(exc).__name__, str(exc))
        return "built"

    def callback(server):
        pass

    untouched = LoadSlots(2)
    return [
        build(),
        build(
            load_slot=(LoadSlots(2), 1),
            metrics_slot=(Metrics(2), 1),
            heartbeat=(0.001, callback),
            on_request_limit=callback,
        ),
        build(load_slot=(LoadSlots(2), 2)),
        build(metrics_slot=(Metrics(1), 1)),
        build(heartbeat=(0.0, callback)),
        build(heartbeat=(float("nan"), callback)),
        # Every keyword is checked before anything is built: the good slot is not joined.
        build(load_slot=(untouched, 0), metrics_slot=(Metrics(1), 3)),
        untouched.get(0),
    ]
"#;

/// What an interface's `server()` makes of good and bad keywords (see `SERVER_KEYWORDS`),
/// as the repr of the list of outcomes; ASGI and WSGI take the same keywords.
pub fn server_keyword_outcomes(py: Python<'_>, iface: &Bound<'_, PyAny>) -> String {
    let config =
        crate::config::CoreConfig::build(5.0, None, 8192, true, vec![], String::new(), false)
            .expect("config");
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    module(py, SERVER_KEYWORDS)
        .getattr("outcomes")
        .and_then(|f| {
            f.call1((
                iface,
                config,
                fd,
                py.get_type::<crate::py::LoadSlots>(),
                py.get_type::<crate::py::Metrics>(),
            ))
        })
        .and_then(|o| o.repr().map(|r| r.to_string()))
        .expect("outcomes")
}

pub const SERVER_KEYWORD_OUTCOMES: &str = "['built', 'built', \
    ('IndexError', 'slot 2 of 2 does not exist'), \
    ('IndexError', 'metrics slot 1 of 1 does not exist'), \
    ('ConfigError', 'heartbeat interval must be at least 0.001 seconds, got 0'), \
    ('ConfigError', 'heartbeat interval must be at least 0.001 seconds, got NaN'), \
    ('IndexError', 'metrics slot 3 of 1 does not exist'), \
    None]";
