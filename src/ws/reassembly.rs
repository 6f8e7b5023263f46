//! Fragmented messages put back together, with the checks RFC 6455 asks of whole messages:
//! the size limit over all fragments, the order of fragments, and UTF-8 for text.

use bytes::{Bytes, BytesMut};

use super::close_code;
use super::session::Message;

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
}

impl Violation {
    pub fn close_code(&self) -> u16 {
        match self {
            Self::OutOfOrder => close_code::PROTOCOL_ERROR,
            Self::TooBig => close_code::TOO_BIG,
            Self::InvalidUtf8 => close_code::INVALID_PAYLOAD,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::OutOfOrder => "fragments out of order",
            Self::TooBig => "message too big",
            Self::InvalidUtf8 => "invalid UTF-8 in a text message",
        }
    }
}

pub struct Reassembly {
    max_size: usize,
    /// The message being assembled: whether it is text, and its fragments so far.
    partial: Option<(bool, BytesMut)>,
}

impl Reassembly {
    pub fn new(max_size: usize) -> Self {
        Self {
            max_size,
            partial: None,
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
                buf.extend_from_slice(&payload);
                if !fin {
                    self.partial = Some((text, buf));
                    return Ok(None);
                }
                (text, buf.freeze())
            }
            (first, None) => {
                let text = first == Data::Text;
                if payload.len() > self.max_size {
                    return Err(Violation::TooBig);
                }
                if !fin {
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
        // The reason goes to the app (`websocket.disconnect`) and into the close frame.
        assert_eq!(
            Violation::InvalidUtf8.reason(),
            "invalid UTF-8 in a text message"
        );
        assert_eq!(Violation::TooBig.reason(), "message too big");
        assert_eq!(Violation::OutOfOrder.reason(), "fragments out of order");
    }
}
