use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::http::test_harness::{answer, read_body, Harness, Reply};
use http::Version;

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

const OK: Reply = Reply::Answer(StatusCode::OK, "hello");

#[test]
fn small_bodies_are_read_inline_unless_continue_is_expected() {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_LENGTH, "10".parse().expect("value"));
    assert!(is_small(&h));
    h.insert(header::EXPECT, "100-Continue".parse().expect("value"));
    assert!(!is_small(&h));
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_LENGTH, "65536".parse().expect("value"));
    assert!(is_small(&h), "64 KiB is still read inline");
    h.insert(header::CONTENT_LENGTH, "65537".parse().expect("value"));
    assert!(!is_small(&h));
    h.insert(header::CONTENT_LENGTH, "10000000".parse().expect("value"));
    assert!(!is_small(&h));
    h.insert(header::CONTENT_LENGTH, "junk".parse().expect("value"));
    assert!(!is_small(&h));
}

#[tokio::test(start_paused = true)]
async fn the_apps_answer_reaches_the_client_with_the_default_headers() {
    let h = Harness::new(OK, |c| {
        c.default_headers = vec![(header::SERVER, HeaderValue::from_static("juggler"))];
    });
    let mut client = h.connect();
    let r = client.request(&get("/hi?x=1")).await;
    assert_eq!((r.status, r.text()), (200, "hello"));
    assert_eq!(r.header("server"), Some("juggler"));
    let seen = h.stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/hi?x=1");
    assert_eq!(seen[0].headers[header::HOST], "t");
    assert_eq!(seen[0].version, http::Version::HTTP_11);
    assert!(!seen[0].websocket);
    assert_eq!(h.registry().requests(), 1);
    assert_eq!(
        h.http.inflight.load(Ordering::Relaxed),
        0,
        "the app is done"
    );
    assert!(h.stub.own_answers().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_health_path_is_200_while_running_and_503_once_draining() {
    let h = Harness::new(OK, |c| c.health_path = Some("/healthz".into()));
    let mut client = h.connect();
    let r = client.request(&get("/healthz")).await;
    assert_eq!((r.status, r.text()), (200, "OK"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = client
        .request(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some("2"),
        "a HEAD gets the length"
    );
    let r = client.request(&get("/healthz/deeper")).await;
    assert_eq!((r.status, r.text()), (200, "hello"), "only the path itself");
    assert_eq!(
        h.stub.seen().len(),
        1,
        "the health checks never reach the app"
    );
    assert_eq!(h.stub.own_answers(), [StatusCode::OK, StatusCode::OK]);

    h.drain();
    // The open connection is closed by the drain; a check on a fresh one is answered (its
    // first request gets a grace) with 503.
    assert!(client.until_closed().await.is_empty());
    let mut fresh = h.connect();
    let r = fresh.request(&get("/healthz")).await;
    assert_eq!((r.status, r.text()), (503, "Shutting down"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = h
        .connect()
        .request(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(r.status, 503, "and so is a HEAD");
}

#[tokio::test(start_paused = true)]
async fn a_leaving_worker_fails_its_health_checks_and_serves_everything_else() {
    let h = Harness::new(OK, |c| c.health_path = Some("/healthz".into()));
    let mut client = h.connect();
    assert_eq!(client.request(&get("/healthz")).await.status, 200);
    h.registry().set_leaving();
    let r = client.request(&get("/healthz")).await;
    assert_eq!((r.status, r.text()), (503, "Shutting down"));
    let r = client.request(&get("/")).await;
    assert_eq!(
        (r.status, r.text()),
        (200, "hello"),
        "the app is still served"
    );
    let r = h.connect().request(&get("/")).await;
    assert_eq!(r.status, 200, "and new connections still accepted");
}

#[tokio::test(start_paused = true)]
async fn a_content_length_over_the_body_limit_is_413_before_the_app() {
    let h = Harness::new(OK, |c| c.limits.body = Some(10));
    let mut client = h.connect();
    let r = client
        .request(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789")
        .await;
    assert_eq!(r.status, 200, "at the limit");
    let r = client
        .request(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n")
        .await;
    assert_eq!((r.status, r.text()), (413, "Payload Too Large"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        client.info.refused.load(Ordering::Relaxed),
        "the close lingers"
    );
    assert!(client.until_closed().await.is_empty());
    assert_eq!(h.stub.seen().len(), 1, "the app never saw it");
    assert_eq!(h.stub.own_answers(), [StatusCode::PAYLOAD_TOO_LARGE]);
}

#[tokio::test(start_paused = true)]
async fn a_chunked_body_crossing_the_limit_is_413_in_the_apps_place() {
    // Held: an app that has not answered yet, while its body is still coming.
    let h = Harness::new(Reply::Hold, |c| c.limits.body = Some(16));
    let mut client = h.connect();
    client
        .send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await;
    h.stub.wait_for(1).await;
    client.send(b"a\r\n0123456789\r\n").await;
    client.send(b"a\r\n0123456789\r\n0\r\n\r\n").await;
    let r = client.response().await;
    assert_eq!((r.status, r.text()), (413, "Payload Too Large"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(client.info.refused.load(Ordering::Relaxed));
    let held = h.stub.take();
    assert!(held.exchange.is_disconnected(), "the app sees a disconnect");
    assert!(client.until_closed().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_chunked_body_within_the_limit_reaches_the_app() {
    let h = Harness::new(Reply::Hold, |c| c.limits.body = Some(20));
    let mut client = h.connect();
    client
        .send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await;
    h.stub.wait_for(1).await;
    client
        .send(b"a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n")
        .await;
    let held = h.stub.take();
    let body = read_body(&held).await;
    assert_eq!(body, b"01234567890123456789");
    answer(&held, StatusCode::OK, "got it");
    let r = client.response().await;
    assert_eq!((r.status, r.text()), (200, "got it"));
}

#[tokio::test(start_paused = true)]
async fn a_request_line_over_its_limit_is_414() {
    // "GET /abcdefghijkl HTTP/1.1" is 26 bytes.
    let h = Harness::new(OK, |c| c.limits.line = Some(26));
    let mut client = h.connect();
    let r = client.request(&get("/abcdefghijkl")).await;
    assert_eq!(r.status, 200, "at the limit");
    let r = client.request(&get("/abcdefghijklm")).await;
    assert_eq!((r.status, r.text()), (414, "URI Too Long"));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(h.stub.seen().len(), 1);
    assert_eq!(h.stub.own_answers(), [StatusCode::URI_TOO_LONG]);
}

#[tokio::test(start_paused = true)]
async fn a_field_over_its_size_is_431() {
    // "x-a: 0123456789" is 15 bytes.
    let h = Harness::new(OK, |c| c.limits.field_size = Some(15));
    let mut client = h.connect();
    let r = client
        .request(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 0123456789\r\n\r\n")
        .await;
    assert_eq!(r.status, 200, "at the limit");
    let r = client
        .request(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 0123456789a\r\n\r\n")
        .await;
    assert_eq!(
        (r.status, r.text()),
        (431, "Request Header Fields Too Large")
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(h.stub.seen().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn too_many_fields_over_http1_is_431() {
    let h = Harness::new(OK, |c| c.limits.fields = Some(3));
    let r = h
        .connect()
        .request(b"GET / HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\n\r\n")
        .await;
    assert_eq!(r.status, 200, "at the limit");
    let mut client = h.connect();
    let r = client
        .request(b"GET / HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
        .await;
    assert_eq!(r.status, 431, "hyper counts them");
    assert!(client.until_closed().await.is_empty());
    assert!(client.info.refused.load(Ordering::Relaxed));
    assert_eq!(h.stub.seen().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn too_many_fields_over_http2_is_431() {
    let h = Harness::new(OK, |c| c.limits.fields = Some(3));
    let mut h2 = h.connect().http2().await;
    let (status, version, body) = h2
        .get("/", &[("a", "1"), ("b", "2"), ("c", "3")])
        .await
        .expect("served");
    assert_eq!(
        (status, version, &body[..]),
        (StatusCode::OK, Version::HTTP_2, &b"hello"[..])
    );
    let (status, _, body) = h2
        .get("/", &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")])
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(body, b"Request Header Fields Too Large");
    assert_eq!(h.stub.seen().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_limit_refuses_with_503_until_a_request_is_done() {
    let h = Harness::new(Reply::Hold, |c| c.limit_concurrency = Some(1));
    let mut first = h.connect();
    first.send(&get("/slow")).await;
    h.stub.wait_for(1).await;
    let mut second = h.connect();
    let r = second.request(&get("/other")).await;
    assert_eq!((r.status, r.text()), (503, "Service Unavailable"));
    assert_eq!(h.stub.seen().len(), 1, "refused before the app");
    assert_eq!(h.stub.own_answers(), [StatusCode::SERVICE_UNAVAILABLE]);

    answer(&h.stub.take(), StatusCode::OK, "slow");
    let r = first.response().await;
    assert_eq!((r.status, r.text()), (200, "slow"));
    h.stub.set_reply(OK);
    let r = second.request(&get("/other")).await;
    assert_eq!(r.status, 200, "the refused connection stays usable");
}

#[tokio::test(start_paused = true)]
async fn a_refusal_by_the_app_side_is_503() {
    let h = Harness::new(Reply::Refuse, |_| {});
    let mut client = h.connect();
    let r = client.request(&get("/")).await;
    assert_eq!((r.status, r.text()), (503, "Service Unavailable"));
    assert_eq!(h.stub.seen().len(), 1);
    assert_eq!(h.stub.own_answers(), [StatusCode::SERVICE_UNAVAILABLE]);
    assert_eq!(h.registry().requests(), 0, "not counted as taken");
    assert_eq!(h.http.inflight.load(Ordering::Relaxed), 0);
    h.stub.set_reply(OK);
    assert_eq!(client.request(&get("/")).await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn an_app_side_giving_up_without_answering_is_503() {
    let h = Harness::new(Reply::GiveUp, |_| {});
    let r = h.connect().request(&get("/")).await;
    assert_eq!((r.status, r.text()), (503, "Service Unavailable"));
    assert_eq!(h.registry().requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lagging_loop_refuses_new_requests_with_503_until_it_catches_up() {
    let bound = Duration::from_millis(5);
    let h = Harness::new(OK, |c| c.max_loop_lag = Some(bound));
    let mut client = h.connect();
    assert_eq!(client.request(&get("/")).await.status, 200);
    // A probe left unanswered longer than the bound (the lag clock is the real one).
    let lag = &h.http.lag;
    lag.tick();
    std::thread::sleep(bound + Duration::from_millis(1));
    lag.tick();
    let r = client.request(&get("/")).await;
    assert_eq!((r.status, r.text()), (503, "Service Unavailable"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(h.stub.seen().len(), 1, "refused before the app");
    assert_eq!(h.stub.own_answers(), [StatusCode::SERVICE_UNAVAILABLE]);
    // The late probe is answered, and a prompt one after it.
    lag.answer();
    lag.tick();
    lag.answer();
    assert_eq!(client.request(&get("/")).await.status, 200);
}
