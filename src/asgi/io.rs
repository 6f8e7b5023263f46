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
mod tests;
