//! Atomic cells in an anonymous shared mapping: made by the supervisor before it forks, so
//! that the workers and the supervisor all see the same memory. Used for the workers'
//! connection counts (`transport::balance`) and their metrics (`metrics`).

use std::io;
use std::sync::atomic::AtomicU64;

pub struct SharedCells {
    ptr: *mut AtomicU64,
    len: usize,
}

// SAFETY: the mapping is only accessed through atomics, and lives as long as this value.
unsafe impl Send for SharedCells {}
unsafe impl Sync for SharedCells {}

impl SharedCells {
    /// `len` cells (at least one), all zero.
    pub fn new(len: usize) -> io::Result<Self> {
        let len = len.max(1);
        let bytes = len
            .checked_mul(std::mem::size_of::<AtomicU64>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        // SAFETY: a fresh anonymous mapping, zero-filled by the kernel; checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: there is always at least one cell.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The cell at `index`; panics beyond the mapping (callers check their own bounds).
    pub fn cell(&self, index: usize) -> &AtomicU64 {
        assert!(index < self.len, "shared cell {index} of {}", self.len);
        // SAFETY: in bounds (checked above) of a mapping that is aligned for u64 (page
        // aligned) and valid until drop.
        unsafe { &*self.ptr.add(index) }
    }
}

impl Drop for SharedCells {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what new() mapped.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len * std::mem::size_of::<AtomicU64>());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn cells_start_at_zero_and_are_never_none() {
        let cells = SharedCells::new(0).expect("mmap");
        assert_eq!(cells.len(), 1);
        let cells = SharedCells::new(3).expect("mmap");
        assert!((0..3).all(|i| cells.cell(i).load(Ordering::Relaxed) == 0));
    }

    #[test]
    #[should_panic(expected = "shared cell 3 of 3")]
    fn a_cell_beyond_the_mapping_panics_instead_of_reading_past_it() {
        let cells = SharedCells::new(3).expect("mmap");
        cells.cell(3);
    }

    #[test]
    fn a_size_that_overflows_is_an_error_not_a_small_mapping() {
        assert!(SharedCells::new(usize::MAX).is_err());
    }
}
