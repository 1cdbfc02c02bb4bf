//! What can go wrong talking to etcd.

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
