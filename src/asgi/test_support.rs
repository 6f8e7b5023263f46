//! The ASGI unit tests' [`Fixture`]: an [`AsgiCore`] whose loggers and `call_soon` record what
//! they are given, and its outbox stepped by hand. What `wsgi` shares with it is in
//! `crate::interface::test_support`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Waker};

use http::Response;
use pyo3::prelude::*;
use pyo3::types::PyModule;
use tokio::sync::oneshot;

use crate::http::body::ResponseBody;

use super::awaitable::Done;
use super::scope::ScopeTemplate;
use super::{AsgiCore, FlushOutbox};
use crate::bridge::Outbox;
use crate::config::CoreConfig;
use crate::interface::log::Loggers;
use crate::interface::test_support::helpers;
use crate::interface::{Host, LoopEvent};

/// A core as a worker makes it, with a `Recorder` (`interface::test_support::helpers`) for loggers and `call_soon`.
pub struct Fixture<'py> {
    pub core: Arc<AsgiCore>,
    pub recorder: Bound<'py, PyAny>,
    pub helpers: Bound<'py, PyModule>,
    pub event_loop: Bound<'py, PyAny>,
}

impl<'py> Fixture<'py> {
    pub fn new(py: Python<'py>) -> Self {
        Self::build(py, None, |_| {})
    }

    /// A core that serves `app` as a worker does: tasks made by `task_spawner` on a real
    /// event loop, flushes scheduled with the loop's own `call_soon`.
    pub fn serving(
        py: Python<'py>,
        app: Bound<'py, PyAny>,
        configure: impl FnOnce(&mut CoreConfig),
    ) -> Self {
        Self::build(py, Some(app), configure)
    }

    fn build(
        py: Python<'py>,
        app: Option<Bound<'py, PyAny>>,
        configure: impl FnOnce(&mut CoreConfig),
    ) -> Self {
        let helpers = helpers(py);
        let recorder = helpers
            .getattr("Recorder")
            .and_then(|r| r.call0())
            .expect("recorder");
        let event_loop = py
            .import("asyncio")
            .and_then(|a| a.call_method0("new_event_loop"))
            .expect("loop");
        let mut config =
            CoreConfig::build(5.0, None, 8192, true, vec![], String::new(), false).expect("config");
        configure(&mut config);
        let host = Host::new(config.clone()).expect("host");
        let rec = recorder.clone().unbind();
        let loggers = Arc::new(Loggers::new(py, rec.clone_ref(py), rec, &config).expect("loggers"));
        let outbox = Arc::new(Outbox::new());
        let (create_task, task_kwargs, call_soon) = match &app {
            Some(_) => {
                let (task, kwargs) = super::task_spawner(py, &event_loop).expect("spawner");
                let soon = event_loop.getattr("call_soon").expect("call_soon");
                (task, kwargs, soon)
            }
            None => (
                py.None(),
                None,
                recorder.getattr("call_soon").expect("call_soon"),
            ),
        };
        let core = Arc::new(AsgiCore {
            app: app.map_or_else(|| py.None(), Bound::unbind),
            create_task,
            task_kwargs,
            create_future: event_loop
                .getattr("create_future")
                .expect("create_future")
                .unbind(),
            call_soon: call_soon.unbind(),
            flush: Py::new(py, FlushOutbox(outbox.clone()))
                .expect("flush")
                .into_any(),
            outbox,
            state: None,
            loggers,
            done: Py::new(py, Done).expect("done"),
            scope: ScopeTemplate::new(py, "").expect("scope"),
            host,
        });
        Self {
            core,
            recorder,
            helpers,
            event_loop,
        }
    }

    /// What the loggers got, as `(level, message, exception type)`.
    pub fn lines(&self) -> Vec<(String, String, Option<String>)> {
        self.recorder
            .getattr("lines")
            .and_then(|l| l.extract())
            .expect("lines")
    }

    /// How many flushes the core asked the loop to schedule.
    pub fn flushes_scheduled(&self) -> usize {
        self.recorder
            .getattr("soon")
            .and_then(|s| s.len())
            .expect("soon")
    }

    /// `("ready", value)` or `("waits", yielded)` after one step of `awaitable`.
    pub fn step(&self, awaitable: &Bound<'py, PyAny>) -> (String, Bound<'py, PyAny>) {
        self.helpers
            .getattr("step")
            .and_then(|s| s.call1((awaitable,)))
            .and_then(|r| r.extract())
            .expect("step")
    }

    /// Runs the wake-ups posted to the loop's mailbox, as the loop would; how many ran.
    pub fn run_wakeups(&self, py: Python<'_>) -> usize {
        let mut events = Vec::new();
        self.core.host.mailbox.drain_into(&mut events);
        let mut ran = 0;
        for event in events {
            if let LoopEvent::Wake(w) = event {
                w.wake_on_loop(py);
                ran += 1;
            }
        }
        ran
    }

    /// The response head the core handed to the I/O thread, delivered as its outbox would.
    pub fn delivered(
        &self,
        rx: &mut oneshot::Receiver<Response<ResponseBody>>,
    ) -> Option<Response<ResponseBody>> {
        self.core.outbox.flush();
        self.delivered_if_flushed(rx)
    }

    /// The response head, if something flushed the outbox since the last delivery.
    pub fn delivered_if_flushed(
        &self,
        rx: &mut oneshot::Receiver<Response<ResponseBody>>,
    ) -> Option<Response<ResponseBody>> {
        // One poll delivers everything deferred so far, then waits for the next flush.
        let run = pin!(self.core.outbox.run());
        let _ = run.poll(&mut Context::from_waker(Waker::noop()));
        rx.try_recv().ok()
    }
}
