//! Balancing connections between worker processes that share one listening socket.
//!
//! When a connection arrives, in practice the same worker nearly always takes it (seen here:
//! all 16 connections of a CPU-bound load went to one of two workers, halving their
//! throughput; traced, the other worker's epoll did not even report them). So each worker
//! publishes its open connection count in memory shared by all workers (mapped by the
//! supervisor before it forks), and one that is woken while a sibling holds fewer
//! connections leaves the new connection in the kernel's queue and nudges that sibling
//! through its eventfd (also made before the fork) to take it; if the sibling has not within
//! a moment, the worker takes it after all.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::shared_cells::SharedCells;

/// A slot no worker uses (or whose worker stopped accepting).
const ABSENT: u64 = u64::MAX;

/// One count per worker slot, in an anonymous shared mapping, and one eventfd per slot to
/// nudge its worker.
pub struct SharedSlots {
    cells: SharedCells,
    nudges: Vec<OwnedFd>,
}

impl SharedSlots {
    pub fn new(len: usize) -> io::Result<Self> {
        let cells = SharedCells::new(len)?;
        let mut nudges = Vec::with_capacity(cells.len());
        for _ in 0..cells.len() {
            // SAFETY: eventfd returns a new descriptor or -1; it never touches memory.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a new descriptor that nothing else owns.
            nudges.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        for i in 0..cells.len() {
            cells.cell(i).store(ABSENT, Ordering::Relaxed);
        }
        Ok(Self { cells, nudges })
    }

    /// How many slots there are (never zero).
    pub fn capacity(&self) -> usize {
        self.cells.len()
    }

    fn slot(&self, index: usize) -> &AtomicU64 {
        self.cells.cell(index)
    }

    /// The count in `index`, or None for an absent worker.
    pub fn get(&self, index: usize) -> Option<u64> {
        (index < self.capacity())
            .then(|| self.slot(index).load(Ordering::Relaxed))
            .filter(|&v| v != ABSENT)
    }

    pub fn set(&self, index: usize, value: Option<u64>) {
        if index < self.capacity() {
            self.slot(index)
                .store(value.unwrap_or(ABSENT), Ordering::Relaxed);
        }
    }

    /// The other worker present with the lowest count, and that count.
    fn least_other(&self, me: usize) -> Option<(usize, u64)> {
        (0..self.capacity())
            .filter(|&i| i != me)
            .filter_map(|i| self.get(i).map(|n| (i, n)))
            .min_by_key(|&(_, n)| n)
    }

    /// Asks the worker in `index` to try accepting.
    fn nudge(&self, index: usize) {
        if let Some(fd) = self.nudges.get(index) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a local to an eventfd we own; a full counter
            // (EAGAIN) means the worker has been nudged already.
            unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }
}

/// One worker's place among its siblings.
#[derive(Clone)]
pub struct Balance {
    pub slots: Arc<SharedSlots>,
    pub me: usize,
}

impl Balance {
    pub fn publish(&self, connections: usize) {
        self.slots.set(self.me, Some(connections as u64));
    }

    /// Stops counting as a worker that accepts: siblings no longer leave connections for it.
    pub fn leave(&self) {
        self.slots.set(self.me, None);
    }

    /// A sibling holding fewer connections than this worker's `connections`.
    pub fn less_loaded_sibling(&self, connections: usize) -> Option<usize> {
        self.slots
            .least_other(self.me)
            .filter(|&(_, least)| (connections as u64) > least)
            .map(|(index, _)| index)
    }

    pub fn nudge(&self, sibling: usize) {
        self.slots.nudge(sibling);
    }

    /// The eventfd siblings write to when they leave a connection for this worker.
    pub fn nudged_fd(&self) -> RawFd {
        self.slots.nudges[self.me].as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_defers_only_to_a_less_loaded_sibling_that_is_present() {
        let slots = Arc::new(SharedSlots::new(4).expect("mmap"));
        let a = Balance {
            slots: slots.clone(),
            me: 0,
        };
        let b = Balance { slots, me: 1 };
        a.publish(0);
        assert_eq!(a.less_loaded_sibling(0), None, "alone: never defers");
        b.publish(0);
        assert_eq!(a.less_loaded_sibling(0), None, "a tie: both accept");
        a.publish(1);
        assert_eq!(a.less_loaded_sibling(1), Some(1));
        assert_eq!(b.less_loaded_sibling(0), None);
        b.leave();
        assert_eq!(
            a.less_loaded_sibling(5),
            None,
            "a sibling that left is not waited for"
        );
        assert_eq!(a.slots.get(1), None);
        assert_eq!(a.slots.get(0), Some(1));
        assert_eq!(a.slots.get(99), None, "out of range is absent");
        assert_eq!(a.slots.capacity(), 4);
        assert_eq!(a.slots.get(4), None, "one past the end is out of range");
        a.slots.set(4, Some(7)); // ignored, not written past the mapping
        assert_eq!(
            (0..4).filter_map(|i| a.slots.get(i)).max(),
            Some(1),
            "no stray write"
        );
    }

    #[test]
    fn a_nudge_makes_the_siblings_eventfd_readable() {
        let slots = Arc::new(SharedSlots::new(2).expect("mmap"));
        let a = Balance {
            slots: slots.clone(),
            me: 0,
        };
        let b = Balance { slots, me: 1 };
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into a local from an eventfd we own.
        let before = unsafe { libc::read(b.nudged_fd(), (&mut count as *mut u64).cast(), 8) };
        assert_eq!(before, -1, "nothing yet");
        a.nudge(1);
        a.nudge(1);
        // SAFETY: as above.
        let after = unsafe { libc::read(b.nudged_fd(), (&mut count as *mut u64).cast(), 8) };
        assert_eq!((after, count), (8, 2));
    }

    #[test]
    fn counts_are_shared_with_a_forked_child() {
        let slots = SharedSlots::new(2).expect("mmap");
        slots.set(0, Some(0));
        // SAFETY: the child only touches the mapping and exits at once.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            slots.set(0, Some(42));
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0, "fork failed");
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(slots.get(0), Some(42));
    }
}
