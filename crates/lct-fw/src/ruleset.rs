//! The concrete ruleset of one node: its cluster's declarations and the dependencies of
//! other clusters on it, resolved against the current members into peer address sets.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lct_core::record::{Cluster, Name, Node, PortSpec, Protocol, Record, Status};
use lct_mesh::state::MeshState;
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
    #[error("the mesh's record: {0}")]
    Mesh(String),
}

/// The name of the rule that admits WireGuard from the node's mesh peers.
pub const MESH_RULE: &str = "mesh";

/// The recorded mesh (lct-mesh's, in lct's state store), if there is one.
pub fn load_mesh() -> Result<Option<MeshState>, RulesetError> {
    MeshState::load_shared().map_err(|e| RulesetError::Mesh(e.to_string()))
}

/// The rule admitting the mesh's WireGuard port (UDP) on `nodes` from their WireGuard peers'
/// public addresses only (a leader: the other leaders; full topology: every other member);
/// `None` when they have none (a member that does not lead, or no member at all).
pub fn mesh_rule<'a>(mesh: &MeshState, nodes: impl IntoIterator<Item = &'a Name>) -> Option<Rule> {
    let peers: BTreeSet<Ipv4Addr> = nodes.into_iter().flat_map(|n| mesh.wireguard_peers(n)).collect();
    (!peers.is_empty()).then(|| Rule {
        name: MESH_RULE.into(),
        comment: "WireGuard from mesh peers".into(),
        ports: vec![mesh_port(mesh)],
        peers_v4: peers,
        peers_v6: BTreeSet::new(),
        cidrs: Vec::new(),
    })
}

fn mesh_port(mesh: &MeshState) -> PortSpec {
    PortSpec { first: mesh.port, last: mesh.port, protocol: Protocol::Udp }
}

/// Computes the ruleset of `node` from every node and cluster record, and the mesh's record
/// when there is one (a member admits WireGuard from its peers only, and a peer of another
/// region by its mesh address). With `force`, empty peer sets and a default-deny without
/// admin prefixes are allowed.
pub fn for_node(
    node: &Node,
    nodes: &[Node],
    clusters: &[Cluster],
    mesh: Option<&MeshState>,
    force: bool,
) -> Result<Ruleset, RulesetError> {
    // Only a member's own mesh address is reached by other members over the mesh.
    let mesh = mesh.filter(|m| m.address_of(&node.name).is_some());
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
                // A mesh member comes by its mesh address (unique mesh-wide, as no NAT is done);
                // from another region, by that alone: its flows cross in the tunnel, never in
                // clear over public addresses.
                let over_mesh = mesh.and_then(|m| m.address_of(&peer.name));
                rule.peers_v4.extend(over_mesh);
                if same_private_network(node, peer) {
                    rule.peers_v4.extend(&peer.private_ipv4);
                    rule.peers_v6.extend(&peer.private_ipv6);
                } else if over_mesh.is_some() {
                    continue;
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
    if let Some(mesh) = mesh {
        // The port is guarded (managed-ports mode drops it for everyone else) even on a node
        // with no WireGuard peer of its own.
        managed.insert(mesh_port(mesh));
        rules.extend(mesh_rule(mesh, [&node.name]));
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

/// Whether `a` and `b` share a private network (lct-core's one definition: one provider,
/// one region).
pub fn same_private_network(a: &Node, b: &Node) -> bool {
    a.private_network() == b.private_network()
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
        let r = for_node(&nodes[0], &nodes, &clusters, None, false).unwrap();
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
        let err = for_node(&nodes[0], &nodes[..2], &clusters, None, false).unwrap_err().to_string();
        assert!(err.contains("rule r2 (hdfs depends on zk:zookeeper 2181/tcp) has no peers"), "{err}");
        assert!(for_node(&nodes[0], &nodes[..2], &clusters, None, true).is_ok());
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
        let r = for_node(&nodes[0], &nodes, &clusters, None, false).unwrap();
        let peers: Vec<String> = r.rules[0].peers_v4.iter().map(|a| a.to_string()).collect();
        assert_eq!(peers, ["192.168.128.1", "192.168.128.3", "203.0.113.1", "203.0.113.2", "203.0.113.3"]);
    }

    #[test]
    fn mesh_members_come_by_mesh_address_and_wireguard_from_peers_only() {
        use lct_mesh::model::Topology;
        use lct_mesh::state::Member;
        let placed = |name: &str, region: &str, private: &str, public: &str| {
            let mut n = node("zk", "zookeeper", name, private);
            n.region = region.into();
            n.public_ipv4 = vec![public.parse().unwrap()];
            n
        };
        let nodes = vec![
            placed("zk-1", "a", "192.168.128.1", "203.0.113.1"),
            placed("zk-2", "b", "192.168.128.2", "203.0.113.2"),
            placed("zk-3", "a", "192.168.128.3", "203.0.113.3"),
            placed("zk-4", "c", "192.168.128.4", "203.0.113.4"),
        ];
        let clusters: Vec<Cluster> = vec![
            serde_json::from_str(
                r#"{"name":"zk","firewall":{"mode":"managed-ports","allow":[{"to_groups":["zookeeper"],"ports":["2888-3888/tcp"]}]}}"#,
            )
            .unwrap(),
        ];
        // zk-1 leads a, zk-2 leads b; zk-3 is a's member; zk-4 (region c) is not in the mesh.
        let mut mesh = MeshState::new("100.64.0.0/24".parse().unwrap(), Topology::Leader, 51820);
        for (i, n) in nodes[..3].iter().enumerate() {
            let member = Member {
                address: Ipv4Addr::new(100, 64, 0, i as u8 + 1),
                public_key: None,
                region: n.region.clone(),
                local_interface: None,
                endpoint: n.public_ipv4.first().copied(),
            };
            mesh.members.insert(n.name.clone(), member);
        }
        mesh.leaders.insert("a".into(), "zk-1".parse().unwrap());
        mesh.leaders.insert("b".into(), "zk-2".parse().unwrap());
        let text = |set: &BTreeSet<Ipv4Addr>| set.iter().map(|a| a.to_string()).collect::<Vec<_>>();

        let r = for_node(&nodes[0], &nodes, &clusters, Some(&mesh), false).unwrap();
        // zk-2 (b) by its mesh address only; zk-3 (a) by private, public and mesh; zk-4 (not a
        // member) as before, by its public address.
        assert_eq!(
            text(&r.rules[0].peers_v4),
            [
                "100.64.0.1",
                "100.64.0.2",
                "100.64.0.3",
                "192.168.128.1",
                "192.168.128.3",
                "203.0.113.1",
                "203.0.113.3",
                "203.0.113.4"
            ]
        );
        let wg = r.rules.iter().find(|r| r.name == MESH_RULE).expect("a leader admits WireGuard");
        assert_eq!(text(&wg.peers_v4), ["203.0.113.2"], "from the other leaders only");
        assert_eq!(wg.ports[0].to_string(), "51820/udp");
        assert!(r.managed.contains(&wg.ports[0]), "the port is dropped for everyone else");
        assert!(r.to_nft().contains("ip saddr @mesh_v4 udp dport 51820 accept"), "{}", r.to_nft());

        // A member that does not lead: no WireGuard peer, the port still guarded.
        let r = for_node(&nodes[2], &nodes, &clusters, Some(&mesh), false).unwrap();
        assert!(r.rules.iter().all(|r| r.name != MESH_RULE));
        assert!(r.managed.iter().any(|p| p.to_string() == "51820/udp"));
        // A node not in the mesh: today's ruleset (peers by public address, no port).
        let outside = for_node(&nodes[3], &nodes, &clusters, Some(&mesh), false).unwrap();
        assert_eq!(outside, for_node(&nodes[3], &nodes, &clusters, None, false).unwrap());
        assert!(text(&outside.rules[0].peers_v4).contains(&"203.0.113.2".to_string()));
        // Full topology: every other member's public address.
        mesh.topology = Topology::Full;
        let r = for_node(&nodes[2], &nodes, &clusters, Some(&mesh), false).unwrap();
        let wg = r.rules.iter().find(|r| r.name == MESH_RULE).unwrap();
        assert_eq!(text(&wg.peers_v4), ["203.0.113.1", "203.0.113.2"]);
    }

    #[test]
    fn default_deny_needs_admin_prefixes() {
        let nodes = vec![node("zk", "zookeeper", "zk-1", "192.168.128.1")];
        let clusters: Vec<Cluster> =
            vec![serde_json::from_str(r#"{"name":"zk","firewall":{"mode":"default-deny"}}"#).unwrap()];
        let err = for_node(&nodes[0], &nodes, &clusters, None, false).unwrap_err().to_string();
        assert!(err.contains("would shut SSH out"), "{err}");
    }
}
