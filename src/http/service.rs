//! One request, from hyper's point of view: hand it to the loop, wait for the head.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::body::{plain_response, ResponseBody};
use super::exchange::{DisconnectGuard, Exchange};
use super::{upgrade, Http, NewRequest};
use crate::server::ConnInfo;

pub(super) fn unavailable(http: &Http) -> Response<ResponseBody> {
    let mut r = plain_response(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    add_default_headers(r.headers_mut(), http);
    r
}

/// How long a client refused for the loop's lag is asked to wait: the lag itself comes and
/// goes within a tenth of a second, so the shortest the header can say.
const RETRY_AFTER_LAG: &str = "1";

/// The event loop is too far behind (`--max-loop-lag`): this request would only queue.
fn lagging(http: &Http) -> Response<ResponseBody> {
    let mut r = unavailable(http);
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_LAG),
    );
    r
}

pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    http: Arc<Http>,
) -> Result<Response<ResponseBody>, Infallible> {
    if let Some(limit) = http.config.limit_concurrency {
        if http.inflight.load(Ordering::Relaxed) >= limit {
            return Ok(unavailable(&http));
        }
    }
    if let Some(files) = &http.config.static_files {
        if let Some(rest) = files.strip(req.uri().path()) {
            let mut response = files.serve(req.method(), rest, req.headers()).await;
            add_default_headers(response.headers_mut(), &http);
            return Ok(response);
        }
    }
    if let Some(bound) = http.config.max_loop_lag {
        if http.lag.exceeds(bound) {
            return Ok(lagging(&http));
        }
    }
    if upgrade::wants_websocket(&req, &http) {
        let mut response = upgrade::handle(req, conn, http.clone()).await;
        add_default_headers(response.headers_mut(), &http);
        return Ok(response);
    }
    let (parts, body) = req.into_parts();
    let (tx, rx) = oneshot::channel();
    let exchange = Exchange::new(&http.inflight, tx, parts.method == Method::HEAD);
    let mut guard = DisconnectGuard(Some(exchange.clone()));

    if body.is_end_stream() {
        exchange.finish_body();
    } else if is_small(&parts.headers) {
        // A small body is read before the app starts, so its first receive() never waits.
        if read_inline(&exchange, body).await.is_err() {
            return Ok(plain_response(StatusCode::BAD_REQUEST, "Bad Request"));
        }
    } else {
        // The interim 100 Continue goes out when the body is first polled, so an app that
        // answers without reading the body never asks the client to send it.
        let lazy = expects_continue(&parts.headers);
        tokio::spawn(pump_body(exchange.clone(), body, lazy));
    }

    let request = NewRequest {
        exchange: exchange.clone(),
        parts,
        conn,
        websocket: None,
    };
    if http.dispatch.dispatch(request).is_err() {
        // The app side is full: refuse this one instead of queueing without bound.
        guard.0 = None;
        exchange.disconnect();
        return Ok(unavailable(&http));
    }
    http.registry.count_request();

    let mut response = match rx.await {
        Ok(r) => r,
        // The app side let go of the exchange without answering: on abort, or when a WSGI
        // thread gave up on a client that kept it waiting before anything was sent.
        Err(_) => plain_response(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
    };
    guard.0 = None;
    add_default_headers(response.headers_mut(), &http);
    Ok(response)
}

fn add_default_headers(headers: &mut HeaderMap, http: &Http) {
    for (name, value) in &http.config.default_headers {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
}

fn is_small(headers: &HeaderMap) -> bool {
    if expects_continue(headers) {
        return false;
    }
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= 64 * 1024)
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

async fn read_inline(exchange: &Exchange, mut body: Incoming) -> Result<(), hyper::Error> {
    let mut buf: Option<Bytes> = None;
    while let Some(frame) = http_body_util_frame(&mut body).await {
        if let Ok(data) = frame?.into_data() {
            buf = Some(match buf.take() {
                None => data,
                Some(prev) => [prev, data].concat().into(),
            });
        }
    }
    if let Some(data) = buf {
        exchange.push_body(data);
    }
    exchange.finish_body();
    Ok(())
}

/// Streams the request body into the exchange, pausing while the app is HIGH_WATER behind.
async fn pump_body(exchange: Arc<Exchange>, mut body: Incoming, lazy: bool) {
    if lazy {
        exchange.demand.notified().await;
    }
    loop {
        match exchange.body_paused() {
            None => return,
            Some(true) => {
                exchange.demand.notified().await;
                continue;
            }
            Some(false) => {}
        }
        let frame = tokio::select! {
            f = http_body_util_frame(&mut body) => f,
            // Wakes on response completion or disconnect too, so a stalled upload is dropped.
            _ = exchange.demand.notified() => continue,
        };
        match frame {
            None => {
                exchange.finish_body();
                return;
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if !exchange.push_body(data) {
                        return;
                    }
                }
            }
            Some(Err(_)) => {
                exchange.body_failed();
                return;
            }
        }
    }
}

/// The next frame of a body, as a future (what `http_body_util::BodyExt::frame` does).
fn http_body_util_frame(
    body: &mut Incoming,
) -> impl std::future::Future<Output = Option<Result<http_body::Frame<Bytes>, hyper::Error>>> + '_ {
    std::future::poll_fn(move |cx| std::pin::Pin::new(&mut *body).poll_frame(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
