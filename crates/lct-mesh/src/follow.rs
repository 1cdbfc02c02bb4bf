//! What a sync leaves for lct-fw to follow: the clusters whose firewalls it made stale. Shared
//! by `lct-mesh watch` (which runs `lct-fw push` for them) and lct-plan's `mesh-sync` action
//! (which pushes through lct-fw's library): one reach for both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use lct_core::record::{Cluster, Name, Node, ProviderName};

use crate::MeshError;
use crate::model::MeshNode;

/// The clusters to push lct-fw for after a sync: those owning a node the sync marked
/// `firewall_stale` ([`crate::state::MeshState::firewall_changes`]: its WireGuard peers
/// or a member's mesh address changed), when one of them, or of their dependencies and
/// dependents (which the push reaches too), has a `firewall` section. Without one, nothing:
/// a mesh change never installs a firewall nobody declared.
pub fn firewalls_to_push(reports: &[MeshNode], nodes: &[Node], records: &[Cluster]) -> BTreeSet<Name> {
    let stale: BTreeSet<&Name> = reports.iter().filter(|r| r.firewall_stale).map(|r| &r.node).collect();
    let changed: BTreeSet<Name> = nodes.iter().filter(|n| stale.contains(&n.name)).map(|n| n.cluster.clone()).collect();
    let mut reach = changed.clone();
    reach.extend(lct_core::state::dependencies_of(records, &changed));
    reach.extend(lct_core::state::dependents_of(records, &changed));
    let firewalled = |c: &Name| records.iter().any(|r| &r.name == c && r.extra.contains_key("firewall"));
    if reach.iter().any(firewalled) { changed } else { BTreeSet::new() }
}

/// What `lct-mesh watch` keeps between rounds: the clusters whose firewalls a sync made
/// stale and no push has caught up with yet. A push that failed is tried again next round:
/// the sync that made them stale will not say so twice.
#[derive(Debug)]
pub struct Follower {
    /// lct-fw, run (lct-mesh cannot link it: lct-fw reads the mesh's record through lct-mesh).
    pub lct_fw: PathBuf,
    /// The providers lct-fw asks for the nodes (none: every provider).
    pub providers: Vec<ProviderName>,
    pending: BTreeSet<Name>,
}

impl Follower {
    pub fn new(lct_fw: PathBuf, providers: Vec<ProviderName>) -> Follower {
        Follower { lct_fw, providers, pending: BTreeSet::new() }
    }

    /// After a sync: `lct-fw push` for the clusters it made stale ([`firewalls_to_push`]) and
    /// those still pending, as the `mesh-sync` action pushes (lct-fw's reach: their
    /// dependencies and dependents too; established connections of peers that lost access
    /// ended). The pushed clusters (none: nothing to do), their nodes' reports no longer
    /// stale; a failed push is the error, lct-fw's last word in it, and stays pending.
    pub fn after_sync(
        &mut self,
        reports: &mut [MeshNode],
        nodes: &[Node],
        clusters: &[Cluster],
    ) -> Result<BTreeSet<Name>, MeshError> {
        self.pending.extend(firewalls_to_push(reports, nodes, clusters));
        if self.pending.is_empty() {
            return Ok(BTreeSet::new());
        }
        let mut args: Vec<String> = ["push", "--kill-established", "--output", "jsonl"].map(String::from).to_vec();
        // Glued to their options: a name is never read as an option of its own.
        args.extend(self.pending.iter().map(|c| format!("--cluster={c}")));
        args.extend(self.providers.iter().map(|p| format!("--provider={p}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::sys::run(&self.lct_fw.display().to_string(), &args, None)?;
        let pushed = std::mem::take(&mut self.pending);
        let cluster_of: BTreeMap<&Name, &Name> = nodes.iter().map(|n| (&n.name, &n.cluster)).collect();
        for r in reports.iter_mut() {
            if cluster_of.get(&r.node).is_some_and(|c| pushed.contains(*c)) {
                r.firewall_stale = false;
            }
        }
        Ok(pushed)
    }
}

#[cfg(test)]
mod tests {
    use super::firewalls_to_push;
    use crate::model::MeshNode;
    use lct_core::record::{Cluster, Node};

    fn node(cluster: &str, name: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "cluster": cluster, "group": "server", "name": name, "provider": "local", "region": "a",
            "status": "running", "private_ipv4": [], "public_ipv4": [], "private_ipv6": [], "public_ipv6": [],
            "tags": []
        }))
        .unwrap()
    }

    /// The sync's records, `stale` nodes marked firewall_stale.
    fn reports(all: &[&str], stale: &[&str]) -> Vec<MeshNode> {
        all.iter()
            .map(|n| {
                serde_json::from_value(serde_json::json!({
                    "node": n, "region": "a", "address": "100.64.0.1", "leader": false, "interface": "lm0", "peers": 0,
                    "status": "unchanged", "firewall_stale": stale.contains(n)
                }))
                .unwrap()
            })
            .collect()
    }

    fn names(set: std::collections::BTreeSet<lct_core::record::Name>) -> Vec<String> {
        set.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn stale_firewalls_are_pushed_where_a_firewall_is_declared_only() {
        let nodes = vec![node("zk", "zk-1"), node("zk", "zk-2"), node("cl", "cl-1"), node("cl", "cl-2")];
        let zk: Cluster = serde_json::from_value(serde_json::json!({"name": "zk", "firewall": {}})).unwrap();
        let bare_zk: Cluster = serde_json::from_value(serde_json::json!({"name": "zk"})).unwrap();
        let cl: Cluster = serde_json::from_value(serde_json::json!({
            "name": "cl", "depends_on": [{"cluster": "zk"}]
        }))
        .unwrap();
        let all = ["zk-1", "zk-2", "cl-1", "cl-2"];
        // cl-2 leads now: its cluster is pushed (the push reaches zk, its dependency, too).
        let moved = reports(&all, &["cl-2", "zk-2"]);
        assert_eq!(names(firewalls_to_push(&moved, &nodes, &[zk.clone(), cl.clone()])), ["cl", "zk"]);
        // Only a firewall-less dependent changed, its dependency has one: pushed.
        assert_eq!(names(firewalls_to_push(&reports(&all, &["cl-2"]), &nodes, &[zk, cl.clone()])), ["cl"]);
        assert!(firewalls_to_push(&reports(&all, &[]), &nodes, &[bare_zk.clone(), cl.clone()]).is_empty());
        assert!(
            firewalls_to_push(&moved, &nodes, &[bare_zk, cl]).is_empty(),
            "no firewall declared: none installed by a mesh change"
        );
    }

    /// A failed push stays pending and is tried again after the next sync, which says
    /// nothing stale; a pushed cluster's reports are no longer stale.
    #[test]
    fn watch_pushes_stale_firewalls_until_a_push_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let fw = dir.path().join("lct-fw");
        let calls = dir.path().join("calls");
        // Fails while the file `fail` exists; records each call's arguments.
        std::fs::write(
            &fw,
            format!(
                "#!/bin/sh\necho \"$*\" >> {c}\n[ -e {d}/fail ] && {{ echo 'node zk-2: unreachable' >&2; exit 1; }}\nexit 0\n",
                c = calls.display(),
                d = dir.path().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fw, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("fail"), "").unwrap();
        let nodes = vec![node("zk", "zk-1"), node("zk", "zk-2"), node("web", "web-1")];
        let zk: Cluster = serde_json::from_value(serde_json::json!({"name": "zk", "firewall": {}})).unwrap();
        let web: Cluster = serde_json::from_value(serde_json::json!({"name": "web"})).unwrap();
        let clusters = [zk, web];
        let all = ["zk-1", "zk-2", "web-1"];
        let mut follower = super::Follower::new(fw.clone(), vec![lct_core::record::ProviderName::Local]);

        let mut first = reports(&all, &["zk-2"]);
        let e = follower.after_sync(&mut first, &nodes, &clusters).unwrap_err();
        assert!(e.to_string().contains("node zk-2: unreachable"), "{e}");
        assert!(first.iter().any(|r| r.firewall_stale), "not pushed: still stale");
        std::fs::remove_file(dir.path().join("fail")).unwrap();
        let mut quiet = reports(&all, &[]);
        assert_eq!(names(follower.after_sync(&mut quiet, &nodes, &clusters).unwrap()), ["zk"], "tried again");
        let said = std::fs::read_to_string(&calls).unwrap();
        assert_eq!(said, "push --kill-established --output jsonl --cluster=zk --provider=local\n".repeat(2));
        assert!(follower.after_sync(&mut quiet, &nodes, &clusters).unwrap().is_empty(), "caught up: no push");
        assert_eq!(std::fs::read_to_string(&calls).unwrap(), said);
        // Only web (no firewall, none in its reach) stale: nothing pushed, its report left
        // as it is; a stale zk node's report is cleared once pushed.
        let mut bare = reports(&all, &["web-1"]);
        assert!(follower.after_sync(&mut bare, &nodes, &clusters).unwrap().is_empty());
        assert!(bare.iter().any(|r| r.node.as_str() == "web-1" && r.firewall_stale));
        let mut moved = reports(&all, &["zk-1"]);
        assert_eq!(names(follower.after_sync(&mut moved, &nodes, &clusters).unwrap()), ["zk"]);
        assert!(moved.iter().all(|r| !r.firewall_stale));
    }
}
