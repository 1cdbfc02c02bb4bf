//! `PREFIX/.lct`: the mark of a prefix holding lct's state, written before lct's first write
//! there. A prefix with keys and no mark holds something else (another program's keys, a
//! mistyped prefix): lct refuses it before writing anything. The mark also names the key
//! secrets are sealed with, so a second operator with another key file is stopped before
//! the store holds secrets under two keys.

use serde::{Deserialize, Serialize};

use super::base::EtcdStore;
use crate::etcd::{Compare, Op};
use crate::seal::SealKey;
use crate::store::types::StoreError;

const MARKER: &str = ".lct";
const KIND: &str = "lct-state";

#[derive(Debug, Serialize, Deserialize)]
struct Mark {
    kind: String,
    v: u32,
    /// The id of the key secrets are sealed with (`lct_core::seal`), once one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seal_key: Option<String>,
}

impl EtcdStore {
    /// Before a bulk write (a migration), writing nothing: the prefix is lct's or empty, the
    /// sealing key is at hand, and it is the one the store's secrets are sealed with.
    pub fn ready_to_write(&self) -> Result<(), StoreError> {
        check(self)?;
        let seal = self.seal_key()?;
        seal_key_matches(self, &seal)
    }
}

fn marker_key(store: &EtcdStore) -> Vec<u8> {
    format!("{}{MARKER}", store.client.prefix()).into_bytes()
}

/// The mark, its `mod_revision`, if there is one; a value that is not lct's mark is refused.
fn read(store: &EtcdStore) -> Result<Option<(Mark, i64)>, StoreError> {
    let key = marker_key(store);
    let Some(kv) = store.client.get(&key).map_err(|e| store.fail(e))? else { return Ok(None) };
    match serde_json::from_slice::<Mark>(&kv.value) {
        Ok(mark) if mark.kind == KIND && mark.v == 1 => Ok(Some((mark, kv.mod_revision))),
        _ => Err(store.corrupt(
            &String::from_utf8_lossy(&key),
            "not lct's mark: this prefix holds something else; name another in LCT_STATE".into(),
        )),
    }
}

/// Once per process: the prefix is lct's, or empty.
pub(super) fn check(store: &EtcdStore) -> Result<(), StoreError> {
    if store.checked.get().is_some() {
        return Ok(());
    }
    // The mark is written before lct's first key: keys seen, the mark is read again (another
    // controller may have marked and written between the two reads).
    if read(store)?.is_none()
        && let Some(first) = store.client.first_key(store.client.prefix().as_bytes()).map_err(|e| store.fail(e))?
        && read(store)?.is_none()
    {
        let (count, _) = store.client.count(store.client.prefix().as_bytes()).map_err(|e| store.fail(e))?;
        return Err(store.corrupt(
            store.client.prefix(),
            format!(
                "the prefix holds {count} key(s) lct did not write (the first: {:?}) and no {}{MARKER} mark: \
                 it is not lct's state; nothing was written (name another prefix in LCT_STATE)",
                String::from_utf8_lossy(&first),
                store.client.prefix()
            ),
        ));
    }
    let _ = store.checked.set(());
    Ok(())
}

/// Before the first write: the mark, if it is not there yet.
pub(super) fn mark(store: &EtcdStore) -> Result<(), StoreError> {
    if store.marked.get().is_some() {
        return Ok(());
    }
    let key = marker_key(store);
    let value = serde_json::to_vec(&Mark { kind: KIND.into(), v: 1, seal_key: None }).expect("a mark serializes");
    store
        .client
        .txn(&[Compare::Absent(key.clone())], &[Op::Put { key, value, lease: 0 }], &[])
        .map_err(|e| store.fail(e))?;
    let _ = store.marked.set(());
    Ok(())
}

/// Before the first secret is sealed: the store's secrets are sealed with `seal` (recorded
/// in the mark if none was yet), else nothing is written.
pub(super) fn check_seal_key(store: &EtcdStore, seal: &SealKey) -> Result<(), StoreError> {
    if store.seal_checked.get().is_some() {
        return Ok(());
    }
    mark(store)?;
    let ours = seal.id_hex();
    for _ in 0..10 {
        let (mut mark, rev) = read(store)?.ok_or_else(|| {
            store.corrupt(&String::from_utf8_lossy(&marker_key(store)), "the mark went away meanwhile".into())
        })?;
        match &mark.seal_key {
            Some(id) if *id == ours => {
                let _ = store.seal_checked.set(());
                return Ok(());
            }
            Some(id) => {
                return Err(StoreError::Unreachable {
                    store: store.name(),
                    detail: format!(
                        "its secrets are sealed with key {id}, and LCT_STATE_KEY holds key {ours}: \
                         use the team's key file; nothing was written"
                    ),
                });
            }
            None => {
                mark.seal_key = Some(ours.clone());
                let key = marker_key(store);
                let value = serde_json::to_vec(&mark).expect("a mark serializes");
                store
                    .client
                    .txn(&[Compare::ModRevision(key.clone(), rev)], &[Op::Put { key, value, lease: 0 }], &[])
                    .map_err(|e| store.fail(e))?;
            }
        }
    }
    Err(store.corrupt(&String::from_utf8_lossy(&marker_key(store)), "changing constantly".into()))
}

/// Read only (a migration's preflight): the store's secrets, if any were sealed yet, are
/// sealed with `seal`.
pub(super) fn seal_key_matches(store: &EtcdStore, seal: &SealKey) -> Result<(), StoreError> {
    let ours = seal.id_hex();
    match read(store)? {
        Some((Mark { seal_key: Some(id), .. }, _)) if id != ours => Err(StoreError::Unreachable {
            store: store.name(),
            detail: format!(
                "its secrets are sealed with key {id}, and LCT_STATE_KEY holds key {ours}: use the team's key file; nothing was written"
            ),
        }),
        _ => Ok(()),
    }
}
