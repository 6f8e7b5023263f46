use pyo3::types::PyList;

use super::*;
use crate::asgi::test_support::Fixture;
use crate::error::ProtocolError;
use crate::http::exchange::OUT_HIGH_WATER;
use crate::interface::test_support::{body_now, dict, exchange, with_py};

fn io(fx: &Fixture<'_>, exchange: &Arc<Exchange>) -> Arc<RequestIo> {
    Arc::new(RequestIo::new(exchange.clone(), fx.core.clone()))
}

fn receiver<'py>(py: Python<'py>, io: &Arc<RequestIo>) -> Bound<'py, PyAny> {
    Py::new(py, AsgiReceive::new(io.clone()))
        .expect("receive")
        .into_bound(py)
        .into_any()
}

fn sender<'py>(py: Python<'py>, io: &Arc<RequestIo>) -> Bound<'py, PyAny> {
    Py::new(py, AsgiSend::new(io.clone()))
        .expect("send")
        .into_bound(py)
        .into_any()
}

fn call<'py>(f: &Bound<'py, PyAny>, message: &str) -> PyResult<Bound<'py, PyAny>> {
    f.call1((dict(f.py(), message),))
}

/// The message a `receive()` that did not wait gives.
fn ready_message<'py>(fx: &Fixture<'py>, awaitable: &Bound<'py, PyAny>) -> String {
    let (state, value) = fx.step(awaitable);
    assert_eq!(state, "ready", "received without waiting");
    value.repr().expect("repr").to_string()
}

fn error_text(err: &PyErr, py: Python<'_>) -> String {
    assert!(err.is_instance_of::<ProtocolError>(py), "{err}");
    err.value(py).to_string()
}

#[test]
fn receive_gives_the_body_its_end_and_then_disconnect() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let (ex, _rx) = exchange(false);
        let io = io(&fx, &ex);
        let receive = receiver(py, &io);
        ex.push_body(Bytes::from_static(b"abc"));
        let first = receive.call0().expect("receive");
        assert_eq!(
            ready_message(&fx, &first),
            "{'type': 'http.request', 'body': b'abc', 'more_body': True}"
        );
        ex.finish_body();
        let second = receive.call0().expect("receive");
        assert_eq!(
            ready_message(&fx, &second),
            "{'type': 'http.request', 'body': b'', 'more_body': False}"
        );
        ex.disconnect();
        let third = receive.call0().expect("receive");
        assert_eq!(ready_message(&fx, &third), "{'type': 'http.disconnect'}");
    })
}

#[test]
fn a_waiting_receive_is_resolved_when_the_body_arrives() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let (ex, _rx) = exchange(false);
        let io = io(&fx, &ex);
        let fut = receiver(py, &io).call0().expect("receive");
        assert!(!fut
            .call_method0("done")
            .and_then(|d| d.is_truthy())
            .expect("done"));
        assert_eq!(fx.run_wakeups(py), 0, "nothing woke it yet");
        ex.push_body(Bytes::from_static(b"late"));
        assert_eq!(fx.run_wakeups(py), 1);
        assert_eq!(
            fut.call_method0("result")
                .expect("result")
                .repr()
                .expect("repr")
                .to_string(),
            "{'type': 'http.request', 'body': b'late', 'more_body': True}"
        );
        // A second receive waits again; a wake-up with nothing new parks it once more, and
        // the next news still reaches it.
        let fut = receiver(py, &io).call0().expect("receive");
        io.clone().wake();
        assert_eq!(fx.run_wakeups(py), 1);
        assert!(!fut
            .call_method0("done")
            .and_then(|d| d.is_truthy())
            .expect("done"));
        ex.finish_body();
        assert_eq!(fx.run_wakeups(py), 1);
        assert_eq!(
            fut.call_method0("result")
                .expect("result")
                .repr()
                .expect("repr")
                .to_string(),
            "{'type': 'http.request', 'body': b'', 'more_body': False}"
        );
    })
}

#[test]
fn a_receive_given_up_on_is_left_alone() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let (ex, _rx) = exchange(false);
        let io = io(&fx, &ex);
        let fut = receiver(py, &io).call0().expect("receive");
        fut.call_method0("cancel").expect("cancel");
        ex.push_body(Bytes::from_static(b"kept"));
        assert_eq!(fx.run_wakeups(py), 1);
        // The data was not spent on the cancelled future.
        let next = receiver(py, &io).call0().expect("receive");
        assert_eq!(
            ready_message(&fx, &next),
            "{'type': 'http.request', 'body': b'kept', 'more_body': True}"
        );
    })
}

#[test]
fn start_and_one_body_leave_as_one_response_with_one_flush() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let (ex, mut rx) = exchange(false);
        let io = io(&fx, &ex);
        let send = sender(py, &io);
        let done = call(
                &send,
                "{'type': 'http.response.start', 'status': 201, \
                 'headers': [(b'x-a', b'1'), [b'x-b', bytearray(b'2')], (memoryview(b'x-a'), b'3')]}",
            )
            .expect("start");
        assert_eq!(fx.step(&done).0, "ready");
        assert!(
            fx.delivered(&mut rx).is_none(),
            "the head waits for the body"
        );
        assert_eq!(fx.flushes_scheduled(), 0);
        call(&send, "{'type': 'http.response.body', 'body': b'hello'}").expect("body");
        assert_eq!(fx.flushes_scheduled(), 1);
        let mut response = fx.delivered(&mut rx).expect("a response");
        assert_eq!(response.status(), 201);
        let values: Vec<_> = response.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "3"]);
        assert_eq!(response.headers()["x-b"], "2");
        assert_eq!(body_now(response.body_mut()), (b"hello".to_vec(), true));
        assert_eq!(ex.outcome(), (Some(StatusCode::CREATED), 5));
        let err = call(&send, "{'type': 'http.response.body', 'body': b'more'}")
            .expect_err("after the end");
        assert!(error_text(&err, py).contains("after response already completed"));
        let err = call(&send, "{'type': 'http.response.start', 'status': 200}").expect_err("twice");
        assert!(error_text(&err, py).contains("after response already started"));
    })
}

#[test]
fn a_flush_is_scheduled_only_when_the_outbox_was_empty() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let (a, mut rx_a) = exchange(false);
        let (b, mut rx_b) = exchange(false);
        for ex in [&a, &b] {
            let send = sender(py, &io(&fx, ex));
            call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
            call(&send, "{'type': 'http.response.body'}").expect("body");
        }
        assert_eq!(fx.flushes_scheduled(), 1, "one flush carries both");
        // The scheduled callback is the flush itself: calling it delivers both.
        let soon = fx.recorder.getattr("soon").expect("soon");
        soon.get_item(0).and_then(|f| f.call0()).expect("flush");
        assert!(fx.delivered(&mut rx_a).is_some());
        assert!(fx.delivered(&mut rx_b).is_some());
    })
}

#[test]
fn a_streamed_response_sends_each_chunk_and_ends_on_the_last() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let (ex, mut rx) = exchange(false);
        let io = io(&fx, &ex);
        let send = sender(py, &io);
        call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
        call(
            &send,
            "{'type': 'http.response.body', 'body': b'a', 'more_body': 1}",
        )
        .expect("first");
        let mut response = fx.delivered(&mut rx).expect("head");
        assert_eq!(body_now(response.body_mut()), (b"a".to_vec(), false));
        call(
            &send,
            "{'type': 'http.response.body', 'body': bytearray(b'b'), 'more_body': True}",
        )
        .expect("second");
        assert_eq!(body_now(response.body_mut()), (b"b".to_vec(), false));
        call(
            &send,
            "{'type': 'http.response.body', 'body': b'c', 'more_body': 0}",
        )
        .expect("last");
        assert_eq!(body_now(response.body_mut()), (b"c".to_vec(), true));
        let err = call(&send, "{'type': 'http.response.body'}").expect_err("ended");
        assert!(error_text(&err, py).contains("already completed"));
        let trailers = call(&send, "{'type': 'http.response.trailers'}").expect("trailers");
        assert_eq!(fx.step(&trailers).0, "ready");
    })
}

#[test]
fn a_large_body_arrives_whole() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let (ex, mut rx) = exchange(false);
        let send = sender(py, &io(&fx, &ex));
        call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
        let big = ZERO_COPY_MIN + 1;
        call(
            &send,
            &format!("{{'type': 'http.response.body', 'body': b'x' * {big}}}"),
        )
        .expect("body");
        let mut response = fx.delivered(&mut rx).expect("response");
        assert_eq!(body_now(response.body_mut()).0, vec![b'x'; big]);
    })
}

#[test]
fn only_bodies_of_64_kib_and_more_are_sent_from_the_apps_own_bytes() {
    with_py(|py| {
        for (len, shared) in [(100, false), (2000, false), (64 * 1024, true)] {
            let message = dict(py, &format!("{{'body': b'x' * {len}}}"));
            let body = message.get_item("body").expect("get").expect("body");
            let original = body
                .downcast::<PyBytes>()
                .expect("bytes")
                .as_bytes()
                .as_ptr();
            let data = body_bytes(&message).expect("body");
            assert_eq!(data.len(), len);
            assert_eq!(data.as_ptr() == original, shared, "{len} bytes");
        }
        assert!(body_bytes(&dict(py, "{}")).expect("no body").is_empty());
    })
}

#[test]
fn send_waits_for_room_and_is_released_when_the_client_reads() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let (ex, mut rx) = exchange(false);
        let io = io(&fx, &ex);
        let send = sender(py, &io);
        call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
        let big = OUT_HIGH_WATER + 1;
        let fut = call(
            &send,
            &format!("{{'type': 'http.response.body', 'body': b'x' * {big}, 'more_body': True}}"),
        )
        .expect("body");
        assert_eq!(fx.step(&fut).0, "waits", "over the high-water mark");
        let mut response = fx.delivered(&mut rx).expect("head");
        assert_eq!(fx.run_wakeups(py), 0);
        assert_eq!(body_now(response.body_mut()).0.len(), big);
        assert_eq!(fx.run_wakeups(py), 1, "reading made room");
        assert!(fut.call_method0("result").expect("result").is_none());
        // Waiting again, then the client leaves: the send fails as a disconnect.
        let fut = call(
            &send,
            &format!("{{'type': 'http.response.body', 'body': b'y' * {big}, 'more_body': True}}"),
        )
        .expect("body");
        ex.disconnect();
        assert_eq!(fx.run_wakeups(py), 1);
        let exc = fut.call_method0("exception").expect("exception");
        assert!(exc.is_instance_of::<ClientDisconnected>());
    })
}

#[test]
fn a_send_given_up_on_is_left_alone_and_one_still_waiting_parks_again() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let (ex, mut rx) = exchange(false);
        let io = io(&fx, &ex);
        let send = sender(py, &io);
        call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
        let big = OUT_HIGH_WATER + 1;
        let message =
            format!("{{'type': 'http.response.body', 'body': b'x' * {big}, 'more_body': True}}");
        let fut = call(&send, &message).expect("body");
        // Woken without room: it waits on, and is still settled by the next room.
        io.clone().wake();
        assert_eq!(fx.run_wakeups(py), 1);
        assert!(!fut
            .call_method0("done")
            .and_then(|d| d.is_truthy())
            .expect("done"));
        let mut response = fx.delivered(&mut rx).expect("head");
        body_now(response.body_mut());
        assert_eq!(fx.run_wakeups(py), 1);
        assert!(fut
            .call_method0("done")
            .and_then(|d| d.is_truthy())
            .expect("done"));
        let fut = call(&send, &message).expect("body");
        fut.call_method0("cancel").expect("cancel");
        ex.disconnect();
        assert_eq!(fx.run_wakeups(py), 1);
        assert!(fut
            .call_method0("cancelled")
            .and_then(|d| d.is_truthy())
            .expect("cancelled"));
    })
}

#[test]
fn start_after_the_client_left_raises_client_disconnected() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let (ex, _rx) = exchange(false);
        let send = sender(py, &io(&fx, &ex));
        ex.disconnect();
        let err = call(&send, "{'type': 'http.response.start', 'status': 200}").expect_err("gone");
        assert!(err.is_instance_of::<ClientDisconnected>(py));
        // Nothing was started: a body is still "before start".
        let err = call(&send, "{'type': 'http.response.body'}").expect_err("no start");
        assert!(error_text(&err, py).contains("Expected ASGI message 'http.response.start'"));
    })
}

#[test]
fn malformed_messages_are_refused_with_what_was_wrong() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let cases = [
            ("{}", "without a 'type'"),
            ("{'type': 1}", "'type' must be a str"),
            (
                "{'type': 'http.response.nope'}",
                "'http.response.nope' for an http scope",
            ),
            ("{'type': 'http.response.start'}", "without 'status'"),
            (
                "{'type': 'http.response.start', 'status': '200'}",
                "must be an int",
            ),
            (
                "{'type': 'http.response.start', 'status': 1000}",
                "invalid status 1000",
            ),
            (
                "{'type': 'http.response.start', 'status': 200, 'headers': 5}",
                "iterable of [name, value]",
            ),
            (
                "{'type': 'http.response.start', 'status': 200, 'headers': [5]}",
                "iterable of [name, value]",
            ),
            (
                "{'type': 'http.response.start', 'status': 200, 'headers': [(b'a', b'b', b'c')]}",
                "iterable of [name, value]",
            ),
            (
                "{'type': 'http.response.start', 'status': 200, 'headers': [[b'a']]}",
                "iterable of [name, value]",
            ),
            (
                "{'type': 'http.response.start', 'status': 200, 'headers': [('a', 'b')]}",
                "iterable of [name, value]",
            ),
            (
                "{'type': 'http.response.start', 'status': 200, 'headers': [(b'a', 'b')]}",
                "iterable of [name, value]",
            ),
            (
                "{'type': 'http.response.start', 'status': 200, 'headers': [(b'a', 5)]}",
                "iterable of [name, value]",
            ),
            (
                "{'type': 'http.response.start', 'status': 200, 'headers': [(b'a b', b'c')]}",
                "invalid header name \"a b\"",
            ),
            (
                "{'type': 'http.response.start', 'status': 200, 'headers': [(b'a', b'c\\n')]}",
                "invalid value for header \"a\"",
            ),
            ("{'type': 'http.response.pathsend'}", "without 'path'"),
            (
                "{'type': 'http.response.pathsend', 'path': 5}",
                "'path' must be a str",
            ),
        ];
        for (message, says) in cases {
            let (ex, _rx) = exchange(false);
            let send = sender(py, &io(&fx, &ex));
            let err = call(&send, message).expect_err(message);
            let text = error_text(&err, py);
            assert!(text.contains(says), "{message}: {text}");
        }
        let (ex, _rx) = exchange(false);
        let send = sender(py, &io(&fx, &ex));
        call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
        for body in ["'text'", "5"] {
            let err = call(
                &send,
                &format!("{{'type': 'http.response.body', 'body': {body}}}"),
            )
            .expect_err(body);
            assert!(error_text(&err, py).contains("'body' must be bytes"));
        }
    })
}

#[test]
fn pathsend_sends_the_file_after_the_head_and_reports_a_missing_one_as_oserror() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let dir = std::env::temp_dir().join(format!("juggler-asgi-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("f.txt");
        std::fs::write(&path, b"file body").expect("write");
        let (ex, mut rx) = exchange(false);
        let send = sender(py, &io(&fx, &ex));
        let pathsend = format!(
            "{{'type': 'http.response.pathsend', 'path': {:?}}}",
            path.to_str().expect("utf-8")
        );
        let err = call(&send, &pathsend).expect_err("before start");
        assert!(error_text(&err, py).contains("must follow http.response.start"));
        call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
        call(&send, &pathsend).expect("pathsend");
        let response = fx.delivered(&mut rx).expect("response");
        assert_eq!(response.status(), 200);
        assert_eq!(ex.outcome(), (Some(StatusCode::OK), 9));
        let err = call(&send, &pathsend).expect_err("twice");
        assert!(error_text(&err, py).contains("must follow http.response.start"));

        let (ex, _rx) = exchange(false);
        let send = sender(py, &io(&fx, &ex));
        call(&send, "{'type': 'http.response.start', 'status': 200}").expect("start");
        let missing = dir.join("missing");
        let err = call(
            &send,
            &format!(
                "{{'type': 'http.response.pathsend', 'path': {:?}}}",
                missing.to_str().expect("utf-8")
            ),
        )
        .expect_err("missing");
        assert!(err.is_instance_of::<pyo3::exceptions::PyFileNotFoundError>(py));
        let value = err.value(py);
        assert_eq!(
            value
                .getattr("errno")
                .and_then(|e| e.extract::<i32>())
                .expect("errno"),
            libc::ENOENT
        );
        assert_eq!(
            value
                .getattr("strerror")
                .and_then(|e| e.extract::<String>())
                .expect("strerror"),
            "http.response.pathsend: No such file or directory"
        );
        // The head is still pending: a body may still answer.
        call(&send, "{'type': 'http.response.body', 'body': b'x'}").expect("body after all");
        std::fs::remove_dir_all(&dir).expect("rmdir");
    })
}

#[test]
fn io_text_drops_rusts_os_error_suffix_only() {
    let e = std::io::Error::from_raw_os_error(libc::ENOENT);
    assert_eq!(io_text(&e), "No such file or directory");
    let e = std::io::Error::other("plain");
    assert_eq!(io_text(&e), "plain");
}

#[test]
fn settle_send_fails_on_a_gone_client_before_looking_for_room() {
    with_py(|py| {
        let fx = Fixture::new(py);
        let new = || fx.core.create_future.call0(py).expect("future");
        let fut = new();
        assert!(settle_send(py, fut.clone_ref(py), true, true).is_none());
        let exc = fut.call_method0(py, "exception").expect("exception");
        assert!(exc.bind(py).is_instance_of::<ClientDisconnected>());
        let fut = new();
        assert!(settle_send(py, fut.clone_ref(py), false, true).is_none());
        assert!(fut.call_method0(py, "result").expect("result").is_none(py));
        let fut = new();
        assert!(settle_send(py, fut.clone_ref(py), false, false).is_some());
        assert!(!is_done(py, &fut));
        // Anything that cannot say counts as done: it is never waited on.
        assert!(is_done(py, &PyList::empty(py).into_any().unbind()));
    })
}
