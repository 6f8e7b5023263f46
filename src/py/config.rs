//! The Python-facing constructor of [`CoreConfig`]: the options `python/juggler/config.py`
//! resolved, checked and turned into the core's frozen settings.

use std::time::Duration;

use pyo3::prelude::*;

use crate::config::{
    positive_seconds, CoreConfig, H2Limits, HttpVersions, RequestLimits, StaticMount, WsConfig,
    DEFAULT_MAX_FIELDS,
};
use crate::error::Error;
use crate::log_format::LogFormat;
use crate::trusted::TrustedPeers;

#[pymethods]
impl CoreConfig {
    #[new]
    #[pyo3(signature = (*, keep_alive_timeout, limit_concurrency, max_header_size, date_header, default_headers, root_path, access_log, max_requests=None, ws=None, http="auto", h2_max_concurrent_streams=100, h2_max_reset_streams=20, access_log_format=None, access_log_json=false, access_direct=false, static_path_route=None, static_path_mount=None, loop_watchdog=None, max_loop_lag=None, limit_request_body=None, limit_request_line=None, limit_request_fields=Some(DEFAULT_MAX_FIELDS), limit_request_field_size=None, timeout_request_head=0.0, timeout_request=0.0, health_path=None, forwarded_allow_ips=Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        keep_alive_timeout: f64,
        limit_concurrency: Option<usize>,
        max_header_size: usize,
        date_header: bool,
        default_headers: Vec<(String, String)>,
        root_path: String,
        access_log: bool,
        max_requests: Option<u64>,
        ws: Option<(usize, usize, f64, f64, bool)>,
        http: &str,
        h2_max_concurrent_streams: u32,
        h2_max_reset_streams: usize,
        access_log_format: Option<String>,
        access_log_json: bool,
        access_direct: bool,
        static_path_route: Option<String>,
        static_path_mount: Option<String>,
        loop_watchdog: Option<f64>,
        max_loop_lag: Option<f64>,
        limit_request_body: Option<u64>,
        limit_request_line: Option<usize>,
        limit_request_fields: Option<usize>,
        limit_request_field_size: Option<usize>,
        timeout_request_head: f64,
        timeout_request: f64,
        health_path: Option<String>,
        forwarded_allow_ips: Vec<String>,
    ) -> PyResult<Self> {
        let ws = ws
            .map(|(size, queue, interval, timeout, deflate)| {
                WsConfig::new(size, queue, interval, timeout, deflate)
            })
            .transpose()?;
        let mut config = Self::build(
            keep_alive_timeout,
            limit_concurrency,
            max_header_size,
            date_header,
            default_headers,
            root_path,
            access_log,
        )?
        .with_max_requests(max_requests)?;
        config.ws = ws;
        config.http = HttpVersions::parse(http)?;
        config.access_format = LogFormat::new(access_log_format.as_deref(), access_log_json)?;
        config.access_direct = access_direct;
        config.static_files = match (static_path_route, static_path_mount) {
            (Some(route), Some(dir)) => Some(StaticMount::new(&route, &dir)?),
            (None, None) => None,
            _ => {
                return Err(Error::Config(
                    "static_path_route and static_path_mount go together".into(),
                )
                .into())
            }
        };
        if h2_max_concurrent_streams == 0 || h2_max_reset_streams == 0 {
            return Err(Error::Config(
                "h2_max_concurrent_streams and h2_max_reset_streams must be at least 1".into(),
            )
            .into());
        }
        config.h2 = H2Limits {
            max_concurrent_streams: h2_max_concurrent_streams,
            max_reset_streams: h2_max_reset_streams,
        };
        config.loop_watchdog = positive_seconds("loop_watchdog", loop_watchdog)?;
        config.max_loop_lag = positive_seconds("max_loop_lag", max_loop_lag)?;
        let seconds = |name: &str, v: f64| {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::Config(format!(
                    "{name} must be a non-negative number of seconds, got {v}"
                )));
            }
            Ok((v > 0.0).then(|| Duration::from_secs_f64(v)))
        };
        let nonzero = |v: Option<usize>| v.filter(|n| *n > 0);
        config.limits = RequestLimits {
            body: limit_request_body.filter(|n| *n > 0),
            line: nonzero(limit_request_line),
            // No limit of our own: as many as the head's size allows (a field takes at
            // least four bytes, `a:\r\n`).
            fields: Some(nonzero(limit_request_fields).unwrap_or(config.max_header_size / 4)),
            field_size: nonzero(limit_request_field_size),
            head_timeout: seconds("timeout_request_head", timeout_request_head)?,
        };
        config.request_timeout = seconds("timeout_request", timeout_request)?;
        if let Some(path) = &health_path {
            if !path.starts_with('/') {
                return Err(Error::Config(format!(
                    "health_path must start with '/', got {path:?}"
                ))
                .into());
            }
        }
        config.health_path = health_path;
        let peers = TrustedPeers::parse(&forwarded_allow_ips)?;
        config.proxy = (!peers.is_empty()).then_some(peers);
        Ok(config)
    }

    fn __repr__(&self) -> String {
        format!("{self:?}")
    }
}
