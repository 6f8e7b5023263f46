//! One WSGI call on a pool thread: environ in, the app's iterable out to the client, `close()`
//! always called, errors answered and logged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pyo3::exceptions::PyOSError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::busy::Busy;
use super::delivery::Delivery;
use super::environ::EnvironTemplate;
use super::file_wrapper::FileWrapper;
use super::input::WsgiInput;
use super::pool::{Lease, Run};
use super::response::{body_chunk, Response, StartResponse};
use super::wait::{ThreadWaker, Waiter};
use crate::bridge::Mailbox;
use crate::error::ClientDisconnected;
use crate::http::body::plain_response;
use crate::http::exchange::Finished;
use crate::http::{Head, NewRequest, OwnAnswer};
use crate::interface::access::{self, AccessInfo};
use crate::interface::log::Loggers;
use crate::interface::LoopEvent;
use crate::transport::{LogLevel, Token};

/// A request waiting for a pool thread; its token keeps a graceful shutdown waiting for it.
pub struct Job {
    pub request: NewRequest,
    pub token: Token,
}

/// A list or tuple body up to this size leaves as one write with a Content-Length.
const JOIN_MAX: usize = 64 * 1024;

/// What a request refused for its wait (`--queue-timeout`) asks the client to wait: the
/// queue it met moves on within about a second.
const RETRY_AFTER_QUEUE: &str = "1";
const REFUSED: &str = "Service Unavailable";

pub struct Caller {
    pub app: PyObject,
    pub loggers: Arc<Loggers>,
    pub environ: EnvironTemplate,
    pub write_timeout: Option<Duration>,
    pub delivery: Arc<Delivery>,
    pub busy: Arc<Busy>,
    /// Where the access line of a refused request goes when Python's logging writes it.
    pub mailbox: Arc<Mailbox<LoopEvent>>,
}

impl Run<Job> for Caller {
    fn run(&self, job: Job, lease: &Lease<'_, Job>) {
        Python::with_gil(|py| self.call(py, job, lease));
    }

    /// Keeps the thread's Python thread state for its whole life: without it each request's
    /// GIL acquisition would create and destroy one.
    fn thread(&self, main: &mut (dyn FnMut() + Send)) {
        self.busy
            .with_slot(|| Python::with_gil(|py| py.allow_threads(main)));
    }

    /// Waited too long for a thread: 503, without the GIL and without the app.
    fn refuse(&self, job: Job) {
        let Job { request, token } = job;
        let exchange = &request.exchange;
        let mut response = plain_response(http::StatusCode::SERVICE_UNAVAILABLE, REFUSED);
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(RETRY_AFTER_QUEUE),
        );
        let status = response.status();
        // Too late only when the client left meanwhile: then there is no one to answer.
        if exchange.answer_instead(response).is_ok() {
            access::log_own_answer(
                &self.loggers,
                &self.mailbox,
                OwnAnswer {
                    head: Head::of_parts(&request.parts),
                    conn: &request.conn,
                    forwarded: request.forwarded.as_deref(),
                    status,
                    bytes: REFUSED.len() as u64,
                },
            );
        }
        exchange.finish();
        drop(token);
    }

    /// One GIL hold, and one hand-over to the I/O thread, for a run of jobs taken back to
    /// back.
    fn session(&self, jobs: &mut dyn FnMut()) {
        self.delivery.session(|| Python::with_gil(|_| jobs()));
    }
}

impl Caller {
    fn call(&self, py: Python<'_>, job: Job, lease: &Lease<'_, Job>) {
        let Job { request, token } = job;
        let NewRequest {
            exchange,
            parts,
            conn,
            websocket: _,
            forwarded,
        } = request;
        let _busy = Busy::enter(parts.method.as_str(), parts.uri.path());
        let access = AccessInfo::capture(&self.loggers, &parts, &conn, forwarded.as_deref());
        let waker = ThreadWaker::for_this_thread();
        let waiter = || Waiter {
            exchange: exchange.clone(),
            waker: waker.clone(),
            timeout: self.write_timeout,
            delivery: self.delivery.clone(),
        };
        let response = Response::new(waiter());
        let result = if exchange.is_disconnected() {
            // The client left while the request waited for a thread: don't run it.
            Ok(())
        } else {
            (|| -> PyResult<()> {
                let input = Py::new(py, WsgiInput::new(waiter()))?.into_any();
                let environ = self
                    .environ
                    .build(py, &parts, &conn, input, forwarded.as_deref())?;
                let start = Py::new(py, StartResponse::new(response.clone()))?;
                let iterable = self.app.bind(py).call1((environ, start))?;
                let sent = drive(py, &response, &iterable, lease);
                // PEP 3333: close() is called whatever happened, also on a disconnect.
                let closed = close(py, &iterable);
                sent.and(closed)
            })()
        };
        let outcome = exchange.finish();
        match result {
            Err(err)
                if err.is_instance_of::<ClientDisconnected>(py)
                    || (exchange.is_disconnected() && err.is_instance_of::<PyOSError>(py)) =>
            {
                self.loggers.log(
                    py,
                    LogLevel::Debug,
                    &format!("client disconnected during a WSGI call: {}", err.value(py)),
                )
            }
            Err(err) => self
                .loggers
                .error(py, "Exception in WSGI application", Some(&err)),
            Ok(()) => debug_assert!(outcome != Finished::NoResponse),
        }
        if let Some(a) = access {
            let (status, bytes) = exchange.outcome();
            a.log(py, &self.loggers, status, bytes);
        }
        drop(token);
    }
}

fn close(py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
    // A plain list or tuple has no close(); asking would raise and swallow an AttributeError.
    if iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>() {
        return Ok(());
    }
    if iterable.hasattr(intern!(py, "close"))? {
        iterable.call_method0(intern!(py, "close"))?;
    }
    Ok(())
}

/// Sends what the app returned.
fn drive(
    py: Python<'_>,
    response: &Response,
    iterable: &Bound<'_, PyAny>,
    lease: &Lease<'_, Job>,
) -> PyResult<()> {
    if let Ok(wrapper) = iterable.downcast::<FileWrapper>() {
        if let Some(file) = wrapper.borrow().native_file(py) {
            // The I/O thread sends it: a large file to a slow client holds no pool thread.
            return response.send_file(py, file);
        }
    }
    if let Ok(list) = iterable.downcast::<PyList>() {
        return send_sequence(py, response, list.iter().collect());
    }
    if let Ok(tuple) = iterable.downcast::<PyTuple>() {
        return send_sequence(py, response, tuple.iter().collect());
    }
    let mut sent = 0;
    for item in iterable.try_iter()? {
        let chunk = body_chunk(&item?)?;
        if chunk.is_empty() {
            continue;
        }
        response.send(py, chunk, true)?;
        if response.complete() {
            // The app's Content-Length is reached: stop iterating (PEP 3333).
            return Ok(());
        }
        sent += 1;
        if sent == 2 {
            // A second chunk, and more may come, slowly (SSE, a download): stop holding a
            // place in the pool, so that streams cannot starve ordinary requests. Not at the
            // first: most iterables (Django's, Flask's) end after one.
            lease.detach();
        }
    }
    response.end(py)
}

/// A list or tuple body: small ones joined into one write with a Content-Length.
fn send_sequence(
    py: Python<'_>,
    response: &Response,
    items: Vec<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let chunks = items
        .iter()
        .map(body_chunk)
        .collect::<PyResult<Vec<Bytes>>>()?;
    let total: usize = chunks.iter().map(Bytes::len).sum();
    if chunks.len() == 1 || total <= JOIN_MAX {
        let whole = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.into_iter().next().unwrap_or_default(),
            _ => Bytes::from(chunks.concat()),
        };
        if whole.is_empty() {
            return response.end(py);
        }
        return response.send(py, whole, false);
    }
    for chunk in chunks {
        response.send(py, chunk, true)?;
        if response.complete() {
            return Ok(());
        }
    }
    response.end(py)
}

#[cfg(test)]
mod tests;
