//! What the state interface passes around: revisions, entries, transactions, changes,
//! lock holders and errors.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::key::{Key, KeyError};

/// A value's revision: changes whenever the value is written (or appended to). Only
/// compared for equality; its number means nothing across backends (etcd: the key's
/// `mod_revision`; the local directory: a hash of the file's identity and times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rev(pub u64);

impl fmt::Display for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A stored value and its revision. Secrets come back in clear (the backend decrypts).
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub rev: Rev,
}

impl fmt::Debug for Entry {
    // Values may be secret: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry").field("len", &self.value.len()).field("rev", &self.rev).finish()
    }
}

/// Whether a value is secret. A secret is encrypted before it leaves the process by a
/// backend that stores elsewhere (etcd); the local directory keeps it as a 0600 file.
/// Public values are 0644 files locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Secrecy {
    #[default]
    Public,
    Secret,
}

/// What a transaction expects of a key before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is there (an unconditional write).
    Any,
    /// Nothing: the key is made, never replaced.
    Absent,
    /// Exactly this revision: nobody wrote it since it was read.
    Rev(Rev),
}

impl Expect {
    /// `Rev` of what was read, `Absent` when nothing was.
    pub fn from_read(read: Option<&Entry>) -> Expect {
        read.map_or(Expect::Absent, |e| Expect::Rev(e.rev))
    }
}

/// One write of a transaction.
#[derive(Clone)]
pub enum Op {
    Put {
        key: Key,
        value: Vec<u8>,
        secrecy: Secrecy,
    },
    /// Removes the key (nothing if absent).
    Delete {
        key: Key,
    },
    /// Removes the key and everything under it (`plans/zk`: the cluster's whole state).
    DeletePrefix {
        prefix: Key,
    },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put { key, value, secrecy } => write!(f, "Put({key}, {} bytes, {secrecy:?})", value.len()),
            Op::Delete { key } => write!(f, "Delete({key})"),
            Op::DeletePrefix { prefix } => write!(f, "DeletePrefix({prefix})"),
        }
    }
}

/// Compare revisions of several keys, then (only if all hold) apply several writes; no
/// other writer of the same store comes between the compares and the writes.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    pub compares: Vec<(Key, Expect)>,
    pub ops: Vec<Op>,
    /// Locks that must still be this process's when the writes apply ([`Txn::fenced`]).
    pub fences: Vec<Fence>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }

    pub fn expect(mut self, key: &Key, expect: Expect) -> Txn {
        self.compares.push((key.clone(), expect));
        self
    }

    pub fn put(mut self, key: &Key, value: impl Into<Vec<u8>>, secrecy: Secrecy) -> Txn {
        self.ops.push(Op::Put { key: key.clone(), value: value.into(), secrecy });
        self
    }

    pub fn delete(mut self, key: &Key) -> Txn {
        self.ops.push(Op::Delete { key: key.clone() });
        self
    }

    pub fn delete_prefix(mut self, prefix: &Key) -> Txn {
        self.ops.push(Op::DeletePrefix { prefix: prefix.clone() });
        self
    }

    /// Applies only while `guard` is still held: a holder whose lock ran out or was broken
    /// (and maybe taken by another since) gets [`StoreError::Fenced`] and writes nothing.
    pub fn fenced(mut self, guard: &dyn LockGuard) -> Txn {
        self.fences.push(guard.fence());
        self
    }
}

/// What identifies one holding of a lock, for writes made under it ([`Txn::fenced`]): etcd,
/// the lock key's `create_revision` (a lock taken again, by anyone, has another); the local
/// directory, `0` (its lock is a flock, which a live process never loses and `unlock`
/// never breaks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lock: Key,
    pub token: u64,
}

/// What a committed transaction wrote: the new revision of each key it put, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    pub revs: Vec<(Key, Rev)>,
}

impl Committed {
    pub fn rev_of(&self, key: &Key) -> Option<Rev> {
        self.revs.iter().rev().find(|(k, _)| k == key).map(|(_, r)| *r)
    }
}

/// A change seen by a watch: the key's new revision, or `None` once deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Key,
    pub rev: Option<Rev>,
}

/// Who holds a lock, recorded with it (`lct-plan unlock` shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// `user@host`.
    pub who: String,
    pub pid: u32,
    /// What it is doing (`scale zk`).
    pub operation: String,
    /// Since when, seconds since the epoch.
    pub since: u64,
}

impl Holder {
    /// This process, doing `operation`.
    pub fn here(operation: impl Into<String>) -> Holder {
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "?".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string());
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Holder {
            who: format!("{user}@{}", host.unwrap_or_else(|_| "?".into())),
            pid: std::process::id(),
            operation: operation.into(),
            since,
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pid {}, {}) since {}", self.who, self.pid, self.operation, since_text(self.since))
    }
}

/// How long `Store::lock` waits for a lock another holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Fail at once with [`StoreError::Held`], naming the holder.
    No,
    /// Wait up to this long, then fail with [`StoreError::Held`].
    Upto(Duration),
}

/// A held lock; released on drop (and by the backend when this process dies: the local
/// directory's flock goes with the process, an etcd lease expires after its TTL).
pub trait LockGuard: Send + fmt::Debug {
    /// The lock's name.
    fn name(&self) -> &Key;
    /// Whether it is still ours (etcd: the lease is alive; local: always).
    fn is_held(&self) -> bool;
    /// This holding's fence, for writes that must not land once the lock is lost.
    fn fence(&self) -> Fence;
}

/// A stream of changes under a prefix.
pub trait Watch: Send {
    /// The changes since the last call (the first: since the watch began), waiting up to
    /// `timeout` for at least one; empty when none came.
    fn next(&mut self, timeout: Duration) -> Result<Vec<Change>, StoreError>;
}

/// Why the state could not be read or written. Every message names the store or the key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A compare of a transaction failed: someone else wrote `key` since it was read.
    #[error("{key}: changed by another writer meanwhile (expected {expected}, found {found})")]
    Conflict { key: Key, expected: String, found: String },
    /// A lock another holds.
    #[error("lock {name} is held by {holder}")]
    Held { name: Key, holder: Holder },
    /// A write fenced by a lock ([`Txn::fenced`]) this process no longer holds.
    #[error(
        "lock {name} is no longer this process's (its lease ran out, or an operator broke it with `unlock --force`): nothing was written"
    )]
    Fenced { name: Key },
    /// A lock whose holder record is gone or unreadable, but held.
    #[error("lock {name} is held (holder unknown)")]
    HeldUnknown { name: Key },
    #[error("{place}: {error}")]
    Io { place: String, error: std::io::Error },
    /// The store cannot be reached (etcd down, wrong certificates, ...).
    #[error("state store {store}: {detail}")]
    Unreachable { store: String, detail: String },
    /// What is stored is not what lct wrote (a prefix holding something else, a value that
    /// does not decrypt).
    #[error("state store {store}, key {key}: {detail}")]
    Corrupt { store: String, key: String, detail: String },
    /// `LCT_STATE` names no backend this build knows.
    #[error("LCT_STATE={spec:?}: {detail}")]
    Spec { spec: String, detail: String },
}

impl StoreError {
    pub fn io(place: impl fmt::Display, error: std::io::Error) -> StoreError {
        StoreError::Io { place: place.to_string(), error }
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

/// `2026-12-07T07:05:00Z (3 min ago)` for a time in seconds since the epoch.
pub fn since_text(since: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let ago = now.saturating_sub(since);
    let (days, rem) = (since / 86_400, since % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let ago = match ago {
        0..120 => format!("{ago} s ago"),
        120..7200 => format!("{} min ago", ago / 60),
        _ => format!("{} h ago", ago / 3600),
    };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z ({ago})", rem / 3600, rem % 3600 / 60, rem % 60)
}

// Howard Hinnant's days-to-civil.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
