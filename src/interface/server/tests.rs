//! A `Server` built whole and never started: what it joins at build time, and the loop-thread
//! end of the mailbox calling the worker's callbacks.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::*;
use crate::config::CoreConfig;
use crate::http::{Dispatch, NewRequest};
use crate::interface::test_support::{helpers, module, with_py};
use crate::metrics::Area;
use crate::py::{LoadSlots, Metrics};
use crate::transport::balance::SharedSlots;

/// An interface that takes no request: these tests never start the server.
struct Refuses;

impl Dispatch for Refuses {
    fn dispatch(&self, request: NewRequest) -> Result<(), Box<NewRequest>> {
        Err(Box::new(request))
    }
}

impl Interface for Refuses {
    fn start(self: Arc<Self>, _py: Python<'_>, _request: Box<NewRequest>) {}
}

const CALLBACKS: &std::ffi::CStr = cr#"
calls = []

def beat(server):
    calls.append(("beat", server))

def limit(server):
    calls.append(("limit", server))

def fails(server):
    raise KeyError("from the callback")
"#;

struct Built<'py> {
    server: Bound<'py, Server>,
    callbacks: Bound<'py, PyModule>,
    recorder: Bound<'py, PyAny>,
}

/// A server on a fresh socket, with `options` made from the callbacks module.
fn build<'py>(
    py: Python<'py>,
    options: impl FnOnce(&Bound<'py, PyModule>) -> ServerOptions,
) -> Built<'py> {
    let callbacks = module(py, CALLBACKS);
    let recorder = helpers(py)
        .getattr("Recorder")
        .and_then(|r| r.call0())
        .expect("recorder");
    let event_loop = py
        .import("asyncio")
        .and_then(|a| a.call_method0("new_event_loop"))
        .expect("loop");
    let config =
        CoreConfig::build(5.0, None, 8192, true, vec![], String::new(), false).expect("config");
    let host = Host::new(config.clone()).expect("host");
    let rec = recorder.clone().unbind();
    let loggers = Arc::new(Loggers::new(py, rec.clone_ref(py), rec, &config).expect("loggers"));
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = Server::new(
        py,
        host,
        Arc::new(Refuses),
        loggers,
        &event_loop,
        (std::os::fd::AsRawFd::as_raw_fd(&socket), false),
        &[],
        options(&callbacks),
    )
    .expect("server");
    Built {
        server: Bound::new(py, server).expect("pyclass"),
        callbacks,
        recorder,
    }
}

fn callback(callbacks: &Bound<'_, PyModule>, name: &str) -> PyObject {
    callbacks.getattr(name).expect("callback").unbind()
}

fn no_options() -> ServerOptions {
    ServerOptions {
        tls: None,
        balance: None,
        metrics: None,
        heartbeat: None,
        on_request_limit: None,
        own_socket: false,
    }
}

/// `(name, whether the argument was the server itself)` of each callback call.
fn calls(built: &Built<'_>) -> Vec<(String, bool)> {
    let calls = built.callbacks.getattr("calls").expect("calls");
    calls
        .try_iter()
        .expect("list")
        .map(|call| {
            let call = call.expect("item");
            let call = call.downcast::<PyTuple>().expect("tuple");
            let name: String = call.get_item(0).and_then(|n| n.extract()).expect("name");
            let arg = call.get_item(1).expect("arg");
            (name, arg.is(&built.server))
        })
        .collect()
}

#[test]
fn heartbeats_call_back_each_time_and_the_request_limit_once_with_the_server() {
    with_py(|py| {
        let built = build(py, |cb| ServerOptions {
            heartbeat: Some(Heartbeat {
                period: Duration::from_secs(1),
                callback: callback(cb, "beat"),
            }),
            on_request_limit: Some(callback(cb, "limit")),
            ..no_options()
        });
        let mailbox = &built.server.get().host.mailbox;
        mailbox.post(LoopEvent::Beat);
        mailbox.post(LoopEvent::RequestLimit);
        mailbox.post(LoopEvent::Beat);
        mailbox.post(LoopEvent::RequestLimit);
        Server::process(&built.server);
        mailbox.post(LoopEvent::RequestLimit);
        Server::process(&built.server);
        let expected = [("beat", true), ("limit", true), ("beat", true)];
        assert_eq!(calls(&built), expected.map(|(n, s)| (n.to_owned(), s)));
    });
}

#[test]
fn without_callbacks_beats_and_the_request_limit_are_dropped() {
    with_py(|py| {
        let built = build(py, |_| no_options());
        let mailbox = &built.server.get().host.mailbox;
        mailbox.post(LoopEvent::Beat);
        mailbox.post(LoopEvent::RequestLimit);
        Server::process(&built.server);
        assert!(calls(&built).is_empty());
    });
}

#[test]
fn what_a_callback_raises_is_logged() {
    with_py(|py| {
        let built = build(py, |cb| ServerOptions {
            heartbeat: Some(Heartbeat {
                period: Duration::from_secs(1),
                callback: callback(cb, "fails"),
            }),
            on_request_limit: Some(callback(cb, "fails")),
            ..no_options()
        });
        let mailbox = &built.server.get().host.mailbox;
        mailbox.post(LoopEvent::Beat);
        mailbox.post(LoopEvent::RequestLimit);
        Server::process(&built.server);
        let lines: Vec<(String, String, Option<String>)> = built
            .recorder
            .getattr("lines")
            .and_then(|l| l.extract())
            .expect("lines");
        let error = |what: &str| {
            (
                "error".to_owned(),
                format!("Exception in the {what} callback"),
                Some("KeyError".to_owned()),
            )
        };
        assert_eq!(lines, [error("heartbeat"), error("request-limit")]);
    });
}

#[test]
fn the_load_and_metrics_slots_are_joined_when_built() {
    with_py(|py| {
        let slots = Arc::new(SharedSlots::new(2).expect("mmap"));
        let area = Arc::new(Area::new(2).expect("mmap"));
        let load = Bound::new(py, LoadSlots(slots.clone())).expect("slots");
        let metrics = Bound::new(py, Metrics(area)).expect("metrics");
        let built = build(py, |_| {
            ServerOptions::new(None, Some((load, 1)), Some((metrics, 1)), None, None, false)
                .expect("options")
        });
        let server = built.server.get();
        // Published with no connection: a sibling may leave connections to it from now on.
        assert_eq!((slots.get(0), slots.get(1)), (None, Some(0)));
        assert!(server.host.registry.balance().is_some());
        assert!(server.host.registry.metrics().is_some());
        assert!(server.metrics.is_some());
    });
}
