//! Rendering: which names each node's addresses get (its FQDN under the cluster's domain by
//! lct-core's naming rule, its short name, aliases, public names), as entry records or as
//! hosts-file text per cluster, both from one [`crate::layout`] and checked for conflicts.

use std::collections::{BTreeMap, HashMap};

use lct_core::naming::Naming;
use lct_core::record::{Cluster, Name};

use crate::Member;
use crate::entry::{HostEntry, HostsError, RenderOptions};
use crate::layout::{Layout, Scopes};

/// Renders the entries of `nodes`, sorted by cluster, node, scope and address family, and
/// checks them: every name valid, and no name for two addresses of one family.
pub fn render(nodes: &[Member], clusters: &[Cluster], options: &RenderOptions) -> Result<Vec<HostEntry>, HostsError> {
    let domains = cluster_domains(nodes, clusters, options);
    let scopes = cluster_scopes(clusters);
    let layout = Layout::new(nodes, &domains, &scopes, options)?;
    layout.check()?;
    Ok(layout.entries())
}

/// What [`render`] gives, as hosts-file text per cluster (what `apply` writes into each
/// cluster's block), without building an entry record per line.
pub fn render_blocks(
    nodes: &[Member],
    clusters: &[Cluster],
    options: &RenderOptions,
) -> Result<BTreeMap<Name, String>, HostsError> {
    let domains = cluster_domains(nodes, clusters, options);
    let scopes = cluster_scopes(clusters);
    let layout = Layout::new(nodes, &domains, &scopes, options)?;
    // The check and the text do not depend on each other: both at once, the text thrown
    // away if the check fails.
    let (checked, texts) = std::thread::scope(|s| {
        let check = s.spawn(|| layout.check());
        let texts = layout.texts();
        (check.join().expect("the check does not panic"), texts)
    });
    checked.map(|()| texts)
}

/// The domain of every cluster that has members, by lct-core's naming rule (the same names
/// lct-dns serves): its own domain, else `CLUSTER.PARENT`.
fn cluster_domains<'a>(
    members: &'a [Member],
    clusters: &[Cluster],
    options: &RenderOptions,
) -> HashMap<&'a Name, String> {
    let naming = Naming::new(clusters, options.parent_domain.clone());
    let mut domains: HashMap<&Name, String> = HashMap::new();
    let mut last: Option<&Name> = None;
    for member in members {
        // Members come grouped by cluster: one look-up per run of a cluster.
        if last != Some(&member.cluster) {
            last = Some(&member.cluster);
            domains.entry(&member.cluster).or_insert_with(|| naming.cluster_domain(&member.cluster).to_string());
        }
    }
    domains
}

/// The clusters whose records say which of their addresses hosts files carry (a plan's
/// `names.hosts_private` and `names.hosts_public`): for them, that wins over the options.
fn cluster_scopes(clusters: &[Cluster]) -> HashMap<&Name, Scopes> {
    clusters
        .iter()
        .filter_map(|c| c.names.map(|p| (&c.name, Scopes { private: p.hosts_private, public: p.hosts_public })))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{PublicNames, check, hosts_text};
    use lct_core::record::Node;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn node(cluster: &str, name: &str, private: &str, public: &str, public6: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "cluster": cluster, "group": "g", "name": name, "provider": "local", "status": "running",
            "private_ipv4": [private], "public_ipv4": [public], "public_ipv6": [public6],
        }))
        .unwrap()
    }

    fn members(nodes: &[Node]) -> Vec<Member> {
        nodes.iter().map(Member::from).collect()
    }

    fn zk() -> Vec<Cluster> {
        vec![serde_json::from_str(r#"{"name":"zk","domain":"zk.lct"}"#).unwrap()]
    }

    #[test]
    fn renders_sorted_private_and_public_entries() {
        let nodes = vec![
            node("zk", "zk-2", "192.168.128.2", "203.0.113.2", "2001:db8::2"),
            node("zk", "zk-1", "192.168.128.1", "203.0.113.1", "2001:db8::1"),
        ];
        let mut options = RenderOptions::default();
        options.aliases.insert("zk-1".parse().unwrap(), vec!["leader".into()]);
        let text = hosts_text(&render(&members(&nodes), &zk(), &options).unwrap());
        assert_eq!(text, "192.168.128.1\tzk-1.zk.lct zk-1 leader\n192.168.128.2\tzk-2.zk.lct zk-2\n");

        options.public = Some(PublicNames::Suffix("public".into()));
        let text = hosts_text(&render(&members(&nodes), &zk(), &options).unwrap());
        assert_eq!(
            text,
            "192.168.128.1\tzk-1.zk.lct zk-1 leader\n203.0.113.1\tzk-1.public\n2001:db8::1\tzk-1.public\n\
             192.168.128.2\tzk-2.zk.lct zk-2\n203.0.113.2\tzk-2.public\n2001:db8::2\tzk-2.public\n"
        );
        options.ipv6 = false;
        options.private = false;
        options.public = Some(PublicNames::Domain("pub.example".parse().unwrap()));
        let text = hosts_text(&render(&members(&nodes), &zk(), &options).unwrap());
        assert_eq!(text, "203.0.113.1\tzk-1.pub.example leader\n203.0.113.2\tzk-2.pub.example\n");
    }

    #[test]
    fn a_clusters_names_policy_wins_over_the_options() {
        let nodes = vec![
            node("web", "web-1", "192.168.128.1", "203.0.113.1", "2001:db8::1"),
            node("zk", "zk-1", "192.168.128.2", "203.0.113.2", "2001:db8::2"),
        ];
        let clusters: Vec<Cluster> = vec![
            serde_json::from_str(
                r#"{"name":"web","domain":"web.lct","names":{"hosts_private":false,"hosts_public":true}}"#,
            )
            .unwrap(),
            serde_json::from_str(r#"{"name":"zk","domain":"zk.lct"}"#).unwrap(),
        ];
        let mut options = RenderOptions { ipv6: false, ..Default::default() };
        let text = hosts_text(&render(&members(&nodes), &clusters, &options).unwrap());
        assert_eq!(text, "203.0.113.1\tweb-1.public\n192.168.128.2\tzk-1.zk.lct zk-1\n");
        // The blocks `apply` writes say the same.
        let blocks = render_blocks(&members(&nodes), &clusters, &options).unwrap();
        assert_eq!(blocks[&"web".parse::<Name>().unwrap()], "203.0.113.1\tweb-1.public\n");
        // With public entries asked for, a cluster whose policy has none still has none.
        let clusters: Vec<Cluster> =
            vec![serde_json::from_str(r#"{"name":"zk","domain":"zk.lct","names":{"hosts_public":false}}"#).unwrap()];
        options.public = Some(PublicNames::Suffix("pub".into()));
        let text = hosts_text(&render(&members(&nodes[1..]), &clusters, &options).unwrap());
        assert_eq!(text, "192.168.128.2\tzk-1.zk.lct zk-1\n");
    }

    #[test]
    fn refuses_conflicts_and_bad_names() {
        let nodes = vec![
            node("zk", "zk-1", "192.168.128.1", "203.0.113.1", "2001:db8::1"),
            node("kafka", "zk-1", "192.168.128.9", "203.0.113.9", "2001:db8::9"),
        ];
        let err = render(&members(&nodes), &[], &RenderOptions::default()).unwrap_err().to_string();
        assert!(
            err.contains("\"zk-1\" is given to both 192.168.128.9 (kafka/zk-1) and 192.168.128.1 (zk/zk-1)"),
            "{err}"
        );

        let mut options = RenderOptions::default();
        options.aliases.insert("zk-1".parse().unwrap(), vec!["bad_alias".into()]);
        let err = render(&members(&nodes[..1]), &[], &options).unwrap_err().to_string();
        assert!(err.contains("\"bad_alias\" is not a valid host name"), "{err}");
    }

    /// Random memberships, names drawn from a small pool so that duplicates and conflicts
    /// come up: the hashed check agrees with the plain one on the rendered entries, and the
    /// text per cluster is the entries' text.
    #[test]
    fn fast_check_and_text_agree_with_the_entries() {
        use proptest::prelude::*;
        let clusters: Vec<Cluster> = vec![
            serde_json::from_str(r#"{"name":"a","domain":"a.lct"}"#).unwrap(),
            serde_json::from_str(r#"{"name":"b","domain":"public"}"#).unwrap(),
            serde_json::from_str(r#"{"name":"c"}"#).unwrap(),
        ];
        // A member: cluster, name number, private IPv4, private IPv6 (or none), public IPv4.
        let member = |pool: u32| (0..3usize, 0..pool, 0..3u8, proptest::option::of(0..3u16), 0..3u8);
        // Half the rounds draw names from a pool of 6 (conflicts), half from 40.
        let round =
            prop_oneof![proptest::collection::vec(member(6), 1..13), proptest::collection::vec(member(40), 1..13)];
        let case = (round, any::<bool>(), any::<bool>(), 0..3u8);
        let config = proptest::test_runner::Config { cases: 400, failure_persistence: None, ..Default::default() };
        let (conflicts, clean) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        proptest::test_runner::TestRunner::new(config)
            .run(&case, |(drawn, ipv6, public, alias)| {
                let members: Vec<Member> = drawn
                    .iter()
                    .map(|&(cluster, name, v4, v6, pub4)| Member {
                        cluster: ["a", "b", "c"][cluster].parse().unwrap(),
                        name: format!("n{name}").parse().unwrap(),
                        private_ipv4: Some(Ipv4Addr::new(10, 0, 0, v4)),
                        private_ipv6: v6.map(|x| Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, x)),
                        public_ipv4: Some(Ipv4Addr::new(203, 0, 113, pub4)),
                        public_ipv6: None,
                    })
                    .collect();
                let mut options = RenderOptions { ipv6, ..RenderOptions::default() };
                if public {
                    options.public = Some(PublicNames::Suffix("public".into()));
                }
                if alias == 0 {
                    options.aliases.insert("n1".parse().unwrap(), vec!["n2".into(), "n3.a.lct".into()]);
                }
                let domains = cluster_domains(&members, &clusters, &options);
                let layout = Layout::new(&members, &domains, &HashMap::new(), &options).unwrap();
                let entries = layout.entries();
                let fast = layout.check().map_err(|e| e.to_string());
                let plain = check(&entries).map_err(|e| e.to_string());
                prop_assert_eq!(fast.is_ok(), plain.is_ok(), "{:?} {:?} {:?}", fast, plain, members);
                // Names that share a hash without being equal: the check starts over with text.
                let colliding = layout.check_hashed(|name| name.len() as u64).map_err(|e| e.to_string());
                prop_assert_eq!(colliding.is_ok(), plain.is_ok(), "{:?} {:?} {:?}", colliding, plain, members);
                if fast.is_ok() {
                    clean.set(clean.get() + 1);
                    let mut by_cluster: BTreeMap<Name, Vec<HostEntry>> = BTreeMap::new();
                    for e in entries {
                        by_cluster.entry(e.cluster.clone()).or_default().push(e);
                    }
                    let texts: BTreeMap<Name, String> =
                        by_cluster.iter().map(|(c, l)| (c.clone(), hosts_text(l))).collect();
                    prop_assert_eq!(render_blocks(&members, &clusters, &options).unwrap(), texts);
                } else {
                    conflicts.set(conflicts.get() + 1);
                    prop_assert!(render_blocks(&members, &clusters, &options).is_err());
                }
                Ok(())
            })
            .unwrap();
        let (conflicts, clean) = (conflicts.get(), clean.get());
        assert!(conflicts > 50 && clean > 50, "{conflicts} conflicts, {clean} clean");
    }
}
