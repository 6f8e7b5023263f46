//! What a trusted proxy says about the client it forwards (`--proxy-headers`): the
//! `X-Forwarded-For/Proto/Host/Port` headers, or RFC 7239 `Forwarded`. Worked out on the I/O
//! thread per request, only for peers in `--forwarded-allow-ips`; the interfaces apply the
//! result to the scope or environ of that one request, never to the connection's cached
//! addresses (a later request on the same connection may say something else).
//!
//! Each proxy appends the address it received the request from, so the list is read from the
//! right: the client is the right-most address that is not itself a trusted proxy (anything
//! left of it was written by the client and proves nothing). When every address is trusted
//! the left-most is taken. The proto, host and port are taken at the same hop when their
//! lists line up with the addresses, otherwise the right-most (the nearest proxy's).
//!
//! The two header families are never mixed: when any `X-Forwarded-*` header is present they
//! are used and `Forwarded` is ignored, so a client cannot fill in through `Forwarded` what a
//! proxy that only sets `X-Forwarded-*` (most do) left out, and the other way round only
//! `Forwarded` is read. A value that does not parse changes nothing: the client only ever
//! becomes an IP address, the scheme only http or https, the host only a valid host name.

use std::net::IpAddr;

use http::{header, HeaderMap};

use crate::trusted::TrustedPeers;

/// The per-request view a trusted proxy gave; `None` fields leave the connection's own.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The client's address (port 0 when the proxy gave none).
    pub client: Option<(String, u16)>,
    /// Whether the client spoke TLS to the proxy (`https`/`wss`).
    pub https: Option<bool>,
    /// The `Host` the client asked for, as a header value.
    pub host: Option<String>,
    /// The `server` address: the forwarded host's name and port.
    pub server: Option<(String, u16)>,
}

const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";
const XFH: &str = "x-forwarded-host";
const XFPORT: &str = "x-forwarded-port";

/// The forwarded view of a request from a trusted peer, or None when its headers say
/// nothing usable. `secure` is whether the connection itself is TLS.
pub fn resolve(
    headers: &HeaderMap,
    trusted: &TrustedPeers,
    secure: bool,
) -> Option<Box<Forwarded>> {
    // One pass over the names first: most requests carry none of these headers, and this
    // costs less than looking each of them up.
    let (mut legacy, mut rfc) = (false, false);
    for name in headers.keys() {
        let n = name.as_str();
        if n.starts_with("x-forwarded-") {
            legacy = true;
        } else if *name == header::FORWARDED {
            rfc = true;
        }
    }
    let hop = if legacy {
        legacy_hop(headers, trusted)
    } else if rfc {
        rfc_hop(headers, trusted)?
    } else {
        return None;
    };
    let f = hop.finish(headers, secure);
    (f != Forwarded::default()).then(|| Box::new(f))
}

/// The values chosen at one hop, still unchecked.
#[derive(Default)]
struct Hop<'a> {
    node: Option<&'a str>,
    proto: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<&'a str>,
}

impl Hop<'_> {
    fn finish(self, headers: &HeaderMap, secure: bool) -> Forwarded {
        let client = self
            .node
            .and_then(parse_node)
            .map(|(ip, port)| (ip.to_string(), port));
        let https = self.proto.and_then(|p| {
            let p = p.trim();
            if p.eq_ignore_ascii_case("https") || p.eq_ignore_ascii_case("wss") {
                Some(true)
            } else if p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("ws") {
                Some(false)
            } else {
                None
            }
        });
        let default_port = if https.unwrap_or(secure) { 443 } else { 80 };
        let port = self
            .port
            .and_then(|p| p.trim().parse::<u16>().ok())
            .filter(|p| *p != 0);
        let given = self.host.map(str::trim).and_then(split_host);
        // A port without a host applies to the Host the client sent.
        let base = given.or_else(|| {
            port?;
            let h = headers.get(header::HOST)?.to_str().ok()?;
            split_host(h.trim())
        });
        let (host, server) = match base {
            None => (None, None),
            Some((name, host_port)) => {
                let server_port = port.or(host_port).unwrap_or(default_port);
                let header = match (port, host_port) {
                    (None, _) => self.host.map(|h| h.trim().to_owned()),
                    (Some(p), _) if p == default_port => Some(name.to_owned()),
                    (Some(p), _) => Some(format!("{name}:{p}")),
                };
                (header, Some((unbracketed(name).to_owned(), server_port)))
            }
        };
        Forwarded {
            client,
            https,
            host,
            server,
        }
    }
}

fn unbracketed(name: &str) -> &str {
    name.strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name)
}

/// Every comma-separated item of every value of one header, in order.
fn items<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect()
}

/// The index of the client in a list of hop addresses, read from the right.
fn client_index<T>(hops: &[T], trusted: &TrustedPeers, node: impl Fn(&T) -> Option<&str>) -> usize {
    hops.iter()
        .rposition(|h| {
            !node(h)
                .and_then(parse_node)
                .is_some_and(|(ip, _)| trusted.trusts_ip(ip))
        })
        .unwrap_or(0)
}

fn legacy_hop<'a>(headers: &'a HeaderMap, trusted: &TrustedPeers) -> Hop<'a> {
    let fors = items(headers, XFF);
    let at = client_index(&fors, trusted, |s| Some(*s));
    // The value at the client's hop when the list lines up with the addresses, otherwise
    // the right-most one, which the nearest (trusted) proxy wrote.
    let pick = |list: Vec<&'a str>| -> Option<&'a str> {
        if !fors.is_empty() && list.len() == fors.len() {
            list.get(at).copied()
        } else {
            list.last().copied()
        }
    };
    Hop {
        node: fors.get(at).copied(),
        proto: pick(items(headers, XFP)),
        host: pick(items(headers, XFH)),
        port: pick(items(headers, XFPORT)),
    }
}

fn rfc_hop<'a>(headers: &'a HeaderMap, trusted: &TrustedPeers) -> Option<Hop<'a>> {
    let mut elements = Vec::new();
    for value in headers.get_all(header::FORWARDED) {
        // Each header line on its own: an unclosed quote in one (the client's) cannot
        // swallow the next (the proxy's). A line that does not parse voids the header.
        elements.extend(parse_forwarded(value.to_str().ok()?)?);
    }
    let at = client_index(&elements, trusted, |e| e.node);
    let e = elements.get(at)?;
    Some(Hop {
        node: e.node,
        proto: e.proto,
        host: e.host,
        port: None,
    })
}

/// One element of a `Forwarded` header: the parameters juggler uses.
#[derive(Debug, Default, PartialEq, Eq)]
struct Element<'a> {
    node: Option<&'a str>,
    proto: Option<&'a str>,
    host: Option<&'a str>,
}

/// Parses `for=a;proto=https, for="[::1]:80"` (RFC 7239 §4) into elements, or None when the
/// value breaks the grammar. Quoted strings keep their content as is: none of the values
/// juggler uses may contain a backslash, so an escape makes that value unusable instead of
/// being decoded.
fn parse_forwarded(value: &str) -> Option<Vec<Element<'_>>> {
    let mut elements = vec![Element::default()];
    let bytes = value.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i] == b' ' || bytes[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i == bytes.len() {
            break;
        }
        // An empty element or pair (RFC 7230 list syntax allows empty list items).
        if bytes[i] == b',' {
            elements.push(Element::default());
            i += 1;
            continue;
        }
        if bytes[i] == b';' {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_tchar(bytes[i]) {
            i += 1;
        }
        let key = &value[start..i];
        if key.is_empty() || bytes.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        let val = if bytes.get(i) == Some(&b'"') {
            let open = i + 1;
            let mut j = open;
            loop {
                match bytes.get(j)? {
                    b'"' => break,
                    b'\\' => j += 2,
                    _ => j += 1,
                }
            }
            i = j + 1;
            &value[open..j]
        } else {
            let s = i;
            while i < bytes.len() && is_tchar(bytes[i]) {
                i += 1;
            }
            &value[s..i]
        };
        let e = elements.last_mut()?;
        let slot = if key.eq_ignore_ascii_case("for") {
            &mut e.node
        } else if key.eq_ignore_ascii_case("proto") {
            &mut e.proto
        } else if key.eq_ignore_ascii_case("host") {
            &mut e.host
        } else {
            &mut None
        };
        // A parameter twice in one element is invalid (§4): void the header.
        if slot.replace(val).is_some() {
            return None;
        }
        skip_ws(&mut i);
        match bytes.get(i) {
            None => break,
            Some(b';') => i += 1,
            Some(b',') => {
                elements.push(Element::default());
                i += 1;
            }
            Some(_) => return None,
        }
    }
    elements.retain(|e| *e != Element::default());
    Some(elements)
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]` or `[::1]:80`.
/// `unknown`, obfuscated names (`_hidden`) and anything else give None.
fn parse_node(s: &str) -> Option<(IpAddr, u16)> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some((ip.to_canonical(), 0));
    }
    let (addr, port) = if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (addr, port)
    } else {
        let (addr, port) = s.split_once(':')?;
        (addr, Some(port))
    };
    let ip: IpAddr = addr.parse().ok()?;
    if s.starts_with('[') != ip.is_ipv6() {
        return None;
    }
    let port = match port {
        None => 0,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    Some((ip.to_canonical(), port))
}

/// Splits a Host value into its name (IPv6 in brackets) and port; None when it is not one.
fn split_host(s: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let name = &s[..=end];
        name[1..end].parse::<std::net::Ipv6Addr>().ok()?;
        match &s[end + 1..] {
            "" => (name, None),
            rest => (name, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (s, None),
        }
    };
    if !name.starts_with('[')
        && (name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)))
    {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((name, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    fn trust(list: &[&str]) -> TrustedPeers {
        TrustedPeers::parse(list).expect("trust")
    }

    fn run(list: &[(&str, &str)]) -> Option<Box<Forwarded>> {
        resolve(&headers(list), &trust(&["127.0.0.1", "10.0.0.0/8"]), false)
    }

    fn client(list: &[(&str, &str)]) -> Option<(String, u16)> {
        run(list).and_then(|f| f.client.clone())
    }

    #[test]
    fn nothing_forwarded_is_none() {
        assert_eq!(run(&[("host", "a"), ("x-other", "1")]), None);
        assert_eq!(run(&[("x-forwarded-for", "unknown")]), None);
        assert_eq!(run(&[("x-forwarded-proto", "gopher")]), None);
    }

    #[test]
    fn right_most_untrusted_address_is_the_client() {
        let spoofed = [("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.2")];
        assert_eq!(client(&spoofed), Some(("203.0.113.7".into(), 0)));
        // Repeated header lines are one list.
        let lines = [
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.7:5555"),
        ];
        assert_eq!(client(&lines), Some(("203.0.113.7".into(), 5555)));
        // All trusted: the left-most.
        let all = [("x-forwarded-for", "10.0.0.9, 127.0.0.1")];
        assert_eq!(client(&all), Some(("10.0.0.9".into(), 0)));
        let v6 = [("x-forwarded-for", "[2001:db8::1]:443")];
        assert_eq!(client(&v6), Some(("2001:db8::1".into(), 443)));
        assert_eq!(
            client(&[("x-forwarded-for", "2001:db8::2")]),
            Some(("2001:db8::2".into(), 0))
        );
    }

    #[test]
    fn garbage_at_the_client_hop_changes_nothing() {
        for bad in [
            "<script>",
            "1.2.3.4:99999",
            "1.2.3.4:",
            "[1.2.3.4]:80",
            "[::1",
            "1.2.3.4 5.6.7.8",
            "",
        ] {
            assert_eq!(client(&[("x-forwarded-for", bad)]), None, "{bad:?}");
        }
        // A garbage item right of a real address is the client hop: it does not fall back
        // to the spoofable address on its left.
        assert_eq!(client(&[("x-forwarded-for", "203.0.113.7, junk")]), None);
    }

    #[test]
    fn proto_host_and_port_at_the_client_hop() {
        let f = run(&[
            ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
            ("x-forwarded-proto", "https, http"),
            ("x-forwarded-host", "example.com, internal"),
        ])
        .expect("forwarded");
        assert_eq!(f.https, Some(true));
        assert_eq!(f.host.as_deref(), Some("example.com"));
        assert_eq!(f.server, Some(("example.com".into(), 443)));
        // Lists that do not line up: the nearest proxy's (right-most) value.
        let f = run(&[
            ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
            ("x-forwarded-proto", "HTTPS"),
            ("x-forwarded-host", "[2001:db8::5]:8443"),
        ])
        .expect("forwarded");
        assert_eq!(f.https, Some(true));
        assert_eq!(f.server, Some(("2001:db8::5".into(), 8443)));
        assert_eq!(f.host.as_deref(), Some("[2001:db8::5]:8443"));
    }

    #[test]
    fn port_rewrites_the_host_and_the_server() {
        let f = run(&[
            ("host", "internal:8000"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "8443"),
        ])
        .expect("forwarded");
        assert_eq!(f.host.as_deref(), Some("internal:8443"));
        assert_eq!(f.server, Some(("internal".into(), 8443)));
        let f = run(&[
            ("x-forwarded-host", "example.com:80"),
            ("x-forwarded-port", "80"),
        ])
        .expect("forwarded");
        assert_eq!(f.host.as_deref(), Some("example.com"));
        assert_eq!(f.server, Some(("example.com".into(), 80)));
    }

    #[test]
    fn hostile_hosts_are_ignored() {
        for bad in [
            "evil.com/path",
            "a b",
            "evil.com:80:80",
            "evil.com:x",
            "[not-v6]",
            "user@evil.com",
            "",
            "evil.com\\x",
        ] {
            let f = run(&[("x-forwarded-host", bad)]);
            assert!(f.is_none(), "{bad:?}: {f:?}");
        }
    }

    #[test]
    fn rfc7239_elements() {
        let f = run(&[(
            "forwarded",
            r#"for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https;host=example.com, for=10.0.0.2;proto=http"#,
        )])
        .expect("forwarded");
        assert_eq!(f.client, Some(("2001:db8:cafe::17".into(), 4711)));
        assert_eq!(f.https, Some(true));
        assert_eq!(f.server, Some(("example.com".into(), 443)));
        // Case-insensitive names, spaces around separators, unknown parameters.
        let f =
            run(&[("forwarded", "For=198.51.100.4 ; By=10.0.0.1 ;PROTO=http")]).expect("forwarded");
        assert_eq!(f.client, Some(("198.51.100.4".into(), 0)));
        assert_eq!(f.https, Some(false));
    }

    #[test]
    fn broken_forwarded_headers_are_void() {
        for bad in [
            r#"for="1.1.1.1"#,
            "for=1.1.1.1;for=2.2.2.2",
            "for",
            "=1.1.1.1",
            "for=1.1.1.1 junk",
            r#"for="1.1.1.1\"#,
        ] {
            assert_eq!(run(&[("forwarded", bad)]), None, "{bad:?}");
        }
        // A client's unclosed quote on its own line cannot swallow the proxy's line: the
        // whole header is void instead.
        assert_eq!(
            run(&[
                ("forwarded", r#"for="1.1.1.1"#),
                ("forwarded", "for=2.2.2.2")
            ]),
            None
        );
    }

    #[test]
    fn legacy_headers_win_and_are_never_mixed_with_forwarded() {
        let f = run(&[
            ("forwarded", "for=1.1.1.1;host=evil.com;proto=https"),
            ("x-forwarded-for", "203.0.113.7"),
        ])
        .expect("forwarded");
        assert_eq!(f.client, Some(("203.0.113.7".into(), 0)));
        assert_eq!(f.host, None);
        assert_eq!(f.https, None);
    }

    #[test]
    fn star_takes_the_left_most() {
        let f = resolve(
            &headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.7")]),
            &trust(&["*"]),
            false,
        )
        .expect("forwarded");
        assert_eq!(f.client, Some(("198.51.100.1".into(), 0)));
    }
}
