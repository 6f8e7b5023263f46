//! `Metrics`: the supervisor's handle on the memory where workers count what
//! `--metrics-bind` serves (see `crate::metrics`). Made before forking; each worker is given
//! one slot as `server(metrics_slot=(metrics, index))` of its interface, and the supervisor
//! renders all of them.

use std::sync::Arc;

use pyo3::exceptions::{PyIndexError, PyRuntimeError};
use pyo3::prelude::*;

use crate::error::Error;
use crate::metrics::{render, Area, Format, Scrape};

#[pyclass(frozen, module = "juggler._juggler")]
pub struct Metrics(pub Arc<Area>);

#[pymethods]
impl Metrics {
    #[new]
    fn new(slots: usize) -> PyResult<Self> {
        Ok(Self(Arc::new(Area::new(slots).map_err(Error::from)?)))
    }

    fn __len__(&self) -> usize {
        self.0.slots()
    }

    /// The worker in `slot` is gone: its gauges (in flight, connections, lag, threads) go back
    /// to zero; its counters stay.
    fn clear(&self, slot: usize) -> PyResult<()> {
        if slot >= self.0.slots() {
            return Err(PyIndexError::new_err(format!("no metrics slot {slot}")));
        }
        self.0.clear_gauges(slot);
        Ok(())
    }

    /// Requests answered so far by every worker, those gone included (for systemd's status
    /// line): the sum of the duration histograms, which count each answered request once.
    fn requests(&self) -> u64 {
        (0..self.0.slots())
            .map(|slot| self.0.buckets(slot).iter().sum::<u64>())
            .sum()
    }

    /// The Prometheus exposition of every slot: `workers` are the (slot, pid) of the workers
    /// alive, `restarts` the supervisor's (reason, count) of replaced workers; OpenMetrics
    /// text if `openmetrics`, else the 0.0.4 text format. Returns (content type, text).
    fn render(
        &self,
        py: Python<'_>,
        workers: Vec<(usize, u32)>,
        restarts: Vec<(String, u64)>,
        openmetrics: bool,
    ) -> PyResult<(&'static str, String)> {
        let format = if openmetrics {
            Format::OpenMetrics
        } else {
            Format::Text
        };
        // A slot a worker never got (beyond the area) would panic in the lookup: left out.
        let slots = self.0.slots();
        let workers = workers.into_iter().filter(|&(s, _)| s < slots).collect();
        let scrape = Scrape {
            area: self.0.clone(),
            workers,
            restarts,
        };
        // The supervisor calls this from its only loop: a panic must come back as an ordinary
        // exception its endpoint answers with a 500, not as PyO3's PanicException (a
        // BaseException), which would end the supervisor.
        let rendered = py.allow_threads(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render(scrape, format)))
        });
        let text = match rendered {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                return Err(PyRuntimeError::new_err(format!(
                    "cannot write the metrics: {e}"
                )))
            }
            Err(_) => return Err(PyRuntimeError::new_err("writing the metrics panicked")),
        };
        Ok((format.content_type(), text))
    }
}
