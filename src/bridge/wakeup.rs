//! A file descriptor the event loop watches with `add_reader`: the Tokio side makes it readable
//! to wake the loop, the loop thread clears it before draining the mailbox.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct Wakeup {
    fd: OwnedFd,
}

impl Wakeup {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the result is checked before it is owned.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    pub fn fileno(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes the descriptor readable; cheap enough to call from any thread.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to a descriptor we own. A full counter
        // (EAGAIN) still leaves it readable, which is all a wake-up needs.
        unsafe {
            libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    /// Resets the descriptor so the loop sleeps until the next `notify`.
    pub fn clear(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (nothing pending) is fine.
        unsafe {
            libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8);
        }
    }
}

/// Whether `fd` would wake a reader now (for tests of the wake-up protocol).
#[cfg(test)]
pub(crate) fn readable(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_then_clear() {
        let w = Wakeup::new().expect("eventfd");
        assert!(!readable(w.fileno()));
        w.notify();
        w.notify();
        assert!(readable(w.fileno()));
        w.clear();
        assert!(!readable(w.fileno()));
    }
}
