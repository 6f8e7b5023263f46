//! UTF-8 checked as a text message arrives, piece by piece, so that a message that can no
//! longer become valid fails at its first bad byte (RFC 6455 §8.1: fail fast), not when its
//! last fragment is in.

/// Where a text message stands after the bytes seen so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utf8Stream {
    /// The start of a code point cut off at the end of the last piece (at most 3 bytes).
    tail: [u8; 4],
    tail_len: u8,
}

/// The bytes seen so far cannot be the start of valid UTF-8.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Stream {
    /// Checks the next piece of the message.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.tail_len > 0 {
            // Complete the cut code point first: it needs at most 3 more bytes.
            let have = usize::from(self.tail_len);
            let take = bytes.len().min(4 - have);
            let mut joined = self.tail;
            joined[have..have + take].copy_from_slice(&bytes[..take]);
            match std::str::from_utf8(&joined[..have + take]) {
                Ok(_) => {
                    self.tail_len = 0;
                    bytes = &bytes[take..];
                }
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(e) if e.valid_up_to() == 0 => {
                    // Still cut: this piece was too short to finish the code point.
                    self.tail = joined;
                    self.tail_len = (have + take) as u8;
                    return Ok(());
                }
                Err(e) => {
                    // The cut code point is whole; what follows it is checked with the rest.
                    let used = e.valid_up_to() - have;
                    self.tail_len = 0;
                    bytes = &bytes[used..];
                }
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let rest = &bytes[e.valid_up_to()..];
                self.tail[..rest.len()].copy_from_slice(rest);
                self.tail_len = rest.len() as u8;
                Ok(())
            }
        }
    }

    /// The message is over: a code point still cut is invalid.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.tail_len == 0;
        *self = Self::default();
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` in order; the index of the first one refused.
    fn first_refused(pieces: &[&[u8]]) -> Option<usize> {
        let mut s = Utf8Stream::default();
        for (i, p) in pieces.iter().enumerate() {
            if s.feed(p).is_err() {
                return Some(i);
            }
        }
        s.finish().err().map(|_| pieces.len())
    }

    #[test]
    fn code_points_split_anywhere_are_accepted() {
        let text = "aé€𝄞z".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let pieces = [&text[..i], &text[i..j], &text[j..]];
                assert_eq!(first_refused(&pieces), None, "split at {i}, {j}");
            }
        }
        // One byte at a time, the longest cut there is.
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(first_refused(&bytes), None);
    }

    #[test]
    fn a_bad_byte_fails_in_the_piece_it_arrives_in() {
        // First, middle and last piece.
        assert_eq!(first_refused(&[b"a\xffb", b"ok", b"ok"]), Some(0));
        assert_eq!(first_refused(&[b"ok", b"a\xc0\xafb", b"ok"]), Some(1));
        assert_eq!(first_refused(&[b"ok", b"ok", b"\xed\xa0\x80"]), Some(2));
        // U+110000 is out of range: refused at its second byte, before the message ends.
        assert_eq!(
            first_refused(&[b"ok", b"\xf4", b"\x90\x80\x80", b"ok"]),
            Some(2)
        );
        // A cut code point completed with a byte that cannot continue it.
        assert_eq!(first_refused(&[b"\xe2\x82", b"a"]), Some(1));
        assert_eq!(first_refused(&[b"\xe2", b"", b"\x82", b"("]), Some(3));
    }

    #[test]
    fn an_unfinished_code_point_fails_at_the_end_only() {
        assert_eq!(first_refused(&[b"ok", b"\xe2\x82"]), Some(2));
        let mut s = Utf8Stream::default();
        assert!(s.feed(b"\xf0\x9d").is_ok());
        assert!(s.finish().is_err());
        // `finish` starts the next message afresh.
        assert!(s.feed(b"fine").is_ok());
        assert!(s.finish().is_ok());
    }
}
