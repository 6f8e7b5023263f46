//! The loggers an interface writes to (`juggler.error`, `juggler.access`), called with the
//! GIL held. A failing logger is reported by Python's own last-resort printing: there is
//! nowhere else left to say it.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::access_out::AccessOut;
use crate::config::CoreConfig;
use crate::log_format::LogFormat;
use crate::transport::LogLevel;

pub struct Loggers {
    pub error: PyObject,
    pub access: PyObject,
    /// The access log is on and its logger would emit INFO.
    pub access_enabled: bool,
    pub access_format: LogFormat,
    /// The request headers the access format names.
    pub access_headers: Vec<String>,
    /// Lines go to `access_out` (stdout) rather than through Python's logging: only
    /// juggler's own handler is on `juggler.access`.
    pub access_direct: bool,
    pub access_out: AccessOut,
}

impl Loggers {
    pub fn new(
        py: Python<'_>,
        error: PyObject,
        access: PyObject,
        config: &CoreConfig,
    ) -> PyResult<Self> {
        let access_enabled = config.access_log
            && access
                .call_method1(py, intern!(py, "isEnabledFor"), (20,))?
                .is_truthy(py)?;
        Ok(Self {
            error,
            access,
            access_enabled,
            access_headers: config.access_log_format.headers(),
            access_format: config.access_log_format.clone(),
            access_direct: config.access_direct,
            access_out: AccessOut::default(),
        })
    }

    /// Logs `msg` on `juggler.error` at ERROR, with the exception's traceback if given.
    pub fn error(&self, py: Python<'_>, msg: &str, exc: Option<&PyErr>) {
        let kwargs = PyDict::new(py);
        if let Some(exc) = exc {
            // The traceback travels beside the value until it is raised again: pass all three.
            let info = (exc.get_type(py), exc.value(py), exc.traceback(py));
            let _ = kwargs.set_item(intern!(py, "exc_info"), info);
        }
        if let Err(e) = self
            .error
            .call_method(py, intern!(py, "error"), (msg,), Some(&kwargs))
        {
            e.print(py);
        }
    }

    pub fn log(&self, py: Python<'_>, level: LogLevel, msg: &str) {
        let method = match level {
            LogLevel::Debug => intern!(py, "debug"),
            LogLevel::Warning => intern!(py, "warning"),
        };
        if let Err(e) = self.error.call_method1(py, method, (msg,)) {
            e.print(py);
        }
    }
}
