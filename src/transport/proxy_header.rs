//! The PROXY protocol header (HAProxy's, versions 1 and 2): how a load balancer that relays
//! TCP, TLS included, tells the server who its client is. Pure parsing here; reading it off a
//! connection is `transport::proxied`.
//!
//! A header is recognised by its first bytes: `PROXY ` (version 1, one text line) or a fixed
//! 12-byte signature (version 2, binary). Anything else is no header at all, which the caller
//! treats as an ordinary connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 1 starts with this.
const V1_PREFIX: &[u8] = b"PROXY ";
/// A version 1 line is at most this long, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// Version 2 starts with this.
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// The signature, version and command, family and protocol, and the length.
const V2_FIXED: usize = 16;
/// The longest address block plus extensions (TLVs) believed. The format allows 64 KiB;
/// proxies send the addresses and a few short TLVs (unique id, TLS version, SNI), and a
/// connection must not make the server hold more than this before its first request.
pub const V2_MAX_PAYLOAD: usize = 4096;
/// The address blocks of version 2's families (RFC-like layout of the specification, §2.2).
const V2_INET_LEN: usize = 12;
const V2_INET6_LEN: usize = 36;
const V2_UNIX_LEN: usize = 216;

/// Who the proxy says the connection is from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A TCP client, over IPv4 or IPv6.
    Tcp(SocketAddr),
    /// A client on the proxy's UNIX socket: it has no address, as on a UNIX socket here.
    Unix,
    /// The proxy speaks for itself (a health check: version 2's LOCAL, version 1's UNKNOWN,
    /// or a family the header leaves unspecified): the connection's own peer stands.
    Local,
}

/// What the bytes read so far amount to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a PROXY header: the connection starts with something else.
    NotHeader,
    /// A header may still come: more bytes are needed to tell.
    Incomplete,
    /// A whole header of `len` bytes; what follows it is the client's.
    Header { len: usize, source: Source },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("PROXY v1 line longer than {V1_MAX} bytes")]
    V1TooLong,
    #[error("PROXY v1 line is malformed: {0}")]
    V1Malformed(&'static str),
    #[error("PROXY v2 header has version {0}, not 2")]
    V2Version(u8),
    #[error("PROXY v2 header has unknown command {0}")]
    V2Command(u8),
    #[error("PROXY v2 header has unknown address family {0}")]
    V2Family(u8),
    #[error("PROXY v2 header has unknown transport protocol {0}")]
    V2Protocol(u8),
    #[error("PROXY v2 header of {0} bytes is longer than the {V2_MAX_PAYLOAD} bytes accepted")]
    V2TooLong(usize),
    #[error("PROXY v2 header is too short for its address family")]
    V2Short,
}

/// Parses the start of a connection. Never reads beyond a header: `len` tells where the
/// client's own bytes begin.
pub fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    if starts_like(buf, V1_PREFIX) {
        if buf.len() < V1_PREFIX.len() {
            return Ok(Parsed::Incomplete);
        }
        return parse_v1(buf);
    }
    if starts_like(buf, &V2_SIGNATURE) {
        if buf.len() < V2_FIXED {
            return Ok(Parsed::Incomplete);
        }
        return parse_v2(buf);
    }
    Ok(Parsed::NotHeader)
}

/// `buf` is a prefix of `start`, or starts with it.
fn starts_like(buf: &[u8], start: &[u8]) -> bool {
    let n = buf.len().min(start.len());
    buf[..n] == start[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        return if buf.len() >= V1_MAX {
            Err(HeaderError::V1TooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    match buf.get(cr + 1) {
        None => return Ok(Parsed::Incomplete),
        Some(b'\n') => {}
        Some(_) => return Err(HeaderError::V1Malformed("CR without LF")),
    }
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..cr])
        .map_err(|_| HeaderError::V1Malformed("not ASCII"))?;
    let source = v1_source(line)?;
    Ok(Parsed::Header {
        len: cr + 2,
        source,
    })
}

fn v1_source(line: &str) -> Result<Source, HeaderError> {
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or_default();
    let v6 = match family {
        // The proxy could not tell (or would not): whatever follows is ignored.
        "UNKNOWN" => return Ok(Source::Local),
        "TCP4" => false,
        "TCP6" => true,
        _ => {
            return Err(HeaderError::V1Malformed(
                "family is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let (Some(src), Some(dst), Some(src_port), Some(dst_port), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(HeaderError::V1Malformed("not four addresses and ports"));
    };
    let ip = |text: &str| -> Result<IpAddr, HeaderError> {
        let ip = if v6 {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        ip.map_err(|_| HeaderError::V1Malformed("address does not match its family"))
    };
    let src = ip(src)?;
    ip(dst)?;
    let src_port = v1_port(src_port)?;
    v1_port(dst_port)?;
    Ok(Source::Tcp(SocketAddr::new(src, src_port)))
}

/// A port in decimal, without sign or leading zeros (the specification's form).
fn v1_port(text: &str) -> Result<u16, HeaderError> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(HeaderError::V1Malformed("port is not a decimal number"));
    }
    text.parse()
        .map_err(|_| HeaderError::V1Malformed("port is above 65535"))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0F;
    let family = buf[13] >> 4;
    let protocol = buf[13] & 0x0F;
    let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if version != 2 {
        return Err(HeaderError::V2Version(version));
    }
    if command > 1 {
        return Err(HeaderError::V2Command(command));
    }
    if family > 3 {
        return Err(HeaderError::V2Family(family));
    }
    if protocol > 2 {
        return Err(HeaderError::V2Protocol(protocol));
    }
    if payload > V2_MAX_PAYLOAD {
        return Err(HeaderError::V2TooLong(payload));
    }
    let len = V2_FIXED + payload;
    let Some(block) = buf.get(V2_FIXED..len) else {
        return Ok(Parsed::Incomplete);
    };
    // LOCAL: the proxy's own connection, addresses (if any) to be ignored. An unspecified
    // family or protocol carries no address the server could use either.
    if command == 0 || family == 0 || protocol == 0 {
        return Ok(Parsed::Header {
            len,
            source: Source::Local,
        });
    }
    let need = match family {
        1 => V2_INET_LEN,
        2 => V2_INET6_LEN,
        _ => V2_UNIX_LEN,
    };
    if block.len() < need {
        return Err(HeaderError::V2Short);
    }
    let source = match family {
        1 => {
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            let port = u16::from_be_bytes([block[8], block[9]]);
            Source::Tcp(SocketAddr::new(IpAddr::V4(ip), port))
        }
        2 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&block[..16]);
            let port = u16::from_be_bytes([block[32], block[33]]);
            Source::Tcp(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        _ => Source::Unix,
    };
    Ok(Parsed::Header { len, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family_protocol: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family_protocol);
        out.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    fn tcp(text: &str) -> Source {
        Source::Tcp(text.parse().unwrap())
    }

    #[test]
    fn v1_tcp4_and_what_follows_is_not_consumed() {
        let buf = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(buf),
            Ok(Parsed::Header {
                len: 45,
                source: tcp("192.0.2.1:56324")
            })
        );
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let buf = b"PROXY TCP6 2001:db8::1 ::1 65535 80\r\n";
        assert_eq!(
            parse(buf),
            Ok(Parsed::Header {
                len: buf.len(),
                source: tcp("[2001:db8::1]:65535")
            })
        );
        let buf = b"PROXY UNKNOWN whatever follows\r\n";
        assert_eq!(
            parse(buf),
            Ok(Parsed::Header {
                len: buf.len(),
                source: Source::Local
            })
        );
    }

    #[test]
    fn v1_in_pieces_is_incomplete_until_its_lf() {
        let line = b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n";
        for end in 1..line.len() {
            assert_eq!(parse(&line[..end]), Ok(Parsed::Incomplete), "{end}");
        }
        assert!(matches!(parse(line), Ok(Parsed::Header { .. })));
    }

    #[test]
    fn v1_malformed_lines_are_errors() {
        for bad in [
            &b"PROXY TCP4 10.0.0.1 10.0.0.2 1\r\n"[..],
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2 3\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP6 10.0.0.1 10.0.0.2 1 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 65536 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 01 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 +1 2\r\n",
            b"PROXY TCP4 10.0.0.1  10.0.0.2 1 2\r\n",
            b"PROXY UDP4 10.0.0.1 10.0.0.2 1 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\rX",
            b"PROXY \xff\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(HeaderError::V1Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn v1_without_crlf_in_its_bound_is_too_long() {
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX, b'a');
        assert_eq!(parse(&long), Err(HeaderError::V1TooLong));
        long.truncate(V1_MAX - 1);
        assert_eq!(parse(&long), Ok(Parsed::Incomplete));
    }

    #[test]
    fn other_starts_are_not_headers() {
        for buf in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PRI * HTTP/2.0\r\n",
            b"PROXZ",
            b"\x16\x03\x01",
            b"\r\n\r\nX",
        ] {
            assert_eq!(parse(buf), Ok(Parsed::NotHeader));
        }
        for prefix in [&b"PRO"[..], b"\r\n\r\n\0", b""] {
            assert_eq!(parse(prefix), Ok(Parsed::Incomplete));
        }
    }

    #[test]
    fn v2_inet_inet6_unix() {
        let mut block = vec![192, 0, 2, 1, 127, 0, 0, 1];
        block.extend_from_slice(&40000u16.to_be_bytes());
        block.extend_from_slice(&8000u16.to_be_bytes());
        let mut buf = v2(1, 0x11, &block);
        let len = buf.len();
        buf.extend_from_slice(b"GET /");
        assert_eq!(
            parse(&buf),
            Ok(Parsed::Header {
                len,
                source: tcp("192.0.2.1:40000")
            })
        );

        let mut block = Ipv6Addr::LOCALHOST.octets().to_vec();
        block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        block.extend_from_slice(&[0x12, 0x34, 0, 80]);
        assert_eq!(
            parse(&v2(1, 0x21, &block)),
            Ok(Parsed::Header {
                len: V2_FIXED + 36,
                source: tcp("[::1]:4660")
            })
        );

        let unix = v2(1, 0x31, &[0; V2_UNIX_LEN]);
        assert_eq!(
            parse(&unix),
            Ok(Parsed::Header {
                len: unix.len(),
                source: Source::Unix
            })
        );
    }

    #[test]
    fn v2_local_and_unspecified_keep_the_peer_and_tlvs_are_skipped() {
        let local = v2(0, 0x11, &[9; 12]);
        assert_eq!(
            parse(&local),
            Ok(Parsed::Header {
                len: local.len(),
                source: Source::Local
            })
        );
        let unspec = v2(1, 0x00, &[]);
        assert_eq!(
            parse(&unspec),
            Ok(Parsed::Header {
                len: V2_FIXED,
                source: Source::Local
            })
        );
        // An address block followed by a TLV (type 0x05, unique id, 3 bytes).
        let mut block = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2];
        block.extend_from_slice(&[0x05, 0, 3, b'a', b'b', b'c']);
        assert_eq!(
            parse(&v2(1, 0x11, &block)),
            Ok(Parsed::Header {
                len: V2_FIXED + block.len(),
                source: tcp("10.0.0.1:1")
            })
        );
    }

    #[test]
    fn v2_in_pieces_is_incomplete() {
        let whole = v2(1, 0x11, &[1; 12]);
        for end in 1..whole.len() {
            assert_eq!(parse(&whole[..end]), Ok(Parsed::Incomplete), "{end}");
        }
    }

    #[test]
    fn v2_malformed_headers_are_errors() {
        let mut bad_version = v2(1, 0x11, &[0; 12]);
        bad_version[12] = 0x11;
        assert_eq!(parse(&bad_version), Err(HeaderError::V2Version(1)));
        assert_eq!(
            parse(&v2(2, 0x11, &[0; 12])),
            Err(HeaderError::V2Command(2))
        );
        assert_eq!(parse(&v2(1, 0x41, &[0; 12])), Err(HeaderError::V2Family(4)));
        assert_eq!(
            parse(&v2(1, 0x13, &[0; 12])),
            Err(HeaderError::V2Protocol(3))
        );
        assert_eq!(parse(&v2(1, 0x11, &[0; 11])), Err(HeaderError::V2Short));
        assert_eq!(parse(&v2(1, 0x21, &[0; 12])), Err(HeaderError::V2Short));
        let mut huge = v2(1, 0x11, &[]);
        huge[14..16].copy_from_slice(&(V2_MAX_PAYLOAD as u16 + 1).to_be_bytes());
        assert_eq!(
            parse(&huge),
            Err(HeaderError::V2TooLong(V2_MAX_PAYLOAD + 1))
        );
    }
}
