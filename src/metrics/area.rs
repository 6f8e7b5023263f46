//! The shared mapping: one fixed block of `u64` cells per worker slot.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::shared_cells::SharedCells;

/// Upper bounds of the request duration histogram, in seconds (the last bucket, +Inf, is
/// implied). Finer at the low end than Prometheus' defaults: most requests a server like this
/// sees take well under 5 ms.
pub const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The same bounds in nanoseconds, compared on the hot path without floating point.
const BUCKET_NANOS: [u64; 13] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Status codes hyper can carry: 100 to 999, a cell each.
const FIRST_STATUS: u16 = 100;
const STATUSES: usize = 900;

/// Cell indexes within a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Cell {
    /// Gauges, cleared when the slot's worker is gone.
    InFlight,
    Connections,
    LoopLagNanos,
    Threads,
    ThreadsBusy,
    Queued,
    /// 1 when the worker runs its app on threads of its own (WSGI).
    Threaded,
    /// Counters, kept for the life of the supervisor.
    ConnectionsTotal,
    BytesIn,
    BytesOut,
    DurationNanos,
}

const GAUGES: [Cell; 7] = [
    Cell::InFlight,
    Cell::Connections,
    Cell::LoopLagNanos,
    Cell::Threads,
    Cell::ThreadsBusy,
    Cell::Queued,
    Cell::Threaded,
];
const FIRST_BUCKET: usize = Cell::DurationNanos as usize + 1;
/// One cell per bucket bound, and one for +Inf.
const FIRST_STATUS_CELL: usize = FIRST_BUCKET + BUCKET_NANOS.len() + 1;
const SLOT_CELLS: usize = FIRST_STATUS_CELL + STATUSES;

/// Every worker slot's cells, in memory shared with the processes forked after it is made.
pub struct Area {
    cells: SharedCells,
    slots: usize,
}

impl Area {
    pub fn new(slots: usize) -> io::Result<Self> {
        let slots = slots.max(1);
        let len = slots
            .checked_mul(SLOT_CELLS)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(Self {
            cells: SharedCells::new(len)?,
            slots,
        })
    }

    /// How many worker slots there are (never zero).
    pub fn slots(&self) -> usize {
        self.slots
    }

    fn cell(&self, slot: usize, index: usize) -> &AtomicU64 {
        assert!(
            slot < self.slots && index < SLOT_CELLS,
            "metrics cell out of range"
        );
        self.cells.cell(slot * SLOT_CELLS + index)
    }

    pub(crate) fn get(&self, slot: usize, cell: Cell) -> u64 {
        self.cell(slot, cell as usize).load(Ordering::Relaxed)
    }

    /// Requests answered with each status by the worker in `slot`: (status, count), non-zero
    /// counts only.
    pub(crate) fn statuses(&self, slot: usize) -> impl Iterator<Item = (u16, u64)> + '_ {
        (0..STATUSES).filter_map(move |i| {
            let n = self
                .cell(slot, FIRST_STATUS_CELL + i)
                .load(Ordering::Relaxed);
            (n > 0).then_some((FIRST_STATUS + i as u16, n))
        })
    }

    /// The histogram's per-bucket counts (not cumulative), +Inf last.
    pub(crate) fn buckets(&self, slot: usize) -> [u64; BUCKET_NANOS.len() + 1] {
        std::array::from_fn(|i| self.cell(slot, FIRST_BUCKET + i).load(Ordering::Relaxed))
    }

    /// A worker in `slot` is gone: its gauges no longer stand for anything. Its counters stay,
    /// so that totals never go down.
    pub fn clear_gauges(&self, slot: usize) {
        if slot < self.slots {
            for cell in GAUGES {
                self.cell(slot, cell as usize).store(0, Ordering::Relaxed);
            }
        }
    }
}

/// One worker's slot: what its I/O thread writes.
#[derive(Clone)]
pub struct Slot {
    area: Arc<Area>,
    index: usize,
}

impl Slot {
    /// None when `index` is not a slot of `area`.
    pub fn new(area: Arc<Area>, index: usize) -> Option<Self> {
        (index < area.slots).then_some(Self { area, index })
    }

    fn cell(&self, cell: Cell) -> &AtomicU64 {
        self.area.cell(self.index, cell as usize)
    }

    fn add(&self, cell: Cell, n: u64) {
        self.cell(cell).fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(&self, cell: Cell, value: u64) {
        self.cell(cell).store(value, Ordering::Relaxed);
    }

    pub fn request_began(&self) {
        self.add(Cell::InFlight, 1);
    }

    /// A response is over (sent, cut, or its client gone): counted by status, with how long
    /// it took from its head.
    pub fn request_ended(&self, status: u16, took: Duration) {
        self.cell(Cell::InFlight).fetch_sub(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.add(Cell::DurationNanos, nanos);
        let bucket = BUCKET_NANOS.partition_point(|&bound| bound < nanos);
        self.area
            .cell(self.index, FIRST_BUCKET + bucket)
            .fetch_add(1, Ordering::Relaxed);
        let status = usize::from(status.saturating_sub(FIRST_STATUS)).min(STATUSES - 1);
        self.area
            .cell(self.index, FIRST_STATUS_CELL + status)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was accepted (counted once, whatever it becomes).
    pub fn connection_accepted(&self) {
        self.add(Cell::ConnectionsTotal, 1);
    }

    /// Something holds a connection open: an accepted one, or a WebSocket that outlives the
    /// HTTP connection it came from.
    pub fn connection_opened(&self) {
        self.add(Cell::Connections, 1);
    }

    pub fn connection_closed(&self) {
        self.cell(Cell::Connections).fetch_sub(1, Ordering::Relaxed);
    }

    pub fn bytes_in(&self, n: usize) {
        self.add(Cell::BytesIn, n as u64);
    }

    pub fn bytes_out(&self, n: usize) {
        self.add(Cell::BytesOut, n as u64);
    }

    pub fn loop_lag(&self, lag: Duration) {
        self.set(
            Cell::LoopLagNanos,
            u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX),
        );
    }

    /// A thread pool's state (WSGI): threads alive, running a job, and jobs waiting.
    pub fn threads(&self, alive: usize, busy: usize, queued: usize) {
        self.set(Cell::Threaded, 1);
        self.set(Cell::Threads, alive as u64);
        self.set(Cell::ThreadsBusy, busy as u64);
        self.set(Cell::Queued, queued as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(slots: usize, index: usize) -> (Arc<Area>, Slot) {
        let area = Arc::new(Area::new(slots).expect("mmap"));
        let slot = Slot::new(area.clone(), index).expect("in range");
        (area, slot)
    }

    #[test]
    fn a_slot_beyond_the_area_is_refused() {
        let area = Arc::new(Area::new(2).expect("mmap"));
        assert!(Slot::new(area.clone(), 1).is_some());
        assert!(Slot::new(area.clone(), 2).is_none());
        assert_eq!(Area::new(0).expect("mmap").slots(), 1, "never zero slots");
    }

    #[test]
    fn a_request_is_in_flight_until_it_ends_then_counted_by_status_and_bucket() {
        let (area, s) = slot(2, 1);
        s.request_began();
        s.request_began();
        assert_eq!(area.get(1, Cell::InFlight), 2);
        assert_eq!(area.get(0, Cell::InFlight), 0, "slots are apart");
        s.request_ended(200, Duration::from_micros(300));
        s.request_ended(404, Duration::from_millis(30));
        assert_eq!(area.get(1, Cell::InFlight), 0);
        assert_eq!(area.statuses(1).collect::<Vec<_>>(), [(200, 1), (404, 1)]);
        let buckets = area.buckets(1);
        assert_eq!(buckets[0], 1, "300 µs is within 1 ms");
        assert_eq!(buckets[5], 1, "30 ms is within 50 ms, not 25 ms");
        assert_eq!(buckets.iter().sum::<u64>(), 2);
        assert_eq!(area.get(1, Cell::DurationNanos), 30_300_000);
    }

    #[test]
    fn bucket_bounds_are_inclusive_and_the_last_is_infinity() {
        let (area, s) = slot(1, 0);
        s.request_began();
        s.request_ended(200, Duration::from_millis(1));
        s.request_began();
        s.request_ended(200, Duration::from_millis(1) + Duration::from_nanos(1));
        s.request_began();
        s.request_ended(200, Duration::from_secs(11));
        let buckets = area.buckets(0);
        assert_eq!(buckets[0], 1, "exactly 1 ms is `le=\"0.001\"`");
        assert_eq!(buckets[1], 1);
        assert_eq!(buckets[BUCKET_NANOS.len()], 1, "past 10 s is +Inf only");
        assert_eq!(DURATION_BUCKETS.len(), BUCKET_NANOS.len());
        for (secs, nanos) in DURATION_BUCKETS.iter().zip(BUCKET_NANOS) {
            assert_eq!((secs * 1e9).round() as u64, nanos);
        }
    }

    #[test]
    fn statuses_at_both_ends_have_cells() {
        let (area, s) = slot(1, 0);
        for status in [100, 599, 999] {
            s.request_began();
            s.request_ended(status, Duration::ZERO);
        }
        assert_eq!(
            area.statuses(0).collect::<Vec<_>>(),
            [(100, 1), (599, 1), (999, 1)]
        );
    }

    #[test]
    fn clearing_a_slot_zeroes_its_gauges_and_keeps_its_counters() {
        let (area, s) = slot(2, 0);
        let other = Slot::new(area.clone(), 1).expect("in range");
        s.connection_accepted();
        s.connection_opened();
        s.request_began();
        s.bytes_in(10);
        s.bytes_out(20);
        s.loop_lag(Duration::from_millis(5));
        s.threads(4, 3, 2);
        other.connection_opened();
        area.clear_gauges(0);
        area.clear_gauges(7); // beyond the area: nothing to clear, no panic
        for cell in GAUGES {
            assert_eq!(area.get(0, cell), 0, "{cell:?}");
        }
        assert_eq!(area.get(0, Cell::ConnectionsTotal), 1);
        assert_eq!(area.get(0, Cell::BytesIn), 10);
        assert_eq!(area.get(0, Cell::BytesOut), 20);
        assert_eq!(area.get(1, Cell::Connections), 1, "only that slot");
    }

    #[test]
    fn connections_and_threads_are_gauges_and_the_pool_marks_the_slot() {
        let (area, s) = slot(1, 0);
        s.connection_accepted();
        s.connection_opened();
        s.connection_opened();
        s.connection_closed();
        assert_eq!(area.get(0, Cell::Connections), 1);
        assert_eq!(area.get(0, Cell::ConnectionsTotal), 1);
        assert_eq!(area.get(0, Cell::Threaded), 0);
        s.threads(4, 3, 2);
        assert_eq!(
            [
                area.get(0, Cell::Threads),
                area.get(0, Cell::ThreadsBusy),
                area.get(0, Cell::Queued),
                area.get(0, Cell::Threaded)
            ],
            [4, 3, 2, 1]
        );
        s.loop_lag(Duration::from_micros(1500));
        assert_eq!(area.get(0, Cell::LoopLagNanos), 1_500_000);
    }

    #[test]
    fn a_child_process_writes_where_the_parent_reads() {
        let (area, s) = slot(1, 0);
        // SAFETY: the child only does atomic adds and _exit, nothing that needs other threads.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            s.request_began();
            s.request_ended(201, Duration::ZERO);
            s.bytes_in(7);
            // SAFETY: ends the child without running the parent's destructors or test harness.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(area.statuses(0).collect::<Vec<_>>(), [(201, 1)]);
        assert_eq!(area.get(0, Cell::BytesIn), 7);
    }
}
