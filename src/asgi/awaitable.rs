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

#[cfg(test)]
mod tests {
    use pyo3::types::PyDict;

    use super::*;
    use crate::interface::test_support::with_py;

    /// Runs `code` with `r` (a fresh `Ready(42)`) and `d` (a `Done`) bound; gives `out`'s repr.
    fn run(code: &str) -> String {
        with_py(|py| {
            let locals = PyDict::new(py);
            let value = 42i32.into_pyobject(py).expect("int").into_any().unbind();
            let ready = Py::new(py, Ready::new(value)).expect("ready");
            locals.set_item("r", ready).expect("r");
            locals
                .set_item("d", Py::new(py, Done).expect("done"))
                .expect("d");
            let code = std::ffi::CString::new(code).expect("code");
            py.run(&code, Some(&locals), None).expect("runs");
            let out = locals.get_item("out").expect("get").expect("out");
            out.repr().expect("repr").to_string()
        })
    }

    const STOP: &str = "def stop(f, *a):\n    try:\n        return ('yielded', f(*a))\n    \
                        except StopIteration as e:\n        return ('stopped', e.value)\n    \
                        except Exception as e:\n        return ('raised', type(e).__name__)\n";

    #[test]
    fn ready_awaits_to_its_value_once() {
        let out = run(&format!(
            "{STOP}async def main():\n    return await r\n\
             first = stop(main().send, None)\n\
             out = (first, r.__await__() is r, iter(r) is r, stop(next, r))"
        ));
        assert_eq!(out, "(('stopped', 42), True, True, ('stopped', None))");
    }

    #[test]
    fn ready_ignores_what_is_sent_and_is_spent_by_throw_or_close() {
        let out = run(&format!("{STOP}out = (stop(r.send, 'x'), stop(next, r))"));
        assert_eq!(out, "(('stopped', 42), ('stopped', None))");
        let out = run(&format!(
            "{STOP}out = (stop(r.throw, ValueError('v')), stop(next, r))"
        ));
        assert_eq!(out, "(('raised', 'ValueError'), ('stopped', None))");
        let out = run(&format!("{STOP}r.close()\nout = stop(next, r)"));
        assert_eq!(out, "('stopped', None)");
    }

    #[test]
    fn done_awaits_to_none_every_time() {
        let out = run(&format!(
            "{STOP}async def main():\n    await d\n    await d\n    return 'after'\n\
             out = (stop(main().send, None), d.__await__() is d, iter(d) is d, \
             stop(next, d), stop(d.throw, KeyError('k')), d.close())"
        ));
        assert_eq!(
            out,
            "(('stopped', 'after'), True, True, ('stopped', None), ('raised', 'KeyError'), None)"
        );
    }
}
