//! `lct-fw watch`: puts the `inet lct` table back, as lct-fw last applied it here, whenever
//! anyone else changes it (`nft flush ruleset`, a deleted set, a rule added to lct's chain),
//! and logs who did (the committing process, from the commit's NEWGEN notification).
//!
//! Whose change it is: a commit by this process is its own restore; a commit whose
//! generation lct-fw recorded after applying it (under the memory's lock, which the watcher
//! takes before judging) is a sync's; anything else that touched the table is tampering.
//! Changes to other tables are left alone.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::time::Instant;

use nftnl::nftnl_sys::libc;

use super::events::{Change, Commit, Event, Monitor};
use super::memory::{LastApplied, lock, memory_path, remember};
use super::socket::Netlink;
use super::table::{apply_table, capacities};
use crate::ruleset::TABLE;

const INET: u8 = libc::NFPROTO_INET as u8;

/// Watches this network namespace's nf_tables for ever; returns only on an error (the
/// service manager starts it again, and the check at start catches what happened meanwhile).
pub fn watch() -> io::Result<()> {
    // Subscribed before the first look, so that no change falls between the two.
    let mut monitor = Monitor::open()?;
    let nl = Netlink::open()?;
    let path = memory_path()?;
    let me = std::process::id();
    {
        let _lock = lock(&path)?;
        match LastApplied::read(&path) {
            Some(last) if nl.generation()? != last.generation || !nl.table_exists()? => {
                tracing::warn!(
                    "at start: nf_tables changed since lct-fw last applied table inet {TABLE} here; putting it back"
                );
                restore(&nl, &path, &last)?;
            }
            Some(_) => {}
            None => tracing::info!("no ruleset applied here yet: the first `lct-fw sync` gives one to keep"),
        }
    }
    tracing::info!("watching table inet {TABLE} ({})", path.display());
    // The changes of a commit whose NEWGEN has not come yet.
    let mut open: Vec<Change> = Vec::new();
    loop {
        let mut foreign: Vec<(Commit, Vec<Change>)> = Vec::new();
        let mut lost = false;
        for event in monitor.wait()? {
            match event {
                Event::Change(change) if change.is_to(INET, TABLE) => open.push(change),
                Event::Change(_) => {}
                Event::Commit(commit) => {
                    let changes = std::mem::take(&mut open);
                    if !changes.is_empty() && commit.pid != Some(me) {
                        foreign.push((commit, changes));
                    }
                }
                Event::Lost => lost = true,
            }
        }
        if foreign.is_empty() && !lost {
            continue;
        }
        // A sync that committed holds the lock until it has recorded its generation.
        let _lock = lock(&path)?;
        let Some(last) = LastApplied::read(&path) else {
            for (commit, changes) in &foreign {
                tracing::warn!(
                    "{}: nothing to put back: lct-fw has applied no ruleset in this namespace",
                    describe(commit, changes)
                );
            }
            continue;
        };
        foreign.retain(|(commit, _)| commit.generation != last.generation);
        if (foreign.is_empty() && !lost) || nl.generation()? == last.generation {
            continue; // lct-fw's own sync, or already put right
        }
        for (commit, changes) in &foreign {
            tracing::warn!("{}", describe(commit, changes));
        }
        if lost {
            tracing::warn!(
                "nf_tables notifications were lost (receive buffer full): putting table inet {TABLE} back to be sure"
            );
        }
        let started = Instant::now();
        let generation = restore(&nl, &path, &last)?;
        tracing::warn!(
            "table inet {TABLE} restored as lct-fw last applied it (node {}, generation {generation}) in {:.1} ms",
            last.ruleset.node,
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// Puts `last` back (one commit) and records it with its generation.
fn restore(nl: &Netlink, path: &Path, last: &LastApplied) -> io::Result<u32> {
    let before = nl.generation()?;
    apply_table(nl, &last.ruleset)?;
    let generation = nl.generation_after(before)?;
    remember(path, generation, &last.ruleset, &capacities(&last.ruleset))?;
    Ok(generation)
}

/// One line for the log: who committed, and what of lct's table changed (a flush of a large
/// table is thousands of element deletions: counted, not listed).
fn describe(commit: &Commit, changes: &[Change]) -> String {
    let mut counted: BTreeMap<String, usize> = BTreeMap::new();
    for change in changes {
        *counted.entry(change.to_string()).or_default() += 1;
    }
    let listed: Vec<String> =
        counted.iter().map(|(what, n)| if *n == 1 { what.clone() } else { format!("{what} (x{n})") }).collect();
    let ports: std::collections::BTreeSet<u32> = changes.iter().map(|c| c.port_id).collect();
    let ports: Vec<String> = ports.iter().map(u32::to_string).collect();
    format!(
        "table inet {TABLE} changed by {commit}, netlink port {}, generation {}: {}",
        ports.join(","),
        commit.generation,
        listed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_line_names_the_process_and_counts_repeats() {
        let change = |object: &'static str, name: &str| Change {
            action: "delete",
            object,
            family: INET,
            table: TABLE.into(),
            name: Some(name.into()),
            port_id: 99,
        };
        let commit = Commit { generation: 7, pid: Some(1234), process: Some("nft".into()) };
        let line =
            describe(&commit, &[change("element", "r0_v4"), change("element", "r0_v4"), change("chain", "input")]);
        assert_eq!(
            line,
            "table inet lct changed by pid 1234 (nft), netlink port 99, generation 7: \
             delete chain inet lct input, delete element inet lct r0_v4 (x2)"
        );
    }
}
