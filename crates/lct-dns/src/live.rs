//! What is being served, swapped whole on a reload, an update or a transfer; with the
//! journal of recent changes (for IXFR) and the wake-up of each secondary zone's refresh.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::journal::{Change, Journal, Known, journal_file};
use crate::served::Served;

/// What is being served, swapped whole on reload or update: a query in flight keeps what it
/// started with, the next one gets the new zones.
#[derive(Clone)]
pub struct Live {
    served: Arc<RwLock<Arc<Served>>>,
    /// Recent changes per zone, for IXFR.
    journal: Arc<std::sync::Mutex<Journal>>,
    /// Per secondary zone: wakes its refresh (a NOTIFY came).
    refreshers: Arc<std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Notify>>>>,
    /// Bumped on every swap, so a hot loop can keep its `Arc` until it changes.
    generation: Arc<AtomicU64>,
    /// Held by whoever changes the zones (an update, a reload), so each starts from the last.
    changing: Arc<tokio::sync::Mutex<()>>,
    /// The version the update log's next line starts from is the state file's (a fold
    /// wrote it, or nothing changed since). False until the first fold succeeds: a line
    /// appended before would start from a serial a restart cannot reach, and be lost.
    log_base_kept: Arc<AtomicBool>,
}

impl Live {
    pub fn new(served: Served) -> Live {
        // The journal of the last run, for what it still leads to: IXFR across a restart.
        let journal = Journal::load(&journal_file(&served.settings.state_file), &served.records);
        Live {
            served: Arc::new(RwLock::new(Arc::new(served))),
            journal: Arc::new(std::sync::Mutex::new(journal)),
            refreshers: Arc::default(),
            generation: Arc::new(AtomicU64::new(0)),
            changing: Arc::new(tokio::sync::Mutex::new(())),
            log_base_kept: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Serves `served` from now on; zones whose serial changed go in the journal, and their
    /// secondaries are notified.
    pub fn swap(&self, served: Served) {
        self.swap_known(served, None);
    }

    /// Serves `served`'s tables at once while its records are still the last swap's (a
    /// secondary's full transfer, its `settling` zone's text still being made): nothing is
    /// journaled, notified or kept; the [`Live::swap_known`] that brings the records does.
    pub fn swap_tables(&self, served: Served) {
        let previous = std::mem::replace(&mut *self.served.write().expect("not poisoned"), Arc::new(served));
        self.generation.fetch_add(1, Ordering::Release);
        crate::reaper::retire(previous);
    }

    /// [`Live::swap`] when the steps of the changed zone are known (the journal need not
    /// compare the whole zone). Returns when the new version began to be served: the
    /// journal is noted before (an IXFR never sees a serial it cannot reach) and written to
    /// disk after, so its sync is not in the way of the answers.
    pub fn swap_known(&self, served: Served, known: Option<Known>) -> std::time::Instant {
        let old = self.current();
        let mut journal = self.journal.lock().expect("not poisoned");
        let changed = journal.record(&old.records, &served.records, known);
        let served = Arc::new(served);
        let previous = std::mem::replace(&mut *self.served.write().expect("not poisoned"), served.clone());
        self.generation.fetch_add(1, Ordering::Release);
        let swapped = std::time::Instant::now();
        if !changed.is_empty() {
            let path = journal_file(&served.settings.state_file);
            if let Err(e) = journal.save(&path) {
                tracing::warn!(
                    "{}: the journal is not kept ({e}); after a restart, secondaries get AXFR",
                    path.display()
                );
            }
        }
        drop(journal);
        crate::notify::zones_changed(&served, &changed);
        drop(old);
        crate::reaper::retire(previous);
        swapped
    }

    /// What wakes `zone`'s refresh.
    pub fn refresher(&self, zone: &str) -> Arc<tokio::sync::Notify> {
        self.refreshers.lock().expect("not poisoned").entry(zone.to_string()).or_default().clone()
    }

    /// The changes of `zone` from `serial` to the current one, oldest first, if the journal
    /// reaches back that far.
    pub fn changes_since(&self, zone: &str, serial: u32) -> Option<Vec<Change>> {
        self.journal.lock().expect("not poisoned").since(zone, serial)
    }

    pub fn current(&self) -> Arc<Served> {
        self.served.read().expect("not poisoned").clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the state file holds the version served (the update log's base); see
    /// [`crate::updatelog`].
    pub fn log_base_kept(&self) -> bool {
        self.log_base_kept.load(Ordering::Acquire)
    }

    /// Notes whether a fold (or a failed one) left the version served in the state file.
    pub fn set_log_base_kept(&self, kept: bool) {
        self.log_base_kept.store(kept, Ordering::Release);
    }

    /// The right to change the zones, one change at a time.
    pub async fn update_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changing.lock().await
    }
}
