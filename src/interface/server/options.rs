//! What an interface's `server()` is given besides the listener, checked in full before
//! anything of the server is built, so that a bad slot or interval leaves nothing half made
//! (no mailbox, no thread pool, no duplicated socket).

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;

use crate::error::Error;
use crate::metrics::{Area, Slot};
use crate::py::{LoadSlots, Metrics, TlsSettings};
use crate::transport::balance::{Balance, SharedSlots};

/// Below this a heartbeat would be a busy loop of the I/O thread, not a sign of life.
const MIN_HEARTBEAT: Duration = Duration::from_millis(1);

/// `server()`'s keywords, checked.
pub struct ServerOptions {
    /// Serve TLS with this configuration (a handshake before each connection's HTTP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// This worker's place among siblings sharing one socket (`LoadSlots`).
    pub balance: Option<Balance>,
    /// This worker's slot in the shared metrics (`--metrics-bind`).
    pub metrics: Option<Slot>,
    pub heartbeat: Option<Heartbeat>,
    /// Called with the server, on the loop thread, once `--max-requests` is reached.
    pub on_request_limit: Option<PyObject>,
    /// The listening socket is this worker's alone (`--reuse-port`): on a stop it closes the
    /// socket's gate itself (`transport::gate`), which on a shared socket is the supervisor's
    /// to do.
    pub own_socket: bool,
}

/// Calls `callback(server)` on the loop thread every `period`, from a timer on the I/O
/// thread: the loop runs it only when it turns, and it costs the loop nothing in between (a
/// timer on the loop itself would make every turn dearer).
pub struct Heartbeat {
    pub period: Duration,
    pub callback: PyObject,
}

/// A keyword of `server()` that cannot be served.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum BadOption {
    #[error("slot {index} of {len} does not exist")]
    LoadSlot { index: usize, len: usize },
    #[error("metrics slot {index} of {len} does not exist")]
    MetricsSlot { index: usize, len: usize },
    #[error("heartbeat interval must be at least 0.001 seconds, got {0}")]
    HeartbeatInterval(f64),
}

impl From<BadOption> for PyErr {
    fn from(err: BadOption) -> PyErr {
        match err {
            BadOption::LoadSlot { .. } | BadOption::MetricsSlot { .. } => {
                PyIndexError::new_err(err.to_string())
            }
            BadOption::HeartbeatInterval(_) => Error::Config(err.to_string()).into(),
        }
    }
}

impl ServerOptions {
    /// From the Python keywords of `server()`.
    pub fn new(
        tls: Option<&Bound<'_, TlsSettings>>,
        load_slot: Option<(Bound<'_, LoadSlots>, usize)>,
        metrics_slot: Option<(Bound<'_, Metrics>, usize)>,
        heartbeat: Option<(f64, PyObject)>,
        on_request_limit: Option<PyObject>,
        own_socket: bool,
    ) -> Result<Self, BadOption> {
        Ok(Self {
            tls: tls.map(|t| t.get().config.clone()),
            balance: load_slot
                .map(|(slots, index)| balance(slots.get().0.clone(), index))
                .transpose()?,
            metrics: metrics_slot
                .map(|(metrics, index)| metrics_slot_of(metrics.get().0.clone(), index))
                .transpose()?,
            heartbeat: heartbeat
                .map(|(interval, callback)| {
                    Ok::<_, BadOption>(Heartbeat {
                        period: heartbeat_period(interval)?,
                        callback,
                    })
                })
                .transpose()?,
            on_request_limit,
            own_socket,
        })
    }
}

fn balance(slots: Arc<SharedSlots>, index: usize) -> Result<Balance, BadOption> {
    let len = slots.capacity();
    if index >= len {
        return Err(BadOption::LoadSlot { index, len });
    }
    Ok(Balance { slots, me: index })
}

fn metrics_slot_of(area: Arc<Area>, index: usize) -> Result<Slot, BadOption> {
    let len = area.slots();
    Slot::new(area, index).ok_or(BadOption::MetricsSlot { index, len })
}

/// Seconds from Python: NaN, infinities, negatives and values too large for a `Duration` are
/// refused here rather than panicking in the timer.
fn heartbeat_period(interval: f64) -> Result<Duration, BadOption> {
    Duration::try_from_secs_f64(interval)
        .ok()
        .filter(|period| *period >= MIN_HEARTBEAT)
        .ok_or(BadOption::HeartbeatInterval(interval))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interface::test_support::with_py;

    #[test]
    fn a_load_slot_must_exist() {
        let slots = Arc::new(SharedSlots::new(2).expect("mmap"));
        let ok = balance(slots.clone(), 1).expect("slot 1 of 2");
        assert_eq!(ok.me, 1);
        assert!(Arc::ptr_eq(&ok.slots, &slots));
        assert_eq!(
            balance(slots, 2).err(),
            Some(BadOption::LoadSlot { index: 2, len: 2 })
        );
    }

    #[test]
    fn a_metrics_slot_must_exist() {
        let area = Arc::new(Area::new(3).expect("mmap"));
        assert!(metrics_slot_of(area.clone(), 2).is_ok());
        assert_eq!(
            metrics_slot_of(area, 3).err(),
            Some(BadOption::MetricsSlot { index: 3, len: 3 })
        );
    }

    #[test]
    fn a_heartbeat_interval_is_at_least_a_millisecond_and_finite() {
        assert_eq!(heartbeat_period(0.001), Ok(Duration::from_millis(1)));
        assert_eq!(heartbeat_period(2.5), Ok(Duration::from_millis(2500)));
        for bad in [0.0, 0.0009, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            match heartbeat_period(bad) {
                Err(BadOption::HeartbeatInterval(got)) => {
                    assert!(got.is_nan() || got == bad, "{got} for {bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_slots_raise_index_error_and_a_bad_interval_value_error() {
        with_py(|py| {
            let err = PyErr::from(BadOption::LoadSlot { index: 5, len: 2 });
            assert!(err.is_instance_of::<PyIndexError>(py));
            assert_eq!(err.value(py).to_string(), "slot 5 of 2 does not exist");
            let err = PyErr::from(BadOption::MetricsSlot { index: 4, len: 1 });
            assert!(err.is_instance_of::<PyIndexError>(py));
            assert_eq!(
                err.value(py).to_string(),
                "metrics slot 4 of 1 does not exist"
            );
            let err = PyErr::from(BadOption::HeartbeatInterval(0.0));
            assert!(err.is_instance_of::<pyo3::exceptions::PyValueError>(py));
            assert_eq!(
                err.value(py).to_string(),
                "heartbeat interval must be at least 0.001 seconds, got 0"
            );
        });
    }
}
