//! WebSocket messages from data frames: fragment order, the size limit over the whole
//! message, and UTF-8 for text, checked against a plain model of RFC 6455 §5.4 and §8.1.
//!
//! Input: two bytes of size limit, then frames of one header byte (kind in the low two
//! bits, FIN in bit 2), one length byte and that many payload bytes.
//! The model allows a text message to be refused as soon as its bytes so far cannot start
//! valid UTF-8 (incremental validation), or only once it is whole.
#![no_main]

use _juggler::ws::reassembly::{Data, Reassembly, Violation};
use _juggler::ws::Message;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// Whether `b` is valid UTF-8 (`whole`) or could still become valid (`prefix`).
fn utf8(b: &[u8]) -> (bool, bool) {
    match std::str::from_utf8(b) {
        Ok(_) => (true, true),
        Err(e) => (false, e.error_len().is_none()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((limit, mut rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = usize::from(u16::from_le_bytes(*limit));
    let mut r = Reassembly::new(max);
    // The model: the message being assembled (whether text, its bytes so far).
    let mut partial: Option<(bool, Vec<u8>)> = None;
    while let Some((&[head, len], after)) = rest.split_first_chunk::<2>() {
        let n = usize::from(len).min(after.len());
        let (payload, after) = after.split_at(n);
        rest = after;
        let kind = match head & 3 {
            0 => Data::Continuation,
            1 => Data::Text,
            _ => Data::Binary,
        };
        let fin = head & 4 != 0;
        let got = r.push(kind, fin, Bytes::copy_from_slice(payload));

        let (text, mut so_far) = match (kind, partial.take()) {
            (Data::Continuation, None) | (Data::Text | Data::Binary, Some(_)) => {
                assert_eq!(got, Err(Violation::OutOfOrder), "{kind:?} fin={fin}");
                return;
            }
            (Data::Continuation, Some(p)) => p,
            (first, None) => (first == Data::Text, Vec::new()),
        };
        so_far.extend_from_slice(payload);
        let too_big = so_far.len() > max;
        let (whole, prefix) = utf8(&so_far);
        let bad_text = text && (!prefix || (fin && !whole));
        match got {
            Err(Violation::OutOfOrder) => panic!("in-order {kind:?} refused"),
            // Found by `ws::watch` on the wire, before a frame reaches the reassembly.
            Err(v @ (Violation::ReservedOpcode | Violation::ControlTooLong)) => {
                panic!("the reassembly reported {v:?}")
            }
            Err(Violation::TooBig) => {
                assert!(too_big, "{} bytes of {max} refused", so_far.len());
                return;
            }
            Err(Violation::InvalidUtf8) => {
                assert!(bad_text, "valid text refused: {so_far:?}");
                return;
            }
            Ok(_) if too_big => panic!("{} bytes passed a limit of {max}", so_far.len()),
            Ok(_) if text && fin && !whole => panic!("invalid text passed: {so_far:?}"),
            Ok(None) => {
                assert!(!fin, "a final frame gave no message");
                partial = Some((text, so_far));
            }
            Ok(Some(m)) => {
                assert!(fin, "a message before its final frame");
                let expected = if text {
                    Message::Text(Bytes::from(so_far))
                } else {
                    Message::Binary(Bytes::from(so_far))
                };
                assert_eq!(m, expected);
            }
        }
    }
});
