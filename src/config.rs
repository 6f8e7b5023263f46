//! The settings the core needs, validated once when the Python options object hands them over.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use pyo3::prelude::*;

use crate::error::Error;
use crate::log_format::LogFormat;
use crate::options::{seconds, CoreOptions, Limits};
use crate::trusted::TrustedPeers;

/// Frozen core settings, built from the options `python/juggler/config.py` declares (see
/// `options.rs`); errors name the flag, as the command line spells it.
#[pyclass(frozen, module = "juggler._juggler")]
#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub timeout_keep_alive: Option<Duration>,
    pub limit_concurrency: Option<usize>,
    pub max_header_size: usize,
    pub date_header: bool,
    /// Added to every response whose app did not set the same name (`server`, `--header`).
    pub default_headers: Vec<(HeaderName, HeaderValue)>,
    pub root_path: String,
    pub access_log: bool,
    pub access_log_format: LogFormat,
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
    /// Read a PROXY protocol header from these peers (`--proxy-protocol`); `None` when off.
    pub proxy_protocol: Option<ProxyProtocol>,
    pub limits: RequestLimits,
    /// A handler that has not answered after this long gets 504 (`--timeout-request`).
    pub request_timeout: Option<Duration>,
    /// A connection whose client has taken nothing of what is sent for this long is closed
    /// (`--timeout-write`); a WSGI thread waits for its client at most this long.
    pub write_timeout: Option<Duration>,
    /// Answered by the server itself (`--health-path`).
    pub health_path: Option<String>,
}

/// How long a PROXY header may take when `--timeout-request-head` is off: a connection must
/// not be held open by a peer that never finishes one.
pub const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may open a connection with a PROXY protocol header, and how long it may take to send.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyProtocol {
    /// `--forwarded-allow-ips`: a header from any other peer closes its connection.
    pub trusted: TrustedPeers,
    /// The header is part of the request head, so it has the head's time limit.
    pub timeout: Duration,
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
                "--static-path-route must start with '/', got {route:?}"
            )));
        }
        let root = std::fs::canonicalize(dir)
            .map_err(|e| Error::Config(format!("--static-path-mount {dir:?}: {e}")))?;
        if !root.is_dir() {
            return Err(Error::Config(format!(
                "--static-path-mount {dir:?} is not a directory"
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
                "--http must be auto, 1 or 2, got {other:?}"
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
                "--ws-max-size and --ws-max-queue must be at least 1".into(),
            ));
        }
        Ok(Self {
            max_size,
            max_queue,
            ping_interval: seconds("--ws-ping-interval", ping_interval)?,
            ping_timeout: seconds("--ws-ping-timeout", ping_timeout)?,
            per_message_deflate,
        })
    }
}

/// `None` and 0 mean off; anything else must be a finite positive number of seconds.
pub(crate) fn positive_seconds(flag: &str, value: Option<f64>) -> Result<Option<Duration>, Error> {
    match value {
        None => Ok(None),
        Some(0.0) => Ok(None),
        Some(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(Some(Duration::from_secs_f64(v))),
        Some(v) => Err(Error::Config(format!(
            "{flag} must be a positive number of seconds, got {v}"
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
            return Err(Error::Config("--max-requests must be at least 1".into()));
        }
        self.max_requests = max_requests;
        Ok(self)
    }

    /// The settings with every feature off but the basics (the unit tests' starting point).
    pub fn build(
        timeout_keep_alive: f64,
        limit_concurrency: Option<usize>,
        max_header_size: usize,
        date_header: bool,
        default_headers: Vec<(String, String)>,
        root_path: String,
        access_log: bool,
    ) -> Result<Self, Error> {
        let timeout_keep_alive = seconds("--timeout-keep-alive", timeout_keep_alive)?;
        if limit_concurrency == Some(0) {
            return Err(Error::Config(
                "--limit-concurrency must be at least 1".into(),
            ));
        }
        // hyper needs room for at least the request line and a few headers.
        if max_header_size < 1024 {
            return Err(Error::Config(format!(
                "--max-header-size must be at least 1024 bytes, got {max_header_size}"
            )));
        }
        let default_headers = default_headers
            .into_iter()
            .map(|(name, value)| {
                let n = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| Error::Config(format!("--header: invalid name {name:?}")))?;
                let v = HeaderValue::from_str(value.trim())
                    .map_err(|_| Error::Config(format!("--header: invalid value for {name:?}")))?;
                Ok((n, v))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self {
            timeout_keep_alive,
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
            access_log_format: LogFormat::Default,
            access_direct: false,
            static_files: None,
            loop_watchdog: None,
            max_loop_lag: None,
            proxy: None,
            proxy_protocol: None,
            limits: RequestLimits {
                fields: Some(DEFAULT_MAX_FIELDS),
                ..Default::default()
            },
            request_timeout: None,
            write_timeout: None,
            health_path: None,
        })
    }
}

/// What a worker adds to the options: its own share of `--max-requests` (with jitter), and
/// what its interface serves (WSGI has no WebSockets, and its app runs off the event loop,
/// so the loop's watchdog and lag bound do not concern it).
#[derive(Clone, Copy, Debug)]
pub struct WorkerSide {
    pub max_requests: Option<u64>,
    pub websockets: bool,
    pub event_loop: bool,
    /// No handler of the user's is on `juggler.access` (the worker checks).
    pub access_direct: bool,
}

impl Default for WorkerSide {
    fn default() -> Self {
        Self {
            max_requests: None,
            websockets: true,
            event_loop: true,
            access_direct: false,
        }
    }
}

impl CoreConfig {
    /// The frozen settings from the options Python resolved, each checked for what only the
    /// core knows; an error names the flag.
    pub fn from_options(o: &CoreOptions, worker: WorkerSide) -> Result<Self, Error> {
        let r = &o.responses;
        let mut headers = Vec::with_capacity(r.header.len() + 1);
        if r.server_header {
            headers.push(("server".to_owned(), "juggler".to_owned()));
        }
        headers.extend(r.header.iter().cloned());
        let mut config = Self::build(
            o.timeouts.timeout_keep_alive,
            o.limits.limit_concurrency,
            o.limits.max_header_size,
            r.date_header,
            headers,
            r.root_path.clone(),
            o.access.access_log,
        )?
        .with_max_requests(worker.max_requests)?;
        let ws = &o.websocket;
        if worker.websockets && ws.ws != "none" {
            config.ws = Some(WsConfig::new(
                ws.ws_max_size,
                ws.ws_max_queue,
                ws.ws_ping_interval,
                ws.ws_ping_timeout,
                ws.ws_per_message_deflate,
            )?);
        }
        config.http = HttpVersions::parse(&o.http2.http)?;
        config.h2 = H2Limits::new(
            o.http2.h2_max_concurrent_streams,
            o.http2.h2_max_reset_streams,
        )?;
        config.access_log_format = LogFormat::new(
            o.access.access_log_format.as_deref(),
            o.access.access_log_json,
        )?;
        config.access_direct = worker.access_direct;
        config.static_files = match (&r.static_path_route, &r.static_path_mount) {
            (Some(route), Some(dir)) => Some(StaticMount::new(route, dir)?),
            (None, None) => None,
            _ => {
                return Err(Error::Config(
                    "--static-path-route and --static-path-mount go together".into(),
                ))
            }
        };
        if worker.event_loop {
            config.loop_watchdog = positive_seconds("--loop-watchdog", o.timeouts.loop_watchdog)?;
            let lag = o.limits.max_loop_lag.map(|ms| ms / 1000.0);
            config.max_loop_lag = positive_seconds("--max-loop-lag", lag)?;
        }
        config.limits = RequestLimits::from_options(&o.limits, o.timeouts.timeout_request_head)?;
        config.request_timeout = seconds("--timeout-request", o.timeouts.timeout_request)?;
        config.write_timeout = seconds("--timeout-write", o.timeouts.timeout_write)?;
        if let Some(path) = &r.health_path {
            if !path.starts_with('/') {
                return Err(Error::Config(format!(
                    "--health-path must start with '/', got {path:?}"
                )));
            }
        }
        config.health_path = r.health_path.clone();
        let trusted = o
            .proxy
            .forwarded_allow_ips
            .as_deref()
            // Empty (an unset variable in an env file) is the default, as it always was.
            .filter(|list| !list.trim().is_empty())
            .unwrap_or("127.0.0.1");
        let peers = TrustedPeers::parse(&[trusted])?;
        if o.proxy.proxy_protocol {
            config.proxy_protocol = Some(ProxyProtocol {
                trusted: peers.clone(),
                timeout: config.limits.head_timeout.unwrap_or(PROXY_HEADER_TIMEOUT),
            });
        }
        if o.proxy.proxy_headers {
            config.proxy = (!peers.is_empty()).then_some(peers);
        }
        Ok(config)
    }
}

impl RequestLimits {
    fn from_options(l: &Limits, head_timeout: f64) -> Result<Self, Error> {
        let nonzero = |v: usize| (v > 0).then_some(v);
        Ok(Self {
            body: (l.limit_request_body > 0).then_some(l.limit_request_body),
            line: nonzero(l.limit_request_line),
            // 0: no limit of our own, as many as the head's size allows (a field takes at
            // least four bytes, `a:\r\n`).
            fields: Some(nonzero(l.limit_request_fields).unwrap_or(l.max_header_size / 4)),
            field_size: nonzero(l.limit_request_field_size),
            head_timeout: seconds("--timeout-request-head", head_timeout)?,
        })
    }
}

impl H2Limits {
    fn new(max_concurrent_streams: u32, max_reset_streams: usize) -> Result<Self, Error> {
        if max_concurrent_streams == 0 || max_reset_streams == 0 {
            return Err(Error::Config(
                "--h2-max-concurrent-streams and --h2-max-reset-streams must be at least 1".into(),
            ));
        }
        Ok(Self {
            max_concurrent_streams,
            max_reset_streams,
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
        assert_eq!(c.timeout_keep_alive, None);
        assert_eq!(c.default_headers[0].0.as_str(), "x-custom");
        assert_eq!(c.default_headers[0].1, "v");
        let c = build(1.5, None, 8192, &[]).expect("valid");
        assert_eq!(c.timeout_keep_alive, Some(Duration::from_millis(1500)));
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

    fn options() -> CoreOptions {
        use crate::options::*;
        CoreOptions {
            limits: Limits {
                limit_concurrency: None,
                max_header_size: 65536,
                limit_request_body: 0,
                limit_request_line: 0,
                limit_request_fields: 100,
                limit_request_field_size: 0,
                max_loop_lag: None,
            },
            timeouts: Timeouts {
                timeout_keep_alive: 5.0,
                timeout_request_head: 0.0,
                timeout_request: 0.0,
                timeout_write: 0.0,
                loop_watchdog: None,
            },
            http2: Http2 {
                http: "auto".into(),
                h2_max_concurrent_streams: 100,
                h2_max_reset_streams: 20,
            },
            websocket: WebSocket {
                ws: "auto".into(),
                ws_max_size: 1 << 24,
                ws_max_queue: 32,
                ws_ping_interval: 20.0,
                ws_ping_timeout: 20.0,
                ws_per_message_deflate: true,
            },
            access: Access {
                access_log: true,
                access_log_format: None,
                access_log_json: false,
            },
            responses: Responses {
                root_path: String::new(),
                header: vec![("x-a".into(), "1".into())],
                server_header: true,
                date_header: true,
                health_path: None,
                static_path_route: None,
                static_path_mount: None,
            },
            proxy: Proxy {
                proxy_headers: true,
                forwarded_allow_ips: None,
                proxy_protocol: false,
            },
        }
    }

    #[test]
    fn options_become_the_core_settings() {
        let c = CoreConfig::from_options(&options(), WorkerSide::default()).expect("valid");
        let names: Vec<_> = c.default_headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["server", "x-a"], "server first, then --header");
        assert_eq!(c.limits.fields, Some(DEFAULT_MAX_FIELDS));
        assert_eq!(c.limits.body, None, "0 is no limit");
        assert!(c.ws.is_some() && c.proxy.is_some());
        let mut o = options();
        o.limits.limit_request_body = 10;
        o.limits.limit_request_fields = 0;
        o.limits.max_header_size = 4096;
        o.limits.max_loop_lag = Some(40.0);
        o.timeouts.loop_watchdog = Some(2.0);
        o.responses.server_header = false;
        o.proxy.proxy_headers = false;
        o.websocket.ws = "none".into();
        let c = CoreConfig::from_options(&o, WorkerSide::default()).expect("valid");
        assert_eq!(c.limits.body, Some(10));
        assert_eq!(c.limits.fields, Some(1024), "as many as the head allows");
        assert_eq!(
            c.max_loop_lag,
            Some(Duration::from_millis(40)),
            "milliseconds"
        );
        assert_eq!(c.loop_watchdog, Some(Duration::from_secs(2)));
        assert_eq!(c.default_headers.len(), 1);
        assert!(c.ws.is_none() && c.proxy.is_none());
        // WSGI: no WebSockets, and the event loop's bounds do not concern its app.
        let wsgi = WorkerSide {
            websockets: false,
            event_loop: false,
            ..WorkerSide::default()
        };
        let c = CoreConfig::from_options(&options(), wsgi).expect("valid");
        assert!(c.ws.is_none());
        let c = CoreConfig::from_options(&o, wsgi).expect("valid");
        assert_eq!((c.loop_watchdog, c.max_loop_lag), (None, None));
    }

    #[test]
    fn errors_name_the_flag() {
        type Break = fn(&mut CoreOptions);
        let cases: [(&str, Break); 8] = [
            ("--max-header-size", |o| o.limits.max_header_size = 100),
            ("--timeout-keep-alive", |o| {
                o.timeouts.timeout_keep_alive = -1.0
            }),
            ("--timeout-request ", |o| {
                o.timeouts.timeout_request = f64::NAN
            }),
            ("--h2-max-concurrent-streams", |o| {
                o.http2.h2_max_concurrent_streams = 0
            }),
            ("--http", |o| o.http2.http = "3".into()),
            ("--ws-max-size", |o| o.websocket.ws_max_size = 0),
            ("--health-path", |o| {
                o.responses.health_path = Some("x".into())
            }),
            ("--static-path-route", |o| {
                o.responses.static_path_route = Some("/s".into())
            }),
        ];
        for (flag, break_it) in cases {
            let mut o = options();
            break_it(&mut o);
            let message = CoreConfig::from_options(&o, WorkerSide::default())
                .expect_err(flag)
                .to_string();
            assert!(message.starts_with(flag), "{flag}: {message}");
        }
    }

    #[test]
    fn proxy_protocol_trusts_the_allowed_peers_for_the_head_timeout() {
        let side = WorkerSide::default;
        let mut o = options();
        assert!(CoreConfig::from_options(&o, side())
            .expect("valid")
            .proxy_protocol
            .is_none());
        o.proxy.proxy_protocol = true;
        o.proxy.proxy_headers = false;
        o.proxy.forwarded_allow_ips = Some("10.0.0.0/8".into());
        o.timeouts.timeout_request_head = 2.5;
        let c = CoreConfig::from_options(&o, side()).expect("valid");
        let p = c.proxy_protocol.expect("on");
        assert!(p.trusted.trusts_ip("10.1.2.3".parse().expect("valid")));
        assert!(!p.trusted.trusts_ip("127.0.0.1".parse().expect("valid")));
        assert_eq!(p.timeout, Duration::from_millis(2500));
        assert!(c.proxy.is_none());
        o.timeouts.timeout_request_head = 0.0;
        let c = CoreConfig::from_options(&o, side()).expect("valid");
        assert_eq!(
            c.proxy_protocol.expect("valid").timeout,
            PROXY_HEADER_TIMEOUT
        );
    }
}
