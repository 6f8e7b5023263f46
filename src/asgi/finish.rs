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
use crate::server::LogLevel;

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
mod tests {
    use pyo3::types::PyModule;

    use super::*;
    use crate::asgi::test_support::{exchange, module, with_py, Fixture};

    const APPS: &std::ffi::CStr = cr#"
import asyncio

ran = []

async def complete(send):
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": b"ok"})

async def silent(send):
    pass

async def incomplete(send):
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": b"a", "more_body": True})

async def fails(send):
    raise ValueError("boom")

async def gone(send):
    raise ClientDisconnected("left")

async def cancelled(send):
    raise asyncio.CancelledError()

class Pause:
    def __await__(self):
        return (yield "paused")

async def waits(send):
    try:
        got = await Pause()
        ran.append(("got", got))
        await complete(send)
    except KeyError:
        ran.append("caught")
        await Pause()
    finally:
        ran.append("finally")
"#;

    struct Run<'py> {
        fx: Fixture<'py>,
        apps: Bound<'py, PyModule>,
        exchange: Arc<crate::http::exchange::Exchange>,
        rx: tokio::sync::oneshot::Receiver<http::Response<crate::http::body::ResponseBody>>,
        run: Bound<'py, PyAny>,
    }

    /// `RunApp` over the app `name` of [`APPS`], called with a real `send`.
    fn start<'py>(py: Python<'py>, name: &str) -> Run<'py> {
        let fx = Fixture::new(py);
        let apps = module(py, APPS);
        apps.setattr("ClientDisconnected", py.get_type::<ClientDisconnected>())
            .expect("exc");
        let (exchange, rx) = exchange(false);
        let io = Arc::new(RequestIo::new(exchange.clone(), fx.core.clone()));
        let send = Py::new(py, super::super::io::AsgiSend::new(io.clone())).expect("send");
        let coro = apps
            .getattr(name)
            .and_then(|a| a.call1((send,)))
            .expect("coro");
        let run = Py::new(py, RunApp::new(coro.unbind(), Target::Http(io), None, None))
            .expect("run")
            .into_bound(py)
            .into_any();
        Run {
            fx,
            apps,
            exchange,
            rx,
            run,
        }
    }

    impl Run<'_> {
        fn status(&mut self) -> Option<u16> {
            self.fx.delivered(&mut self.rx).map(|r| r.status().as_u16())
        }

        fn ran(&self) -> String {
            self.apps
                .getattr("ran")
                .expect("ran")
                .repr()
                .expect("repr")
                .to_string()
        }

        fn outcome(&self, result: PyResult<Bound<'_, PyAny>>) -> String {
            match result {
                Ok(v) => format!("yielded {}", v.repr().expect("repr")),
                Err(e) => format!("raised {}", e.get_type(self.run.py()).name().expect("name")),
            }
        }
    }

    fn line(level: &str, msg: &str, exc: Option<&str>) -> (String, String, Option<String>) {
        (level.into(), msg.into(), exc.map(Into::into))
    }

    #[test]
    fn a_complete_response_ends_the_task_quietly() {
        with_py(|py| {
            let mut r = start(py, "complete");
            assert_eq!(r.fx.step(&r.run).0, "ready");
            assert_eq!(r.status(), Some(200));
            assert!(r.fx.lines().is_empty());
            assert!(
                r.exchange.finish() == Finished::Complete,
                "finished once already"
            );
            // Spent: every way of stepping it again says it is over.
            assert_eq!(
                r.outcome(r.run.call_method0("__next__")),
                "raised StopIteration"
            );
            assert_eq!(
                r.outcome(r.run.call_method1("send", (py.None(),))),
                "raised StopIteration"
            );
            let thrown = r
                .run
                .call_method1("throw", (py.get_type::<pyo3::exceptions::PyKeyError>(),));
            assert_eq!(r.outcome(thrown), "raised KeyError");
            assert!(r.run.call_method0("__await__").expect("await").is(&r.run));
            assert!(r.run.call_method0("__iter__").expect("iter").is(&r.run));
        })
    }

    #[test]
    fn an_app_that_never_answers_gets_a_500_and_a_log_line() {
        with_py(|py| {
            let mut r = start(py, "silent");
            assert_eq!(r.fx.step(&r.run).0, "ready");
            assert_eq!(r.status(), Some(500));
            assert_eq!(
                r.fx.lines(),
                [line(
                    "error",
                    "ASGI callable returned without starting response.",
                    None
                )]
            );
        })
    }

    #[test]
    fn an_app_that_stops_mid_stream_is_logged() {
        with_py(|py| {
            let r = start(py, "incomplete");
            assert_eq!(r.fx.step(&r.run).0, "ready");
            assert_eq!(
                r.fx.lines(),
                [line(
                    "error",
                    "ASGI callable returned without completing response.",
                    None
                )]
            );
        })
    }

    #[test]
    fn an_apps_exception_is_answered_and_logged_and_the_task_ends_well() {
        with_py(|py| {
            let mut r = start(py, "fails");
            assert_eq!(r.fx.step(&r.run).0, "ready", "the task does not fail");
            assert_eq!(r.status(), Some(500));
            assert_eq!(
                r.fx.lines(),
                [line(
                    "error",
                    "Exception in ASGI application",
                    Some("ValueError")
                )]
            );
        })
    }

    #[test]
    fn a_client_that_left_is_only_a_debug_line() {
        with_py(|py| {
            let r = start(py, "gone");
            assert_eq!(r.fx.step(&r.run).0, "ready");
            assert_eq!(
                r.fx.lines(),
                [line(
                    "debug",
                    "client disconnected before the response was sent",
                    None
                )]
            );
        })
    }

    #[test]
    fn a_cancellation_settles_the_response_and_goes_on_up() {
        with_py(|py| {
            let mut r = start(py, "cancelled");
            let err = r.run.call_method0("__next__").expect_err("cancelled");
            assert!(err.get_type(py).name().expect("name") == "CancelledError");
            assert!(r.fx.lines().is_empty(), "not an error of the app");
            assert_eq!(r.status(), Some(500));
        })
    }

    #[test]
    fn a_waiting_app_is_resumed_by_send_and_its_end_is_stop_iteration() {
        with_py(|py| {
            let mut r = start(py, "waits");
            assert_eq!(
                r.outcome(r.run.call_method0("__next__")),
                "yielded 'paused'"
            );
            let sent = r.run.call_method1("send", ("value",));
            assert_eq!(r.outcome(sent), "raised StopIteration");
            assert_eq!(r.ran(), "[('got', 'value'), 'finally']");
            assert_eq!(r.status(), Some(200));
        })
    }

    #[test]
    fn throw_reaches_the_app_which_may_catch_it_or_end_with_it() {
        with_py(|py| {
            let r = start(py, "waits");
            let key_error = py.get_type::<pyo3::exceptions::PyKeyError>();
            r.run.call_method0("__next__").expect("paused");
            // Caught, and it waits again.
            let again = r.run.call_method1("throw", (key_error.clone(),));
            assert_eq!(r.outcome(again), "yielded 'paused'");
            // Uncaught, with a value and a traceback: the app's error, settled, then the end.
            let exc = key_error.call1(("k",)).expect("exc");
            let tb = exc.getattr("__traceback__").expect("tb");
            let ended = r.run.call_method1("throw", (key_error.clone(), exc, tb));
            assert_eq!(r.outcome(ended), "raised StopIteration");
            assert_eq!(r.ran(), "['caught', 'finally']");
            assert_eq!(
                r.fx.lines(),
                [line(
                    "error",
                    "Exception in ASGI application",
                    Some("KeyError")
                )]
            );
            let r = start(py, "waits");
            r.run.call_method0("__next__").expect("paused");
            let exc = key_error.call1(("k",)).expect("exc");
            r.run
                .call_method1("throw", (key_error.clone(), exc))
                .expect("caught");
        })
    }

    #[test]
    fn close_closes_the_app_and_settles_the_response_once() {
        with_py(|py| {
            let mut r = start(py, "waits");
            r.run.call_method0("__next__").expect("paused");
            r.run.call_method0("close").expect("close");
            assert_eq!(r.ran(), "['finally']");
            assert_eq!(r.status(), Some(500));
            assert!(r.fx.lines().is_empty());
            r.run
                .call_method0("close")
                .expect("closing again does nothing");
            assert_eq!(
                r.outcome(r.run.call_method0("__next__")),
                "raised StopIteration"
            );
        })
    }
}
