//! Changes under a prefix, from a revision on: one streamed request that ends as soon as a
//! batch of changes came (or the wait ran out); the caller asks again from the revision after
//! it, so nothing between two calls is missed and no connection is held between them.

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::time::{Duration, Instant};

use super::client::Client;
use super::error::EtcdError;
use super::wire::prefix_end;
use super::wire::{KeyValue, Streamed, WatchCreate, WatchRequest, WatchResponse};

/// The longest line of a watch stream read (one batch of events).
const MAX_LINE: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The key and, for a put, its new value; `mod_revision` is the change's revision.
    pub kv: KeyValue,
}

/// What one wait gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBatch {
    /// The changes, in revision order (empty: the wait ran out).
    pub events: Vec<Event>,
    /// Where to watch from next: one past the last change seen, or `from` again.
    pub next: i64,
}

impl Client {
    /// The changes to keys starting with `prefix` at revision `from` or later (`from` 0: from
    /// now on), waiting up to `wait` for the first. Revisions etcd compacted away give
    /// [`EtcdError::Compacted`]: read everything again, then watch from that read's revision.
    pub fn watch(&self, prefix: &[u8], from: i64, wait: Duration) -> Result<WatchBatch, EtcdError> {
        let deadline = Instant::now() + wait;
        let request = WatchRequest {
            create_request: WatchCreate { key: prefix.to_vec(), range_end: prefix_end(prefix), start_revision: from },
        };
        let (endpoint, reader) = self.stream("/v3/watch", &request, wait.max(Duration::from_millis(100)))?;
        let mut reader = BufReader::new(reader);
        let mut next = from;
        loop {
            if Instant::now() >= deadline {
                return Ok(WatchBatch { events: Vec::new(), next });
            }
            let mut line = Vec::new();
            match reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut line) {
                Ok(0) => return Ok(WatchBatch { events: Vec::new(), next }),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                    return Ok(WatchBatch { events: Vec::new(), next });
                }
                Err(e) if e.to_string().contains("timeout") || e.to_string().contains("timed out") => {
                    return Ok(WatchBatch { events: Vec::new(), next });
                }
                Err(e) => {
                    return Err(EtcdError::Protocol { endpoint, why: format!("reading the watch: {e}") });
                }
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let message: Streamed<WatchResponse> = serde_json::from_slice(&line).map_err(|e| EtcdError::Protocol {
                endpoint: endpoint.clone(),
                why: format!("a watch message: {e}"),
            })?;
            if let Some(e) = message.error {
                return Err(EtcdError::Server { endpoint, code: e.code, message: e.message });
            }
            let Some(response) = message.result else { continue };
            if response.compact_revision > 0 {
                return Err(EtcdError::Compacted(response.compact_revision));
            }
            if response.canceled {
                return Err(EtcdError::Server {
                    endpoint,
                    code: 0,
                    message: format!("the watch was canceled: {}", response.cancel_reason),
                });
            }
            if next == 0 {
                next = response.header.revision + 1;
            }
            if response.events.is_empty() {
                continue;
            }
            let events: Vec<Event> = response
                .events
                .into_iter()
                .map(|e| Event { kind: if e.kind == "DELETE" { EventKind::Delete } else { EventKind::Put }, kv: e.kv })
                .collect();
            next = events.iter().map(|e| e.kv.mod_revision).max().unwrap_or(next - 1) + 1;
            return Ok(WatchBatch { events, next });
        }
    }
}
