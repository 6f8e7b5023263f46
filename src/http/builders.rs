//! hyper's HTTP/1.1 and HTTP/2 connection builders, configured from the options.

use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{CoreConfig, DEFAULT_MAX_FIELDS};

/// How often a quiet HTTP/2 connection is pinged, and how long its peer has to answer: the
/// defaults of `--ws-ping-interval` and `--ws-ping-timeout`, for the same job.
pub const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
pub const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Builders {
    pub h1: http1::Builder,
    pub h2: http2::Builder<TokioExecutor>,
}

impl Builders {
    pub fn new(cfg: &CoreConfig) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .max_header_size(cfg.max_header_size)
            .auto_date_header(cfg.date_header);
        // Only when it differs from hyper's default: setting it at all moves hyper's header
        // array from the stack to a fresh allocation per request.
        if let Some(n) = cfg.limits.fields.filter(|n| *n != DEFAULT_MAX_FIELDS) {
            h1.max_headers(n);
        }
        // Not `pipeline_flush`: with it hyper buffers a streaming body without bound when
        // the client reads slowly (its write buffer then always reports room), defeating
        // backpressure.
        match cfg.timeout_keep_alive {
            // hyper's header-read timer starts as soon as a connection waits for a request
            // head, so it bounds idle keep-alive connections and slow headers alike;
            // `--timeout-request-head` bounds a head from its first byte (`head_timer`).
            Some(t) => h1.keep_alive(true).header_read_timeout(t),
            None => h1
                .keep_alive(false)
                .header_read_timeout(Duration::from_secs(5)),
        };
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        // The defences against the known floods: a bound on streams at once, on the header
        // block (CONTINUATION floods), and on streams the client opens and resets before
        // they are served (rapid reset, CVE-2023-44487). h2 bounds the rest on its own: it
        // stops reading while a SETTINGS or PING answer waits to be written, and ends the
        // connection after 100 empty DATA frames. tests/e2e/test_h2_floods.py floods each.
        h2.timer(TokioTimer::new())
            .auto_date_header(cfg.date_header)
            .max_concurrent_streams(cfg.h2.max_concurrent_streams)
            .max_header_list_size(u32::try_from(cfg.max_header_size).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(cfg.h2.max_reset_streams)
            .max_local_error_reset_streams(cfg.h2.max_reset_streams.saturating_mul(50))
            // A peer gone without a word (a dropped NAT entry, a crashed client) is found by
            // a PING unanswered: a connection with a long stream open would otherwise be held
            // forever. One small frame per interval on a quiet connection.
            .keep_alive_interval(Some(H2_PING_INTERVAL))
            .keep_alive_timeout(H2_PING_TIMEOUT);
        Self { h1, h2 }
    }
}
