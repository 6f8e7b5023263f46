//! One request, from hyper's point of view: hand it to the loop, wait for the head.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::body::{plain_response, ResponseBody, Tracked};
use super::exchange::{DisconnectGuard, Exchange};
use super::head_timer::{HeadClock, ResponseDone};
use super::measure::Measure;
use super::write_timer::WriteWatch;
use super::{forwarded, limits, timeout, upgrade, Head, Http, NewRequest, OwnAnswer};
use crate::transport::ConnInfo;

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

/// The clocks of a request's connection, when it has them.
pub struct ConnClocks {
    /// The head clock (HTTP/1.1 with `--timeout-request-head`), or the idle clock (HTTP/2).
    pub head: Option<Arc<HeadClock>>,
    /// `--timeout-write`, which a WebSocket's own task watches once it is upgraded.
    pub write: Option<WriteWatch>,
}

/// One request. `proxied` says whether the connection's peer is trusted with proxy headers
/// (decided once per connection).
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    http: Arc<Http>,
    proxied: bool,
    clocks: ConnClocks,
) -> Result<Response<ResponseBody>, Infallible> {
    // The head clock and the metrics learn that this request is over when hyper drops the
    // response body (or this future, if the client leaves first).
    let done = clocks.head.map(|clock| {
        clock.request_began();
        ResponseDone(clock)
    });
    let mut measure = http.metrics.as_ref().map(Measure::begin);
    let response = respond(req, conn, http, proxied, clocks.write).await;
    if done.is_none() && measure.is_none() {
        return Ok(response);
    }
    if let Some(m) = &mut measure {
        m.answered(response.status().as_u16());
    }
    Ok(response.map(|body| {
        ResponseBody::Tracked(Box::new(Tracked {
            body,
            done,
            measure,
        }))
    }))
}

/// The answers the server gives itself come first, in this order, each behind an `Option`
/// that is `None` when its option is off: the health path (so a probe is answered even when
/// the worker is full), `--limit-concurrency`, the head limits (413/414/431), static files,
/// and the loop's lag (`--max-loop-lag`); only then the proxy headers are read and the
/// request goes to a WebSocket upgrade or to the interface. This comment is the one place
/// the order is written down.
async fn respond(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    http: Arc<Http>,
    proxied: bool,
    write: Option<WriteWatch>,
) -> Response<ResponseBody> {
    if let Some(path) = &http.config.health_path {
        if req.uri().path() == path {
            return own(&http, &req, &conn, proxied, health(&http));
        }
    }
    if let Some(limit) = http.config.limit_concurrency {
        if http.inflight.load(Ordering::Relaxed) >= limit {
            return own(&http, &req, &conn, proxied, unavailable(&http));
        }
    }
    let limits = &http.config.limits;
    if limits.checks_head() || limits.body.is_some() {
        if let Some(status) = limits::refusal(&req, limits) {
            // The client may still be sending the body: the close lingers.
            conn.refused.store(true, Ordering::Relaxed);
            let mut r = plain_response(status, status.canonical_reason().unwrap_or(""));
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            add_default_headers(r.headers_mut(), &http);
            return own(&http, &req, &conn, proxied, r);
        }
    }
    if let Some(files) = &http.config.static_files {
        if let Some(rest) = files.strip(req.uri().path()) {
            let mut response = files.serve(req.method(), rest, req.headers()).await;
            add_default_headers(response.headers_mut(), &http);
            return own(&http, &req, &conn, proxied, response);
        }
    }
    if let Some(bound) = http.config.max_loop_lag {
        if http.lag.exceeds(bound) {
            return own(&http, &req, &conn, proxied, lagging(&http));
        }
    }
    let forwarded = forwarded_for(&http, req.headers(), &conn, proxied);
    if upgrade::wants_websocket(&req, &http) {
        let mut response = upgrade::handle(req, conn, http.clone(), forwarded, write).await;
        add_default_headers(response.headers_mut(), &http);
        return response;
    }
    let (parts, body) = req.into_parts();
    let (tx, rx) = oneshot::channel();
    // HTTP/2: a stream's window can be shut with the socket free; its waits are timed too.
    let stall_clock = match (&write, parts.version) {
        (Some(w), Version::HTTP_2) => Some(w.clock.clone()),
        _ => None,
    };
    let exchange = Exchange::with_stall_clock(
        &http.inflight,
        tx,
        parts.method == Method::HEAD,
        stall_clock,
    );
    let mut guard = DisconnectGuard(Some(exchange.clone()));

    if body.is_end_stream() {
        exchange.finish_body();
    } else if is_small(&parts.headers) {
        // A small body is read before the app starts, so its first receive() never waits.
        // Its Content-Length was checked against --limit-request-body above.
        if read_inline(&exchange, body).await.is_err() {
            return plain_response(StatusCode::BAD_REQUEST, "Bad Request");
        }
    } else {
        // The interim 100 Continue goes out when the body is first polled, so an app that
        // answers without reading the body never asks the client to send it.
        let lazy = expects_continue(&parts.headers);
        let pump = Pump {
            exchange: exchange.clone(),
            limit: limits.body,
            conn: conn.clone(),
        };
        tokio::spawn(pump_body(pump, body, lazy));
    }

    // Only when the timeout is on: what its log line names.
    let timed = http
        .config
        .request_timeout
        .map(|t| (t, format!("{} {}", parts.method, parts.uri.path())));
    let request = NewRequest {
        exchange: exchange.clone(),
        parts,
        conn,
        websocket: None,
        forwarded,
    };
    if let Err(request) = http.dispatch.dispatch(request) {
        // The app side is full: refuse this one instead of queueing without bound.
        guard.0 = None;
        exchange.disconnect();
        let head = Head::of_parts(&request.parts);
        let forwarded = request.forwarded.as_deref();
        return tell(&http, head, &request.conn, forwarded, unavailable(&http));
    }
    http.registry.count_request();

    let answered = match timed {
        None => rx.await,
        // Boxed: its timer would otherwise make every request's future larger.
        Some((limit, what)) => Box::pin(timeout::wait(rx, limit, &exchange, &http, &what)).await,
    };
    let mut response = match answered {
        Ok(r) => r,
        // The app side let go of the exchange without answering: on abort, or when a WSGI
        // thread gave up on a client that kept it waiting before anything was sent.
        Err(_) => plain_response(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
    };
    guard.0 = None;
    add_default_headers(response.headers_mut(), &http);
    response
}

/// What a trusted proxy said about this request's client (`--proxy-headers`), if the
/// connection's peer is one.
fn forwarded_for(
    http: &Http,
    headers: &HeaderMap,
    conn: &ConnInfo,
    proxied: bool,
) -> Option<Box<forwarded::Forwarded>> {
    match &http.config.proxy {
        Some(trusted) if proxied => {
            forwarded::resolve(headers, trusted, conn.secure.load(Ordering::Relaxed))
        }
        _ => None,
    }
}

/// An answer given here, without the app: the interface hears of it for its access log.
fn own(
    http: &Http,
    req: &Request<Incoming>,
    conn: &ConnInfo,
    proxied: bool,
    response: Response<ResponseBody>,
) -> Response<ResponseBody> {
    if !http.config.access_log {
        return response;
    }
    let forwarded = forwarded_for(http, req.headers(), conn, proxied);
    tell(http, Head::of(req), conn, forwarded.as_deref(), response)
}

pub(super) fn tell(
    http: &Http,
    head: Head<'_>,
    conn: &ConnInfo,
    forwarded: Option<&forwarded::Forwarded>,
    response: Response<ResponseBody>,
) -> Response<ResponseBody> {
    if http.config.access_log {
        http.dispatch.answered_here(OwnAnswer {
            head,
            conn,
            forwarded,
            status: response.status(),
            bytes: response.body().size_hint().exact().unwrap_or(0),
        });
    }
    response
}

/// `--health-path`: 200 while the worker serves, 503 once it drains, so that a load
/// balancer takes it out of rotation before it goes.
fn health(http: &Http) -> Response<ResponseBody> {
    let mut r = if http.registry.unhealthy() {
        plain_response(StatusCode::SERVICE_UNAVAILABLE, "Shutting down")
    } else {
        plain_response(StatusCode::OK, "OK")
    };
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    add_default_headers(r.headers_mut(), http);
    r
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

/// What the body pump feeds, and the most it may feed (`--limit-request-body`).
struct Pump {
    exchange: Arc<Exchange>,
    limit: Option<u64>,
    conn: Arc<ConnInfo>,
}

/// Streams the request body into the exchange, pausing while the app is HIGH_WATER behind.
async fn pump_body(pump: Pump, mut body: Incoming, lazy: bool) {
    let Pump {
        exchange,
        limit,
        conn,
    } = pump;
    let mut received: u64 = 0;
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
                    received += data.len() as u64;
                    if limit.is_some_and(|l| received > l) {
                        // A body without a Content-Length (chunked, or HTTP/2) grew past the
                        // limit: the app sees a disconnect, the client a 413 if nothing was
                        // sent yet, and the connection closes (lingering: the client is
                        // probably still sending).
                        conn.refused.store(true, Ordering::Relaxed);
                        if exchange.answer_instead(limits::too_large()).is_err() {
                            // The app's response had begun: it is cut instead.
                            exchange.disconnect();
                        }
                        return;
                    }
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
mod tests;
