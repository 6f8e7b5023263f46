//! The Python-facing constructor of [`CoreConfig`]: `CoreConfig(config)` reads the option
//! groups of juggler's `Config` by attribute (`crate::options`), so no option is listed in a
//! signature here.

use pyo3::prelude::*;

use crate::config::{CoreConfig, WorkerSide};
use crate::options::CoreOptions;

#[pymethods]
impl CoreConfig {
    #[new]
    #[pyo3(signature = (options, *, max_requests=None, websockets=true, event_loop=true, access_direct=false))]
    fn new(
        options: CoreOptions,
        max_requests: Option<u64>,
        websockets: bool,
        event_loop: bool,
        access_direct: bool,
    ) -> PyResult<Self> {
        let worker = WorkerSide {
            max_requests,
            websockets,
            event_loop,
            access_direct,
        };
        Ok(Self::from_options(&options, worker)?)
    }

    fn __repr__(&self) -> String {
        format!("{self:?}")
    }
}
