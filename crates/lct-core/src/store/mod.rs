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
//! * secret values ([`Secrecy::Secret`], and every key [`layout`] names secret whatever
//!   the writer asked) are encrypted by a backend that stores them elsewhere, and kept
//!   0600 by the local directory; such a backend also authenticates every other value;
//! * locks ([`Store::lock`]) guard long operations on one cluster; they carry a
//!   [`Holder`] record and end with their holder (a flock locally, a lease in etcd);
//! * [`Store::watch`] reports changes under a prefix.
//!
//! Methods block. A backend with an async client runs it on a thread of its own, so
//! the methods may be called from plain code and (briefly, as `std::fs` is) from async code.

pub mod api;
pub mod contract;
#[cfg(feature = "etcd")]
pub mod etcd;
mod key;
pub mod layout;
pub mod local;
#[cfg(feature = "etcd")]
pub mod migrate;
pub mod open;
mod types;

pub use api::{SharedStore, Store, update};
pub use key::{Key, KeyError, MAX_KEY_LEN, MAX_SEGMENT_LEN};
pub use open::{DEFAULT_STATE_DIR, Materialized, STATE_ENV, materialize, open, open_spec, state_dir};
pub use types::{
    Change, Committed, Entry, Expect, Fence, Holder, LockGuard, Op, Rev, Secrecy, StoreError, Txn, Wait, Watch,
    since_text,
};

#[cfg(test)]
mod tests;
