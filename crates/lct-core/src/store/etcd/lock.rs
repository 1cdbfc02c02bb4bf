//! Locks on etcd: the key `PREFIX/.locks/NAME` holds the holder's record and is attached to
//! a lease the holder keeps alive (a thread renews it every third of its time to live). It
//! is made only if absent (one transaction), so one taker wins; the others read who holds
//! it and fail at once or watch the key until it goes. Dropping the guard revokes the lease
//! (the key goes at once); a holder that dies stops renewing and etcd deletes the key when
//! the lease runs out. `unlock` revokes the holder's lease: the operator's way out.

use std::time::{Duration, Instant};

use super::base::EtcdStore;
use crate::etcd::{Compare, EtcdError, KeptLease, Op};
use crate::store::key::Key;
use crate::store::types::{Fence, Holder, LockGuard, StoreError, Wait};

/// The longest wait for the lock's key to change before it is tried again anyway.
const POLL: Duration = Duration::from_secs(2);

pub(super) fn lock_key(store: &EtcdStore, name: &Key) -> Vec<u8> {
    format!("{}.locks/{name}", store.client.prefix()).into_bytes()
}

/// A held lock: the lease its key hangs on, renewed until dropped.
struct EtcdLock {
    name: Key,
    lease: KeptLease,
    /// The lock key's `create_revision`: this holding's fence.
    created: i64,
}

impl std::fmt::Debug for EtcdLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EtcdLock({}, lease {:x})", self.name, self.lease.id())
    }
}

impl LockGuard for EtcdLock {
    fn name(&self) -> &Key {
        &self.name
    }

    fn is_held(&self) -> bool {
        !self.lease.lost()
    }

    fn fence(&self) -> Fence {
        Fence { lock: self.name.clone(), token: self.created as u64 }
    }
}

pub(super) fn take(
    store: &EtcdStore,
    name: &Key,
    holder: &Holder,
    ttl: Duration,
    wait: Wait,
) -> Result<Box<dyn LockGuard>, StoreError> {
    let deadline = Instant::now() + if let Wait::Upto(d) = wait { d } else { Duration::ZERO };
    let key = lock_key(store, name);
    let value = serde_json::to_vec(holder).expect("a holder serializes");
    // Whole seconds, rounded up (etcd's leases count seconds), at least 2.
    let ttl = i64::try_from(ttl.as_millis().div_ceil(1000)).unwrap_or(i64::MAX).max(2);
    let lease = KeptLease::grant(store.client.clone(), ttl).map_err(|e| store.fail(e))?;
    loop {
        let put = Op::Put { key: key.clone(), value: value.clone(), lease: lease.id() };
        let outcome = match store.client.txn(&[Compare::Absent(key.clone())], &[put], &[Op::Get(key.clone())]) {
            Ok(outcome) => outcome,
            Err(e @ EtcdError::Ambiguous { .. }) => match store.client.get(&key).map_err(|e| store.fail(e))? {
                Some(kv) if kv.lease == lease.id() => {
                    return Ok(Box::new(EtcdLock { name: name.clone(), lease, created: kv.create_revision }));
                }
                _ => return Err(store.fail(e)),
            },
            Err(e) => return Err(store.fail(e)),
        };
        if outcome.succeeded {
            // The put made the key: its create_revision is the transaction's revision.
            return Ok(Box::new(EtcdLock { name: name.clone(), lease, created: outcome.revision }));
        }
        let now = Instant::now();
        // Gone between the compare and the read: try again at once, within the deadline.
        let Some(held) = outcome.read.into_iter().next() else {
            if now >= deadline {
                return Err(StoreError::HeldUnknown { name: name.clone() });
            }
            continue;
        };
        if now >= deadline {
            return Err(match serde_json::from_slice::<Holder>(&held.value) {
                Ok(holder) => StoreError::Held { name: name.clone(), holder },
                Err(_) => StoreError::HeldUnknown { name: name.clone() },
            });
        }
        // Wait for the key to change (released, or its lease run out), then try again.
        let wait = (deadline - now).min(POLL);
        if store.client.watch(&key, held.mod_revision + 1, wait).is_err() {
            // A watch that fails at once (its revision compacted away, a member down) must not
            // make this loop spin: wait as long as the watch would have.
            std::thread::sleep(wait);
        }
    }
}

pub(super) fn holder(store: &EtcdStore, name: &Key) -> Result<Option<Holder>, StoreError> {
    match store.client.get(&lock_key(store, name)).map_err(|e| store.fail(e))? {
        None => Ok(None),
        Some(kv) => match serde_json::from_slice::<Holder>(&kv.value) {
            Ok(holder) => Ok(Some(holder)),
            Err(_) => Err(StoreError::HeldUnknown { name: name.clone() }),
        },
    }
}

/// Breaks the lock when `force` (its holder's lease is revoked: the key goes with it, a
/// holder still running sees its guard no longer held and its fenced writes fail); else
/// refuses a held lock naming its holder: a lock key exists only while its lease is
/// renewed, so its holder is alive. Returns who held it.
pub(super) fn breaks(store: &EtcdStore, name: &Key, force: bool) -> Result<Option<Holder>, StoreError> {
    let key = lock_key(store, name);
    let Some(kv) = store.client.get(&key).map_err(|e| store.fail(e))? else { return Ok(None) };
    let holder = serde_json::from_slice::<Holder>(&kv.value).unwrap_or_else(|_| Holder {
        who: "unknown (an unreadable holder record)".into(),
        pid: 0,
        operation: String::new(),
        since: 0,
    });
    if !force && kv.lease != 0 {
        return Err(StoreError::Held { name: name.clone(), holder });
    }
    if kv.lease != 0 {
        store.client.lease_revoke(kv.lease).map_err(|e| store.fail(e))?;
    }
    // A key without a lease (or left after the revoke): deleted if it is still the same one.
    store
        .client
        .txn(&[Compare::ModRevision(key.clone(), kv.mod_revision)], &[Op::Delete(key.clone())], &[])
        .map_err(|e| store.fail(e))?;
    // Taken by another between the read and the revoke: theirs is left, and said.
    if let Some(now) = store.client.get(&key).map_err(|e| store.fail(e))?
        && now.create_revision != kv.create_revision
    {
        return Err(match serde_json::from_slice::<Holder>(&now.value) {
            Ok(holder) => StoreError::Held { name: name.clone(), holder },
            Err(_) => StoreError::HeldUnknown { name: name.clone() },
        });
    }
    Ok(Some(holder))
}
