//! `wsgi.file_wrapper`: a file the server sends itself. Iterating it reads through Python
//! (for servers or middleware that iterate); juggler instead reads a regular file's
//! descriptor from Rust with the GIL released.

use std::os::fd::{AsRawFd, OwnedFd};

use pyo3::exceptions::PyStopIteration;
use pyo3::intern;
use pyo3::prelude::*;

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

/// A regular file to send from Rust: our own descriptor (the app's may be closed by another
/// Python thread while the GIL is released), where to start, and its size.
pub struct NativeFile {
    pub fd: OwnedFd,
    pub offset: u64,
    pub size: u64,
}

impl FileWrapper {
    /// The regular file behind the file-like, if it has one.
    pub fn native_file(&self, py: Python<'_>) -> Option<NativeFile> {
        let f = self.filelike.bind(py);
        let fd: i32 = f.call_method0(intern!(py, "fileno")).ok()?.extract().ok()?;
        let offset: u64 = f.call_method0(intern!(py, "tell")).ok()?.extract().ok()?;
        let fd = crate::server::listener::dup_fd(fd).ok()?;
        // SAFETY: fstat writes into the zeroed struct we own; the result is checked.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0
            || st.st_mode & libc::S_IFMT != libc::S_IFREG
        {
            return None;
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        Some(NativeFile { fd, offset, size })
    }
}
