//! `lct-fw watch`: puts the `inet lct` table back, as lct-fw last applied it here, whenever
//! anyone else changes it (`nft flush ruleset`, a deleted set, a rule added to lct's chain),
//! and logs who did (the committing process, from the commit's NEWGEN notification).
//!
//! Whose change it is: a commit by this process is its own restore; a commit whose
//! generation lct-fw recorded after applying it (under the memory's lock, which the watcher
//! takes before judging) is a sync's; anything else that touched the table is tampering.
//! Changes to other tables are left alone.
//!
//! Where the kernel keeps a table past its owner (Linux 6.9+), the watcher first makes the
//! table its own (see [`super::table::OWNED`]): `nft flush ruleset` then passes it by and any
//! other change to it is refused, so there is nothing to put back; syncs hand their ruleset to
//! the watcher ([`super::owner`]). When it exits, the table stays; the next watcher takes it
//! over. On older kernels (or with `--restore-only`) it puts the table back after the fact.
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
use super::owner::Server;
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
    fn refresh(kept: Option<Kept>, path: &Path, owned: bool) -> io::Result<Option<Kept>> {
        let Ok(bytes) = std::fs::read(path) else { return Ok(None) };
        if let Some(kept) = kept.filter(|k| k.bytes == bytes) {
            return Ok(Some(kept));
        }
        let Some(last) = LastApplied::decode(&bytes) else { return Ok(None) };
        let prepared = PreparedTable::new(&last.ruleset, owned)?;
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
/// With `claim` (and a kernel that keeps owned tables), owns the table and serves syncs.
pub fn watch(claim: bool) -> io::Result<()> {
    // Subscribed before the first look, so that no change falls between the two.
    let mut monitor = Monitor::open()?;
    let nl = Netlink::open()?;
    let path = memory_path()?;
    let lock_file = LockFile::open(&path)?;
    let me = std::process::id();
    let mut owned = claim && keeps_owned_tables();
    let mut kept = {
        let _lock = lock_file.lock()?;
        let mut kept = Kept::refresh(None, &path, owned)?;
        let mut unsupported = false;
        if owned && let Some(k) = &mut kept {
            let before = nl.generation()?;
            let exists = table_exists(&nl)?;
            {
                // Taken over in one commit, the table replaced by the same one, owned: no
                // moment without it.
                match k.restore(&nl, &path, !exists, before) {
                    Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                        tracing::warn!("nf_tables refused an owned table ({e}): putting it back after changes instead");
                        unsupported = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("table inet {TABLE} is owned by another process (another lct-fw watch?): {e}"),
                        ));
                    }
                    done => {
                        done?;
                    }
                }
            }
        }
        if unsupported {
            owned = false;
            kept = Kept::refresh(None, &path, owned)?;
        }
        match &mut kept {
            Some(k) if !owned => {
                let before = nl.generation()?;
                let exists = table_exists(&nl)?;
                if before != k.last.generation || !exists {
                    tracing::warn!(
                        "at start: nf_tables changed since lct-fw last applied table inet {TABLE} here; putting it back"
                    );
                    k.restore(&nl, &path, !exists, before)?;
                }
            }
            Some(_) => {}
            None => tracing::info!("no ruleset applied here yet: the first `lct-fw sync` gives one to keep"),
        }
        kept
    };
    let server = if owned { Some(Server::bind()?) } else { None };
    if owned {
        tracing::info!(
            "table inet {TABLE} is this process's own: others' changes to it are refused; syncs come through {}",
            super::owner::socket_path()?.display()
        );
    }
    tracing::info!("watching table inet {TABLE} ({})", path.display());
    // The changes of a commit whose NEWGEN has not come yet.
    let mut open: Vec<Change> = Vec::new();
    // The latest generation a notification told of: the one before a restore that follows.
    let mut latest: Option<u32> = None;
    loop {
        let mut foreign: Vec<(Commit, Vec<Change>)> = Vec::new();
        let mut lost = false;
        if let Some(server) = &server
            && !ready(monitor.fd(), server.fd())?
        {
            server.serve(&nl);
            continue;
        }
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
        kept = Kept::refresh(kept, &path, owned)?;
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

/// Waits until notifications (`true`) or a request on the unix socket (`false`) wait.
fn ready(monitor: libc::c_int, server: libc::c_int) -> io::Result<bool> {
    let mut fds = [
        libc::pollfd { fd: monitor, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: server, events: libc::POLLIN, revents: 0 },
    ];
    loop {
        // SAFETY: poll on two descriptors we own, the array's length given.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } >= 0 {
            return Ok(fds[0].revents != 0 || fds[1].revents == 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether this kernel keeps an owned table when its owner goes (`NFT_TABLE_F_PERSIST`,
/// Linux 6.9): without it, an owned table would die with the watcher.
fn keeps_owned_tables() -> bool {
    persists(&std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default())
}

/// Whether a kernel release (`uname -r`) is 6.9 or later.
fn persists(release: &str) -> bool {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (6, 9)
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
    fn owned_tables_from_linux_6_9() {
        assert!(persists("6.18.44-fc-v1272\n") && persists("6.9.0") && persists("7.0-rc1"));
        assert!(!persists("6.1.0-28-cloud-amd64"), "Debian 12: owner without persist");
        assert!(!persists("5.12.0") && !persists(""));
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
