//! Moving lct's state between stores (`lct-inventory state migrate --to SPEC`): every key
//! the interface owns, copied with its secrecy (a secret stays 0600 in a directory, sealed
//! on etcd), then read back and compared byte for byte. The source is only read; the
//! target must hold no state yet, so nothing there is overwritten.

use std::os::unix::fs::MetadataExt;

use super::etcd::EtcdStore;
use super::local::LocalStore;
use super::{Expect, Key, Secrecy, Store, StoreError};
use crate::seal::is_sealed;

/// What the interface owns: these keys and everything under these prefixes (a cluster's
/// hook logs, `plans/NAME/logs/`, stay on the machine that ran the hooks).
const KEYS: &[&str] = &["clusters.jsonl"];
const PREFIXES: &[&str] = &["ssh", "plans", "images/bakes"];
/// lct-dns's own keys under `dns/`: `dns/linode-DOMAIN.json` (the records it made at Linode).
/// The rest of a local `STATE/dns/` is a DNS server's data (its zones, its DNSSEC keys),
/// kept where that server runs.
fn is_dns_state(key: &Key) -> bool {
    let segments: Vec<&str> = key.segments().collect();
    matches!(segments.as_slice(), ["dns", file] if file.starts_with("linode-") && file.ends_with(".json"))
}

/// A store of either kind, opened from its spec (`/dir`, `dir:/dir`, `etcd://...`).
pub enum Side {
    Local(LocalStore),
    Etcd(Box<EtcdStore>),
}

impl Side {
    pub fn open(spec: &str) -> Result<Side, StoreError> {
        if spec.starts_with("etcd://") || spec.starts_with("etcds://") {
            return Ok(Side::Etcd(Box::new(EtcdStore::from_env(spec)?)));
        }
        match spec.strip_prefix("dir:").or_else(|| spec.starts_with('/').then_some(spec)) {
            Some(dir) => Ok(Side::Local(LocalStore::new(std::path::Path::new(dir)))),
            None => Err(StoreError::Spec {
                spec: spec.into(),
                detail: "expected an absolute directory or etcd://HOST:PORT,.../PREFIX".into(),
            }),
        }
    }

    pub fn store(&self) -> &dyn Store {
        match self {
            Side::Local(s) => s,
            Side::Etcd(s) => s.as_ref(),
        }
    }

    /// Whether `key`'s value is kept as a secret: a file for its owner alone, a sealed value.
    fn secrecy(&self, key: &Key) -> Result<Secrecy, StoreError> {
        let secret = match self {
            Side::Local(s) => {
                let path = s.root().join(key.as_str());
                let meta = std::fs::symlink_metadata(&path).map_err(|e| StoreError::io(path.display(), e))?;
                meta.mode() & 0o077 == 0
            }
            Side::Etcd(s) => {
                let raw = format!("{}{key}", s.client().prefix());
                let kv = s
                    .client()
                    .get(raw.as_bytes())
                    .map_err(|e| StoreError::Unreachable { store: s.describe(), detail: e.to_string() })?;
                kv.is_some_and(|kv| is_sealed(&kv.value))
            }
        };
        Ok(if secret { Secrecy::Secret } else { Secrecy::Public })
    }

    /// Every key the interface owns in this store, sorted.
    pub fn keys(&self) -> Result<Vec<Key>, StoreError> {
        let store = self.store();
        let mut out = Vec::new();
        for k in KEYS {
            let key = Key::new(*k)?;
            if store.get(&key)?.is_some() {
                out.push(key);
            }
        }
        for p in PREFIXES {
            for (key, _) in store.keys(&Key::new(*p)?)? {
                let segments: Vec<&str> = key.segments().collect();
                if segments.first() == Some(&"plans") && segments.get(2) == Some(&"logs") {
                    continue;
                }
                out.push(key);
            }
        }
        out.extend(store.keys(&Key::new("dns")?)?.into_iter().map(|(k, _)| k).filter(is_dns_state));
        out.sort();
        Ok(out)
    }
}

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrated {
    pub keys: usize,
    pub secrets: usize,
    pub bytes: u64,
}

/// Copies every key of `from` into `to` (which must hold none), then reads each back from
/// `to` and compares it, value and secrecy, with `from`'s.
pub fn migrate(from: &Side, to: &Side) -> Result<Migrated, StoreError> {
    let (source, target) = (from.store(), to.store());
    if source.describe() == target.describe() {
        return Err(StoreError::Spec {
            spec: target.describe(),
            detail: "the source and the target are one store".into(),
        });
    }
    let there = to.keys()?;
    if !there.is_empty() {
        return Err(StoreError::Corrupt {
            store: target.describe(),
            key: there[0].to_string(),
            detail: format!(
                "it holds {} key(s) of lct's state already: migrate only into an empty store; nothing was copied",
                there.len()
            ),
        });
    }
    let keys = from.keys()?;
    if keys.is_empty() {
        return Err(StoreError::Spec {
            spec: source.describe(),
            detail: "it holds no lct state (no cluster records, SSH keys, plans or bakes): nothing was copied".into(),
        });
    }
    let mut done = Migrated::default();
    let mut copied = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(entry) = source.get(&key)? else { continue };
        let secrecy = from.secrecy(&key)?;
        target.put_if(&key, &entry.value, secrecy, Expect::Absent)?;
        done.keys += 1;
        done.secrets += usize::from(secrecy == Secrecy::Secret);
        done.bytes += entry.value.len() as u64;
        copied.push((key, entry.value, secrecy));
    }
    for (key, value, secrecy) in &copied {
        let back = target.get(key)?;
        let bad = |detail: &str| StoreError::Corrupt {
            store: target.describe(),
            key: key.to_string(),
            detail: format!("{detail} after the copy (the source is untouched)"),
        };
        if back.as_ref().map(|e| &e.value) != Some(value) {
            return Err(bad("a different value"));
        }
        if to.secrecy(key)? != *secrecy {
            return Err(bad("a different secrecy"));
        }
    }
    Ok(done)
}
