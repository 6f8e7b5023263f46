//! `receive` and `send`, the two callables an ASGI app gets per request, and how they wait:
//! a request parks itself on its exchange and is woken through the loop's mailbox.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use parking_lot::Mutex;
use pyo3::exceptions::PyOSError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};
use pyo3::IntoPyObjectExt;

use super::awaitable::Ready;
use super::AsgiCore;
use crate::error::{ClientDisconnected, Error};
use crate::http::exchange::{AppWaker, Exchange, Received, Want};
use crate::http::file::FileRange;
use crate::interface::{LoopEvent, LoopWake};

/// One request's side of the exchange on the loop thread, and the futures its app awaits.
pub struct RequestIo {
    pub exchange: Arc<Exchange>,
    pub core: Arc<AsgiCore>,
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    receive: Vec<PyObject>,
    send: Option<PyObject>,
}

impl RequestIo {
    pub fn new(exchange: Arc<Exchange>, core: Arc<AsgiCore>) -> Self {
        Self {
            exchange,
            core,
            waiters: Mutex::new(Waiters::default()),
        }
    }

    /// A future for `receive()`, parked until the exchange has news.
    fn wait_receive(self: &Arc<Self>, py: Python<'_>) -> PyResult<Option<PyObject>> {
        let fut = self.core.create_future.call0(py)?;
        self.waiters.lock().receive.push(fut.clone_ref(py));
        if self.exchange.park(Want::Body, self.clone()) {
            return Ok(Some(fut));
        }
        // Something arrived in between: take it without waiting.
        self.waiters.lock().receive.pop();
        Ok(None)
    }
}

impl AppWaker for RequestIo {
    /// Any thread: asks the loop thread to look again (see [`LoopWake`]).
    fn wake(self: Arc<Self>) {
        let mailbox = self.core.host.mailbox.clone();
        mailbox.post(LoopEvent::Wake(self));
    }
}

impl LoopWake for RequestIo {
    /// Loop thread: resolves the futures the exchange's news satisfies, parks the rest again.
    fn wake_on_loop(self: Arc<Self>, py: Python<'_>) {
        let Waiters { receive, send } = std::mem::take(&mut *self.waiters.lock());
        for fut in receive {
            if is_done(py, &fut) {
                continue;
            }
            let result = match self.exchange.next_received() {
                Some(msg) => received_to_dict(py, msg)
                    .and_then(|d| fut.call_method1(py, intern!(py, "set_result"), (d,)))
                    .map(drop),
                None => {
                    self.waiters.lock().receive.push(fut);
                    if !self.exchange.park(Want::Body, self.clone()) {
                        // News came in meanwhile: look again on the next turn.
                        self.clone().wake();
                    }
                    Ok(())
                }
            };
            if let Err(e) = result {
                e.print(py);
            }
        }
        if let Some(fut) = send {
            if is_done(py, &fut) {
                return;
            }
            let gone = self.exchange.is_disconnected();
            if let Some(fut) = settle_send(py, fut, gone, self.exchange.has_room()) {
                self.waiters.lock().send = Some(fut);
                if !self.exchange.park(Want::Room, self.clone()) {
                    self.clone().wake();
                }
            }
        }
    }
}

pub fn is_done(py: Python<'_>, fut: &PyObject) -> bool {
    fut.call_method0(py, intern!(py, "done"))
        .and_then(|d| d.is_truthy(py))
        .unwrap_or(true)
}

/// Settles the future of a `send()` that waited for room: `ClientDisconnected` when the peer
/// is `gone`, done when there is `room`; handed back when it must wait on.
pub fn settle_send(py: Python<'_>, fut: PyObject, gone: bool, room: bool) -> Option<PyObject> {
    let result = if gone {
        ClientDisconnected::new_err("client disconnected")
            .into_bound_py_any(py)
            .and_then(|exc| fut.call_method1(py, intern!(py, "set_exception"), (exc,)))
    } else if room {
        fut.call_method1(py, intern!(py, "set_result"), (py.None(),))
    } else {
        return Some(fut);
    };
    if let Err(e) = result {
        e.print(py);
    }
    None
}

pub fn received_to_dict(py: Python<'_>, msg: Received) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    match msg {
        Received::Body { data, more } => {
            d.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
            d.set_item(intern!(py, "body"), PyBytes::new(py, &data))?;
            d.set_item(intern!(py, "more_body"), more)?;
        }
        Received::Disconnect => {
            d.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
        }
    }
    Ok(d)
}

#[pyclass(frozen, module = "juggler._juggler")]
pub struct AsgiReceive {
    io: Arc<RequestIo>,
}

impl AsgiReceive {
    pub fn new(io: Arc<RequestIo>) -> Self {
        Self { io }
    }
}

#[pymethods]
impl AsgiReceive {
    fn __call__(&self, py: Python<'_>) -> PyResult<PyObject> {
        loop {
            if let Some(msg) = self.io.exchange.next_received() {
                let d = received_to_dict(py, msg)?.into_any().unbind();
                return Ok(Py::new(py, Ready::new(d))?.into_any());
            }
            if let Some(fut) = self.io.wait_receive(py)? {
                return Ok(fut);
            }
        }
    }
}

/// A response head the app has sent but that waits for the first body chunk, so that a
/// response sent as start + one body leaves as one write.
struct PendingHead {
    status: StatusCode,
    headers: HeaderMap,
}

/// Where the response stands, as the app's `send()` calls have taken it.
enum SendState {
    Idle,
    HeadPending(PendingHead),
    Streaming,
    Complete,
}

#[pyclass(frozen, module = "juggler._juggler")]
pub struct AsgiSend {
    io: Arc<RequestIo>,
    state: Mutex<SendState>,
}

impl AsgiSend {
    pub fn new(io: Arc<RequestIo>) -> Self {
        Self {
            io,
            state: Mutex::new(SendState::Idle),
        }
    }
}

pub fn protocol_error(msg: impl Into<String>) -> PyErr {
    Error::protocol(msg).into()
}

/// Headers as the spec allows them: any iterable of two-item iterables of bytes-likes.
pub fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<HeaderMap> {
    let mut map = HeaderMap::new();
    for item in headers.try_iter().map_err(|_| bad_headers())? {
        let item = item?;
        let (name, value) = match item.downcast::<PyTuple>() {
            // The common case, [(b"name", b"value"), ...], without an iterator.
            Ok(t) if t.len() == 2 => (t.get_item(0)?, t.get_item(1)?),
            _ => pair(&item)?,
        };
        let (n, v) = (BytesLike::new(&name)?, BytesLike::new(&value)?);
        let n = HeaderName::from_bytes(n.as_slice()).map_err(|_| {
            protocol_error(format!(
                "http.response.start: invalid header name {:?}",
                String::from_utf8_lossy(n.as_slice())
            ))
        })?;
        let v = HeaderValue::from_bytes(v.as_slice()).map_err(|_| {
            protocol_error(format!(
                "http.response.start: invalid value for header {:?}",
                n.as_str()
            ))
        })?;
        map.append(n, v);
    }
    Ok(map)
}

fn pair<'py>(item: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let mut it = item.try_iter().map_err(|_| bad_headers())?;
    match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), None) => Ok((a?, b?)),
        _ => Err(bad_headers()),
    }
}

fn bad_headers() -> PyErr {
    protocol_error(
        "http.response.start: 'headers' must be an iterable of [name, value] pairs of bytes, \
         e.g. [(b'content-type', b'text/plain')]",
    )
}

/// `bytes` borrowed in place; other bytes-like objects (bytearray, memoryview) copied.
enum BytesLike<'a, 'py> {
    Borrowed(&'a Bound<'py, PyBytes>),
    Owned(Vec<u8>),
}

impl<'a, 'py> BytesLike<'a, 'py> {
    fn new(obj: &'a Bound<'py, PyAny>) -> PyResult<Self> {
        match obj.downcast::<PyBytes>() {
            Ok(b) => Ok(Self::Borrowed(b)),
            Err(_) if obj.is_instance_of::<PyString>() => Err(bad_headers()),
            Err(_) => obj
                .extract::<Vec<u8>>()
                .map(Self::Owned)
                .map_err(|_| bad_headers()),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Borrowed(b) => b.as_bytes(),
            Self::Owned(v) => v,
        }
    }
}

/// Below this a copy is cheaper than keeping the `bytes` object alive (and releasing it later
/// from the I/O thread).
const ZERO_COPY_MIN: usize = 64 * 1024;

fn body_bytes(message: &Bound<'_, PyDict>) -> PyResult<Bytes> {
    let py = message.py();
    match message.get_item(intern!(py, "body"))? {
        None => Ok(Bytes::new()),
        Some(b) => {
            if let Ok(b) = b.downcast::<PyBytes>() {
                if b.as_bytes().len() >= ZERO_COPY_MIN {
                    // Large chunks are written from the Python object itself, not a copy.
                    return Ok(Bytes::from_owner(PyBackedBytes::from(b.clone())));
                }
                Ok(Bytes::copy_from_slice(b.as_bytes()))
            } else {
                let v: Vec<u8> = b
                    .extract()
                    .ok()
                    .filter(|_| !b.is_instance_of::<PyString>())
                    .ok_or_else(|| protocol_error("http.response.body: 'body' must be bytes"))?;
                Ok(Bytes::from(v))
            }
        }
    }
}

/// The file of an `http.response.pathsend` message, opened and checked before anything of
/// the response is sent: a missing file or a directory is the app's error, answered with 500.
fn path_to_send(message: &Bound<'_, PyDict>) -> PyResult<FileRange> {
    let py = message.py();
    let path: PathBuf = message
        .get_item(intern!(py, "path"))?
        .ok_or_else(|| protocol_error("http.response.pathsend without 'path'"))?
        .extract()
        .map_err(|_| protocol_error("http.response.pathsend: 'path' must be a str"))?;
    FileRange::open(&path).map_err(|e| {
        // OSError(errno, text, filename): FileNotFoundError, IsADirectoryError, ...
        let text = format!("http.response.pathsend: {}", io_text(&e));
        let args = (e.raw_os_error().unwrap_or(libc::EINVAL), text, path);
        match py.get_type::<PyOSError>().call1(args) {
            Ok(exc) => PyErr::from_value(exc),
            Err(err) => err,
        }
    })
}

/// The system's text for an I/O error, without Rust's " (os error N)".
fn io_text(e: &std::io::Error) -> String {
    let full = e.to_string();
    match e.raw_os_error() {
        Some(code) => full
            .strip_suffix(&format!(" (os error {code})"))
            .unwrap_or(&full)
            .to_owned(),
        None => full,
    }
}

#[pymethods]
impl AsgiSend {
    fn __call__(&self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<PyObject> {
        let kind = message_type(message)?;
        self.send_http(py, kind.to_str()?, message)
    }
}

/// A message's `type`.
pub fn message_type<'py>(message: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyString>> {
    let py = message.py();
    let kind = message
        .get_item(intern!(py, "type"))?
        .ok_or_else(|| protocol_error("ASGI message without a 'type' key"))?;
    kind.downcast_into::<PyString>()
        .map_err(|_| protocol_error("ASGI message 'type' must be a str"))
}

impl AsgiSend {
    /// Sends an HTTP response message; `kind` is its type, as `http.response.*` (a WebSocket
    /// denial response comes through here too).
    pub fn send_http(
        &self,
        py: Python<'_>,
        kind: &str,
        message: &Bound<'_, PyDict>,
    ) -> PyResult<PyObject> {
        let core = &self.io.core;
        // The state's lock is never held while Python runs (a headers generator or a body's
        // __bool__ could call send() again): each branch reads the message first.
        match kind {
            "http.response.start" => {
                let already_started = || {
                    protocol_error(
                        "Unexpected ASGI message 'http.response.start' sent, after response already started.",
                    )
                };
                if !matches!(*self.state.lock(), SendState::Idle) {
                    return Err(already_started());
                }
                let status: u16 = message
                    .get_item(intern!(py, "status"))?
                    .ok_or_else(|| protocol_error("http.response.start without 'status'"))?
                    .extract()
                    .map_err(|_| protocol_error("http.response.start: 'status' must be an int"))?;
                let status = StatusCode::from_u16(status).map_err(|_| {
                    protocol_error(format!("http.response.start: invalid status {status}"))
                })?;
                let headers = match message.get_item(intern!(py, "headers"))? {
                    Some(h) => parse_headers(&h)?,
                    None => HeaderMap::new(),
                };
                if self.io.exchange.is_disconnected() {
                    return Err(Error::Disconnected.into());
                }
                let mut st = self.state.lock();
                if !matches!(*st, SendState::Idle) {
                    return Err(already_started());
                }
                *st = SendState::HeadPending(PendingHead { status, headers });
                Ok(core.done.clone_ref(py).into_any())
            }
            "http.response.body" => {
                let data = body_bytes(message)?;
                let more = match message.get_item(intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                let mut st = self.state.lock();
                match *st {
                    SendState::Idle => {
                        return Err(protocol_error(
                            "Expected ASGI message 'http.response.start', but got 'http.response.body'.",
                        ))
                    }
                    SendState::Complete => {
                        return Err(protocol_error(
                            "Unexpected ASGI message 'http.response.body' sent, after response already completed.",
                        ))
                    }
                    SendState::HeadPending(_) | SendState::Streaming => {}
                }
                let next = if more {
                    SendState::Streaming
                } else {
                    SendState::Complete
                };
                let previous = std::mem::replace(&mut *st, next);
                drop(st);
                let exchange = &self.io.exchange;
                let sent = match previous {
                    SendState::HeadPending(head) => {
                        exchange.start_response(head.status, head.headers, data, more)?
                    }
                    _ => exchange.send_chunk(data, more)?,
                };
                core.hand_over(py, sent.handover)?;
                if sent.full {
                    let fut = core.create_future.call0(py)?;
                    self.io.waiters.lock().send = Some(fut.clone_ref(py));
                    if exchange.park(Want::Room, self.io.clone()) {
                        return Ok(fut);
                    }
                    self.io.waiters.lock().send = None;
                }
                Ok(core.done.clone_ref(py).into_any())
            }
            "http.response.pathsend" => {
                let file = path_to_send(message)?;
                let mut st = self.state.lock();
                let head = match std::mem::replace(&mut *st, SendState::Complete) {
                    SendState::HeadPending(head) => head,
                    other => {
                        *st = other;
                        return Err(protocol_error(
                            "http.response.pathsend must follow http.response.start, \
                             in place of any http.response.body",
                        ));
                    }
                };
                drop(st);
                let sent = self
                    .io
                    .exchange
                    .start_file(head.status, head.headers, file)?;
                core.hand_over(py, sent.handover)?;
                Ok(core.done.clone_ref(py).into_any())
            }
            // Trailers need the request to have asked for them; nothing to do for HTTP/1.1.
            "http.response.trailers" => Ok(core.done.clone_ref(py).into_any()),
            other => Err(protocol_error(format!(
                "Unexpected ASGI message type '{other}' for an http scope."
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use pyo3::types::PyList;

    use super::*;
    use crate::asgi::test_support::{body_now, dict, exchange, with_py, Fixture};
    use crate::error::ProtocolError;
    use crate::http::exchange::OUT_HIGH_WATER;

    fn io(fx: &Fixture<'_>, exchange: &Arc<Exchange>) -> Arc<RequestIo> {
        Arc::new(RequestIo::new(exchange.clone(), fx.core.clone()))
    }

    fn receiver<'py>(py: Python<'py>, io: &Arc<RequestIo>) -> Bound<'py, PyAny> {
        Py::new(py, AsgiReceive::new(io.clone()))
            .expect("receive")
            .into_bound(py)
            .into_any()
    }

    fn sender<'py>(py: Python<'py>, io: &Arc<RequestIo>) -> Bound<'py, PyAny> {
        Py::new(py, AsgiSend::new(io.clone()))
            .expect("send")
            .into_bound(py)
            .into_any()
    }

    fn call<'py>(f: &Bound<'py, PyAny>, message: &str) -> PyResult<Bound<'py, PyAny>> {
        f.call1((dict(f.py(), message),))
    }

    /// The message a `receive()` that did not wait gives.
    fn ready_message<'py>(fx: &Fixture<'py>, awaitable: &Bound<'py, PyAny>) -> String {
        let (state, value) = fx.step(awaitable);
        assert_eq!(state, "ready", "received without waiting");
        value.repr().expect("repr").to_string()
    }

    fn error_text(err: &PyErr, py: Python<'_>) -> String {
        assert!(err.is_instance_of::<ProtocolError>(py), "{err}");
        err.value(py).to_string()
    }

    #[test]
    fn receive_gives_the_body_its_end_and_then_disconnect() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let (ex, _rx) = exchange(false);
            let io = io(&fx, &ex);
            let receive = receiver(py, &io);
            ex.push_body(Bytes::from_static(b"abc"));
            let first = receive.call0().expect("receive");
            assert_eq!(
                ready_message(&fx, &first),
                "{'type': 'http.request', 'body': b'abc', 'more_body': True}"
            );
            ex.finish_body();
            let second = receive.call0().expect("receive");
            assert_eq!(
                ready_message(&fx, &second),
                "{'type': 'http.request', 'body': b'', 'more_body': False}"
            );
            ex.disconnect();
            let third = receive.call0().expect("receive");
            assert_eq!(ready_message(&fx, &third), "{'type': 'http.disconnect'}");
        })
    }

    #[test]
    fn a_waiting_receive_is_resolved_when_the_body_arrives() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let (ex, _rx) = exchange(false);
            let io = io(&fx, &ex);
            let fut = receiver(py, &io).call0().expect("receive");
            assert!(!fut
                .call_method0("done")
                .and_then(|d| d.is_truthy())
                .expect("done"));
            assert_eq!(fx.run_wakeups(py), 0, "nothing woke it yet");
            ex.push_body(Bytes::from_static(b"late"));
            assert_eq!(fx.run_wakeups(py), 1);
            assert_eq!(
                fut.call_method0("result")
                    .expect("result")
                    .repr()
                    .expect("repr")
                    .to_string(),
                "{'type': 'http.request', 'body': b'late', 'more_body': True}"
            );
            // A second receive waits again; a wake-up with nothing new parks it once more, and
            // the next news still reaches it.
            let fut = receiver(py, &io).call0().expect("receive");
            io.clone().wake();
            assert_eq!(fx.run_wakeups(py), 1);
            assert!(!fut
                .call_method0("done")
                .and_then(|d| d.is_truthy())
                .expect("done"));
            ex.finish_body();
            assert_eq!(fx.run_wakeups(py), 1);
            assert_eq!(
                fut.call_method0("result")
                    .expect("result")
                    .repr()
                    .expect("repr")
                    .to_string(),
                "{'type': 'http.request', 'body': b'', 'more_body': False}"
            );
        })
    }

    #[test]
    fn a_receive_given_up_on_is_left_alone() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let (ex, _rx) = exchange(false);
            let io = io(&fx, &ex);
            let fut = receiver(py, &io).call0().expect("receive");
            fut.call_method0("cancel").expect("cancel");
            ex.push_body(Bytes::from_static(b"kept"));
            assert_eq!(fx.run_wakeups(py), 1);
            // The data was not spent on the cancelled future.
            let next = receiver(py, &io).call0().expect("receive");
            assert_eq!(
                ready_message(&fx, &next),
                "{'type': 'http.request', 'body': b'kept', 'more_body': True}"
            );
        })
    }

    #[test]
    fn start_and_one_body_leave_as_one_response_with_one_flush() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let (ex, mut rx) = exchange(false);
            let io = io(&fx, &ex);
            let send = sender(py, &io);
            let done = call(
                &send,
                "{'type': 'http.response.start', 'status': 201, \
                 'headers': [(b'x-a', b'1'), [b'x-b', bytearray(b'2')], (memoryview(b'x-a'), b'3')]}",
            )
            .expect("start");
            assert_eq!(fx.step(&done).0, "ready");
            assert!(
                fx.delivered(&mut rx).is_none(),
                "the head waits for the body"
            );
            assert_eq!(fx.flushes_scheduled(), 0);
            call(&send, "{'type': 'http.response.body', 'body': b'hello'}").expect("body");
            assert_eq!(fx.flushes_scheduled(), 1);
            let mut response = fx.delivered(&mut rx).expect("a response");
            assert_eq!(response.status(), 201);
            let values: Vec<_> = response.headers().get_all("x-a").iter().collect();
            assert_eq!(values, ["1", "3"]);
            assert_eq!(response.headers()["x-b"], "2");
            assert_eq!(body_now(response.body_mut()), (b"hello".to_vec(), true));
            assert_eq!(ex.outcome(), (Some(StatusCode::CREATED), 5));
            let err = call(&send, "{'type': 'http.response.body', 'body': b'more'}")
                .expect_err("after the end");
            assert!(error_text(&err, py).contains("after response already completed"));
            let err =
                call(&send, "{'type': 'http.response.start', 'status': 200}").expect_err("twice");
            assert!(error_text(&err, py).contains("after response already started"));
        })
    }

    #[test]
    fn a_flush_is_scheduled_only_when_the_outbox_was_empty() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let (a, mut rx_a) = exchange(false);
            let (b, mut rx_b) = exchange(false);
            for ex in [&a, &b] {
                let send = sender(py, &io(&fx, ex));
                call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
                call(&send, "{'type': 'http.response.body'}").expect("body");
            }
            assert_eq!(fx.flushes_scheduled(), 1, "one flush carries both");
            // The scheduled callback is the flush itself: calling it delivers both.
            let soon = fx.recorder.getattr("soon").expect("soon");
            soon.get_item(0).and_then(|f| f.call0()).expect("flush");
            assert!(fx.delivered(&mut rx_a).is_some());
            assert!(fx.delivered(&mut rx_b).is_some());
        })
    }

    #[test]
    fn a_streamed_response_sends_each_chunk_and_ends_on_the_last() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let (ex, mut rx) = exchange(false);
            let io = io(&fx, &ex);
            let send = sender(py, &io);
            call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
            call(
                &send,
                "{'type': 'http.response.body', 'body': b'a', 'more_body': 1}",
            )
            .expect("first");
            let mut response = fx.delivered(&mut rx).expect("head");
            assert_eq!(body_now(response.body_mut()), (b"a".to_vec(), false));
            call(
                &send,
                "{'type': 'http.response.body', 'body': bytearray(b'b'), 'more_body': True}",
            )
            .expect("second");
            assert_eq!(body_now(response.body_mut()), (b"b".to_vec(), false));
            call(
                &send,
                "{'type': 'http.response.body', 'body': b'c', 'more_body': 0}",
            )
            .expect("last");
            assert_eq!(body_now(response.body_mut()), (b"c".to_vec(), true));
            let err = call(&send, "{'type': 'http.response.body'}").expect_err("ended");
            assert!(error_text(&err, py).contains("already completed"));
            let trailers = call(&send, "{'type': 'http.response.trailers'}").expect("trailers");
            assert_eq!(fx.step(&trailers).0, "ready");
        })
    }

    #[test]
    fn a_large_body_arrives_whole() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let (ex, mut rx) = exchange(false);
            let send = sender(py, &io(&fx, &ex));
            call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
            let big = ZERO_COPY_MIN + 1;
            call(
                &send,
                &format!("{{'type': 'http.response.body', 'body': b'x' * {big}}}"),
            )
            .expect("body");
            let mut response = fx.delivered(&mut rx).expect("response");
            assert_eq!(body_now(response.body_mut()).0, vec![b'x'; big]);
        })
    }

    #[test]
    fn send_waits_for_room_and_is_released_when_the_client_reads() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let (ex, mut rx) = exchange(false);
            let io = io(&fx, &ex);
            let send = sender(py, &io);
            call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
            let big = OUT_HIGH_WATER + 1;
            let fut = call(
                &send,
                &format!(
                    "{{'type': 'http.response.body', 'body': b'x' * {big}, 'more_body': True}}"
                ),
            )
            .expect("body");
            assert_eq!(fx.step(&fut).0, "waits", "over the high-water mark");
            let mut response = fx.delivered(&mut rx).expect("head");
            assert_eq!(fx.run_wakeups(py), 0);
            assert_eq!(body_now(response.body_mut()).0.len(), big);
            assert_eq!(fx.run_wakeups(py), 1, "reading made room");
            assert!(fut.call_method0("result").expect("result").is_none());
            // Waiting again, then the client leaves: the send fails as a disconnect.
            let fut = call(
                &send,
                &format!(
                    "{{'type': 'http.response.body', 'body': b'y' * {big}, 'more_body': True}}"
                ),
            )
            .expect("body");
            ex.disconnect();
            assert_eq!(fx.run_wakeups(py), 1);
            let exc = fut.call_method0("exception").expect("exception");
            assert!(exc.is_instance_of::<ClientDisconnected>());
        })
    }

    #[test]
    fn a_send_given_up_on_is_left_alone_and_one_still_waiting_parks_again() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let (ex, mut rx) = exchange(false);
            let io = io(&fx, &ex);
            let send = sender(py, &io);
            call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
            let big = OUT_HIGH_WATER + 1;
            let message = format!(
                "{{'type': 'http.response.body', 'body': b'x' * {big}, 'more_body': True}}"
            );
            let fut = call(&send, &message).expect("body");
            // Woken without room: it waits on, and is still settled by the next room.
            io.clone().wake();
            assert_eq!(fx.run_wakeups(py), 1);
            assert!(!fut
                .call_method0("done")
                .and_then(|d| d.is_truthy())
                .expect("done"));
            let mut response = fx.delivered(&mut rx).expect("head");
            body_now(response.body_mut());
            assert_eq!(fx.run_wakeups(py), 1);
            assert!(fut
                .call_method0("done")
                .and_then(|d| d.is_truthy())
                .expect("done"));
            let fut = call(&send, &message).expect("body");
            fut.call_method0("cancel").expect("cancel");
            ex.disconnect();
            assert_eq!(fx.run_wakeups(py), 1);
            assert!(fut
                .call_method0("cancelled")
                .and_then(|d| d.is_truthy())
                .expect("cancelled"));
        })
    }

    #[test]
    fn start_after_the_client_left_raises_client_disconnected() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let (ex, _rx) = exchange(false);
            let send = sender(py, &io(&fx, &ex));
            ex.disconnect();
            let err =
                call(&send, "{'type': 'http.response.start', 'status': 200}").expect_err("gone");
            assert!(err.is_instance_of::<ClientDisconnected>(py));
            // Nothing was started: a body is still "before start".
            let err = call(&send, "{'type': 'http.response.body'}").expect_err("no start");
            assert!(error_text(&err, py).contains("Expected ASGI message 'http.response.start'"));
        })
    }

    #[test]
    fn malformed_messages_are_refused_with_what_was_wrong() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let cases = [
                ("{}", "without a 'type'"),
                ("{'type': 1}", "'type' must be a str"),
                ("{'type': 'http.response.nope'}", "'http.response.nope' for an http scope"),
                ("{'type': 'http.response.start'}", "without 'status'"),
                ("{'type': 'http.response.start', 'status': '200'}", "must be an int"),
                ("{'type': 'http.response.start', 'status': 1000}", "invalid status 1000"),
                ("{'type': 'http.response.start', 'status': 200, 'headers': 5}", "iterable of [name, value]"),
                ("{'type': 'http.response.start', 'status': 200, 'headers': [5]}", "iterable of [name, value]"),
                ("{'type': 'http.response.start', 'status': 200, 'headers': [(b'a', b'b', b'c')]}", "iterable of [name, value]"),
                ("{'type': 'http.response.start', 'status': 200, 'headers': [[b'a']]}", "iterable of [name, value]"),
                ("{'type': 'http.response.start', 'status': 200, 'headers': [('a', 'b')]}", "iterable of [name, value]"),
                ("{'type': 'http.response.start', 'status': 200, 'headers': [(b'a', 'b')]}", "iterable of [name, value]"),
                ("{'type': 'http.response.start', 'status': 200, 'headers': [(b'a', 5)]}", "iterable of [name, value]"),
                ("{'type': 'http.response.start', 'status': 200, 'headers': [(b'a b', b'c')]}", "invalid header name \"a b\""),
                ("{'type': 'http.response.start', 'status': 200, 'headers': [(b'a', b'c\\n')]}", "invalid value for header \"a\""),
                ("{'type': 'http.response.pathsend'}", "without 'path'"),
                ("{'type': 'http.response.pathsend', 'path': 5}", "'path' must be a str"),
            ];
            for (message, says) in cases {
                let (ex, _rx) = exchange(false);
                let send = sender(py, &io(&fx, &ex));
                let err = call(&send, message).expect_err(message);
                let text = error_text(&err, py);
                assert!(text.contains(says), "{message}: {text}");
            }
            let (ex, _rx) = exchange(false);
            let send = sender(py, &io(&fx, &ex));
            call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
            for body in ["'text'", "5"] {
                let err = call(
                    &send,
                    &format!("{{'type': 'http.response.body', 'body': {body}}}"),
                )
                .expect_err(body);
                assert!(error_text(&err, py).contains("'body' must be bytes"));
            }
        })
    }

    #[test]
    fn pathsend_sends_the_file_after_the_head_and_reports_a_missing_one_as_oserror() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let dir = std::env::temp_dir().join(format!("juggler-asgi-io-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("mkdir");
            let path = dir.join("f.txt");
            std::fs::write(&path, b"file body").expect("write");
            let (ex, mut rx) = exchange(false);
            let send = sender(py, &io(&fx, &ex));
            let pathsend = format!(
                "{{'type': 'http.response.pathsend', 'path': {:?}}}",
                path.to_str().expect("utf-8")
            );
            let err = call(&send, &pathsend).expect_err("before start");
            assert!(error_text(&err, py).contains("must follow http.response.start"));
            call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
            call(&send, &pathsend).expect("pathsend");
            let response = fx.delivered(&mut rx).expect("response");
            assert_eq!(response.status(), 200);
            assert_eq!(ex.outcome(), (Some(StatusCode::OK), 9));
            let err = call(&send, &pathsend).expect_err("twice");
            assert!(error_text(&err, py).contains("must follow http.response.start"));

            let (ex, _rx) = exchange(false);
            let send = sender(py, &io(&fx, &ex));
            call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
            let missing = dir.join("missing");
            let err = call(
                &send,
                &format!(
                    "{{'type': 'http.response.pathsend', 'path': {:?}}}",
                    missing.to_str().expect("utf-8")
                ),
            )
            .expect_err("missing");
            assert!(err.is_instance_of::<pyo3::exceptions::PyFileNotFoundError>(py));
            let value = err.value(py);
            assert_eq!(
                value
                    .getattr("errno")
                    .and_then(|e| e.extract::<i32>())
                    .expect("errno"),
                libc::ENOENT
            );
            assert_eq!(
                value
                    .getattr("strerror")
                    .and_then(|e| e.extract::<String>())
                    .expect("strerror"),
                "http.response.pathsend: No such file or directory"
            );
            // The head is still pending: a body may still answer.
            call(&send, "{'type': 'http.response.body', 'body': b'x'}").expect("body after all");
            std::fs::remove_dir_all(&dir).expect("rmdir");
        })
    }

    #[test]
    fn io_text_drops_rusts_os_error_suffix_only() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_text(&e), "No such file or directory");
        let e = std::io::Error::other("plain");
        assert_eq!(io_text(&e), "plain");
    }

    #[test]
    fn settle_send_fails_on_a_gone_client_before_looking_for_room() {
        with_py(|py| {
            let fx = Fixture::new(py);
            let new = || fx.core.create_future.call0(py).expect("future");
            let fut = new();
            assert!(settle_send(py, fut.clone_ref(py), true, true).is_none());
            let exc = fut.call_method0(py, "exception").expect("exception");
            assert!(exc.bind(py).is_instance_of::<ClientDisconnected>());
            let fut = new();
            assert!(settle_send(py, fut.clone_ref(py), false, true).is_none());
            assert!(fut.call_method0(py, "result").expect("result").is_none(py));
            let fut = new();
            assert!(settle_send(py, fut.clone_ref(py), false, false).is_some());
            assert!(!is_done(py, &fut));
            // Anything that cannot say counts as done: it is never waited on.
            assert!(is_done(py, &PyList::empty(py).into_any().unbind()));
        })
    }
}
