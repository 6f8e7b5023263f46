//! `wsgi.input`: the request body as a blocking file-like object. Reads wait for the client
//! with the GIL released; the end of the body reads as `b""`, for chunked bodies too
//! (`wsgi.input_terminated`).

use std::time::Instant;

use bytes::{Buf, BytesMut};
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::wait::Waiter;
use crate::error::Error;
use crate::http::exchange::{Received, Want};

#[pyclass(module = "juggler._juggler")]
pub struct WsgiInput {
    waiter: Waiter,
    buf: BytesMut,
    eof: bool,
}

impl WsgiInput {
    pub fn new(waiter: Waiter) -> Self {
        Self {
            waiter,
            buf: BytesMut::new(),
            eof: false,
        }
    }

    /// Adds the next piece of the body to the buffer; false at the end of the body.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        if self.eof {
            return Ok(false);
        }
        let started = Instant::now();
        loop {
            match self.waiter.exchange.next_received() {
                Some(Received::Body { data, more }) => {
                    self.buf.extend_from_slice(&data);
                    self.eof = !more;
                    return Ok(true);
                }
                Some(Received::Disconnect) => {
                    self.eof = true;
                    return Err(Error::Disconnected.into());
                }
                None => self.waiter.wait(py, Want::Body, started)?,
            }
        }
    }

    fn take(&mut self, py: Python<'_>, n: usize) -> PyObject {
        let n = n.min(self.buf.len());
        let out = PyBytes::new(py, &self.buf[..n]).into_any().unbind();
        self.buf.advance(n);
        out
    }

    fn line(&mut self, py: Python<'_>, limit: Option<usize>) -> PyResult<PyObject> {
        let mut searched = 0;
        loop {
            if let Some(pos) = self.buf[searched..].iter().position(|&b| b == b'\n') {
                let end = searched + pos + 1;
                return Ok(self.take(py, limit.map_or(end, |l| l.min(end))));
            }
            searched = self.buf.len();
            if limit.is_some_and(|l| self.buf.len() >= l) || !self.fill(py)? {
                return Ok(self.take(py, limit.unwrap_or(usize::MAX)));
            }
        }
    }
}

/// `None` and negative sizes mean "no limit", as for Python's file objects.
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl WsgiInput {
    /// Reads `size` bytes (fewer only at the end of the body), or everything left.
    #[pyo3(signature = (size=None))]
    fn read(&mut self, py: Python<'_>, size: Option<isize>) -> PyResult<PyObject> {
        match limit(size) {
            Some(n) => {
                while self.buf.len() < n && self.fill(py)? {}
                Ok(self.take(py, n))
            }
            None => {
                while self.fill(py)? {}
                Ok(self.take(py, usize::MAX))
            }
        }
    }

    #[pyo3(signature = (size=None))]
    fn readline(&mut self, py: Python<'_>, size: Option<isize>) -> PyResult<PyObject> {
        self.line(py, limit(size))
    }

    /// Lines until the end, or until about `hint` bytes were read.
    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let lines = PyList::empty(py);
        let hint = limit(hint).filter(|&h| h > 0);
        let mut total = 0;
        loop {
            let line = self.line(py, None)?;
            let n = line.bind(py).len()?;
            if n == 0 {
                break;
            }
            lines.append(line)?;
            total += n;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<PyObject> {
        let line = self.line(py, None)?;
        if line.bind(py).len()? == 0 {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(line)
    }
}

#[cfg(test)]
mod tests;
