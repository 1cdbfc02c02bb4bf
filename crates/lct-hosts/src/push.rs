//! Push: every node of the changed clusters and their dependents gets its hosts file brought up to date.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use lct_core::record::{Access, Cluster, Name, Node, Record, Status};
use lct_core::state::dependents_of;
use lct_inventory::exec::{ExecOptions, exec_each};
use serde::{Deserialize, Serialize};

use crate::{ApplyReport, HostsError, RenderOptions, render};

/// How a node fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PushStatus {
    Changed,
    Unchanged,
    Failed,
    /// Not running: nothing to reach.
    Skipped,
}

/// The `hosts-push` record: one per target node.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PushReport {
    pub node: Name,
    pub cluster: Name,
    pub status: PushStatus,
    /// The blocks written on this node.
    pub blocks: Vec<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long this node's apply took, in milliseconds, as this controller saw it (a
    /// namespace node: the write of its file here; a remote one: the whole exec). Absent:
    /// not contacted (skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_ms: Option<u64>,
}

impl Record for PushReport {
    const KIND: &'static str = "hosts-push";
    const VERSION: u32 = 1;
}

impl lct_core::table::Tabular for PushReport {
    const HEADERS: &'static [&'static str] = &["NODE", "CLUSTER", "STATUS", "BLOCKS", "ERROR"];
    fn row(&self) -> Vec<String> {
        vec![
            self.node.to_string(),
            self.cluster.to_string(),
            format!("{:?}", self.status).to_lowercase(),
            lct_core::table::list(&self.blocks),
            self.error.clone().unwrap_or_else(|| "-".into()),
        ]
    }
}

/// What to push where.
pub struct PushPlan {
    /// Every target node with the host-entry lines and the clusters its blocks are for.
    pub targets: Vec<(Node, Vec<Name>, String)>,
    pub skipped: Vec<Node>,
}

/// Every mesh member's mesh address ([`lct_mesh::addresses`]): how a node of another region
/// is reached from a member.
pub type MeshAddresses = BTreeMap<Name, Ipv4Addr>;

/// Works out, from every node and cluster record, what each node must receive when the
/// blocks of `selected` are pushed: the nodes of the selected clusters and of the clusters
/// that depend on them; each gets the blocks of its own cluster and of the clusters it
/// depends on, among the selected ones. `mesh`: the mesh members' addresses (empty: no mesh).
pub fn plan(
    nodes: &[Node],
    clusters: &[Cluster],
    selected: &BTreeSet<Name>,
    options: &RenderOptions,
    mesh: &MeshAddresses,
) -> Result<PushPlan, HostsError> {
    let shown: Vec<&Node> =
        nodes.iter().filter(|n| selected.contains(&n.cluster) && n.status != Status::Deleting).collect();
    let mut reach: BTreeSet<Name> = selected.clone();
    reach.extend(dependents_of(clusters, selected));
    // One rendering per place a target asks from: its private network (provider and region)
    // and whether it is a mesh member. From there, a node of another network is named with
    // its mesh address when both are members (the mesh routes it, encrypted), else with its
    // public address, since its private one is not reachable (and may be another node's:
    // regions' private ranges overlap).
    let viewpoint = |n: &Node| Viewpoint { network: n.private_network(), in_mesh: mesh.contains_key(&n.name) };
    let viewpoints: BTreeSet<Viewpoint> = nodes.iter().filter(|n| reach.contains(&n.cluster)).map(viewpoint).collect();
    let single = shown
        .iter()
        .map(|n| n.private_network())
        .chain(viewpoints.iter().map(|v| v.network.clone()))
        .collect::<BTreeSet<_>>()
        .len()
        <= 1;
    let mut lines_of: BTreeMap<Viewpoint, BTreeMap<&Name, String>> = BTreeMap::new();
    for from in viewpoints {
        let members: Vec<crate::Member> = shown.iter().map(|n| seen_from(n, &from, single, mesh)).collect();
        let entries = render(&members, clusters, options)?;
        let mut lines: BTreeMap<&Name, String> = selected.iter().map(|c| (c, String::new())).collect();
        for e in &entries {
            let text = lines.get_mut(&e.cluster).expect("entries come from selected clusters");
            text.push_str(&lct_core::stream::to_line(e));
            text.push('\n');
        }
        lines_of.insert(from, lines);
    }
    let mut plan = PushPlan { targets: Vec::new(), skipped: Vec::new() };
    for node in nodes.iter().filter(|n| reach.contains(&n.cluster)) {
        if node.status != Status::Running {
            plan.skipped.push(node.clone());
            continue;
        }
        let lines = &lines_of[&viewpoint(node)];
        let uses: BTreeSet<&Name> = clusters
            .iter()
            .filter(|c| c.name == node.cluster)
            .flat_map(|c| c.depends_on.iter().map(|d| &d.cluster))
            .chain([&node.cluster])
            .collect();
        let blocks: Vec<Name> = selected.iter().filter(|c| uses.contains(c)).cloned().collect();
        let input: String = blocks.iter().map(|c| lines[c].as_str()).collect();
        plan.targets.push((node.clone(), blocks, input));
    }
    Ok(plan)
}

/// A private network: a provider's region (the one definition, lct-core's).
type Network = lct_core::record::PrivateNetwork;

/// Where a name is asked from: a private network, by a mesh member or not.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Viewpoint {
    network: Network,
    in_mesh: bool,
}

/// What a node asking from `from` is to know of `node`: all of it on its own network (or
/// when there is one network only); else, when both are mesh members, its mesh address under
/// its private names (its public addresses as they are); else its public addresses under its
/// private names.
fn seen_from(node: &Node, from: &Viewpoint, single: bool, mesh: &MeshAddresses) -> crate::Member {
    let mut member = crate::Member::from(node);
    if !single && node.private_network() != from.network {
        match mesh.get(&node.name).filter(|_| from.in_mesh) {
            Some(address) => {
                member.private_ipv4 = Some(*address);
                member.private_ipv6 = None;
            }
            None => {
                member.private_ipv4 = member.public_ipv4;
                member.private_ipv6 = member.public_ipv6;
            }
        }
    }
    member
}

/// A namespace node's hosts file as seen from here: `ip netns exec` binds
/// `/etc/netns/NS/hosts` over `/etc/hosts` inside.
pub fn netns_hosts_file(netns: &str) -> std::path::PathBuf {
    Path::new("/etc/netns").join(netns).join("hosts")
}

/// `lct-hosts apply` of `input` (host-entry lines) for `blocks`, done here on a namespace
/// node's file: in place, so processes inside that have it bound keep seeing it.
fn apply_here(path: &Path, blocks: &[Name], input: &str) -> Result<bool, String> {
    let (entries, _) = lct_core::stream::read_kind::<crate::HostEntry>(input.as_bytes()).map_err(|e| e.to_string())?;
    let mut changes: BTreeMap<Name, String> = blocks.iter().map(|c| (c.clone(), String::new())).collect();
    changes.extend(crate::blocks_of(entries));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    crate::apply(path, &changes, crate::WriteMode::InPlace, false).map(|r| r.changed).map_err(|e| e.to_string())
}

/// Applies a plan: `lct-hosts apply` on every target in parallel through lct-inventory's
/// exec (OpenSSH for a remote node). A namespace node's file is written from here, since
/// it is a file of this machine (no process per node: a scale event reaches dozens of
/// namespace nodes at the cost of one). A failing node does not stop the others.
pub async fn push(
    plan: PushPlan,
    file: &str,
    local_bin: &Path,
    remote_bin: &str,
    options: &ExecOptions,
) -> Vec<PushReport> {
    let mut jobs = Vec::new();
    let mut here = Vec::new();
    let mut blocks_of: BTreeMap<Name, Vec<Name>> = BTreeMap::new();
    for (node, blocks, input) in plan.targets {
        if let (Some(Access::Netns { netns }), "/etc/hosts") = (&node.access, file) {
            let path = netns_hosts_file(netns);
            here.push(tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let applied = apply_here(&path, &blocks, &input);
                let apply_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
                let (status, error) = match applied {
                    Ok(true) => (PushStatus::Changed, None),
                    Ok(false) => (PushStatus::Unchanged, None),
                    Err(e) => (PushStatus::Failed, Some(e)),
                };
                PushReport { node: node.name, cluster: node.cluster, status, blocks, error, apply_ms }
            }));
            continue;
        }
        let bin = match node.access {
            Some(Access::Netns { .. }) => local_bin.display().to_string(),
            _ => remote_bin.to_string(),
        };
        let mut argv = vec![bin, "apply".into(), "--file".into(), file.into(), "--output".into(), "jsonl".into()];
        for c in &blocks {
            argv.extend(["--cluster".into(), c.to_string()]);
        }
        blocks_of.insert(node.name.clone(), blocks);
        jobs.push((node, argv, input.into_bytes()));
    }
    let mut reports: Vec<PushReport> = exec_each(jobs, options, None)
        .await
        .into_iter()
        .map(|r| {
            let blocks = blocks_of.remove(&r.node).unwrap_or_default();
            let (status, error) = if r.outcome.success() {
                // The node's `apply` reports in a hosts-apply record.
                let changed = lct_core::stream::read_kind::<ApplyReport>(r.stdout.as_bytes())
                    .is_ok_and(|(reports, _)| reports.iter().any(|report| report.changed));
                (if changed { PushStatus::Changed } else { PushStatus::Unchanged }, None)
            } else {
                let why = r.stderr.trim().lines().last().unwrap_or_default().to_string();
                (PushStatus::Failed, Some(format!("{}: {why}", r.outcome.describe())))
            };
            let apply_ms = Some(r.duration_ms);
            PushReport { node: r.node, cluster: r.cluster, status, blocks, error, apply_ms }
        })
        .collect();
    for job in here {
        if let Ok(report) = job.await {
            reports.push(report);
        }
    }
    reports.extend(plan.skipped.into_iter().map(|n| PushReport {
        error: Some(format!("status {}", n.status)),
        node: n.name,
        cluster: n.cluster,
        status: PushStatus::Skipped,
        blocks: Vec::new(),
        apply_ms: None,
    }));
    reports.sort_by(|a, b| (&a.cluster, &a.node).cmp(&(&b.cluster, &b.node)));
    reports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cluster: &str, name: &str, ip: &str, status: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "cluster": cluster, "group": "g", "name": name, "provider": "local", "status": status,
            "private_ipv4": [ip], "access": {"method": "netns", "netns": format!("x-{name}")},
        }))
        .unwrap()
    }

    #[test]
    fn dependents_get_the_blocks_they_use() {
        let nodes = vec![
            node("zk", "zk-1", "192.168.128.1", "running"),
            node("hdfs", "nn-1", "192.168.128.2", "running"),
            node("hdfs", "dn-1", "192.168.128.3", "offline"),
            node("web", "web-1", "192.168.128.4", "running"),
        ];
        let clusters: Vec<Cluster> = vec![
            serde_json::from_str(r#"{"name":"zk"}"#).unwrap(),
            serde_json::from_str(r#"{"name":"hdfs","depends_on":[{"cluster":"zk"}]}"#).unwrap(),
        ];
        let selected: BTreeSet<Name> = ["zk".parse().unwrap()].into();
        let p = plan(&nodes, &clusters, &selected, &RenderOptions::default(), &MeshAddresses::new()).unwrap();
        let targets: Vec<(&str, Vec<&str>)> =
            p.targets.iter().map(|(n, b, _)| (n.name.as_str(), b.iter().map(|c| c.as_str()).collect())).collect();
        assert_eq!(targets, [("zk-1", vec!["zk"]), ("nn-1", vec!["zk"])]);
        assert_eq!(p.skipped[0].name.as_str(), "dn-1");
        assert!(p.targets[1].2.contains("\"address\":\"192.168.128.1\""));

        let both: BTreeSet<Name> = ["zk".parse().unwrap(), "hdfs".parse().unwrap()].into();
        let p = plan(&nodes, &clusters, &both, &RenderOptions::default(), &MeshAddresses::new()).unwrap();
        let zk1 = p.targets.iter().find(|(n, _, _)| n.name.as_str() == "zk-1").unwrap();
        assert_eq!(zk1.1.iter().map(|c| c.as_str()).collect::<Vec<_>>(), ["zk"], "zk does not use hdfs");
        let nn1 = p.targets.iter().find(|(n, _, _)| n.name.as_str() == "nn-1").unwrap();
        assert_eq!(nn1.1.iter().map(|c| c.as_str()).collect::<Vec<_>>(), ["hdfs", "zk"]);
        assert!(nn1.2.contains("192.168.128.3"), "an offline member keeps its entry");
    }

    /// A running node of cluster zk in `region`, with its private and public address.
    fn placed(name: &str, region: &str, private: &str, public: &str) -> Node {
        let mut n = node("zk", name, private, "running");
        n.region = region.into();
        n.public_ipv4 = vec![public.parse().unwrap()];
        n
    }

    #[test]
    fn a_node_of_another_region_is_named_with_its_public_address() {
        // Both regions hand out 192.168.128.1.
        let nodes = vec![
            placed("zk-1", "a", "192.168.128.1", "203.0.113.1"),
            placed("zk-2", "a", "192.168.128.2", "203.0.113.2"),
            placed("zk-3", "b", "192.168.128.1", "203.0.113.3"),
        ];
        let clusters: Vec<Cluster> = vec![serde_json::from_str(r#"{"name":"zk"}"#).unwrap()];
        let selected: BTreeSet<Name> = ["zk".parse().unwrap()].into();
        let p = plan(&nodes, &clusters, &selected, &RenderOptions::default(), &MeshAddresses::new()).unwrap();
        let input = |name: &str| p.targets.iter().find(|(n, _, _)| n.name.as_str() == name).unwrap().2.clone();
        let address_of = |text: &str, node: &str| -> String {
            let line = text.lines().find(|l| l.contains(&format!("\"node\":\"{node}\""))).unwrap();
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["address"].as_str().unwrap().to_string()
        };
        let (from_a, from_b) = (input("zk-1"), input("zk-3"));
        assert_eq!(address_of(&from_a, "zk-2"), "192.168.128.2");
        assert_eq!(address_of(&from_a, "zk-3"), "203.0.113.3");
        assert_eq!(address_of(&from_b, "zk-3"), "192.168.128.1");
        assert_eq!(address_of(&from_b, "zk-1"), "203.0.113.1");
        assert_eq!(address_of(&from_b, "zk-2"), "203.0.113.2");
    }

    #[test]
    fn a_mesh_member_of_another_region_is_named_with_its_mesh_address_from_members() {
        // Overlapping private ranges; zk-4 (region b) is not in the mesh.
        let nodes = vec![
            placed("zk-1", "a", "192.168.128.1", "203.0.113.1"),
            placed("zk-2", "a", "192.168.128.2", "203.0.113.2"),
            placed("zk-3", "b", "192.168.128.1", "203.0.113.3"),
            placed("zk-4", "b", "192.168.128.2", "203.0.113.4"),
        ];
        let mesh: MeshAddresses = [("zk-1", "100.64.0.1"), ("zk-2", "100.64.0.2"), ("zk-3", "100.64.0.3")]
            .iter()
            .map(|(n, a)| (n.parse().unwrap(), a.parse().unwrap()))
            .collect();
        let clusters: Vec<Cluster> = vec![serde_json::from_str(r#"{"name":"zk"}"#).unwrap()];
        let selected: BTreeSet<Name> = ["zk".parse().unwrap()].into();
        let p = plan(&nodes, &clusters, &selected, &RenderOptions::default(), &mesh).unwrap();
        let input = |name: &str| p.targets.iter().find(|(n, _, _)| n.name.as_str() == name).unwrap().2.clone();
        let private_of = |text: &str, node: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.contains(&format!("\"node\":\"{node}\"")) && l.contains("\"scope\":\"private\""))
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["address"].as_str().unwrap().to_string())
                .collect()
        };
        // From a member: its own region privately, members elsewhere by mesh address, a
        // non-member elsewhere by its public address.
        let from_a = input("zk-1");
        assert_eq!(private_of(&from_a, "zk-2"), ["192.168.128.2"]);
        assert_eq!(private_of(&from_a, "zk-3"), ["100.64.0.3"]);
        assert_eq!(private_of(&from_a, "zk-4"), ["203.0.113.4"]);
        // From zk-3 (member, region b): its region's zk-4 privately, region a by mesh.
        let from_b = input("zk-3");
        assert_eq!(private_of(&from_b, "zk-4"), ["192.168.128.2"]);
        assert_eq!(private_of(&from_b, "zk-1"), ["100.64.0.1"]);
        // From zk-4, not a member (no route into the mesh): today's public fallback.
        let from_outsider = input("zk-4");
        assert_eq!(private_of(&from_outsider, "zk-1"), ["203.0.113.1"]);
        assert_eq!(private_of(&from_outsider, "zk-3"), ["192.168.128.1"]);
    }
}
