//! One error type for the core, mapped to a readable Python exception at the boundary.

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

pyo3::create_exception!(
    _juggler,
    ClientDisconnected,
    PyOSError,
    "The client went away before the response was sent."
);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid option: {0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("ASGI protocol error: {0}")]
    Protocol(String),
    #[error("client disconnected")]
    Disconnected,
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        match err {
            Error::Config(_) => PyValueError::new_err(err.to_string()),
            Error::Io(e) => PyOSError::new_err(e.to_string()),
            Error::Protocol(_) => PyRuntimeError::new_err(err.to_string()),
            Error::Disconnected => ClientDisconnected::new_err("client disconnected"),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
