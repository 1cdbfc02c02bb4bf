//! The interface itself: [`Store`], and the read-change-write loop on top of it ([`update`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::key::Key;
use super::types::{Committed, Entry, Expect, Holder, LockGuard, Rev, Secrecy, StoreError, Txn, Wait, Watch};

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
    /// Locks are not keys: `get`, `keys`, `list` and `watch` never show them (a backend
    /// keeps them apart: the local directory in `.locks/`).
    fn lock(&self, name: &Key, holder: &Holder, ttl: Duration, wait: Wait) -> Result<Box<dyn LockGuard>, StoreError>;

    /// Who holds the lock `name` now, if anyone.
    fn lock_holder(&self, name: &Key) -> Result<Option<Holder>, StoreError>;

    /// Clears the lock `name` for an operator (`lct-plan unlock`) if its holder is gone:
    /// returns who held it. A live holder (a live process's flock, an etcd lease still
    /// renewed) is refused with [`StoreError::Held`]; a stale record is removed.
    fn unlock(&self, name: &Key) -> Result<Option<Holder>, StoreError>;

    /// Breaks the lock `name` even if its holder is alive (`lct-plan unlock --force`, as
    /// Terraform's `force-unlock`): its holder's fenced writes fail from then on. A backend
    /// that cannot take a live holder's lock away refuses as `unlock` does.
    fn force_unlock(&self, name: &Key) -> Result<Option<Holder>, StoreError> {
        self.unlock(name)
    }

    /// Changes under `prefix` from now on.
    fn watch(&self, prefix: &Key) -> Result<Box<dyn Watch>, StoreError>;

    /// The local file holding `key`'s value, if this backend keeps values as files (the
    /// local directory). Programs that need a path (ssh's identity and known_hosts, a
    /// playbook) use `materialize`, which falls back to a private copy.
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
