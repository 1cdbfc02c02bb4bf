//! `lct-fw watch`: puts the `inet lct` table back, as lct-fw last applied it here, whenever
//! anyone else changes it (`nft flush ruleset`, a deleted set, a rule added to lct's chain),
//! and logs who did (the committing process, from the commit's NEWGEN notification).
//!
//! Whose change it is: a commit by this process is its own restore; a commit whose
//! generation lct-fw recorded after applying it (under the memory's lock, which the watcher
//! takes before judging) is a sync's; anything else that touched the table is tampering.
//! Changes to other tables are left alone.
//!
//! The restore is the exposure window, so nothing stands before its one `sendmsg` that can
//! come after it: the batches are built when the memory changes (after a sync), not when the
//! table goes; the lock file stays open; the generation before it comes from the
//! notifications; recording and logging follow the commit.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::time::Instant;

use nftnl::nftnl_sys::libc;

use super::events::{Change, Commit, Event, Monitor};
use super::memory::{LastApplied, LockFile, memory_path, store};
use super::socket::Netlink;
use super::table::{PreparedTable, capacities, table_exists};
use crate::ruleset::TABLE;

const INET: u8 = libc::NFPROTO_INET as u8;

/// What the watcher keeps: the memory as last read (its bytes tell a change), what it says,
/// and the batches that put its table back.
struct Kept {
    bytes: Vec<u8>,
    last: LastApplied,
    prepared: PreparedTable,
}

impl Kept {
    /// The memory at `path`, decoded and its batches built only when it changed since `kept`.
    fn refresh(kept: Option<Kept>, path: &Path) -> io::Result<Option<Kept>> {
        let Ok(bytes) = std::fs::read(path) else { return Ok(None) };
        if let Some(kept) = kept.filter(|k| k.bytes == bytes) {
            return Ok(Some(kept));
        }
        let Some(last) = LastApplied::decode(&bytes) else { return Ok(None) };
        let prepared = PreparedTable::new(&last.ruleset)?;
        Ok(Some(Kept { bytes, last, prepared }))
    }

    /// Puts the table back (one commit) and records it with its generation, given the
    /// generation just before the commit (see [`Netlink::generation_after`]).
    fn restore(&mut self, nl: &Netlink, path: &Path, gone: bool, before: u32) -> io::Result<Restored> {
        let started = Instant::now();
        self.prepared.apply(nl, gone)?;
        let sent = started.elapsed();
        let generation = nl.generation_after(before)?;
        let capacity = capacities(&self.last.ruleset);
        self.bytes = LastApplied::encode(generation, &self.last.ruleset, &capacity);
        store(path, &self.bytes)?;
        self.last.generation = generation;
        self.last.capacity = capacity;
        Ok(Restored { generation, sent, recorded: started.elapsed() - sent })
    }
}

/// How a restore went, for the log.
struct Restored {
    generation: u32,
    /// The batch's `sendmsg` until the kernel acknowledged it (nf_tables' commit lock included).
    sent: std::time::Duration,
    recorded: std::time::Duration,
}

/// Watches this network namespace's nf_tables for ever; returns only on an error (the
/// service manager starts it again, and the check at start catches what happened meanwhile).
pub fn watch() -> io::Result<()> {
    // Subscribed before the first look, so that no change falls between the two.
    let mut monitor = Monitor::open()?;
    let nl = Netlink::open()?;
    let path = memory_path()?;
    let lock_file = LockFile::open(&path)?;
    let me = std::process::id();
    let mut kept = {
        let _lock = lock_file.lock()?;
        let mut kept = Kept::refresh(None, &path)?;
        match &mut kept {
            Some(k) => {
                let before = nl.generation()?;
                let exists = table_exists(&nl)?;
                if before != k.last.generation || !exists {
                    tracing::warn!(
                        "at start: nf_tables changed since lct-fw last applied table inet {TABLE} here; putting it back"
                    );
                    k.restore(&nl, &path, !exists, before)?;
                }
            }
            None => tracing::info!("no ruleset applied here yet: the first `lct-fw sync` gives one to keep"),
        }
        kept
    };
    tracing::info!("watching table inet {TABLE} ({})", path.display());
    // The changes of a commit whose NEWGEN has not come yet.
    let mut open: Vec<Change> = Vec::new();
    // The latest generation a notification told of: the one before a restore that follows.
    let mut latest: Option<u32> = None;
    loop {
        let mut foreign: Vec<(Commit, Vec<Change>)> = Vec::new();
        let mut lost = false;
        let events = monitor.wait()?;
        let read = Instant::now();
        for event in events {
            match event {
                Event::Change(change) if change.is_to(INET, TABLE) => open.push(change),
                Event::Change(_) => {}
                Event::Commit(commit) => {
                    latest = Some(commit.generation);
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
        let lock = lock_file.lock()?;
        kept = Kept::refresh(kept, &path)?;
        let Some(k) = &mut kept else {
            for (commit, changes) in &foreign {
                tracing::warn!(
                    "{}: nothing to put back: lct-fw has applied no ruleset in this namespace",
                    describe(commit, changes)
                );
            }
            continue;
        };
        foreign.retain(|(commit, _)| commit.generation != k.last.generation);
        if foreign.is_empty() && !lost {
            continue; // lct-fw's own sync (whose batches were just built)
        }
        // A commit after the one recorded is tampering for sure; otherwise (notifications of
        // commits from before it, or lost ones) the kernel says whether anything changed since.
        let after_record =
            k.last.generation == 0 || foreign.iter().any(|(c, _)| newer(c.generation, k.last.generation));
        let before = match latest {
            Some(g) if after_record && !lost => g,
            _ => {
                let now = nl.generation()?;
                if now == k.last.generation {
                    continue; // already put right
                }
                now
            }
        };
        let gone = if lost { !table_exists(&nl)? } else { table_deleted(&foreign) };
        let restored = k.restore(&nl, &path, gone, before)?;
        let took = read.elapsed() - restored.recorded;
        drop(lock);
        for (commit, changes) in &foreign {
            tracing::warn!("{}", describe(commit, changes));
        }
        if lost {
            tracing::warn!(
                "nf_tables notifications were lost (receive buffer full): put table inet {TABLE} back to be sure"
            );
        }
        tracing::warn!(
            "table inet {TABLE} restored as lct-fw last applied it (node {}, generation {}) in {:.1} ms from the notification ({:.1} ms of it the kernel taking the batch), recorded {:.1} ms after",
            k.last.ruleset.node,
            restored.generation,
            ms(took),
            ms(restored.sent),
            ms(restored.recorded),
        );
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Whether generation `a` came after `b` (they count up from 1 and wrap).
fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Whether the last thing these changes did to lct's table itself was to delete it (as
/// `nft flush ruleset` does): then the batch that only adds puts it back.
fn table_deleted(foreign: &[(Commit, Vec<Change>)]) -> bool {
    foreign
        .iter()
        .rev()
        .flat_map(|(_, changes)| changes.iter().rev())
        .find(|c| c.object == "table")
        .is_some_and(|c| c.action == "delete")
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
    fn generations_wrap_and_a_flush_says_the_table_is_gone() {
        assert!(newer(8, 7) && !newer(7, 7) && !newer(6, 7));
        assert!(newer(1, u32::MAX), "the counter wrapped");
        let change = |action: &'static str, object: &'static str| Change {
            action,
            object,
            family: INET,
            table: TABLE.into(),
            name: None,
            port_id: 9,
        };
        let commit = Commit { generation: 3, pid: Some(9), process: None };
        let flush = vec![change("delete", "rule"), change("delete", "set"), change("delete", "table")];
        assert!(table_deleted(&[(commit.clone(), flush.clone())]));
        // Deleted, then made again (empty) by someone: there is a table to replace.
        assert!(!table_deleted(&[(commit.clone(), flush), (commit.clone(), vec![change("add", "table")])]));
        assert!(!table_deleted(&[(commit, vec![change("delete", "rule")])]), "a flushed chain leaves the table");
    }

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
