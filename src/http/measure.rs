//! Counting a request for `--metrics-bind`: in flight from the moment hyper hands over its
//! head until hyper drops its response body (written out, cut, or the client gone), then
//! counted by status with how long that took.

use std::time::Instant;

use crate::metrics::Slot;

/// The status counted for a request whose client left before any response began (nginx's
/// convention: no status was ever sent).
const CLIENT_LEFT: u16 = 499;

pub struct Measure {
    slot: Slot,
    start: Instant,
    status: u16,
}

impl Measure {
    pub fn begin(slot: &Slot) -> Self {
        slot.request_began();
        Self {
            slot: slot.clone(),
            start: Instant::now(),
            status: CLIENT_LEFT,
        }
    }

    /// The response that went out.
    pub fn answered(&mut self, status: u16) {
        self.status = status;
    }
}

impl Drop for Measure {
    fn drop(&mut self) {
        self.slot.request_ended(self.status, self.start.elapsed());
    }
}
