//! `lct-plan reconcile --watch`: a controller that reconciles a cluster within seconds of
//! another controller recording a change to it, instead of on a timer.
//!
//! * **What it reacts to.** Writes of `plans/NAME/cluster.json` (where `create`, `scale`,
//!   `stop`, `start` and `reconcile` record a cluster's group sizes and the membership its
//!   hooks last saw) and its removal (`destroy`: forgotten). Appends to event logs are not
//!   membership: a reconcile's own dependency events append to other clusters' logs, and
//!   reacting to them would echo between clusters.
//! * **Its own writes are not news.** A cluster is reconciled under its lock, and the revision
//!   of its `cluster.json` is read before the lock goes: a change reporting that revision is
//!   this controller's own. Another controller writes `cluster.json` only under the lock too,
//!   so no write of theirs can hide behind that revision.
//! * **Bursts** (a scale, then its events' writes) are gathered: a cluster is reconciled once
//!   no change to it came for [`QUIET`], or [`MAX_DELAY`] after the first one at the latest.
//! * **A busy cluster** (another controller's `scale` holds its lock) is tried again, every
//!   [`RETRY_FIRST`] doubling up to [`RETRY_MAX`]; so is a reconcile that failed (a provider
//!   or store error), so one bad cluster neither stops the others nor floods the log.
//! * **Store outages.** A watch that fails is asked again with the same backoff: etcd's
//!   resumes from the revision after the last change it reported, so nothing written during
//!   the outage is missed (if etcd compacted it away, every key is reported, and reconciled);
//!   the local directory's compares what it polls with what it saw last.
//! * **Stopping.** SIGTERM or SIGINT stops it between two reconciles (a reconcile under way
//!   finishes first: a node half-made is converged by the next run anyway, but its hooks are
//!   not cut off); exit status 0.
//!
//! At the start every watched cluster is reconciled once (what changed before it ran).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lct_core::record::Name;
use lct_core::store::{Change, Holder, Key, Rev, StoreError, Wait};

use crate::records::PlanReconciled;
use crate::state::{ClusterLock, ClusterState, Home, LOCK_TTL, Tools, cluster_key, cluster_prefix, clusters};

/// How long a cluster must go without a change before it is reconciled.
pub const QUIET: Duration = Duration::from_millis(500);
/// The longest a change waits for its burst to end.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// The first wait before a busy or failed cluster (or a failed watch) is tried again.
pub const RETRY_FIRST: Duration = Duration::from_secs(2);
/// The longest wait between two tries.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// How often the stop flag is looked at while nothing happens.
const TICK: Duration = Duration::from_secs(1);

/// What a watching controller tells its caller.
#[derive(Debug)]
pub enum Report {
    /// A cluster was reconciled (or failed to be; it is tried again).
    Reconciled(Name, anyhow::Result<PlanReconciled>),
    /// A cluster's lock is held by another: tried again later.
    Busy(Name, Holder),
    /// The store did not answer the watch: asked again after `retry`.
    StoreDown { error: StoreError, retry: Duration },
    /// The store answers again after an outage.
    StoreBack,
}

/// A cluster that changed and waits to be reconciled.
struct Pending {
    first: Instant,
    last: Instant,
    /// Set after a busy or failed try: not before then.
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Pending {
    fn new(now: Instant) -> Pending {
        Pending { first: now, last: now, retry_at: None, backoff: RETRY_FIRST }
    }

    fn due_at(&self) -> Instant {
        self.retry_at.unwrap_or_else(|| (self.last + QUIET).min(self.first + MAX_DELAY))
    }

    fn try_later(&mut self, now: Instant) {
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
    }
}

/// Which clusters are watched: the named ones, or every one (also those made later).
struct Watched {
    names: BTreeSet<Name>,
}

impl Watched {
    fn wants(&self, name: &Name) -> bool {
        self.names.is_empty() || self.names.contains(name)
    }

    /// The cluster whose `cluster.json` `key` is (`plans/NAME/cluster.json`), if watched.
    fn cluster_of(&self, key: &Key) -> Option<Name> {
        let rest = key.as_str().strip_prefix("plans/")?.strip_suffix("/cluster.json")?;
        rest.parse::<Name>().ok().filter(|n| self.wants(n))
    }
}

/// Watches `names` (every cluster if empty) until `stop` is set, reconciling each changed
/// one as [`crate::cluster::reconcile`] does (`replace` as its `--replace`); `report` hears
/// each outcome. Fails only when the watch cannot be started.
pub async fn watch(
    home: &Home,
    tools: &Tools,
    names: &[Name],
    replace: bool,
    stop: Arc<AtomicBool>,
    mut report: impl FnMut(Report),
) -> anyhow::Result<()> {
    let watched = Watched { names: names.iter().cloned().collect() };
    // Started before the first reconciles: nothing written after them is missed.
    let mut watch = Some(home.store.watch(&Key::new("plans").expect("a fixed key"))?);
    let start = Instant::now();
    let initial = if names.is_empty() { clusters(home)? } else { names.to_vec() };
    let mut pending: BTreeMap<Name, Pending> = initial.into_iter().map(|n| (n, Pending::new(start))).collect();
    // The revision of each cluster's cluster.json as this controller last left it.
    let mut own: BTreeMap<Name, Option<Rev>> = BTreeMap::new();
    let mut store_down: Option<Duration> = None;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        // Initial ones at once; then those whose burst is over or whose retry is due.
        let due: Vec<Name> = pending
            .iter()
            .filter(|(_, p)| p.first == start && p.retry_at.is_none() || p.due_at() <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            match reconcile_once(home, tools, &name, replace).await {
                Outcome::Done(result, rev) => {
                    let failed = result.is_err();
                    own.insert(name.clone(), rev);
                    if failed {
                        pending.get_mut(&name).expect("due").try_later(Instant::now());
                    } else {
                        pending.remove(&name);
                    }
                    report(Report::Reconciled(name, result));
                }
                Outcome::Busy(holder) => {
                    pending.get_mut(&name).expect("due").try_later(Instant::now());
                    report(Report::Busy(name, holder));
                }
                Outcome::Gone => {
                    pending.remove(&name);
                    own.remove(&name);
                }
                Outcome::Elsewhere(e) => {
                    // Said once per change, not tried again: only its lab's machine can act.
                    pending.remove(&name);
                    report(Report::Reconciled(name, Err(e)));
                }
            }
        }
        // Wait for changes until the next cluster is due, the stop flag's next look, or the
        // store's next try.
        let next_due = pending.values().map(Pending::due_at).min();
        let mut wait = next_due.map_or(TICK, |d| d.saturating_duration_since(Instant::now()).min(TICK));
        if let Some(retry) = store_down {
            wait = wait.max(retry.min(TICK));
        }
        let mut w = watch.take().expect("the watch is put back after each wait");
        let (w, changes) = tokio::task::spawn_blocking(move || {
            let changes = w.next(wait);
            (w, changes)
        })
        .await?;
        watch = Some(w);
        match changes {
            Ok(changes) => {
                if store_down.take().is_some() {
                    report(Report::StoreBack);
                }
                let current = |name: &Name| Ok(home.store.get(&cluster_key(name, "cluster.json"))?.map(|e| e.rev));
                note(&watched, &changes, &own, &mut pending, current);
            }
            Err(error) => {
                let retry = store_down.map_or(RETRY_FIRST, |r| (r * 2).min(RETRY_MAX));
                store_down = Some(retry);
                report(Report::StoreDown { error, retry });
                sleep_unless_stopped(retry, &stop).await;
            }
        }
    }
    Ok(())
}

/// Adds the clusters whose `cluster.json` someone else changed to `pending`. A change is
/// someone else's unless the value there now is still the one this controller left: a
/// reconcile may write it more than once, and etcd reports each write, the earlier ones with
/// revisions of their own. `current` reads the revision there now (`None`: gone; an error
/// counts as a change: the reconcile will say what is wrong).
fn note(
    watched: &Watched,
    changes: &[Change],
    own: &BTreeMap<Name, Option<Rev>>,
    pending: &mut BTreeMap<Name, Pending>,
    current: impl Fn(&Name) -> Result<Option<Rev>, StoreError>,
) {
    let now = Instant::now();
    let changed: BTreeSet<Name> = changes.iter().filter_map(|c| watched.cluster_of(&c.key)).collect();
    for name in changed {
        let rev = match current(&name) {
            Ok(None) => {
                // Destroyed: nothing left to reconcile.
                pending.remove(&name);
                continue;
            }
            Ok(rev) => rev,
            Err(_) => None,
        };
        if rev.is_some() && own.get(&name) == Some(&rev) {
            continue;
        }
        pending.entry(name).and_modify(|p| p.last = now).or_insert_with(|| Pending::new(now));
    }
}

enum Outcome {
    /// Reconciled (or failed), and the revision of cluster.json it left.
    Done(anyhow::Result<PlanReconciled>, Option<Rev>),
    Busy(Holder),
    /// The cluster has no state (destroyed meanwhile).
    Gone,
    /// A local-cloud cluster of another machine's lab (`lab_home`): not this one's to act on.
    Elsewhere(anyhow::Error),
}

/// One reconcile of `name` under its lock; the revision of its cluster.json read before the
/// lock goes.
async fn reconcile_once(home: &Home, tools: &Tools, name: &Name, replace: bool) -> Outcome {
    // Before its lock: another machine's local-cloud cluster is left to that machine (a
    // state that does not parse is said by the reconcile itself).
    if let Ok(Some(entry)) = home.store.get(&cluster_key(name, "cluster.json"))
        && let Ok(state) = serde_json::from_slice::<ClusterState>(&entry.value)
        && let Err(e) = state.check_lab_home()
    {
        return Outcome::Elsewhere(e);
    }
    let holder = Holder::here(format!("reconcile --watch {name}"));
    let guard: ClusterLock = match home.store.lock(&cluster_prefix(name), &holder, LOCK_TTL, Wait::No) {
        Ok(guard) => guard.into(),
        Err(StoreError::Held { holder, .. }) => return Outcome::Busy(holder),
        Err(e) => return Outcome::Done(Err(e.into()), None),
    };
    let state_key = cluster_key(name, "cluster.json");
    match home.store.get(&state_key) {
        Ok(None) => return Outcome::Gone,
        Ok(Some(_)) => {}
        Err(e) => return Outcome::Done(Err(e.into()), None),
    }
    let result = crate::cluster::reconcile_locked(home, tools, name, replace, &guard).await;
    let rev = home.store.get(&state_key).ok().flatten().map(|e| e.rev);
    drop(guard);
    Outcome::Done(result, rev)
}

async fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        tokio::time::sleep(until.saturating_duration_since(Instant::now()).min(TICK)).await;
    }
}

/// A flag set by SIGTERM or SIGINT (the first of either), for [`watch`]'s `stop`.
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let stop = Arc::new(AtomicBool::new(false));
    let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    let flag = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        flag.store(true, Ordering::SeqCst);
    });
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::new(s).unwrap()
    }

    #[test]
    fn only_cluster_records_of_watched_clusters_count() {
        let every = Watched { names: BTreeSet::new() };
        let zk = Watched { names: ["zk".parse().unwrap()].into() };
        assert_eq!(every.cluster_of(&key("plans/pg/cluster.json")), Some("pg".parse().unwrap()));
        assert_eq!(zk.cluster_of(&key("plans/pg/cluster.json")), None);
        assert_eq!(zk.cluster_of(&key("plans/zk/cluster.json")), Some("zk".parse().unwrap()));
        for other in ["plans/zk/events.jsonl", "plans/zk/files/cluster.json", "plans/zk/plan.yaml"] {
            assert_eq!(every.cluster_of(&key(other)), None, "{other}");
        }
    }

    #[test]
    fn own_writes_are_not_news_and_bursts_wait_for_quiet() {
        let watched = Watched { names: BTreeSet::new() };
        let zk: Name = "zk".parse().unwrap();
        let own = BTreeMap::from([(zk.clone(), Some(Rev(7)))]);
        let mut pending = BTreeMap::new();
        let change = |rev| Change { key: key("plans/zk/cluster.json"), rev };
        let now_at = |rev: u64| move |_: &Name| Ok(Some(Rev(rev)));
        // Its own writes (an earlier one reported too): the value there now is its last.
        note(&watched, &[change(Some(Rev(6))), change(Some(Rev(7)))], &own, &mut pending, now_at(7));
        assert!(pending.is_empty(), "its own write");
        note(&watched, &[change(Some(Rev(8)))], &own, &mut pending, now_at(8));
        let first = pending[&zk].due_at();
        assert!(first <= Instant::now() + QUIET);
        std::thread::sleep(Duration::from_millis(20));
        note(&watched, &[change(Some(Rev(9)))], &own, &mut pending, now_at(9));
        assert!(pending[&zk].due_at() > first, "a change in the burst puts it off");
        // Never beyond MAX_DELAY after the first.
        let p = pending.get_mut(&zk).unwrap();
        p.last = p.first + MAX_DELAY;
        assert_eq!(p.due_at(), p.first + MAX_DELAY);
        // A store that does not answer: a change (the reconcile says what is wrong).
        let mut other = BTreeMap::new();
        let down = |_: &Name| Err(StoreError::Unreachable { store: "etcd://x".into(), detail: "down".into() });
        note(&watched, &[change(Some(Rev(7)))], &own, &mut other, down);
        assert!(other.contains_key(&zk));
        // Destroyed: forgotten.
        note(&watched, &[change(None)], &own, &mut pending, |_: &Name| Ok(None));
        assert!(pending.is_empty());
    }

    #[test]
    fn retries_back_off_to_a_bound() {
        let now = Instant::now();
        let mut p = Pending::new(now);
        let mut waits = Vec::new();
        for _ in 0..8 {
            p.try_later(now);
            waits.push(p.retry_at.unwrap() - now);
        }
        assert_eq!(waits[0], RETRY_FIRST);
        assert_eq!(waits[1], RETRY_FIRST * 2);
        assert_eq!(*waits.last().unwrap(), RETRY_MAX);
    }

    /// A cluster on another machine's local cloud is left alone, said once, and not retried
    /// (its state written as `create` on that machine would).
    #[tokio::test]
    async fn another_machines_local_cloud_cluster_is_not_reconciled_here() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::local(dir.path());
        let tools = Tools { bin_dir: dir.path().to_path_buf() };
        let name: Name = "zk".parse().unwrap();
        let state = serde_json::json!({
            "name": "zk", "source": "p.yaml", "provider": "local", "parameters": {},
            "lab_home": {"machine": "machine-id:elsewhere", "lab": "lct"},
        });
        let file = dir.path().join("plans/zk/cluster.json");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, serde_json::to_vec(&state).unwrap()).unwrap();
        match reconcile_once(&home, &tools, &name, true).await {
            Outcome::Elsewhere(e) => {
                let e = e.to_string();
                assert!(e.contains("cluster zk is on the local cloud of machine machine-id:elsewhere"), "{e}");
            }
            _ => panic!("reconciled another machine's cluster"),
        }
    }
}
