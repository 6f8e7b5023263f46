//! The gate of a listening TCP socket that is about to close for good: a socket filter that
//! drops the connection attempts (SYNs without ACK) reaching it, so that they go unanswered,
//! while the last packet of a handshake already under way still completes it into the queue.
//!
//! Why: the kernel completes handshakes on a listening socket by itself, and closing the
//! socket resets every connection still queued on it, requests already sent included (16 of
//! them per restart under a proxy's load, `benches/drain.py`). With the gate closed first, the
//! queue stops growing; the workers serve what it holds, and a client that tried meanwhile
//! sends its SYN again a second later, when the port is closed and refuses it, or served by
//! the next server: it waits, and is never accepted then reset. Connections already queued
//! are not affected: the filter sees only packets for the listener itself. A handshake the
//! gate caught half-way (SYN answered, ACK still on its way) completes into the queue, where
//! the draining workers take it: dropping that ACK too would leave a client that believes it
//! is connected to be reset when the socket closes.
//!
//! The filter belongs to the socket, not to the descriptor, so a gate the supervisor closes on
//! the shared socket is seen by every worker holding a copy ([`is_closed`]), which is how a
//! worker tells a stop (serve the queue) from its own retirement (leave it to the others).
//! A UNIX socket accepts the filter but never consults it for a connection, so the callers
//! close no gate on one (its queue is still reset when it closes). Neither is one closed on a
//! socket juggler inherited (`--fd`, systemd's socket activation): that socket outlives
//! juggler, queue and all, and keeps its filter, which would leave the next server deaf.

use std::io;
use std::os::fd::RawFd;

const fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The classic BPF program, run on each packet for the listener, with the TCP header at
/// offset 0: drop a SYN without ACK (a new connection attempt), keep anything else whole.
const DROP_SYNS: [libc::sock_filter; 5] = [
    // A = the TCP flags byte.
    op(0x30, 0, 0, 13),       // BPF_LD | BPF_B | BPF_ABS
    op(0x54, 0, 0, 0x12),     // BPF_ALU | BPF_AND | BPF_K: SYN and ACK only
    op(0x15, 1, 0, 0x02),     // BPF_JMP | BPF_JEQ | BPF_K: SYN alone? then drop
    op(0x06, 0, 0, u32::MAX), // BPF_RET | BPF_K: keep the whole packet
    op(0x06, 0, 0, 0),        // BPF_RET | BPF_K: keep nothing, i.e. drop
];

/// Closes the gate of the listening socket `fd`: from now on it completes no handshake.
pub fn close(fd: RawFd) -> io::Result<()> {
    let mut program = DROP_SYNS;
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: the kernel copies the program during the call; `fprog` and `program` outlive it,
    // and the length given is the size of `fprog`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::addr_of!(fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a filter is attached to the socket `fd` (its gate was closed by any process that
/// shares it). Errors, and sockets that take no filter, count as open.
pub fn is_closed(fd: RawFd) -> bool {
    // With a zero length the kernel only reports the filter's length in instructions.
    let mut len: libc::socklen_t = 0;
    // SAFETY: a zero `len` means nothing is written through the (dangling but non-null)
    // buffer pointer; `len` lives for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            std::ptr::NonNull::<u8>::dangling().as_ptr().cast(),
            &mut len,
        )
    };
    rc == 0 && len > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn a_closed_gate_keeps_the_queue_and_answers_no_new_handshake() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut queued = TcpStream::connect(addr).expect("connect before the gate");
        assert!(!is_closed(listener.as_raw_fd()));
        close(listener.as_raw_fd()).expect("gate");
        assert!(is_closed(listener.as_raw_fd()));

        // A connection queued before the gate is still there, data and all.
        queued.write_all(b"x").expect("write");
        let (mut accepted, _) = listener.accept().expect("queued connection");
        let mut byte = [0u8; 1];
        accepted.read_exact(&mut byte).expect("read");
        assert_eq!(&byte, b"x");

        // A new attempt is neither completed nor refused: its SYN goes unanswered.
        let late = TcpStream::connect_timeout(&addr, Duration::from_millis(300));
        let err = late.expect_err("no handshake through a closed gate");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        listener.set_nonblocking(true).expect("nonblocking");
        assert_eq!(
            listener
                .accept()
                .map(drop)
                .expect_err("nothing queued")
                .kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn every_copy_of_the_socket_sees_the_gate() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let copy = listener.try_clone().expect("dup");
        close(listener.as_raw_fd()).expect("gate");
        assert!(is_closed(copy.as_raw_fd()));
    }

    #[test]
    fn a_descriptor_that_is_no_socket_counts_as_open() {
        assert!(!is_closed(-1));
        assert!(close(-1).is_err());
    }
}
