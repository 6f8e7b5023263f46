//! WSGI (PEP 3333): requests become app calls on a pool of blocking threads.

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
