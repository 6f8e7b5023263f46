//! Which peers may speak for their clients (`--forwarded-allow-ips`): addresses, networks,
//! `*`, and `unix:` for peers on a UNIX socket. Parsed once when the options are validated,
//! so a typo is an error at start-up instead of a proxy silently not trusted.

use std::net::IpAddr;

use crate::error::Error;

/// One network: an address and how many leading bits must match (32 or 128 for one host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_matches(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_matches(net: u128, ip: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (net >> shift) == (ip >> shift)
}

/// The peers trusted to set proxy headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedPeers {
    all: bool,
    unix: bool,
    networks: Vec<Network>,
}

impl TrustedPeers {
    /// Parses entries such as `127.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`, `*` and `unix:`;
    /// each may also be a comma-separated list (as in the `FORWARDED_ALLOW_IPS` variable).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, Error> {
        let mut peers = Self::default();
        for item in entries
            .iter()
            .flat_map(|e| e.as_ref().split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match item {
                "*" => peers.all = true,
                "unix:" => peers.unix = true,
                _ => peers.networks.push(parse_network(item)?),
            }
        }
        Ok(peers)
    }

    /// Whether a peer at this IP address is trusted.
    pub fn trusts_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.all || self.networks.iter().any(|n| n.contains(ip))
    }

    /// Whether a peer with this textual address is trusted: `None` is a UNIX-socket peer,
    /// which has no address; text that is no IP address is never trusted unless `*` is.
    pub fn trusts_peer(&self, peer: Option<&str>) -> bool {
        match peer {
            None => self.all || self.unix,
            Some(text) => self.all || text.parse::<IpAddr>().is_ok_and(|ip| self.trusts_ip(ip)),
        }
    }

    /// True when no peer at all is trusted (nothing to look at per request).
    pub fn is_empty(&self) -> bool {
        !self.all && !self.unix && self.networks.is_empty()
    }
}

fn parse_network(item: &str) -> Result<Network, Error> {
    let bad = || {
        Error::Config(format!(
            "--forwarded-allow-ips: {item:?} is not an IP address, a network (address/bits), \
             '*' or 'unix:'"
        ))
    };
    let (addr, prefix) = match item.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (item, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let addr = addr.to_canonical();
    let bits = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => bits,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= bits)
            .ok_or_else(bad)?,
    };
    Ok(Network { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(list: &[&str]) -> TrustedPeers {
        TrustedPeers::parse(list).expect("valid")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn addresses_and_networks() {
        let p = peers(&["127.0.0.1", "10.1.0.0/16, fd00::/8"]);
        assert!(p.trusts_ip(ip("127.0.0.1")));
        assert!(!p.trusts_ip(ip("127.0.0.2")));
        assert!(p.trusts_ip(ip("10.1.255.3")));
        assert!(!p.trusts_ip(ip("10.2.0.1")));
        assert!(p.trusts_ip(ip("fd12::1")));
        assert!(!p.trusts_ip(ip("fe80::1")));
        // An IPv4-mapped IPv6 peer is the IPv4 address it maps.
        assert!(p.trusts_ip(ip("::ffff:127.0.0.1")));
        assert!(!p.trusts_peer(None), "UNIX peers need unix: or *");
        assert!(!p.trusts_peer(Some("localhost")), "names are not addresses");
        assert!(p.trusts_peer(Some("10.1.0.9")));
    }

    #[test]
    fn star_unix_and_zero_prefix() {
        assert!(peers(&["*"]).trusts_peer(None));
        assert!(peers(&["*"]).trusts_peer(Some("203.0.113.9")));
        let u = peers(&["unix:"]);
        assert!(u.trusts_peer(None));
        assert!(!u.trusts_peer(Some("127.0.0.1")));
        assert!(peers(&["0.0.0.0/0"]).trusts_ip(ip("198.51.100.1")));
        assert!(!peers(&["0.0.0.0/0"]).trusts_ip(ip("::2")));
        assert!(peers(&[]).is_empty());
        assert!(peers(&[" , "]).is_empty());
    }

    #[test]
    fn typos_are_errors() {
        for bad in [
            "localhost",
            "10.0.0.0/33",
            "::/129",
            "1.2.3",
            "10.0.0.0/x",
            "unix",
        ] {
            assert!(TrustedPeers::parse(&[bad]).is_err(), "{bad}");
        }
    }
}
