//! Recognising a WebSocket opening handshake (RFC 6455 §4.2.1) in a parsed request head.

use http::header::{CONNECTION, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION};
use http::{header::UPGRADE, HeaderMap, HeaderName, Method, Version};

/// Whether the request asks to become a WebSocket. A request that does but is malformed is
/// still one ([`check`] says why it is refused), so that it is never handed to the app as a
/// plain HTTP request it would not expect.
pub fn is_upgrade(method: &Method, version: Version, headers: &HeaderMap) -> bool {
    method == Method::GET
        && version == Version::HTTP_11
        && has_token(headers, &UPGRADE, "websocket")
        && has_token(headers, &CONNECTION, "upgrade")
}

/// Why an upgrade request cannot go on.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not version 13: answered 426 with the version this server speaks.
    Version,
    /// No `Sec-WebSocket-Key`: answered 400.
    MissingKey,
}

pub fn check(headers: &HeaderMap) -> Result<(), Refusal> {
    if headers.get(SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(Refusal::Version);
    }
    match headers.get(SEC_WEBSOCKET_KEY) {
        Some(k) if !k.is_empty() => Ok(()),
        _ => Err(Refusal::MissingKey),
    }
}

/// The `Sec-WebSocket-Accept` answering a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The subprotocols the client offers, in its order (`scope["subprotocols"]`).
pub fn subprotocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether a comma-separated header holds `token`, case-insensitively (`Connection:
/// keep-alive, Upgrade` is how browsers send it).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn recognises_upgrades_as_browsers_send_them() {
        let h = headers(&[
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade"),
        ]);
        assert!(is_upgrade(&Method::GET, Version::HTTP_11, &h));
        assert!(!is_upgrade(&Method::POST, Version::HTTP_11, &h));
        assert!(!is_upgrade(&Method::GET, Version::HTTP_10, &h));
        let h = headers(&[("upgrade", "websocket"), ("connection", "keep-alive")]);
        assert!(!is_upgrade(&Method::GET, Version::HTTP_11, &h));
        let h = headers(&[("upgrade", "h2c"), ("connection", "upgrade")]);
        assert!(!is_upgrade(&Method::GET, Version::HTTP_11, &h));
    }

    #[test]
    fn checks_version_then_key() {
        let ok = headers(&[
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "abc"),
        ]);
        assert_eq!(check(&ok), Ok(()));
        let old = headers(&[("sec-websocket-version", "8"), ("sec-websocket-key", "abc")]);
        assert_eq!(check(&old), Err(Refusal::Version));
        let keyless = headers(&[("sec-websocket-version", "13")]);
        assert_eq!(check(&keyless), Err(Refusal::MissingKey));
        let empty = headers(&[("sec-websocket-version", "13"), ("sec-websocket-key", "")]);
        assert_eq!(check(&empty), Err(Refusal::MissingKey));
    }

    #[test]
    fn answers_the_key_as_rfc_6455_shows() {
        // The example of RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn lists_subprotocols_across_header_lines() {
        let h = headers(&[
            ("sec-websocket-protocol", "chat, superchat"),
            ("sec-websocket-protocol", " v2 ,"),
        ]);
        assert_eq!(subprotocols(&h), ["chat", "superchat", "v2"]);
        assert!(subprotocols(&HeaderMap::new()).is_empty());
    }
}
