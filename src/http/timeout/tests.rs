use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use crate::http::test_harness::{answer, end_stream, start_stream, Harness, Reply};
use crate::transport::LogLevel;

const LIMIT: Duration = Duration::from_secs(30);
const GET: &[u8] = b"GET /slow?x=1 HTTP/1.1\r\nHost: t\r\n\r\n";

fn harness() -> Harness {
    Harness::new(Reply::Hold, |c| c.request_timeout = Some(LIMIT))
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_never_answers_gets_504_after_the_limit() {
    let h = harness();
    let mut client = h.connect();
    let start = Instant::now();
    let r = client.request(GET).await;
    let waited = start.elapsed();
    assert_eq!((r.status, r.text()), (504, "Gateway Timeout"));
    assert!(
        waited >= LIMIT && waited < LIMIT + Duration::from_secs(1),
        "{waited:?}"
    );
    let held = h.stub.take();
    assert!(held.exchange.is_disconnected(), "the app sees a disconnect");
    assert_eq!(
        h.stub.cancelled.0.load(Ordering::Relaxed),
        1,
        "its task is cancelled"
    );
    let warnings = h.log.lines(LogLevel::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("timed out after 30s") && warnings[0].contains("(GET /slow)"),
        "{warnings:?}"
    );
    h.stub.set_reply(Reply::Answer(StatusCode::OK, "next"));
    let r = client.request(GET).await;
    assert_eq!(
        (r.status, r.text()),
        (200, "next"),
        "the connection goes on"
    );
}

#[tokio::test(start_paused = true)]
async fn an_answer_within_the_limit_is_not_replaced() {
    let h = harness();
    let mut client = h.connect();
    client.send(GET).await;
    h.stub.wait_for(1).await;
    tokio::time::sleep(LIMIT - Duration::from_millis(1)).await;
    answer(&h.stub.take(), StatusCode::OK, "just in time");
    let r = client.response().await;
    assert_eq!((r.status, r.text()), (200, "just in time"));
    tokio::time::sleep(LIMIT * 2).await;
    assert!(h.log.lines(LogLevel::Warning).is_empty());
    assert_eq!(h.stub.cancelled.0.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_response_that_started_in_time_is_never_cut() {
    let h = harness();
    let mut client = h.connect();
    client.send(GET).await;
    h.stub.wait_for(1).await;
    tokio::time::sleep(LIMIT / 2).await;
    let held = h.stub.take();
    start_stream(&held, StatusCode::OK, "first ");
    // A stream may run as long as it likes.
    tokio::time::sleep(LIMIT * 3).await;
    end_stream(&held, "last");
    let r = client.response().await;
    assert_eq!((r.status, r.text()), (200, "first last"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(h.log.lines(LogLevel::Warning).is_empty());
    assert_eq!(h.stub.cancelled.0.load(Ordering::Relaxed), 0);
}
