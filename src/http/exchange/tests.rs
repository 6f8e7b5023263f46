use super::*;
use crate::http::write_timer::WriteClock;
use std::sync::atomic::AtomicUsize;
use std::task::Wake;

/// Counts wake-ups: stands in for an event loop or a WSGI thread.
#[derive(Default)]
struct Counter(AtomicUsize);

impl AppWaker for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Counter {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

struct TaskWake(AtomicUsize);

impl Wake for TaskWake {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn exchange() -> (
    Arc<Exchange>,
    oneshot::Receiver<Response<ResponseBody>>,
    Arc<AtomicUsize>,
) {
    let inflight = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = oneshot::channel();
    (Exchange::new(&inflight, tx, false), rx, inflight)
}

fn body(data: &'static [u8], more: bool) -> Option<Received> {
    Some(Received::Body {
        data: Bytes::from_static(data),
        more,
    })
}

fn respond(sent: Sent) -> Response<ResponseBody> {
    match sent.handover {
        Some(Handover::Respond(_, r)) => r,
        _ => panic!("expected a response head"),
    }
}

#[test]
fn counts_inflight_until_the_app_is_done_or_the_exchange_gone() {
    let (ex, _rx, inflight) = exchange();
    assert_eq!(inflight.load(Ordering::SeqCst), 1);
    drop(ex);
    assert_eq!(inflight.load(Ordering::SeqCst), 0);
    let (ex, _rx, inflight) = exchange();
    ex.finish();
    assert_eq!(
        inflight.load(Ordering::SeqCst),
        0,
        "not held by a lingering reference"
    );
    drop(ex);
    assert_eq!(inflight.load(Ordering::SeqCst), 0);
}

#[test]
fn body_chunks_are_joined_and_end_is_reported_once() {
    let (ex, _rx, _) = exchange();
    assert_eq!(ex.next_received(), None);
    assert!(ex.push_body(Bytes::from_static(b"ab")));
    assert!(ex.push_body(Bytes::from_static(b"cd")));
    assert_eq!(ex.next_received(), body(b"abcd", true));
    ex.finish_body();
    assert_eq!(ex.next_received(), body(b"", false));
    assert_eq!(
        ex.next_received(),
        None,
        "nothing more until the response completes"
    );
}

#[test]
fn parked_reader_is_woken_once_by_data_and_not_by_room() {
    let (ex, _rx, _) = exchange();
    let w = Arc::new(Counter::default());
    assert!(ex.park(Want::Body, w.clone()));
    ex.finish(); // takes nothing: the reader still waits
    let (ex, _rx, _) = exchange();
    assert!(ex.park(Want::Body, w.clone()));
    let _ = ex.poll_out(&Arc::new(TaskWake(AtomicUsize::new(0))).into());
    assert_eq!(
        w.count(),
        0,
        "room in the response is not what it waits for"
    );
    ex.push_body(Bytes::from_static(b"x"));
    ex.push_body(Bytes::from_static(b"y"));
    assert_eq!(w.count(), 1, "woken once, not per chunk");
    assert!(
        !ex.park(Want::Body, w.clone()),
        "data is there: no need to wait"
    );
    assert_eq!(ex.next_received(), body(b"xy", true));
}

#[test]
fn disconnect_wakes_any_waiter_and_reads_as_disconnect() {
    let (ex, _rx, _) = exchange();
    let w = Arc::new(Counter::default());
    assert!(ex.park(Want::Room, w.clone()) || ex.has_room());
    assert!(ex.park(Want::Body, w.clone()));
    ex.disconnect();
    ex.disconnect();
    assert_eq!(w.count(), 1);
    assert_eq!(ex.next_received(), Some(Received::Disconnect));
    assert!(ex.has_room(), "a sender must not wait for a gone client");
    assert!(ex.push_body(Bytes::from_static(b"late")).eq(&false));
    assert!(matches!(
        ex.send_chunk(Bytes::new(), false),
        Err(Error::Disconnected)
    ));
}

#[test]
fn whole_response_completes_and_ends_the_request_body() {
    let (ex, _rx, _) = exchange();
    let w = Arc::new(Counter::default());
    assert!(ex.park(Want::Body, w.clone()));
    let sent = ex
        .start_response(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(b"hi"),
            false,
        )
        .expect("started");
    assert!(!sent.full);
    assert_eq!(
        w.count(),
        1,
        "a reader waiting for the body learns it is over"
    );
    assert_eq!(ex.next_received(), Some(Received::Disconnect));
    assert_eq!(ex.body_paused(), None, "the pump stops");
    let r = respond(sent);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(ex.finish(), Finished::Complete);
    assert_eq!(ex.status(), Some(StatusCode::OK));
}

#[test]
fn streaming_applies_backpressure_and_wakes_the_sender_at_low_water() {
    let (ex, _rx, _) = exchange();
    let chunk = Bytes::from(vec![0u8; 256 * 1024]);
    let sent = ex
        .start_response(StatusCode::OK, HeaderMap::new(), chunk.clone(), true)
        .expect("started");
    assert!(!sent.full);
    let _response = respond(sent);
    let mut full = false;
    for _ in 0..4 {
        full = ex.send_chunk(chunk.clone(), true).expect("sent").full;
    }
    assert!(full, "1.25 MiB queued is over the high-water mark");
    let w = Arc::new(Counter::default());
    assert!(ex.park(Want::Room, w.clone()));
    let task = Arc::new(TaskWake(AtomicUsize::new(0))).into();
    let mut taken = 0;
    while w.count() == 0 {
        match ex.poll_out(&task) {
            OutPoll::Data(d) => taken += d.len(),
            _ => panic!("data expected"),
        }
    }
    assert_eq!(taken, 3 * 256 * 1024, "woken once at or below 512 KiB");
    assert!(ex.has_room());
}

/// An exchange streaming more than its high-water mark, its app parked for room, on an
/// HTTP/2 connection's write clock.
fn stalled_on(clock: &Arc<WriteClock>) -> (Arc<Exchange>, Response<ResponseBody>, Arc<Counter>) {
    let inflight = Arc::new(AtomicUsize::new(0));
    let (tx, _rx) = oneshot::channel();
    let ex = Exchange::with_stall_clock(&inflight, tx, false, Some(clock.clone()));
    let chunk = Bytes::from(vec![0u8; 512 * 1024]);
    let response = respond(
        ex.start_response(StatusCode::OK, HeaderMap::new(), chunk.clone(), true)
            .expect("started"),
    );
    assert!(!ex.send_chunk(chunk.clone(), true).expect("sent").full);
    assert!(
        ex.send_chunk(chunk, true).expect("sent").full,
        "1.5 MiB queued"
    );
    let w = Arc::new(Counter::default());
    let before = clock.stalled_streams();
    assert!(ex.park(Want::Room, w.clone()));
    assert_eq!(clock.stalled_streams(), before + 1, "waiting now");
    (ex, response, w)
}

#[test]
fn an_http2_app_waiting_for_room_is_a_stall_until_it_has_room() {
    let clock = Arc::new(WriteClock::default());
    let (ex, _response, w) = stalled_on(&clock);
    assert_eq!(clock.stalled_streams(), 1);
    // Parked again before any news (a second send of the same wait): still one.
    assert!(ex.park(Want::Room, w.clone()));
    assert_eq!(clock.stalled_streams(), 1);
    let task = Arc::new(TaskWake(AtomicUsize::new(0))).into();
    while w.count() == 0 {
        assert!(matches!(ex.poll_out(&task), OutPoll::Data(_)));
    }
    assert_eq!(clock.stalled_streams(), 0, "room made: the wait is over");
}

#[test]
fn a_stall_ends_with_the_client_or_the_exchange() {
    let clock = Arc::new(WriteClock::default());
    let (ex, response, w) = stalled_on(&clock);
    let (other, other_response, _) = stalled_on(&clock);
    assert_eq!(clock.stalled_streams(), 2);
    // hyper drops a body when its stream is reset or the connection goes.
    drop(response);
    assert_eq!(w.count(), 1, "the app learns the client is gone");
    assert_eq!(clock.stalled_streams(), 1);
    drop(ex);
    // The other one's app is still parked when everything goes at once.
    drop(other);
    drop(other_response);
    assert_eq!(clock.stalled_streams(), 0);
}

#[test]
fn an_app_that_gives_up_waiting_for_room_no_longer_stalls() {
    let clock = Arc::new(WriteClock::default());
    let (ex, _response, w) = stalled_on(&clock);
    // Its send() was cancelled, and the app returned: the response stays with hyper, and the
    // exchange with Python objects that may outlive it.
    ex.finish();
    assert_eq!(clock.stalled_streams(), 0);
    assert_eq!(w.count(), 0, "a waker left parked is dropped, not called");
}

#[test]
fn body_taken_on_any_stream_is_progress_on_the_clock() {
    let clock = Arc::new(WriteClock::default());
    let (_waiting, _response, _) = stalled_on(&clock);
    let (other, _other_response, _) = stalled_on(&clock);
    let before = clock.stall_mark_for_tests();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let task = Arc::new(TaskWake(AtomicUsize::new(0))).into();
    assert!(matches!(other.poll_out(&task), OutPoll::Data(_)));
    assert!(
        clock.stall_mark_for_tests() > before,
        "the wait counts from the chunk taken"
    );
}

#[test]
fn send_chunk_wakes_a_waiting_stream_through_a_handover() {
    let (ex, _rx, _) = exchange();
    // hyper holds the response (and its stream) until the end; dropping it would mean
    // the client went away.
    let _response = respond(
        ex.start_response(StatusCode::OK, HeaderMap::new(), Bytes::new(), true)
            .expect("started"),
    );
    let task = Arc::new(TaskWake(AtomicUsize::new(0)));
    assert!(matches!(
        ex.poll_out(&task.clone().into()),
        OutPoll::Pending
    ));
    let sent = ex.send_chunk(Bytes::from_static(b"x"), true).expect("sent");
    match sent.handover {
        Some(h @ Handover::Wake(_)) => h.deliver(),
        _ => panic!("expected a stream wake-up"),
    }
    assert_eq!(task.0.load(Ordering::SeqCst), 1);
    let sent = ex.send_chunk(Bytes::new(), false).expect("sent");
    assert!(sent.handover.is_none(), "nobody is waiting yet");
    assert!(matches!(
        ex.poll_out(&task.clone().into()),
        OutPoll::Data(_)
    ));
    assert!(matches!(ex.poll_out(&task.into()), OutPoll::End));
    assert!(ex.out_is_end());
}

#[test]
fn a_whole_body_must_match_its_content_length() {
    let length = |v: &'static str| {
        let mut h = HeaderMap::new();
        h.append(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from_static(v),
        );
        h
    };
    let start = |h: HeaderMap, body: &'static [u8]| {
        let (ex, _rx, _) = exchange();
        ex.start_response(StatusCode::OK, h, Bytes::from_static(body), false)
            .map(|_| ())
    };
    assert!(start(length("5"), b"hello").is_ok());
    assert!(start(HeaderMap::new(), b"hello").is_ok());
    for (declared, body) in [
        ("20", &b"hello"[..]),
        ("3", b"hello"),
        ("abc", b"abc"),
        ("+5", b"hello"),
    ] {
        assert!(
            matches!(start(length(declared), body), Err(Error::Protocol(_))),
            "Content-Length {declared} with {} bytes",
            body.len()
        );
    }
    let mut twice = length("5");
    twice.append(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("6"),
    );
    assert!(start(twice, b"hello").is_err());
    // A HEAD response declares the length of the body it leaves out.
    let inflight = Arc::new(AtomicUsize::new(0));
    let (tx, _rx) = oneshot::channel();
    let head = Exchange::new(&inflight, tx, true);
    assert!(head
        .start_response(StatusCode::OK, length("20"), Bytes::new(), false)
        .is_ok());
}

#[test]
fn a_file_response_completes_at_once_with_the_files_length() {
    let dir = std::env::temp_dir().join(format!("juggler-ex-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("f");
    std::fs::write(&path, b"hello").expect("write");
    let open = || FileRange::open(&path).expect("open");
    let (ex, _rx, _) = exchange();
    let sent = ex
        .start_file(StatusCode::OK, HeaderMap::new(), open())
        .expect("started");
    assert!(!sent.full);
    let r = respond(sent);
    assert_eq!(r.headers()[http::header::CONTENT_LENGTH], "5");
    assert_eq!(ex.finish(), Finished::Complete, "the app is done with it");
    let mut declared = HeaderMap::new();
    declared.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("6"),
    );
    let (ex, _rx, _) = exchange();
    assert!(matches!(
        ex.start_file(StatusCode::OK, declared, open()),
        Err(Error::Protocol(_))
    ));
    assert_eq!(
        ex.finish(),
        Finished::NoResponse,
        "refused before anything left: a 500"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn finish_without_response_answers_500() {
    let (ex, mut rx, _) = exchange();
    assert_eq!(ex.finish(), Finished::NoResponse);
    let r = rx.try_recv().expect("a response");
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(ex.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
}

#[test]
fn finish_mid_stream_delivers_queued_data_then_aborts() {
    let (ex, _rx, _) = exchange();
    let _response = respond(
        ex.start_response(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(b"part"),
            true,
        )
        .expect("started"),
    );
    assert_eq!(ex.finish(), Finished::Incomplete);
    let task = Arc::new(TaskWake(AtomicUsize::new(0))).into();
    assert!(matches!(ex.poll_out(&task), OutPoll::Data(d) if d == "part"));
    assert!(matches!(ex.poll_out(&task), OutPoll::Aborted));
    assert!(!ex.out_is_end());
    assert!(ex.send_chunk(Bytes::new(), false).is_err());
}

#[test]
fn malformed_body_answers_400_if_nothing_was_sent() {
    let (ex, mut rx, _) = exchange();
    ex.body_failed();
    assert_eq!(ex.next_received(), Some(Received::Disconnect));
    assert_eq!(ex.finish(), Finished::Disconnected);
    let r = rx.try_recv().expect("a response");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn the_server_answers_instead_only_before_the_app_did() {
    let (ex, mut rx, inflight) = exchange();
    let canceller = Arc::new(Counter::default());
    ex.set_canceller(canceller.clone());
    let reader = Arc::new(Counter::default());
    assert!(ex.park(Want::Body, reader.clone()));
    let r = plain_response(StatusCode::GATEWAY_TIMEOUT, "late");
    let got = ex.answer_instead(r).expect("nothing was sent yet");
    got.expect("the canceller").wake();
    assert_eq!(canceller.count(), 1);
    assert_eq!(reader.count(), 1, "a waiting app learns of it");
    assert_eq!(ex.next_received(), Some(Received::Disconnect));
    assert_eq!(
        rx.try_recv().expect("answered").status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(ex.status(), Some(StatusCode::GATEWAY_TIMEOUT));
    assert!(ex
        .answer_instead(plain_response(StatusCode::OK, ""))
        .is_err());
    assert_eq!(ex.finish(), Finished::Disconnected);
    assert_eq!(inflight.load(Ordering::SeqCst), 0);

    // Once the app's head has gone, it is too late; the canceller goes with the call.
    let (ex, _rx, _) = exchange();
    let canceller = Arc::new(Counter::default());
    ex.set_canceller(canceller.clone());
    let _ = ex
        .start_response(StatusCode::OK, HeaderMap::new(), Bytes::new(), true)
        .expect("head");
    assert!(ex
        .answer_instead(plain_response(StatusCode::OK, ""))
        .is_err());
    ex.finish();
    assert_eq!(
        Arc::strong_count(&canceller),
        1,
        "finish drops the canceller"
    );
}

#[test]
fn pump_pauses_at_high_water() {
    let (ex, _rx, _) = exchange();
    assert_eq!(ex.body_paused(), Some(false));
    ex.push_body(Bytes::from(vec![0u8; HIGH_WATER]));
    assert_eq!(ex.body_paused(), Some(true));
    let _ = ex.next_received();
    assert_eq!(ex.body_paused(), Some(false));
}

/// Starts a streaming response; the body must be kept, or dropping it reads as the
/// client going away. Returns it and whether the app must wait.
fn stream(ex: &Arc<Exchange>, first: usize) -> (Response<ResponseBody>, bool) {
    let sent = ex
        .start_response(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from(vec![b's'; first]),
            true,
        )
        .expect("streaming response");
    let full = sent.full;
    (respond(sent), full)
}

#[test]
fn a_writer_waiting_for_room_is_not_woken_by_request_body() {
    let (ex, _rx, _) = exchange();
    let _body = stream(&ex, OUT_HIGH_WATER + 1);
    let w = Arc::new(Counter::default());
    assert!(
        ex.park(Want::Room, w.clone()),
        "over the high-water mark: it waits"
    );
    ex.push_body(Bytes::from_static(b"x"));
    ex.finish_body();
    assert_eq!(w.count(), 0, "request body is not what it waits for");
    assert!(!ex.has_room());
}

#[test]
fn the_high_water_mark_is_exclusive_and_only_for_streams() {
    let (ex, _rx, _) = exchange();
    assert!(
        !stream(&ex, OUT_HIGH_WATER).1,
        "exactly at the mark: not full"
    );
    let (ex, _rx, _) = exchange();
    assert!(stream(&ex, OUT_HIGH_WATER + 1).1);
    let (ex, _rx, _) = exchange();
    let _body = stream(&ex, 0);
    assert!(
        !ex.send_chunk(Bytes::from(vec![b'c'; OUT_HIGH_WATER]), true)
            .expect("chunk")
            .full
    );
    assert!(
        ex.send_chunk(Bytes::from_static(b"c"), true)
            .expect("chunk")
            .full
    );
    let (ex, _rx, _) = exchange();
    let _body2 = stream(&ex, 0);
    let last = ex
        .send_chunk(Bytes::from(vec![b'c'; OUT_HIGH_WATER + 1]), false)
        .expect("last chunk");
    assert!(!last.full, "the last chunk never makes the app wait");
}

#[test]
fn a_gone_client_always_has_room_and_reads_as_disconnected() {
    let (ex, _rx, _) = exchange();
    assert!(!ex.is_disconnected());
    let _body = stream(&ex, OUT_HIGH_WATER + 1);
    assert!(!ex.has_room());
    ex.disconnect();
    assert!(ex.is_disconnected());
    assert!(ex.has_room(), "waiting for room would be pointless");
}

#[test]
fn a_stream_dropped_before_its_end_is_a_disconnect_and_after_it_is_not() {
    let (ex, _rx, _) = exchange();
    let _body = stream(&ex, 10);
    assert!(!ex.out_is_end(), "more is to come");
    ex.out_dropped();
    assert!(
        ex.is_disconnected(),
        "hyper let go mid-stream: the client is gone"
    );

    let (ex, _rx, _) = exchange();
    let _body2 = stream(&ex, 0);
    ex.send_chunk(Bytes::from_static(b"end"), false)
        .expect("last chunk");
    assert!(!ex.out_is_end(), "complete, but a chunk is still queued");
    let waker = Arc::new(TaskWake(AtomicUsize::new(0))).into();
    let _ = ex.poll_out(&waker);
    assert!(ex.out_is_end());
    ex.out_dropped();
    assert!(
        !ex.is_disconnected(),
        "dropped after the end: a normal finish"
    );
}

#[test]
fn a_completed_response_wakes_a_reader_with_disconnect() {
    let (ex, _rx, _) = exchange();
    ex.finish_body();
    assert_eq!(ex.next_received(), body(b"", false));
    let w = Arc::new(Counter::default());
    assert!(
        ex.park(Want::Body, w.clone()),
        "the last body was delivered: it waits"
    );
    let _body = stream(&ex, 0);
    ex.send_chunk(Bytes::new(), false).expect("end");
    assert_eq!(
        w.count(),
        1,
        "the response is complete: receive() must return"
    );
    assert_eq!(ex.next_received(), Some(Received::Disconnect));
    assert!(
        !ex.park(Want::Body, w.clone()),
        "after the response, receive() never waits"
    );
}

#[test]
fn a_stream_dropped_with_its_last_chunks_unsent_is_a_disconnect() {
    let (ex, _rx, _) = exchange();
    let _body = stream(&ex, 0);
    ex.send_chunk(Bytes::from_static(b"tail"), false)
        .expect("last chunk");
    // Complete from the app's side, but hyper let go before writing it all.
    ex.out_dropped();
    assert!(ex.is_disconnected());
}

#[tokio::test]
async fn waiting_for_body_asks_the_pump_for_more_and_waiting_for_room_does_not() {
    let wait = std::time::Duration::from_millis(20);
    let (ex, _rx, _) = exchange();
    assert!(ex.park(Want::Body, Arc::new(Counter::default())));
    assert!(tokio::time::timeout(wait, ex.demand.notified())
        .await
        .is_ok());
    let (ex, _rx, _) = exchange();
    let _body = stream(&ex, OUT_HIGH_WATER + 1);
    assert!(ex.park(Want::Room, Arc::new(Counter::default())));
    assert!(tokio::time::timeout(wait, ex.demand.notified())
        .await
        .is_err());
}

#[test]
fn informational_and_no_content_skip_the_length_check() {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("5"),
    );
    assert!(check_length(StatusCode::NO_CONTENT, &headers, 0).is_ok());
    assert!(check_length(StatusCode::CONTINUE, &headers, 0).is_ok());
    assert!(check_length(StatusCode::OK, &headers, 0).is_err());
    assert!(check_length(StatusCode::OK, &headers, 5).is_ok());
}

#[test]
fn a_dropped_service_future_disconnects_the_exchange() {
    let (ex, _rx, _) = exchange();
    drop(DisconnectGuard(Some(ex.clone())));
    assert!(ex.is_disconnected());
}

// ---- the transitions between states ----

/// hyper's task, parked on an empty stream.
fn waiting_stream(ex: &Exchange) -> Arc<TaskWake> {
    let task = Arc::new(TaskWake(AtomicUsize::new(0)));
    assert!(matches!(
        ex.poll_out(&task.clone().into()),
        OutPoll::Pending
    ));
    task
}

fn status_of(rx: &mut oneshot::Receiver<Response<ResponseBody>>) -> StatusCode {
    rx.try_recv().expect("a response").status()
}

#[test]
fn a_malformed_body_never_ends_normally() {
    let (ex, mut rx, _) = exchange();
    assert!(ex.push_body(Bytes::from_static(b"ab")));
    ex.body_failed();
    // hyper would not end a body it failed to parse, but should anything call it the end
    // must not revive what was read before the failure.
    ex.finish_body();
    assert_eq!(ex.next_received(), Some(Received::Disconnect));
    assert!(!ex.push_body(Bytes::from_static(b"cd")));
    assert_eq!(ex.body_paused(), None);
    assert_eq!(ex.finish(), Finished::Disconnected);
    assert_eq!(status_of(&mut rx), StatusCode::BAD_REQUEST);
}

#[test]
fn a_malformed_body_earns_its_400_whichever_comes_first_failure_or_disconnect() {
    for failure_first in [true, false] {
        let (ex, mut rx, _) = exchange();
        if failure_first {
            ex.body_failed();
            ex.disconnect();
        } else {
            ex.disconnect();
            ex.body_failed();
        }
        assert_eq!(ex.finish(), Finished::Disconnected);
        assert_eq!(
            ex.status(),
            Some(StatusCode::BAD_REQUEST),
            "{failure_first}"
        );
        assert_eq!(status_of(&mut rx), StatusCode::BAD_REQUEST);
    }
}

#[test]
fn a_complete_response_is_never_turned_into_a_500_or_a_cut() {
    let (ex, _rx, _) = exchange();
    let _response = respond(
        ex.start_response(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(b"hi"),
            false,
        )
        .expect("whole response"),
    );
    // hyper lets go of the connection once it has written the response.
    ex.disconnect();
    assert_eq!(ex.finish(), Finished::Complete);
    assert!(ex
        .answer_instead(plain_response(StatusCode::GATEWAY_TIMEOUT, ""))
        .is_err());
    assert_eq!(ex.finish(), Finished::Complete, "and it stays complete");
    assert_eq!(ex.status(), Some(StatusCode::OK));
}

#[test]
fn answer_instead_after_the_head_leaves_the_stream_alone() {
    let (ex, _rx, _) = exchange();
    let _body = stream(&ex, 4);
    assert!(ex
        .answer_instead(plain_response(StatusCode::GATEWAY_TIMEOUT, ""))
        .is_err());
    assert!(!ex.is_disconnected(), "the app's response goes on");
    assert_eq!(ex.status(), Some(StatusCode::OK));
    ex.send_chunk(Bytes::from_static(b"rest"), false)
        .expect("the stream goes on");
    assert_eq!(ex.finish(), Finished::Complete);
    assert_eq!(ex.outcome(), (Some(StatusCode::OK), 8));
}

#[test]
fn after_the_server_answered_instead_the_app_is_cut_off_at_once() {
    let (ex, mut rx, _) = exchange();
    ex.answer_instead(plain_response(StatusCode::GATEWAY_TIMEOUT, "late"))
        .expect("nothing was sent yet");
    assert!(ex.is_disconnected());
    assert!(ex.has_room(), "a send must not wait");
    assert!(!ex.park(Want::Body, Arc::new(Counter::default())));
    assert!(!ex.push_body(Bytes::from_static(b"x")));
    assert!(matches!(
        ex.start_response(StatusCode::OK, HeaderMap::new(), Bytes::new(), false),
        Err(Error::Disconnected)
    ));
    assert!(matches!(
        ex.send_chunk(Bytes::new(), false),
        Err(Error::Disconnected)
    ));
    assert_eq!(ex.finish(), Finished::Disconnected, "no 500 over the 504");
    assert_eq!(status_of(&mut rx), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(ex.status(), Some(StatusCode::GATEWAY_TIMEOUT));
}

#[test]
fn the_servers_500_is_the_response_and_ends_the_request_body() {
    let (ex, mut rx, _) = exchange();
    assert_eq!(ex.finish(), Finished::NoResponse);
    assert_eq!(status_of(&mut rx), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!ex.push_body(Bytes::from_static(b"x")), "nobody reads it");
    assert_eq!(ex.body_paused(), None, "the pump stops");
    assert_eq!(ex.next_received(), Some(Received::Disconnect));
    assert_eq!(ex.finish(), Finished::Complete, "the 500 was the response");
}

#[test]
fn the_end_of_the_body_is_read_once_when_it_comes_with_the_last_chunk() {
    let (ex, _rx, _) = exchange();
    ex.push_body(Bytes::from_static(b"a"));
    ex.finish_body();
    assert_eq!(ex.next_received(), body(b"a", false));
    assert_eq!(ex.next_received(), None, "no second end");
    let w = Arc::new(Counter::default());
    assert!(ex.park(Want::Body, w), "nothing more will come: it waits");
}

#[test]
fn one_waker_waiting_for_body_and_room_is_woken_by_either() {
    // An ASGI request's receive() and send() may wait at once; the first to ask must not be
    // forgotten when the second parks the same waker.
    let w = Arc::new(Counter::default());
    let (ex, _rx, _) = exchange();
    let _body = stream(&ex, OUT_HIGH_WATER + 1);
    assert!(ex.park(Want::Room, w.clone()));
    assert!(ex.park(Want::Body, w.clone()));
    let task = Arc::new(TaskWake(AtomicUsize::new(0))).into();
    while !ex.has_room() {
        assert!(matches!(ex.poll_out(&task), OutPoll::Data(_)));
    }
    assert_eq!(w.count(), 1, "woken by room");
    ex.push_body(Bytes::from_static(b"x"));
    assert_eq!(w.count(), 1, "woken once: it parks again if it still waits");

    let (ex, _rx, _) = exchange();
    let _body = stream(&ex, OUT_HIGH_WATER + 1);
    assert!(ex.park(Want::Body, w.clone()));
    assert!(ex.park(Want::Room, w.clone()));
    ex.push_body(Bytes::from_static(b"x"));
    assert_eq!(w.count(), 2, "woken by body");
}

#[test]
fn finishing_mid_stream_wakes_the_waiting_stream_to_its_abort() {
    let (ex, _rx, _) = exchange();
    let _body = stream(&ex, 0);
    let task = waiting_stream(&ex);
    assert_eq!(ex.finish(), Finished::Incomplete);
    assert_eq!(
        task.0.load(Ordering::SeqCst),
        1,
        "hyper's task learns of it"
    );
    assert!(matches!(
        ex.poll_out(&task.clone().into()),
        OutPoll::Aborted
    ));
    assert!(ex.has_room(), "nobody drains a cut stream for a sender");
    assert_eq!(ex.finish(), Finished::Incomplete, "and it stays cut");
}

#[test]
fn a_disconnect_wakes_the_waiting_stream() {
    let (ex, _rx, _) = exchange();
    let _body = stream(&ex, 0);
    let task = waiting_stream(&ex);
    ex.disconnect();
    assert_eq!(task.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        ex.finish(),
        Finished::Disconnected,
        "not reported as the app's incomplete response"
    );
}

#[test]
fn a_chunk_outside_a_stream_is_refused() {
    let (ex, _rx, _) = exchange();
    assert!(matches!(
        ex.send_chunk(Bytes::from_static(b"early"), true),
        Err(Error::Protocol(_))
    ));
    let _response = respond(
        ex.start_response(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(b"hi"),
            false,
        )
        .expect("whole response"),
    );
    assert!(matches!(
        ex.send_chunk(Bytes::from_static(b"late"), false),
        Err(Error::Protocol(_))
    ));
    assert_eq!(ex.outcome(), (Some(StatusCode::OK), 2));
}
