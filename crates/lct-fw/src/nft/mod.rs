//! Applying a [`Ruleset`] to nf_tables over netlink, in-process (no `nft` process).
//!
//! Only the `inet lct` table is ever touched. A full apply is one batch — add the table,
//! delete it, add it again with its sets, chain and rules — which the kernel commits
//! atomically: every packet sees the old table or the new one. When only membership changed
//! (same structure, same ruleset generation as after our last apply) the batch adds and
//! deletes set elements only.

//! * [`apply`]: a sync on a netlink socket; [`owner`]: handing it to `lct-fw watch` when
//!   the watcher's socket owns the table.
//! * [`table`]: the batches: a whole table, or set elements only; the queries about it.
//! * [`socket`]: the netlink socket (one per sync), how batches and queries reach the kernel.
//! * [`memory`]: what was last applied in this namespace, kept under /run, and its lock.
//! * [`conntrack`]: ending removed peers' established connections.
//! * [`confirm`]: a change that rolls back unless confirmed in time.
//! * [`events`]: nf_tables' change notifications; [`watch`]: `lct-fw watch`, which puts the
//!   table back when anyone else changes it.

mod apply;
mod confirm;
mod conntrack;
pub mod events;
mod memory;
mod owner;
mod socket;
mod table;
mod watch;

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::ruleset::Ruleset;

pub use confirm::{begin_confirm, confirm, roll_back};
pub use conntrack::kill_connections;
pub(crate) use memory::memory_path;
pub use memory::{forget, last_applied};
pub use owner::{MAX_REQUEST, delete_table, socket_path, sync};
pub use socket::Netlink;
pub use table::{OWNED, apply_elements, apply_table, capacities, capacity};
pub use watch::watch;

/// Peer addresses admitted by `old` and by no rule of `new`.
pub fn removed_peers(old: &Ruleset, new: &Ruleset) -> Vec<IpAddr> {
    let kept: BTreeSet<IpAddr> = new
        .rules
        .iter()
        .flat_map(|r| r.peers_v4.iter().map(|a| IpAddr::V4(*a)).chain(r.peers_v6.iter().map(|a| IpAddr::V6(*a))))
        .collect();
    let gone: BTreeSet<IpAddr> = old
        .rules
        .iter()
        .flat_map(|r| r.peers_v4.iter().map(|a| IpAddr::V4(*a)).chain(r.peers_v6.iter().map(|a| IpAddr::V6(*a))))
        .filter(|a| !kept.contains(a))
        .collect();
    gone.into_iter().collect()
}
