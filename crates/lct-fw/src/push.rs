//! Push: every running node of the changed clusters, their dependents and their
//! dependencies gets its ruleset, rendered here and applied there by `lct-fw sync` (inside
//! a local node's namespace, over SSH on a remote one). One `fw-sync` record per node.

use std::collections::BTreeSet;
use std::time::Duration;

use lct_core::record::{Access, Cluster, Name, Node, ProviderName, Status};
use lct_core::state::{ClusterStore, StateError, dependencies_of, dependents_of};
use lct_core::stream;
use lct_inventory::exec::{ExecOptions, exec_each};

use crate::report::{SyncOutcome, SyncReport};
use crate::ruleset::{RulesetError, for_node};
use crate::sync::Backend;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub force: bool,
    pub full: bool,
    pub kill_established: bool,
    pub backend: Backend,
    pub parallel: usize,
    pub timeout: Duration,
    /// lct-fw on this machine (for local nodes) and on remote nodes.
    pub local_bin: String,
    pub remote_bin: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Provider(#[from] lct_api::ProviderError),
    #[error(transparent)]
    Ruleset(#[from] RulesetError),
}

/// `lct-fw push`: the nodes the inventory finds (asking `providers`, every provider the
/// clusters use when empty), pushed for the clusters in `changed` (every cluster with nodes
/// when empty).
pub async fn push_clusters(
    store: &ClusterStore,
    changed: Vec<Name>,
    providers: Vec<ProviderName>,
    options: &PushOptions,
) -> Result<Vec<SyncReport>, PushError> {
    let clusters = store.load()?;
    let nodes = lct_inventory::query(&lct_inventory::Selector { providers, ..Default::default() }, &clusters).await?;
    let changed: BTreeSet<Name> = if changed.is_empty() {
        nodes.iter().map(|n| n.cluster.clone()).collect()
    } else {
        lct_inventory::say_unknown_clusters(&changed, &nodes, &clusters);
        changed.into_iter().collect()
    };
    Ok(push(&nodes, &clusters, &changed, options).await?)
}

/// Renders every affected node's ruleset, then applies them all in parallel. Everything is
/// rendered before anything is applied: one bad declaration or empty set stops the push
/// with every firewall as it was.
pub async fn push(
    nodes: &[Node],
    clusters: &[Cluster],
    changed: &BTreeSet<Name>,
    options: &PushOptions,
) -> Result<Vec<SyncReport>, RulesetError> {
    let mut affected = changed.clone();
    affected.extend(dependents_of(clusters, changed));
    affected.extend(dependencies_of(clusters, changed));
    let mut jobs = Vec::new();
    let mut here = Vec::new();
    let mesh = crate::ruleset::load_mesh()?;
    for node in nodes.iter().filter(|n| affected.contains(&n.cluster) && n.status == Status::Running) {
        let ruleset = for_node(node, nodes, clusters, mesh.as_ref(), options.force)?;
        if let Some(Access::Netns { netns }) = &node.access {
            // A namespace node: applied from a thread that enters its namespace (no process).
            let (netns, name, sync) = (netns.clone(), node.name.clone(), sync_options(options));
            here.push(tokio::task::spawn_blocking(move || {
                sync_in_netns(&netns, name.clone(), ruleset, sync).unwrap_or_else(|e| SyncReport::failed(name, e))
            }));
            continue;
        }
        let bin = match node.access {
            Some(Access::Netns { .. }) => options.local_bin.clone(),
            _ => options.remote_bin.clone(),
        };
        let mut argv = vec![bin, "sync".into(), "--node".into(), node.name.to_string()];
        for (on, flag) in
            [(options.force, "--force"), (options.full, "--full"), (options.kill_established, "--kill-established")]
        {
            if on {
                argv.push(flag.into());
            }
        }
        argv.extend(["--backend".into(), options.backend.as_str().into()]);
        jobs.push((node.clone(), argv, format!("{}\n", stream::to_line(&ruleset)).into_bytes()));
    }
    let exec = ExecOptions { parallel: options.parallel, timeout: Some(options.timeout), ..Default::default() };
    let mut results = exec_each(jobs, &exec, None).await;
    results.sort_by(|a, b| (&a.cluster, &a.node).cmp(&(&b.cluster, &b.node)));
    let mut reports = Vec::new();
    for job in here {
        if let Ok(report) = job.await {
            reports.push(report);
        }
    }
    // One fw-sync record per node: the node's own (among the lines it printed), or one
    // saying why it failed.
    reports.extend(results.iter().map(|r| {
        let own = stream::read_kind::<SyncReport>(r.stdout.as_bytes())
            .ok()
            .and_then(|(reports, _)| reports.into_iter().next())
            .filter(|_| r.outcome.success());
        own.unwrap_or_else(|| {
            let why = r.stderr.trim().lines().last().unwrap_or_default();
            SyncReport::failed(r.node.clone(), format!("{}: {why}", r.outcome.describe()))
        })
    }));
    reports.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(reports)
}

/// What `lct-fw sync` on the node would be told.
fn sync_options(options: &PushOptions) -> crate::sync::SyncOptions {
    crate::sync::SyncOptions {
        full: options.full,
        kill_established: options.kill_established,
        confirm_timeout: None,
        backend: options.backend,
    }
}

/// `lct-fw sync` of a namespace node, done by a thread of this process that enters the
/// node's network namespace (setns) and ends with it: the netlink sockets it opens, the
/// conntrack it runs and the memory of what it applied are the node's.
fn sync_in_netns(
    netns: &str,
    node: Name,
    ruleset: crate::Ruleset,
    options: crate::sync::SyncOptions,
) -> Result<SyncReport, String> {
    lct_core::state::in_netns(netns, || {
        crate::sync::sync_here(node, &ruleset, &options, |_, _| Ok(())).map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?
}

/// The nodes a push failed on, for the error.
pub fn failures(reports: &[SyncReport]) -> Vec<String> {
    reports
        .iter()
        .filter(|r| r.applied == SyncOutcome::Failed)
        .map(|r| format!("{} ({})", r.node, r.error.as_deref().unwrap_or_default()))
        .collect()
}
