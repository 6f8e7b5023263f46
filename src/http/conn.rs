//! One connection served by hyper (HTTP/1.1, HTTP/2 by prior knowledge or ALPN, or both on one
//! port, as `--http` says), with graceful drain and hard abort.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{watch, Notify};

use super::{service, Http};
use crate::config::{CoreConfig, HttpVersions};
use crate::server::{ConnInfo, Io, LogLevel, Phase, ServeConnection, Token};

/// On a drain, how long a connection accepted but still without a request may wait for its
/// first one. Closing it at once would lose a request the client has already sent (a fresh
/// connection is never idle from the client's point of view); this bounds how long a
/// connection opened ahead of time (a browser's preconnect) delays the drain.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// HTTP for the transport's accept loop.
pub struct HttpProtocol {
    http: Arc<Http>,
    builder: auto::Builder<TokioExecutor>,
}

impl HttpProtocol {
    pub fn new(http: Arc<Http>) -> Self {
        let builder = builder(&http.config);
        Self { http, builder }
    }
}

fn builder(cfg: &CoreConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b = match cfg.http {
        HttpVersions::Auto => b,
        HttpVersions::Http1 => b.http1_only(),
        HttpVersions::Http2 => b.http2_only(),
    };
    let mut h1 = b.http1();
    // hyper answers 431 to a request head that does not fit the read buffer.
    h1.timer(TokioTimer::new())
        .max_buf_size(cfg.max_header_size.max(8192))
        .auto_date_header(cfg.date_header);
    // Not `pipeline_flush`: with it hyper buffers a streaming body without bound when the
    // client reads slowly (its write buffer then always reports room), defeating backpressure.
    match cfg.keep_alive_timeout {
        // hyper's header-read timer starts as soon as a connection waits for a request head,
        // so it bounds idle keep-alive connections and slow headers alike.
        Some(t) => h1.keep_alive(true).header_read_timeout(t),
        None => h1
            .keep_alive(false)
            .header_read_timeout(Duration::from_secs(5)),
    };
    let mut h2 = b.http2();
    h2.timer(TokioTimer::new())
        .auto_date_header(cfg.date_header)
        // The defences against the known HTTP/2 floods: a bound on streams at once, on the
        // header block (CONTINUATION floods), and on streams the client opens and resets
        // before they are served (rapid reset, CVE-2023-44487). h2 bounds the control
        // frames (SETTINGS, PING) it queues on its own.
        .max_concurrent_streams(cfg.h2.max_concurrent_streams)
        .max_header_list_size(u32::try_from(cfg.max_header_size).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(cfg.h2.max_reset_streams)
        .max_local_error_reset_streams(cfg.h2.max_reset_streams.saturating_mul(50));
    b
}

impl ServeConnection for HttpProtocol {
    async fn serve<I: Io>(
        self: Arc<Self>,
        io: I,
        info: Arc<ConnInfo>,
        mut phase: watch::Receiver<Phase>,
        token: Token,
    ) {
        let _token = token;
        let http = self.http.clone();
        let first = Arc::new(FirstRequest::default());
        let seen = first.clone();
        let conn_info = info.clone();
        let svc = service_fn(move |req| {
            seen.mark();
            service::handle(req, info.clone(), http.clone())
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let mut draining = false;
        // Draining, and waiting for a fresh connection's first request before closing.
        let mut awaiting_first = false;
        let mut grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            match *phase.borrow_and_update() {
                Phase::Abort => return,
                Phase::Draining if !draining => {
                    draining = true;
                    if first.began.load(Ordering::Acquire) {
                        conn.as_mut().graceful_shutdown();
                    } else {
                        awaiting_first = true;
                        grace = Some(Box::pin(tokio::time::sleep(FIRST_REQUEST_GRACE)));
                    }
                }
                _ => {}
            }
            // Biased: the connection is polled first and no random number is drawn per
            // wake-up.
            tokio::select! {
                biased;
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        // hyper refused a request (and answered it where it could): the
                        // client may still be sending, so the close lingers.
                        conn_info
                            .refused
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        // Clients that vanish or send garbage are routine (hyper already
                        // answered 400/431 where it could): only worth a debug line.
                        self.http
                            .registry
                            .report()
                            .log(LogLevel::Debug, format!("connection closed: {e}"));
                    }
                    return;
                }
                changed = phase.changed() => if changed.is_err() { return },
                // The first request began (hyper finishes it, then closes), or never came.
                _ = first.began_notify.notified(), if awaiting_first => {
                    awaiting_first = false;
                    conn.as_mut().graceful_shutdown();
                }
                _ = async {
                    match grace.as_mut() {
                        Some(g) => g.await,
                        None => std::future::pending().await,
                    }
                }, if awaiting_first => {
                    awaiting_first = false;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Whether a connection has begun serving a request yet.
#[derive(Default)]
struct FirstRequest {
    began: AtomicBool,
    began_notify: Notify,
}

impl FirstRequest {
    fn mark(&self) {
        if !self.began.load(Ordering::Relaxed) {
            self.began.store(true, Ordering::Release);
            self.began_notify.notify_one();
        }
    }
}
