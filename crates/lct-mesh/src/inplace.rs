//! The node's side run by the controller itself for namespace nodes: a thread of this process
//! enters the node's network namespace (setns, as `lct-fw push` does) and does there what
//! `lct-mesh apply` would (the `ip`, `wg` and `nft` it runs are started from that thread, so
//! they are the namespace's too). That saves `ip netns exec` and a second lct-mesh per node:
//! most of a small sync. Remote nodes still get lct-mesh over lct-inventory's exec; both kinds
//! of answer come back as [`ExecResult`]s, read the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lct_core::record::{Access, Node};
use lct_core::stream;
use lct_inventory::exec::{ExecOptions, ExecResult, Outcome, exec_each};
use tokio::sync::Semaphore;

use crate::MeshError;
use crate::model::{MeshApplied, MeshConfig};

/// What one node is asked to do.
#[derive(Debug, Clone)]
pub enum Work {
    /// Its key made if it has none (reported), its interface up: `apply --key`.
    Key { interface: String },
    /// Brought to this configuration: `apply` with the record on stdin.
    Apply(MeshConfig),
}

impl Work {
    /// `lct-mesh`'s arguments and stdin for this work on a remote node.
    fn remote(&self, bin: &str) -> (Vec<String>, Vec<u8>) {
        let args: Vec<&str> = match self {
            Work::Key { interface } => vec!["apply", "--key", "--interface", interface, "-o", "jsonl"],
            Work::Apply(_) => vec!["apply", "-o", "jsonl"],
        };
        let input = match self {
            Work::Key { .. } => Vec::new(),
            Work::Apply(config) => format!("{}\n", stream::to_line(config)).into_bytes(),
        };
        (std::iter::once(bin).chain(args).map(String::from).collect(), input)
    }

    /// Does it here, in whatever network namespace this thread is in.
    fn here(&self) -> Result<MeshApplied, MeshError> {
        match self {
            Work::Key { interface } => {
                let key = crate::node::ensure_key(interface)?;
                crate::node::ensure_interface(interface)?;
                Ok(key)
            }
            Work::Apply(config) => crate::node::apply(config),
        }
    }
}

/// Every job, `options.parallel` at a time: namespace nodes from a thread in their namespace,
/// the others by `remote_bin` over exec. A namespace node's work that outlasts the timeout is
/// reported as timed out (its thread is left to finish: a program it waits for is local).
pub async fn run_each(jobs: Vec<(Node, Work)>, options: &ExecOptions, remote_bin: &str) -> Vec<ExecResult> {
    let (local, remote): (Vec<_>, Vec<_>) =
        jobs.into_iter().partition(|(n, _)| matches!(n.access, Some(Access::Netns { .. })));
    let remote_jobs = remote
        .into_iter()
        .map(|(node, work)| {
            let (argv, input) = work.remote(remote_bin);
            (node, argv, input)
        })
        .collect();
    let permits = Arc::new(Semaphore::new(options.parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (node, work) in local {
        let permits = permits.clone();
        let timeout = options.timeout;
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore is never closed");
            in_namespace(node, work, timeout).await
        });
    }
    let mut results = exec_each(remote_jobs, options, None).await;
    while let Some(done) = tasks.join_next().await {
        results.push(done.expect("a namespace job does not panic: its errors are results"));
    }
    results
}

/// One namespace node's work on a blocking thread that enters its namespace.
async fn in_namespace(node: Node, work: Work, timeout: Option<Duration>) -> ExecResult {
    let Some(Access::Netns { netns }) = node.access.clone() else { unreachable!("namespace nodes only") };
    let started = Instant::now();
    let job = tokio::task::spawn_blocking(move || {
        lct_core::state::in_netns(&netns, || work.here()).map_err(|e| MeshError::Node(e.to_string())).and_then(|r| r)
    });
    let done = match timeout {
        Some(t) => tokio::time::timeout(t, job).await.ok(),
        None => Some(job.await),
    };
    let (outcome, stdout, stderr) = match done {
        None => (Outcome::TimedOut, String::new(), String::new()),
        Some(Err(e)) => (Outcome::NotStarted { reason: e.to_string() }, String::new(), String::new()),
        Some(Ok(Ok(applied))) => {
            (Outcome::Exited { code: 0 }, format!("{}\n", stream::to_line(&applied)), String::new())
        }
        Some(Ok(Err(e))) => (Outcome::Exited { code: 1 }, String::new(), format!("lct-mesh: {e}\n")),
    };
    ExecResult {
        node: node.name.clone(),
        cluster: node.cluster.clone(),
        outcome,
        stdout,
        stderr,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}
