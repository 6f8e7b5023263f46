//! `wsgi.file_wrapper`: a file the server sends itself. Iterating it reads through Python
//! (for servers or middleware that iterate); juggler instead reads a regular file's
//! descriptor from Rust with the GIL released.

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

impl FileWrapper {
    /// The descriptor and current position of a regular file, if the file-like has them.
    pub fn native_file(&self, py: Python<'_>) -> Option<(i32, u64)> {
        let f = self.filelike.bind(py);
        let fd: i32 = f.call_method0(intern!(py, "fileno")).ok()?.extract().ok()?;
        // SAFETY: fstat writes into the zeroed struct we own; the result is checked.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return None;
        }
        let offset: u64 = f.call_method0(intern!(py, "tell")).ok()?.extract().ok()?;
        Some((fd, offset))
    }
}
