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
        let fd = crate::transport::listener::dup_fd(fd).ok()?;
        FileRange::from_fd(fd, offset).ok()
    }
}

#[cfg(test)]
mod tests {
    use pyo3::types::PyDict;

    use super::*;
    use crate::interface::test_support::with_py;

    fn run(code: &str) -> String {
        with_py(|py| {
            let globals = PyDict::new(py);
            globals
                .set_item("FileWrapper", py.get_type::<FileWrapper>())
                .expect("type");
            let code = std::ffi::CString::new(code).expect("code");
            py.run(&code, Some(&globals), None).expect("runs");
            let out = globals.get_item("out").expect("get").expect("out");
            out.repr().expect("repr").to_string()
        })
    }

    #[test]
    fn iterating_reads_blocks_of_the_given_size_until_the_end() {
        assert_eq!(
            // islice: a wrapper that never ends fails here instead of hanging.
            run(
                "import io, itertools\nw = FileWrapper(io.BytesIO(b'abcdefg'), 3)\n\
                 out = (iter(w) is w, list(itertools.islice(w, 9)), w.blksize)"
            ),
            "(True, [b'abc', b'def', b'g'], 3)"
        );
        assert_eq!(
            run("import io\nw = FileWrapper(io.BytesIO(b'x' * 9000))\n\
                 out = ([len(b) for b in w], w.blksize)"),
            "([8192, 808], 8192)"
        );
        assert_eq!(
            run("import io\nout = list(FileWrapper(io.BytesIO(b'ab'), 0))"),
            "[b'a', b'b']"
        );
    }

    #[test]
    fn close_closes_the_file_when_it_can() {
        assert_eq!(
            run(
                "import io\nf = io.BytesIO(b'')\nw = FileWrapper(f)\nw.close()\n\
                 out = (f.closed, w.filelike is f)"
            ),
            "(True, True)"
        );
        assert_eq!(
            run("class R:\n    def read(self, n):\n        return b''\n\
                 import itertools\nw = FileWrapper(R())\nw.close()\nout = list(itertools.islice(w, 3))"),
            "[]"
        );
    }

    #[test]
    fn only_a_regular_file_is_sent_natively_from_its_position() {
        with_py(|py| {
            let dir = std::env::temp_dir().join(format!("juggler-fw-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("mkdir");
            let path = dir.join("f");
            std::fs::write(&path, b"0123456789").expect("write");
            let io = py.import("io").expect("io");
            let f = io
                .call_method1("open", (path.to_str().expect("utf-8"), "rb"))
                .expect("open");
            f.call_method1("seek", (3,)).expect("seek");
            let w = FileWrapper::new(f.clone().unbind(), 8192);
            let range = w.native_file(py).expect("a regular file");
            assert_eq!((range.offset, range.len), (3, 7));
            f.call_method0("close").expect("close");
            assert!(
                w.native_file(py).is_none(),
                "a closed file has no descriptor"
            );
            let bytes = io.call_method1("BytesIO", (b"x",)).expect("bytesio");
            assert!(FileWrapper::new(bytes.unbind(), 1)
                .native_file(py)
                .is_none());
        })
    }
}
