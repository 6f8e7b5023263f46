//! Requests posted to the event loop whose coroutine has not taken its first step: the
//! loop's own queue. While it is long the loop is busy (a CPU-bound handler), and the worker
//! stops accepting so that an idle sibling takes new connections (`server::accept`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::server::Registry;

#[derive(Default)]
pub struct Unstarted(AtomicUsize);

impl Unstarted {
    /// I/O thread: a request was posted to the loop.
    pub fn posted(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One posted request, counted until it starts (or is given up): dropping it uncounts it.
pub struct Waiting {
    unstarted: Arc<Unstarted>,
    registry: Arc<Registry>,
}

impl Waiting {
    pub fn new(unstarted: Arc<Unstarted>, registry: Arc<Registry>) -> Self {
        Self {
            unstarted,
            registry,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.unstarted.0.fetch_sub(1, Ordering::Relaxed);
        self.registry.accept_gate().work_taken();
    }
}
