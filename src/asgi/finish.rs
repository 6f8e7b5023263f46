//! The coroutine every request runs as: it drives the app's coroutine and, when that ends,
//! answers or cuts the response, logs errors and writes the access line. Doing this inside
//! the task's own coroutine spares a done-callback, its scheduling and two method calls per
//! request.

use std::sync::Arc;

use pyo3::exceptions::{PyException, PyStopIteration};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;

use super::io::RequestIo;
use super::websocket::WsIo;
use crate::error::ClientDisconnected;
use crate::http::exchange::Finished;
use crate::interface::access::AccessInfo;
use crate::interface::watchdog::Watched;
use crate::transport::LogLevel;

/// How the app's coroutine ended.
pub enum Ending<'a> {
    Returned,
    Raised(&'a PyErr),
    Cancelled,
}

/// Settles the response after the app is done with it, and logs what needs logging.
pub fn conclude(py: Python<'_>, io: &RequestIo, access: Option<&AccessInfo>, ending: Ending<'_>) {
    let outcome = io.exchange.finish();
    let log = &io.core.loggers;
    match ending {
        Ending::Raised(err) if err.is_instance_of::<ClientDisconnected>(py) => log.log(
            py,
            LogLevel::Debug,
            "client disconnected before the response was sent",
        ),
        Ending::Raised(err) => log.error(py, "Exception in ASGI application", Some(err)),
        Ending::Returned if outcome == Finished::NoResponse => log.error(
            py,
            "ASGI callable returned without starting response.",
            None,
        ),
        Ending::Returned if outcome == Finished::Incomplete => log.error(
            py,
            "ASGI callable returned without completing response.",
            None,
        ),
        _ => {}
    }
    if let Some(a) = access {
        let (status, bytes) = io.exchange.outcome();
        a.log(py, log, status, bytes);
    }
}

/// What a finished app call settles.
#[derive(Clone)]
pub enum Target {
    Http(Arc<RequestIo>),
    WebSocket(Arc<WsIo>),
}

impl Target {
    pub fn conclude(&self, py: Python<'_>, access: Option<&AccessInfo>, ending: Ending<'_>) {
        match self {
            Self::Http(io) => conclude(py, io, access, ending),
            Self::WebSocket(io) => io.conclude(py, access, ending),
        }
    }
}

/// Registered as a `collections.abc.Coroutine` so that `loop.create_task` accepts it.
#[pyclass(module = "juggler._juggler")]
pub struct RunApp {
    coro: Option<PyObject>,
    target: Target,
    access: Option<AccessInfo>,
    /// With `--loop-watchdog`: published while each step runs, so that a report of a
    /// blocked loop can name this request.
    watched: Option<Watched>,
}

impl RunApp {
    pub fn new(
        coro: PyObject,
        target: Target,
        access: Option<AccessInfo>,
        watched: Option<Watched>,
    ) -> Self {
        Self {
            coro: Some(coro),
            target,
            access,
            watched,
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
        self.target.conclude(py, self.access.as_ref(), ending);
    }

    fn send_inner(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Option<PyObject>> {
        let Some(coro) = &self.coro else {
            return Err(PyStopIteration::new_err(()));
        };
        let _running = self.watched.as_ref().map(Watched::enter);
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

fn finished_is_stop(step: PyResult<Option<PyObject>>) -> PyResult<PyObject> {
    step?.ok_or_else(|| PyStopIteration::new_err(()))
}

#[pymethods]
impl RunApp {
    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        if self.coro.is_none() {
            return Err(PyStopIteration::new_err(()));
        }
        let result = self.send_inner(py, &py.None().into_bound(py));
        self.step(py, result)
    }

    // send() and throw() must raise StopIteration at the end: unlike __next__'s, their None
    // would read as a bare yield, and the task would step a finished coroutine again.
    fn send(&mut self, py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<PyObject> {
        if self.coro.is_none() {
            return Err(PyStopIteration::new_err(()));
        }
        let result = self.send_inner(py, &value);
        finished_is_stop(self.step(py, result))
    }

    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw(
        &mut self,
        py: Python<'_>,
        typ: Bound<'_, PyAny>,
        val: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        let Some(coro) = &self.coro else {
            return Err(PyErr::from_value(typ));
        };
        let running = self.watched.as_ref().map(Watched::enter);
        let result = match (val, tb) {
            (None, _) => coro.call_method1(py, intern!(py, "throw"), (typ,)),
            (Some(v), None) => coro.call_method1(py, intern!(py, "throw"), (typ, v)),
            (Some(v), Some(t)) => coro.call_method1(py, intern!(py, "throw"), (typ, v, t)),
        };
        drop(running);
        let result = match result {
            Ok(yielded) => Ok(Some(yielded)),
            Err(e) if e.is_instance_of::<PyStopIteration>(py) => Ok(None),
            Err(e) => Err(e),
        };
        finished_is_stop(self.step(py, result))
    }

    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(coro) = self.coro.take() {
            coro.call_method0(py, intern!(py, "close"))?;
            self.target
                .conclude(py, self.access.as_ref(), Ending::Cancelled);
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

#[cfg(test)]
mod tests;
