//! `receive` and `send`, the two callables an ASGI app gets per request.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use super::LoopCtx;
use crate::bridge::awaitable::Ready;
use crate::http::exchange::{Exchange, Received};

#[pyclass(frozen, module = "juggler._juggler")]
pub struct Receive {
    pub exchange: Arc<Exchange>,
    pub ctx: Arc<LoopCtx>,
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

#[pymethods]
impl Receive {
    fn __call__(&self, py: Python<'_>) -> PyResult<PyObject> {
        loop {
            if let Some(msg) = self.exchange.next_received() {
                let d = received_to_dict(py, msg)?.into_any().unbind();
                return Ok(Py::new(py, Ready::new(d))?.into_any());
            }
            let fut = self.ctx.create_future.call0(py)?;
            match self.exchange.add_receive_waiter(fut.clone_ref(py)) {
                Ok(()) => return Ok(fut),
                // A message arrived in between: take it without waiting.
                Err(_) => continue,
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
pub struct Send {
    pub exchange: Arc<Exchange>,
    pub ctx: Arc<LoopCtx>,
    state: Mutex<SendState>,
}

impl Send {
    pub fn new(exchange: Arc<Exchange>, ctx: Arc<LoopCtx>) -> Self {
        Self {
            exchange,
            ctx,
            state: Mutex::new(SendState::Idle),
        }
    }
}

fn protocol_error(msg: String) -> PyErr {
    PyRuntimeError::new_err(msg)
}

fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<HeaderMap> {
    let mut map = HeaderMap::new();
    for item in headers.try_iter()? {
        let item = item?;
        let (name, value) = match item.downcast::<PyTuple>() {
            // The common case, [(b"name", b"value"), ...], without copying through Vecs.
            Ok(t) if t.len() == 2 => (t.get_item(0)?, t.get_item(1)?),
            _ => item
                .extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>()
                .map_err(|_| bad_headers())?,
        };
        let (n, v) = (BytesLike::new(&name)?, BytesLike::new(&value)?);
        let n = HeaderName::from_bytes(n.as_slice()).map_err(|_| {
            PyRuntimeError::new_err(format!(
                "invalid response header name {:?}",
                String::from_utf8_lossy(n.as_slice())
            ))
        })?;
        let v = HeaderValue::from_bytes(v.as_slice()).map_err(|_| {
            PyRuntimeError::new_err(format!(
                "invalid value for response header {:?}",
                n.as_str()
            ))
        })?;
        map.append(n, v);
    }
    Ok(map)
}

fn bad_headers() -> PyErr {
    PyTypeError::new_err(
        "ASGI response headers must be pairs of bytes, e.g. [(b'content-type', b'text/plain')]",
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
                let v: Vec<u8> = b.extract().map_err(|_| {
                    PyTypeError::new_err("'body' of http.response.body must be bytes")
                })?;
                Ok(Bytes::from(v))
            }
        }
    }
}

#[pymethods]
impl Send {
    fn __call__(&self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<PyObject> {
        let kind = message
            .get_item(intern!(py, "type"))?
            .ok_or_else(|| PyRuntimeError::new_err("ASGI message without a 'type' key"))?;
        let kind = kind.downcast::<pyo3::types::PyString>()?.to_str()?;
        let mut st = self.state.lock();
        match kind {
            "http.response.start" => {
                if !matches!(*st, SendState::Idle) {
                    return Err(protocol_error(
                        "Unexpected ASGI message 'http.response.start' sent, after response already started.".into(),
                    ));
                }
                let status: u16 = message
                    .get_item(intern!(py, "status"))?
                    .ok_or_else(|| PyRuntimeError::new_err("http.response.start without 'status'"))?
                    .extract()?;
                let status = StatusCode::from_u16(status).map_err(|_| {
                    PyRuntimeError::new_err(format!("invalid HTTP status code {status}"))
                })?;
                let headers = match message.get_item(intern!(py, "headers"))? {
                    Some(h) => parse_headers(&h)?,
                    None => HeaderMap::new(),
                };
                if self.exchange.is_disconnected() {
                    return Err(crate::error::Error::Disconnected.into());
                }
                *st = SendState::HeadPending(PendingHead { status, headers });
                Ok(self.ctx.done.clone_ref(py).into_any())
            }
            "http.response.body" => {
                let data = body_bytes(message)?;
                let more = match message.get_item(intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                match *st {
                    SendState::Idle => {
                        return Err(protocol_error(
                            "Expected ASGI message 'http.response.start', but got 'http.response.body'.".into(),
                        ))
                    }
                    SendState::Complete => {
                        return Err(protocol_error(
                            "Unexpected ASGI message 'http.response.body' sent, after response already completed."
                                .into(),
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
                let outcome = match previous {
                    SendState::HeadPending(head) => {
                        self.exchange
                            .start_response(head.status, head.headers, data, more)?
                    }
                    _ => self.exchange.send_chunk(data, more)?,
                };
                if outcome.flush {
                    self.ctx.call_soon.call1(py, (&self.ctx.flush,))?;
                }
                if outcome.full {
                    let fut = self.ctx.create_future.call0(py)?;
                    if self.exchange.set_send_waiter(fut.clone_ref(py)).is_ok() {
                        return Ok(fut);
                    }
                }
                Ok(self.ctx.done.clone_ref(py).into_any())
            }
            // Trailers need the request to have asked for them; nothing to do for HTTP/1.1.
            "http.response.trailers" => Ok(self.ctx.done.clone_ref(py).into_any()),
            other => Err(protocol_error(format!(
                "Unexpected ASGI message type '{other}' for an http scope."
            ))),
        }
    }
}
