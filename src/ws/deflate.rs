//! Agreeing on permessage-deflate (RFC 7692 §5, §7.1): the client may list several offers,
//! in its order of preference; the server takes the first one whose parameters it can honour
//! and answers with the terms of that one. (yawc reads one offer only, and a list of them not
//! at all, so the agreement is made here and yawc is given the terms.)

use http::header::SEC_WEBSOCKET_EXTENSIONS;
use http::HeaderMap;

const NAME: &str = "permessage-deflate";

/// The terms of an accepted offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    /// The window our compressor is held to, when the client asked for a smaller one.
    server_max_window_bits: Option<u8>,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value of the 101, which is also what yawc reads the
    /// terms from.
    pub fn header(&self) -> String {
        let mut out = NAME.to_owned();
        if let Some(bits) = self.server_max_window_bits {
            out.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        out
    }
}

/// The first permessage-deflate offer in the request that can be accepted, if any.
pub fn agree(headers: &HeaderMap) -> Option<Agreed> {
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(accept_offer)
}

/// One offer (`name; param; param=value`), accepted when every parameter is known, given at
/// most once, and has a value we can honour.
///
/// Whatever the offer, the answer asks for no context takeover in both directions, which
/// RFC 7692 (§7.1.1.1, §7.1.1.2) lets a server impose. With context kept, each socket that
/// ever carried a compressed message holds a compressor and a decompressor for the rest of
/// its life, about 320 KiB; without it, the state is borrowed from the worker's pool for one
/// message at a time (`ws::deflate::pool`), and an idle socket holds none. The price is the
/// ratio: a message cannot refer to the ones before it.
fn accept_offer(offer: &str) -> Option<Agreed> {
    let mut parts = offer.split(';');
    if !parts.next()?.trim().eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut agreed = Agreed {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: None,
    };
    let mut seen = [false; 4];
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param.trim(), None),
        };
        let index = match name {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
        match (index, value) {
            (0, None) | (1, None) => {}
            // deflate cannot keep to a 256-byte window (zlib makes 8 into 9), so an offer
            // that asks for one is declined.
            (2, Some(v)) => {
                agreed.server_max_window_bits = Some(window_bits(v).filter(|b| *b >= 9)?)
            }
            // The client tells us it can limit its own window; ours inflates any window, so
            // there is nothing to answer.
            (3, None) => {}
            (3, Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
    }
    Some(agreed)
}

/// Compressors and decompressors waiting between messages, shared by the worker's sockets:
/// about as many as messages are compressed at once (the worker's I/O thread, and a margin
/// for bursts), not one per socket.
pub fn pool() -> yawc::DeflatePool {
    static POOL: std::sync::OnceLock<yawc::DeflatePool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| yawc::DeflatePool::new(POOLED)).clone()
}

const POOLED: usize = 8;

/// A window size parameter: 8 to 15, in plain digits.
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|b| (8..=15).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer to any offer without a window size: no context kept, either way.
    const FRESH: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn offered(values: &[&str]) -> Option<String> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(SEC_WEBSOCKET_EXTENSIONS, v.parse().expect("value"));
        }
        agree(&h).map(|a| a.header())
    }

    #[test]
    fn the_first_offer_that_can_be_honoured_wins() {
        assert_eq!(offered(&[]), None);
        assert_eq!(offered(&["x-webkit-deflate-frame"]), None);
        assert_eq!(
            offered(&["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some(FRESH)
        );
        // Autobahn 13.7: three offers in one header, the first asking for a small window.
        assert_eq!(
            offered(&["permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=9, permessage-deflate; server_no_context_takeover, permessage-deflate"]).as_deref(),
            Some("permessage-deflate; server_max_window_bits=9; server_no_context_takeover; client_no_context_takeover")
        );
        // An offer we cannot keep to is passed over for the next, across header lines too.
        assert_eq!(
            offered(&[
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; server_no_context_takeover"
            ])
            .as_deref(),
            Some(FRESH)
        );
        assert_eq!(
            offered(&["permessage-deflate; server_max_window_bits=\"10\""]).as_deref(),
            Some("permessage-deflate; server_max_window_bits=10; server_no_context_takeover; client_no_context_takeover")
        );
    }

    #[test]
    fn malformed_offers_are_declined() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=x",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_param",
        ] {
            assert_eq!(offered(&[bad]), None, "{bad}");
        }
        assert_eq!(
            offered(&["permessage-deflate; mystery, permessage-deflate"]).as_deref(),
            Some(FRESH)
        );
    }
}
