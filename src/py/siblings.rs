//! `LoadSlots`: the supervisor's shared memory where sibling workers publish their open
//! connection counts (see `transport::balance`). Made before forking; each worker is given one
//! slot as `server(load_slot=(slots, index))` of its interface.

use std::sync::Arc;

use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;

use crate::error::Error;
use crate::transport::balance::SharedSlots;

#[pyclass(frozen, module = "juggler._juggler")]
pub struct LoadSlots(pub Arc<SharedSlots>);

#[pymethods]
impl LoadSlots {
    #[new]
    fn new(capacity: usize) -> PyResult<Self> {
        Ok(Self(Arc::new(
            SharedSlots::new(capacity).map_err(Error::from)?,
        )))
    }

    fn __len__(&self) -> usize {
        self.0.capacity()
    }

    /// The open connections of the worker in `index`, or None if none accepts there.
    fn get(&self, index: usize) -> Option<u64> {
        self.0.get(index)
    }

    /// Marks `index` as unused (its worker stopped, or stopped accepting).
    fn clear(&self, index: usize) -> PyResult<()> {
        if index >= self.0.capacity() {
            return Err(PyIndexError::new_err(format!("no slot {index}")));
        }
        self.0.set(index, None);
        Ok(())
    }
}
