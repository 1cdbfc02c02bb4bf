//! Address prefixes (`10.0.0.0/8`, `2001:db8::/32`), one type for every tool, on `ipnet`.
//!
//! Declarations (firewall sources, admin networks) are parsed strictly: host bits set are
//! an error, since `10.1.2.3/8` is most likely a typo for something else. Where a prefix
//! only selects clients (a DNS server's internal networks), [`HostBits::Clear`] accepts
//! them and keeps the network. Either way a bare address is a /32 or /128.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// What to do with host bits set after the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostBits {
    /// `10.1.2.3/8` is an error (declarations).
    Refuse,
    /// `10.1.2.3/8` means `10.0.0.0/8` (client selection).
    Clear,
}

/// An address prefix; its address is the network address. Serialized as `ADDR/LEN`, read
/// strictly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix(IpNet);

/// Why a prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("{0:?} is not an address or prefix (e.g. 10.0.0.0/8)")]
    Syntax(String),
    #[error("{0:?}: the prefix length must be 0 to {1}")]
    Length(String, u8),
    #[error("{0:?} has host bits set (did you mean {1}?)")]
    HostBits(String, String),
}

impl Prefix {
    /// Parses `ADDR[/LEN]`.
    pub fn parse(s: &str, host_bits: HostBits) -> Result<Prefix, PrefixError> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| PrefixError::Syntax(s.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => {
                l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| PrefixError::Length(s.to_string(), max))?
            }
        };
        let net = IpNet::new(addr, len).map_err(|_| PrefixError::Length(s.to_string(), max))?;
        let network = net.trunc();
        if host_bits == HostBits::Refuse && network.addr() != addr {
            return Err(PrefixError::HostBits(s.to_string(), network.to_string()));
        }
        Ok(Prefix(network))
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.0.addr()
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    pub fn is_ipv6(&self) -> bool {
        matches!(self.0, IpNet::V6(_))
    }

    /// The network mask as bytes (4 or 16), as a packet filter compares.
    pub fn mask_octets(&self) -> Vec<u8> {
        match self.0.netmask() {
            IpAddr::V4(m) => m.octets().to_vec(),
            IpAddr::V6(m) => m.octets().to_vec(),
        }
    }

    /// Whether `ip` is inside; an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack
    /// socket reports IPv4 clients) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }

    pub fn net(&self) -> IpNet {
        self.0
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;
    /// Strict: host bits are an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Prefix::parse(s, HostBits::Refuse)
    }
}

impl TryFrom<String> for Prefix {
    type Error = PrefixError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Prefix> for String {
    fn from(p: Prefix) -> String {
        p.to_string()
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0.addr(), self.0.prefix_len())
    }
}

impl schemars::JsonSchema for Prefix {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "prefix".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An address prefix, ADDR/LEN (a bare address is a /32 or /128), without host bits.",
            "type": "string",
            "pattern": "^[0-9a-fA-F:.]+(/[0-9]{1,3})?$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_clearing_parses() {
        let p: Prefix = "192.168.128.0/17".parse().unwrap();
        assert_eq!((p.to_string(), p.prefix_len()), ("192.168.128.0/17".to_string(), 17));
        assert_eq!("10.0.0.7".parse::<Prefix>().unwrap().to_string(), "10.0.0.7/32");
        assert_eq!("2001:db8::/32".parse::<Prefix>().unwrap().mask_octets()[..5], [255, 255, 255, 255, 0]);
        assert_eq!("10.0.0.0/12".parse::<Prefix>().unwrap().mask_octets(), [255, 240, 0, 0]);
        let err = "10.1.2.3/8".parse::<Prefix>().unwrap_err().to_string();
        assert_eq!(err, "\"10.1.2.3/8\" has host bits set (did you mean 10.0.0.0/8?)");
        assert_eq!(Prefix::parse("10.1.2.3/8", HostBits::Clear).unwrap().to_string(), "10.0.0.0/8");
        for bad in ["10.0.0.0/33", "fd00::/129", "x/8", "10.0.0.0/", "10.0.0.0/-1", ""] {
            assert!(Prefix::parse(bad, HostBits::Clear).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn contains_unmaps_ipv4_mapped_addresses() {
        let p: Prefix = "192.168.128.0/17".parse().unwrap();
        assert!(p.contains("192.168.200.1".parse().unwrap()));
        assert!(!p.contains("192.168.1.1".parse().unwrap()));
        assert!(p.contains("::ffff:192.168.200.1".parse().unwrap()));
        let v6: Prefix = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Prefix>().unwrap().contains("8.8.8.8".parse().unwrap()));
    }
}
