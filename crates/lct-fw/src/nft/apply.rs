//! A sync on a given netlink socket: the caller's own, or `lct-fw watch`'s when it owns the
//! table and applies the ruleset a sync handed it (see [`super::owner`]).

use std::io;

use super::memory::{LastApplied, LockFile, memory_path, remember};
use super::socket::Netlink;
use super::table::{apply_elements, apply_table, capacities};
use crate::report::Applied;
use crate::ruleset::Ruleset;

/// Brings this host's `inet lct` table to `rs`: only the elements when nothing else changed
/// since our last apply (same structure, and no one touched the ruleset: same generation),
/// the whole table otherwise — which also repairs drift such as `nft flush ruleset`. On `nl`,
/// the table made its own when `owned` (only `lct-fw watch` asks so, on its socket).
pub(super) fn sync_on(nl: &Netlink, rs: &Ruleset, full: bool, owned: bool) -> io::Result<Applied> {
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
            match apply_elements(nl, &last.ruleset, rs) {
                Ok(applied) => (applied, last.capacity),
                // What we remembered does not match the kernel after all (a namespace that
                // reuses a deleted one's inode, say): the whole table puts it right.
                Err(e) => {
                    tracing::warn!("element update refused ({e}); replacing the table");
                    apply_table(nl, rs, owned)?;
                    (Applied::Table, capacities(rs))
                }
            }
        }
        _ => {
            apply_table(nl, rs, owned)?;
            (Applied::Table, capacities(rs))
        }
    };
    if applied != Applied::Unchanged {
        // Our one commit's generation, or 0 if another came in between (not ours to vouch for).
        remember(&path, nl.generation_after(before)?, rs, &capacity)?;
    }
    Ok(applied)
}
