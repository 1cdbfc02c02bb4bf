//! Views keyed by the asker's region: the zones as another region sees them (`lct-dns zone
//! --region`), chosen by the asker's source address (its mesh address) in one table lookup.
//!
//! Private ranges of regions overlap, so a private source cannot say which region asks; a
//! mesh address can (lct-mesh gives every member one of its own, and the mesh carries it
//! end to end, no NAT). The table holds each region's askers as address ranges, sorted and
//! disjoint: a lookup is a binary search over integers, no allocation on the answer path.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use lct_core::prefix::{HostBits, Prefix};
use serde::Deserialize;

use crate::fast::Answers;
use crate::mode::ZoneMode;
use crate::zone::DnsRecord;

/// `[[region]]` in the configuration: one region's view and who asks from there.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// `PROVIDER:REGION`.
    pub network: String,
    /// `dns-record` records: `lct-dns zone --region NETWORK`'s output.
    pub records: PathBuf,
    /// Addresses or prefixes its askers come from (its members' mesh addresses).
    #[serde(default)]
    pub clients: Vec<String>,
}

/// One region's view: its zones as that region's nodes see them.
pub struct RegionView {
    /// `PROVIDER:REGION`, as `lct-dns zone --region` names it.
    pub network: String,
    pub answers: Answers,
}

/// The regions' views and who asks from each.
#[derive(Default)]
pub struct RegionViews {
    /// Disjoint ranges `(first, last, view)`, sorted by `first`; IPv4 as IPv4-mapped IPv6.
    ranges: Vec<(u128, u128, usize)>,
    views: Vec<RegionView>,
}

/// Why the regions' clients cannot be told apart.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error(
        "region[{index}] ({network}): clients {prefix} overlap region[{other}] ({other_network})'s {other_prefix}: a client would be in two regions"
    )]
    Overlap { index: usize, network: String, prefix: Prefix, other: usize, other_network: String, other_prefix: Prefix },
    #[error("region[{index}] ({network}): given twice (region[{other}])")]
    Twice { index: usize, network: String, other: usize },
}

/// An address as a number in one space: IPv4 as its IPv4-mapped IPv6 address (as a
/// dual-stack socket reports IPv4 clients, so both forms find the same range).
fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl RegionViews {
    /// The views, each with the prefixes its askers come from; a client in two regions'
    /// prefixes (or a region given twice) is an error naming both.
    pub fn new(regions: Vec<(RegionView, Vec<Prefix>)>) -> Result<RegionViews, RegionError> {
        let mut ranges: Vec<(u128, u128, usize, Prefix)> = Vec::new();
        let mut views = Vec::with_capacity(regions.len());
        for (index, (view, clients)) in regions.into_iter().enumerate() {
            if let Some(other) = views.iter().position(|v: &RegionView| v.network == view.network) {
                return Err(RegionError::Twice { index, network: view.network, other });
            }
            for prefix in clients {
                let net = prefix.net();
                ranges.push((number(net.network()), number(net.broadcast()), index, prefix));
            }
            views.push(view);
        }
        ranges.sort_by_key(|r| (r.0, r.1));
        for pair in ranges.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.0 <= a.1 {
                // The same prefix twice in one region is harmless; anything else is not.
                if a.2 == b.2 && a.0 == b.0 && a.1 == b.1 {
                    continue;
                }
                return Err(RegionError::Overlap {
                    index: b.2,
                    network: views[b.2].network.clone(),
                    prefix: b.3,
                    other: a.2,
                    other_network: views[a.2].network.clone(),
                    other_prefix: a.3,
                });
            }
        }
        ranges.dedup_by_key(|r| (r.0, r.1));
        Ok(RegionViews { ranges: ranges.into_iter().map(|(first, last, i, _)| (first, last, i)).collect(), views })
    }

    /// The view of the region `ip` asks from, if it is one of the regions' clients.
    pub fn view_of(&self, ip: IpAddr) -> Option<&RegionView> {
        if self.ranges.is_empty() {
            return None;
        }
        let n = number(ip);
        // The last range that starts at or before `n`; the ranges are disjoint.
        let at = self.ranges.partition_point(|r| r.0 <= n).checked_sub(1)?;
        let (_, last, view) = self.ranges[at];
        (n <= last).then(|| &self.views[view])
    }

    pub fn views(&self) -> &[RegionView] {
        &self.views
    }

    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }
}

/// The views of `regions` (the configuration's `[[region]]`), each records file read and
/// checked against the zones served (`served`: the main records; `signed`: zones signed
/// here; `secondary_zones`: zones followed from a primary); `field` names a field in errors.
pub fn load(
    regions: &[RegionConfig],
    modes: &BTreeMap<String, ZoneMode>,
    served: &[DnsRecord],
    signed: &[String],
    secondary_zones: &[String],
    field: &dyn Fn(String) -> String,
) -> anyhow::Result<RegionViews> {
    let mut views = Vec::with_capacity(regions.len());
    for (i, r) in regions.iter().enumerate() {
        let field = field(format!("region[{i}]"));
        let seed = crate::zone::read_records(&r.records).map_err(|e| anyhow::anyhow!("{field}.records: {e}"))?;
        for rec in &seed {
            if crate::zone::is_dnssec(rec.rtype) {
                anyhow::bail!("{field}.records: {} {}: DNSSEC records are made by the signer", rec.name, rec.rtype);
            }
            let zone = &rec.zone;
            // A region's view of a zone this server does not serve would answer for it to
            // that region only: a typo, not a design.
            if !served.iter().any(|m| &m.zone == zone) || secondary_zones.contains(zone) {
                anyhow::bail!("{field}.records: zone {zone} is not one of the records file's zones");
            }
            // Signing a region's view with the zone's keys is not done: an unsigned answer
            // where a validator expects a signed one would fail it.
            if signed.contains(zone) {
                anyhow::bail!(
                    "{field}.records: zone {zone} is signed here; views keyed by region of a signed zone are not served yet"
                );
            }
        }
        let answers = Answers::new(&seed, &|zone| crate::mode::mode_of(modes, zone))
            .map_err(|e| anyhow::anyhow!("{field}.records: {e}"))?;
        let clients = r
            .clients
            .iter()
            .map(|p| Prefix::parse(p, HostBits::Clear).map_err(|e| anyhow::anyhow!("{field}.clients: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        views.push((RegionView { network: r.network.clone(), answers }, clients));
    }
    RegionViews::new(views).map_err(|e| anyhow::anyhow!("{}", field(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(network: &str) -> RegionView {
        let answers = Answers::new(&crate::zone::fixtures::zone(), &|_: &str| ZoneMode::Split).unwrap();
        RegionView { network: network.into(), answers }
    }

    fn prefixes(list: &[&str]) -> Vec<Prefix> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn an_asker_gets_the_view_of_the_region_its_address_is_in() {
        let views = RegionViews::new(vec![
            (view("local:b"), prefixes(&["100.64.0.2/32", "100.64.0.7/32"])),
            (view("local:c"), prefixes(&["100.64.0.3/32", "100.64.1.0/24"])),
        ])
        .unwrap();
        let region = |ip: &str| views.view_of(ip.parse().unwrap()).map(|v| v.network.as_str());
        assert_eq!(region("100.64.0.2"), Some("local:b"));
        assert_eq!(region("100.64.0.7"), Some("local:b"));
        assert_eq!(region("100.64.0.3"), Some("local:c"));
        assert_eq!(region("100.64.1.200"), Some("local:c"));
        // As a dual-stack socket reports an IPv4 client.
        assert_eq!(region("::ffff:100.64.0.2"), Some("local:b"));
        for outside in
            ["100.64.0.1", "100.64.0.4", "100.64.0.8", "100.64.2.0", "192.168.128.2", "0.0.0.0", "::", "fd00::2"]
        {
            assert_eq!(region(outside), None, "{outside}");
        }
    }

    #[test]
    fn a_client_in_two_regions_is_refused_naming_both() {
        let e = RegionViews::new(vec![
            (view("local:b"), prefixes(&["100.64.0.0/24"])),
            (view("local:c"), prefixes(&["100.64.0.9/32"])),
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("local:b") && e.contains("local:c") && e.contains("100.64.0.9/32"), "{e}");
        let e = RegionViews::new(vec![(view("local:b"), vec![]), (view("local:b"), vec![])]).err().unwrap();
        assert!(e.to_string().contains("given twice"), "{e}");
        // The same address twice in one region is one client.
        assert!(RegionViews::new(vec![(view("local:b"), prefixes(&["100.64.0.2", "100.64.0.2/32"]))]).is_ok());
    }
}
