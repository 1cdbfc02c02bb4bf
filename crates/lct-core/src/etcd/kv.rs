//! Keys and values: one key, every key under a prefix (paged, all pages at one revision so
//! the listing is a snapshot), puts, deletes, and transactions that compare revisions first.

use super::client::{Client, Retry};
use super::error::EtcdError;
use super::wire::prefix_end;
use super::wire::{
    CompareWire, DeleteRequest, DeleteResponse, KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseOp, TxnRequest, TxnResponse,
};

/// Keys a page of a listing holds at most (etcd keeps values to 1.5 MiB by default, so a
/// page stays well inside the bound on one answer only when values are small; lct's are).
const PAGE: i64 = 500;

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's last change was at this revision (`0`: the key does not exist).
    ModRevision(Vec<u8>, i64),
    /// The key does not exist.
    Absent(Vec<u8>),
    /// The key was made at this revision (and not deleted since).
    CreateRevision(Vec<u8>, i64),
    /// The key holds exactly these bytes.
    Value(Vec<u8>, Vec<u8>),
}

/// A step of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Writes the key (attached to a lease when not 0).
    Put { key: Vec<u8>, value: Vec<u8>, lease: i64 },
    /// Deletes the key.
    Delete(Vec<u8>),
    /// Deletes every key starting with these bytes.
    DeletePrefix(Vec<u8>),
    /// Reads the key (its value comes back in the outcome).
    Get(Vec<u8>),
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether every comparison held (then the success steps ran, else the failure steps).
    pub succeeded: bool,
    /// The store's revision after it (the revision of its writes, if it wrote).
    pub revision: i64,
    /// The keys its `Get` steps read, in order (absent keys left out).
    pub read: Vec<KeyValue>,
}

impl Client {
    /// The key's value and revisions, if it exists.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
        let request = RangeRequest { key: key.to_vec(), ..RangeRequest::default() };
        let response: RangeResponse = self.call("/v3/kv/range", &request, Retry::Always)?;
        Ok(response.kvs.into_iter().find(|kv| kv.key == key))
    }

    /// Every key starting with `prefix`, in key order, as of one revision (returned too).
    pub fn list(&self, prefix: &[u8]) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        self.list_range(prefix, &prefix_end(prefix), false)
    }

    /// The keys (values left empty) starting with `prefix`, as of one revision.
    pub fn list_keys(&self, prefix: &[u8]) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        self.list_range(prefix, &prefix_end(prefix), true)
    }

    fn list_range(&self, from: &[u8], end: &[u8], keys_only: bool) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        // The revision of the first page compacted away before the last was read: again,
        // at the newest revision.
        let mut tries = 0;
        loop {
            match self.list_once(from, end, keys_only) {
                Err(EtcdError::Compacted(_)) if tries < 3 => tries += 1,
                other => return other,
            }
        }
    }

    fn list_once(&self, from: &[u8], end: &[u8], keys_only: bool) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let mut out = Vec::new();
        let mut revision = 0;
        let mut next = from.to_vec();
        loop {
            let request = RangeRequest {
                key: next.clone(),
                range_end: end.to_vec(),
                limit: PAGE,
                revision,
                keys_only,
                count_only: false,
            };
            let response: RangeResponse = self.call("/v3/kv/range", &request, Retry::Always)?;
            if revision == 0 {
                revision = response.header.revision;
            }
            let more = response.more;
            let Some(last) = response.kvs.last().map(|kv| kv.key.clone()) else { break };
            if last < next || response.kvs.iter().any(|kv| kv.key.as_slice() < from || kv.key.as_slice() >= end) {
                return Err(EtcdError::Protocol {
                    endpoint: self.endpoints().join(","),
                    why: "a range answer with keys outside the range asked for".into(),
                });
            }
            out.extend(response.kvs);
            if !more {
                break;
            }
            next = last;
            next.push(0);
        }
        Ok((out, revision))
    }

    /// How many keys start with `prefix`, and the store's revision.
    pub fn count(&self, prefix: &[u8]) -> Result<(i64, i64), EtcdError> {
        let request = RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            count_only: true,
            ..RangeRequest::default()
        };
        let response: RangeResponse = self.call("/v3/kv/range", &request, Retry::Always)?;
        Ok((response.count, response.header.revision))
    }

    /// The first key starting with `prefix` (its value left out), if any.
    pub fn first_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, EtcdError> {
        let request = RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            limit: 1,
            keys_only: true,
            ..RangeRequest::default()
        };
        let response: RangeResponse = self.call("/v3/kv/range", &request, Retry::Always)?;
        Ok(response.kvs.into_iter().next().map(|kv| kv.key))
    }

    /// Writes the key unconditionally; returns the revision of the write.
    pub fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let request = PutRequest { key: key.to_vec(), value: value.to_vec(), lease };
        let response: PutResponse = self.call("/v3/kv/put", &request, Retry::IfNotSent)?;
        Ok(response.header.revision)
    }

    /// Deletes the key; returns how many keys were deleted (0 or 1).
    pub fn delete(&self, key: &[u8]) -> Result<i64, EtcdError> {
        let request = DeleteRequest { key: key.to_vec(), range_end: Vec::new() };
        let response: DeleteResponse = self.call("/v3/kv/deleterange", &request, Retry::IfNotSent)?;
        Ok(response.deleted)
    }

    /// Deletes every key starting with `prefix`; returns how many.
    pub fn delete_prefix(&self, prefix: &[u8]) -> Result<i64, EtcdError> {
        let request = DeleteRequest { key: prefix.to_vec(), range_end: prefix_end(prefix) };
        let response: DeleteResponse = self.call("/v3/kv/deleterange", &request, Retry::IfNotSent)?;
        Ok(response.deleted)
    }

    /// If every comparison holds, the `then` steps, else the `otherwise` steps, atomically.
    pub fn txn(&self, compare: &[Compare], then: &[Op], otherwise: &[Op]) -> Result<TxnOutcome, EtcdError> {
        let request = TxnRequest {
            compare: compare.iter().map(compare_wire).collect(),
            success: then.iter().map(op_wire).collect(),
            failure: otherwise.iter().map(op_wire).collect(),
        };
        let retry = if then.iter().chain(otherwise).all(|op| matches!(op, Op::Get(_))) {
            Retry::Always
        } else {
            Retry::IfNotSent
        };
        let response: TxnResponse = self.call("/v3/kv/txn", &request, retry)?;
        let mut read = Vec::new();
        for r in response.responses {
            if let ResponseOp::Range(range) = r {
                read.extend(range.kvs);
            }
        }
        Ok(TxnOutcome { succeeded: response.succeeded, revision: response.header.revision, read })
    }
}

fn compare_wire(c: &Compare) -> CompareWire {
    let base = |key: &Vec<u8>, target| CompareWire {
        result: "EQUAL",
        target,
        key: key.clone(),
        mod_revision: None,
        create_revision: None,
        value: None,
    };
    match c {
        Compare::ModRevision(key, rev) => CompareWire { mod_revision: Some(*rev), ..base(key, "MOD") },
        Compare::Absent(key) => CompareWire { create_revision: Some(0), ..base(key, "CREATE") },
        Compare::CreateRevision(key, rev) => CompareWire { create_revision: Some(*rev), ..base(key, "CREATE") },
        Compare::Value(key, value) => CompareWire { value: Some(value.clone()), ..base(key, "VALUE") },
    }
}

fn op_wire(op: &Op) -> RequestOp {
    match op {
        Op::Put { key, value, lease } => {
            RequestOp::Put(PutRequest { key: key.clone(), value: value.clone(), lease: *lease })
        }
        Op::Delete(key) => RequestOp::Delete(DeleteRequest { key: key.clone(), range_end: Vec::new() }),
        Op::DeletePrefix(prefix) => {
            RequestOp::Delete(DeleteRequest { key: prefix.clone(), range_end: prefix_end(prefix) })
        }
        Op::Get(key) => RequestOp::Range(RangeRequest { key: key.clone(), ..RangeRequest::default() }),
    }
}
