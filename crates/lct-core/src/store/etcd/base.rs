//! The etcd backend's store itself: the client, the URL, the sealing key, and what every
//! operation needs (etcd keys of store keys and back, values opened, errors that name the
//! store); the operations are in the module above, locks, the mark and watches beside it.

use std::sync::{Arc, OnceLock};

use crate::etcd::{Client, EtcdError, EtcdUrl, KeyValue, Options, TlsFiles};
use crate::seal::{KEY_ENV, SealError, SealKey, is_authenticated, is_sealed};
use crate::store::key::Key;
use crate::store::layout;
use crate::store::types::{Committed, Entry, Expect, Op, Rev, Secrecy, StoreError, Txn};

/// lct's state under a prefix of an etcd cluster.
pub struct EtcdStore {
    pub(super) client: Arc<Client>,
    pub(super) url: EtcdUrl,
    /// The key secrets are sealed with: given, or read from `LCT_STATE_KEY` when first needed.
    pub(super) seal: OnceLock<Result<Arc<SealKey>, String>>,
    /// Set once the prefix was found to be lct's (or empty).
    pub(super) checked: OnceLock<()>,
    /// Set once the prefix carries lct's mark.
    pub(super) marked: OnceLock<()>,
    /// Set once the mark was found to name this process's sealing key.
    pub(super) seal_checked: OnceLock<()>,
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

    /// Where the store is, for messages (the URL; never a credential).
    pub fn name(&self) -> String {
        self.url.to_url()
    }

    /// The etcd client (for tests and `lct-inventory state`).
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Whether the stored value at `key` is sealed (read raw; nothing opened).
    pub fn is_sealed_at(&self, key: &Key) -> Result<bool, StoreError> {
        let kv = self.client.get(&self.raw(key)).map_err(|e| self.fail(e))?;
        Ok(kv.is_some_and(|kv| is_sealed(&kv.value)))
    }

    /// The etcd key of `key`.
    pub(super) fn raw(&self, key: &Key) -> Vec<u8> {
        format!("{}{key}", self.client.prefix()).into_bytes()
    }

    /// The etcd prefix of the keys under `key`.
    pub(super) fn raw_under(&self, key: &Key) -> Vec<u8> {
        format!("{}{key}/", self.client.prefix()).into_bytes()
    }

    /// The store key of an etcd key (refused when it is not one lct writes).
    pub(super) fn key_of(&self, raw: &[u8]) -> Result<Key, StoreError> {
        let text = std::str::from_utf8(raw).ok().and_then(|t| t.strip_prefix(self.client.prefix()));
        match text.map(Key::new) {
            Some(Ok(key)) => Ok(key),
            _ => Err(self.corrupt(&String::from_utf8_lossy(raw), "a key lct never writes under its prefix".into())),
        }
    }

    pub(super) fn fail(&self, e: EtcdError) -> StoreError {
        StoreError::Unreachable { store: self.name(), detail: e.to_string() }
    }

    pub(super) fn corrupt(&self, key: &str, detail: String) -> StoreError {
        StoreError::Corrupt { store: self.name(), key: key.to_string(), detail }
    }

    pub(super) fn seal_key(&self) -> Result<Arc<SealKey>, StoreError> {
        let got = self.seal.get_or_init(|| SealKey::from_env().map(Arc::new).map_err(|e| e.to_string()));
        got.clone().map_err(|detail| StoreError::Unreachable { store: self.name(), detail })
    }

    /// The name a stored value is bound to (sealed or tagged): its etcd key, prefix and
    /// all, so a value moved to another key or another store sharing the team's key fails.
    pub(super) fn bound_name(&self, key: &Key) -> String {
        format!("{}{key}", self.client.prefix())
    }

    /// A stored value in clear: opened when sealed, its tag checked when authenticated. A
    /// plain value (written by someone without the team's key, `etcdctl put`), or a merely
    /// tagged one at a secret key, is refused naming the key.
    pub(super) fn opened(&self, key: &Key, kv: &KeyValue) -> Result<Vec<u8>, StoreError> {
        let secret = layout::secrecy_of(key) == Secrecy::Secret;
        if !is_sealed(&kv.value) && (secret || !is_authenticated(&kv.value)) {
            let expected = if secret { "a sealed value" } else { "a value sealed or tagged with the team's key" };
            return Err(self.corrupt(
                key.as_str(),
                format!(
                    "expected {expected}, found {}: written by someone without {KEY_ENV}'s key; it is not used, nothing was read",
                    if is_authenticated(&kv.value) { "a value only tagged" } else { "a plain value" }
                ),
            ));
        }
        let seal = self.seal_key()?;
        let name = self.bound_name(key);
        let opened =
            if secret || is_sealed(&kv.value) { seal.open(&name, &kv.value) } else { seal.verify(&name, &kv.value) };
        opened.map_err(|e| self.seal_error(key, e))
    }

    pub(super) fn seal_error(&self, key: &Key, e: SealError) -> StoreError {
        self.corrupt(key.as_str(), e.to_string())
    }

    pub(super) fn entry(&self, key: &Key, kv: &KeyValue) -> Result<Entry, StoreError> {
        Ok(Entry { value: self.opened(key, kv)?, rev: Rev(kv.mod_revision as u64) })
    }

    /// After a write whose answer was lost: whether the store holds what it wrote (every
    /// put's value, every deleted key gone). Then it was applied (or another wrote the same).
    pub(super) fn applied(&self, txn: &Txn) -> Result<Option<Committed>, StoreError> {
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
    pub(super) fn conflict(&self, txn: &Txn, read: &[KeyValue]) -> StoreError {
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
