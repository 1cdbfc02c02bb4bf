//! The controller's side: `sync` (plan, keys from the nodes, configuration to the nodes),
//! `status` (every node's peers) and `down`, over the path every push tool uses: lct-mesh
//! inside a namespace node's namespace, over SSH (pinned host keys) on a remote one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use lct_core::record::{Access, Name, Node};
use lct_core::store::{Expect, Holder, Key, LockGuard, SharedStore, Wait};
use lct_core::stream;
use lct_inventory::exec::{ExecOptions, ExecResult, exec_each};

use crate::MeshError;
use crate::inplace::{Work, run_each};
use crate::model::{MeshApplied, MeshConfig, MeshNode, MeshPeer, SyncStatus, Topology};
use crate::plan::{assign, interface_for, names_key, plan};
use crate::state::{DEFAULT_PORT, DEFAULT_PREFIX, LOCK, MeshState, config_digest};

/// How to reach the nodes, and the mesh's settings when it is made.
#[derive(Debug, Clone)]
pub struct Options {
    /// lct's state: the recorded mesh and its lock (the state directory, or a shared store).
    pub store: SharedStore,
    pub prefix: Option<Ipv4Net>,
    pub topology: Option<Topology>,
    pub port: Option<u16>,
    pub parallel: usize,
    pub timeout: Duration,
    /// Contact every node, also those whose planned configuration is the one they last
    /// applied (finds drift: an interface or a route removed by hand, a node restarted).
    pub full: bool,
    /// lct-mesh on this machine (namespace nodes) and on remote nodes.
    pub local_bin: PathBuf,
    pub remote_bin: String,
}

impl Options {
    fn exec(&self) -> ExecOptions {
        ExecOptions {
            parallel: self.parallel,
            timeout: Some(self.timeout),
            output_limit: ANSWER_LIMIT,
            ..Default::default()
        }
    }

    fn argv(&self, node: &Node, args: &[&str]) -> Vec<String> {
        let bin = match node.access {
            Some(Access::Netns { .. }) => self.local_bin.display().to_string(),
            _ => self.remote_bin.clone(),
        };
        std::iter::once(bin).chain(args.iter().map(|s| s.to_string())).collect()
    }

    /// The recorded mesh and what its next write expects (the revision read), or a new one
    /// with these settings; settings that contradict the recorded ones are an error (a mesh
    /// is re-made with `down` first).
    pub fn state(&self) -> Result<(MeshState, Expect), MeshError> {
        match MeshState::load(self.store.as_ref())? {
            Some((s, rev)) => {
                let differs = |what: &str, given: String, recorded: String| {
                    MeshError::Input(format!(
                        "{what} {given}: the mesh has {recorded} (lct-mesh down first to change it)"
                    ))
                };
                if let Some(p) = self.prefix.filter(|p| *p != s.prefix) {
                    return Err(differs("--prefix", p.to_string(), s.prefix.to_string()));
                }
                if let Some(t) = self.topology.filter(|t| *t != s.topology) {
                    return Err(differs("--topology", format!("{t:?}"), format!("{:?}", s.topology)));
                }
                if let Some(p) = self.port.filter(|p| *p != s.port) {
                    return Err(differs("--port", p.to_string(), s.port.to_string()));
                }
                Ok((s, Expect::Rev(rev)))
            }
            None => Ok((
                MeshState::new(
                    self.prefix.unwrap_or_else(|| DEFAULT_PREFIX.parse().expect("a prefix")),
                    self.topology.unwrap_or_default(),
                    self.port.unwrap_or(DEFAULT_PORT),
                ),
                Expect::Absent,
            )),
        }
    }
}

/// The most a node's lct-mesh may answer, per stream: a `mesh-apply` record is under a KiB,
/// a `wg show dump` line about 250 bytes (4000 peers), so a sync holds at most 2 MiB a node
/// (lct-inventory's general bound is 16 MiB).
pub const ANSWER_LIMIT: usize = 1 << 20;
const _: () = assert!(ANSWER_LIMIT < lct_inventory::exec::OUTPUT_LIMIT);

fn why(r: &ExecResult) -> String {
    let last = r.stderr.trim().lines().last().unwrap_or_default();
    format!("{}: {last}", r.outcome.describe())
}

/// `lct-mesh sync`: every node of `nodes` in the mesh, as planned, and one `mesh-node`
/// record each. Nothing is pushed when the plan cannot be made; a node that fails (no key
/// back, apply failed) is reported, and the others go on without it.
pub async fn sync(nodes: &[Node], options: &Options) -> Result<Vec<MeshNode>, MeshError> {
    // One sync (or down) at a time: a watch and a sync by hand must not interleave records.
    let _lock = lock(options, "lct-mesh sync")?;
    let (recorded, mut expect) = options.state()?;
    let before = (expect != Expect::Absent).then(|| recorded.clone());
    let assigned = assign(recorded, nodes)?;
    let mut state = assigned.state;
    // The plan must be possible before any node is touched (a region nobody can lead...).
    let mut trial = state.clone();
    let placeholder = data_encoding::BASE64.encode(&[0u8; 32]);
    for m in trial.members.values_mut() {
        m.public_key.get_or_insert_with(|| placeholder.clone());
    }
    let trial_plan = plan(&mut trial, &assigned.running)?;

    let exec = options.exec();
    // Keys are asked of new nodes only (none recorded): every apply reports the node's key
    // too, so a changed one (a node made again under its name) is seen in the apply round.
    // And only when another node's configuration names a new node's key (it leads, or the
    // topology is full): else the key is made by the new node's own apply, in the same round
    // as everyone else's, which saves a whole round on a join's way (a member joining).
    let new_nodes: BTreeSet<Name> = assigned
        .running
        .iter()
        .filter(|n| state.members[&n.name].public_key.is_none())
        .map(|n| n.name.clone())
        .collect();
    let mut deferred: BTreeSet<Name> =
        if names_key(&trial_plan, &placeholder) { BTreeSet::new() } else { new_nodes.clone() };
    let jobs = assigned
        .running
        .iter()
        .filter(|n| new_nodes.contains(&n.name) && !deferred.contains(&n.name))
        .map(|n| (n.clone(), Work::Key { interface: interface_for(n) }))
        .collect();
    let mut failed: BTreeMap<Name, String> = BTreeMap::new();
    for r in run_each(jobs, &exec, &options.remote_bin).await {
        if let Err(why) = take_report(&mut state, &r, "no public key came back") {
            failed.insert(r.node, why);
        }
    }
    for iface in &assigned.gone_local {
        if let Err(e) = crate::node::forget_key(iface) {
            tracing::warn!("a gone node's key ({iface}): {e}");
        }
    }
    // A node not running now is contacted when it runs again (it may have lost its interface).
    let running: BTreeSet<&Name> = assigned.running.iter().map(|n| &n.name).collect();
    state.applied.retain(|name, _| running.contains(name));

    // Apply; once more when a leader failed or a key changed (the others' peers follow).
    let mut changed: BTreeSet<Name> = BTreeSet::new();
    let mut timings: BTreeMap<Name, u64> = BTreeMap::new();
    let mut reports: BTreeMap<Name, MeshNode> = BTreeMap::new();
    for round in 0..2 {
        let members: Vec<Node> = assigned.running.iter().filter(|n| !failed.contains_key(&n.name)).cloned().collect();
        // A deferred node's key is not needed by anyone's configuration (checked above): a
        // stand-in lets the plan be made, and is never recorded.
        deferred.retain(|n| state.members[n].public_key.is_none());
        for name in &deferred {
            state.members.get_mut(name).expect("running nodes are members").public_key = Some(placeholder.clone());
        }
        let planned = plan(&mut state, &members);
        for name in &deferred {
            state.members.get_mut(name).expect("running nodes are members").public_key = None;
        }
        let planned = planned?;
        reports.clear();
        let mut jobs = Vec::new();
        let mut digests = BTreeMap::new();
        for (node, config) in &planned.configs {
            reports.insert(node.name.clone(), report(&state, node, config, SyncStatus::Unchanged, None));
            let digest = config_digest(node, config);
            // As last applied: not contacted (drift is found by --full, or watch's verify).
            if !options.full && state.applied.get(&node.name) == Some(&digest) {
                continue;
            }
            // Until it answers, its configuration is unknown: a crash now contacts it next time.
            state.applied.remove(&node.name);
            digests.insert(node.name.clone(), digest);
            jobs.push((node.clone(), Work::Apply(config.clone())));
        }
        expect = Expect::Rev(state.save(options.store.as_ref(), expect)?);
        let mut again = false;
        for r in run_each(jobs, &exec, &options.remote_bin).await {
            timings.insert(r.node.clone(), r.duration_ms);
            match take_report(&mut state, &r, "no report came back") {
                Ok((applied, key_changed)) => {
                    again |= key_changed;
                    if applied.changed {
                        changed.insert(r.node.clone());
                    }
                    if let Some(digest) = digests.remove(&r.node) {
                        state.applied.insert(r.node.clone(), digest);
                    }
                }
                Err(why) => {
                    again |= planned.leaders.values().any(|l| *l == r.node);
                    failed.insert(r.node, why);
                }
            }
        }
        if !again || round == 1 {
            state.save(options.store.as_ref(), expect)?;
            break;
        }
    }
    for (name, entry) in reports.iter_mut() {
        if let Some(e) = failed.get(name) {
            (entry.status, entry.error) = (SyncStatus::Failed, Some(e.clone()));
        } else if changed.contains(name) {
            entry.status = SyncStatus::Changed;
        }
        entry.public_key = state.members.get(name).and_then(|m| m.public_key.clone());
        entry.apply_ms = timings.get(name).copied();
    }
    // lct-fw's rules follow this record: say whose are stale now, at the default log level
    // and in the records (a plan or a script pushes those nodes' firewalls again).
    let stale = state.firewall_changes(before.as_ref());
    if !stale.is_empty() {
        let names: Vec<String> = stale.iter().map(Name::to_string).collect();
        let leaders: Vec<String> = state
            .leaders
            .iter()
            .filter(|(r, l)| before.as_ref().and_then(|b| b.leaders.get(*r)) != Some(*l))
            .map(|(r, l)| format!("{r}: {l}"))
            .collect();
        let led = if leaders.is_empty() { String::new() } else { format!(" (new leaders: {})", leaders.join(", ")) };
        tracing::warn!(
            "the mesh changed{led}: the firewalls of {} follow it and are stale until `lct-fw push` (records: firewall_stale)",
            names.join(", ")
        );
    }
    let planned_names: Vec<Name> = reports.keys().cloned().collect();
    for n in nodes.iter().filter(|n| state.members.contains_key(&n.name) && !planned_names.contains(&n.name)) {
        let config = MeshConfig {
            interface: interface_for(n),
            address: state.members[&n.name].address,
            listen_port: state.port,
            forward: false,
            peers: Vec::new(),
            routes: Vec::new(),
            rest: None,
        };
        let (status, error) = match failed.remove(&n.name) {
            Some(e) => (SyncStatus::Failed, Some(e)),
            None => (SyncStatus::Skipped, Some(format!("status {}", n.status))),
        };
        reports.insert(n.name.clone(), report(&state, n, &config, status, error));
    }
    for (name, entry) in reports.iter_mut() {
        entry.firewall_stale = stale.contains(name);
    }
    Ok(reports.into_values().collect())
}

/// The `mesh-apply` record a node's lct-mesh printed.
fn applied_of(r: &ExecResult) -> Option<MeshApplied> {
    stream::read_kind::<MeshApplied>(r.stdout.as_bytes()).ok().and_then(|(mut k, _)| k.pop())
}

/// The `mesh-apply` report of one node, its key recorded, and whether that key differs from
/// the one recorded; or why that node failed (its run failed, nothing came back, its key is
/// not a key or is another member's). One node's bad answer fails that node only: the sync
/// goes on with the others (and a leader that fails is replaced in the next round).
fn take_report(state: &mut MeshState, r: &ExecResult, missing: &str) -> Result<(MeshApplied, bool), String> {
    if !r.outcome.success() {
        return Err(why(r));
    }
    let applied = applied_of(r).ok_or_else(|| missing.to_string())?;
    let changed = take_key(state, &r.node, &applied.public_key).map_err(|e| e.to_string())?;
    Ok((applied, changed))
}

/// Records `key` as `node`'s (checked first: a key, and no other member's); whether it
/// differs from the one recorded.
fn take_key(state: &mut MeshState, node: &Name, key: &str) -> Result<bool, MeshError> {
    crate::model::check_public_key(&format!("node {node}: its public key"), key)?;
    if let Some((other, _)) = state.members.iter().find(|(n, m)| *n != node && m.public_key.as_deref() == Some(key)) {
        // Two peers of one key are merged by `wg` into one: traffic for one goes to the other.
        return Err(MeshError::Input(format!("node {node}: its public key is node {other}'s too (refused)")));
    }
    let member = state.members.get_mut(node).expect("running nodes are members");
    let changed = member.public_key.as_ref().is_some_and(|old| old != key);
    if changed {
        tracing::warn!("node {node}: its public key changed (a new node of the same name?)");
    }
    member.public_key = Some(key.to_string());
    Ok(changed)
}

fn report(state: &MeshState, node: &Node, config: &MeshConfig, status: SyncStatus, error: Option<String>) -> MeshNode {
    MeshNode {
        node: node.name.clone(),
        region: node.region.clone(),
        address: config.address,
        leader: state.leaders.get(&node.region) == Some(&node.name),
        public_key: state.members.get(&node.name).and_then(|m| m.public_key.clone()),
        interface: config.interface.clone(),
        peers: config.peers.len(),
        status,
        error,
        firewall_stale: false,
        apply_ms: None,
    }
}

/// `lct-mesh status`: the peers of every running member, named by their keys; nodes that
/// could not be asked, with why.
pub async fn status(nodes: &[Node], options: &Options) -> Result<(Vec<MeshPeer>, Vec<String>), MeshError> {
    let state = MeshState::load(options.store.as_ref())?.map(|(s, _)| s).unwrap_or_else(|| {
        MeshState::new(DEFAULT_PREFIX.parse().expect("a prefix"), Topology::default(), DEFAULT_PORT)
    });
    let by_key: BTreeMap<&str, &Name> =
        state.members.iter().filter_map(|(n, m)| m.public_key.as_deref().map(|k| (k, n))).collect();
    let jobs = nodes
        .iter()
        .filter(|n| state.members.contains_key(&n.name) && n.status == lct_core::record::Status::Running)
        .map(|n| {
            let argv =
                options.argv(n, &["peers", "--interface", &interface_for(n), "--node", n.name.as_str(), "-o", "jsonl"]);
            (n.clone(), argv, Vec::new())
        })
        .collect();
    let (mut peers, mut problems) = (Vec::new(), Vec::new());
    for r in exec_each(jobs, &options.exec(), None).await {
        match stream::read_kind::<MeshPeer>(r.stdout.as_bytes()) {
            Ok((found, _)) if r.outcome.success() => {
                for mut p in found {
                    p.node = r.node.clone();
                    // What a node sends back reaches the operator's terminal: checked, or dropped.
                    if let Err(e) = p.check() {
                        problems.push(format!("{} ({e})", r.node));
                        continue;
                    }
                    p.peer = by_key.get(p.public_key.as_str()).map(|n| (*n).clone());
                    peers.push(p);
                }
            }
            _ => problems.push(format!("{} ({})", r.node, why(&r))),
        }
    }
    peers.sort_by(|a, b| (&a.node, &a.peer).cmp(&(&b.node, &b.peer)));
    Ok((peers, problems))
}

/// `lct-mesh down`: every node of `nodes` leaves the mesh; the record goes when all did.
pub async fn down(nodes: &[Node], options: &Options) -> Result<Vec<String>, MeshError> {
    let _lock = lock(options, "lct-mesh down")?;
    let jobs = nodes
        .iter()
        .filter(|n| n.status == lct_core::record::Status::Running && n.access.is_some())
        .map(|n| (n.clone(), options.argv(n, &["down-here", "--interface", &interface_for(n)]), Vec::new()))
        .collect();
    let problems: Vec<String> = exec_each(jobs, &options.exec(), None)
        .await
        .iter()
        .filter(|r| !r.outcome.success())
        .map(|r| format!("{} ({})", r.node, why(r)))
        .collect();
    if problems.is_empty() {
        // Namespace members not asked (gone from the inventory): their keys are files here.
        if let Some((state, _)) = MeshState::load(options.store.as_ref())? {
            for (name, m) in &state.members {
                if let Some(iface) = m.local_interface.as_deref().filter(|_| !nodes.iter().any(|n| &n.name == name)) {
                    crate::node::forget_key(iface)?;
                }
            }
        }
        MeshState::remove(options.store.as_ref())?;
    }
    Ok(problems)
}

/// The store lock `mesh`: one sync, watch round or down at a time, across every controller
/// of the store (a watch and a sync by hand must not interleave records). Waits for the
/// holder up to the longest a sync may take.
fn lock(options: &Options, operation: &str) -> Result<Box<dyn LockGuard>, MeshError> {
    let name = Key::new(LOCK).expect("a fixed key");
    let wait = Wait::Upto(options.timeout.saturating_mul(4).max(Duration::from_secs(60)));
    options
        .store
        .lock(&name, &Holder::here(operation), Duration::from_secs(60), wait)
        .map_err(|e| MeshError::Io(format!("{} lock {LOCK}: {e}", options.store.describe())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Member;
    use lct_inventory::exec::Outcome;

    fn answer(node: &str, stdout: &str, code: i32) -> ExecResult {
        ExecResult {
            node: node.parse().unwrap(),
            cluster: "c".parse().unwrap(),
            outcome: Outcome::Exited { code },
            stdout: stdout.to_string(),
            stderr: String::new(),
            duration_ms: 1,
        }
    }

    fn applied(key: &str) -> String {
        stream::to_line(&MeshApplied { interface: "lctmesh0".into(), public_key: key.into(), changed: true })
    }

    #[test]
    fn a_nodes_answer_is_bounded_to_what_lct_mesh_answers() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            store: std::sync::Arc::new(lct_core::store::local::LocalStore::new(dir.path())),
            prefix: None,
            topology: None,
            port: None,
            parallel: 1,
            timeout: Duration::from_secs(1),
            full: false,
            local_bin: "lct-mesh".into(),
            remote_bin: "lct-mesh".into(),
        };
        assert_eq!(options.exec().output_limit, ANSWER_LIMIT);
    }

    #[test]
    fn a_bad_answer_fails_its_node_only() {
        let mut state = MeshState::new("100.64.0.0/24".parse().unwrap(), Topology::Leader, DEFAULT_PORT);
        for (i, n) in ["a-1", "a-2", "b-1"].iter().enumerate() {
            let member = Member {
                address: std::net::Ipv4Addr::new(100, 64, 0, i as u8 + 1),
                public_key: None,
                region: "a".into(),
                local_interface: None,
                endpoint: None,
            };
            state.members.insert(n.parse().unwrap(), member);
        }
        let good = data_encoding::BASE64.encode(&[1u8; 32]);
        let other = data_encoding::BASE64.encode(&[2u8; 32]);
        let (report, changed) = take_report(&mut state, &answer("a-1", &applied(&good), 0), "none").unwrap();
        assert!(report.changed && !changed);
        // A malformed key: that node fails, named, nothing recorded for it; no error for the sync.
        let err = take_report(&mut state, &answer("a-2", &applied("x\nEndpoint = 6.6.6.6:1"), 0), "none").unwrap_err();
        assert!(err.contains("node a-2") && err.contains("not a WireGuard public key"), "{err}");
        assert_eq!(state.members[&"a-2".parse::<Name>().unwrap()].public_key, None);
        // Another member's key: refused, both named.
        let err = take_report(&mut state, &answer("b-1", &applied(&good), 0), "none").unwrap_err();
        assert!(err.contains("node b-1") && err.contains("node a-1's too"), "{err}");
        assert_eq!(state.members[&"b-1".parse::<Name>().unwrap()].public_key, None);
        // A failed run, no report: failures of that node.
        assert!(take_report(&mut state, &answer("b-1", "", 1), "none").unwrap_err().contains("exit"));
        assert_eq!(take_report(&mut state, &answer("b-1", "garbage\n", 0), "none back").unwrap_err(), "none back");
        // The others go on: b-1's own key is taken; a key that changes says so.
        assert!(!take_report(&mut state, &answer("b-1", &applied(&other), 0), "none").unwrap().1);
        let third = data_encoding::BASE64.encode(&[3u8; 32]);
        assert!(take_report(&mut state, &answer("b-1", &applied(&third), 0), "none").unwrap().1);
        state.check().unwrap();
    }
}
