//! The one interface to lct's state: records, plan state, events, keys, secrets and locks.
//!
//! Every read and write of lct's state goes through a [`Store`]: the local directory
//! ([`local::LocalStore`], the default: `/var/lib/lct` or `LCT_STATE_DIR`, the layout every
//! earlier lct wrote) or a shared store named by `LCT_STATE` (`etcd://HOST:PORT,.../PREFIX`).
//! [`open`] picks one from the environment.
//!
//! The model (etcd v3's, which the local directory follows):
//! * keys are path-like names ([`Key`]: `clusters.jsonl`, `plans/zk/cluster.json`,
//!   `ssh/id_ed25519`); the local backend's file for a key is `STATE_DIR/KEY`;
//! * values are bytes with a revision ([`Rev`]) that changes on every write;
//! * writes are transactions ([`Txn`]) that compare revisions of several keys and then put
//!   or delete several keys, all or nothing against other writers: read, change, write
//!   with [`Expect::Rev`] of what was read, and on [`StoreError::Conflict`] read again
//!   ([`update`] does that loop);
//! * secret values ([`Secrecy::Secret`]) are encrypted by a backend that stores them
//!   elsewhere, and kept 0600 by the local directory;
//! * locks ([`Store::lock`]) guard long operations on one cluster; they carry a
//!   [`Holder`] record and end with their holder (a flock locally, a lease in etcd);
//! * [`Store::watch`] reports changes under a prefix.
//!
//! Methods block. A backend with an async client runs it on a thread of its own, so
//! the methods may be called from plain code and (briefly, as `std::fs` is) from async code.

pub mod contract;
#[cfg(feature = "etcd")]
pub mod etcd;
mod key;
pub mod local;
#[cfg(feature = "etcd")]
pub mod migrate;
mod types;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use key::{Key, KeyError, MAX_KEY_LEN, MAX_SEGMENT_LEN};
pub use types::{Change, Committed, Entry, Expect, Holder, LockGuard, Op, Rev, Secrecy, StoreError, Txn, Wait, Watch};

/// The environment variable naming a shared store (`etcd://...`); unset or empty: the
/// local directory (`LCT_STATE_DIR`, else `/var/lib/lct`).
pub const STATE_ENV: &str = "LCT_STATE";

/// lct's state, wherever it is kept. See the module's documentation for the model.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Where the state is, for messages (`/var/lib/lct`, `etcd://a:2379,b:2379/lct`):
    /// never a credential.
    fn describe(&self) -> String;

    /// The value of `key` and its revision; `None` if there is none.
    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError>;

    /// Every key strictly under `prefix` (at any depth) with its revision, sorted.
    fn keys(&self, prefix: &Key) -> Result<Vec<(Key, Rev)>, StoreError>;

    /// Every key strictly under `prefix` (at any depth) with its value, sorted.
    fn list(&self, prefix: &Key) -> Result<Vec<(Key, Entry)>, StoreError>;

    /// Applies `txn` if every compare holds, else fails with [`StoreError::Conflict`]
    /// naming the first key that did not, and writes nothing.
    fn commit(&self, txn: &Txn) -> Result<Committed, StoreError>;

    /// Appends `bytes` to `key`'s value (made if absent), a log's way: no compare, and
    /// two appenders never lose each other's bytes. Returns the new revision.
    fn append(&self, key: &Key, bytes: &[u8], secrecy: Secrecy) -> Result<Rev, StoreError>;

    /// Takes the lock `name` (`plans/zk`), recording `holder` with it. A holder that dies
    /// loses it: at once locally, after `ttl` in etcd (kept alive while the guard lives).
    /// If another holds it: waits as `wait` says, then [`StoreError::Held`] naming them.
    fn lock(&self, name: &Key, holder: &Holder, ttl: Duration, wait: Wait) -> Result<Box<dyn LockGuard>, StoreError>;

    /// Who holds the lock `name` now, if anyone.
    fn lock_holder(&self, name: &Key) -> Result<Option<Holder>, StoreError>;

    /// Breaks the lock `name` for an operator (`lct-plan unlock`): returns who held it. A
    /// backend that cannot take a live holder's lock away (the local directory: a live
    /// process's flock) refuses with [`StoreError::Held`] and says so; a stale record is
    /// removed.
    fn unlock(&self, name: &Key) -> Result<Option<Holder>, StoreError>;

    /// Changes under `prefix` from now on.
    fn watch(&self, prefix: &Key) -> Result<Box<dyn Watch>, StoreError>;

    /// The local file holding `key`'s value, if this backend keeps values as files (the
    /// local directory). Programs that need a path (ssh's identity and known_hosts, a
    /// playbook) use [`materialize`], which falls back to a private copy.
    fn local_path(&self, _key: &Key) -> Option<PathBuf> {
        None
    }

    // Provided on top of the above.

    /// Writes `value` whatever was there.
    fn put(&self, key: &Key, value: &[u8], secrecy: Secrecy) -> Result<Rev, StoreError> {
        self.put_if(key, value, secrecy, Expect::Any)
    }

    /// Writes `value` if `key` is as `expect` says; returns the new revision.
    fn put_if(&self, key: &Key, value: &[u8], secrecy: Secrecy, expect: Expect) -> Result<Rev, StoreError> {
        let done = self.commit(&Txn::new().expect(key, expect).put(key, value.to_vec(), secrecy))?;
        done.rev_of(key).ok_or_else(|| StoreError::Corrupt {
            store: self.describe(),
            key: key.to_string(),
            detail: "the write returned no revision".into(),
        })
    }

    /// Deletes `key` if it is as `expect` says.
    fn delete_if(&self, key: &Key, expect: Expect) -> Result<(), StoreError> {
        self.commit(&Txn::new().expect(key, expect).delete(key)).map(drop)
    }

    /// A secret's value (in clear).
    fn get_secret(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        self.get(key)
    }

    /// Writes a secret ([`Secrecy::Secret`]) if `key` is as `expect` says.
    fn put_secret(&self, key: &Key, value: &[u8], expect: Expect) -> Result<Rev, StoreError> {
        self.put_if(key, value, Secrecy::Secret, expect)
    }
}

/// Read-change-write of one key, again on conflict (up to 100 times): `change` gets the
/// current value (`None`: absent) and returns the new one (`None`: leave it as it is).
/// Returns the value in effect.
pub fn update<S: Store + ?Sized>(
    store: &S,
    key: &Key,
    secrecy: Secrecy,
    mut change: impl FnMut(Option<&[u8]>) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut last = None;
    for _ in 0..100 {
        let now = store.get(key)?;
        let Some(new) = change(now.as_ref().map(|e| e.value.as_slice()))? else {
            return Ok(now.map(|e| e.value));
        };
        match store.put_if(key, &new, secrecy, Expect::from_read(now.as_ref())) {
            Ok(_) => return Ok(Some(new)),
            Err(e) if e.is_conflict() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("a conflict"))
}

/// A store shared by the parts of one process.
pub type SharedStore = Arc<dyn Store>;

/// The store the environment names: `LCT_STATE` if set, else the local directory
/// ([`crate::state::state_dir`]).
pub fn open() -> Result<SharedStore, StoreError> {
    match std::env::var(STATE_ENV) {
        Ok(spec) if !spec.is_empty() => open_spec(&spec),
        _ => Ok(Arc::new(local::LocalStore::new(&crate::state::state_dir()))),
    }
}

/// The store `spec` names: a directory path (`/var/lib/lct`, `dir:/var/lib/lct`) or
/// `etcd://...` (when this build has the etcd backend).
pub fn open_spec(spec: &str) -> Result<SharedStore, StoreError> {
    if let Some(dir) = spec.strip_prefix("dir:").or_else(|| spec.starts_with('/').then_some(spec)) {
        return Ok(Arc::new(local::LocalStore::new(Path::new(dir))));
    }
    if spec.starts_with("etcd://") || spec.starts_with("etcds://") {
        #[cfg(feature = "etcd")]
        return Ok(Arc::new(etcd::EtcdStore::from_env(spec)?));
        #[cfg(not(feature = "etcd"))]
        return Err(StoreError::Spec { spec: spec.into(), detail: "this build has no etcd backend".into() });
    }
    Err(StoreError::Spec {
        spec: spec.into(),
        detail: "expected an absolute directory or etcd://HOST:PORT,.../PREFIX".into(),
    })
}

/// A file holding `key`'s value for a program that needs a path: the value's own file
/// when the store keeps files ([`Store::local_path`]), else a private copy (0600, in a
/// private temporary directory) removed when the returned value drops.
pub fn materialize(store: &dyn Store, key: &Key) -> Result<Materialized, StoreError> {
    if let Some(path) = store.local_path(key) {
        return Ok(Materialized { path, _dir: None });
    }
    let entry = store.get(key)?.ok_or_else(|| StoreError::Corrupt {
        store: store.describe(),
        key: key.to_string(),
        detail: "absent".into(),
    })?;
    let dir = crate::fsutil::temp_dir("lct-state.").map_err(|e| StoreError::io("a private temporary directory", e))?;
    let path = dir.path().join(key.last());
    crate::fsutil::atomic_write(&path, &entry.value, 0o600).map_err(|e| StoreError::io(path.display(), e))?;
    Ok(Materialized { path, _dir: Some(dir) })
}

/// See [`materialize`].
#[derive(Debug)]
pub struct Materialized {
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
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

#[cfg(test)]
mod tests;
