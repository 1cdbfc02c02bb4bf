//! Hosts files: the managed block per cluster, replaced atomically, everything else kept as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use lct_core::fsutil::{Lock, atomic_write};
use lct_core::record::{Name, Record};
use serde::{Deserialize, Serialize};

use crate::HostsError;

const BEGIN: &str = "# BEGIN lct-hosts cluster ";
const END: &str = "# END lct-hosts cluster ";

/// The marker line that opens a cluster's block.
pub fn block_begin(cluster: &str) -> String {
    format!("{BEGIN}{cluster}")
}

/// The marker line that closes a cluster's block.
pub fn block_end(cluster: &str) -> String {
    format!("{END}{cluster}")
}

struct Block {
    cluster: String,
    /// Byte range of the whole block, markers and final newline included.
    start: usize,
    end: usize,
    /// Byte range of the lines between the markers.
    inner: (usize, usize),
}

/// A hosts file split into lct's managed blocks and everything else, which is kept byte for
/// byte.
pub struct HostsFile {
    bytes: Vec<u8>,
    blocks: Vec<Block>,
}

impl HostsFile {
    /// Parses `bytes`; `path` only names the file in errors.
    pub fn parse(path: &str, bytes: Vec<u8>) -> Result<HostsFile, HostsError> {
        let err = |line: usize, message: String| HostsError::File { path: path.to_string(), line, message };
        let mut blocks: Vec<Block> = Vec::new();
        let mut open: Option<(String, usize, usize, usize)> = None; // cluster, start, inner start, line
        let mut offset = 0;
        for (i, raw) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            let number = i + 1;
            let line = raw.strip_suffix(b"\n").unwrap_or(raw);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let next = offset + raw.len();
            if let Some(name) = line.strip_prefix(BEGIN.as_bytes()) {
                let name = String::from_utf8_lossy(name).trim().to_string();
                if let Some((other, _, _, at)) = &open {
                    return Err(err(
                        number,
                        format!("block of cluster {name} begins inside the block of {other} (line {at})"),
                    ));
                }
                if blocks.iter().any(|b| b.cluster == name) {
                    return Err(err(number, format!("a second block for cluster {name}")));
                }
                open = Some((name, offset, next, number));
            } else if let Some(name) = line.strip_prefix(END.as_bytes()) {
                let name = String::from_utf8_lossy(name).trim().to_string();
                match open.take() {
                    Some((cluster, start, inner_start, _)) if cluster == name => {
                        blocks.push(Block { cluster, start, end: next, inner: (inner_start, offset) });
                    }
                    Some((cluster, _, _, at)) => {
                        return Err(err(
                            number,
                            format!("end of cluster {name}'s block inside the block of {cluster} (line {at})"),
                        ));
                    }
                    None => {
                        return Err(err(number, format!("end of cluster {name}'s block without its beginning")));
                    }
                }
            }
            offset = next;
        }
        if let Some((cluster, _, _, at)) = open {
            return Err(err(at, format!("the block of cluster {cluster} has no end line")));
        }
        Ok(HostsFile { bytes, blocks })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The lines of a cluster's block, without the markers.
    pub fn block(&self, cluster: &str) -> Option<&[u8]> {
        self.blocks.iter().find(|b| b.cluster == cluster).map(|b| &self.bytes[b.inner.0..b.inner.1])
    }

    pub fn clusters(&self) -> Vec<&str> {
        self.blocks.iter().map(|b| b.cluster.as_str()).collect()
    }

    /// The file with these clusters' blocks set to the given lines; an empty text removes
    /// the block. Existing blocks stay where they are; new ones are appended in name order.
    pub fn with_blocks(&self, changes: &BTreeMap<Name, String>) -> Vec<u8> {
        let render = |out: &mut Vec<u8>, cluster: &str, text: &str| {
            if !text.is_empty() {
                out.extend_from_slice(block_begin(cluster).as_bytes());
                out.push(b'\n');
                out.extend_from_slice(text.as_bytes());
                if !text.ends_with('\n') {
                    out.push(b'\n');
                }
                out.extend_from_slice(block_end(cluster).as_bytes());
                out.push(b'\n');
            }
        };
        let mut out = Vec::with_capacity(self.bytes.len() + changes.values().map(String::len).sum::<usize>() + 256);
        let mut at = 0;
        for b in &self.blocks {
            out.extend_from_slice(&self.bytes[at..b.start]);
            match changes.iter().find(|(c, _)| c.as_str() == b.cluster) {
                Some((_, text)) => render(&mut out, &b.cluster, text),
                None => out.extend_from_slice(&self.bytes[b.start..b.end]),
            }
            at = b.end;
        }
        out.extend_from_slice(&self.bytes[at..]);
        for (cluster, text) in changes {
            if !text.is_empty() && !self.blocks.iter().any(|b| b.cluster == cluster.as_str()) {
                if !out.is_empty() && !out.ends_with(b"\n") {
                    out.push(b'\n');
                }
                render(&mut out, cluster.as_str(), text);
            }
        }
        out
    }

    /// The changed lines of each changed block, `-` removed and `+` added, for review.
    pub fn diff(&self, path: &str, changes: &BTreeMap<Name, String>) -> String {
        let mut out = String::new();
        for (cluster, text) in changes {
            let old = self.block(cluster.as_str()).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            if old == *text {
                continue;
            }
            let old_lines: BTreeSet<&str> = old.lines().collect();
            let new_lines: BTreeSet<&str> = text.lines().collect();
            out.push_str(&format!("--- {path} (cluster {cluster})\n+++ {path} (cluster {cluster})\n"));
            for l in old.lines().filter(|l| !new_lines.contains(l)) {
                out.push_str(&format!("-{l}\n"));
            }
            for l in text.lines().filter(|l| !old_lines.contains(l)) {
                out.push_str(&format!("+{l}\n"));
            }
        }
        out
    }
}

/// How `apply` may write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// Rename a new file over the old one, or write in place where the file is a mount point.
    #[default]
    Auto,
    /// Always write in place (the file is shared by bind mounts the tool cannot see).
    InPlace,
    /// Only report whether it would change.
    Check,
}

/// How an apply went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyOutcome {
    Unchanged,
    /// Replaced by rename.
    Replaced,
    /// Rewritten in place (bind mount).
    WrittenInPlace,
    /// `--check`: it would change.
    WouldChange,
}

/// The `hosts-apply` record.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApplyReport {
    pub file: String,
    pub outcome: ApplyOutcome,
    pub changed: bool,
    pub clusters: Vec<Name>,
    #[serde(skip)]
    pub diff: String,
}

impl Record for ApplyReport {
    const KIND: &'static str = "hosts-apply";
    const VERSION: u32 = 1;
}

/// Sets the blocks of `changes` in the file at `path` (created if missing, mode 0644):
/// under a lock, not at all when nothing changes, atomically where it can, and read back to
/// verify. With `diff`, the report holds the lines that change.
pub fn apply(
    path: &Path,
    changes: &BTreeMap<Name, String>,
    mode: WriteMode,
    diff: bool,
) -> Result<ApplyReport, HostsError> {
    let shown = path.display().to_string();
    let io_err = |source: io::Error| HostsError::Io { path: shown.clone(), error: source };
    let _lock = Lock::acquire(&lock_path(path))
        .map_err(|source| HostsError::Io { path: lock_path(path).display().to_string(), error: source })?;
    let old = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(e)),
    };
    let file = HostsFile::parse(&shown, old)?;
    let new = file.with_blocks(changes);
    let mut report = ApplyReport {
        file: shown.clone(),
        outcome: ApplyOutcome::Unchanged,
        changed: new != file.bytes(),
        clusters: changes.keys().cloned().collect(),
        diff: String::new(),
    };
    if !report.changed {
        return Ok(report);
    }
    if diff {
        report.diff = file.diff(&shown, changes);
    }
    report.outcome = match mode {
        WriteMode::Check => {
            return Ok(ApplyReport { outcome: ApplyOutcome::WouldChange, ..report });
        }
        WriteMode::InPlace => {
            write_in_place(path, &new).map_err(io_err)?;
            ApplyOutcome::WrittenInPlace
        }
        WriteMode::Auto if is_mount_point(path) => {
            write_in_place(path, &new).map_err(io_err)?;
            ApplyOutcome::WrittenInPlace
        }
        WriteMode::Auto => match atomic_write(path, &new, 0o644) {
            Ok(()) => ApplyOutcome::Replaced,
            // A mount point we could not see (EBUSY) or another filesystem (EXDEV).
            Err(e) if matches!(e.raw_os_error(), Some(16) | Some(18)) => {
                write_in_place(path, &new).map_err(io_err)?;
                ApplyOutcome::WrittenInPlace
            }
            Err(e) => return Err(io_err(e)),
        },
    };
    let written = fs::read(path).map_err(io_err)?;
    if written != new {
        return Err(io_err(io::Error::other("the file read back differs from what was written")));
    }
    Ok(report)
}

/// The lock that keeps applies to one file apart: in /run/lock, named after the path, so
/// nothing is added next to the file (/etc stays clean); beside the file where /run/lock is
/// missing.
fn lock_path(path: &Path) -> PathBuf {
    let run_lock = Path::new("/run/lock");
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let key: String = absolute
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect();
    if run_lock.is_dir() && key.len() < 200 {
        return run_lock.join(format!("lct-hosts{key}.lock"));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "hosts".into());
    path.with_file_name(format!(".{name}.lct-hosts.lock"))
}

/// Rewrites a file's contents without replacing its inode, so every bind mount of it and
/// every process that has it open see the new contents.
fn write_in_place(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    f.write_all(contents)?;
    f.set_len(contents.len() as u64)?;
    f.sync_all()
}

/// Whether `path` is itself a mount point (e.g. the bind mount `ip netns exec` puts over
/// /etc/hosts), which a rename cannot replace.
fn is_mount_point(path: &Path) -> bool {
    let Ok(canonical) = fs::canonicalize(path) else {
        return false;
    };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|mount| Path::new(&unescape_mount(mount)) == canonical)
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(pairs: &[(&str, &str)]) -> BTreeMap<Name, String> {
        pairs.iter().map(|(c, t)| (c.parse().unwrap(), t.to_string())).collect()
    }

    const HAND: &str = "127.0.0.1\tlocalhost\n# an operator's comment\n10.0.0.9 by-hand  # keep me\n";

    #[test]
    fn blocks_are_added_replaced_and_removed_keeping_other_bytes() {
        let file = HostsFile::parse("h", HAND.as_bytes().to_vec()).unwrap();
        let one = file.with_blocks(&changes(&[("zk", "192.168.128.1\tzk-1\n"), ("b", "192.168.128.2\tb-1\n")]));
        let one = String::from_utf8(one).unwrap();
        assert_eq!(
            one,
            format!(
                "{HAND}# BEGIN lct-hosts cluster b\n192.168.128.2\tb-1\n# END lct-hosts cluster b\n\
                 # BEGIN lct-hosts cluster zk\n192.168.128.1\tzk-1\n# END lct-hosts cluster zk\n"
            )
        );
        // An operator adds a line after the blocks; replacing zk keeps it and b untouched.
        let edited = format!("{one}10.1.1.1 later\n");
        let file = HostsFile::parse("h", edited.clone().into_bytes()).unwrap();
        let two = String::from_utf8(file.with_blocks(&changes(&[("zk", "192.168.128.3\tzk-3\n")]))).unwrap();
        assert_eq!(two, edited.replace("192.168.128.1\tzk-1", "192.168.128.3\tzk-3"));
        // An empty block removes it.
        let file = HostsFile::parse("h", two.into_bytes()).unwrap();
        let three = String::from_utf8(file.with_blocks(&changes(&[("b", ""), ("zk", "")]))).unwrap();
        assert_eq!(three, format!("{HAND}10.1.1.1 later\n"));
    }

    #[test]
    fn a_file_without_final_newline_gets_one_before_a_block() {
        let file = HostsFile::parse("h", b"127.0.0.1 localhost".to_vec()).unwrap();
        let out = String::from_utf8(file.with_blocks(&changes(&[("a", "1.2.3.4\ta\n")]))).unwrap();
        assert!(out.starts_with("127.0.0.1 localhost\n# BEGIN"), "{out}");
    }

    #[test]
    fn broken_markers_are_refused_with_their_line() {
        for (text, expected) in [
            ("# BEGIN lct-hosts cluster a\n1.1.1.1 x\n", "line 1: the block of cluster a has no end line"),
            ("x\n# END lct-hosts cluster a\n", "line 2: end of cluster a's block without its beginning"),
            ("# BEGIN lct-hosts cluster a\n# BEGIN lct-hosts cluster b\n", "line 2: block of cluster b begins inside"),
            (
                "# BEGIN lct-hosts cluster a\n# END lct-hosts cluster a\n# BEGIN lct-hosts cluster a\n# END lct-hosts cluster a\n",
                "line 3: a second block for cluster a",
            ),
        ] {
            let err = HostsFile::parse("/etc/hosts", text.as_bytes().to_vec()).err().expect(text).to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn apply_writes_only_on_change_and_keeps_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        fs::write(&path, HAND).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let c = changes(&[("zk", "192.168.128.1\tzk-1\n")]);
        let check = apply(&path, &c, WriteMode::Check, true).unwrap();
        assert_eq!(check.outcome, ApplyOutcome::WouldChange);
        assert!(check.diff.contains("+192.168.128.1\tzk-1"), "{}", check.diff);
        assert_eq!(fs::read_to_string(&path).unwrap(), HAND);
        assert_eq!(apply(&path, &c, WriteMode::Auto, true).unwrap().outcome, ApplyOutcome::Replaced);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(apply(&path, &c, WriteMode::Auto, true).unwrap().outcome, ApplyOutcome::Unchanged);
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let before = inode(&path);
        let c2 = changes(&[("zk", "192.168.128.2\tzk-2\n")]);
        assert_eq!(apply(&path, &c2, WriteMode::InPlace, true).unwrap().outcome, ApplyOutcome::WrittenInPlace);
        assert_eq!(inode(&path), before, "in place keeps the inode");
        assert!(fs::read_to_string(&path).unwrap().contains("zk-2"));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount(r"/a\040b"), "/a b");
        assert_eq!(unescape_mount("/etc/hosts"), "/etc/hosts");
    }
}
