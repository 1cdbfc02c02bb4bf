//! A WireGuard mesh across regions for lct nodes.
//!
//! * [`model`]: the records (`mesh-node`, `mesh-peer`, `mesh-config`, `mesh-apply`) and the
//!   grammar of region names, public keys and interface names.
//! * [`state`]: the recorded mesh (addresses, keys, leaders) in the state directory.
//! * [`plan`]: addresses, leaders, and each node's peers and routes, before anything is touched.
//! * [`node`]: the node's side: its key, its interface (kernel or wireguard-go), `wg syncconf`,
//!   its address and routes.
//! * `netif`: an interface's state and IPv4 addresses through getifaddrs (no `ip` process).
//! * [`uapi`]: wireguard-go's control socket, spoken directly (no `wg` process).
//! * [`forward`]: a leader's forwarding, confined to mesh traffic (its own nft table).
//! * [`remote`]: the controller's side: sync (only the nodes whose configuration changed),
//!   status and down.
//! * [`inplace`]: a namespace node's apply from a thread of the controller in its namespace;
//!   a remote node's over lct-inventory's exec.
//! * [`graph`]: the mesh as Graphviz DOT.
//! * [`follow`]: what a sync leaves for lct-fw (the clusters whose firewalls went stale).
//! * [`cli`]: the command line's definitions.
//!
//! lct-mesh does not implement WireGuard: the kernel's or wireguard-go does, driven by `wg`.

pub mod bounded;
pub mod cli;
pub mod follow;
pub mod forward;
pub mod graph;
pub mod inplace;
pub mod model;
mod netif;
pub mod node;
pub mod plan;
pub mod remote;
pub mod state;
mod sys;
pub mod uapi;

/// Every member's mesh address that the mesh has keyed (its node applied it once), by node,
/// from the mesh recorded in `store` (lct's state store: the state directory or etcd): what
/// lct-hosts, lct-dns and lct-plan name a node of another region with. No mesh yet: none. A
/// damaged record is an error, never an empty mesh (names would fall back silently).
pub fn addresses(
    store: &dyn lct_core::store::Store,
) -> Result<std::collections::BTreeMap<lct_core::record::Name, std::net::Ipv4Addr>, MeshError> {
    Ok(state::MeshState::load(store)?.map(|(state, _)| state.applied_addresses()).unwrap_or_default())
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use state::{DEFAULT_PORT, Member, MeshState};

    #[test]
    fn addresses_are_the_keyed_members_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = lct_core::store::local::LocalStore::new(dir.path());
        assert!(addresses(&store).unwrap().is_empty(), "no mesh: no addresses");
        let mut s = MeshState::new("100.64.0.0/24".parse().unwrap(), model::Topology::Leader, DEFAULT_PORT);
        let member = |last: u8, key: Option<&str>| Member {
            address: std::net::Ipv4Addr::new(100, 64, 0, last),
            public_key: key.map(String::from),
            region: "a".into(),
            local_interface: None,
            endpoint: None,
        };
        let key = data_encoding::BASE64.encode(&[7u8; 32]);
        s.members.insert("a-1".parse().unwrap(), member(1, Some(&key)));
        // Planned but never applied: its address works nowhere yet.
        s.members.insert("a-2".parse().unwrap(), member(2, None));
        s.save(&store, lct_core::store::Expect::Absent).unwrap();
        let got = addresses(&store).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[&"a-1".parse::<lct_core::record::Name>().unwrap()].to_string(), "100.64.0.1");
        // A damaged record is an error, not an empty mesh (names would silently fall back).
        std::fs::write(dir.path().join(state::KEY), "{").unwrap();
        assert!(addresses(&store).unwrap_err().to_string().contains("mesh.json"));
    }
}
