//! Making many nodes: the one policy every tool follows. At most a bounded number are in
//! the making at once, in the order the provider wants ([`CreateOrder`]): the local cloud
//! makes them one at a time in input order (demo-1 gets .1) and lets them boot side by
//! side; Linode makes them side by side, its rate limits pacing the requests.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lct_core::record::{Name, Node, NodeSpec};

use crate::provider::{CreateOrder, Provider, ProviderError};

/// How many nodes may be in the making at once by default (where the provider allows more
/// than one).
pub const DEFAULT_PARALLEL: usize = 32;

/// How [`create_many`] goes about it.
#[derive(Debug, Clone, Copy)]
pub struct CreateMany {
    /// At most this many in the making at once (where the provider makes them side by side).
    pub parallel: usize,
    /// Wait until each is ready for work ([`Provider::wait_ready`]) before it counts as made.
    pub wait_ready: bool,
}

impl Default for CreateMany {
    fn default() -> Self {
        CreateMany { parallel: DEFAULT_PARALLEL, wait_ready: true }
    }
}

/// One node's outcome.
pub type Made = (NodeSpec, Result<Node, ProviderError>);

/// Creates the nodes of `specs` as `provider`'s [`CreateOrder`] says, bounded by
/// `how.parallel`; `on_done` hears each outcome as it comes (so records can stream out as
/// nodes are ready). Every outcome is returned, in the order they came.
pub async fn create_many<P: Provider>(
    provider: &P,
    specs: Vec<NodeSpec>,
    how: CreateMany,
    mut on_done: impl FnMut(&Made),
) -> Vec<Made> {
    let total = specs.len();
    // Every spec is checked before any node is made: one refused (a region the provider does
    // not have) and none is made, the others told why, so nothing is left half made.
    let checks = provider.check_specs(&specs).await;
    let refused: Vec<String> = specs
        .iter()
        .zip(&checks)
        .filter_map(|(spec, check)| check.as_ref().err().map(|e| format!("{}: {e}", spec.name)))
        .collect();
    if !refused.is_empty() {
        let why = refused.join("; ");
        let outcomes = specs.into_iter().zip(checks).map(|(spec, check)| {
            let error = match check {
                Err(e) => e,
                Ok(()) => ProviderError::Invalid(format!("not made: another node of this create was refused ({why})")),
            };
            (spec, Err(error))
        });
        return outcomes.inspect(|made| on_done(made)).collect();
    }
    // A provider that makes many nodes in one step (the local cloud: one hold of its lock)
    // does; then all are waited for side by side.
    if let Some(outcomes) = provider.create_batch(&specs).await {
        return wait_all(provider, specs, outcomes, how, on_done).await;
    }
    let serial = provider.create_order() == CreateOrder::InOrder;
    let parallel = if serial { total.max(1) } else { how.parallel.max(1) };
    let gate = Arc::new(tokio::sync::Mutex::new(()));
    let mut specs = specs.into_iter().peekable();
    let mut tasks = FuturesUnordered::new();
    let mut done = Vec::with_capacity(total);
    let mut finish = |made: Made, done: &mut Vec<Made>| {
        on_done(&made);
        done.push(made);
    };
    loop {
        if specs.peek().is_some() && tasks.len() < parallel {
            // The next create may start once the previous one has (in order) or at once.
            let permit = if serial {
                tokio::select! {
                    biased;
                    Some(made) = tasks.next(), if !tasks.is_empty() => {
                        finish(made, &mut done);
                        continue;
                    }
                    permit = gate.clone().lock_owned() => Some(permit),
                }
            } else {
                None
            };
            let spec = specs.next().expect("peeked");
            tasks.push(async move {
                let result = provider.create(&spec).await;
                drop(permit);
                let result = match result {
                    Ok(node) if how.wait_ready => provider.wait_ready(node).await,
                    other => other,
                };
                (spec, result)
            });
        } else if let Some(made) = tasks.next().await {
            finish(made, &mut done);
        } else {
            break;
        }
    }
    done
}

/// Waits for each node a batch made (where `how` asks for it), all at once; `on_done` hears
/// each outcome as it comes.
async fn wait_all<P: Provider>(
    provider: &P,
    specs: Vec<NodeSpec>,
    outcomes: Vec<Result<Node, ProviderError>>,
    how: CreateMany,
    mut on_done: impl FnMut(&Made),
) -> Vec<Made> {
    let mut done = Vec::with_capacity(specs.len());
    let mut tasks: FuturesUnordered<_> = specs
        .into_iter()
        .zip(outcomes)
        .map(|(spec, made)| async move {
            let result = match made {
                Ok(node) if how.wait_ready => provider.wait_ready(node).await,
                other => other,
            };
            (spec, result)
        })
        .collect();
    while let Some(made) = tasks.next().await {
        on_done(&made);
        done.push(made);
    }
    done
}

/// The names of `count` new nodes of `group` in `cluster`: CLUSTER-1 ... CLUSTER-N, or
/// CLUSTER-GROUP-1 ... when the group is not the default `node`.
pub fn numbered(cluster: &Name, group: &Name, count: u32) -> Result<Vec<Name>, String> {
    (1..=count)
        .map(|i| {
            let name =
                if group.as_str() == "node" { format!("{cluster}-{i}") } else { format!("{cluster}-{group}-{i}") };
            name.parse::<Name>().map_err(|e| e.to_string())
        })
        .collect()
}
