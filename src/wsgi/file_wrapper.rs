//! `wsgi.file_wrapper`: a file the server sends itself. Iterating it reads through Python
//! (for servers or middleware that iterate); juggler instead reads a regular file's
//! descriptor from Rust on the I/O thread (src/http/file.rs), as ASGI pathsend does.

use pyo3::exceptions::PyStopIteration;
use pyo3::intern;
use pyo3::prelude::*;

use crate::http::file::FileRange;

#[pyclass(module = "juggler._juggler")]
pub struct FileWrapper {
    #[pyo3(get)]
    filelike: PyObject,
    #[pyo3(get)]
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: PyObject, blksize: usize) -> Self {
        Self {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<PyObject> {
        let data = self
            .filelike
            .call_method1(py, intern!(py, "read"), (self.blksize,))?;
        if data.bind(py).len()? == 0 {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(data)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.filelike.bind(py).hasattr(intern!(py, "close"))? {
            self.filelike.call_method0(py, intern!(py, "close"))?;
        }
        Ok(())
    }
}

impl FileWrapper {
    /// The regular file behind the file-like, from its current position, if it has one.
    pub fn native_file(&self, py: Python<'_>) -> Option<FileRange> {
        let f = self.filelike.bind(py);
        let fd: i32 = f.call_method0(intern!(py, "fileno")).ok()?.extract().ok()?;
        let offset: u64 = f.call_method0(intern!(py, "tell")).ok()?.extract().ok()?;
        // Our own descriptor: the app's may be closed by another Python thread meanwhile.
        let fd = crate::server::listener::dup_fd(fd).ok()?;
        FileRange::from_fd(fd, offset).ok()
    }
}
