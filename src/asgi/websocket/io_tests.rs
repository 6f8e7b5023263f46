use std::task::{Context, Waker};

use tokio::sync::oneshot;

use super::*;
use crate::asgi::test_support::Fixture;
use crate::error::ProtocolError;
use crate::interface::test_support::{dict, exchange, with_py};
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
        ws.send("{'type': 'websocket.accept', 'subprotocol': 'chat', 'headers': [(b'x-a', b'1')]}")
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
