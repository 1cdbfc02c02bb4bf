//! The shared foundation of the lct tools.
//!
//! * [`record`]: the records that flow between the tools (node, cluster, node-spec, volume),
//!   the [`record::Record`] trait other crates implement for their own kinds, and the list
//!   of every kind ([`record::KINDS`]).
//! * [`scan`]: a strict JSON scanner that borrows, for reading many records quickly.
//! * [`stream`]: reading and writing JSON lines, passing unknown kinds through untouched.
//! * `cli` (feature `cli`): the conventions every binary follows (output format, logging, exit codes,
//!   completions and man pages).
//! * [`naming`]: the one rule for cluster domains and node FQDNs.
//! * [`prefix`]: address prefixes, strict for declarations or clearing host bits.
//! * [`privilege`]: whether this process runs as root.
//! * [`reach`]: never a connection to a lab's documentation address out of this machine.
//! * [`fsutil`]: atomic file replacement and advisory locks.
//! * `etcd` (feature `etcd`): an etcd v3 client (its JSON gateway) for lct's state on etcd.
//! * `seal` (feature `etcd`): secrets sealed (ChaCha20-Poly1305) before a shared store holds them.
//! * [`debian`]: Debian package names and versions (Policy's grammar), before apt sees them.
//! * [`random`]: the one source of randomness (the kernel's CSPRNG) for secrets, ids and seeds.
//! * [`ssh`]: lct's SSH client key and pinned host keys.
//! * [`store`]: the one interface to lct's state (records, plan state, keys, secrets, locks)
//!   and its local directory backend.
//! * [`state`]: the state directory and the cluster records kept in it.
//! * [`table`]: human tables for terminals.
//!
//! This crate exists so that `lct-api` (which returns node records) and `lct-inventory`
//! (which asks the providers for them) can share the record types without a cycle.

pub mod bounded;
#[cfg(feature = "cli")]
pub mod cli;
pub mod debian;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod fsutil;
mod host_key;
pub mod naming;
#[cfg(feature = "native-keys")]
pub mod openssh_key;
pub mod prefix;
pub mod privilege;
pub mod random;
pub mod reach;
pub mod record;
pub mod scan;
#[cfg(feature = "etcd")]
pub mod seal;
pub mod ssh;
pub mod state;
pub mod store;
pub mod stream;
pub mod table;

pub use record::{Cluster, Node, NodeSpec, Record, Volume};
