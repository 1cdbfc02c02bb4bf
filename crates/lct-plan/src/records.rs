//! The records lct-plan prints: `plan-event` (a line of a cluster's event log),
//! `plan-secrets` (the first line a hook reads) and `plan-reconciled` (what `reconcile`
//! found and did).

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

/// One hook of an event: its name in logs (`action hosts`, `script configure.py`) and
/// whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HookRun {
    pub hook: String,
    pub ok: bool,
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
