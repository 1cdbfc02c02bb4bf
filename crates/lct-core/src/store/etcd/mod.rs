//! The etcd backend of lct's state (feature `etcd`): `LCT_STATE=etcd://HOST:PORT,.../PREFIX`
//! (or `etcds://` with `LCT_ETCD_CACERT`, `LCT_ETCD_CERT`, `LCT_ETCD_KEY`).
//!
//! * A key `K` is the etcd key `PREFIX/K`; a value's revision is its `mod_revision`; a
//!   transaction is one etcd transaction comparing `mod_revision`s (`create_revision` 0 for
//!   absent keys), so two controllers never make the same thing twice or lose an update.
//! * Secrets are sealed (`lct_core::seal`, key file `LCT_STATE_KEY`) before they are sent:
//!   etcd, its snapshots and `etcdctl get` see no plain secret.
//! * `PREFIX/.lct` marks the prefix as lct's (`marker`): a prefix holding other keys and no
//!   marker is refused before anything is written.
//! * Locks are keys `PREFIX/.locks/NAME` attached to a lease (`lock`); watches follow etcd's
//!   revisions (`watch`).

mod lock;
mod marker;
mod watch;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::{Committed, Entry, Expect, Holder, Key, LockGuard, Op, Rev, Secrecy, Store, StoreError, Txn, Wait};
use crate::etcd::{self, Client, Compare, EtcdError, EtcdUrl, KeyValue, Options, TlsFiles};
use crate::seal::{SealError, SealKey, is_sealed};

/// How many times an append reads and writes again when another writer came between.
const APPEND_TRIES: usize = 100;

/// lct's state under a prefix of an etcd cluster.
pub struct EtcdStore {
    client: Arc<Client>,
    url: EtcdUrl,
    /// The key secrets are sealed with: given, or read from `LCT_STATE_KEY` when first needed.
    seal: OnceLock<Result<Arc<SealKey>, String>>,
    /// Set once the prefix was found to be lct's (or empty).
    checked: OnceLock<()>,
    /// Set once the prefix carries lct's mark.
    marked: OnceLock<()>,
    /// Set once the mark was found to name this process's sealing key.
    seal_checked: OnceLock<()>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EtcdStore({})", self.url.to_url())
    }
}

impl EtcdStore {
    /// The store `spec` names, TLS files and the sealing key from the environment. Nothing is
    /// connected to yet.
    pub fn from_env(spec: &str) -> Result<EtcdStore, StoreError> {
        let url = EtcdUrl::parse(spec).map_err(|e| StoreError::Spec { spec: spec.into(), detail: inner(&e) })?;
        EtcdStore::new(url, &TlsFiles::from_env(), Options::default(), None)
    }

    /// A store on `url`; `key` seals secrets (else `LCT_STATE_KEY` when one is first written
    /// or read).
    pub fn new(url: EtcdUrl, tls: &TlsFiles, options: Options, key: Option<SealKey>) -> Result<EtcdStore, StoreError> {
        let client = Client::new(&url, tls, options)
            .map_err(|e| StoreError::Unreachable { store: url.to_url(), detail: e.to_string() })?;
        let seal = OnceLock::new();
        if let Some(key) = key {
            let _ = seal.set(Ok(Arc::new(key)));
        }
        Ok(EtcdStore {
            client: Arc::new(client),
            url,
            seal,
            checked: OnceLock::new(),
            marked: OnceLock::new(),
            seal_checked: OnceLock::new(),
        })
    }

    /// The etcd client (for tests and `lct-inventory state`).
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// The etcd key of `key`.
    fn raw(&self, key: &Key) -> Vec<u8> {
        format!("{}{key}", self.client.prefix()).into_bytes()
    }

    /// The etcd prefix of the keys under `key`.
    fn raw_under(&self, key: &Key) -> Vec<u8> {
        format!("{}{key}/", self.client.prefix()).into_bytes()
    }

    /// The store key of an etcd key (refused when it is not one lct writes).
    fn key_of(&self, raw: &[u8]) -> Result<Key, StoreError> {
        let text = std::str::from_utf8(raw).ok().and_then(|t| t.strip_prefix(self.client.prefix()));
        match text.map(Key::new) {
            Some(Ok(key)) => Ok(key),
            _ => Err(self.corrupt(&String::from_utf8_lossy(raw), "a key lct never writes under its prefix".into())),
        }
    }

    fn fail(&self, e: EtcdError) -> StoreError {
        StoreError::Unreachable { store: self.describe(), detail: e.to_string() }
    }

    fn corrupt(&self, key: &str, detail: String) -> StoreError {
        StoreError::Corrupt { store: self.describe(), key: key.to_string(), detail }
    }

    fn seal_key(&self) -> Result<Arc<SealKey>, StoreError> {
        let got = self.seal.get_or_init(|| SealKey::from_env().map(Arc::new).map_err(|e| e.to_string()));
        got.clone().map_err(|detail| StoreError::Unreachable { store: self.describe(), detail })
    }

    fn sealed(&self, key: &Key, value: &[u8], secrecy: Secrecy) -> Result<Vec<u8>, StoreError> {
        match secrecy {
            Secrecy::Public => Ok(value.to_vec()),
            Secrecy::Secret => {
                let seal = self.seal_key()?;
                marker::check_seal_key(self, &seal)?;
                seal.seal(key.as_str(), value).map_err(|e| self.seal_error(key, e))
            }
        }
    }

    /// A stored value in clear (opened when sealed).
    fn opened(&self, key: &Key, kv: &KeyValue) -> Result<Vec<u8>, StoreError> {
        if !is_sealed(&kv.value) {
            return Ok(kv.value.clone());
        }
        let seal = self.seal_key()?;
        seal.open(key.as_str(), &kv.value).map_err(|e| self.seal_error(key, e))
    }

    fn seal_error(&self, key: &Key, e: SealError) -> StoreError {
        self.corrupt(key.as_str(), e.to_string())
    }

    fn entry(&self, key: &Key, kv: &KeyValue) -> Result<Entry, StoreError> {
        Ok(Entry { value: self.opened(key, kv)?, rev: Rev(kv.mod_revision as u64) })
    }

    /// After a write whose answer was lost: whether the store holds what it wrote (every
    /// put's value, every deleted key gone). Then it was applied (or another wrote the same).
    fn applied(&self, txn: &Txn) -> Result<Option<Committed>, StoreError> {
        let mut done = Committed::default();
        for op in &txn.ops {
            match op {
                Op::Put { key, value, .. } => match self.client.get(&self.raw(key)).map_err(|e| self.fail(e))? {
                    Some(kv) if self.opened(key, &kv).ok().as_deref() == Some(value.as_slice()) => {
                        done.revs.push((key.clone(), Rev(kv.mod_revision as u64)));
                    }
                    _ => return Ok(None),
                },
                Op::Delete { key } | Op::DeletePrefix { prefix: key } => {
                    if self.client.get(&self.raw(key)).map_err(|e| self.fail(e))?.is_some() {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(Some(done))
    }

    /// The first compare of `txn` that `read` (the compared keys as they are) breaks.
    fn conflict(&self, txn: &Txn, read: &[KeyValue]) -> StoreError {
        for (key, expect) in &txn.compares {
            let raw = self.raw(key);
            let now = read.iter().find(|kv| kv.key == raw).map(|kv| Rev(kv.mod_revision as u64));
            let (holds, expected) = match expect {
                Expect::Any => (true, String::new()),
                Expect::Absent => (now.is_none(), "absent".to_string()),
                Expect::Rev(rev) => (now == Some(*rev), format!("revision {rev}")),
            };
            if !holds {
                let found = now.map_or("absent".to_string(), |r| format!("revision {r}"));
                return StoreError::Conflict { key: key.clone(), expected, found };
            }
        }
        // Changed back between the transaction and this read: still a conflict.
        let key = txn.compares.first().map_or_else(|| Key::new("unknown").expect("a key"), |(k, _)| k.clone());
        StoreError::Conflict { key, expected: "its revision".into(), found: "a revision written meanwhile".into() }
    }
}

fn inner(e: &EtcdError) -> String {
    match e {
        EtcdError::Url { why, .. } => why.clone(),
        other => other.to_string(),
    }
}

impl Store for EtcdStore {
    fn describe(&self) -> String {
        self.url.to_url()
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
                    let was_secret = is_sealed(&kv.value);
                    let secrecy = if was_secret { Secrecy::Secret } else { secrecy };
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
        lock::breaks(self, name)
    }

    fn watch(&self, prefix: &Key) -> Result<Box<dyn super::Watch>, StoreError> {
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
