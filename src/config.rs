//! The settings the core needs, validated once when the Python options object hands them over.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use pyo3::prelude::*;

use crate::error::Error;
use crate::log_format::LogFormat;
use crate::trusted::TrustedPeers;

/// Frozen core settings; `python/juggler/config.py` is the one place that declares options.
#[pyclass(frozen, module = "juggler._juggler")]
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub keep_alive_timeout: Option<Duration>,
    pub limit_concurrency: Option<usize>,
    pub max_header_size: usize,
    pub date_header: bool,
    /// Added to every response whose app did not set the same name (`server`, `--header`).
    pub default_headers: Vec<(HeaderName, HeaderValue)>,
    pub root_path: String,
    pub access_log: bool,
    pub access_format: LogFormat,
    /// Access lines may be written to stdout directly: no handler of the user's is on
    /// `juggler.access` (the worker checks).
    pub access_direct: bool,
    /// Report `request_limit_reached` after this many requests (`--max-requests`).
    pub max_requests: Option<u64>,
    /// WebSocket settings; `None` when WebSockets are off (`--ws none`, or a WSGI app).
    pub ws: Option<WsConfig>,
    /// Which HTTP versions a connection may speak (`--http`).
    pub http: HttpVersions,
    pub h2: H2Limits,
    /// `--static-path-route` and `--static-path-mount` (served by `http::static_files`).
    pub static_files: Option<StaticMount>,
    /// Report an event loop that has not turned for this long (`--loop-watchdog`).
    pub loop_watchdog: Option<Duration>,
    /// Answer new requests 503 while the loop lags this much or more (`--max-loop-lag`).
    pub max_loop_lag: Option<Duration>,
    /// Peers whose proxy headers are believed (`--proxy-headers`, `--forwarded-allow-ips`);
    /// `None` when proxy headers are off or no peer is trusted.
    pub proxy: Option<TrustedPeers>,
    pub limits: RequestLimits,
    /// A handler that has not answered after this long gets 504 (`--timeout-request`).
    pub request_timeout: Option<Duration>,
    /// Answered by the server itself (`--health-path`).
    pub health_path: Option<String>,
}

/// A directory served under a URL prefix.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticMount {
    /// The URL prefix, without a trailing slash (`/static`).
    pub route: String,
    /// The directory, resolved.
    pub root: std::path::PathBuf,
}

impl StaticMount {
    pub fn new(route: &str, dir: &str) -> Result<Self, Error> {
        if !route.starts_with('/') {
            return Err(Error::Config(format!(
                "static_path_route must start with '/', got {route:?}"
            )));
        }
        let root = std::fs::canonicalize(dir)
            .map_err(|e| Error::Config(format!("static_path_mount {dir:?}: {e}")))?;
        if !root.is_dir() {
            return Err(Error::Config(format!(
                "static_path_mount {dir:?} is not a directory"
            )));
        }
        Ok(Self {
            route: route.trim_end_matches('/').to_owned(),
            root,
        })
    }
}

/// Limits on a request (`--limit-request-*`, `--timeout-request-head`); `None` is off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestLimits {
    pub body: Option<u64>,
    pub line: Option<usize>,
    /// Header fields; hyper enforces it for HTTP/1.1, the service for HTTP/2.
    pub fields: Option<usize>,
    pub field_size: Option<usize>,
    /// A request head must be complete this long after its first byte.
    pub head_timeout: Option<Duration>,
}

/// hyper's own bound on the header fields of an HTTP/1.1 request, kept on the stack.
pub const DEFAULT_MAX_FIELDS: usize = 100;

impl RequestLimits {
    /// Whether the service has anything to check in a request head (not so by default, so
    /// the common request pays one branch).
    pub fn checks_head(&self) -> bool {
        self.line.is_some()
            || self.field_size.is_some()
            || self.fields.is_some_and(|n| n != DEFAULT_MAX_FIELDS)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersions {
    /// HTTP/1.1, and HTTP/2 for clients that start with its preface (h2c) or ask by ALPN.
    Auto,
    Http1,
    Http2,
}

impl HttpVersions {
    pub fn parse(value: &str) -> Result<Self, Error> {
        match value {
            "auto" => Ok(Self::Auto),
            "1" | "h11" | "httptools" => Ok(Self::Http1),
            "2" => Ok(Self::Http2),
            other => Err(Error::Config(format!(
                "http must be auto, 1 or 2, got {other:?}"
            ))),
        }
    }
}

/// HTTP/2 limits (`--h2-*`), each a defence against a known flood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2Limits {
    pub max_concurrent_streams: u32,
    /// Streams a client may open and reset before the server accepted them.
    pub max_reset_streams: usize,
}

impl Default for H2Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_reset_streams: 20,
        }
    }
}

/// How WebSocket connections are served (`--ws-*`).
#[derive(Clone, Debug, PartialEq)]
pub struct WsConfig {
    /// Largest message accepted, whole (after reassembly and inflation); larger closes 1009.
    pub max_size: usize,
    /// Messages held for the app before the socket stops being read.
    pub max_queue: usize,
    /// A ping goes out after this long without one (`None`: never).
    pub ping_interval: Option<Duration>,
    /// A peer that answers no ping within this is dropped.
    pub ping_timeout: Option<Duration>,
    /// Offer permessage-deflate when the client asks for it.
    pub per_message_deflate: bool,
}

impl WsConfig {
    pub fn new(
        max_size: usize,
        max_queue: usize,
        ping_interval: f64,
        ping_timeout: f64,
        per_message_deflate: bool,
    ) -> Result<Self, Error> {
        if max_size == 0 || max_queue == 0 {
            return Err(Error::Config(
                "ws_max_size and ws_max_queue must be at least 1".into(),
            ));
        }
        let seconds = |name: &str, v: f64| {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::Config(format!(
                    "{name} must be a non-negative number of seconds, got {v}"
                )));
            }
            Ok((v > 0.0).then(|| Duration::from_secs_f64(v)))
        };
        Ok(Self {
            max_size,
            max_queue,
            ping_interval: seconds("ws_ping_interval", ping_interval)?,
            ping_timeout: seconds("ws_ping_timeout", ping_timeout)?,
            per_message_deflate,
        })
    }
}

/// `None` and 0 mean off; anything else must be a finite positive number of seconds.
pub(crate) fn positive_seconds(name: &str, value: Option<f64>) -> Result<Option<Duration>, Error> {
    match value {
        None => Ok(None),
        Some(0.0) => Ok(None),
        Some(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(Some(Duration::from_secs_f64(v))),
        Some(v) => Err(Error::Config(format!(
            "{name} must be a positive number of seconds, got {v}"
        ))),
    }
}

/// Probes of the loop go out at least this often, so that a short bound is seen in time ...
const MIN_PROBE_PERIOD: Duration = Duration::from_millis(1);
/// ... and at most this seldom, so that a lag shows within a tenth of a second.
const MAX_PROBE_PERIOD: Duration = Duration::from_millis(100);

impl CoreConfig {
    /// How often the loop's lag is probed (`bridge::lag`), or None when nothing needs it.
    /// A quarter of the smallest bound: a stall is seen at most a quarter late.
    pub fn loop_probe_period(&self) -> Option<Duration> {
        let quarter = [self.loop_watchdog, self.max_loop_lag]
            .into_iter()
            .flatten()
            .min()?
            / 4;
        Some(quarter.clamp(MIN_PROBE_PERIOD, MAX_PROBE_PERIOD))
    }

    pub fn with_max_requests(mut self, max_requests: Option<u64>) -> Result<Self, Error> {
        if max_requests == Some(0) {
            return Err(Error::Config("max_requests must be at least 1".into()));
        }
        self.max_requests = max_requests;
        Ok(self)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn build(
        keep_alive_timeout: f64,
        limit_concurrency: Option<usize>,
        max_header_size: usize,
        date_header: bool,
        default_headers: Vec<(String, String)>,
        root_path: String,
        access_log: bool,
    ) -> Result<Self, Error> {
        if !keep_alive_timeout.is_finite() || keep_alive_timeout < 0.0 {
            return Err(Error::Config(format!(
                "timeout_keep_alive must be a non-negative number of seconds, got {keep_alive_timeout}"
            )));
        }
        if limit_concurrency == Some(0) {
            return Err(Error::Config("limit_concurrency must be at least 1".into()));
        }
        // hyper needs room for at least the request line and a few headers.
        if max_header_size < 1024 {
            return Err(Error::Config(format!(
                "max_header_size must be at least 1024 bytes, got {max_header_size}"
            )));
        }
        let default_headers = default_headers
            .into_iter()
            .map(|(name, value)| {
                let n = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| Error::Config(format!("invalid header name {name:?}")))?;
                let v = HeaderValue::from_str(value.trim())
                    .map_err(|_| Error::Config(format!("invalid value for header {name:?}")))?;
                Ok((n, v))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let keep_alive_timeout =
            (keep_alive_timeout > 0.0).then(|| Duration::from_secs_f64(keep_alive_timeout));
        Ok(Self {
            keep_alive_timeout,
            limit_concurrency,
            max_header_size,
            date_header,
            default_headers,
            root_path,
            access_log,
            max_requests: None,
            ws: None,
            http: HttpVersions::Auto,
            h2: H2Limits::default(),
            access_format: LogFormat::Default,
            access_direct: false,
            static_files: None,
            loop_watchdog: None,
            max_loop_lag: None,
            proxy: None,
            limits: RequestLimits {
                fields: Some(DEFAULT_MAX_FIELDS),
                ..Default::default()
            },
            request_timeout: None,
            health_path: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(
        ka: f64,
        limit: Option<usize>,
        hdr: usize,
        headers: &[(&str, &str)],
    ) -> Result<CoreConfig, Error> {
        let headers = headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        CoreConfig::build(ka, limit, hdr, true, headers, String::new(), true)
    }

    #[test]
    fn rejects_bad_values() {
        assert!(build(-1.0, None, 8192, &[]).is_err());
        assert!(build(f64::NAN, None, 8192, &[]).is_err());
        assert!(build(5.0, Some(0), 8192, &[]).is_err());
        assert!(build(5.0, None, 10, &[]).is_err());
        assert!(build(5.0, None, 8192, &[("bad name", "x")]).is_err());
        assert!(build(5.0, None, 8192, &[("x-ok", "line\nbreak")]).is_err());
    }

    #[test]
    fn accepts_and_normalises() {
        let c = build(0.0, Some(3), 8192, &[("X-Custom", " v ")]).expect("valid");
        assert_eq!(c.keep_alive_timeout, None);
        assert_eq!(c.default_headers[0].0.as_str(), "x-custom");
        assert_eq!(c.default_headers[0].1, "v");
        let c = build(1.5, None, 8192, &[]).expect("valid");
        assert_eq!(c.keep_alive_timeout, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn loop_bounds_are_positive_seconds_and_set_the_probe_period() {
        assert_eq!(positive_seconds("x", None).expect("off"), None);
        assert_eq!(positive_seconds("x", Some(0.0)).expect("off"), None);
        assert!(positive_seconds("x", Some(-1.0)).is_err());
        assert!(positive_seconds("x", Some(f64::NAN)).is_err());
        assert!(positive_seconds("x", Some(f64::INFINITY)).is_err());
        let mut c = build(5.0, None, 8192, &[]).expect("valid");
        assert_eq!(
            c.loop_probe_period(),
            None,
            "nothing probes the loop by default"
        );
        c.loop_watchdog = Some(Duration::from_secs(2));
        assert_eq!(c.loop_probe_period(), Some(MAX_PROBE_PERIOD));
        c.max_loop_lag = Some(Duration::from_millis(40));
        assert_eq!(c.loop_probe_period(), Some(Duration::from_millis(10)));
        c.max_loop_lag = Some(Duration::from_micros(100));
        assert_eq!(c.loop_probe_period(), Some(MIN_PROBE_PERIOD));
    }
}
