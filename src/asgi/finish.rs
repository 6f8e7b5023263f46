//! What happens when an app's task ends: errors logged and answered, the access line written.

use std::sync::Arc;

use http::request::Parts;
use http::StatusCode;
use pyo3::intern;
use pyo3::prelude::*;

use super::LoopCtx;
use crate::error::ClientDisconnected;
use crate::http::exchange::{Exchange, Finished};
use crate::server::shared::ConnInfo;

/// What an access log line needs, captured before the request parts are dropped.
#[derive(Clone)]
pub struct AccessInfo {
    client: String,
    method: String,
    path: String,
    version: &'static str,
}

impl AccessInfo {
    pub fn new(parts: &Parts, conn: &ConnInfo) -> Self {
        let client = match &conn.client {
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

    pub fn log(&self, py: Python<'_>, ctx: &LoopCtx, status: Option<StatusCode>) {
        let Some(status) = status else { return };
        let args = (
            "%s - \"%s %s HTTP/%s\" %d",
            self.client.as_str(),
            self.method.as_str(),
            self.path.as_str(),
            self.version,
            status.as_u16(),
        );
        if let Err(e) = ctx
            .access_logger
            .call_method1(py, intern!(py, "info"), args)
        {
            e.print(py);
        }
    }
}

/// The done-callback of every request task.
#[pyclass(frozen, module = "juggler._juggler")]
pub struct Finish {
    pub exchange: Arc<Exchange>,
    pub ctx: Arc<LoopCtx>,
    pub access: Option<AccessInfo>,
}

#[pymethods]
impl Finish {
    fn __call__(&self, py: Python<'_>, task: &Bound<'_, PyAny>) -> PyResult<()> {
        let cancelled = task.call_method0(intern!(py, "cancelled"))?.is_truthy()?;
        let exc = if cancelled {
            None
        } else {
            Some(task.call_method0(intern!(py, "exception"))?)
        };
        let exc = exc.filter(|e| !e.is_none());
        let outcome = self.exchange.finish();
        match (&exc, outcome) {
            (Some(e), _) if e.is_instance_of::<ClientDisconnected>() => {
                self.ctx.log(
                    py,
                    "debug",
                    "client disconnected before the response was sent",
                );
            }
            (Some(e), _) => self
                .ctx
                .log_error(py, "Exception in ASGI application", Some(e)),
            (None, Finished::NoResponse) if !cancelled => self.ctx.log_error(
                py,
                "ASGI callable returned without starting response.",
                None,
            ),
            (None, Finished::Incomplete) if !cancelled => self.ctx.log_error(
                py,
                "ASGI callable returned without completing response.",
                None,
            ),
            _ => {}
        }
        if let Some(a) = &self.access {
            a.log(py, &self.ctx, self.exchange.status());
        }
        Ok(())
    }
}
