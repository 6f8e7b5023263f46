//! The options the core reads, in the groups `python/juggler/config.py` declares them in
//! and under the same names: `CoreConfig(config)` extracts each group from the Python
//! `Config` by attribute (`config.limits.limit_request_body`), so an option is declared once,
//! in Python, and read here without being listed again in a constructor's signature.
//!
//! Python has checked each value's type and range; what only the core can check (a header
//! name hyper accepts, a log format, a directory) is checked when `CoreConfig` is built.

use std::time::Duration;

use pyo3::prelude::*;

use crate::error::Error;

/// Everything `CoreConfig` is built from, group by group.
#[derive(FromPyObject, Clone, Debug)]
pub struct CoreOptions {
    #[pyo3(attribute)]
    pub limits: Limits,
    #[pyo3(attribute)]
    pub timeouts: Timeouts,
    #[pyo3(attribute)]
    pub http2: Http2,
    #[pyo3(attribute)]
    pub websocket: WebSocket,
    #[pyo3(attribute)]
    pub access: Access,
    #[pyo3(attribute)]
    pub responses: Responses,
    #[pyo3(attribute)]
    pub proxy: Proxy,
}

/// Bounds on requests and on the work in flight; 0 is "no limit" where the flag says so.
#[derive(FromPyObject, Clone, Debug)]
pub struct Limits {
    #[pyo3(attribute)]
    pub limit_concurrency: Option<usize>,
    #[pyo3(attribute)]
    pub max_header_size: usize,
    #[pyo3(attribute)]
    pub limit_request_body: u64,
    #[pyo3(attribute)]
    pub limit_request_line: usize,
    #[pyo3(attribute)]
    pub limit_request_fields: usize,
    #[pyo3(attribute)]
    pub limit_request_field_size: usize,
    /// Milliseconds.
    #[pyo3(attribute)]
    pub max_loop_lag: Option<f64>,
}

/// Seconds; 0 turns each off.
#[derive(FromPyObject, Clone, Debug)]
pub struct Timeouts {
    #[pyo3(attribute)]
    pub timeout_keep_alive: f64,
    #[pyo3(attribute)]
    pub timeout_request_head: f64,
    #[pyo3(attribute)]
    pub timeout_request: f64,
    #[pyo3(attribute)]
    pub timeout_write: f64,
    #[pyo3(attribute)]
    pub loop_watchdog: Option<f64>,
}

#[derive(FromPyObject, Clone, Debug)]
pub struct Http2 {
    /// Which versions a connection may speak (`auto`, `1`, `2`, ...).
    #[pyo3(attribute)]
    pub http: String,
    #[pyo3(attribute)]
    pub h2_max_concurrent_streams: u32,
    #[pyo3(attribute)]
    pub h2_max_reset_streams: usize,
}

#[derive(FromPyObject, Clone, Debug)]
pub struct WebSocket {
    /// `none` turns WebSockets off; every other choice means juggler's own.
    #[pyo3(attribute)]
    pub ws: String,
    #[pyo3(attribute)]
    pub ws_max_size: usize,
    #[pyo3(attribute)]
    pub ws_max_queue: usize,
    #[pyo3(attribute)]
    pub ws_ping_interval: f64,
    #[pyo3(attribute)]
    pub ws_ping_timeout: f64,
    #[pyo3(attribute)]
    pub ws_per_message_deflate: bool,
}

#[derive(FromPyObject, Clone, Debug)]
pub struct Access {
    #[pyo3(attribute)]
    pub access_log: bool,
    #[pyo3(attribute)]
    pub access_log_format: Option<String>,
    #[pyo3(attribute)]
    pub access_log_json: bool,
}

/// What the server adds to or answers instead of the app.
#[derive(FromPyObject, Clone, Debug)]
pub struct Responses {
    #[pyo3(attribute)]
    pub root_path: String,
    /// `--header`, as (name, value) pairs.
    #[pyo3(attribute)]
    pub header: Vec<(String, String)>,
    #[pyo3(attribute)]
    pub server_header: bool,
    #[pyo3(attribute)]
    pub date_header: bool,
    #[pyo3(attribute)]
    pub health_path: Option<String>,
    #[pyo3(attribute)]
    pub static_path_route: Option<String>,
    #[pyo3(attribute)]
    pub static_path_mount: Option<String>,
}

#[derive(FromPyObject, Clone, Debug)]
pub struct Proxy {
    #[pyo3(attribute)]
    pub proxy_headers: bool,
    /// Comma-separated; `None` trusts the local host only.
    #[pyo3(attribute)]
    pub forwarded_allow_ips: Option<String>,
    #[pyo3(attribute)]
    pub proxy_protocol: bool,
}

/// The WSGI thread pool (`config.wsgi`, read by `WsgiInterface`).
#[derive(FromPyObject, Clone, Debug)]
pub struct Wsgi {
    #[pyo3(attribute)]
    pub threads: usize,
    /// `None`: no count; the worker stops accepting while too many wait instead.
    #[pyo3(attribute)]
    pub queue_size: Option<usize>,
    /// Seconds a request may wait for a thread before it gets 503 (0: no bound).
    #[pyo3(attribute)]
    pub queue_timeout: f64,
}

/// The WSGI pool's sizes, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSize {
    pub threads: usize,
    /// `None`: requests are never refused for their number.
    pub queue_size: Option<usize>,
    /// `None`: requests are never refused for how long they waited.
    pub queue_timeout: Option<Duration>,
}

impl Wsgi {
    pub fn pool_size(&self) -> Result<PoolSize, Error> {
        if self.threads == 0 {
            return Err(Error::Config("--threads must be at least 1".into()));
        }
        if self.queue_size == Some(0) {
            return Err(Error::Config("--queue-size must be at least 1".into()));
        }
        Ok(PoolSize {
            threads: self.threads,
            queue_size: self.queue_size,
            queue_timeout: seconds("--queue-timeout", self.queue_timeout)?,
        })
    }
}

/// 0 means off; anything else must be a finite non-negative number of seconds.
pub(crate) fn seconds(flag: &str, value: f64) -> Result<Option<Duration>, Error> {
    if !value.is_finite() || value < 0.0 {
        return Err(Error::Config(format!(
            "{flag} must be a non-negative number of seconds, got {value}"
        )));
    }
    if value == 0.0 {
        return Ok(None);
    }
    Duration::try_from_secs_f64(value)
        .map(Some)
        .map_err(|_| Error::Config(format!("{flag} is too long: {value} seconds")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wsgi(threads: usize, queue_size: Option<usize>) -> Wsgi {
        Wsgi {
            threads,
            queue_size,
            queue_timeout: 0.0,
        }
    }

    #[test]
    fn the_queue_is_unbounded_unless_asked() {
        let size = wsgi(5, None).pool_size().expect("valid");
        assert_eq!((size.queue_size, size.queue_timeout), (None, None));
        let mut bounded = wsgi(5, Some(3));
        bounded.queue_timeout = 0.25;
        let size = bounded.pool_size().expect("valid");
        assert_eq!(size.queue_size, Some(3));
        assert_eq!(size.queue_timeout, Some(Duration::from_millis(250)));
    }

    #[test]
    fn bad_pool_sizes_name_their_flag() {
        for (bad, flag) in [
            (wsgi(0, None), "--threads"),
            (wsgi(1, Some(0)), "--queue-size"),
            (
                Wsgi {
                    queue_timeout: -0.5,
                    ..wsgi(1, None)
                },
                "--queue-timeout",
            ),
        ] {
            let message = bad.pool_size().expect_err("invalid").to_string();
            assert!(message.starts_with(flag), "{message}");
        }
    }

    #[test]
    fn bad_seconds_name_their_flag() {
        assert_eq!(seconds("--timeout-write", 0.0).expect("off"), None);
        assert_eq!(
            seconds("--timeout-write", 1.5).expect("valid"),
            Some(Duration::from_millis(1500))
        );
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e20] {
            let message = seconds("--timeout-write", bad)
                .expect_err("invalid")
                .to_string();
            assert!(message.starts_with("--timeout-write"), "{message}");
        }
    }
}
