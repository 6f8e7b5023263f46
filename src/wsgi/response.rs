//! `start_response`, `write` and the response iterable: turning what a WSGI app returns into
//! a response head and body on the exchange, with backpressure and a write time-out.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use parking_lot::Mutex;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyString, PyTuple};

use super::wait::Waiter;
use crate::error::Error;
use crate::http::exchange::Handover;
use crate::http::file::{FileRange, CHUNK};
use hyper::ext::ReasonPhrase;

/// Where the response head stands.
enum Head {
    /// `start_response` not called yet.
    None,
    /// Called; the head leaves with the first non-empty body chunk (PEP 3333).
    Pending {
        status: StatusCode,
        headers: HeaderMap,
        /// The app's reason phrase when it is not the standard one ("200 Fine").
        reason: Option<ReasonPhrase>,
    },
    Sent,
}

#[derive(Clone, Copy)]
enum HeadKind {
    None,
    Pending,
    Sent,
}

impl Head {
    fn kind(&self) -> HeadKind {
        match self {
            Head::None => HeadKind::None,
            Head::Pending { .. } => HeadKind::Pending,
            Head::Sent => HeadKind::Sent,
        }
    }
}

struct State {
    head: Head,
    /// What the app's Content-Length allows still to be sent, if it gave one.
    remaining: Option<u64>,
    complete: bool,
}

/// The response side of one WSGI call, shared by `start_response`, `write` and the loop over
/// the iterable.
pub struct Response {
    waiter: Waiter,
    state: Mutex<State>,
}

fn protocol_error(msg: impl Into<String>) -> PyErr {
    Error::protocol(msg).into()
}

impl Response {
    pub fn new(waiter: Waiter) -> Arc<Self> {
        Arc::new(Self {
            waiter,
            state: Mutex::new(State {
                head: Head::None,
                remaining: None,
                complete: false,
            }),
        })
    }

    /// Whether the app's Content-Length is reached: iterating further is pointless (PEP 3333
    /// says to stop).
    pub fn complete(&self) -> bool {
        self.state.lock().complete
    }

    /// Sends `data` (and the head, the first time); `more` false completes the response.
    /// Blocks with the GIL released while the client is over a megabyte behind.
    pub fn send(&self, py: Python<'_>, mut data: Bytes, mut more: bool) -> PyResult<()> {
        if more {
            // A stream that goes on is a call making progress, however long it runs.
            super::busy::Busy::progress();
        }
        let head = {
            let mut st = self.state.lock();
            if st.complete {
                return Ok(());
            }
            if let Some(left) = st.remaining.as_mut() {
                // Never more than the app's Content-Length: the connection would desync.
                let n = (data.len() as u64).min(*left);
                data.truncate(n as usize);
                *left -= n;
                if *left == 0 {
                    more = false;
                }
            }
            if more && data.is_empty() && !matches!(st.head, Head::Sent) {
                // Headers wait for the first non-empty chunk.
                return Ok(());
            }
            if matches!(st.head, Head::None) {
                return Err(protocol_error(
                    "the WSGI app produced a body before calling start_response()",
                ));
            }
            st.complete = !more;
            match std::mem::replace(&mut st.head, Head::Sent) {
                Head::Pending {
                    status,
                    headers,
                    reason,
                } => Some((status, headers, reason)),
                Head::None | Head::Sent => None,
            }
        };
        let exchange = &self.waiter.exchange;
        let sent = match head {
            Some((status, headers, reason)) => {
                let mut sent = exchange.start_response(status, headers, data, more)?;
                if let (Some(reason), Some(Handover::Respond(_, response))) =
                    (reason, sent.handover.as_mut())
                {
                    response.extensions_mut().insert(reason);
                }
                sent
            }
            None => exchange.send_chunk(data, more)?,
        };
        if let Some(h) = sent.handover {
            self.waiter.delivery.hand_over(h, !more);
        }
        if sent.full {
            self.waiter.wait_room(py)?;
        }
        Ok(())
    }

    /// The end of the iterable: completes the response (sending the head if only empty
    /// chunks came).
    pub fn end(&self, py: Python<'_>) -> PyResult<()> {
        if matches!(self.state.lock().head, Head::None) {
            return Err(protocol_error(
                "the WSGI app returned without calling start_response()",
            ));
        }
        self.send(py, Bytes::new(), false)
    }

    /// Sends a regular file from Rust: the I/O thread reads it (see [`crate::http::file`]),
    /// and this pool thread is free at once. No more than the app's Content-Length is sent;
    /// one longer than the file is refused before anything leaves. After a `write()` the
    /// head is gone: the file then follows as chunks read here, GIL released.
    pub fn send_file(&self, py: Python<'_>, mut file: FileRange) -> PyResult<()> {
        let head = {
            let mut st = self.state.lock();
            match std::mem::replace(&mut st.head, Head::Sent) {
                Head::Pending {
                    status,
                    headers,
                    reason,
                } => {
                    st.complete = true;
                    Some((status, headers, reason))
                }
                other => {
                    st.head = other;
                    None
                }
            }
        };
        let Some((status, headers, reason)) = head else {
            return self.send_file_chunks(py, file);
        };
        if let Some(declared) = declared_length(&headers) {
            file.truncate(declared);
        }
        let mut sent = self.waiter.exchange.start_file(status, headers, file)?;
        if let (Some(reason), Some(Handover::Respond(_, response))) =
            (reason, sent.handover.as_mut())
        {
            response.extensions_mut().insert(reason);
        }
        if let Some(h) = sent.handover {
            self.waiter.delivery.hand_over(h, true);
        }
        Ok(())
    }

    fn send_file_chunks(&self, py: Python<'_>, file: FileRange) -> PyResult<()> {
        let (mut offset, end) = (file.offset, file.offset + file.len);
        while offset < end && !self.complete() {
            let want = usize::try_from(end - offset).map_or(CHUNK, |l| l.min(CHUNK));
            let chunk = py
                .allow_threads(|| file.read_chunk(offset, want))
                .map_err(Error::from)?;
            if chunk.is_empty() {
                break;
            }
            offset += chunk.len() as u64;
            self.send(py, chunk, true)?;
        }
        self.end(py)
    }
}

/// The app's Content-Length, when it is a plain number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// "200 OK" -> 200, and the reason phrase if it is not the standard one.
fn parse_status(status: &Bound<'_, PyAny>) -> PyResult<(StatusCode, Option<ReasonPhrase>)> {
    let text = status
        .downcast::<PyString>()
        .map_err(|_| protocol_error("start_response(): status must be a str like '200 OK'"))?
        .to_str()?;
    let bytes = text.as_bytes();
    let code_ok = bytes.len() >= 3
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && (bytes.len() == 3 || bytes[3] == b' ')
        && !bytes.iter().any(|&b| b == b'\r' || b == b'\n');
    let code = if code_ok {
        StatusCode::from_bytes(&bytes[..3]).ok()
    } else {
        None
    };
    // A WSGI app cannot send an interim (1xx) response: its one head is the final one.
    let code = code
        .filter(|c| c.as_u16() >= 200)
        .ok_or_else(|| protocol_error(format!("start_response(): invalid status {text:?}")))?;
    let reason = text.get(4..).unwrap_or("");
    let custom = if reason.is_empty() || Some(reason) == code.canonical_reason() {
        None
    } else {
        Some(ReasonPhrase::try_from(reason.as_bytes()).map_err(|_| {
            protocol_error(format!(
                "start_response(): invalid reason phrase in {text:?}"
            ))
        })?)
    };
    Ok((code, custom))
}

fn native_bytes(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    let text = value
        .downcast::<PyString>()
        .map_err(|_| protocol_error(format!("start_response(): {what} must be a str")))?
        .to_str()?;
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| protocol_error(format!("start_response(): {what} {text:?} is not latin-1")))
}

fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<(HeaderMap, Option<u64>)> {
    let mut map = HeaderMap::new();
    let mut length = None;
    let bad = || {
        protocol_error("start_response(): headers must be a list of (name, value) tuples of str")
    };
    for item in headers.try_iter().map_err(|_| bad())? {
        let item = item?;
        let pair = item.downcast::<PyTuple>().map_err(|_| bad())?;
        if pair.len() != 2 {
            return Err(bad());
        }
        let name = native_bytes(&pair.get_item(0)?, "header name")?;
        let value = native_bytes(&pair.get_item(1)?, "header value")?;
        let name = HeaderName::from_bytes(&name).map_err(|_| {
            protocol_error(format!(
                "start_response(): invalid header name {:?}",
                String::from_utf8_lossy(&name)
            ))
        })?;
        let value = HeaderValue::from_bytes(&value).map_err(|_| {
            protocol_error(format!(
                "start_response(): invalid value for header {:?}",
                name.as_str()
            ))
        })?;
        if name == header::CONTENT_LENGTH {
            length = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
        }
        map.append(name, value);
    }
    Ok((map, length))
}

/// The `start_response` callable of one request.
#[pyclass(frozen, module = "juggler._juggler")]
pub struct StartResponse {
    response: Arc<Response>,
}

impl StartResponse {
    pub fn new(response: Arc<Response>) -> Self {
        Self { response }
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__(
        &self,
        py: Python<'_>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Write> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        // The state's lock is never held while Python runs: a headers iterable or an
        // exception's code could call back into write() or start_response().
        let head = match (self.response.state.lock().head.kind(), exc_info) {
            (HeadKind::Sent, Some(info)) => Err(info),
            (HeadKind::None, _) | (HeadKind::Pending, Some(_)) => Ok(()),
            (_, None) => {
                return Err(protocol_error(
                    "start_response() called again without exc_info",
                ))
            }
        };
        if let Err(info) = head {
            // Too late to replace the head: the app's error goes on up (PEP 3333).
            let exc = info.get_item(1)?;
            let tb = info.get_item(2)?;
            let exc = if tb.is_none() {
                exc
            } else {
                exc.call_method1(intern!(py, "with_traceback"), (tb,))?
            };
            return Err(PyErr::from_value(exc));
        }
        let (status, reason) = parse_status(status)?;
        let (headers, length) = parse_headers(headers)?;
        let mut st = self.response.state.lock();
        if matches!(st.head, Head::Sent) {
            return Err(protocol_error(
                "start_response() called while its headers were being sent",
            ));
        }
        st.head = Head::Pending {
            status,
            headers,
            reason,
        };
        st.remaining = length;
        Ok(Write {
            response: self.response.clone(),
        })
    }
}

/// The `write` callable `start_response` returns (for apps written before iterables).
#[pyclass(frozen, module = "juggler._juggler")]
pub struct Write {
    response: Arc<Response>,
}

#[pymethods]
impl Write {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = body_chunk(data)?;
        self.response.send(py, data, true)
    }
}

/// Below this a copy is cheaper than keeping the `bytes` object alive.
const ZERO_COPY_MIN: usize = 64 * 1024;

/// One item of the response iterable as bytes.
pub fn body_chunk(item: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = item.downcast::<PyBytes>() {
        let data = b.as_bytes();
        if data.len() >= ZERO_COPY_MIN {
            return Ok(Bytes::from_owner(PyBackedBytes::from(b.clone())));
        }
        return Ok(Bytes::copy_from_slice(data));
    }
    if item.is_instance_of::<PyString>() {
        return Err(protocol_error(
            "WSGI response bodies must be bytes, not str (encode the text first)",
        ));
    }
    item.extract::<Vec<u8>>().map(Bytes::from).map_err(|_| {
        protocol_error(format!(
            "WSGI response bodies must be bytes, got {}",
            item.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

#[cfg(test)]
mod tests;
