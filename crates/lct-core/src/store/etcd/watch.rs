//! Watches on etcd: from the store's revision when the watch began, each `next` asks etcd
//! for the changes from the revision after the last one seen, so nothing between two calls
//! is missed. When etcd compacted those revisions away, every key under the prefix is
//! reported as changed (a reconcile reads them all anyway) and the watch goes on from there.

use std::sync::Arc;
use std::time::Duration;

use super::base::EtcdStore;
use crate::etcd::{Client, EtcdError, EventKind};
use crate::store::key::Key;
use crate::store::types::{Change, Rev, StoreError, Watch};

struct EtcdWatch {
    client: Arc<Client>,
    /// `PREFIX/KEY/`: the etcd keys watched.
    raw: Vec<u8>,
    /// `PREFIX/`: taken off to give store keys.
    strip: String,
    store: String,
    /// The next revision to report from.
    next: i64,
}

pub(super) fn start(store: &EtcdStore, prefix: &Key) -> Result<Box<dyn Watch>, StoreError> {
    let raw = store.raw_under(prefix);
    let (_, revision) = store.client.count(&raw).map_err(|e| store.fail(e))?;
    Ok(Box::new(EtcdWatch {
        client: store.client.clone(),
        raw,
        strip: store.client.prefix().to_string(),
        store: store.name(),
        next: revision + 1,
    }))
}

impl EtcdWatch {
    fn key(&self, raw: &[u8]) -> Result<Key, StoreError> {
        let text = std::str::from_utf8(raw).ok().and_then(|t| t.strip_prefix(self.strip.as_str()));
        text.and_then(|t| Key::new(t).ok()).ok_or_else(|| StoreError::Corrupt {
            store: self.store.clone(),
            key: String::from_utf8_lossy(raw).into_owned(),
            detail: "a key lct never writes under its prefix".into(),
        })
    }

    fn fail(&self, e: EtcdError) -> StoreError {
        StoreError::Unreachable { store: self.store.clone(), detail: e.to_string() }
    }
}

impl Watch for EtcdWatch {
    fn next(&mut self, timeout: Duration) -> Result<Vec<Change>, StoreError> {
        match self.client.watch(&self.raw, self.next, timeout) {
            Ok(batch) => {
                self.next = batch.next.max(self.next);
                batch
                    .events
                    .iter()
                    .map(|e| {
                        let rev = match e.kind {
                            EventKind::Put => Some(Rev(e.kv.mod_revision as u64)),
                            EventKind::Delete => None,
                        };
                        Ok(Change { key: self.key(&e.kv.key)?, rev })
                    })
                    .collect()
            }
            Err(EtcdError::Compacted(_)) => {
                let (kvs, revision) = self.client.list_keys(&self.raw).map_err(|e| self.fail(e))?;
                self.next = revision + 1;
                kvs.iter()
                    .map(|kv| Ok(Change { key: self.key(&kv.key)?, rev: Some(Rev(kv.mod_revision as u64)) }))
                    .collect()
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}
