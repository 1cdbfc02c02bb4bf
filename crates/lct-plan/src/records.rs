//! The records lct-plan prints: `plan-event` (a line of a cluster's event log),
//! `plan-secrets` (the first line a hook reads) and `plan-reconciled` (what `reconcile`
//! found and did), `plan-baked` and `plan-bake-step` (`bake`).

use lct_core::record::{Name, Record};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::plan::Event;

/// An event raised on a cluster, how it ended and the hooks that ran: a line of the
/// cluster's `events.jsonl` (no parameter values: secrets never reach it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanEvent {
    pub cluster: Name,
    pub event: Event,
    /// When it was raised, in seconds since 1970.
    pub at: u64,
    /// `ok` or `failed`.
    pub outcome: String,
    pub took_ms: u64,
    /// The hooks that ran, in order (the first failure stops them).
    pub hooks: Vec<HookRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The nodes a `node-added` event is about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<Name>,
    /// The nodes a `node-removed` event is about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<Name>,
}

impl Record for PlanEvent {
    const KIND: &'static str = "plan-event";
    const VERSION: u32 = 1;
}

/// One hook of an event: its name in logs (`action hosts`, `script configure.py`),
/// whether it succeeded and how long it took (where an event's time goes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HookRun {
    pub hook: String,
    pub ok: bool,
    /// Wall time of the hook (0 in events logged before it was recorded).
    #[serde(default)]
    pub took_ms: u64,
}

/// The secret parameters of a cluster, by name: the first line of a hook's standard input
/// (never its environment or command line, where `ps` shows them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanSecrets {
    pub cluster: Name,
    pub parameters: Map<String, Value>,
}

impl Record for PlanSecrets {
    const KIND: &'static str = "plan-secrets";
    const VERSION: u32 = 1;
}

/// What `lct-plan reconcile` found and did for one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanReconciled {
    pub cluster: Name,
    /// Nodes the provider gained behind lct's back, and the replacements made for lost nodes
    /// of groups with `replace_lost` (`node-added` raised).
    pub added: Vec<Name>,
    /// Nodes the provider lost (`node-removed` raised).
    pub removed: Vec<Name>,
    /// Groups with fewer or more nodes than the plan asks (`lct-plan create` converges).
    pub short: Vec<String>,
    /// The built-in actions run again to repair drift.
    pub repaired: Vec<String>,
}

impl Record for PlanReconciled {
    const KIND: &'static str = "plan-reconciled";
    const VERSION: u32 = 1;
}

/// A bake (`lct-plan bake`): the repository entry the plan's image-time work went into,
/// and what went into it; kept as `STATE/images/bakes/NAME.json`, where `image: baked` of
/// cluster NAME finds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanBaked {
    /// The cluster name the bake is for (`image: baked` of this cluster).
    pub name: Name,
    /// The plan it was baked from (`package:zookeeper`, a path, a URL).
    pub plan: String,
    /// The repository entry, `PLAN-<hash12>`.
    pub entry: String,
    pub repo: String,
    /// `REPO::ENTRY`: what a group's image becomes.
    pub image: String,
    /// BLAKE3 of the recipe and the values given to the bake.
    pub hash: String,
    /// BLAKE3 of the plan's text and files, its packages, the base image and lct's
    /// node-side programs: what `image: baked` checks the current plan against.
    pub recipe: String,
    pub base_image: String,
    /// When the entry was made, in seconds since 1970.
    pub created: u64,
    /// The disk's size in bytes.
    pub disk_size: u64,
    pub arch: String,
    /// The entry was there already: no node was made.
    pub reused: bool,
    /// Compressed bytes the repository gained (0 when reused).
    pub new_bytes: u64,
    pub took_ms: u64,
}

impl Record for PlanBaked {
    const KIND: &'static str = "plan-baked";
    const VERSION: u32 = 1;
}

impl lct_core::table::Tabular for PlanBaked {
    const HEADERS: &'static [&'static str] = &["NAME", "IMAGE", "REUSED", "DISK", "NEW", "TOOK"];
    fn row(&self) -> Vec<String> {
        vec![
            self.name.to_string(),
            self.image.clone(),
            self.reused.to_string(),
            format!("{} MiB", self.disk_size >> 20),
            format!("{} MiB", self.new_bytes >> 20),
            format!("{:.1} s", self.took_ms as f64 / 1000.0),
        ]
    }
}

/// A step of a bake, as it starts (`lct-plan bake` in a pipe: a line on standard error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanBakeStep {
    pub name: Name,
    pub step: String,
    /// Milliseconds since the bake started.
    pub at_ms: u64,
}

impl Record for PlanBakeStep {
    const KIND: &'static str = "plan-bake-step";
    const VERSION: u32 = 1;
}
