//! The ASGI `websocket` scope: `receive` and `send` for one WebSocket, from
//! `websocket.connect` to `websocket.disconnect`.
//!
//! Until the app accepts, the handshake is an HTTP request like any other: a denial response
//! (`websocket.http.response.*`), the 403 of a close before accepting and the 500 of an app
//! that fails all go out through the request's exchange, with the same code as `http`
//! responses. Once accepted, messages go through the [`Session`] the framing task shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::awaitable::Ready;
use super::finish::Ending;
use super::io::{
    is_done, message_type, parse_headers, protocol_error, settle_send, AsgiSend, RequestIo,
};
use crate::error::{ClientDisconnected, Error};
use crate::http::exchange::{AppWaker, Handover};
use crate::interface::access::AccessInfo;
use crate::interface::{LoopEvent, LoopWake};
use crate::server::LogLevel;
use crate::ws::close_code::{ABNORMAL, INTERNAL_ERROR, NORMAL};
use crate::ws::session::{Refused, Want};
use crate::ws::{Accept, Event, Message, Outgoing, Session};

/// Where the app has taken the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Handshake,
    /// Answering with its own HTTP response instead.
    Denying,
    Open,
    /// The app closed an accepted socket: nothing more to send.
    Closed,
    /// The app closed before accepting: the handshake was answered 403.
    Refused,
}

/// One WebSocket's side on the loop thread.
pub struct WsIo {
    /// The request's exchange, for an HTTP answer before accepting.
    http: Arc<RequestIo>,
    denial: AsgiSend,
    session: Arc<Session>,
    stage: Mutex<Stage>,
    connect_delivered: AtomicBool,
    waiters: Mutex<Waiters>,
}

/// Futures of `receive()` and `send()` calls waiting; several tasks may use one WebSocket
/// (a broadcast sends from many), so each kind is a list.
#[derive(Default)]
struct Waiters {
    receive: Vec<PyObject>,
    send: Vec<PyObject>,
}

impl WsIo {
    pub fn new(http: Arc<RequestIo>, session: Arc<Session>) -> Self {
        Self {
            denial: AsgiSend::new(http.clone()),
            http,
            session,
            stage: Mutex::new(Stage::Handshake),
            connect_delivered: AtomicBool::new(false),
            waiters: Mutex::new(Waiters::default()),
        }
    }

    fn hand_over(&self, py: Python<'_>, wake: Option<std::task::Waker>) -> PyResult<()> {
        self.http.core.hand_over(py, wake.map(Handover::Wake))
    }

    /// The app is done with the socket: settle the handshake if it never answered, close the
    /// connection if it left it open, and log.
    pub fn conclude(&self, py: Python<'_>, access: Option<&AccessInfo>, ending: Ending<'_>) {
        let stage = *self.stage.lock();
        let log = &self.http.core.loggers;
        let accepted = matches!(stage, Stage::Open | Stage::Closed);
        // Before accepting, an app that returns or fails gets a 500 from the exchange;
        // afterwards this only releases the request's place in the in-flight count.
        let outcome = self.http.exchange.finish();
        match ending {
            Ending::Raised(err) if err.is_instance_of::<ClientDisconnected>(py) => log.log(
                py,
                LogLevel::Debug,
                "client disconnected before the WebSocket was closed",
            ),
            Ending::Raised(err) => log.error(py, "Exception in ASGI application", Some(err)),
            Ending::Returned if stage == Stage::Handshake => log.error(
                py,
                "ASGI callable returned without sending handshake.",
                None,
            ),
            Ending::Returned
                if stage == Stage::Denying
                    && outcome == crate::http::exchange::Finished::Incomplete =>
            {
                log.error(
                    py,
                    "ASGI callable returned without completing the denial response.",
                    None,
                )
            }
            _ => {}
        }
        if stage == Stage::Open {
            let code = match ending {
                Ending::Raised(_) => INTERNAL_ERROR,
                _ => NORMAL,
            };
            // Refused only when the connection is over already: nothing left to close.
            if let Ok(sent) = self.session.send(Outgoing::Close {
                code,
                reason: String::new(),
            }) {
                if let Err(e) = self.hand_over(py, sent.wake) {
                    e.print(py);
                }
            }
        } else if stage != Stage::Closed {
            // No handshake to finish (or a denial already sent): the session is over.
            self.session.end(ABNORMAL, "");
        }
        if let Some(a) = access {
            let status = if accepted {
                Some(StatusCode::SWITCHING_PROTOCOLS)
            } else {
                self.http.exchange.status()
            };
            a.log(py, log, status, 0);
        }
    }

    fn wait_receive(self: &Arc<Self>, py: Python<'_>) -> PyResult<Option<PyObject>> {
        let fut = self.http.core.create_future.call0(py)?;
        let mut waiters = std::mem::take(&mut self.waiters.lock().receive);
        // Futures of receive() calls given up on (`asyncio.wait_for` timing out) go, or an
        // idle socket polled that way would keep them all.
        waiters.retain(|f| !is_done(py, f));
        waiters.push(fut.clone_ref(py));
        self.waiters.lock().receive.extend(waiters);
        if self.session.park(Want::Event, self.clone()) {
            return Ok(Some(fut));
        }
        self.waiters.lock().receive.pop();
        Ok(None)
    }

    /// The next event as a message dict, if there is one; waking the framing task when the
    /// app made room for more.
    fn next_message<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let (event, wake) = self.session.next_event();
        self.hand_over(py, wake)?;
        event.map(|e| event_to_dict(py, e)).transpose()
    }
}

impl AppWaker for WsIo {
    fn wake(self: Arc<Self>) {
        let mailbox = self.http.core.host.mailbox.clone();
        mailbox.post(LoopEvent::Wake(self));
    }
}

impl LoopWake for WsIo {
    fn wake_on_loop(self: Arc<Self>, py: Python<'_>) {
        let Waiters { receive, send } = std::mem::take(&mut *self.waiters.lock());
        for fut in receive {
            if is_done(py, &fut) {
                continue;
            }
            let result = match self.next_message(py) {
                Ok(Some(msg)) => fut
                    .call_method1(py, intern!(py, "set_result"), (msg,))
                    .map(drop),
                Ok(None) => {
                    self.waiters.lock().receive.push(fut);
                    if !self.session.park(Want::Event, self.clone()) {
                        self.clone().wake();
                    }
                    Ok(())
                }
                Err(e) => fut
                    .call_method1(py, intern!(py, "set_exception"), (e.into_value(py),))
                    .map(drop),
            };
            if let Err(e) = result {
                e.print(py);
            }
        }
        for fut in send {
            if is_done(py, &fut) {
                continue;
            }
            let gone = self.session.is_ended();
            if let Some(fut) = settle_send(py, fut, gone, self.session.has_room()) {
                self.waiters.lock().send.push(fut);
                if !self.session.park(Want::Room, self.clone()) {
                    self.clone().wake();
                }
            }
        }
    }
}

fn event_to_dict(py: Python<'_>, event: Event) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    match event {
        Event::Message(Message::Text(data)) => {
            d.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
            // Checked by the reassembly, so this cannot fail; a failure would be a bug there.
            let text = std::str::from_utf8(&data)
                .map_err(|_| Error::protocol("websocket text message is not UTF-8"))?;
            d.set_item(intern!(py, "text"), PyString::new(py, text))?;
        }
        Event::Message(Message::Binary(data)) => {
            d.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
            d.set_item(intern!(py, "bytes"), PyBytes::new(py, &data))?;
        }
        Event::Closed { code, reason } => {
            d.set_item(intern!(py, "type"), intern!(py, "websocket.disconnect"))?;
            d.set_item(intern!(py, "code"), code)?;
            d.set_item(intern!(py, "reason"), reason)?;
        }
    }
    Ok(d)
}

#[pyclass(frozen, module = "juggler._juggler")]
pub struct WebSocketReceive {
    io: Arc<WsIo>,
}

impl WebSocketReceive {
    pub fn new(io: Arc<WsIo>) -> Self {
        Self { io }
    }
}

#[pymethods]
impl WebSocketReceive {
    fn __call__(&self, py: Python<'_>) -> PyResult<PyObject> {
        if !self.io.connect_delivered.swap(true, Ordering::Relaxed) {
            let d = PyDict::new(py);
            d.set_item(intern!(py, "type"), intern!(py, "websocket.connect"))?;
            return Ok(Py::new(py, Ready::new(d.into_any().unbind()))?.into_any());
        }
        loop {
            if let Some(msg) = self.io.next_message(py)? {
                return Ok(Py::new(py, Ready::new(msg.into_any().unbind()))?.into_any());
            }
            if let Some(fut) = self.io.wait_receive(py)? {
                return Ok(fut);
            }
        }
    }
}

#[pyclass(frozen, module = "juggler._juggler")]
pub struct WebSocketSend {
    io: Arc<WsIo>,
}

impl WebSocketSend {
    pub fn new(io: Arc<WsIo>) -> Self {
        Self { io }
    }
}

fn unexpected(kind: &str, stage: Stage) -> PyErr {
    let why = match stage {
        Stage::Handshake => "before 'websocket.accept'",
        Stage::Denying => "after 'websocket.http.response.start'",
        Stage::Open => "after 'websocket.accept'",
        Stage::Closed | Stage::Refused => "after 'websocket.close'",
    };
    protocol_error(format!("Unexpected ASGI message '{kind}' sent, {why}."))
}

#[pymethods]
impl WebSocketSend {
    fn __call__(&self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<PyObject> {
        let kind = message_type(message)?;
        let kind = kind.to_str()?;
        let io = &self.io;
        let done = || io.http.core.done.clone_ref(py).into_any();
        let stage = *io.stage.lock();
        match kind {
            "websocket.accept" => {
                if stage != Stage::Handshake {
                    return Err(unexpected(kind, stage));
                }
                let accept = accept_from(message)?;
                *io.stage.lock() = Stage::Open;
                match io.session.accept(accept) {
                    Ok(()) => Ok(done()),
                    Err(Refused::Ended) => Err(Error::Disconnected.into()),
                    Err(Refused::AfterClose) => Err(unexpected(kind, Stage::Open)),
                }
            }
            "websocket.send" => {
                if stage != Stage::Open {
                    return Err(unexpected(kind, stage));
                }
                let msg = outgoing_message(message)?;
                let sent = match io.session.send(Outgoing::Message(msg)) {
                    Ok(sent) => sent,
                    Err(Refused::Ended) => return Err(Error::Disconnected.into()),
                    Err(Refused::AfterClose) => return Err(unexpected(kind, Stage::Closed)),
                };
                io.hand_over(py, sent.wake)?;
                if sent.full {
                    let fut = io.http.core.create_future.call0(py)?;
                    io.waiters.lock().send.push(fut.clone_ref(py));
                    if io.session.park(Want::Room, io.clone()) {
                        return Ok(fut);
                    }
                    io.waiters.lock().send.pop();
                }
                Ok(done())
            }
            "websocket.close" => {
                let (code, reason) = close_from(message)?;
                match stage {
                    Stage::Handshake => {
                        // Closing before accepting refuses the handshake with a 403.
                        *io.stage.lock() = Stage::Refused;
                        io.session.refuse();
                        let sent = io.http.exchange.start_response(
                            StatusCode::FORBIDDEN,
                            HeaderMap::new(),
                            Bytes::new(),
                            false,
                        )?;
                        io.session.end(ABNORMAL, "");
                        io.http.core.hand_over(py, sent.handover)?;
                        Ok(done())
                    }
                    Stage::Open => {
                        *io.stage.lock() = Stage::Closed;
                        // Refused when the client already closed: not an error, apps close
                        // in `finally` blocks.
                        if let Ok(sent) = io.session.send(Outgoing::Close { code, reason }) {
                            io.hand_over(py, sent.wake)?;
                        }
                        Ok(done())
                    }
                    _ => Err(unexpected(kind, stage)),
                }
            }
            "websocket.http.response.start" | "websocket.http.response.body" => {
                let start = kind == "websocket.http.response.start";
                match (stage, start) {
                    (Stage::Handshake, true) => {
                        *io.stage.lock() = Stage::Denying;
                        io.session.refuse();
                    }
                    (Stage::Denying, _) => {}
                    _ => return Err(unexpected(kind, stage)),
                }
                let http_kind = if start {
                    "http.response.start"
                } else {
                    "http.response.body"
                };
                let result = io.denial.send_http(py, http_kind, message);
                if io.http.exchange.status().is_some() {
                    io.session.end(ABNORMAL, "");
                }
                result
            }
            other => Err(protocol_error(format!(
                "Unexpected ASGI message type '{other}' for a websocket scope."
            ))),
        }
    }
}

fn accept_from(message: &Bound<'_, PyDict>) -> PyResult<Accept> {
    let py = message.py();
    let subprotocol = match message.get_item(intern!(py, "subprotocol"))? {
        None => None,
        Some(p) if p.is_none() => None,
        Some(p) => Some(
            p.downcast::<PyString>()
                .map_err(|_| protocol_error("websocket.accept: 'subprotocol' must be a str"))?
                .to_str()?
                .to_owned(),
        ),
    };
    let headers = match message.get_item(intern!(py, "headers"))? {
        Some(h) if !h.is_none() => parse_headers(&h)?,
        _ => HeaderMap::new(),
    };
    Ok(Accept {
        subprotocol,
        headers,
    })
}

/// `websocket.send` carries exactly one of `bytes` and `text` (a key set to None is absent).
fn outgoing_message(message: &Bound<'_, PyDict>) -> PyResult<Message> {
    let py = message.py();
    let text = present(message, intern!(py, "text"))?;
    let bytes = present(message, intern!(py, "bytes"))?;
    match (text, bytes) {
        (Some(t), None) => {
            let t = t
                .downcast::<PyString>()
                .map_err(|_| protocol_error("websocket.send: 'text' must be a str"))?;
            Ok(Message::Text(Bytes::copy_from_slice(
                t.to_str()?.as_bytes(),
            )))
        }
        (None, Some(b)) => {
            if b.is_instance_of::<PyString>() {
                return Err(protocol_error(
                    "websocket.send: 'bytes' must be bytes, not str",
                ));
            }
            let data = match b.downcast::<PyBytes>() {
                Ok(b) => Bytes::copy_from_slice(b.as_bytes()),
                Err(_) => Bytes::from(b.extract::<Vec<u8>>().map_err(|_| {
                    protocol_error("websocket.send: 'bytes' must be a bytes-like object")
                })?),
            };
            Ok(Message::Binary(data))
        }
        (Some(_), Some(_)) => Err(protocol_error(
            "websocket.send: give 'bytes' or 'text', not both",
        )),
        (None, None) => Err(protocol_error(
            "websocket.send: needs a 'bytes' or a 'text' key",
        )),
    }
}

fn present<'py>(
    message: &Bound<'py, PyDict>,
    key: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(message.get_item(key)?.filter(|v| !v.is_none()))
}

/// `websocket.close`'s code (default 1000) and reason (default empty).
fn close_from(message: &Bound<'_, PyDict>) -> PyResult<(u16, String)> {
    let py = message.py();
    let code = match message.get_item(intern!(py, "code"))? {
        Some(c) if !c.is_none() => c
            .extract::<u16>()
            .ok()
            .filter(|c| valid_close_code(*c))
            .ok_or_else(|| {
                protocol_error(format!(
                    "websocket.close: invalid close code {c}; use 1000-1003, 1007-1014 or \
                     3000-4999"
                ))
            })?,
        _ => NORMAL,
    };
    let reason = match message.get_item(intern!(py, "reason"))? {
        Some(r) if !r.is_none() => r
            .downcast::<PyString>()
            .map_err(|_| protocol_error("websocket.close: 'reason' must be a str"))?
            .to_str()?
            .to_owned(),
        _ => String::new(),
    };
    Ok((code, reason))
}

/// The codes an endpoint may send (RFC 6455 §7.4; 1004-1006 and 1015 are never sent).
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_an_app_may_send() {
        for ok in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(valid_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(!valid_close_code(bad), "{bad}");
        }
    }
}

#[cfg(test)]
mod io_tests {
    use std::task::{Context, Waker};

    use tokio::sync::oneshot;

    use super::*;
    use crate::asgi::test_support::{dict, exchange, with_py, Fixture};
    use crate::error::ProtocolError;
    use crate::ws::session::OUT_HIGH_WATER;

    struct Ws<'py> {
        fx: Fixture<'py>,
        io: Arc<WsIo>,
        session: Arc<Session>,
        accepted: oneshot::Receiver<Accept>,
        http: oneshot::Receiver<http::Response<crate::http::body::ResponseBody>>,
        receive: Bound<'py, PyAny>,
        send: Bound<'py, PyAny>,
    }

    fn open(py: Python<'_>) -> Ws<'_> {
        let fx = Fixture::new(py);
        let (exchange, http) = exchange(false);
        let request = Arc::new(RequestIo::new(exchange, fx.core.clone()));
        let (session, accepted) = Session::new(2);
        let io = Arc::new(WsIo::new(request, session.clone()));
        let receive = Py::new(py, WebSocketReceive::new(io.clone()))
            .expect("receive")
            .into_bound(py)
            .into_any();
        let send = Py::new(py, WebSocketSend::new(io.clone()))
            .expect("send")
            .into_bound(py)
            .into_any();
        Ws {
            fx,
            io,
            session,
            accepted,
            http,
            receive,
            send,
        }
    }

    impl<'py> Ws<'py> {
        fn send(&self, message: &str) -> PyResult<Bound<'py, PyAny>> {
            self.send.call1((dict(self.send.py(), message),))
        }

        fn refused(&self, message: &str) -> String {
            let py = self.send.py();
            let err = self.send(message).expect_err(message);
            assert!(err.is_instance_of::<ProtocolError>(py), "{message}: {err}");
            err.value(py).to_string()
        }

        /// What `receive()` gives at once, as a repr.
        fn received(&self) -> String {
            let awaitable = self.receive.call0().expect("receive");
            let (state, value) = self.fx.step(&awaitable);
            assert_eq!(state, "ready");
            value.repr().expect("repr").to_string()
        }

        fn outgoing(&self) -> Option<Outgoing> {
            self.session
                .take_outgoing(&Context::from_waker(Waker::noop()))
        }

        fn accept(&mut self) {
            self.send("{'type': 'websocket.accept'}").expect("accept");
            assert!(self.accepted.try_recv().is_ok());
        }

        fn conclude(&self, ending: Ending<'_>) {
            let py = self.send.py();
            self.io.conclude(py, None, ending);
        }
    }

    fn text(s: &str) -> Message {
        Message::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn receive_starts_with_connect_then_gives_messages_and_the_close() {
        with_py(|py| {
            let ws = open(py);
            assert_eq!(ws.received(), "{'type': 'websocket.connect'}");
            ws.session.push_inbound(text("hé"));
            ws.session
                .push_inbound(Message::Binary(Bytes::from_static(b"\x00\x01")));
            assert_eq!(ws.received(), "{'type': 'websocket.receive', 'text': 'hé'}");
            assert_eq!(
                ws.received(),
                "{'type': 'websocket.receive', 'bytes': b'\\x00\\x01'}"
            );
            ws.session.end(4001, "bye");
            assert_eq!(
                ws.received(),
                "{'type': 'websocket.disconnect', 'code': 4001, 'reason': 'bye'}"
            );
        })
    }

    #[test]
    fn a_waiting_receive_is_resolved_by_the_next_message() {
        with_py(|py| {
            let ws = open(py);
            ws.received();
            let fut = ws.receive.call0().expect("receive");
            assert_eq!(ws.fx.step(&fut).0, "waits");
            // A wake-up with nothing new leaves it waiting, and parked again.
            ws.io.clone().wake();
            assert_eq!(ws.fx.run_wakeups(py), 1);
            assert!(!fut
                .call_method0("done")
                .and_then(|d| d.is_truthy())
                .expect("done"));
            ws.session.push_inbound(text("late"));
            assert_eq!(ws.fx.run_wakeups(py), 1);
            assert_eq!(
                fut.call_method0("result")
                    .expect("result")
                    .repr()
                    .expect("repr")
                    .to_string(),
                "{'type': 'websocket.receive', 'text': 'late'}"
            );
        })
    }

    #[test]
    fn receives_given_up_on_are_dropped_and_spend_nothing() {
        with_py(|py| {
            let ws = open(py);
            ws.received();
            let first = ws.receive.call0().expect("receive");
            first.call_method0("cancel").expect("cancel");
            let second = ws.receive.call0().expect("receive");
            assert_eq!(
                ws.io.waiters.lock().receive.len(),
                1,
                "the cancelled one went"
            );
            second.call_method0("cancel").expect("cancel");
            ws.session.push_inbound(text("kept"));
            assert_eq!(ws.fx.run_wakeups(py), 1);
            assert_eq!(
                ws.received(),
                "{'type': 'websocket.receive', 'text': 'kept'}"
            );
        })
    }

    #[test]
    fn taking_a_message_from_a_full_queue_wakes_the_reader() {
        with_py(|py| {
            let ws = open(py);
            ws.received();
            ws.session.push_inbound(text("1"));
            ws.session.push_inbound(text("2"));
            // The framing task finds the queue full and waits.
            let cx = Context::from_waker(Waker::noop());
            assert!(!ws.session.room_for_inbound(&cx));
            assert_eq!(ws.fx.flushes_scheduled(), 0);
            ws.received();
            assert_eq!(ws.fx.flushes_scheduled(), 1, "its wake-up was handed over");
        })
    }

    #[test]
    fn accept_hands_over_the_subprotocol_and_headers_once() {
        with_py(|py| {
            let mut ws = open(py);
            assert!(ws
                .refused("{'type': 'websocket.send', 'text': 'x'}")
                .contains("before 'websocket.accept'"));
            ws.send(
                "{'type': 'websocket.accept', 'subprotocol': 'chat', 'headers': [(b'x-a', b'1')]}",
            )
            .expect("accept");
            let accept = ws.accepted.try_recv().expect("accepted");
            assert_eq!(accept.subprotocol.as_deref(), Some("chat"));
            assert_eq!(accept.headers["x-a"], "1");
            assert!(ws
                .refused("{'type': 'websocket.accept'}")
                .contains("after 'websocket.accept'"));
            let mut ws = open(py);
            ws.send("{'type': 'websocket.accept', 'subprotocol': None, 'headers': None}")
                .expect("accept");
            let accept = ws.accepted.try_recv().expect("accepted");
            assert_eq!(accept.subprotocol, None);
            assert!(accept.headers.is_empty());
            let ws = open(py);
            assert!(ws
                .refused("{'type': 'websocket.accept', 'subprotocol': 5}")
                .contains("'subprotocol' must be a str"));
            assert!(ws
                .refused("{'type': 'websocket.accept', 'headers': [5]}")
                .contains("iterable of [name, value]"));
        })
    }

    #[test]
    fn accept_after_the_client_left_is_a_disconnect() {
        with_py(|py| {
            let ws = open(py);
            ws.session.end(1001, "");
            let err = ws.send("{'type': 'websocket.accept'}").expect_err("gone");
            assert!(err.is_instance_of::<ClientDisconnected>(py));
            let mut ws = open(py);
            drop(std::mem::replace(&mut ws.accepted, oneshot::channel().1));
            let err = ws.send("{'type': 'websocket.accept'}").expect_err("gone");
            assert!(err.is_instance_of::<ClientDisconnected>(py));
        })
    }

    #[test]
    fn sends_queue_text_and_bytes_for_the_peer() {
        with_py(|py| {
            let mut ws = open(py);
            ws.accept();
            ws.send("{'type': 'websocket.send', 'text': 'hé', 'bytes': None}")
                .expect("text");
            assert_eq!(
                ws.fx.flushes_scheduled(),
                0,
                "the framing task was not waiting"
            );
            assert!(matches!(ws.outgoing(), Some(Outgoing::Message(m)) if m == text("hé")));
            assert!(ws.outgoing().is_none());
            // Now the framing task waits: the next send hands over its wake-up.
            ws.send("{'type': 'websocket.send', 'bytes': bytearray(b'ab')}")
                .expect("bytes");
            assert_eq!(ws.fx.flushes_scheduled(), 1);
            assert!(matches!(ws.outgoing(),
                Some(Outgoing::Message(Message::Binary(b))) if b == Bytes::from_static(b"ab")));
            ws.send("{'type': 'websocket.send', 'bytes': b'cd'}")
                .expect("bytes");
            assert!(matches!(ws.outgoing(),
                Some(Outgoing::Message(Message::Binary(b))) if b == Bytes::from_static(b"cd")));
            for (message, says) in [
                (
                    "{'type': 'websocket.send', 'text': 'a', 'bytes': b'b'}",
                    "not both",
                ),
                (
                    "{'type': 'websocket.send'}",
                    "needs a 'bytes' or a 'text' key",
                ),
                (
                    "{'type': 'websocket.send', 'text': b'a'}",
                    "'text' must be a str",
                ),
                (
                    "{'type': 'websocket.send', 'bytes': 'a'}",
                    "'bytes' must be bytes, not str",
                ),
                (
                    "{'type': 'websocket.send', 'bytes': 5}",
                    "bytes-like object",
                ),
                (
                    "{'type': 'websocket.nope'}",
                    "'websocket.nope' for a websocket scope",
                ),
                (
                    "{'type': 'websocket.http.response.start', 'status': 403}",
                    "after 'websocket.accept'",
                ),
            ] {
                let text = ws.refused(message);
                assert!(text.contains(says), "{message}: {text}");
            }
        })
    }

    #[test]
    fn a_send_over_the_high_water_mark_waits_until_the_peer_takes_it() {
        with_py(|py| {
            let mut ws = open(py);
            ws.accept();
            let message = format!("{{'type': 'websocket.send', 'bytes': b'x' * {OUT_HIGH_WATER}}}");
            let fut = ws.send(&message).expect("send");
            assert_eq!(ws.fx.step(&fut).0, "waits");
            ws.io.clone().wake();
            assert_eq!(ws.fx.run_wakeups(py), 1);
            assert!(!fut
                .call_method0("done")
                .and_then(|d| d.is_truthy())
                .expect("done"));
            assert!(ws.outgoing().is_some());
            assert_eq!(ws.fx.run_wakeups(py), 1);
            assert!(fut.call_method0("result").expect("result").is_none());
            // Waiting again, the connection ends: the send fails as a disconnect; one given
            // up on is left alone.
            let fut = ws.send(&message).expect("send");
            let cancelled = ws.send(&message).expect("send");
            cancelled.call_method0("cancel").expect("cancel");
            ws.session.end(1006, "");
            assert_eq!(ws.fx.run_wakeups(py), 1);
            let exc = fut.call_method0("exception").expect("exception");
            assert!(exc.is_instance_of::<ClientDisconnected>());
            assert!(cancelled
                .call_method0("cancelled")
                .and_then(|c| c.is_truthy())
                .expect("c"));
            let err = ws
                .send("{'type': 'websocket.send', 'text': 'x'}")
                .expect_err("ended");
            assert!(err.is_instance_of::<ClientDisconnected>(py));
        })
    }

    #[test]
    fn close_after_accept_sends_the_apps_code_and_reason_once() {
        with_py(|py| {
            let mut ws = open(py);
            ws.accept();
            ws.send("{'type': 'websocket.close', 'code': 4000, 'reason': 'done'}")
                .expect("close");
            assert!(matches!(ws.outgoing(),
                Some(Outgoing::Close { code: 4000, reason }) if reason == "done"));
            assert!(ws
                .refused("{'type': 'websocket.close'}")
                .contains("after 'websocket.close'"));
            assert!(ws
                .refused("{'type': 'websocket.send', 'text': 'x'}")
                .contains("after 'websocket.close'"));
            let mut ws = open(py);
            ws.accept();
            ws.send("{'type': 'websocket.close', 'code': None, 'reason': None}")
                .expect("close");
            assert!(matches!(ws.outgoing(),
                Some(Outgoing::Close { code: 1000, reason }) if reason.is_empty()));
            // Closing once the client closed is not an error (apps close in `finally`).
            let mut ws = open(py);
            ws.accept();
            ws.session.end(1000, "");
            ws.send("{'type': 'websocket.close'}")
                .expect("close after the client");
            for (message, says) in [
                (
                    "{'type': 'websocket.close', 'code': 1005}",
                    "invalid close code 1005",
                ),
                (
                    "{'type': 'websocket.close', 'code': 'x'}",
                    "invalid close code",
                ),
                (
                    "{'type': 'websocket.close', 'reason': 5}",
                    "'reason' must be a str",
                ),
            ] {
                let text = open(py).refused(message);
                assert!(text.contains(says), "{message}: {text}");
            }
        })
    }

    #[test]
    fn close_before_accept_refuses_the_handshake_with_403() {
        with_py(|py| {
            let mut ws = open(py);
            ws.send("{'type': 'websocket.close'}").expect("close");
            let response = ws.fx.delivered(&mut ws.http).expect("an HTTP answer");
            assert_eq!(response.status(), 403);
            assert!(ws.session.is_ended());
            assert!(ws.accepted.try_recv().is_err(), "never accepted");
            assert!(ws
                .refused("{'type': 'websocket.accept'}")
                .contains("after 'websocket.close'"));
            assert!(ws
                .refused("{'type': 'websocket.close'}")
                .contains("after 'websocket.close'"));
            ws.conclude(Ending::Returned);
            assert!(ws.fx.lines().is_empty());
        })
    }

    #[test]
    fn a_denial_response_goes_out_over_http_and_ends_the_session() {
        with_py(|py| {
            let mut ws = open(py);
            assert!(ws
                .refused("{'type': 'websocket.http.response.body'}")
                .contains("before 'websocket.accept'"));
            ws.send("{'type': 'websocket.http.response.start', 'status': 404}")
                .expect("start");
            assert!(!ws.session.is_connecting(), "the handshake is given up");
            assert!(!ws.session.is_ended(), "not before the body is sent");
            assert!(ws
                .refused("{'type': 'websocket.accept'}")
                .contains("after 'websocket.http.response.start'"));
            ws.send("{'type': 'websocket.http.response.body', 'body': b'no'}")
                .expect("body");
            assert!(ws.session.is_ended());
            let response = ws.fx.delivered(&mut ws.http).expect("response");
            assert_eq!(response.status(), 404);
            ws.conclude(Ending::Returned);
            assert!(ws.fx.lines().is_empty());
        })
    }

    #[test]
    fn a_denial_left_incomplete_is_logged() {
        with_py(|py| {
            let ws = open(py);
            ws.send("{'type': 'websocket.http.response.start', 'status': 404}")
                .expect("start");
            ws.send("{'type': 'websocket.http.response.body', 'body': b'n', 'more_body': True}")
                .expect("body");
            ws.conclude(Ending::Returned);
            assert_eq!(
                ws.fx.lines(),
                [(
                    "error".into(),
                    "ASGI callable returned without completing the denial response.".into(),
                    None
                )]
            );
        })
    }

    #[test]
    fn an_app_that_returns_before_answering_the_handshake_gets_500_and_a_log_line() {
        with_py(|py| {
            let mut ws = open(py);
            ws.conclude(Ending::Returned);
            assert_eq!(
                ws.fx.delivered(&mut ws.http).map(|r| r.status().as_u16()),
                Some(500)
            );
            assert!(ws.session.is_ended());
            assert_eq!(
                ws.fx.lines(),
                [(
                    "error".into(),
                    "ASGI callable returned without sending handshake.".into(),
                    None
                )]
            );
        })
    }

    #[test]
    fn an_open_socket_is_closed_normally_or_with_1011_when_the_app_fails() {
        with_py(|py| {
            let mut ws = open(py);
            ws.accept();
            ws.conclude(Ending::Returned);
            assert!(matches!(
                ws.outgoing(),
                Some(Outgoing::Close { code: NORMAL, .. })
            ));
            assert!(ws.fx.lines().is_empty());
            let mut ws = open(py);
            ws.accept();
            let err = pyo3::exceptions::PyValueError::new_err("boom");
            ws.conclude(Ending::Raised(&err));
            assert!(matches!(
                ws.outgoing(),
                Some(Outgoing::Close {
                    code: INTERNAL_ERROR,
                    ..
                })
            ));
            assert_eq!(
                ws.fx.lines(),
                [(
                    "error".into(),
                    "Exception in ASGI application".into(),
                    Some("ValueError".into())
                )]
            );
            let mut ws = open(py);
            ws.accept();
            let err = ClientDisconnected::new_err("left");
            ws.conclude(Ending::Raised(&err));
            assert_eq!(
                ws.fx.lines(),
                [(
                    "debug".into(),
                    "client disconnected before the WebSocket was closed".into(),
                    None
                )]
            );
            // Closed by the app already: nothing more is sent.
            let mut ws = open(py);
            ws.accept();
            ws.send("{'type': 'websocket.close'}").expect("close");
            assert!(ws.outgoing().is_some());
            ws.conclude(Ending::Returned);
            assert!(ws.outgoing().is_none());
            assert!(
                !ws.session.is_ended(),
                "the close handshake finishes it, not the app"
            );
        })
    }
}
