//! A WebSocket opening handshake served through hyper: the app is asked first (it sees a
//! `websocket` scope), then the connection either switches protocols and is handed to the
//! framing task in `ws/`, or answers with a plain HTTP response (a denial, 403 or 500),
//! which goes through an ordinary [`Exchange`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::header::{
    HeaderName, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::body::{plain_response, ResponseBody};
use super::exchange::Exchange;
use super::write_timer::{self, WriteWatch};
use super::{service, Head, Http, NewRequest};
use crate::config::WsConfig;
use crate::transport::{ConnInfo, LogLevel, Phase};
use crate::ws::deflate;
use crate::ws::handshake::{self, Refusal};
use crate::ws::watch::Watched;
use crate::ws::{close_code, socket, Accept, Session};

/// Whether this request is a WebSocket handshake that `http` serves as one.
pub fn wants_websocket(req: &Request<Incoming>, http: &Http) -> bool {
    http.config.ws.is_some() && handshake::is_upgrade(req.method(), req.version(), req.headers())
}

pub async fn handle(
    mut req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    http: Arc<Http>,
    forwarded: Option<Box<super::forwarded::Forwarded>>,
    write: Option<WriteWatch>,
) -> Response<ResponseBody> {
    let Some(config) = http.config.ws.clone() else {
        return plain_response(StatusCode::BAD_REQUEST, "Bad Request");
    };
    if let Err(refusal) = handshake::check(req.headers()) {
        return refused(refusal);
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _body) = req.into_parts();
    // What the 101 is computed from (the key, the offered extensions).
    let handshake_headers = parts.headers.clone();

    let (tx, responded) = oneshot::channel();
    let exchange = Exchange::new(&http.inflight, tx, false);
    exchange.finish_body();
    let (session, accepted) = Session::new(config.max_queue);
    let guard = Abandon(Some((exchange.clone(), session.clone())));
    // The connection marks its access line should the upgraded socket's writes time out.
    let write = write.map(|w| (w, conn.clone()));
    let request = NewRequest {
        exchange: exchange.clone(),
        parts,
        conn,
        websocket: Some(session.clone()),
        forwarded,
    };
    if let Err(request) = http.dispatch.dispatch(request) {
        // The app side is full: refused, and logged like every answer given without the app.
        let head = Head::of_parts(&request.parts);
        let forwarded = request.forwarded.as_deref();
        return service::tell(
            &http,
            head,
            &request.conn,
            forwarded,
            service::unavailable(&http),
        );
    }
    http.registry.count_request();

    // The app answers with `websocket.accept`, or with an HTTP response through the exchange
    // (its own denial, the 403 of a close before accepting, or a 500 when it fails).
    let mut responded = responded;
    let answer = tokio::select! {
        // An app quick to accept, send, close and return has also had its exchange settled
        // (with a 500 nobody should see) by the time this runs: the acceptance comes first.
        biased;
        a = accepted => a.ok(),
        r = &mut responded => {
            drop(guard.defuse());
            return r.unwrap_or_else(|_| service::unavailable(&http));
        }
    };
    let Some(accept) = answer else {
        // The app answers over HTTP instead, or gave up on the handshake: that answer (or
        // a 500 from the failure) comes through the exchange.
        let response = responded.await;
        drop(guard.defuse());
        return response.unwrap_or_else(|_| service::unavailable(&http));
    };
    drop(guard.defuse());
    match switch(&handshake_headers, accept, &config) {
        Ok((response, agreed)) => {
            let http2 = http.clone();
            let token = http.registry.connection();
            let mut phase = http.registry.subscribe();
            tokio::spawn(async move {
                let _token = token;
                let upgraded = match on_upgrade.await {
                    Ok(upgraded) => upgraded,
                    Err(e) => {
                        session.end(close_code::ABNORMAL, "");
                        http2
                            .registry
                            .report()
                            .log(LogLevel::Debug, format!("websocket upgrade failed: {e}"));
                        return;
                    }
                };
                let (io, verdict) = Watched::new(TokioIo::new(upgraded));
                let terms = agreed.as_ref().map(deflate::Agreed::header);
                let ws = match yawc::WebSocket::from_stream_with_extensions(
                    io,
                    yawc::Role::Server,
                    terms.as_deref(),
                    framing_options(&config),
                ) {
                    Ok(ws) => ws.into_streaming(),
                    Err(e) => {
                        // Only when deflate was agreed without being enabled, which
                        // `switch` does not do.
                        session.end(close_code::INTERNAL_ERROR, "");
                        http2
                            .registry
                            .report()
                            .log(LogLevel::Warning, format!("websocket framing: {e}"));
                        return;
                    }
                };
                let shutdown = async move {
                    while *phase.borrow_and_update() != Phase::Abort {
                        if phase.changed().await.is_err() {
                            break;
                        }
                    }
                };
                let Some((write, conn)) = write else {
                    socket::serve(ws, verdict, session, &config, shutdown).await;
                    return;
                };
                let served = socket::serve(ws, verdict, session.clone(), &config, shutdown);
                if write_timer::within(&write, served).await.is_err() {
                    // The socket is dropped with the task: no close frame could go out anyway.
                    session.end(close_code::ABNORMAL, "write timed out");
                    conn.write_timed_out.store(true, Ordering::Relaxed);
                    http2.registry.report().log(
                        LogLevel::Debug,
                        "websocket closed: the client took nothing for --timeout-write".into(),
                    );
                }
            });
            response
        }
        Err(response) => {
            session.end(close_code::ABNORMAL, "");
            *response
        }
    }
}

/// The 101 response, and the permessage-deflate terms agreed in it.
type Switched = (Response<ResponseBody>, Option<deflate::Agreed>);

/// The 101 response, and the permessage-deflate terms agreed, if any. The error is the
/// response that refuses the handshake instead.
fn switch(
    headers: &http::HeaderMap,
    accept: Accept,
    config: &WsConfig,
) -> Result<Switched, Box<Response<ResponseBody>>> {
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .ok_or_else(|| Box::new(plain_response(StatusCode::BAD_REQUEST, "Bad Request")))?;
    let agreed = if config.per_message_deflate {
        deflate::agree(headers)
    } else {
        None
    };
    let mut response = Response::new(ResponseBody::full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(UPGRADE, HeaderValue::from_static("websocket"));
    let accept_key = HeaderValue::from_str(&handshake::accept_key(key.as_bytes()))
        .map_err(|_| Box::new(plain_response(StatusCode::BAD_REQUEST, "Bad Request")))?;
    out.insert(SEC_WEBSOCKET_ACCEPT, accept_key);
    if let Some(terms) = &agreed {
        let value = HeaderValue::from_str(&terms.header()).map_err(|_| {
            plain_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        })?;
        out.insert(SEC_WEBSOCKET_EXTENSIONS, value);
    }
    if let Some(p) = accept.subprotocol {
        let value = HeaderValue::from_str(&p).map_err(|_| {
            plain_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        })?;
        out.insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
    for (name, value) in &accept.headers {
        if !is_handshake_header(name) {
            out.append(name.clone(), value.clone());
        }
    }
    Ok((response, agreed))
}

/// The read and write buffers yawc starts each socket with (its default is 8 KiB each). Most
/// WebSockets idle, and most messages are small: thousands of held sockets should not each
/// keep 16 KiB of buffers. A larger message grows a buffer for as long as it takes, and yawc
/// gives the memory back once it is through.
const SOCKET_BUFFER: usize = 1024;

/// How yawc frames the socket: our limits, and deflate when it may be agreed.
fn framing_options(config: &WsConfig) -> yawc::Options {
    // yawc refuses a frame of exactly its limit; the reassembly enforces ours, inclusive.
    let frame_limit = config.max_size.saturating_add(1);
    let mut options = yawc::Options::default()
        .with_limits(frame_limit, frame_limit)
        .with_read_buffer_capacity(SOCKET_BUFFER)
        .with_write_buffer_capacity(SOCKET_BUFFER)
        .without_compression();
    if config.per_message_deflate {
        let mut deflate = yawc::DeflateOptions::low_latency();
        // Deflating a few bytes costs more than it saves, and often makes them longer.
        deflate.compression_threshold = 128;
        // No context is kept (see `ws::deflate::accept_offer`): state between messages
        // waits in the worker's pool instead of in every socket.
        deflate.pool = Some(deflate::pool());
        options.compression = Some(deflate);
    }
    options
}

/// Headers the handshake itself decides, which the app's extra headers may not replace.
fn is_handshake_header(name: &HeaderName) -> bool {
    [
        CONNECTION,
        UPGRADE,
        SEC_WEBSOCKET_ACCEPT,
        SEC_WEBSOCKET_EXTENSIONS,
    ]
    .contains(name)
}

fn refused(refusal: Refusal) -> Response<ResponseBody> {
    match refusal {
        Refusal::Version => {
            let mut r = plain_response(StatusCode::UPGRADE_REQUIRED, "Upgrade Required");
            r.headers_mut()
                .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            r
        }
        Refusal::MissingKey => plain_response(StatusCode::BAD_REQUEST, "Bad Request"),
    }
}

/// Tells the app the client left when hyper drops the handshake before it was answered.
struct Abandon(Option<(Arc<Exchange>, Arc<Session>)>);

impl Abandon {
    fn defuse(mut self) -> Self {
        self.0 = None;
        self
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some((exchange, session)) = self.0.take() {
            session.end(close_code::ABNORMAL, "");
            exchange.disconnect();
        }
    }
}

#[cfg(test)]
mod tests;
