//! The coroutine every request runs as: it drives the app's coroutine and, when that ends,
//! answers or cuts the response, logs errors and writes the access line. Doing this inside
//! the task's own coroutine spares a done-callback, its scheduling and two method calls per
//! request.

use std::sync::Arc;

use http::request::Parts;
use http::StatusCode;
use pyo3::exceptions::{PyException, PyStopIteration};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;

use super::LoopCtx;
use crate::error::ClientDisconnected;
use crate::http::exchange::{Exchange, Finished};
use crate::server::shared::ConnInfo;

/// What an access log line needs, captured before the request parts are dropped.
#[derive(Clone)]
pub struct AccessInfo {
    client: String,
    method: String,
    path: String,
    version: &'static str,
}

impl AccessInfo {
    pub fn new(parts: &Parts, conn: &ConnInfo) -> Self {
        let client = match &conn.client {
            Some((host, port)) => format!("{host}:{port}"),
            None => "-".to_owned(),
        };
        let path = match parts.uri.path_and_query() {
            Some(pq) => pq.as_str().to_owned(),
            None => parts.uri.path().to_owned(),
        };
        let version = match parts.version {
            http::Version::HTTP_10 => "1.0",
            http::Version::HTTP_2 => "2",
            _ => "1.1",
        };
        Self {
            client,
            method: parts.method.as_str().to_owned(),
            path,
            version,
        }
    }

    pub fn log(&self, py: Python<'_>, ctx: &LoopCtx, status: Option<StatusCode>) {
        let Some(status) = status else { return };
        let args = (
            "%s - \"%s %s HTTP/%s\" %d",
            self.client.as_str(),
            self.method.as_str(),
            self.path.as_str(),
            self.version,
            status.as_u16(),
        );
        if let Err(e) = ctx
            .access_logger
            .call_method1(py, intern!(py, "info"), args)
        {
            e.print(py);
        }
    }
}

/// How the app's coroutine ended.
pub enum Ending<'a> {
    Returned,
    Raised(&'a PyErr),
    Cancelled,
}

/// Settles the response after the app is done with it, and logs what needs logging.
pub fn conclude(
    py: Python<'_>,
    ctx: &LoopCtx,
    exchange: &Arc<Exchange>,
    access: Option<&AccessInfo>,
    ending: Ending<'_>,
) {
    let outcome = exchange.finish();
    match ending {
        Ending::Raised(err) if err.is_instance_of::<ClientDisconnected>(py) => {
            ctx.log(
                py,
                "debug",
                "client disconnected before the response was sent",
            );
        }
        Ending::Raised(err) => ctx.log_error(
            py,
            "Exception in ASGI application",
            Some(err.value(py).as_any()),
        ),
        Ending::Returned if outcome == Finished::NoResponse => ctx.log_error(
            py,
            "ASGI callable returned without starting response.",
            None,
        ),
        Ending::Returned if outcome == Finished::Incomplete => ctx.log_error(
            py,
            "ASGI callable returned without completing response.",
            None,
        ),
        _ => {}
    }
    if let Some(a) = access {
        a.log(py, ctx, exchange.status());
    }
}

/// Registered as a `collections.abc.Coroutine` so that `loop.create_task` accepts it.
#[pyclass(module = "juggler._juggler")]
pub struct RunApp {
    coro: Option<PyObject>,
    exchange: Arc<Exchange>,
    ctx: Arc<LoopCtx>,
    access: Option<AccessInfo>,
}

impl RunApp {
    pub fn new(
        coro: PyObject,
        exchange: Arc<Exchange>,
        ctx: Arc<LoopCtx>,
        access: Option<AccessInfo>,
    ) -> Self {
        Self {
            coro: Some(coro),
            exchange,
            ctx,
            access,
        }
    }

    /// Turns one step of the app's coroutine into this coroutine's step.
    fn step(
        &mut self,
        py: Python<'_>,
        result: PyResult<Option<PyObject>>,
    ) -> PyResult<Option<PyObject>> {
        match result {
            Ok(Some(yielded)) => Ok(Some(yielded)),
            Ok(None) => {
                self.end(py, Ending::Returned);
                Ok(None)
            }
            Err(err) if err.is_instance_of::<PyException>(py) => {
                // The app's error is handled here (500 or a cut response): the task ends well.
                self.end(py, Ending::Raised(&err));
                Ok(None)
            }
            // CancelledError, KeyboardInterrupt, SystemExit: settle the response, let it go on.
            Err(err) => {
                self.end(py, Ending::Cancelled);
                Err(err)
            }
        }
    }

    fn end(&mut self, py: Python<'_>, ending: Ending<'_>) {
        self.coro = None;
        conclude(py, &self.ctx, &self.exchange, self.access.as_ref(), ending);
    }

    fn send_inner(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>> {
        let Some(coro) = &self.coro else {
            return Err(PyStopIteration::new_err(()));
        };
        let mut out: *mut ffi::PyObject = std::ptr::null_mut();
        // SAFETY: both objects are alive for the call; PyIter_Send hands back a new reference
        // (or NULL with an exception set), which is owned right away.
        let status = unsafe { ffi::PyIter_Send(coro.as_ptr(), value.as_ptr(), &mut out) };
        match status {
            ffi::PySendResult::PYGEN_NEXT => Ok(Some(unsafe { PyObject::from_owned_ptr(py, out) })),
            ffi::PySendResult::PYGEN_RETURN => {
                // SAFETY: as above; the app's return value is not used by ASGI.
                drop(unsafe { PyObject::from_owned_ptr(py, out) });
                Ok(None)
            }
            ffi::PySendResult::PYGEN_ERROR => Err(PyErr::fetch(py)),
        }
    }
}

#[pymethods]
impl RunApp {
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        let result = self.send_inner(py, &py.None().into_bound(py));
        self.step(py, result)
    }

    fn send(&mut self, py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<Option<PyObject>> {
        let result = self.send_inner(py, &value);
        self.step(py, result)
    }

    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw(
        &mut self,
        py: Python<'_>,
        typ: Bound<'_, PyAny>,
        val: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Option<PyObject>> {
        let Some(coro) = &self.coro else {
            return Err(PyErr::from_value(typ));
        };
        let result = match (val, tb) {
            (None, _) => coro.call_method1(py, intern!(py, "throw"), (typ,)),
            (Some(v), None) => coro.call_method1(py, intern!(py, "throw"), (typ, v)),
            (Some(v), Some(t)) => coro.call_method1(py, intern!(py, "throw"), (typ, v, t)),
        };
        let result = match result {
            Ok(yielded) => Ok(Some(yielded)),
            Err(e) if e.is_instance_of::<PyStopIteration>(py) => Ok(None),
            Err(e) => Err(e),
        };
        self.step(py, result)
    }

    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(coro) = self.coro.take() {
            coro.call_method0(py, intern!(py, "close"))?;
            conclude(
                py,
                &self.ctx,
                &self.exchange,
                self.access.as_ref(),
                Ending::Cancelled,
            );
        }
        Ok(())
    }

    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
}
