//! The updates since the state file was last written whole: each appended as one JSON line
//! and synced (an update costs its own few hundred bytes on disk, not the whole zone's text
//! rewritten), read back onto the state file at start, and folded into it (the file written
//! whole, the log removed) past a bound, at a start, a reload and a clean stop.
//!
//! Each line carries the serial it starts from: it is applied only to a zone at exactly that
//! serial, so a line already in the state file (its serial older, RFC 1982: a fold cut short
//! by a crash, or a whole write by another path) is skipped, and replaying is idempotent. A
//! line that starts from a serial newer than the zone's is a gap (the version it followed
//! never reached the disk): it is reported, never skipped quietly.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::journal::Change;
use crate::zone::{DnsRecord, RecordType};

/// Past this size the log is folded into the state file (about 3,000 one-node updates: a
/// start replays it in a few milliseconds; the fold costs one whole write).
pub(crate) const FOLD_BYTES: u64 = 1 << 20;

/// Where the log is kept: beside the zones in the state directory.
pub(crate) fn update_log_file(state_file: &Path) -> PathBuf {
    state_file.with_extension("updates.jsonl")
}

/// One line of the log: a zone's change from one serial to the next.
#[derive(Serialize, Deserialize)]
struct Entry {
    zone: String,
    #[serde(flatten)]
    change: Change,
}

/// The log cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Json { path: String, source: serde_json::Error },
    /// An append failed after its line was written, and the line could not be cut off
    /// again: a restart would replay an update answered SERVFAIL, unless a fold (the zones
    /// served written whole, the log removed) comes first.
    #[error("{path}: {source}; cutting the line off again failed too ({cut}): a fold must come before the next update")]
    NotCutBack { path: String, source: std::io::Error, cut: std::io::Error },
}

/// Appends `change` of `zone` to the log at `path` and syncs it; returns the log's size.
pub(crate) fn append(path: &Path, zone: &str, change: &Change) -> Result<u64, LogError> {
    append_then(path, zone, change, |dir| std::fs::File::open(dir).and_then(|d| d.sync_all()))
}

/// [`append`], with `sync_dir` run on the state directory when the log was made by this
/// append (a test makes it fail).
fn append_then(
    path: &Path,
    zone: &str,
    change: &Change,
    sync_dir: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<u64, LogError> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = || path.display().to_string();
    let io = |source| LogError::Io { path: shown(), source };
    let entry = Entry { zone: zone.to_string(), change: change.clone() };
    let mut line = serde_json::to_vec(&entry).map_err(|source| LogError::Json { path: shown(), source })?;
    line.push(b'\n');
    let created = !path.exists();
    // The state directory is made on first need, as the state file's writer does.
    if created && let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path).map_err(io)?;
    let before = file.metadata().map_err(io)?.len();
    // One write of the whole line: a crash leaves it whole or torn at its end, never
    // interleaved (one update at a time appends). Any step after the write that fails (a
    // full disk, the directory's sync) cuts the line off again: the update is answered
    // SERVFAIL, so its line must neither be replayed at restart nor have the next update's
    // line follow torn bytes (a replay stops at them, and would drop that update).
    let written = file
        .write_all(&line)
        .and_then(|()| file.sync_data())
        .and_then(|()| match path.parent() {
            Some(dir) if created => sync_dir(dir),
            _ => Ok(()),
        })
        .and_then(|()| file.metadata());
    match written {
        Ok(meta) => Ok(meta.len()),
        Err(source) => match file.set_len(before).and_then(|()| file.sync_data()) {
            Ok(()) => Err(io(source)),
            Err(cut) => Err(LogError::NotCutBack { path: shown(), source, cut }),
        },
    }
}

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Lines applied to the records.
    pub applied: usize,
    /// Lines whose zone was past their starting serial (already in the state file), or is
    /// no longer served.
    pub skipped: usize,
    /// Lines that start from a serial newer than their zone's (RFC 1982): acknowledged
    /// updates that cannot be applied, each named by file, line, zone and serials.
    pub gaps: Vec<String>,
    /// A line that could not be read (a write cut short by a crash), with where it starts:
    /// it and anything after it were dropped from the log.
    pub torn: Option<String>,
}

/// Applies the log at `path` (if there is one) to `records`, the state file's; a torn or
/// unreadable line ends the replay (the versions before it serve) and is cut off the log,
/// so later appends follow whole lines.
pub(crate) fn replay(path: &Path, records: &mut Vec<DnsRecord>) -> Result<Replayed, LogError> {
    let shown = || path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replayed::default()),
        Err(source) => return Err(LogError::Io { path: shown(), source }),
    };
    let mut done = Replayed::default();
    let mut start = 0;
    let mut number = 0;
    while start < bytes.len() {
        number += 1;
        let whole = bytes[start..].iter().position(|&b| b == b'\n').map(|end| &bytes[start..start + end]);
        let entry = match whole.map(serde_json::from_slice::<Entry>) {
            Some(Ok(entry)) => entry,
            Some(Err(e)) => {
                done.torn = Some(format!("{}: line {number} (byte {start}): {e}", shown()));
                break;
            }
            None => {
                done.torn = Some(format!(
                    "{}: line {number} (byte {start}): cut short after {} bytes",
                    shown(),
                    bytes.len() - start
                ));
                break;
            }
        };
        match apply(records, &entry) {
            Applied::Yes => done.applied += 1,
            Applied::Already => done.skipped += 1,
            Applied::Gap(serial) => done.gaps.push(format!(
                "{}: line {number} (byte {start}): zone {} goes from serial {} but the state file has {serial}",
                shown(),
                entry.zone,
                entry.change.from
            )),
        }
        start += whole.map_or(0, <[u8]>::len) + 1;
    }
    if done.torn.is_some() {
        let file = std::fs::OpenOptions::new().write(true).open(path);
        file.and_then(|f| {
            f.set_len(start as u64)?;
            f.sync_all()
        })
        .map_err(|source| LogError::Io { path: shown(), source })?;
    }
    Ok(done)
}

/// What became of one line.
enum Applied {
    Yes,
    /// The zone is past the line's starting serial, or not served.
    Already,
    /// The zone's serial (given) is older than the line's start: a version is missing.
    Gap(u32),
}

/// Applies one line if its zone is at the serial it starts from.
fn apply(records: &mut Vec<DnsRecord>, entry: &Entry) -> Applied {
    let Entry { zone, change } = entry;
    match crate::wire::serial_of(records, zone) {
        None => return Applied::Already,
        Some(serial) if serial == change.from => {}
        // RFC 1982: the state file is past the line (a fold cut short after its write).
        Some(serial) if (serial.wrapping_sub(change.from) as i32) > 0 => return Applied::Already,
        Some(serial) => return Applied::Gap(serial),
    }
    if !change.removed.is_empty() {
        let gone: std::collections::HashSet<&DnsRecord> = change.removed.iter().collect();
        records.retain(|r| !gone.contains(r));
    }
    records.extend(change.added.iter().cloned());
    for soa in records.iter_mut().filter(|r| &r.zone == zone && r.rtype == RecordType::SOA) {
        let mut fields: Vec<&str> = soa.data.split_whitespace().collect();
        let to = change.to.to_string();
        if let Some(serial) = fields.get_mut(2) {
            *serial = &to;
        }
        soa.data = fields.join(" ");
    }
    Applied::Yes
}

/// Writes `served` whole to the state file and removes the log (its lines are in it now).
pub(crate) fn fold(served: &crate::served::Served) -> anyhow::Result<()> {
    served.persist()?;
    let path = update_log_file(&served.settings.state_file);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
#[path = "updatelog_tests.rs"]
mod tests;
