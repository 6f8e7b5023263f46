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
use crate::transport::LogLevel;
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
mod io_tests;
