//! A Linode Cloud Firewall per group of a cluster, mirroring what the host firewalls of that
//! group admit: the outer, coarser layer in front of the nodes' own tables.
//!
//! Linode's firewalls are stateful, take at most 25 rules, each for one protocol, at most 15
//! ports or ranges and (as lct assumes, to stay clear of the API's limits) 255 addresses. Rules
//! with the same protocol and ports are merged; what still does not fit is refused before any
//! request, naming the group.

use std::collections::BTreeMap;

use lct_api::linode::api::Linode;
use lct_api::linode::client::ApiFailure;
use lct_api::linode::types::FirewallDevice;
use lct_core::record::{Name, Node, PortSpec, Protocol, ProviderName};
use serde_json::{Value, json};

use crate::input::Members;
use crate::model::Mode;
use crate::ruleset::{Ruleset, RulesetError, for_node};

/// At most this many rules in one Cloud Firewall (Linode's limit).
pub const MAX_RULES: usize = 25;
/// At most this many ports or ranges in one rule.
const MAX_PORTS: usize = 15;
/// At most this many addresses in one rule.
const MAX_ADDRESSES: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("cluster {cluster} group {group}: {rules} Cloud Firewall rules needed, Linode allows {MAX_RULES}")]
    TooManyRules { cluster: Name, group: Name, rules: usize },
    #[error("cluster {cluster} group {group}: firewall label {label:?} is longer than Linode's 32 characters")]
    Label { cluster: Name, group: Name, label: String },
    #[error(transparent)]
    Api(#[from] ApiFailure),
    #[error("no Linode node records on stdin{}", if *.filtered { " for those clusters" } else { "" })]
    NoLinodeNodes { filtered: bool },
    #[error(transparent)]
    Ruleset(#[from] RulesetError),
    #[error(
        "cluster {cluster} group {group}: its Linode nodes are in regions {regions}; one Cloud Firewall \
         per group would admit one region's private addresses in another, where other nodes hold \
         them: not supported yet (the host firewalls, lct-fw push, follow regions)"
    )]
    SpansRegions { cluster: Name, group: Name, regions: String },
    #[error("node {node}: provider_id")]
    ProviderId { node: Name, source: std::num::ParseIntError },
}

/// One group's Cloud Firewall as it should be: its rules and its Linode instances.
pub struct GroupPlan {
    pub cluster: Name,
    pub group: Name,
    pub rules: Value,
    pub instances: Vec<u64>,
}

/// The Cloud Firewall of every group with Linode nodes among `members` (of the clusters in
/// `only`, every cluster when empty). Every group's rules first: a group that cannot be
/// mirrored changes nothing at all.
pub fn plan(members: &Members, only: &[Name], force: bool) -> Result<Vec<GroupPlan>, CloudError> {
    let mut groups: BTreeMap<(Name, Name), Vec<&Node>> = BTreeMap::new();
    for n in members.nodes.iter().filter(|n| n.provider == ProviderName::Linode) {
        if only.is_empty() || only.contains(&n.cluster) {
            groups.entry((n.cluster.clone(), n.group.clone())).or_default().push(n);
        }
    }
    if groups.is_empty() {
        return Err(CloudError::NoLinodeNodes { filtered: !only.is_empty() });
    }
    let mut plans = Vec::new();
    for ((cluster, group), nodes) in groups {
        // The rules are one node's view, and private addresses are only unique in a region:
        // a group over several regions would get another region's view (found in review).
        let regions: std::collections::BTreeSet<&str> = nodes.iter().map(|n| n.region.as_str()).collect();
        if regions.len() > 1 {
            let regions = regions.into_iter().collect::<Vec<_>>().join(", ");
            return Err(CloudError::SpansRegions { cluster, group, regions });
        }
        let mut ruleset = for_node(nodes[0], &members.nodes, &members.clusters, members.mesh.as_ref(), force)?;
        // One firewall for the group: WireGuard from every group member's mesh peers (a
        // leader's are not the others').
        if let Some(mesh) = &members.mesh {
            ruleset.rules.retain(|r| r.name != crate::ruleset::MESH_RULE);
            ruleset.rules.extend(crate::ruleset::mesh_rule(mesh, nodes.iter().map(|n| &n.name)));
        }
        let rules = rules_of(&ruleset, &group)?;
        let instances = nodes
            .iter()
            .map(|n| {
                n.provider_id.parse::<u64>().map_err(|source| CloudError::ProviderId { node: n.name.clone(), source })
            })
            .collect::<Result<Vec<u64>, _>>()?;
        plans.push(GroupPlan { cluster, group, rules, instances });
    }
    Ok(plans)
}

/// The Cloud Firewall's label for a group.
pub fn label(cluster: &Name, group: &Name) -> String {
    format!("lct-{cluster}-{group}")
}

fn ports_text(ports: &[&PortSpec]) -> String {
    ports
        .iter()
        .map(|p| if p.first == p.last { p.first.to_string() } else { format!("{}-{}", p.first, p.last) })
        .collect::<Vec<_>>()
        .join(", ")
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// One inbound rule, split where the API's per-rule limits need it.
fn push_rules(out: &mut Vec<Value>, action: &str, protocol: &str, ports: &str, addresses: &[String], label: &str) {
    for (i, chunk) in addresses.chunks(MAX_ADDRESSES).enumerate() {
        let (c4, c6): (Vec<&String>, Vec<&String>) = chunk.iter().partition(|a| !a.contains(':'));
        let mut rule = json!({
            "action": action,
            "protocol": protocol,
            "addresses": { "ipv4": c4, "ipv6": c6 },
            "label": if i == 0 { label.to_string() } else { format!("{label}-{i}") },
            "description": "managed by lct-fw cloud-sync",
        });
        if !ports.is_empty() {
            rule["ports"] = json!(ports);
        }
        out.push(rule);
    }
}

/// A rule label Linode accepts (3 to 32 of letters, digits, `-_.`).
fn rule_label(s: &str) -> String {
    let mut l: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    l.truncate(32);
    while l.len() < 3 {
        l.push('x');
    }
    l
}

/// The Cloud Firewall rules that mirror a host ruleset: SSH from the admin prefixes, every
/// rule's peers and prefixes on its ports, then (managed-ports mode) the managed ports dropped
/// for everyone else with an accepting policy, or (default-deny) ICMP and a dropping policy.
pub fn rules_of(rs: &Ruleset, group: &Name) -> Result<Value, CloudError> {
    let mut inbound = Vec::new();
    let admin: Vec<String> = rs.admin_cidrs.iter().map(|c| c.to_string()).collect();
    if !admin.is_empty() {
        push_rules(&mut inbound, "ACCEPT", "TCP", &rs.ssh_port.to_string(), &admin, "lct-ssh-admin");
    }
    // Rules with the same protocol and ports become one, their addresses merged.
    let mut merged: BTreeMap<(&'static str, String), (Vec<String>, String)> = BTreeMap::new();
    for rule in &rs.rules {
        let addresses: Vec<String> = rule
            .peers_v4
            .iter()
            .map(|a| format!("{a}/32"))
            .chain(rule.peers_v6.iter().map(|a| format!("{a}/128")))
            .chain(rule.cidrs.iter().map(|c| c.to_string()))
            .collect();
        if addresses.is_empty() {
            continue;
        }
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let ports: Vec<&PortSpec> = rule.ports.iter().filter(|p| p.protocol == protocol).collect();
            for chunk in ports.chunks(MAX_PORTS) {
                let key = (protocol_name(protocol), ports_text(chunk));
                let entry =
                    merged.entry(key).or_insert_with(|| (Vec::new(), rule_label(&format!("lct-{}", rule.name))));
                entry.0.extend(addresses.iter().cloned());
            }
        }
    }
    for ((protocol, ports), (mut addresses, label)) in merged {
        addresses.sort();
        addresses.dedup();
        push_rules(&mut inbound, "ACCEPT", protocol, &ports, &addresses, &label);
    }
    let everyone = vec!["0.0.0.0/0".to_string(), "::/0".to_string()];
    let policy = match rs.mode {
        Mode::ManagedPorts => {
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                let ports: Vec<&PortSpec> = rs.managed.iter().filter(|p| p.protocol == protocol).collect();
                for chunk in ports.chunks(MAX_PORTS) {
                    let label = format!("lct-managed-{}", protocol_name(protocol).to_lowercase());
                    push_rules(&mut inbound, "DROP", protocol_name(protocol), &ports_text(chunk), &everyone, &label);
                }
            }
            "ACCEPT"
        }
        Mode::DefaultDeny => {
            push_rules(&mut inbound, "ACCEPT", "ICMP", "", &everyone, "lct-icmp");
            "DROP"
        }
    };
    if inbound.len() > MAX_RULES {
        return Err(CloudError::TooManyRules {
            cluster: rs.cluster.clone(),
            group: group.clone(),
            rules: inbound.len(),
        });
    }
    Ok(json!({ "inbound": inbound, "inbound_policy": policy, "outbound": [], "outbound_policy": "ACCEPT" }))
}

/// What `cloud-sync` did for one group: the `fw-cloud-sync` record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct CloudSync {
    pub cluster: Name,
    pub group: Name,
    pub firewall: String,
    pub firewall_id: Option<u64>,
    pub rules: usize,
    pub created: bool,
    pub rules_changed: bool,
    pub devices_added: Vec<u64>,
    pub devices_removed: Vec<u64>,
    pub dry_run: bool,
    /// With a dry run: the rules it would set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_rules: Option<Value>,
}

impl lct_core::record::Record for CloudSync {
    const KIND: &'static str = "fw-cloud-sync";
    const VERSION: u32 = 1;
}

/// The rules as the API gives them back, for comparison: only what lct sets.
fn comparable(rules: &Value) -> Value {
    let pick = |list: &Value| -> Vec<Value> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let mut addresses = r["addresses"].clone();
                for family in ["ipv4", "ipv6"] {
                    if addresses[family].is_null() {
                        addresses[family] = json!([]);
                    }
                }
                json!({ "action": r["action"], "protocol": r["protocol"], "ports": r.get("ports").cloned().unwrap_or(Value::Null), "addresses": addresses })
            })
            .collect()
    };
    json!({ "inbound": pick(&rules["inbound"]), "inbound_policy": rules["inbound_policy"], "outbound_policy": rules["outbound_policy"] })
}

/// Brings the group's Cloud Firewall to `rules` and `instances` (Linode instance ids): made if
/// missing, rules replaced if they differ, devices added and removed.
pub async fn sync_group(
    api: &Linode,
    cluster: &Name,
    group: &Name,
    rules: &Value,
    instances: &[u64],
    dry_run: bool,
) -> Result<CloudSync, CloudError> {
    let label = label(cluster, group);
    if label.len() > 32 {
        return Err(CloudError::Label { cluster: cluster.clone(), group: group.clone(), label });
    }
    let rule_count = rules["inbound"].as_array().map_or(0, Vec::len);
    let existing = api.firewalls().await?.into_iter().find(|f| f.label == label);
    let mut report = CloudSync {
        cluster: cluster.clone(),
        group: group.clone(),
        firewall: label.clone(),
        firewall_id: existing.as_ref().map(|f| f.id),
        rules: rule_count,
        created: existing.is_none(),
        rules_changed: false,
        devices_added: Vec::new(),
        devices_removed: Vec::new(),
        dry_run,
        planned_rules: None,
    };
    let (id, current_devices): (Option<u64>, Vec<FirewallDevice>) = match &existing {
        Some(f) => {
            let current = api.firewall_rules(f.id).await?;
            report.rules_changed = comparable(&serde_json::to_value(&current).unwrap_or_default()) != comparable(rules);
            (Some(f.id), api.firewall_devices(f.id).await?)
        }
        None => {
            report.rules_changed = true;
            (None, Vec::new())
        }
    };
    let attached: Vec<u64> = current_devices
        .iter()
        .filter(|d| d.entity.entity_type == "linode")
        .filter_map(|d| d.entity.id.as_u64())
        .collect();
    report.devices_added = instances.iter().copied().filter(|i| !attached.contains(i)).collect();
    report.devices_removed = attached.iter().copied().filter(|i| !instances.contains(i)).collect();
    if dry_run {
        return Ok(report);
    }
    let id = match id {
        Some(id) => {
            if report.rules_changed {
                api.set_firewall_rules(id, rules).await?;
            }
            id
        }
        None => {
            let body = json!({ "label": label, "rules": rules, "tags": ["lct", format!("lct-cluster:{cluster}")] });
            let made = api.create_firewall(&body).await?;
            report.firewall_id = Some(made.id);
            made.id
        }
    };
    for instance in &report.devices_added {
        api.add_firewall_device(id, *instance).await?;
    }
    for device in
        current_devices.iter().filter(|d| d.entity.id.as_u64().is_some_and(|i| report.devices_removed.contains(&i)))
    {
        api.remove_firewall_device(id, device.id).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::Rule;

    fn ruleset(mode: Mode, rules: Vec<Rule>) -> Ruleset {
        Ruleset {
            node: "zk-1".parse().unwrap(),
            cluster: "zk".parse().unwrap(),
            mode,
            ssh_port: 22,
            admin_cidrs: vec!["198.51.100.0/24".parse().unwrap()],
            rules,
            managed: vec!["2181/tcp".parse().unwrap()],
        }
    }

    fn rule(name: &str, ports: &[&str], peers: &[&str]) -> Rule {
        Rule {
            name: name.into(),
            comment: String::new(),
            ports: ports.iter().map(|p| p.parse().unwrap()).collect(),
            peers_v4: peers.iter().map(|p| p.parse().unwrap()).collect(),
            peers_v6: Default::default(),
            cidrs: Vec::new(),
        }
    }

    #[test]
    fn a_group_over_several_regions_is_refused_before_any_rule() {
        let node = |name: &str, region: &str, id: &str| -> Node {
            serde_json::from_value(json!({
                "cluster": "zk", "group": "server", "name": name, "provider": "linode", "status": "running",
                "region": region, "provider_id": id, "private_ipv4": ["192.168.128.1"],
            }))
            .unwrap()
        };
        let members = |nodes| Members { nodes, clusters: Vec::new(), others: Vec::new(), mesh: None };
        let spread = members(vec![node("zk-1", "us-east", "1"), node("zk-2", "eu-west", "2")]);
        let err = plan(&spread, &[], false).err().unwrap().to_string();
        assert!(err.contains("cluster zk group server") && err.contains("eu-west, us-east"), "{err}");
        let one = members(vec![node("zk-1", "us-east", "1"), node("zk-2", "us-east", "2")]);
        assert_eq!(plan(&one, &[], false).unwrap()[0].instances, [1, 2]);
    }

    #[test]
    fn a_groups_firewall_admits_wireguard_from_every_members_peers() {
        use lct_mesh::model::Topology;
        use lct_mesh::state::{Member, MeshState};
        let node = |name: &str, region: &str, id: u8| -> Node {
            serde_json::from_value(json!({
                "cluster": "zk", "group": "server", "name": name, "provider": "linode", "status": "running",
                "region": region, "provider_id": id.to_string(), "private_ipv4": [format!("192.168.128.{id}")],
                "public_ipv4": [format!("203.0.113.{id}")],
            }))
            .unwrap()
        };
        // zk-1 is a member of us-east, zk-2 leads it (the group's first node does not lead).
        let nodes = [node("zk-1", "us-east", 1), node("zk-2", "us-east", 2), node("zk-3", "eu-west", 3)];
        let mut mesh = MeshState::new("100.64.0.0/24".parse().unwrap(), Topology::Leader, 51820);
        for (i, n) in nodes.iter().enumerate() {
            let member = Member {
                address: std::net::Ipv4Addr::new(100, 64, 0, i as u8 + 1),
                public_key: None,
                region: n.region.clone(),
                local_interface: None,
                endpoint: n.public_ipv4.first().copied(),
            };
            mesh.members.insert(n.name.clone(), member);
        }
        mesh.leaders.insert("us-east".into(), "zk-2".parse().unwrap());
        mesh.leaders.insert("eu-west".into(), "zk-3".parse().unwrap());
        let members =
            Members { nodes: nodes[..2].to_vec(), clusters: Vec::new(), others: Vec::new(), mesh: Some(mesh) };
        let plans = plan(&members, &[], false).unwrap();
        let inbound = plans[0].rules["inbound"].as_array().unwrap().clone();
        let wg = inbound.iter().find(|r| r["protocol"] == "UDP" && r["ports"] == "51820").expect("{inbound:?}");
        assert_eq!(wg["addresses"]["ipv4"], json!(["203.0.113.3/32"]), "the other region's leader only");
    }

    #[test]
    fn rules_mirror_the_host_ruleset_and_keep_the_limit() {
        let group: Name = "node".parse().unwrap();
        let rs = ruleset(Mode::ManagedPorts, vec![rule("r0", &["2181/tcp"], &["192.168.128.1", "192.168.128.2"])]);
        let v = rules_of(&rs, &group).unwrap();
        let inbound = v["inbound"].as_array().unwrap();
        assert_eq!(inbound[0]["ports"], "22");
        assert_eq!(inbound[0]["addresses"]["ipv4"][0], "198.51.100.0/24");
        assert_eq!(inbound[1]["ports"], "2181");
        assert_eq!(inbound[1]["addresses"]["ipv4"], json!(["192.168.128.1/32", "192.168.128.2/32"]));
        assert_eq!((inbound[2]["action"].as_str(), inbound[2]["ports"].as_str()), (Some("DROP"), Some("2181")));
        assert_eq!(v["inbound_policy"], "ACCEPT");
        let deny = rules_of(&ruleset(Mode::DefaultDeny, vec![]), &group).unwrap();
        assert_eq!(deny["inbound_policy"], "DROP");
        // 30 rules on distinct ports cannot be merged: refused, naming the group.
        let many: Vec<Rule> =
            (0..30).map(|i| rule(&format!("r{i}"), &[&format!("{}/tcp", 3000 + i)], &["192.168.128.1"])).collect();
        let err = rules_of(&ruleset(Mode::DefaultDeny, many), &group).unwrap_err().to_string();
        assert!(err.contains("cluster zk group node: 32 Cloud Firewall rules needed, Linode allows 25"), "{err}");
        // The same ports twice: one rule.
        let twice = vec![rule("a", &["9000/tcp"], &["192.168.128.1"]), rule("b", &["9000/tcp"], &["192.168.128.2"])];
        let v = rules_of(&ruleset(Mode::DefaultDeny, twice), &group).unwrap();
        assert_eq!(v["inbound"].as_array().unwrap().len(), 3, "ssh, the merged rule, icmp");
    }
}
