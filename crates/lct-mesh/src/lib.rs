//! A WireGuard mesh across regions for lct nodes.
//!
//! * [`model`]: the records (`mesh-node`, `mesh-peer`, `mesh-config`, `mesh-apply`) and the
//!   grammar of region names, public keys and interface names.
//! * [`state`]: the recorded mesh (addresses, keys, leaders) in the state directory.
//! * [`plan`]: addresses, leaders, and each node's peers and routes, before anything is touched.
//! * [`node`]: the node's side: its key, its interface (kernel or wireguard-go), `wg syncconf`,
//!   its address and routes.
//! * [`forward`]: a leader's forwarding, confined to mesh traffic (its own nft table).
//! * [`remote`]: the controller's side: sync, status and down over lct-inventory's exec.
//! * [`graph`]: the mesh as Graphviz DOT.
//! * [`cli`]: the command line's definitions.
//!
//! lct-mesh does not implement WireGuard: the kernel's or wireguard-go does, driven by `wg`.

pub mod cli;
pub mod forward;
pub mod graph;
pub mod model;
pub mod node;
pub mod plan;
pub mod remote;
pub mod state;

/// Why the mesh could not be planned, recorded or applied.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// Bad input: a node record, the recorded mesh, a flag.
    #[error("{0}")]
    Input(String),
    /// Something on a node failed (a program, a file).
    #[error("{0}")]
    Node(String),
    #[error("{0}")]
    Io(String),
}
