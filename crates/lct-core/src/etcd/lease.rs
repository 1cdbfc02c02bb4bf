//! Leases: granted for a time to live, kept alive by a thread of their own while their holder
//! lives, revoked when it lets go. A holder that dies stops renewing; etcd deletes the keys
//! attached to its lease when the time runs out (how a dead controller's lock goes away).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::client::{Client, Retry};
use super::error::EtcdError;
use super::wire::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseId, LeaseKeepAliveResponse, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse, Streamed,
};

impl Client {
    /// A new lease of `ttl` seconds; returns its id.
    pub fn lease_grant(&self, ttl: i64) -> Result<i64, EtcdError> {
        let response: LeaseGrantResponse =
            self.call("/v3/lease/grant", &LeaseGrantRequest { ttl }, Retry::IfNotSent)?;
        if !response.error.is_empty() || response.id == 0 {
            return Err(EtcdError::Server {
                endpoint: self.endpoints().join(","),
                code: 0,
                message: format!("no lease granted: {}", response.error),
            });
        }
        Ok(response.id)
    }

    /// Renews the lease; its time to live again, or `None` when it is gone (expired, revoked).
    pub fn lease_keepalive(&self, id: i64) -> Result<Option<i64>, EtcdError> {
        let response: Streamed<LeaseKeepAliveResponse> =
            self.call("/v3/lease/keepalive", &LeaseId { id }, Retry::Always)?;
        if let Some(e) = response.error {
            return Err(EtcdError::Server { endpoint: self.endpoints().join(","), code: e.code, message: e.message });
        }
        Ok(response.result.filter(|r| r.ttl > 0).map(|r| r.ttl))
    }

    /// The seconds the lease has left, or `None` when it is gone.
    pub fn lease_ttl(&self, id: i64) -> Result<Option<i64>, EtcdError> {
        let response: LeaseTimeToLiveResponse =
            self.call("/v3/lease/timetolive", &LeaseTimeToLiveRequest { id }, Retry::Always)?;
        Ok((response.ttl > 0).then_some(response.ttl))
    }

    /// Ends the lease and deletes its keys (a lease already gone is no error).
    pub fn lease_revoke(&self, id: i64) -> Result<(), EtcdError> {
        match self.call::<_, serde_json::Value>("/v3/lease/revoke", &LeaseId { id }, Retry::Always) {
            Ok(_) => Ok(()),
            Err(EtcdError::Server { code: 5, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A lease renewed every third of its time to live by a thread, until dropped (then
/// revoked: its keys go at once) or until renewing fails for longer than it lives.
pub struct KeptLease {
    client: Arc<Client>,
    id: i64,
    ttl: i64,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    lost: AtomicBool,
    /// When the last renewal that etcd answered was sent: the lease lives at least its TTL
    /// from then, and possibly no longer.
    renewed: Mutex<Instant>,
}

impl Shared {
    fn renewed(&self) -> Instant {
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl KeptLease {
    /// Grants a lease of `ttl` seconds (at least 2) and keeps it alive with `client`.
    pub fn grant(client: Arc<Client>, ttl: i64) -> Result<KeptLease, EtcdError> {
        let ttl = ttl.max(2);
        let sent = Instant::now();
        let id = client.lease_grant(ttl)?;
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            lost: AtomicBool::new(false),
            renewed: Mutex::new(sent),
        });
        let thread = {
            let shared = shared.clone();
            let client = client.clone();
            std::thread::Builder::new()
                .name("etcd-lease".into())
                .spawn(move || keep(&client, id, ttl, &shared))
                .map_err(|e| EtcdError::Local(format!("starting the lease's thread: {e}")))?
        };
        Ok(KeptLease { client, id, ttl, shared, thread: Some(thread) })
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// Whether the lease may have ended (etcd said it is gone, or no renewal was answered
    /// for nine tenths of its time to live, counted from when the last answered one was
    /// sent): whatever hangs on it (a lock) may be another's now. Known at once after this
    /// process was paused, or while a renewal hangs, not only once the thread notices.
    pub fn lost(&self) -> bool {
        let bound = Duration::from_millis(self.ttl as u64 * 900);
        self.shared.lost.load(Ordering::SeqCst) || self.shared.renewed().elapsed() >= bound
    }

    /// Stops renewing and revokes the lease: whatever hangs on it goes at once.
    pub fn release(mut self) -> Result<(), EtcdError> {
        self.stop_thread();
        let id = std::mem::replace(&mut self.id, 0);
        self.client.lease_revoke(id)
    }

    /// Stops renewing without revoking: the lease runs out by itself (as when the holder
    /// dies); for tests of that.
    pub fn abandon(mut self) {
        self.stop_thread();
        self.id = 0;
    }

    fn stop_thread(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn keep(client: &Client, id: i64, ttl: i64, shared: &Shared) {
    let every = Duration::from_millis((ttl as u64 * 1000) / 3);
    loop {
        {
            let stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
            let (stop, _) = shared.wake.wait_timeout_while(stop, every, |s| !*s).unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
        }
        let sent = Instant::now();
        match client.lease_keepalive(id) {
            Ok(Some(_)) => *shared.renewed.lock().unwrap_or_else(|e| e.into_inner()) = sent,
            Ok(None) => {
                shared.lost.store(true, Ordering::SeqCst);
                tracing::warn!(lease = id, "etcd lease expired: what it held is no longer ours");
                return;
            }
            Err(e) => {
                tracing::warn!(lease = id, error = %e, "renewing an etcd lease failed; trying again");
                if shared.renewed().elapsed() >= Duration::from_secs(ttl as u64) {
                    shared.lost.store(true, Ordering::SeqCst);
                }
            }
        }
    }
}

impl Drop for KeptLease {
    fn drop(&mut self) {
        self.stop_thread();
        if self.id != 0
            && let Err(e) = self.client.lease_revoke(self.id)
        {
            tracing::warn!(lease = self.id, error = %e, "revoking an etcd lease failed: it runs out by itself");
        }
    }
}
