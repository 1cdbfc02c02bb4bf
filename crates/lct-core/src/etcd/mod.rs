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
mod kv;
mod lease;
pub mod tls;
pub mod url;
mod watch;
mod wire;

pub use client::{Client, Options};
pub use kv::{Compare, Op, TxnOutcome};
pub use lease::KeptLease;
pub use tls::TlsFiles;
pub use url::EtcdUrl;
pub use watch::{Event, EventKind, WatchBatch};
pub use wire::KeyValue;

/// What can go wrong talking to etcd. Every message names where (the URL, the file, the
/// member) and says whether anything may have been written.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("LCT_STATE {url:?}: {why}")]
    Url { url: String, why: String },
    #[error("etcd TLS: {0}")]
    Tls(String),
    /// No member could be reached: nothing was sent, nothing written.
    #[error("etcd at {endpoints}: no member answered, nothing was written: {detail}")]
    Unreachable { endpoints: String, detail: String },
    /// etcd refused the request (a gRPC status through the gateway).
    #[error("etcd at {endpoint}: {message} (gRPC status {code})")]
    Server { endpoint: String, code: i32, message: String },
    /// What answered is not etcd's gateway, or said something it cannot have meant.
    #[error("etcd at {endpoint}: not an answer of etcd's: {why}")]
    Protocol { endpoint: String, why: String },
    #[error("etcd at {endpoint}: an answer over {limit} bytes (the bound on one answer)")]
    TooLarge { endpoint: String, limit: u64 },
    /// A write whose outcome is unknown: the connection broke after it was sent.
    #[error("etcd at {endpoint}: the connection broke after a write was sent (it may or may not be applied): {why}")]
    Ambiguous { endpoint: String, why: String },
    /// A watch or read from a revision etcd no longer keeps (the compaction's revision, 0
    /// when etcd did not say).
    #[error("etcd: the revision asked for was compacted away (compacted up to {0})")]
    Compacted(i64),
    /// This process could not do its part (start a thread).
    #[error("etcd client: {0}")]
    Local(String),
    /// A key lct would write is not under the prefix, or too long.
    #[error("etcd: key {key:?}: {why}")]
    Key { key: String, why: String },
}

impl EtcdError {
    /// Whether nothing can have been applied (the request never reached a member, or a member
    /// refused it before proposing it).
    pub fn nothing_written(&self) -> bool {
        !matches!(self, EtcdError::Ambiguous { .. })
    }
}

/// The end of the range of keys starting with `prefix` (etcd's `range_end`): the prefix with
/// its last byte below 0xff incremented and what follows dropped; `[0]` (every key) when
/// all of its bytes are 0xff or it is empty.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"lct/"), b"lct0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_end(b""), [0]);
    }
}
