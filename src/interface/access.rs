//! Access log lines, the same for every interface: `client - "METHOD path HTTP/v" status`.

use http::request::Parts;
use http::StatusCode;
use pyo3::intern;
use pyo3::prelude::*;

use super::log::Loggers;
use crate::http::forwarded::Forwarded;
use crate::server::ConnInfo;

/// What an access log line needs, captured before the request parts are dropped.
pub struct AccessInfo {
    client: String,
    method: String,
    path: String,
    version: &'static str,
}

impl AccessInfo {
    /// None when the access log is off, so that nothing is captured for nothing.
    /// The client is the one a trusted proxy named, when it named one (as in the scope).
    pub fn capture(
        loggers: &Loggers,
        parts: &Parts,
        conn: &ConnInfo,
        forwarded: Option<&Forwarded>,
    ) -> Option<Self> {
        loggers
            .access_enabled
            .then(|| Self::new(parts, conn, forwarded))
    }

    fn new(parts: &Parts, conn: &ConnInfo, forwarded: Option<&Forwarded>) -> Self {
        let named = forwarded.and_then(|f| f.client.as_ref());
        let client = match named.or(conn.client.as_ref()) {
            Some((host, port)) => format!("{host}:{port}"),
            None => "-".to_owned(),
        };
        let path = match parts.uri.path_and_query() {
            Some(pq) => pq.as_str().to_owned(),
            None => parts.uri.path().to_owned(),
        };
        let version = match parts.version {
            http::Version::HTTP_10 => "1.0",
            http::Version::HTTP_2 => "2",
            _ => "1.1",
        };
        Self {
            client,
            method: parts.method.as_str().to_owned(),
            path,
            version,
        }
    }

    /// Writes the line if a status was decided (a client that left early gets none).
    pub fn log(&self, py: Python<'_>, loggers: &Loggers, status: Option<StatusCode>) {
        let Some(status) = status else { return };
        let args = (
            "%s - \"%s %s HTTP/%s\" %d",
            self.client.as_str(),
            self.method.as_str(),
            self.path.as_str(),
            self.version,
            status.as_u16(),
        );
        if let Err(e) = loggers.access.call_method1(py, intern!(py, "info"), args) {
            e.print(py);
        }
    }
}
