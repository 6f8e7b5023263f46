//! A look at the bytes of an upgraded socket before yawc frames them, for the two checks RFC
//! 6455 wants made earlier or differently than yawc makes them:
//!
//! - a reserved opcode fails the connection with 1002 (protocol error); yawc would say 1003;
//! - a control frame longer than 125 bytes is a protocol error; yawc lets a close frame
//!   through and echoes it;
//! - invalid UTF-8 in an uncompressed text frame fails it at the first bad byte, even in
//!   the middle of a frame (§8.1 fail fast); yawc only hands over whole frames.
//!
//! What is found is left in a [`Verdict`] for the framing task, which fails the connection
//! with its own close frame; the bytes from the bad one on are never handed to yawc, so yawc
//! queues no close of its own. Compressed frames are checked after inflating, by the
//! reassembly.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, ReadBuf};

use super::reassembly::Violation;
use super::utf8::Utf8Stream;

/// What the watch found, for the framing task; set at most once.
#[derive(Default)]
pub struct Verdict(Mutex<Option<Violation>>);

impl Verdict {
    pub fn take(&self) -> Option<Violation> {
        self.0.lock().take()
    }
}

/// The socket, watched.
pub struct Watched<S> {
    io: S,
    scanner: Scanner,
    verdict: Arc<Verdict>,
    /// A violation was found: nothing more is read.
    stopped: bool,
}

impl<S> Watched<S> {
    pub fn new(io: S) -> (Self, Arc<Verdict>) {
        let verdict = Arc::new(Verdict::default());
        let watched = Self {
            io,
            scanner: Scanner::default(),
            verdict: verdict.clone(),
            stopped: false,
        };
        (watched, verdict)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.stopped {
            // The connection is being failed; the framing task no longer reads.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let Err((good, violation)) = this.scanner.scan(&buf.filled()[before..]) else {
            return Poll::Ready(Ok(()));
        };
        buf.set_filled(before + good);
        this.stopped = true;
        *this.verdict.0.lock() = Some(violation);
        // The framing task looks at the verdict when it next runs.
        cx.waker().wake_by_ref();
        if good == 0 {
            // Nothing to hand over, and an empty read would mean the end of the stream.
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }
}

forward_async_write!(Watched);

/// Follows frame boundaries through the byte stream (RFC 6455 §5.2). Everything else about
/// a frame (masking required, RSV bits, control frame rules, lengths) is left to yawc.
#[derive(Default)]
struct Scanner {
    /// The header of the next frame, as far as it has come (at most 14 bytes).
    head: [u8; 14],
    head_len: usize,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    mask: [u8; 4],
    /// How far into the payload the current frame is, for the mask.
    offset: u64,
    /// The current frame's payload is text to check, and whether it ends its message.
    checking: Option<bool>,
    /// The message under way is uncompressed text (its continuations are checked too).
    text_message: bool,
    utf8: Utf8Stream,
    /// A close frame went by: the peer sends nothing after it, and we stop looking.
    closed: bool,
}

impl Scanner {
    /// Follows `bytes`; on a violation, how many of them may still be handed over.
    fn scan(&mut self, bytes: &[u8]) -> Result<(), (usize, Violation)> {
        let mut at = 0;
        // Where the frame whose header is being read began, in `bytes`.
        let mut frame_start = 0;
        while at < bytes.len() && !self.closed {
            if self.remaining > 0 {
                let n =
                    (bytes.len() - at).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                self.payload(&bytes[at..at + n])
                    .map_err(|()| (at, Violation::InvalidUtf8))?;
                at += n;
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.end_of_payload()
                        .map_err(|()| (at, Violation::InvalidUtf8))?;
                }
                continue;
            }
            if self.head_len == 0 {
                frame_start = at;
                if is_reserved(bytes[at] & 0x0f) {
                    return Err((at, Violation::ReservedOpcode));
                }
            }
            self.head[self.head_len] = bytes[at];
            self.head_len += 1;
            at += 1;
            if self.head_len == 2 && self.head[0] & 0x08 != 0 && self.head[1] & 0x7f > 125 {
                // yawc would echo a close frame this long (§5.5: at most 125 bytes).
                return Err((frame_start, Violation::ControlTooLong));
            }
            if self.head_len == self.head_size() {
                self.start_frame()
                    .map_err(|()| (at, Violation::InvalidUtf8))?;
            }
        }
        Ok(())
    }

    /// The header length, once its first two bytes tell it.
    fn head_size(&self) -> usize {
        if self.head_len < 2 {
            return 2;
        }
        let len = match self.head[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        2 + len + mask
    }

    fn start_frame(&mut self) -> Result<(), ()> {
        let (b0, b1) = (self.head[0], self.head[1]);
        let fin = b0 & 0x80 != 0;
        let compressed = b0 & 0x40 != 0;
        let (len, rest) = match b1 & 0x7f {
            126 => (
                u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                4,
            ),
            127 => {
                let mut b = [0; 8];
                b.copy_from_slice(&self.head[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        self.mask = [0; 4];
        if b1 & 0x80 != 0 {
            self.mask.copy_from_slice(&self.head[rest..rest + 4]);
        }
        self.head_len = 0;
        self.remaining = len;
        self.offset = 0;
        self.checking = None;
        match b0 & 0x0f {
            0x1 => {
                self.text_message = !compressed;
                self.utf8 = Utf8Stream::default();
                if self.text_message {
                    self.checking = Some(fin);
                }
            }
            0x2 => self.text_message = false,
            0x0 if self.text_message => self.checking = Some(fin),
            0x8 => self.closed = true,
            _ => {}
        }
        if fin && self.checking.is_none() && b0 & 0x08 == 0 {
            // A data frame that ends a message not being checked.
            self.text_message = false;
        }
        if len == 0 {
            return self.end_of_payload();
        }
        Ok(())
    }

    fn payload(&mut self, bytes: &[u8]) -> Result<(), ()> {
        if self.checking.is_none() {
            return Ok(());
        }
        let mut plain = [0u8; 512];
        for chunk in bytes.chunks(plain.len()) {
            for (i, (out, b)) in plain.iter_mut().zip(chunk).enumerate() {
                *out = b ^ self.mask[((self.offset + i as u64) % 4) as usize];
            }
            self.offset += chunk.len() as u64;
            self.utf8.feed(&plain[..chunk.len()]).map_err(|_| ())?;
        }
        Ok(())
    }

    fn end_of_payload(&mut self) -> Result<(), ()> {
        if self.checking.take() == Some(true) {
            self.text_message = false;
            return self.utf8.finish().map_err(|_| ());
        }
        Ok(())
    }
}

/// Opcodes RFC 6455 §5.2 reserves for later use.
fn is_reserved(opcode: u8) -> bool {
    matches!(opcode, 0x3..=0x7 | 0xb..=0xf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![b0];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Scans `wire` in pieces of `step` bytes; where a violation was found, if one was.
    fn scan_in_steps(wire: &[u8], step: usize) -> Option<(usize, Violation)> {
        let mut s = Scanner::default();
        let mut base = 0;
        for piece in wire.chunks(step) {
            if let Err((good, v)) = s.scan(piece) {
                return Some((base + good, v));
            }
            base += piece.len();
        }
        None
    }

    #[test]
    fn valid_traffic_passes_in_any_pieces() {
        let mut wire = frame(0x81, "héllo".as_bytes());
        wire.extend(frame(0x01, "κό".as_bytes()));
        wire.extend(frame(0x89, b"ping")); // a control frame between fragments
        wire.extend(frame(0x00, &"σμε".as_bytes()[..3]));
        wire.extend(frame(0x80, &"σμε".as_bytes()[3..]));
        wire.extend(frame(0x82, &[0xff; 300]));
        wire.extend(frame(0xc1, &[0xff, 0xfe])); // compressed: checked after inflating
        wire.extend(frame(0x81, "x".repeat(70_000).as_bytes()));
        wire.extend(frame(0x88, &[0x03, 0xe8]));
        for step in [1, 2, 3, 7, 1000, wire.len()] {
            assert_eq!(scan_in_steps(&wire, step), None, "step {step}");
        }
    }

    #[test]
    fn a_reserved_opcode_is_caught_at_its_first_byte() {
        for opcode in [3u8, 7, 0xb, 0xf] {
            let mut wire = frame(0x81, b"ok");
            let at = wire.len();
            wire.extend(frame(0x80 | opcode, b"x"));
            assert_eq!(
                scan_in_steps(&wire, 1),
                Some((at, Violation::ReservedOpcode)),
                "opcode {opcode}"
            );
            assert_eq!(
                scan_in_steps(&wire, wire.len()),
                Some((at, Violation::ReservedOpcode))
            );
        }
        // A control frame over 125 bytes, caught at its header.
        let mut wire = frame(0x82, b"ok");
        let at = wire.len();
        wire.extend(frame(0x88, &[b'*'; 126]));
        for step in [1, 3, wire.len()] {
            // A header cut by the end of a read had its first byte handed over already.
            let (good, v) = scan_in_steps(&wire, step).expect("caught");
            assert_eq!(v, Violation::ControlTooLong);
            assert!((at..=at + 1).contains(&good), "step {step}: {good}");
        }
        assert_eq!(scan_in_steps(&frame(0x89, &[0; 125]), 1), None);
        // Reserved bits in a payload byte are not a header.
        assert_eq!(scan_in_steps(&frame(0x82, &[0x83; 10]), 1), None);
    }

    #[test]
    fn bad_text_is_caught_at_the_bad_byte_even_mid_frame() {
        let payload = [b"hello ".as_slice(), b"\xf4\x90\x80\x80", b" world"].concat();
        let wire = frame(0x81, &payload);
        let header = wire.len() - payload.len();
        // The byte after 0xf4 makes the message invalid; nothing from that read on passes.
        let bad = header + 7;
        for step in [1, 4] {
            let (good, v) = scan_in_steps(&wire, step).expect("caught");
            assert_eq!(v, Violation::InvalidUtf8);
            assert!(good <= bad && bad - good < step, "step {step}: {good}");
        }
        // In a continuation frame (the first fragment was fine).
        let mut wire = frame(0x01, b"fine");
        wire.extend(frame(0x00, b"\xc0\xaf"));
        wire.extend(frame(0x80, b"end"));
        assert!(matches!(
            scan_in_steps(&wire, 1),
            Some((_, Violation::InvalidUtf8))
        ));
        // A code point cut by the end of the message.
        let wire = frame(0x81, b"ab\xe2\x82");
        assert!(matches!(
            scan_in_steps(&wire, 100),
            Some((_, Violation::InvalidUtf8))
        ));
        // Binary data is not checked, nor anything after a close frame.
        assert_eq!(scan_in_steps(&frame(0x82, b"\xff"), 1), None);
        let mut wire = frame(0x88, b"");
        wire.extend(frame(0x83, b"\xff"));
        assert_eq!(scan_in_steps(&wire, 1), None);
    }
}
