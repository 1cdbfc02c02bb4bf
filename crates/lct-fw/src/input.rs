//! What lct-fw reads on stdin: node records (all members, so that peers resolve), completed
//! by the cluster records of stdin and of the state directory; and, for a sync, this host's
//! ruleset as a `fw-ruleset` record or rendered from the node records there.

use std::io::BufRead;

use lct_core::record::{Cluster, Name, Node};
use lct_core::state::{ClusterStore, StateError};
use lct_core::stream::{self, Line, StreamError};

use crate::ruleset::{Ruleset, RulesetError, for_node, load_mesh};
use lct_mesh::state::MeshState;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("stdin")]
    Stdin(#[source] StreamError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Ruleset(#[from] RulesetError),
    #[error("no node record for {0} on stdin")]
    NoNode(Name),
    #[error("stdin has no fw-ruleset or node record for this host ({0}); give --node")]
    NoHostRecord(Name),
}

/// Node records of stdin, the cluster records of stdin completed by the state directory's,
/// and the other lines (passed through by `render`).
pub struct Members {
    pub nodes: Vec<Node>,
    pub clusters: Vec<Cluster>,
    pub others: Vec<Line>,
    /// The mesh's record, when there is a mesh.
    pub mesh: Option<MeshState>,
}

impl Members {
    pub fn read(store: &ClusterStore, input: impl BufRead) -> Result<Members, InputError> {
        let (nodes, others) = stream::read_kind_parallel::<Node, Node>(input, |n, _| n).map_err(InputError::Stdin)?;
        let nodes: Vec<Node> = nodes.into_iter().map(|(_, n)| n).collect();
        let clusters = store.with_input(&others)?;
        Ok(Members { nodes, clusters, others, mesh: load_mesh()? })
    }

    /// The rulesets of the nodes named in `only` (every node when empty), in input order.
    pub fn rulesets(&self, only: &[Name], force: bool) -> Result<Vec<Ruleset>, InputError> {
        if let Some(missing) = only.iter().find(|o| !self.nodes.iter().any(|n| &n.name == *o)) {
            return Err(InputError::NoNode(missing.clone()));
        }
        let targets = self.nodes.iter().filter(|n| only.is_empty() || only.contains(&n.name));
        let mesh = self.mesh.as_ref();
        Ok(targets.map(|n| for_node(n, &self.nodes, &self.clusters, mesh, force)).collect::<Result<Vec<_>, _>>()?)
    }
}

/// This host's ruleset (node `me`) from stdin: its `fw-ruleset` record, else rendered from
/// the node records there.
pub fn host_ruleset(store: &ClusterStore, me: &Name, input: impl BufRead, force: bool) -> Result<Ruleset, InputError> {
    let lines = stream::read_all(input).map_err(InputError::Stdin)?;
    let mut rulesets = Vec::new();
    let mut nodes = Vec::new();
    for line in &lines {
        if line.is::<Ruleset>() {
            rulesets.push(line.parse::<Ruleset>().map_err(InputError::Stdin)?);
        } else if line.is::<Node>() {
            nodes.push(line.parse::<Node>().map_err(InputError::Stdin)?);
        }
    }
    if let Some(r) = rulesets.into_iter().find(|r| &r.node == me) {
        return Ok(r);
    }
    let Some(node) = nodes.iter().find(|n| &n.name == me) else {
        return Err(InputError::NoHostRecord(me.clone()));
    };
    Ok(for_node(node, &nodes, &store.load()?, load_mesh()?.as_ref(), force)?)
}
