use pyo3::types::PyModule;

use super::*;
use crate::asgi::test_support::Fixture;
use crate::interface::test_support::{exchange, module, with_py};

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

async def gives_up(send):
    try:
        await Pause()
    except KeyError:
        return

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

#[test]
fn an_app_that_ends_on_a_thrown_exception_has_returned() {
    with_py(|py| {
        let mut r = start(py, "gives_up");
        r.run.call_method0("__next__").expect("paused");
        let key_error = py.get_type::<pyo3::exceptions::PyKeyError>();
        let ended = r.run.call_method1("throw", (key_error,));
        assert_eq!(r.outcome(ended), "raised StopIteration");
        // Its StopIteration is how a coroutine returns, not an error of the app.
        assert_eq!(
            r.fx.lines(),
            [line(
                "error",
                "ASGI callable returned without starting response.",
                None
            )]
        );
        assert_eq!(r.status(), Some(500));
    })
}
