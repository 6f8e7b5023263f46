//! `--proxy-headers`: `X-Forwarded-*` and RFC 7239 `Forwarded` from a trusted peer.
//!
//! Input: the first byte picks the trusted set and whether the connection is TLS; then one
//! header a line, its first byte picking the name and the rest being the value as sent.
//! Besides not panicking, the result must keep the module's promises: the client is an IP
//! address, the host a valid header value made of host-name characters (and a port).
#![no_main]

use std::net::IpAddr;

use _juggler::http::forwarded::resolve;
use _juggler::trusted::TrustedPeers;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 6] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "host",
];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let trusted = match flags & 3 {
        0 => TrustedPeers::parse(&["*"]),
        1 => TrustedPeers::parse(&["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"]),
        2 => TrustedPeers::parse(&["0.0.0.0/0"]),
        _ => TrustedPeers::parse(&["192.168.1.1"]),
    }
    .expect("fixed trusted lists parse");
    let secure = flags & 4 != 0;
    let mut headers = HeaderMap::new();
    for line in rest.split(|b| *b == b'\n') {
        let Some((&pick, value)) = line.split_first() else {
            continue;
        };
        let name = HeaderName::from_static(NAMES[usize::from(pick) % NAMES.len()]);
        // What hyper would have refused never reaches `resolve`.
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let Some(f) = resolve(&headers, &trusted, secure) else {
        return;
    };
    if let Some((ip, _)) = &f.client {
        assert!(
            ip.parse::<IpAddr>().is_ok(),
            "client {ip:?} is not an address"
        );
    }
    if let Some(host) = &f.host {
        assert!(HeaderValue::from_str(host).is_ok(), "host {host:?}");
        assert!(
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~:[]".contains(&b)),
            "host {host:?}"
        );
    }
    if let Some((name, _)) = &f.server {
        assert!(!name.is_empty(), "empty server name");
    }
});
