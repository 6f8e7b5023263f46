//! Fragmented messages put back together, with the checks RFC 6455 asks of whole messages:
//! the size limit over all fragments, the order of fragments, and UTF-8 for text (checked
//! fragment by fragment, so that a bad byte fails the message as soon as it arrives).

use bytes::{Bytes, BytesMut};

use super::close_code;
use super::session::Message;
use super::utf8::Utf8Stream;

/// The data frames a message is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    Text,
    Binary,
    Continuation,
}

/// Why a message is refused, as the close code the connection ends with.
#[derive(Debug, PartialEq, Eq)]
pub enum Violation {
    /// A continuation with nothing to continue, or a new message inside a fragmented one.
    OutOfOrder,
    TooBig,
    InvalidUtf8,
    /// A frame with an opcode RFC 6455 reserves (3-7, 11-15).
    ReservedOpcode,
    /// A control frame with more than 125 bytes of payload.
    ControlTooLong,
}

impl Violation {
    pub fn close_code(&self) -> u16 {
        match self {
            Self::OutOfOrder | Self::ReservedOpcode | Self::ControlTooLong => {
                close_code::PROTOCOL_ERROR
            }
            Self::TooBig => close_code::TOO_BIG,
            Self::InvalidUtf8 => close_code::INVALID_PAYLOAD,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::OutOfOrder => "fragments out of order",
            Self::TooBig => "message too big",
            Self::InvalidUtf8 => "invalid UTF-8 in a text message",
            Self::ReservedOpcode => "reserved opcode",
            Self::ControlTooLong => "control frame longer than 125 bytes",
        }
    }
}

pub struct Reassembly {
    max_size: usize,
    /// The message being assembled: whether it is text, and its fragments so far.
    partial: Option<(bool, BytesMut)>,
    /// The UTF-8 of the text message being assembled, as far as it has come.
    utf8: Utf8Stream,
}

impl Reassembly {
    pub fn new(max_size: usize) -> Self {
        Self {
            max_size,
            partial: None,
            utf8: Utf8Stream::default(),
        }
    }

    /// Takes one (already inflated) data frame; a whole message once its last frame is in.
    pub fn push(
        &mut self,
        kind: Data,
        fin: bool,
        payload: Bytes,
    ) -> Result<Option<Message>, Violation> {
        let (text, data) = match (kind, self.partial.take()) {
            (Data::Continuation, None) => return Err(Violation::OutOfOrder),
            (Data::Text | Data::Binary, Some(_)) => return Err(Violation::OutOfOrder),
            (Data::Continuation, Some((text, mut buf))) => {
                if buf.len() + payload.len() > self.max_size {
                    return Err(Violation::TooBig);
                }
                if text {
                    self.check_fragment(&payload, fin)?;
                }
                buf.extend_from_slice(&payload);
                if !fin {
                    self.partial = Some((text, buf));
                    return Ok(None);
                }
                return Ok(Some(if text {
                    Message::Text(buf.freeze())
                } else {
                    Message::Binary(buf.freeze())
                }));
            }
            (first, None) => {
                let text = first == Data::Text;
                if payload.len() > self.max_size {
                    return Err(Violation::TooBig);
                }
                if !fin {
                    if text {
                        self.check_fragment(&payload, false)?;
                    }
                    self.partial = Some((text, BytesMut::from(&payload[..])));
                    return Ok(None);
                }
                // A message in one frame (the usual case) is passed on without a copy.
                (text, payload)
            }
        };
        if text {
            if std::str::from_utf8(&data).is_err() {
                return Err(Violation::InvalidUtf8);
            }
            Ok(Some(Message::Text(data)))
        } else {
            Ok(Some(Message::Binary(data)))
        }
    }

    /// One fragment of a text message: refused as soon as the message can no longer be
    /// valid UTF-8.
    fn check_fragment(&mut self, payload: &[u8], fin: bool) -> Result<(), Violation> {
        let checked =
            self.utf8
                .feed(payload)
                .and_then(|()| if fin { self.utf8.finish() } else { Ok(()) });
        checked.map_err(|_| {
            self.utf8 = Utf8Stream::default();
            Violation::InvalidUtf8
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn single_frames_pass_through() {
        let mut r = Reassembly::new(10);
        assert_eq!(
            r.push(Data::Text, true, b(b"hi")),
            Ok(Some(Message::Text(b(b"hi"))))
        );
        assert_eq!(
            r.push(Data::Binary, true, b(b"\xff")),
            Ok(Some(Message::Binary(b(b"\xff"))))
        );
    }

    #[test]
    fn fragments_are_joined_and_checked_whole() {
        let mut r = Reassembly::new(10);
        // "€" split across two frames is valid once joined.
        assert_eq!(r.push(Data::Text, false, b(b"a\xe2\x82")), Ok(None));
        assert_eq!(r.push(Data::Continuation, false, b(b"")), Ok(None));
        assert_eq!(
            r.push(Data::Continuation, true, b(b"\xacb")),
            Ok(Some(Message::Text(b("a€b".as_bytes()))))
        );
        assert_eq!(r.push(Data::Binary, false, b(b"12345")), Ok(None));
        assert_eq!(
            r.push(Data::Continuation, true, b(b"67890")),
            Ok(Some(Message::Binary(b(b"1234567890"))))
        );
    }

    #[test]
    fn bad_text_fails_in_the_fragment_it_arrives_in() {
        // A bad byte in the first, a middle, and the last fragment: refused there, before
        // the rest of the message is in.
        let mut r = Reassembly::new(100);
        assert_eq!(
            r.push(Data::Text, false, b(b"ok\xff")),
            Err(Violation::InvalidUtf8)
        );
        let mut r = Reassembly::new(100);
        assert_eq!(r.push(Data::Text, false, b("κόσμε".as_bytes())), Ok(None));
        assert_eq!(
            r.push(Data::Continuation, false, b(b"\xf4\x90\x80\x80")),
            Err(Violation::InvalidUtf8),
            "U+110000 in a middle fragment"
        );
        let mut r = Reassembly::new(100);
        assert_eq!(r.push(Data::Text, false, b(b"a")), Ok(None));
        assert_eq!(r.push(Data::Continuation, false, b(b"\xf4")), Ok(None));
        assert_eq!(
            r.push(Data::Continuation, false, b(b"\x90")),
            Err(Violation::InvalidUtf8),
            "a cut code point continued wrongly"
        );
        let mut r = Reassembly::new(100);
        assert_eq!(r.push(Data::Text, false, b(b"a")), Ok(None));
        assert_eq!(
            r.push(Data::Continuation, true, b(b"b\xe2\x82")),
            Err(Violation::InvalidUtf8),
            "cut short by the last fragment"
        );
        // Binary fragments are not text.
        let mut r = Reassembly::new(100);
        assert_eq!(r.push(Data::Binary, false, b(b"\xff")), Ok(None));
        assert_eq!(
            r.push(Data::Continuation, true, b(b"\xfe")),
            Ok(Some(Message::Binary(b(b"\xff\xfe"))))
        );
        // A refused message leaves nothing behind for the next one.
        let mut r = Reassembly::new(100);
        assert_eq!(r.push(Data::Text, false, b(b"\xe2")), Ok(None));
        assert!(r.push(Data::Continuation, false, b(b"(")).is_err());
        assert_eq!(r.push(Data::Text, false, b(b"x")), Ok(None));
        assert_eq!(
            r.push(Data::Continuation, true, b(b"y")),
            Ok(Some(Message::Text(b(b"xy"))))
        );
    }

    #[test]
    fn limits_apply_to_the_whole_message() {
        let mut r = Reassembly::new(10);
        assert_eq!(
            r.push(Data::Binary, true, b(&[0; 11])),
            Err(Violation::TooBig)
        );
        let mut r = Reassembly::new(10);
        assert_eq!(
            r.push(Data::Binary, true, b(&[0; 10])).map(|m| m.is_some()),
            Ok(true)
        );
        assert_eq!(r.push(Data::Binary, false, b(&[0; 6])), Ok(None));
        assert_eq!(
            r.push(Data::Continuation, true, b(&[0; 5])),
            Err(Violation::TooBig)
        );
    }

    #[test]
    fn refuses_bad_order_and_bad_text() {
        let mut r = Reassembly::new(10);
        assert_eq!(
            r.push(Data::Continuation, true, b(b"x")),
            Err(Violation::OutOfOrder)
        );
        let mut r = Reassembly::new(10);
        assert_eq!(r.push(Data::Text, false, b(b"x")), Ok(None));
        assert_eq!(
            r.push(Data::Text, true, b(b"y")),
            Err(Violation::OutOfOrder)
        );
        let mut r = Reassembly::new(10);
        assert_eq!(
            r.push(Data::Text, true, b(b"\xc3\x28")),
            Err(Violation::InvalidUtf8)
        );
        assert_eq!(Violation::InvalidUtf8.close_code(), 1007);
        assert_eq!(Violation::TooBig.close_code(), 1009);
        assert_eq!(Violation::OutOfOrder.close_code(), 1002);
        assert_eq!(Violation::ReservedOpcode.close_code(), 1002);
        // The reason goes to the app (`websocket.disconnect`) and into the close frame.
        assert_eq!(
            Violation::InvalidUtf8.reason(),
            "invalid UTF-8 in a text message"
        );
        assert_eq!(Violation::TooBig.reason(), "message too big");
        assert_eq!(Violation::OutOfOrder.reason(), "fragments out of order");
    }
}
