//! One error type for the core, mapped to an exception users can catch at the boundary.

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::PyErr;

pyo3::create_exception!(
    juggler,
    ClientDisconnected,
    PyOSError,
    "The client went away before the response was sent."
);

pyo3::create_exception!(
    juggler,
    ProtocolError,
    PyRuntimeError,
    "The app broke its interface's protocol: an ASGI message out of order or of a wrong \
     shape, a WSGI start_response called twice, a malformed status or header."
);

pyo3::create_exception!(
    juggler,
    ConfigError,
    PyValueError,
    "An option has a value juggler cannot use; the message names its flag (--limit-request-body)."
);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The message names the flag, as the command line spells it.
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("client disconnected")]
    Disconnected,
}

impl Error {
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::Protocol(message.into())
    }
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        match err {
            Error::Config(msg) => ConfigError::new_err(msg),
            Error::Io(e) => io_to_py(e),
            Error::Protocol(msg) => ProtocolError::new_err(msg),
            Error::Disconnected => ClientDisconnected::new_err("client disconnected"),
        }
    }
}

/// `OSError(errno, strerror)` picks the matching subclass (ConnectionResetError,
/// FileNotFoundError, ...) and keeps `errno`, as Python's own socket calls do.
fn io_to_py(e: std::io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(code) => {
            // The system's text without Rust's " (os error N)" suffix (libc's strerror is not
            // thread-safe).
            let full = e.to_string();
            let text = full
                .strip_suffix(&format!(" (os error {code})"))
                .unwrap_or(&full)
                .to_owned();
            // The subclass is chosen by calling OSError itself; a lazily raised OSError
            // would stay a plain OSError.
            Python::with_gil(
                |py| match py.get_type::<PyOSError>().call1((code, text.as_str())) {
                    Ok(exc) => PyErr::from_value(exc),
                    Err(e) => e,
                },
            )
        }
        None => PyErr::from(e),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_become_the_matching_oserror_with_errno() {
        pyo3::prepare_freethreaded_python();
        Python::with_gil(|py| {
            let err: PyErr =
                Error::from(std::io::Error::from_raw_os_error(libc::ECONNRESET)).into();
            let value = err.value(py);
            assert!(err.is_instance_of::<pyo3::exceptions::PyConnectionResetError>(py));
            let errno: i32 = value
                .getattr("errno")
                .and_then(|e| e.extract())
                .expect("errno");
            assert_eq!(errno, libc::ECONNRESET);
            let err: PyErr = Error::protocol("bad message 'x'").into();
            assert!(err.is_instance_of::<ProtocolError>(py));
            assert!(err.is_instance_of::<PyRuntimeError>(py));
            let err: PyErr = Error::Config("--limit-request-body must be ...".into()).into();
            assert!(err.is_instance_of::<ConfigError>(py));
            assert!(err.is_instance_of::<PyValueError>(py));
            assert_eq!(
                err.value(py).to_string(),
                "--limit-request-body must be ..."
            );
        });
    }
}
