//! What was last applied in this network namespace, and the ruleset generation right after:
//! "lct-fw memory 2", a JSON header line, then per rule counts and raw addresses, under /run.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::ruleset::Ruleset;

/// What was last applied in this network namespace, and the generation right after.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct LastApplied {
    pub(super) generation: u32,
    pub(super) ruleset: Ruleset,
    /// Per rule, how many IPv4 and IPv6 elements its sets were sized for at the last full apply.
    pub(super) capacity: Vec<[u32; 2]>,
}

/// The first line of a memory file, naming its format.
pub(super) const MEMORY_FORMAT: &[u8] = b"lct-fw memory 2\n";

impl LastApplied {
    /// The memory file: a line naming the format, a JSON line with everything but the peers,
    /// then each rule's IPv4 and IPv6 peers as a count (u32, little-endian) and the raw
    /// addresses in order. 10,000 peers are read and written in microseconds; as JSON
    /// strings they took a millisecond, half of an element-only sync.
    pub(super) fn encode(generation: u32, ruleset: &Ruleset, capacity: &[[u32; 2]]) -> Vec<u8> {
        let without_peers = Ruleset {
            rules: ruleset
                .rules
                .iter()
                .map(|r| crate::ruleset::Rule {
                    name: r.name.clone(),
                    comment: r.comment.clone(),
                    ports: r.ports.clone(),
                    peers_v4: BTreeSet::new(),
                    peers_v6: BTreeSet::new(),
                    cidrs: r.cidrs.clone(),
                })
                .collect(),
            node: ruleset.node.clone(),
            cluster: ruleset.cluster.clone(),
            mode: ruleset.mode,
            ssh_port: ruleset.ssh_port,
            admin_cidrs: ruleset.admin_cidrs.clone(),
            managed: ruleset.managed.clone(),
        };
        let header = LastApplied { generation, ruleset: without_peers, capacity: capacity.to_vec() };
        let peers: usize = ruleset.rules.iter().map(|r| r.peers_v4.len() * 4 + r.peers_v6.len() * 16 + 8).sum();
        let mut out = Vec::with_capacity(MEMORY_FORMAT.len() + 1024 + peers);
        out.extend_from_slice(MEMORY_FORMAT);
        serde_json::to_writer(&mut out, &header).expect("serializes");
        out.push(b'\n');
        for rule in &ruleset.rules {
            out.extend_from_slice(&(rule.peers_v4.len() as u32).to_le_bytes());
            rule.peers_v4.iter().for_each(|a| out.extend_from_slice(&a.octets()));
            out.extend_from_slice(&(rule.peers_v6.len() as u32).to_le_bytes());
            rule.peers_v6.iter().for_each(|a| out.extend_from_slice(&a.octets()));
        }
        out
    }

    /// Reads what [`encode`](Self::encode) wrote; `None` for anything else (an older format,
    /// a torn or foreign file), which makes the next sync replace the whole table.
    pub(super) fn decode(bytes: &[u8]) -> Option<LastApplied> {
        let rest = bytes.strip_prefix(MEMORY_FORMAT)?;
        let end = rest.iter().position(|&b| b == b'\n')?;
        let mut last: LastApplied = serde_json::from_slice(&rest[..end]).ok()?;
        let mut rest = &rest[end + 1..];
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            rest = tail;
            Some(head)
        };
        for rule in &mut last.ruleset.rules {
            let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let raw = take(count.checked_mul(4)?)?;
            rule.peers_v4 = sorted(raw.chunks_exact(4).map(|a| Ipv4Addr::from(<[u8; 4]>::try_from(a).expect("4"))))?;
            let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let raw = take(count.checked_mul(16)?)?;
            rule.peers_v6 = sorted(raw.chunks_exact(16).map(|a| Ipv6Addr::from(<[u8; 16]>::try_from(a).expect("16"))))?;
        }
        take(1).is_none().then_some(last)
    }

    pub(super) fn read(path: &std::path::Path) -> Option<LastApplied> {
        LastApplied::decode(&std::fs::read(path).ok()?)
    }
}

/// A set from addresses in strictly ascending order (built in bulk); `None` if they are not.
pub(super) fn sorted<T: Ord + Copy>(items: impl Iterator<Item = T>) -> Option<BTreeSet<T>> {
    let items: Vec<T> = items.collect();
    items.windows(2).all(|w| w[0] < w[1]).then(|| items.into_iter().collect())
}

/// Where the last applied ruleset of this network namespace is remembered: /run (gone with
/// the namespaces at reboot), keyed by the namespace's inode.
pub(crate) fn memory_path() -> io::Result<std::path::PathBuf> {
    lct_core::state::netns_runtime_file("fw", "json")
}

/// The lock beside the memory at `path` (`net-INO.lock`), open: taken with [`LockFile::lock`]
/// while the table is changed and the change recorded (a sync, a roll-back, the watcher's
/// restore), so that the watcher judges a change only once its author has recorded it: a
/// change made under the lock and recorded is lct's own. The watcher keeps it open.
pub(super) struct LockFile(std::fs::File);

/// The lock, held until dropped.
pub(super) struct MemoryLock<'a>(&'a LockFile);

impl LockFile {
    pub(super) fn open(path: &std::path::Path) -> io::Result<LockFile> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(path.parent().expect("has parent"))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path.with_extension("lock"))?;
        Ok(LockFile(file))
    }

    /// Takes the lock, waiting for its holder.
    pub(super) fn lock(&self) -> io::Result<MemoryLock<'_>> {
        loop {
            if self.flock(libc::LOCK_EX) == 0 {
                return Ok(MemoryLock(self));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn flock(&self, operation: libc::c_int) -> libc::c_int {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), operation) }
    }
}

impl Drop for MemoryLock<'_> {
    fn drop(&mut self) {
        self.0.flock(libc::LOCK_UN);
    }
}

/// Records `ruleset` as applied, with the generation its commit made.
pub(super) fn remember(
    path: &std::path::Path,
    generation: u32,
    ruleset: &Ruleset,
    capacity: &[[u32; 2]],
) -> io::Result<()> {
    store(path, &LastApplied::encode(generation, ruleset, capacity))
}

/// Writes an encoded memory (atomically: a reader sees the old one or the new one).
pub(super) fn store(path: &std::path::Path, encoded: &[u8]) -> io::Result<()> {
    std::fs::create_dir_all(path.parent().expect("has parent"))?;
    lct_core::fsutil::atomic_write(path, encoded, 0o600)
}

/// Forgets what was applied here (after the table was deleted).
pub fn forget() -> io::Result<()> {
    match std::fs::remove_file(memory_path()?) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The ruleset last applied in this network namespace, if lct-fw remembers one.
pub fn last_applied() -> Option<Ruleset> {
    Some(LastApplied::read(&memory_path().ok()?)?.ruleset)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn ruleset() -> Ruleset {
        let mut rs: Ruleset = serde_json::from_str(
            r#"{"node":"n1","cluster":"zk","mode":"managed-ports","ssh_port":22,"admin_cidrs":["192.0.2.0/24"],
                "rules":[{"name":"r0","comment":"zk peers","ports":["2181/tcp"],"cidrs":["198.51.100.0/24"]},
                         {"name":"r1","comment":"empty","ports":["53/udp"]}],
                "managed":["2181/tcp","53/udp"]}"#,
        )
        .unwrap();
        rs.rules[0].peers_v4 = (0..5000u32).map(|i| Ipv4Addr::from(0x0a00_0000 + i * 7)).collect();
        rs.rules[0].peers_v6 = (0..300u128).map(|i| Ipv6Addr::from(0x2001_0db8 << 96 | i)).collect();
        rs
    }

    #[test]
    pub(super) fn memory_round_trips_and_refuses_what_it_did_not_write() {
        let rs = ruleset();
        let bytes = LastApplied::encode(42, &rs, &[[8192, 1024], [1024, 1024]]);
        let back = LastApplied::decode(&bytes).expect("decodes");
        assert_eq!((back.generation, &back.ruleset, back.capacity), (42, &rs, vec![[8192, 1024], [1024, 1024]]));
        // Torn, extended, older, or out of order: not trusted.
        assert!(LastApplied::decode(&bytes[..bytes.len() - 3]).is_none());
        assert!(LastApplied::decode(&[&bytes[..], b"x"].concat()).is_none());
        assert!(LastApplied::decode(br#"{"generation":1}"#).is_none());
        let header_end = MEMORY_FORMAT.len() + bytes[MEMORY_FORMAT.len()..].iter().position(|&b| b == b'\n').unwrap();
        let mut swapped = bytes.clone();
        let first = header_end + 1 + 4;
        swapped[first..first + 4].copy_from_slice(&[10, 255, 255, 255]);
        assert!(LastApplied::decode(&swapped).is_none());
    }
}
