//! The local cloud's regions: each region is a private network of its own (a bridge in the
//! lab's namespace), with the same private range as every other region (overlapping, as two
//! Linode regions' may), while every region's nodes share the public network.
//!
//! A region's name is user input that becomes a bridge's name (`bp-REGION`; the default
//! region `local` keeps `br-priv`): it is checked here, before anything is recorded or made.

use std::collections::BTreeMap;

use lct_core::record::Node;
use serde::{Deserialize, Serialize};

use crate::ProviderError;

/// The default region, whose private network is the lab's first bridge (`br-priv`).
pub const REGION: &str = "local";

/// The default region's private bridge.
pub(super) const PRIVATE_BRIDGE: &str = "br-priv";

/// The longest region name: `bp-` and the name must fit a Linux interface name (15 bytes).
pub const MAX_REGION_LEN: usize = 12;

/// Every region's private range (they overlap on purpose).
pub const PRIVATE_RANGE: &str = "192.168.128.0/17";

/// Checks a region's name: lct's one grammar (`lct_core::record::region_problem`: lower-case
/// letters, digits and inner hyphens, a letter first), and here at most 12 bytes, as it names
/// a bridge. `field` names where it came from in the error.
pub fn check_region(field: &str, name: &str) -> Result<(), ProviderError> {
    match lct_core::record::region_problem(name, MAX_REGION_LEN) {
        None => Ok(()),
        Some(why) => {
            let why = if name.len() > MAX_REGION_LEN && why.starts_with("is ") {
                format!("{why} (it names a network bridge)")
            } else {
                why
            };
            let shown: String = name.chars().take(40).collect::<String>().escape_debug().to_string();
            Err(ProviderError::Invalid(format!("field {field}: region \"{shown}\" {why}")))
        }
    }
}

/// The bridge that is `region`'s private network, in the lab's namespace (a checked name).
pub(super) fn private_bridge(region: &str) -> String {
    if region == REGION || region.is_empty() { PRIVATE_BRIDGE.to_string() } else { format!("bp-{region}") }
}

/// A node's region; records from before regions have none and are the default region's.
pub(super) fn region_of(node: &Node) -> &str {
    if node.region.is_empty() { REGION } else { &node.region }
}

/// One region of the local cloud: what `lct-api lab regions` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RegionInfo {
    pub region: String,
    /// The bridge in the lab's namespace that is its private network.
    pub bridge: String,
    /// Its private IPv4 range: the same in every region.
    pub private_ipv4: String,
    /// How many nodes it has.
    pub nodes: usize,
}

impl lct_core::record::Record for RegionInfo {
    const KIND: &'static str = "region";
    const VERSION: u32 = 1;
}

impl lct_core::table::Tabular for RegionInfo {
    const HEADERS: &'static [&'static str] = &["REGION", "BRIDGE", "PRIVATE", "NODES"];
    fn row(&self) -> Vec<String> {
        vec![self.region.clone(), self.bridge.clone(), self.private_ipv4.clone(), self.nodes.to_string()]
    }
}

impl super::LocalCloud {
    /// The lab's regions: the default one, and every other its nodes are in.
    pub fn regions(&self) -> Result<Vec<RegionInfo>, ProviderError> {
        Ok(regions(&self.load()?.nodes))
    }
}

/// The regions of these nodes, with the default region always among them.
pub(super) fn regions(nodes: &[Node]) -> Vec<RegionInfo> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::from([(REGION, 0)]);
    for node in nodes {
        *counts.entry(region_of(node)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(region, nodes)| RegionInfo {
            region: region.to_string(),
            bridge: private_bridge(region),
            private_ipv4: PRIVATE_RANGE.to_string(),
            nodes,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names_are_bounded_and_make_short_bridge_names() {
        for good in ["a", "us-east", "eu2", "ap-northeast", "local"] {
            check_region("region", good).unwrap();
            assert!(private_bridge(good).len() <= 15, "{good}");
        }
        assert_eq!(private_bridge("local"), "br-priv");
        assert_eq!(private_bridge("a"), "bp-a");
        let refused = |name: &str| check_region("groups.server.regions[1]", name).unwrap_err().to_string();
        let long = refused("abcdefghijklm");
        assert!(long.contains("field groups.server.regions[1]") && long.contains("over 12"), "{long}");
        for bad in ["", "A", "1a", "a_b", "a b", "a/b", "a-", "a--b", "-a", "a\nb", "é", "a.b", "../x"] {
            let e = refused(bad);
            assert!(e.starts_with("field groups.server.regions[1]: region "), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_default_region_is_always_listed_and_old_records_belong_to_it() {
        let node = |region: &str| -> Node {
            serde_json::from_value(serde_json::json!({
                "cluster": "c", "group": "g", "name": "n", "provider": "local", "status": "running", "region": region
            }))
            .unwrap()
        };
        let listed = regions(&[node(""), node("b"), node("b"), node("a")]);
        let names: Vec<(&str, usize)> = listed.iter().map(|r| (r.region.as_str(), r.nodes)).collect();
        assert_eq!(names, [("a", 1), ("b", 2), ("local", 1)]);
        assert_eq!(regions(&[])[0].bridge, "br-priv");
    }
}
