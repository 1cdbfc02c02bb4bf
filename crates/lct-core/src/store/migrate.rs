//! Moving lct's state between stores (`lct-inventory state migrate --to SPEC`): every key
//! the interface owns, copied with its secrecy (the key table's, `store::layout`, or more:
//! a secret stays 0600 in a directory, sealed on etcd), then read back and compared byte
//! for byte. The source is only read. In order:
//! * everything is read from the source first, and checked against the target (its
//!   sealing key, etcd's bound on a request's size) before the first write;
//! * the target holds nothing of lct's, or exactly what an earlier, failed run of this
//!   migration left (then it resumes): nothing there is overwritten;
//! * a failure after a write deletes what this run wrote (each key only if unchanged since);
//! * the source's revisions are read again at the end: a source changed meanwhile (a
//!   controller at work) undoes the copy rather than leave a mix of before and after;
//! * an older lct's one-value event log (`plans/NAME/events.jsonl`) becomes one key per
//!   event.

use std::os::unix::fs::MetadataExt;

use super::etcd::EtcdStore;
use super::layout;
use super::local::LocalStore;
use super::{Entry, Expect, Key, Rev, Secrecy, Store, StoreError};

/// The largest value copied to etcd: its default `--max-request-bytes` (1.5 MiB) less room
/// for the key, the seal or tag (under 64 bytes) and the request around it.
const MAX_ETCD_VALUE: usize = 1536 * 1024 - 8 * 1024;

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
        match super::open::local_dir(spec)? {
            Some(dir) => Ok(Side::Local(LocalStore::new(dir))),
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
            Side::Etcd(s) => s.is_sealed_at(key)?,
        };
        // Never below the key table: a secret key's value stays secret whatever its mode.
        Ok(layout::at_least(key, if secret { Secrecy::Secret } else { Secrecy::Public }))
    }

    /// Every key the interface owns in this store with its revision, sorted.
    pub fn keys(&self) -> Result<Vec<(Key, Rev)>, StoreError> {
        let store = self.store();
        let mut out = Vec::new();
        for k in KEYS {
            let key = Key::new(*k)?;
            if let Some(entry) = store.get(&key)? {
                out.push((key, entry.rev));
            }
        }
        for p in PREFIXES {
            for (key, rev) in store.keys(&Key::new(*p)?)? {
                let segments: Vec<&str> = key.segments().collect();
                if segments.first() == Some(&"plans") && segments.get(2) == Some(&"logs") {
                    continue;
                }
                out.push((key, rev));
            }
        }
        out.extend(store.keys(&Key::new("dns")?)?.into_iter().filter(|(k, _)| is_dns_state(k)));
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
    /// Keys an earlier, failed run had copied already (equal to the source's).
    pub resumed: usize,
}

/// One key to copy, as the target gets it.
struct Item {
    key: Key,
    value: Vec<u8>,
    secrecy: Secrecy,
}

/// Copies every key of `from` into `to` (which holds none, or what a failed run of this
/// migration left), then reads each back from `to` and compares it, value and secrecy.
/// On any failure after the first write, what was written is deleted again.
pub fn migrate(from: &Side, to: &Side) -> Result<Migrated, StoreError> {
    let (source, target) = (from.store(), to.store());
    if source.describe() == target.describe() {
        return Err(StoreError::Spec {
            spec: target.describe(),
            detail: "the source and the target are one store".into(),
        });
    }
    // Everything read first: a sealed source needs its key now, not after some writes.
    let revs = from.keys()?;
    if revs.is_empty() {
        return Err(StoreError::Spec {
            spec: source.describe(),
            detail: "it holds no lct state (no cluster records, SSH keys, plans or bakes): nothing was copied".into(),
        });
    }
    let mut items = Vec::with_capacity(revs.len());
    for (key, _) in &revs {
        let Some(entry) = source.get(key)? else { continue };
        items.extend(mapped(key, entry, from.secrecy(key)?)?);
    }
    preflight(to, &items)?;
    let resumed = resumable(to, &items)?;
    let mut done = Migrated { resumed: resumed.len(), ..Migrated::default() };
    let mut written: Vec<(Key, Rev)> = Vec::new();
    let result = (|| {
        for item in &items {
            if !resumed.contains(&item.key) {
                let rev = target.put_if(&item.key, &item.value, item.secrecy, Expect::Absent)?;
                written.push((item.key.clone(), rev));
            }
            done.keys += 1;
            done.secrets += usize::from(item.secrecy == Secrecy::Secret);
            done.bytes += item.value.len() as u64;
        }
        // The source as it was when read: else the copy mixes before and after.
        if from.keys()? != revs {
            return Err(StoreError::Conflict {
                key: Key::new("plans").expect("a fixed key"),
                expected: format!("the source {} as read", source.describe()),
                found: "keys written meanwhile (a controller at work): run the migration again when it is done".into(),
            });
        }
        verify(to, &items)
    })();
    match result {
        Ok(()) => Ok(done),
        Err(e) => Err(undo(target, &written, e)),
    }
}

/// The keys `key`'s value becomes in the target: itself, or an old event log's events.
fn mapped(key: &Key, entry: Entry, secrecy: Secrecy) -> Result<Vec<Item>, StoreError> {
    let segments: Vec<&str> = key.segments().collect();
    if let ["plans", name, log] = segments.as_slice()
        && *log == layout::LEGACY_EVENT_LOG
    {
        let cluster = Key::new(format!("plans/{name}"))?;
        let events = layout::legacy_events(&cluster, &entry.value)?;
        return Ok(events
            .into_iter()
            .map(|(key, value)| Item { secrecy: layout::at_least(&key, secrecy), key, value })
            .collect());
    }
    Ok(vec![Item { key: key.clone(), value: entry.value, secrecy }])
}

/// Before the first write: the target can take every value (etcd: its sealing key is at
/// hand and is the store's, no value over a request's bound).
fn preflight(to: &Side, items: &[Item]) -> Result<(), StoreError> {
    if let Side::Etcd(store) = to {
        store.ready_to_write()?;
        if let Some(big) = items.iter().find(|i| i.value.len() > MAX_ETCD_VALUE) {
            return Err(StoreError::Corrupt {
                store: store.describe(),
                key: big.key.to_string(),
                detail: format!(
                    "{} bytes: over etcd's bound on a request ({MAX_ETCD_VALUE} bytes for a value); nothing was copied",
                    big.value.len()
                ),
            });
        }
    }
    Ok(())
}

/// The keys the target holds already: none, or only keys of `items` with their values
/// (what a failed run left, when its undo could not finish). Anything else is refused.
fn resumable(to: &Side, items: &[Item]) -> Result<Vec<Key>, StoreError> {
    let target = to.store();
    let there = to.keys()?;
    for (key, _) in &there {
        let same = match items.iter().find(|i| &i.key == key) {
            Some(item) => target.get(key)?.is_some_and(|e| e.value == item.value),
            None => false,
        };
        if !same {
            return Err(StoreError::Corrupt {
                store: target.describe(),
                key: key.to_string(),
                detail: format!(
                    "it holds {} key(s) of lct's state already, not all this source's: migrate only into an empty store; nothing was copied",
                    there.len()
                ),
            });
        }
    }
    Ok(there.into_iter().map(|(k, _)| k).collect())
}

/// Each key read back from the target: the value and the secrecy copied.
fn verify(to: &Side, items: &[Item]) -> Result<(), StoreError> {
    let target = to.store();
    for item in items {
        let bad = |detail: &str| StoreError::Corrupt {
            store: target.describe(),
            key: item.key.to_string(),
            detail: format!("{detail} after the copy (the source is untouched)"),
        };
        if target.get(&item.key)?.map(|e| e.value).as_ref() != Some(&item.value) {
            return Err(bad("a different value"));
        }
        if to.secrecy(&item.key)? != item.secrecy {
            return Err(bad("a different secrecy"));
        }
    }
    Ok(())
}

/// Deletes what this run wrote (each key only if nobody wrote it since), and says so with
/// `error`.
fn undo(target: &dyn Store, written: &[(Key, Rev)], error: StoreError) -> StoreError {
    let mut left = Vec::new();
    for (key, rev) in written.iter().rev() {
        if let Err(e) = target.delete_if(key, Expect::Rev(*rev)) {
            left.push(format!("{key} ({e})"));
        }
    }
    let said = if left.is_empty() {
        format!("the {} key(s) this run wrote were deleted again: the target is as it was", written.len())
    } else {
        format!(
            "{} of the {} key(s) this run wrote are still there: {} (a run again resumes over them)",
            left.len(),
            written.len(),
            left.join(", ")
        )
    };
    StoreError::Corrupt { store: target.describe(), key: "(migration)".into(), detail: format!("{error}; {said}") }
}
