//! The concrete ruleset of one node: its cluster's declarations and the dependencies of
//! other clusters on it, resolved against the current members into peer address sets.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lct_core::record::{Cluster, Name, Node, PortSpec, Protocol, Record, Status};
use serde::{Deserialize, Serialize};

use crate::model::{Allow, FirewallSpec, Mode, ModelError};
use lct_core::prefix::Prefix;

/// The nftables table lct owns; nothing else is ever touched.
pub const TABLE: &str = "lct";
pub const CHAIN: &str = "input";
/// The chain that keeps the cloud's metadata service root's.
pub const OUTPUT_CHAIN: &str = "output";

/// The metadata service of a cloud node (lct-api's: what a cloud is, is the provider layer's
/// to say), where user-data can be read by anyone who asks from the node: lct's table lets
/// only root (uid 0) reach it, as the node's first boot already did.
pub use lct_api::cloudinit::{METADATA_V4, METADATA_V6};

/// A set read as a list and built in one go (sorted, then bulk-loaded): serde's own way
/// inserts element by element, a third of a 10,000-peer sync's time.
fn sorted_set<'de, D, T>(d: D) -> Result<BTreeSet<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Ord,
{
    Ok(Vec::<T>::deserialize(d)?.into_iter().collect())
}

/// One accept rule: who (peer sets and prefixes) may reach which ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rule {
    /// Stable within a declaration set: names the rule's sets (`NAME_v4`, `NAME_v6`).
    pub name: String,
    pub comment: String,
    pub ports: Vec<PortSpec>,
    #[serde(default, deserialize_with = "sorted_set")]
    pub peers_v4: BTreeSet<Ipv4Addr>,
    #[serde(default, deserialize_with = "sorted_set")]
    pub peers_v6: BTreeSet<Ipv6Addr>,
    #[serde(default)]
    pub cidrs: Vec<Prefix>,
}

/// Everything one host's `inet lct` table holds: the `fw-ruleset` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Ruleset {
    pub node: Name,
    pub cluster: Name,
    pub mode: Mode,
    pub ssh_port: u16,
    pub admin_cidrs: Vec<Prefix>,
    pub rules: Vec<Rule>,
    /// Ports guarded in managed-ports mode: traffic to them that no rule admits is dropped.
    pub managed: Vec<PortSpec>,
}

impl Record for Ruleset {
    const KIND: &'static str = "fw-ruleset";
    const VERSION: u32 = 1;
}

#[derive(Debug, thiserror::Error)]
pub enum RulesetError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(
        "node {node}: rule {rule} ({comment}) has no peers: refusing an empty set, which would shut them all out (--force to apply anyway)"
    )]
    EmptyPeers { node: Name, rule: String, comment: String },
    #[error(
        "cluster {0}: default-deny without admin_cidrs would shut SSH out; declare admin_cidrs (--force to apply anyway)"
    )]
    NoAdminCidrs(Name),
}

/// Computes the ruleset of `node` from every node and cluster record. With `force`, empty
/// peer sets and a default-deny without admin prefixes are allowed.
pub fn for_node(node: &Node, nodes: &[Node], clusters: &[Cluster], force: bool) -> Result<Ruleset, RulesetError> {
    let own = clusters.iter().find(|c| c.name == node.cluster);
    let spec = match own {
        Some(c) => FirewallSpec::of(c)?,
        None => FirewallSpec { ssh_port: 22, ..Default::default() },
    };
    if spec.mode == Mode::DefaultDeny && spec.admin_cidrs.is_empty() && !force {
        return Err(RulesetError::NoAdminCidrs(node.cluster.clone()));
    }
    // Declared rules first, then what dependent clusters say they use of this one.
    let mut allows: Vec<(Allow, String)> = spec.allow.iter().map(|a| (a.clone(), describe(a, &node.cluster))).collect();
    for dependent in clusters {
        for d in dependent.depends_on.iter().filter(|d| d.cluster == node.cluster && !d.ports.is_empty()) {
            let allow = Allow {
                from_cluster: Some(dependent.name.clone()),
                from_groups: Vec::new(),
                from_cidrs: Vec::new(),
                to_groups: d.groups.clone(),
                ports: d.ports.clone(),
            };
            let comment = format!("{} depends on {}", dependent.name, describe_to(&allow, &node.cluster));
            allows.push((allow, comment));
        }
    }
    let mut rules = Vec::new();
    let mut managed = BTreeSet::new();
    for (i, (allow, comment)) in allows.iter().enumerate() {
        managed.extend(allow.ports.iter().copied());
        if !(allow.to_groups.is_empty() || allow.to_groups.contains(&node.group)) {
            continue;
        }
        let from_cluster = match (&allow.from_cluster, allow.from_cidrs.is_empty(), allow.from_groups.is_empty()) {
            (Some(c), _, _) => Some(c),
            (None, true, _) | (None, false, false) => Some(&node.cluster),
            (None, false, true) => None,
        };
        let mut rule = Rule {
            name: format!("r{i}"),
            comment: comment.clone(),
            ports: allow.ports.clone(),
            peers_v4: BTreeSet::new(),
            peers_v6: BTreeSet::new(),
            cidrs: allow.from_cidrs.clone(),
        };
        if let Some(from) = from_cluster {
            for peer in nodes.iter().filter(|n| {
                &n.cluster == from
                    && n.status != Status::Deleting
                    && (allow.from_groups.is_empty() || allow.from_groups.contains(&n.group))
            }) {
                // A private address names a node only within its provider's region (two
                // regions may hand out the same one): another region's peer is admitted by
                // its public addresses only, never by a private one that here may be anyone's.
                if same_private_network(node, peer) {
                    rule.peers_v4.extend(&peer.private_ipv4);
                    rule.peers_v6.extend(&peer.private_ipv6);
                }
                rule.peers_v4.extend(&peer.public_ipv4);
                rule.peers_v6.extend(&peer.public_ipv6);
            }
            if rule.peers_v4.is_empty() && rule.peers_v6.is_empty() && rule.cidrs.is_empty() && !force {
                return Err(RulesetError::EmptyPeers {
                    node: node.name.clone(),
                    rule: rule.name,
                    comment: rule.comment,
                });
            }
        }
        rules.push(rule);
    }
    Ok(Ruleset {
        node: node.name.clone(),
        cluster: node.cluster.clone(),
        mode: spec.mode,
        ssh_port: spec.ssh_port,
        admin_cidrs: spec.admin_cidrs,
        rules,
        managed: managed.into_iter().collect(),
    })
}

/// Whether `a` and `b` share a private network: one provider, one region.
pub fn same_private_network(a: &Node, b: &Node) -> bool {
    a.provider == b.provider && a.region == b.region
}

fn describe(a: &Allow, own: &Name) -> String {
    let mut from = Vec::new();
    if let Some(c) = &a.from_cluster {
        from.push(with_groups(c, &a.from_groups));
    } else if a.from_cidrs.is_empty() || !a.from_groups.is_empty() {
        from.push(with_groups(own, &a.from_groups));
    }
    from.extend(a.from_cidrs.iter().map(|c| c.to_string()));
    format!("{} -> {}", from.join(","), describe_to(a, own))
}

fn describe_to(a: &Allow, own: &Name) -> String {
    let ports: Vec<String> = a.ports.iter().map(|p| p.to_string()).collect();
    format!("{} {}", with_groups(own, &a.to_groups), ports.join(","))
}

fn with_groups(cluster: &Name, groups: &[Name]) -> String {
    if groups.is_empty() {
        cluster.to_string()
    } else {
        format!("{cluster}:{}", groups.iter().map(|g| g.as_str()).collect::<Vec<_>>().join("+"))
    }
}

impl Ruleset {
    /// What must match for a full reload: everything but the set elements.
    pub fn structure(&self) -> String {
        let mut s = format!("{:?}|{}|{:?}|{:?}|", self.mode, self.ssh_port, self.admin_cidrs, self.managed);
        for r in &self.rules {
            let _ = write!(s, "{}:{:?}:{:?};", r.name, r.ports, r.cidrs);
        }
        s
    }

    /// The table as `nft -f` input, for review (and the side-by-side benchmark).
    pub fn to_nft(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "# lct-fw: node {} of cluster {}", self.node, self.cluster);
        let _ = writeln!(t, "table inet {TABLE} {{");
        for r in &self.rules {
            set_text(&mut t, &format!("{}_v4", r.name), "ipv4_addr", r.peers_v4.iter().map(|a| a.to_string()));
            set_text(&mut t, &format!("{}_v6", r.name), "ipv6_addr", r.peers_v6.iter().map(|a| a.to_string()));
        }
        let policy = if self.mode == Mode::DefaultDeny { "drop" } else { "accept" };
        let _ = writeln!(t, "\tchain {CHAIN} {{");
        let _ = writeln!(t, "\t\ttype filter hook input priority filter; policy {policy};");
        let _ = writeln!(t, "\t\tct state established,related accept");
        let _ = writeln!(t, "\t\tiif \"lo\" accept");
        if self.mode == Mode::DefaultDeny {
            let _ = writeln!(t, "\t\tmeta l4proto {{ icmp, ipv6-icmp }} accept");
        }
        for c in &self.admin_cidrs {
            let _ = writeln!(
                t,
                "\t\t{} saddr {c} tcp dport {} accept comment \"ssh failsafe\"",
                family(&c.addr()),
                self.ssh_port
            );
        }
        for r in &self.rules {
            for p in &r.ports {
                let (proto, ports) = port_text(p);
                let _ = writeln!(t, "\t\tip saddr @{}_v4 {proto} dport {ports} accept", r.name);
                let _ = writeln!(t, "\t\tip6 saddr @{}_v6 {proto} dport {ports} accept", r.name);
                for c in &r.cidrs {
                    let _ = writeln!(t, "\t\t{} saddr {c} {proto} dport {ports} accept", family(&c.addr()));
                }
            }
        }
        if self.mode == Mode::ManagedPorts {
            for p in &self.managed {
                let (proto, ports) = port_text(p);
                let _ = writeln!(t, "\t\t{proto} dport {ports} drop");
            }
        }
        let _ = writeln!(t, "\t}}");
        let _ = writeln!(t, "\tchain {OUTPUT_CHAIN} {{");
        let _ = writeln!(t, "\t\ttype filter hook output priority filter; policy accept;");
        for a in METADATA_V4 {
            let _ = writeln!(t, "\t\tip daddr {a} meta skuid != 0 drop comment \"metadata: root only\"");
        }
        for a in METADATA_V6 {
            let _ = writeln!(t, "\t\tip6 daddr {a} meta skuid != 0 drop comment \"metadata: root only\"");
        }
        let _ = writeln!(t, "\t}}\n}}");
        t
    }
}

fn family(a: &IpAddr) -> &'static str {
    if a.is_ipv4() { "ip" } else { "ip6" }
}

fn port_text(p: &PortSpec) -> (&'static str, String) {
    let proto = match p.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    let ports = if p.first == p.last { p.first.to_string() } else { format!("{}-{}", p.first, p.last) };
    (proto, ports)
}

fn set_text(t: &mut String, name: &str, kind: &str, elements: impl Iterator<Item = String>) {
    let _ = writeln!(t, "\tset {name} {{\n\t\ttype {kind}");
    let elements: Vec<String> = elements.collect();
    if !elements.is_empty() {
        let _ = writeln!(t, "\t\telements = {{ {} }}", elements.join(", "));
    }
    let _ = writeln!(t, "\t}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cluster: &str, group: &str, name: &str, ip: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "cluster": cluster, "group": group, "name": name, "provider": "local", "status": "running",
            "private_ipv4": [ip],
        }))
        .unwrap()
    }

    #[test]
    fn dependents_and_declarations_become_peer_sets() {
        let nodes = vec![
            node("zk", "zookeeper", "zk-1", "192.168.128.1"),
            node("zk", "zookeeper", "zk-2", "192.168.128.2"),
            node("hdfs", "namenode", "nn-1", "192.168.128.3"),
            node("web", "node", "web-1", "192.168.128.4"),
        ];
        let clusters: Vec<Cluster> = vec![
            serde_json::from_str(
                r#"{"name":"zk","firewall":{"admin_cidrs":["10.9.0.0/16"],"allow":[{"to_groups":["zookeeper"],"ports":["2888-3888/tcp"]},{"from_cidrs":["203.0.113.0/24"],"ports":["8080/tcp"]}]}}"#,
            )
            .unwrap(),
            serde_json::from_str(r#"{"name":"hdfs","depends_on":[{"cluster":"zk","groups":["zookeeper"],"ports":["2181/tcp"]}]}"#)
                .unwrap(),
        ];
        let r = for_node(&nodes[0], &nodes, &clusters, false).unwrap();
        assert_eq!(r.rules.len(), 3);
        assert_eq!(r.rules[0].comment, "zk -> zk:zookeeper 2888-3888/tcp");
        assert_eq!(r.rules[0].peers_v4.len(), 2);
        assert!(
            r.rules[1].peers_v4.is_empty() && r.rules[1].cidrs.len() == 1,
            "a prefix-only rule has no cluster peers"
        );
        assert_eq!(r.rules[2].comment, "hdfs depends on zk:zookeeper 2181/tcp");
        assert_eq!(r.rules[2].peers_v4.iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["192.168.128.3"]);
        assert_eq!(
            r.managed.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            ["2181/tcp", "2888-3888/tcp", "8080/tcp"]
        );
        let text = r.to_nft();
        assert!(text.contains("ip saddr @r2_v4 tcp dport 2181 accept"), "{text}");
        assert!(text.contains("ip saddr 10.9.0.0/16 tcp dport 22 accept"), "{text}");
        assert!(text.contains("tcp dport 2888-3888 drop"), "{text}");
        assert!(text.contains("ip daddr 169.254.169.254 meta skuid != 0 drop"), "{text}");

        // The dependency's nodes gone: the rule would be empty, which is refused.
        let err = for_node(&nodes[0], &nodes[..2], &clusters, false).unwrap_err().to_string();
        assert!(err.contains("rule r2 (hdfs depends on zk:zookeeper 2181/tcp) has no peers"), "{err}");
        assert!(for_node(&nodes[0], &nodes[..2], &clusters, true).is_ok());
    }

    #[test]
    fn another_regions_peers_are_admitted_by_public_address_only() {
        let placed = |name: &str, region: &str, private: &str, public: &str| -> Node {
            let mut n = node("zk", "zookeeper", name, private);
            n.region = region.into();
            n.public_ipv4 = vec![public.parse().unwrap()];
            n
        };
        // zk-2 in region b has the private address region a's zk-1... and anyone of a's
        // 192.168.128.2 (here web-1, no member) may hold.
        let nodes = vec![
            placed("zk-1", "a", "192.168.128.1", "203.0.113.1"),
            placed("zk-2", "b", "192.168.128.2", "203.0.113.2"),
            placed("zk-3", "a", "192.168.128.3", "203.0.113.3"),
        ];
        let clusters: Vec<Cluster> = vec![
            serde_json::from_str(
                r#"{"name":"zk","firewall":{"admin_cidrs":["10.9.0.0/16"],"allow":[{"to_groups":["zookeeper"],"ports":["2888-3888/tcp"]}]}}"#,
            )
            .unwrap(),
        ];
        let r = for_node(&nodes[0], &nodes, &clusters, false).unwrap();
        let peers: Vec<String> = r.rules[0].peers_v4.iter().map(|a| a.to_string()).collect();
        assert_eq!(peers, ["192.168.128.1", "192.168.128.3", "203.0.113.1", "203.0.113.2", "203.0.113.3"]);
    }

    #[test]
    fn default_deny_needs_admin_prefixes() {
        let nodes = vec![node("zk", "zookeeper", "zk-1", "192.168.128.1")];
        let clusters: Vec<Cluster> =
            vec![serde_json::from_str(r#"{"name":"zk","firewall":{"mode":"default-deny"}}"#).unwrap()];
        let err = for_node(&nodes[0], &nodes, &clusters, false).unwrap_err().to_string();
        assert!(err.contains("would shut SSH out"), "{err}");
    }
}
