//! What lct keeps of a cluster made from a plan, and the cluster loaded once for an
//! operation.
//!
//! A cluster's state is `STATE/plans/NAME/`: `plan.yaml` (the copy every later operation
//! reads, no network needed), `files/` (its hook scripts), `cluster.json` (where the plan
//! came from, the parameters, group sizes, the membership its hooks last saw; 0600 since
//! parameters may be secret), `events.jsonl` and `logs/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use lct_core::fsutil::atomic_write_json;
use lct_core::record::{Name, ProviderName};
use lct_core::state::ClusterStore;
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
}

impl ClusterState {
    pub(crate) fn save(&self, state_dir: &Path) -> anyhow::Result<()> {
        Ok(atomic_write_json(&cluster_dir(state_dir, &self.name).join("cluster.json"), self)?)
    }
}

/// Where clusters made from plans keep their state.
pub fn plans_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("plans")
}

pub(crate) fn cluster_dir(state_dir: &Path, name: &Name) -> PathBuf {
    plans_dir(state_dir).join(name.as_str())
}

/// A cluster's saved plan and state.
pub fn load_cluster(state_dir: &Path, name: &Name) -> anyhow::Result<(ClusterState, Plan)> {
    let (state, saved) = load_saved(state_dir, name)?;
    Ok((state, saved.plan))
}

/// A cluster's state and saved plan copy, as loaded (with its text, for errors that name
/// the place).
fn load_saved(state_dir: &Path, name: &Name) -> anyhow::Result<(ClusterState, Loaded)> {
    let dir = cluster_dir(state_dir, name);
    let state: ClusterState = serde_json::from_slice(
        &std::fs::read(dir.join("cluster.json"))
            .with_context(|| format!("cluster {name} was not made by lct-plan here"))?,
    )
    .with_context(|| format!("{}", dir.join("cluster.json").display()))?;
    Ok((state, saved_plan(state_dir, name)?))
}

/// A cluster's saved plan copy, as loaded (its text for errors that name the place).
pub(crate) fn saved_plan(state_dir: &Path, name: &Name) -> anyhow::Result<Loaded> {
    let path = cluster_dir(state_dir, name).join("plan.yaml");
    let text = std::fs::read_to_string(&path).context("the cluster's plan copy")?;
    let source = path.display().to_string();
    let plan = parse(&text, &source)?;
    Ok(Loaded { plan, text, source, files: BTreeMap::new() })
}

/// Every cluster made by lct-plan here.
pub fn clusters(state_dir: &Path) -> anyhow::Result<Vec<Name>> {
    let mut names = Vec::new();
    let Ok(entries) = std::fs::read_dir(plans_dir(state_dir)) else { return Ok(names) };
    for e in entries {
        let e = e?;
        if e.path().join("cluster.json").exists()
            && let Some(name) = e.file_name().to_str().and_then(|n| n.parse().ok())
        {
            names.push(name);
        }
    }
    names.sort();
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
    pub state_dir: PathBuf,
    pub tools: Tools,
    pub store: ClusterStore,
    pub state: ClusterState,
    pub plan: Plan,
    /// The plan's text, for errors and warnings that name a place in it.
    pub text: String,
}

impl Context {
    /// Cluster `name` as saved in `state_dir`.
    pub fn load(state_dir: &Path, tools: &Tools, name: &Name) -> anyhow::Result<Context> {
        let (state, saved) = load_saved(state_dir, name)?;
        Ok(Context::new(state_dir, tools, state, saved))
    }

    /// A cluster whose state and plan are at hand (`create` has just written them).
    pub fn new(state_dir: &Path, tools: &Tools, state: ClusterState, loaded: Loaded) -> Context {
        let store = ClusterStore::new(state_dir);
        let (plan, text) = (loaded.plan, loaded.text);
        Context { state_dir: state_dir.to_path_buf(), tools: tools.clone(), store, state, plan, text }
    }

    /// Another cluster of the same state directory (a dependency, a dependent).
    pub fn other(&self, name: &Name) -> anyhow::Result<Context> {
        Context::load(&self.state_dir, &self.tools, name)
    }

    pub fn name(&self) -> &Name {
        &self.state.name
    }

    /// `STATE/plans/NAME/`.
    pub fn dir(&self) -> PathBuf {
        cluster_dir(&self.state_dir, self.name())
    }

    /// Writes the cluster's state (`cluster.json`).
    pub fn save(&self) -> anyhow::Result<()> {
        self.state.save(&self.state_dir)
    }
}
