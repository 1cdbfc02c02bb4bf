//! Address allocation: each new node gets the lowest free private address of its region (the
//! regions' private ranges overlap), and the lowest free public and IPv6 addresses of the lab.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::lab::PUBLIC_RANGES;
use super::region::region_of;
use super::state::CloudState;
use crate::ProviderError;

/// Picks the lowest free addresses for a new node in `region`.
pub(super) fn allocate(state: &CloudState, region: &str) -> Result<(Ipv4Addr, Ipv4Addr, Ipv6Addr), ProviderError> {
    let used: BTreeSet<IpAddr> = state
        .nodes
        .iter()
        .flat_map(|n| n.public_ipv4.iter().map(|a| IpAddr::V4(*a)).chain(n.public_ipv6.iter().map(|a| IpAddr::V6(*a))))
        .collect();
    let used_here: BTreeSet<Ipv4Addr> =
        state.nodes.iter().filter(|n| region_of(n) == region).flat_map(|n| n.private_ipv4.iter().copied()).collect();
    // 192.168.128.0/17 without its network and broadcast addresses.
    let private = (u32::from(Ipv4Addr::new(192, 168, 128, 1))..u32::from(Ipv4Addr::new(192, 168, 255, 255)))
        .map(Ipv4Addr::from)
        .find(|a| !used_here.contains(a))
        .ok_or_else(|| ProviderError::Invalid(format!("region {region}'s private network 192.168.128.0/17 is full")))?;
    let public = PUBLIC_RANGES
        .iter()
        .flat_map(|[a, b, c]| (1..=253u8).map(move |d| Ipv4Addr::new(*a, *b, *c, d)))
        .find(|a| !used.contains(&IpAddr::V4(*a)))
        .ok_or_else(|| ProviderError::Invalid("the public networks are full (506 addresses)".into()))?;
    let public6 = (1..0xff00u16)
        .map(|n| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n))
        .find(|a| !used.contains(&IpAddr::V6(*a)))
        .expect("more IPv6 addresses than IPv4 ones");
    Ok((private, public, public6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lct_core::record::Node;

    #[test]
    fn allocation_takes_lowest_free_addresses() {
        let mut state = CloudState { lab: "t".into(), next_id: 1, ..Default::default() };
        let (a, b, c) = allocate(&state, "local").unwrap();
        assert_eq!(
            (a, b, c),
            (Ipv4Addr::new(192, 168, 128, 1), Ipv4Addr::new(203, 0, 113, 1), "2001:db8::1".parse().unwrap())
        );
        let node: Node = serde_json::from_value(serde_json::json!({
            "cluster": "c", "group": "g", "name": "n", "provider": "local", "status": "running",
            "private_ipv4": ["192.168.128.1"], "public_ipv4": ["203.0.113.1"], "public_ipv6": ["2001:db8::1"]
        }))
        .unwrap();
        state.nodes.push(node);
        let (a, b, _) = allocate(&state, "local").unwrap();
        assert_eq!((a, b), (Ipv4Addr::new(192, 168, 128, 2), Ipv4Addr::new(203, 0, 113, 2)));
        // Another region's private range overlaps: its first node gets .1 again, and a public
        // address of its own.
        let (a, b, _) = allocate(&state, "b").unwrap();
        assert_eq!((a, b), (Ipv4Addr::new(192, 168, 128, 1), Ipv4Addr::new(203, 0, 113, 2)));
        // Past 203.0.113.253 the second documentation range is used.
        for d in 2..=253u8 {
            let mut n = state.nodes[0].clone();
            n.public_ipv4 = vec![Ipv4Addr::new(203, 0, 113, d)];
            n.private_ipv4 = vec![];
            n.public_ipv6 = vec![];
            state.nodes.push(n);
        }
        assert_eq!(allocate(&state, "local").unwrap().1, Ipv4Addr::new(198, 51, 100, 1));
    }
}
