//! The IPv4 ranges each provider hands out to nodes, for what must never overlap them (a mesh
//! prefix: its routes would hide every node address, present or future, inside the overlap).
//! The providers know their ranges, so the list lives here, beside them.

use ipnet::Ipv4Net;

/// One range a provider gives addresses from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRange {
    pub provider: &'static str,
    /// What it holds (`private addresses`, `the lab's public addresses`).
    pub what: &'static str,
    pub range: Ipv4Net,
    /// Whether it is a private network's (an address there names a node within its region
    /// only), not public addresses.
    pub private: bool,
}

/// Linode's private IPv4 range (every region's; a VPC's subnets are the operator's choice).
pub const LINODE_PRIVATE_RANGE: &str = "192.168.128.0/17";

/// Every provider's ranges: the local cloud's private range and its lab's public ranges,
/// Linode's private range.
pub fn provider_ranges() -> Vec<ProviderRange> {
    let net = |text: &str| text.parse::<Ipv4Net>().expect("a constant prefix");
    let mut ranges = vec![ProviderRange {
        provider: "local",
        what: "private addresses",
        range: net(crate::local::PRIVATE_RANGE),
        private: true,
    }];
    ranges.extend(crate::local::PUBLIC_IPV4_RANGES.iter().map(|text| ProviderRange {
        provider: "local",
        what: "the lab's public addresses",
        range: net(text),
        private: false,
    }));
    ranges.push(ProviderRange {
        provider: "linode",
        what: "private addresses",
        range: net(LINODE_PRIVATE_RANGE),
        private: true,
    });
    ranges
}

/// The provider ranges `prefix` overlaps (one holds the other, or they are equal).
pub fn overlapping(prefix: &Ipv4Net) -> Vec<ProviderRange> {
    provider_ranges()
        .into_iter()
        .filter(|r| r.range.contains(&prefix.network()) || prefix.contains(&r.range.network()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_either_way() {
        let of = |p: &str| overlapping(&p.parse().unwrap()).iter().map(|r| r.provider).collect::<Vec<_>>();
        assert_eq!(of("192.168.200.0/24"), ["local", "linode"]);
        assert_eq!(of("192.168.0.0/16"), ["local", "linode"]);
        assert_eq!(of("203.0.113.128/25"), ["local"]);
        assert_eq!(of("198.0.0.0/8"), ["local"]);
        assert!(of("100.64.0.0/10").is_empty());
        assert!(of("192.168.0.0/17").is_empty());
    }
}
