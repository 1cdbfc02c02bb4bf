//! An etcd v3 client for lct's state (feature `etcd`), over etcd's documented JSON gateway
//! (`/v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn`, `/v3/kv/deleterange`, `/v3/lease/*`,
//! `/v3/watch`) with ureq: HTTP/1.1, TLS with client certificates through rustls on ring, no
//! gRPC stack and no protoc at build (docs/architecture.md, Dependencies).
//!
//! * [`url`]: `etcd://HOST:PORT,.../PREFIX` and `etcds://` (TLS), read strictly.
//! * [`tls`]: the CA, client certificate and key files.
//! * `client`: the members, failover between them, timeouts, bounded answers, errors.
//! * `kv`: ranges (paged at one revision), puts, deletes, transactions comparing revisions.
//! * `lease`: leases granted, kept alive by a thread, revoked.
//! * `watch`: changes under a prefix from a revision on.

mod client;
mod error;
mod kv;
mod lease;
pub mod tls;
pub mod url;
mod watch;
mod wire;

pub use client::{Client, Options};
pub use error::EtcdError;
pub use kv::{Compare, Op, TxnOutcome};
pub use lease::KeptLease;
pub use tls::TlsFiles;
pub use url::EtcdUrl;
pub use watch::{Event, EventKind, WatchBatch};
pub use wire::{KeyValue, prefix_end};

#[cfg(test)]
mod tests;
