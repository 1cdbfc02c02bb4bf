//! Applying a [`Ruleset`] to nf_tables over netlink, in-process (no `nft` process).
//!
//! Only the `inet lct` table is ever touched. A full apply is one batch — add the table,
//! delete it, add it again with its sets, chain and rules — which the kernel commits
//! atomically: every packet sees the old table or the new one. When only membership changed
//! (same structure, same ruleset generation as after our last apply) the batch adds and
//! deletes set elements only.

//! * [`table`]: the batches: a whole table, or set elements only; the queries about it.
//! * [`socket`]: the netlink socket (one per sync), how batches and queries reach the kernel.
//! * [`memory`]: what was last applied in this namespace, kept under /run, and its lock.
//! * [`conntrack`]: ending removed peers' established connections.
//! * [`confirm`]: a change that rolls back unless confirmed in time.
//! * [`events`]: nf_tables' change notifications; [`watch`]: `lct-fw watch`, which puts the
//!   table back when anyone else changes it.

mod confirm;
mod conntrack;
pub mod events;
mod memory;
mod socket;
mod table;
mod watch;

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;

use crate::report::Applied;
use crate::ruleset::Ruleset;

pub use confirm::{begin_confirm, confirm, roll_back};
pub use conntrack::kill_connections;
pub(crate) use memory::memory_path;
use memory::{LastApplied, LockFile, remember};
pub use memory::{forget, last_applied};
pub use socket::Netlink;
pub use table::{apply_elements, apply_table, capacities, capacity, delete_table};
pub use watch::watch;

/// Brings this host's `inet lct` table to `rs`: only the elements when nothing else changed
/// since our last apply (same structure, and no one touched the ruleset: same generation),
/// the whole table otherwise — which also repairs drift such as `nft flush ruleset`.
pub fn sync(rs: &Ruleset, full: bool) -> io::Result<Applied> {
    let nl = Netlink::open()?;
    let path = memory_path()?;
    // From before the commit until it is recorded: `lct-fw watch` must not take it for tampering.
    let lock_file = LockFile::open(&path)?;
    let _lock = lock_file.lock()?;
    let last = LastApplied::read(&path);
    let before = nl.generation()?;
    // Any change to the ruleset by anyone bumps the generation, our own element updates
    // included (we record the generation after them); a different one means drift.
    let fits = |last: &LastApplied| {
        last.capacity.len() == rs.rules.len()
            && rs
                .rules
                .iter()
                .zip(&last.capacity)
                .all(|(r, [c4, c6])| r.peers_v4.len() as u64 <= *c4 as u64 && r.peers_v6.len() as u64 <= *c6 as u64)
    };
    let (applied, capacity) = match last {
        Some(last)
            if !full
                && last.ruleset.structure() == rs.structure()
                && last.ruleset.node == rs.node
                && fits(&last)
                && before == last.generation =>
        {
            match apply_elements(&nl, &last.ruleset, rs) {
                Ok(applied) => (applied, last.capacity),
                // What we remembered does not match the kernel after all (a namespace that
                // reuses a deleted one's inode, say): the whole table puts it right.
                Err(e) => {
                    tracing::warn!("element update refused ({e}); replacing the table");
                    apply_table(&nl, rs)?;
                    (Applied::Table, capacities(rs))
                }
            }
        }
        _ => {
            apply_table(&nl, rs)?;
            (Applied::Table, capacities(rs))
        }
    };
    if applied != Applied::Unchanged {
        // Our one commit's generation, or 0 if another came in between (not ours to vouch for).
        remember(&path, nl.generation_after(before)?, rs, &capacity)?;
    }
    Ok(applied)
}

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
