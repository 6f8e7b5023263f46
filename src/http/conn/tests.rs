use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Method, StatusCode, Version};
use tokio::time::Instant;

use super::FIRST_REQUEST_GRACE;
use crate::config::HttpVersions;
use crate::http::sniff::PREFACE;
use crate::http::test_harness::{answer, start_stream, Harness, Reply, PATIENCE};
use crate::transport::{LogLevel, Phase};

const OK: Reply = Reply::Answer(StatusCode::OK, "hello");
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
/// An HTTP/2 SETTINGS frame with no settings: what a client sends after the preface.
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

fn versions(v: HttpVersions) -> Harness {
    Harness::new(OK, move |c| c.http = v)
}

#[tokio::test(start_paused = true)]
async fn auto_serves_http2_to_a_client_that_starts_with_the_preface() {
    let h = versions(HttpVersions::Auto);
    let mut h2 = h.connect().http2().await;
    for path in ["/one", "/two"] {
        let (status, version, body) = h2.get(path, &[]).await.expect("served");
        assert_eq!(
            (status, version, &body[..]),
            (StatusCode::OK, Version::HTTP_2, &b"hello"[..])
        );
    }
    let seen = h.stub.seen();
    assert_eq!(seen.len(), 2, "two streams of one connection");
    assert!(seen.iter().all(|s| s.version == Version::HTTP_2));
    assert_eq!(seen[1].uri.path(), "/two");
}

#[tokio::test(start_paused = true)]
async fn auto_serves_http1_to_anything_else() {
    let h = versions(HttpVersions::Auto);
    let mut client = h.connect();
    let r = client.request(GET).await;
    assert_eq!((r.version.as_str(), r.status), ("HTTP/1.1", 200));
    assert_eq!(h.stub.seen()[0].version, Version::HTTP_11);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_starts_like_the_preface_is_http1_and_loses_no_byte() {
    let h = versions(HttpVersions::Auto);
    let mut client = h.connect();
    // "PRI " is the preface's start: the server reads it, waits for more, then decides.
    client.send(b"PRI ").await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    client.send(b"/x HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let r = client.response().await;
    assert_eq!((r.version.as_str(), r.status), ("HTTP/1.1", 200));
    let seen = h.stub.seen();
    assert_eq!(seen[0].method, Method::from_bytes(b"PRI").expect("a token"));
    assert_eq!(seen[0].uri, "/x");
}

#[tokio::test(start_paused = true)]
async fn auto_answers_the_preface_with_http2_settings() {
    let h = versions(HttpVersions::Auto);
    let mut client = h.connect();
    client.send(PREFACE).await;
    client.send(&EMPTY_SETTINGS).await;
    let frame = client.read_exact(9).await;
    assert_eq!(frame[3], 4, "a SETTINGS frame: {frame:?}");
}

#[tokio::test(start_paused = true)]
async fn http1_only_refuses_h2c() {
    let h = versions(HttpVersions::Http1);
    let mut client = h.connect();
    client.send(PREFACE).await;
    client.send(&EMPTY_SETTINGS).await;
    // hyper's HTTP/1.1 recognises the preface and closes without an answer.
    assert!(client.until_closed().await.is_empty());
    client.served.await.expect("the connection task ends");
    assert!(h.stub.seen().is_empty());
    assert!(
        client.info.refused.load(Ordering::Relaxed),
        "the close lingers"
    );
    let closed = h.log.lines(LogLevel::Debug);
    assert!(
        closed.iter().any(|l| l.contains("HTTP2 preface")),
        "{closed:?}"
    );
    // And hyper's HTTP/2 client gets nothing served either.
    let mut h2 = h.connect().http2().await;
    assert!(h2.get("/", &[]).await.is_err());
    assert!(h.stub.seen().is_empty());
}

#[tokio::test(start_paused = true)]
async fn http2_only_serves_h2c() {
    let h = versions(HttpVersions::Http2);
    let mut h2 = h.connect().http2().await;
    let (status, version, _) = h2.get("/", &[]).await.expect("served");
    assert_eq!((status, version), (StatusCode::OK, Version::HTTP_2));
}

#[tokio::test(start_paused = true)]
async fn a_drain_closes_idle_connections_and_lets_a_busy_one_finish() {
    let h = Harness::new(OK, |_| {});
    let mut idle = h.connect();
    assert_eq!(idle.request(GET).await.status, 200);
    h.stub.set_reply(Reply::Hold);
    let mut busy = h.connect();
    busy.send(GET).await;
    h.stub.wait_for(2).await;
    assert_eq!(h.registry().connections(), 2);

    h.drain();
    assert!(idle.until_closed().await.is_empty());
    answer(&h.stub.take(), StatusCode::OK, "finished");
    let r = busy.response().await;
    assert_eq!((r.status, r.text()), (200, "finished"));
    assert!(busy.until_closed().await.is_empty());
    for c in [idle, busy] {
        c.served.await.expect("the connection task ends");
    }
    assert_eq!(h.registry().connections(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_fresh_connection_gets_a_grace_for_its_first_request_on_a_drain() {
    let h = Harness::new(OK, |_| {});
    h.drain();
    let mut silent = h.connect();
    let start = Instant::now();
    assert!(silent.until_closed().await.is_empty());
    let waited = start.elapsed();
    assert!(
        waited >= FIRST_REQUEST_GRACE && waited < FIRST_REQUEST_GRACE * 2,
        "{waited:?}"
    );
    let mut prompt = h.connect();
    let r = prompt.request(GET).await;
    assert_eq!(r.status, 200, "a request that comes is served");
    assert!(prompt.until_closed().await.is_empty(), "and then it closes");
}

#[tokio::test(start_paused = true)]
async fn an_abort_drops_connections_and_the_app_sees_a_disconnect() {
    let h = Harness::new(Reply::Hold, |_| {});
    let mut client = h.connect();
    client.send(GET).await;
    h.stub.wait_for(1).await;
    h.registry().set_phase(Phase::Abort);
    assert!(client.until_closed().await.is_empty(), "no answer");
    client.served.await.expect("the connection task ends");
    assert!(h.stub.take().exchange.is_disconnected());
    assert!(!client.info.refused.load(Ordering::Relaxed));
}

/// The harness's keep-alive time (`test_harness::config`).
const KEEP_ALIVE: Duration = Duration::from_secs(5);

const GOAWAY: u8 = 0x7;

/// Reads the server's HTTP/2 frames until a GOAWAY: when it came.
async fn until_goaway(client: &mut crate::http::test_harness::Client) -> Instant {
    loop {
        let head = client.read_exact(9).await;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        client.read_exact(len).await;
        if head[3] == GOAWAY {
            return Instant::now();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_http2_connection_that_never_sends_a_request_gets_goaway_after_the_keep_alive() {
    use crate::http::builders::{H2_PING_INTERVAL, H2_PING_TIMEOUT};
    let h = versions(HttpVersions::Auto);
    let mut silent = h.connect();
    silent.send(PREFACE).await;
    silent.send(&EMPTY_SETTINGS).await;
    let start = Instant::now();
    let waited = until_goaway(&mut silent).await - start;
    assert!(
        waited >= KEEP_ALIVE && waited < KEEP_ALIVE + Duration::from_secs(1),
        "{waited:?}"
    );
    // A graceful GOAWAY waits for the PING that follows it to be answered: a client that
    // answers nothing is dropped when that PING times out.
    silent.until_closed().await;
    assert!(start.elapsed() <= H2_PING_INTERVAL + H2_PING_TIMEOUT + Duration::from_secs(1));
    silent.served.await.expect("the connection task ends");
    assert_eq!(h.registry().connections(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_http2_connection_idle_after_its_requests_closes_after_the_keep_alive() {
    let h = versions(HttpVersions::Http2);
    let mut h2 = h.connect().http2().await;
    h2.get("/", &[]).await.expect("served");
    tokio::time::sleep(KEEP_ALIVE - Duration::from_millis(100)).await;
    assert_eq!(
        h.registry().connections(),
        1,
        "not before the keep-alive time"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::yield_now().await;
    assert_eq!(h.registry().connections(), 0, "closed once idle for it");
    assert!(h2.send.is_closed() || h2.get("/", &[]).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn an_open_stream_keeps_an_http2_connection_open_past_the_keep_alive() {
    let h = Harness::new(Reply::Hold, |c| c.http = HttpVersions::Http2);
    let mut h2 = h.connect().http2().await;
    let stub = h.stub.clone();
    let held = tokio::spawn(async move {
        stub.wait_for(1).await;
        tokio::time::sleep(KEEP_ALIVE * 3).await;
        answer(&stub.take(), StatusCode::OK, "late");
    });
    let (status, _, body) = h2.get("/slow", &[]).await.expect("served");
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"late"[..]));
    held.await.expect("the stub's task");
    assert_eq!(
        h.registry().connections(),
        1,
        "served past the keep-alive time"
    );
    tokio::time::sleep(KEEP_ALIVE + Duration::from_millis(100)).await;
    tokio::task::yield_now().await;
    assert_eq!(h.registry().connections(), 0, "then idle, then closed");
}

#[tokio::test(start_paused = true)]
async fn an_http2_peer_that_answers_no_ping_is_dropped_with_its_stream() {
    use crate::http::builders::{H2_PING_INTERVAL, H2_PING_TIMEOUT};
    let h = Harness::new(Reply::Hold, |c| c.http = HttpVersions::Http2);
    let mut dead = h.connect();
    dead.send(PREFACE).await;
    dead.send(&EMPTY_SETTINGS).await;
    // HEADERS (END_STREAM | END_HEADERS) on stream 1: GET http / from the static table.
    dead.send(&[0, 0, 3, 1, 5, 0, 0, 0, 1, 0x82, 0x86, 0x84])
        .await;
    h.stub.wait_for(1).await;
    // The client reads nothing from here on: it answers no PING.
    tokio::time::sleep(H2_PING_INTERVAL + H2_PING_TIMEOUT + Duration::from_secs(2)).await;
    tokio::task::yield_now().await;
    assert_eq!(h.registry().connections(), 0, "dropped for its silence");
    assert!(h.stub.take().exchange.is_disconnected(), "and the app told");
}

/// `--timeout-write` in these tests.
const WRITE_LIMIT: Duration = Duration::from_secs(2);

/// A held request's streaming response with `chunks` chunks of 64 KiB queued: more than the
/// harness's pipe (1 MiB) holds.
fn stream_much(h: &Harness, chunks: usize) -> std::sync::Arc<crate::http::exchange::Exchange> {
    let request = h.stub.take();
    start_stream(&request, StatusCode::OK, "");
    for _ in 0..chunks {
        let sent = request
            .exchange
            .send_chunk(bytes::Bytes::from(vec![b'x'; 65536]), true)
            .expect("the exchange takes the chunk");
        if let Some(handover) = sent.handover {
            crate::bridge::Deliver::deliver(handover);
        }
    }
    request.exchange.clone()
}

#[tokio::test(start_paused = true)]
async fn a_client_that_takes_nothing_is_cut_off_after_the_write_timeout() {
    let h = Harness::new(Reply::Hold, |c| c.write_timeout = Some(WRITE_LIMIT));
    let mut client = h.connect();
    client.send(GET).await;
    h.stub.wait_for(1).await;
    let exchange = stream_much(&h, 48);
    let t0 = Instant::now();
    tokio::time::timeout(PATIENCE, &mut client.served)
        .await
        .expect("the connection is closed")
        .expect("the connection task ends");
    let waited = Instant::now() - t0;
    assert!(
        waited >= WRITE_LIMIT && waited < WRITE_LIMIT + Duration::from_secs(1),
        "{waited:?}"
    );
    assert!(
        exchange.is_disconnected(),
        "the app learns the client is gone"
    );
    assert!(exchange
        .send_chunk(bytes::Bytes::from_static(b"x"), true)
        .is_err());
    assert!(client.info.write_timed_out.load(Ordering::Relaxed));
    let logged = h.log.lines(LogLevel::Debug);
    assert!(
        logged.iter().any(|l| l.contains("--timeout-write")),
        "{logged:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_keeps_taking_bytes_however_slowly_is_served_to_the_end() {
    let h = Harness::new(Reply::Hold, |c| c.write_timeout = Some(WRITE_LIMIT));
    let mut client = h.connect();
    client.send(GET).await;
    h.stub.wait_for(1).await;
    let request_exchange = stream_much(&h, 48);
    let mut ended = false;
    let mut received = Vec::new();
    let read = async {
        let mut chunk = vec![0; 16384];
        // 16 KiB a second: the whole response takes minutes, the writes wait for a second
        // at a time.
        while !received.ends_with(b"0\r\n\r\n") {
            let n = tokio::io::AsyncReadExt::read(&mut client.io, &mut chunk)
                .await
                .expect("read");
            assert!(n > 0, "closed after {} bytes", received.len());
            received.extend_from_slice(&chunk[..n]);
            tokio::time::sleep(Duration::from_secs(1)).await;
            if !ended && request_exchange.has_room() {
                // The app ends its response once the queue has drained below its mark.
                let sent = request_exchange
                    .send_chunk(bytes::Bytes::new(), false)
                    .expect("the exchange takes the end");
                if let Some(handover) = sent.handover {
                    crate::bridge::Deliver::deliver(handover);
                }
                request_exchange.finish();
                ended = true;
            }
        }
    };
    tokio::time::timeout(PATIENCE * 10, read)
        .await
        .expect("the response ends");
    assert!(received.len() > 48 * 65536);
    assert!(!request_exchange.is_disconnected());
    assert!(!client.info.write_timed_out.load(Ordering::Relaxed));
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_idles_after_a_blocked_write_is_not_cut_off() {
    let h = Harness::new(Reply::Hold, |c| c.write_timeout = Some(WRITE_LIMIT));
    let mut client = h.connect();
    client.send(GET).await;
    h.stub.wait_for(1).await;
    let exchange = stream_much(&h, 24);
    // The writes block, then the client takes everything; the response is left open.
    tokio::time::sleep(WRITE_LIMIT / 2).await;
    client.read_exact(24 * 65536).await;
    tokio::time::sleep(WRITE_LIMIT * 10).await;
    assert!(
        !exchange.is_disconnected(),
        "waiting on the app is no stall"
    );
    assert!(!client.served.is_finished());
}
