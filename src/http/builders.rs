//! hyper's connection builders, configured from the options: one per `--http` choice, since
//! hyper-util's auto builder ignores "only HTTP/1" or "only HTTP/2" once upgrades (WebSockets)
//! are on.

use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use crate::config::CoreConfig;

pub struct Builders {
    pub h1: http1::Builder,
    pub h2: http2::Builder<TokioExecutor>,
    pub auto: auto::Builder<TokioExecutor>,
}

/// The HTTP/1.1 settings, for hyper's builder and the auto builder's (same methods, two
/// types).
macro_rules! configure_http1 {
    ($b:expr, $cfg:expr) => {{
        let b = $b;
        b.timer(TokioTimer::new())
            .auto_date_header($cfg.date_header);
        // Not `pipeline_flush`: with it hyper buffers a streaming body without bound when
        // the client reads slowly (its write buffer then always reports room), defeating
        // backpressure.
        match $cfg.keep_alive_timeout {
            // hyper's header-read timer starts as soon as a connection waits for a request
            // head, so it bounds idle keep-alive connections and slow headers alike.
            Some(t) => b.keep_alive(true).header_read_timeout(t),
            None => b
                .keep_alive(false)
                .header_read_timeout(Duration::from_secs(5)),
        };
    }};
}

/// The HTTP/2 settings: the defences against the known floods are a bound on streams at
/// once, on the header block (CONTINUATION floods), and on streams the client opens and
/// resets before they are served (rapid reset, CVE-2023-44487). h2 bounds the control frames
/// (SETTINGS, PING) it queues on its own.
macro_rules! configure_http2 {
    ($b:expr, $cfg:expr) => {{
        $b.timer(TokioTimer::new())
            .auto_date_header($cfg.date_header)
            .max_concurrent_streams($cfg.h2.max_concurrent_streams)
            .max_header_list_size(u32::try_from($cfg.max_header_size).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams($cfg.h2.max_reset_streams)
            .max_local_error_reset_streams($cfg.h2.max_reset_streams.saturating_mul(50));
    }};
}

impl Builders {
    pub fn new(cfg: &CoreConfig) -> Self {
        let mut h1 = http1::Builder::new();
        configure_http1!(&mut h1, cfg);
        h1.max_header_size(cfg.max_header_size);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        configure_http2!(&mut h2, cfg);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        configure_http1!(&mut auto.http1(), cfg);
        // The auto builder has no head-size limit of its own; hyper answers 431 to a head
        // that does not fit the read buffer.
        auto.http1().max_buf_size(cfg.max_header_size.max(8192));
        configure_http2!(auto.http2(), cfg);
        Self { h1, h2, auto }
    }
}
