//! What lct keeps of a cluster made from a plan, and the cluster loaded once for an
//! operation.
//!
//! A cluster's state is kept in the state store ([`lct_core::store`]) under `plans/NAME/`:
//! `plan.yaml` (the copy every later operation reads, no network needed), `files/` (its hook
//! scripts), `cluster.json` (where the plan came from, the parameters, group sizes, the
//! membership its hooks last saw; secret since parameters may be), `events.jsonl`. The hooks'
//! output (`logs/`) stays in this machine's state directory, with the controller that ran
//! them. Long operations hold the cluster's lock (`plans/NAME`, [`lock`]).

use crate::labhome::LabHome;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use lct_core::record::{Name, ProviderName};
use lct_core::state::ClusterStore;
use lct_core::store::{Expect, Holder, Key, LockGuard, Secrecy, SharedStore, StoreError, Txn, Wait};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::Plan;
use crate::{Loaded, parse};

/// What lct keeps of a cluster made from a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    pub name: Name,
    /// The reference it was made from (`package:zookeeper`, a path).
    pub source: String,
    pub provider: ProviderName,
    pub parameters: BTreeMap<String, Value>,
    /// Group sizes set by `scale`, over the plan's counts.
    #[serde(default)]
    pub counts: BTreeMap<Name, u32>,
    /// Whether the `created` event has run to its end.
    #[serde(default)]
    pub created: bool,
    /// The nodes the hooks last saw (after the last event that ended well).
    #[serde(default)]
    pub members: BTreeSet<Name>,
    /// Stopped by `lct-plan stop`.
    #[serde(default)]
    pub stopped: bool,
    /// The volumes it made (`destroy` deletes them unless kept).
    #[serde(default)]
    pub volumes: BTreeSet<Name>,
    /// The lct image each group's nodes are made from, as `create` resolved it (`baked`:
    /// the bake's `REPO::ENTRY`): `scale` makes new nodes from the same image as the others.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<Name, String>,
    /// For a cluster on the local cloud: the machine and lab its nodes are in. Another
    /// controller sharing the store is refused its operations (it would see no nodes).
    /// Absent in a cluster made before it was recorded: not guarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab_home: Option<LabHome>,
}

impl ClusterState {
    /// Fails unless this machine may operate the cluster: one on the local cloud only from
    /// the machine (and lab) that holds its nodes.
    pub fn check_lab_home(&self) -> anyhow::Result<()> {
        match &self.lab_home {
            Some(home) => home.check_is(&LabHome::here()?, self.name.as_str()),
            None => Ok(()),
        }
    }

    /// Writes `cluster.json` while `lock` (the cluster's) is still held, and only if the
    /// state is as `expect` says (`Absent` for a new cluster): a controller that lost its
    /// lock, or a late save after a destroy, writes nothing.
    pub(crate) fn save(&self, home: &Home, lock: &dyn LockGuard, expect: Expect) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        let key = cluster_key(&self.name, "cluster.json");
        let txn = Txn::new().fenced(lock).expect(&key, expect).put(&key, bytes, Secrecy::Secret);
        home.store.commit(&txn).with_context(|| format!("saving cluster {}'s state", self.name))?;
        Ok(())
    }
}

/// Where lct-plan keeps what it knows: the state store (cluster state, plan copies, events,
/// bakes) and this machine's state directory (the hooks' logs, the image repository: what
/// stays with the controller that made it).
#[derive(Debug, Clone)]
pub struct Home {
    pub store: SharedStore,
    pub dir: PathBuf,
}

impl Home {
    /// The store the environment names, and `LCT_STATE_DIR` (or the store's own directory).
    pub fn open() -> anyhow::Result<Home> {
        let store = lct_core::store::open()?;
        let dir = store
            .local_path(&Key::new("x").expect("a fixed key"))
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(lct_core::state::state_dir);
        Ok(Home { store, dir })
    }

    /// The local directory `dir` as both.
    pub fn local(dir: &Path) -> Home {
        Home { store: std::sync::Arc::new(lct_core::store::local::LocalStore::new(dir)), dir: dir.to_path_buf() }
    }

    /// The cluster records of the store.
    pub fn records(&self) -> ClusterStore {
        ClusterStore::on(self.store.clone())
    }

    /// Whether cluster `name` was made by lct-plan (its state is in the store).
    pub fn made_here(&self, name: &Name) -> anyhow::Result<bool> {
        Ok(self.store.get(&cluster_key(name, "cluster.json"))?.is_some())
    }
}

/// `plans/NAME/FILE`.
pub(crate) fn cluster_key(name: &Name, file: &str) -> Key {
    Key::new(format!("plans/{name}/{file}")).expect("a cluster's name and a checked file name make a key")
}

/// `plans/NAME`: the prefix of a cluster's state, and the name of its lock.
pub(crate) fn cluster_prefix(name: &Name) -> Key {
    Key::new(format!("plans/{name}")).expect("a cluster's name makes a key")
}

/// This machine's directory of a cluster's hook logs.
pub(crate) fn logs_dir(home: &Home, name: &Name) -> PathBuf {
    home.dir.join("plans").join(name.as_str()).join("logs")
}

/// How long a lock outlives a controller that died (a shared store's lease; the local
/// directory frees it at once).
pub const LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// A cluster's lock as an operation holds it: shared by the cluster's [`Context`], whose
/// writes are fenced by it.
pub type ClusterLock = std::sync::Arc<dyn LockGuard>;

/// Takes cluster `name`'s lock for `operation` (`scale`), or fails at once naming who
/// holds it. Held until the last clone drops.
pub fn lock(home: &Home, name: &Name, operation: &str) -> anyhow::Result<ClusterLock> {
    let holder = Holder::here(format!("{operation} {name}"));
    match home.store.lock(&cluster_prefix(name), &holder, LOCK_TTL, Wait::No) {
        Ok(guard) => Ok(guard.into()),
        Err(StoreError::Held { holder, .. }) => Err(anyhow::anyhow!(
            "cluster {name} is busy: {holder} holds its lock (it ends with its holder; `lct-plan unlock {name}` shows it)"
        )),
        Err(e) => Err(e.into()),
    }
}

/// Fails when `lock` was lost (a lease that ran out while this process was paused or cut
/// off, an operator's `unlock --force`): what the operation does next (a provider call, a
/// hook) would race the lock's next holder.
pub fn check_held(lock: &dyn LockGuard, doing: &str) -> anyhow::Result<()> {
    if lock.is_held() {
        return Ok(());
    }
    anyhow::bail!(
        "lock {} is no longer this process's (its lease ran out, or `lct-plan unlock --force` broke it): stopped before {doing}; run the command again",
        lock.name()
    )
}

/// `lct-plan unlock`: clears cluster `name`'s lock if its holder is gone (returns who it
/// was). A live holder is refused, named in the error. With `force`, a shared store (etcd)
/// takes a live holder's lock away (its lease revoked, as Terraform's `force-unlock`): its
/// writes from then on are refused (they are fenced by the lock), though a provider call
/// or hook it started may still finish. The local directory cannot take a live process's
/// flock: its lock ends with its process.
pub fn unlock(home: &Home, name: &Name, force: bool) -> anyhow::Result<Option<Holder>> {
    let prefix = cluster_prefix(name);
    let result = if force { home.store.force_unlock(&prefix) } else { home.store.unlock(&prefix) };
    result.map_err(|e| match e {
        StoreError::Held { holder, .. } if force => {
            anyhow::anyhow!("cluster {name} is locked by {holder}: that process still runs; its lock ends with it")
        }
        StoreError::Held { holder, .. } => anyhow::anyhow!(
            "cluster {name} is locked by {holder}, which still runs (it renews its lock); its lock ends with it. \
             If it is stuck, `lct-plan unlock --force {name}` takes the lock away on a shared store (its later writes are refused)"
        ),
        e => e.into(),
    })
}

/// A cluster's saved plan and state.
pub fn load_cluster(home: &Home, name: &Name) -> anyhow::Result<(ClusterState, Plan)> {
    let (state, saved) = load_saved(home, name)?;
    Ok((state, saved.plan))
}

/// A cluster's state and plan when lct-plan made it here, `None` only when it has no state:
/// a store that cannot be read or a state that does not parse is an error, never taken for
/// a new cluster (a create would make its generated secrets anew over the real ones).
pub fn find_cluster(home: &Home, name: &Name) -> anyhow::Result<Option<(ClusterState, Plan)>> {
    if home.store.get(&cluster_key(name, "cluster.json"))?.is_none() {
        return Ok(None);
    }
    load_cluster(home, name).map(Some)
}

/// A cluster's state and saved plan copy, as loaded (with its text, for errors that name
/// the place).
fn load_saved(home: &Home, name: &Name) -> anyhow::Result<(ClusterState, Loaded)> {
    let key = cluster_key(name, "cluster.json");
    let entry = home.store.get(&key)?.with_context(|| format!("cluster {name} was not made by lct-plan here"))?;
    let state: ClusterState =
        serde_json::from_slice(&entry.value).with_context(|| format!("{} {key}", home.store.describe()))?;
    Ok((state, saved_plan(home, name)?))
}

/// A cluster's saved plan copy, as loaded (its text for errors that name the place).
pub(crate) fn saved_plan(home: &Home, name: &Name) -> anyhow::Result<Loaded> {
    let key = cluster_key(name, "plan.yaml");
    let entry = home.store.get(&key)?.context("the cluster's plan copy: absent")?;
    let text = String::from_utf8(entry.value).context("the cluster's plan copy: not UTF-8")?;
    let source = match home.store.local_path(&key) {
        Some(path) => path.display().to_string(),
        None => format!("{} {key}", home.store.describe()),
    };
    let plan = parse(&text, &source)?;
    Ok(Loaded { plan, text, source, files: BTreeMap::new() })
}

/// Writes a cluster's plan copy and its files (secret: they may hold anything), while
/// `lock` (the cluster's) is held.
pub(crate) fn save_plan(home: &Home, name: &Name, loaded: &Loaded, lock: &dyn LockGuard) -> anyhow::Result<()> {
    let mut txn = Txn::new().fenced(lock);
    for (file, body) in &loaded.files {
        let key = Key::new(format!("plans/{name}/files/{file}"))
            .with_context(|| format!("the plan's file {file:?} cannot be kept under this name"))?;
        txn = txn.put(&key, body.clone(), Secrecy::Secret);
    }
    txn = txn.put(&cluster_key(name, "plan.yaml"), loaded.text.as_bytes(), Secrecy::Secret);
    home.store.commit(&txn)?;
    // Scripts run from their files stay executable where the store keeps files.
    for file in loaded.files.keys() {
        if let Some(path) = home.store.local_path(&cluster_key(name, &format!("files/{file}"))) {
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// Every cluster made by lct-plan here.
pub fn clusters(home: &Home) -> anyhow::Result<Vec<Name>> {
    let mut names: Vec<Name> = home
        .store
        .keys(&Key::new("plans").expect("a fixed key"))?
        .into_iter()
        .filter_map(|(key, _)| {
            let parts: Vec<&str> = key.segments().collect();
            (parts.len() == 3 && parts[2] == "cluster.json").then(|| parts[1].parse().ok()).flatten()
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Where lct's own programs are (the controller side of `install`, `hosts`, `firewall`).
#[derive(Debug, Clone)]
pub struct Tools {
    pub bin_dir: std::path::PathBuf,
}

impl Tools {
    /// lct's programs beside the one running.
    pub fn beside_current_exe() -> std::io::Result<Tools> {
        Ok(Tools { bin_dir: std::env::current_exe()?.parent().map(Path::to_path_buf).unwrap_or_default() })
    }
}

/// What changed, for `node-added` and `node-removed` hooks (`LCT_NODES_ADDED`,
/// `LCT_NODES_REMOVED`, comma-separated).
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub added: Vec<Name>,
    pub removed: Vec<Name>,
}

/// One cluster, loaded once for an operation: its state, its plan (the saved copy), the
/// cluster records, where lct's programs are. Events, hooks and actions are given it
/// rather than reading the cluster again.
pub struct Context {
    pub home: Home,
    pub tools: Tools,
    pub store: ClusterStore,
    pub state: ClusterState,
    pub plan: Plan,
    /// The plan's text, for errors and warnings that name a place in it.
    pub text: String,
    /// The cluster's lock when this operation holds it ([`Context::under`]): the cluster's
    /// writes are fenced by it. A context without (another cluster's, heard from) writes
    /// only its events.
    pub lock: Option<ClusterLock>,
}

impl Context {
    /// Cluster `name` as saved in `home`.
    pub fn load(home: &Home, tools: &Tools, name: &Name) -> anyhow::Result<Context> {
        let (state, saved) = load_saved(home, name)?;
        state.check_lab_home()?;
        Ok(Context::new(home, tools, state, saved))
    }

    /// A cluster whose state and plan are at hand (`create` has just written them).
    pub fn new(home: &Home, tools: &Tools, state: ClusterState, loaded: Loaded) -> Context {
        let store = home.records();
        let (plan, text) = (loaded.plan, loaded.text);
        Context { home: home.clone(), tools: tools.clone(), store, state, plan, text, lock: None }
    }

    /// This context under the cluster's lock `lock`, which fences its writes.
    pub fn under(mut self, lock: &ClusterLock) -> Context {
        self.lock = Some(lock.clone());
        self
    }

    /// Fails when the cluster's lock was lost ([`check_held`]); nothing without a lock.
    pub fn check_held(&self, doing: &str) -> anyhow::Result<()> {
        self.lock.as_deref().map_or(Ok(()), |lock| check_held(lock, doing))
    }

    /// Makes `txn` conditional on the cluster's lock, if this context holds it.
    pub fn fenced(&self, txn: Txn) -> Txn {
        match &self.lock {
            Some(lock) => txn.fenced(&**lock),
            None => txn,
        }
    }

    /// Another cluster of the same state (a dependency, a dependent).
    pub fn other(&self, name: &Name) -> anyhow::Result<Context> {
        Context::load(&self.home, &self.tools, name)
    }

    pub fn name(&self) -> &Name {
        &self.state.name
    }

    /// The key of one of the cluster's files (`events.jsonl`, `files/x.sh`).
    pub fn key(&self, file: &str) -> anyhow::Result<Key> {
        Ok(Key::new(format!("plans/{}/{file}", self.name()))?)
    }

    /// This machine's directory of the cluster's hook logs.
    pub fn logs(&self) -> PathBuf {
        logs_dir(&self.home, self.name())
    }

    /// Writes the cluster's state (`cluster.json`), fenced by its lock: only an operation
    /// holding the lock writes it.
    pub fn save(&self) -> anyhow::Result<()> {
        let lock = self.lock.as_deref().with_context(|| {
            format!("cluster {}'s state is written only under its lock (a bug: the operation took none)", self.name())
        })?;
        self.state.save(&self.home, lock, Expect::Any)
    }
}
