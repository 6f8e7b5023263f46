//! `_juggler.close_gate(fd)`: the supervisor closes the shared listening socket's gate before
//! it stops the workers (see `transport::gate`), so that they serve what is queued on it.

use pyo3::prelude::*;

use crate::error::Error;
use crate::transport::gate;

/// Closes the gate of the listening socket `fd`: the kernel completes no new handshake on it,
/// and workers sharing it serve the connections already queued before they stop.
#[pyfunction]
pub fn close_gate(fd: i32) -> PyResult<()> {
    gate::close(fd).map_err(|e| Error::from(e).into())
}
