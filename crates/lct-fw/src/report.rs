//! The `fw-sync` record: what a sync did on one node, as `lct-fw sync` prints it and
//! `lct-fw push` collects it from every node.

use lct_core::record::{Name, Record};
use serde::{Deserialize, Serialize};

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "applied")]
pub enum Applied {
    /// Nothing differed.
    Unchanged,
    /// Only set elements were added and removed.
    Elements { added: usize, removed: usize },
    /// The whole table was replaced.
    Table,
}

/// What a node's sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SyncOutcome {
    /// Nothing differed.
    Unchanged,
    /// Only set elements were added and removed.
    Elements,
    /// The whole table was replaced.
    Table,
    /// The sync did not happen (push: the node could not be reached or refused).
    Failed,
}

/// The `fw-sync` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncReport {
    pub node: Name,
    pub applied: SyncOutcome,
    /// Set elements added and removed (`elements`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<usize>,
    /// With `--kill-established`: how many removed peers' connections were ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_ended_for: Option<usize>,
    /// With `--confirm-timeout`: seconds left to `lct-fw confirm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_within_s: Option<u64>,
    /// Why it failed (`failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record for SyncReport {
    const KIND: &'static str = "fw-sync";
    const VERSION: u32 = 1;
}

impl SyncReport {
    /// What a sync on `node` did.
    pub fn applied(node: Name, applied: &Applied) -> SyncReport {
        let (outcome, added, removed) = match *applied {
            Applied::Unchanged => (SyncOutcome::Unchanged, None, None),
            Applied::Elements { added, removed } => (SyncOutcome::Elements, Some(added), Some(removed)),
            Applied::Table => (SyncOutcome::Table, None, None),
        };
        SyncReport {
            node,
            applied: outcome,
            added,
            removed,
            connections_ended_for: None,
            confirm_within_s: None,
            error: None,
        }
    }

    /// A sync that did not happen on `node`, and why.
    pub fn failed(node: Name, why: String) -> SyncReport {
        SyncReport {
            node,
            applied: SyncOutcome::Failed,
            added: None,
            removed: None,
            connections_ended_for: None,
            confirm_within_s: None,
            error: Some(why),
        }
    }

    /// The table's DETAIL column.
    pub fn detail(&self) -> String {
        match (self.added, self.removed, &self.error) {
            (Some(a), Some(d), _) => format!("+{a} -{d} elements"),
            (_, _, Some(e)) => e.clone(),
            _ => "-".into(),
        }
    }
}
