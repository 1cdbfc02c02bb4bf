//! The etcd backend of lct's state (feature `etcd`): `LCT_STATE=etcd://HOST:PORT,.../PREFIX`
//! (or `etcds://` with `LCT_ETCD_CACERT`, `LCT_ETCD_CERT`, `LCT_ETCD_KEY`).
//!
//! * A key `K` is the etcd key `PREFIX/K`; a value's revision is its `mod_revision`; a
//!   transaction is one etcd transaction comparing `mod_revision`s (`create_revision` 0 for
//!   absent keys), so two controllers never make the same thing twice or lose an update.
//! * Secrets are sealed (`lct_core::seal`, key file `LCT_STATE_KEY`) before they are sent:
//!   etcd, its snapshots and `etcdctl get` see no plain secret. Which keys are secret is
//!   decided by the key (`store::layout`), and every other value is authenticated with a
//!   tag under the same key file: a value someone wrote without it (`etcdctl put`) is
//!   refused when read, naming the key. Both bind the value to its etcd key (prefix and
//!   name). So every read and write needs `LCT_STATE_KEY`.
//! * `PREFIX/.lct` marks the prefix as lct's (`marker`): a prefix holding other keys and no
//!   marker is refused before anything is written.
//! * Locks are keys `PREFIX/.locks/NAME` attached to a lease (`lock`); watches follow etcd's
//!   revisions (`watch`).

mod base;
mod lock;
mod marker;
mod watch;

pub use base::EtcdStore;

use std::time::Duration;

use super::{Committed, Entry, Expect, Holder, Key, LockGuard, Op, Rev, Secrecy, Store, StoreError, Txn, Wait, Watch};
use crate::etcd::{self, Compare, EtcdError};
use crate::seal::is_sealed;
use crate::store::layout;

/// How many times an append reads and writes again when another writer came between.
const APPEND_TRIES: usize = 100;

impl EtcdStore {
    /// What is stored for `value` at `key`: sealed when the key is secret (the table in
    /// `store::layout`) or the writer asked, else authenticated: every value carries the
    /// team key's tag, so a value written without it is never taken.
    fn sealed(&self, key: &Key, value: &[u8], secrecy: Secrecy) -> Result<Vec<u8>, StoreError> {
        let seal = self.seal_key()?;
        marker::check_seal_key(self, &seal)?;
        let name = self.bound_name(key);
        match layout::at_least(key, secrecy) {
            Secrecy::Public => Ok(seal.authenticate(&name, value)),
            Secrecy::Secret => seal.seal(&name, value).map_err(|e| self.seal_error(key, e)),
        }
    }
}

impl Store for EtcdStore {
    fn describe(&self) -> String {
        self.name()
    }

    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        marker::check(self)?;
        match self.client.get(&self.raw(key)).map_err(|e| self.fail(e))? {
            Some(kv) => self.entry(key, &kv).map(Some),
            None => Ok(None),
        }
    }

    fn keys(&self, prefix: &Key) -> Result<Vec<(Key, Rev)>, StoreError> {
        marker::check(self)?;
        let (kvs, _) = self.client.list_keys(&self.raw_under(prefix)).map_err(|e| self.fail(e))?;
        kvs.iter().map(|kv| Ok((self.key_of(&kv.key)?, Rev(kv.mod_revision as u64)))).collect()
    }

    fn list(&self, prefix: &Key) -> Result<Vec<(Key, Entry)>, StoreError> {
        marker::check(self)?;
        let (kvs, _) = self.client.list(&self.raw_under(prefix)).map_err(|e| self.fail(e))?;
        kvs.iter()
            .map(|kv| {
                let key = self.key_of(&kv.key)?;
                let entry = self.entry(&key, kv)?;
                Ok((key, entry))
            })
            .collect()
    }

    fn commit(&self, txn: &Txn) -> Result<Committed, StoreError> {
        marker::check(self)?;
        let mut compare = Vec::new();
        let mut otherwise = Vec::new();
        for (key, expect) in &txn.compares {
            let raw = self.raw(key);
            match expect {
                Expect::Any => continue,
                Expect::Absent => compare.push(Compare::Absent(raw.clone())),
                Expect::Rev(rev) => compare.push(Compare::ModRevision(raw.clone(), rev.0 as i64)),
            }
            otherwise.push(etcd::Op::Get(raw));
        }
        // Fences: each lock key is still the one this process took (same create_revision).
        for fence in &txn.fences {
            let raw = lock::lock_key(self, &fence.lock);
            compare.push(Compare::CreateRevision(raw.clone(), fence.token as i64));
            otherwise.push(etcd::Op::Get(raw));
        }
        let mut then = Vec::new();
        let mut puts = Vec::new();
        for op in &txn.ops {
            match op {
                Op::Put { key, value, secrecy } => {
                    then.push(etcd::Op::Put {
                        key: self.raw(key),
                        value: self.sealed(key, value, *secrecy)?,
                        lease: 0,
                    });
                    puts.push(key.clone());
                }
                Op::Delete { key } => then.push(etcd::Op::Delete(self.raw(key))),
                Op::DeletePrefix { prefix } => {
                    then.push(etcd::Op::Delete(self.raw(prefix)));
                    then.push(etcd::Op::DeletePrefix(self.raw_under(prefix)));
                }
            }
        }
        marker::mark(self)?;
        // A lost answer (a member died with the request): applied if the store holds what it
        // wrote; else sent again, which its compares keep from applying twice (a first
        // attempt that lands meanwhile makes the second fail its compare, and is then seen).
        let mut lost = 0;
        loop {
            match self.client.txn(&compare, &then, &otherwise) {
                Ok(outcome) if outcome.succeeded => {
                    let rev = Rev(outcome.revision as u64);
                    return Ok(Committed { revs: puts.into_iter().map(|k| (k, rev)).collect() });
                }
                Ok(outcome) => {
                    if lost > 0
                        && let Some(done) = self.applied(txn)?
                    {
                        return Ok(done);
                    }
                    if let Some(fence) = txn.fences.iter().find(|f| {
                        let raw = lock::lock_key(self, &f.lock);
                        !outcome.read.iter().any(|kv| kv.key == raw && kv.create_revision == f.token as i64)
                    }) {
                        return Err(StoreError::Fenced { name: fence.lock.clone() });
                    }
                    return Err(self.conflict(txn, &outcome.read));
                }
                Err(e @ EtcdError::Ambiguous { .. }) => {
                    if let Some(done) = self.applied(txn)? {
                        return Ok(done);
                    }
                    lost += 1;
                    if lost >= 3 {
                        return Err(self.fail(e));
                    }
                    tracing::debug!(error = %e, "a transaction's answer was lost and it was not applied: sending it again");
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    fn append(&self, key: &Key, bytes: &[u8], secrecy: Secrecy) -> Result<Rev, StoreError> {
        marker::check(self)?;
        marker::mark(self)?;
        let raw = self.raw(key);
        // After a lost answer, the value that append would have made: seen, it was applied.
        let mut attempted: Option<Vec<u8>> = None;
        for _ in 0..APPEND_TRIES {
            let now = self.client.get(&raw).map_err(|e| self.fail(e))?;
            if let (Some(kv), Some(want)) = (&now, &attempted)
                && self.opened(key, kv)? == *want
            {
                return Ok(Rev(kv.mod_revision as u64));
            }
            let (mut value, compare, secrecy) = match &now {
                Some(kv) => {
                    let secrecy = if is_sealed(&kv.value) { Secrecy::Secret } else { secrecy };
                    (self.opened(key, kv)?, Compare::ModRevision(raw.clone(), kv.mod_revision), secrecy)
                }
                None => (Vec::new(), Compare::Absent(raw.clone()), secrecy),
            };
            value.extend_from_slice(bytes);
            let put = etcd::Op::Put { key: raw.clone(), value: self.sealed(key, &value, secrecy)?, lease: 0 };
            match self.client.txn(&[compare], &[put], &[]) {
                Ok(outcome) if outcome.succeeded => return Ok(Rev(outcome.revision as u64)),
                Ok(_) => continue,
                // A lost answer: read again (its compare keeps a late landing from doubling).
                Err(EtcdError::Ambiguous { .. }) => attempted = Some(value),
                Err(e) => return Err(self.fail(e)),
            }
        }
        Err(StoreError::Conflict {
            key: key.clone(),
            expected: "a quiet moment".into(),
            found: "constant appends".into(),
        })
    }

    fn lock(&self, name: &Key, holder: &Holder, ttl: Duration, wait: Wait) -> Result<Box<dyn LockGuard>, StoreError> {
        marker::check(self)?;
        marker::mark(self)?;
        lock::take(self, name, holder, ttl, wait)
    }

    fn lock_holder(&self, name: &Key) -> Result<Option<Holder>, StoreError> {
        marker::check(self)?;
        lock::holder(self, name)
    }

    fn unlock(&self, name: &Key) -> Result<Option<Holder>, StoreError> {
        marker::check(self)?;
        lock::breaks(self, name, false)
    }

    fn force_unlock(&self, name: &Key) -> Result<Option<Holder>, StoreError> {
        marker::check(self)?;
        lock::breaks(self, name, true)
    }

    fn watch(&self, prefix: &Key) -> Result<Box<dyn Watch>, StoreError> {
        marker::check(self)?;
        watch::start(self, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_refused_before_any_connection() {
        let e = EtcdStore::from_env("etcd://a:1/x y").unwrap_err().to_string();
        assert!(e.contains("LCT_STATE") && e.contains("x y"), "{e}");
    }
}
