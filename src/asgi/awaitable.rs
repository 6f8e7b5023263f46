//! Awaitables that finish without an `asyncio.Future` when their result is already known.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;

/// `await`s to `value` at once: `__await__` returns itself and its first `__next__` stops with
/// the value, exactly what a coroutine does when it returns without suspending.
#[pyclass(module = "juggler._juggler")]
pub struct Ready {
    value: Option<PyObject>,
}

impl Ready {
    pub fn new(value: PyObject) -> Self {
        Self { value: Some(value) }
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self) -> PyResult<Option<PyObject>> {
        match self.value.take() {
            Some(v) => Err(PyStopIteration::new_err((v,))),
            None => Ok(None),
        }
    }

    /// `coroutine.send(value)`: the value sent in is ignored, as by a bare `yield`.
    fn send(&mut self, value: PyObject) -> PyResult<Option<PyObject>> {
        drop(value);
        self.__next__()
    }

    #[pyo3(signature = (exc, *_args))]
    fn throw(
        &mut self,
        exc: Bound<'_, PyAny>,
        _args: Bound<'_, pyo3::types::PyTuple>,
    ) -> PyResult<()> {
        self.value = None;
        Err(PyErr::from_value(exc))
    }

    fn close(&mut self) {
        self.value = None;
    }
}

/// `await`s to `None` at once and holds no state, so one shared instance serves every `send()`.
#[pyclass(frozen, module = "juggler._juggler")]
pub struct Done;

#[pymethods]
impl Done {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self) -> Option<PyObject> {
        None
    }

    fn send(&self, value: PyObject) -> Option<PyObject> {
        drop(value);
        None
    }

    #[pyo3(signature = (exc, *_args))]
    fn throw(&self, exc: Bound<'_, PyAny>, _args: Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        Err(PyErr::from_value(exc))
    }

    fn close(&self) {}
}
