//! What a sync leaves for lct-fw to follow: the clusters whose firewalls it made stale. Shared
//! by `lct-mesh watch` (which runs `lct-fw push` for them) and lct-plan's `mesh-sync` action
//! (which pushes through lct-fw's library): one reach for both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lct_core::record::{Cluster, Name, Node, ProviderName};

use crate::MeshError;
use crate::model::MeshNode;

/// The clusters to push lct-fw for after a sync: those owning a node the sync marked
/// `firewall_stale` ([`crate::state::MeshState::firewall_changes`]: its WireGuard peers
/// or a member's mesh address changed), when one of them, or of their dependencies and
/// dependents (which the push reaches too), has a `firewall` section. Without one, nothing:
/// a mesh change never installs a firewall nobody declared (a plan's cluster always declares
/// one: lct-plan stores lct-fw's default-deny with the plan's flows in its record).
pub fn firewalls_to_push(reports: &[MeshNode], nodes: &[Node], records: &[Cluster]) -> BTreeSet<Name> {
    let stale: BTreeSet<&Name> = reports.iter().filter(|r| r.firewall_stale).map(|r| &r.node).collect();
    let changed: BTreeSet<Name> = nodes.iter().filter(|n| stale.contains(&n.name)).map(|n| n.cluster.clone()).collect();
    let mut reach = changed.clone();
    reach.extend(lct_core::state::dependencies_of(records, &changed));
    reach.extend(lct_core::state::dependents_of(records, &changed));
    let firewalled = |c: &Name| records.iter().any(|r| &r.name == c && r.extra.contains_key("firewall"));
    if reach.iter().any(firewalled) { changed } else { BTreeSet::new() }
}

/// How long one `lct-fw push` may take before it is killed (and tried again later): long
/// enough for a push to many nodes, short enough that a hung one does not stop the mesh
/// from being kept.
pub const PUSH_DEADLINE: Duration = Duration::from_secs(300);

/// The most rounds skipped between two tries of a push that keeps failing.
pub const BACKOFF_MAX_ROUNDS: u32 = 64;

/// The lct-fw that `watch` runs, as root and unattended: `configured` (an absolute path),
/// else the one installed beside lct-mesh (`exe`). Never looked up on the PATH: a directory
/// early on a service's PATH would choose the program that rewrites every firewall.
pub fn lct_fw_program(configured: Option<&Path>, exe: &Path) -> Result<PathBuf, MeshError> {
    match configured {
        Some(p) if !p.is_absolute() => {
            Err(MeshError::Input(format!("--lct-fw {}: an absolute path, please", p.display())))
        }
        Some(p) if !p.is_file() => Err(MeshError::Input(format!("--lct-fw {}: no such program", p.display()))),
        Some(p) => Ok(p.to_path_buf()),
        // Not required to be there yet: a mesh with no firewall declared never pushes, and a
        // push without it fails naming this path (then tried again, as any failed push).
        None => Ok(exe.with_file_name("lct-fw")),
    }
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
    /// Pushes failed in a row, and the rounds still to skip before the next try.
    failures: u32,
    skip: u32,
}

impl Follower {
    pub fn new(lct_fw: PathBuf, providers: Vec<ProviderName>) -> Follower {
        Follower { lct_fw, providers, pending: BTreeSet::new(), failures: 0, skip: 0 }
    }

    /// After a sync: `lct-fw push` for the clusters it made stale ([`firewalls_to_push`]) and
    /// those still pending, as the `mesh-sync` action pushes (lct-fw's reach: their
    /// dependencies and dependents too; established connections of peers that lost access
    /// ended). The pushed clusters (none: nothing to do), their nodes' reports no longer
    /// stale; a failed push is the error, lct-fw's last word in it, and stays pending.
    ///
    /// A push that keeps failing is tried after 1, 2, 4 ... rounds (at most
    /// [`BACKOFF_MAX_ROUNDS`]): one error a try, not one a round forever. A cluster newly made
    /// stale is pushed at once all the same: that is when its tunnels need it.
    pub fn after_sync(
        &mut self,
        reports: &mut [MeshNode],
        nodes: &[Node],
        clusters: &[Cluster],
    ) -> Result<BTreeSet<Name>, MeshError> {
        let stale = firewalls_to_push(reports, nodes, clusters);
        let fresh = stale.iter().any(|c| !self.pending.contains(c));
        self.pending.extend(stale);
        if self.pending.is_empty() {
            return Ok(BTreeSet::new());
        }
        if self.skip > 0 && !fresh {
            self.skip -= 1;
            return Ok(BTreeSet::new());
        }
        let mut args: Vec<String> = ["push", "--kill-established", "--output", "jsonl"].map(String::from).to_vec();
        // Glued to their options: a name is never read as an option of its own.
        args.extend(self.pending.iter().map(|c| format!("--cluster={c}")));
        args.extend(self.providers.iter().map(|p| format!("--provider={p}")));
        if let Err(e) = crate::bounded::run(&self.lct_fw, &args, PUSH_DEADLINE) {
            self.failures = self.failures.saturating_add(1);
            self.skip = 1u32.checked_shl(self.failures - 1).unwrap_or(u32::MAX).min(BACKOFF_MAX_ROUNDS);
            return Err(e);
        }
        (self.failures, self.skip) = (0, 0);
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
        // One failure: the next round waits (backoff), the one after tries again.
        assert!(follower.after_sync(&mut quiet, &nodes, &clusters).unwrap().is_empty(), "backing off");
        assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 1);
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

    /// A push that fails forever: tried less and less often (not once a round, each try an
    /// error in the log), yet still tried; a cluster newly made stale is pushed at once.
    #[test]
    fn a_push_that_always_fails_backs_off() {
        let dir = tempfile::tempdir().unwrap();
        let fw = dir.path().join("lct-fw");
        let calls = dir.path().join("calls");
        std::fs::write(&fw, format!("#!/bin/sh\necho \"$*\" >> {}\necho refused >&2\nexit 1\n", calls.display()))
            .unwrap();
        std::fs::set_permissions(&fw, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let nodes = vec![node("zk", "zk-1"), node("db", "db-1")];
        let zk: Cluster = serde_json::from_value(serde_json::json!({"name": "zk", "firewall": {}})).unwrap();
        let db: Cluster = serde_json::from_value(serde_json::json!({"name": "db", "firewall": {}})).unwrap();
        let clusters = [zk, db];
        let all = ["zk-1", "db-1"];
        let mut follower = super::Follower::new(fw, Vec::new());
        let tries = || std::fs::read_to_string(&calls).map_or(0, |s| s.lines().count());
        let mut errors = 0;
        for round in 0..200 {
            let mut r = reports(&all, if round == 0 { &["zk-1"] } else { &[] });
            errors += usize::from(follower.after_sync(&mut r, &nodes, &clusters).is_err());
        }
        assert_eq!(errors, tries());
        assert!((5..=12).contains(&tries()), "{} tries in 200 rounds", tries());
        // Waiting 64 rounds at most between tries.
        let before = tries();
        for _ in 0..=super::BACKOFF_MAX_ROUNDS {
            let _ = follower.after_sync(&mut reports(&all, &[]), &nodes, &clusters);
        }
        assert_eq!(tries(), before + 1, "tried again within the bound");
        // db newly stale: pushed in this round, despite the backoff.
        let before = tries();
        assert!(follower.after_sync(&mut reports(&all, &["db-1"]), &nodes, &clusters).is_err());
        assert_eq!(tries(), before + 1);
        assert!(std::fs::read_to_string(&calls).unwrap().lines().last().unwrap().contains("--cluster=db --cluster=zk"));
    }

    /// watch runs lct-fw from an absolute path only: the one beside lct-mesh or the one
    /// given; a planted lct-fw on the PATH is never chosen, a relative one is refused.
    #[test]
    fn lct_fw_is_never_taken_from_the_path() {
        let installed = tempfile::tempdir().unwrap();
        let exe = installed.path().join("lct-mesh");
        // None beside lct-mesh, one on the PATH: still the absent one beside, whose push
        // fails naming it.
        let planted = tempfile::tempdir().unwrap();
        let fw = planted.path().join("lct-fw");
        std::fs::write(&fw, format!("#!/bin/sh\ntouch {}/ran\n", planted.path().display())).unwrap();
        std::fs::set_permissions(&fw, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", planted.path().display(), std::env::var("PATH").unwrap_or_default());
        // SAFETY: this test alone reads PATH for lct-fw; the others run programs by path.
        unsafe { std::env::set_var("PATH", &path) };
        let chosen = super::lct_fw_program(None, &exe).unwrap();
        assert_eq!(chosen, installed.path().join("lct-fw"));
        let e = crate::bounded::run(&chosen, &[], super::PUSH_DEADLINE).unwrap_err().to_string();
        assert!(e.contains(&installed.path().join("lct-fw").display().to_string()), "{e}");
        assert!(!planted.path().join("ran").exists(), "the planted lct-fw never runs");
        let e = super::lct_fw_program(Some(std::path::Path::new("lct-fw")), &exe).unwrap_err().to_string();
        assert!(e.contains("absolute"), "{e}");
        let e = super::lct_fw_program(Some(&installed.path().join("nope")), &exe).unwrap_err().to_string();
        assert!(e.contains("no such program"), "{e}");
        std::fs::write(installed.path().join("lct-fw"), "").unwrap();
        let given = installed.path().join("lct-fw");
        assert_eq!(super::lct_fw_program(Some(&given), std::path::Path::new("/nowhere/lct-mesh")).unwrap(), given);
    }
}
