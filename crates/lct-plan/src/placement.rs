//! Where a group's nodes go when it spans regions: `regions: [a, b, c]` with a placement
//! rule. Without `per_region` the nodes go round-robin by index (node 1 in `a`, 2 in `b`, 3
//! in `c`, 4 in `a`, ...); with `per_region: N` each region in turn takes N (nodes 1..N in
//! `a`, N+1..2N in `b`, ...), and a count past N for every region is refused. Both rules place
//! a node by its index alone, so scaling a group up or down never moves a node that stays.
//!
//! Region names are checked with the local cloud's grammar (which every Linode region id
//! also fits), before anything is made; the provider checks that the region exists.

use std::collections::BTreeSet;

use lct_core::record::{Name, ProviderName};

use crate::plan::{Group, Plan};

/// Checks every group's `region`, `regions` and `per_region`: the field and why, if refused.
pub fn check(plan: &Plan) -> Result<(), (String, String)> {
    let region_error = |field: String, name: &str| {
        lct_api::local::check_region(&field, name).map_err(|e| {
            let message = e.to_string();
            let message = message.strip_prefix(&format!("field {field}: ")).unwrap_or(&message).to_string();
            (field, message)
        })
    };
    for (g, group) in &plan.groups {
        if let Some(region) = &group.region {
            region_error(format!("groups.{g}.region"), region)?;
        }
        if group.region.is_some() && !group.regions.is_empty() {
            return Err((format!("groups.{g}.regions"), "give region or regions, not both".into()));
        }
        let mut seen = BTreeSet::new();
        for (i, region) in group.regions.iter().enumerate() {
            let field = format!("groups.{g}.regions[{i}]");
            region_error(field.clone(), region)?;
            if !seen.insert(region) {
                return Err((field, format!("region {region} is listed twice")));
            }
        }
        match group.per_region {
            Some(_) if group.regions.is_empty() => {
                return Err((
                    format!("groups.{g}.per_region"),
                    "per_region places nodes over regions: give regions".into(),
                ));
            }
            Some(0) => return Err((format!("groups.{g}.per_region"), "at least 1".into())),
            _ => {}
        }
    }
    Ok(())
}

/// The region of node `index` (from 1) of group `g` with `count` nodes, on `provider`: one of
/// `regions` by the placement rule; else `region`, which only providers with a choice of
/// region take (a plan written for Linode's `us-east` runs in the lab's one network).
pub fn region_of(
    g: &Name,
    group: &Group,
    index: u32,
    count: u32,
    provider: ProviderName,
) -> anyhow::Result<Option<String>> {
    if group.regions.is_empty() {
        return Ok(group.region.clone().filter(|_| lct_api::has_regions(provider)));
    }
    let n = group.regions.len() as u32;
    let slot = match group.per_region {
        None => (index - 1) % n,
        Some(per) => {
            if count > per.saturating_mul(n) {
                anyhow::bail!(
                    "groups.{g}.count: {count} nodes, over per_region {per} in each of {n} region(s) ({} in all)",
                    per.saturating_mul(n)
                );
            }
            (index - 1) / per
        }
    };
    Ok(Some(group.regions[slot as usize].clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(group: &str) -> Plan {
        serde_norway::from_str(&format!("description: t\ngroups:\n  server:\n    count: 3\n{group}")).unwrap()
    }

    fn placed(p: &Plan, count: u32) -> anyhow::Result<Vec<String>> {
        let (g, group) = p.groups.iter().next().unwrap();
        (1..=count).map(|i| Ok(region_of(g, group, i, count, ProviderName::Local)?.unwrap_or_default())).collect()
    }

    #[test]
    fn spread_goes_round_robin_and_per_region_fills_each_region_in_turn() {
        let spread = plan("    regions: [a, b, c]\n");
        check(&spread).unwrap();
        assert_eq!(placed(&spread, 5).unwrap(), ["a", "b", "c", "a", "b"]);
        let fill = plan("    regions: [a, b]\n    per_region: 2\n");
        check(&fill).unwrap();
        assert_eq!(placed(&fill, 3).unwrap(), ["a", "a", "b"]);
        assert_eq!(placed(&fill, 4).unwrap(), ["a", "a", "b", "b"]);
        let over = placed(&fill, 5).unwrap_err().to_string();
        assert!(over.starts_with("groups.server.count: 5 nodes, over per_region 2"), "{over}");
        // A single region stays Linode's only: the lab's one network takes such a plan.
        let single = plan("    region: us-east\n");
        assert_eq!(placed(&single, 1).unwrap(), [""]);
    }

    #[test]
    fn bad_regions_are_refused_naming_the_field() {
        let refused = |group: &str| check(&plan(group)).unwrap_err();
        let (field, message) = refused("    regions: [a, Bad]\n");
        assert_eq!(field, "groups.server.regions[1]");
        assert!(message.starts_with("region \"Bad\" must start"), "{message}");
        assert_eq!(refused("    regions: [a, a]\n").0, "groups.server.regions[1]");
        assert_eq!(refused("    regions: [a, bcdefghijklmn]\n").0, "groups.server.regions[1]");
        assert_eq!(refused("    region: a\n    regions: [b]\n").0, "groups.server.regions");
        assert_eq!(refused("    per_region: 2\n").0, "groups.server.per_region");
        assert_eq!(refused("    regions: [a]\n    per_region: 0\n").0, "groups.server.per_region");
        assert_eq!(refused("    region: \"a b\"\n").0, "groups.server.region");
    }
}
