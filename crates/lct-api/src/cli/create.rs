//! `lct-api create`: the node specs from flags or from node-spec lines on stdin, and the
//! clusters' records told where their nodes now are.

use std::collections::BTreeSet;
use std::io::{self, IsTerminal};

use anyhow::{Context, bail};
use lct_core::cli::UsageError;
use lct_core::record::{Name, Node, NodeSpec, ProviderName};
use lct_core::stream;

/// What `create`'s flags say about the nodes (all but `--parallel`).
pub struct SpecFlags {
    pub cluster: Option<Name>,
    pub group: Name,
    pub count: Option<u32>,
    pub names: Vec<Name>,
    pub tags: Vec<String>,
    pub region: Option<String>,
    pub node_type: Option<String>,
    pub image: Option<String>,
    pub user_data: Option<std::path::PathBuf>,
}

/// The nodes to make: from the flags (with `--cluster`), else node-spec lines on stdin.
pub fn specs(flags: SpecFlags) -> anyhow::Result<Vec<NodeSpec>> {
    let user_data = match flags.user_data {
        Some(path) => Some(std::fs::read_to_string(&path).with_context(|| format!("--user-data {}", path.display()))?),
        None => None,
    };
    let Some(cluster) = flags.cluster else {
        if io::stdin().is_terminal() {
            return Err(UsageError("give --cluster with --count or --name, or pipe node-spec records".into()).into());
        }
        return read_specs();
    };
    let names = match flags.count {
        Some(n) => crate::create::numbered(&cluster, &flags.group, n)
            .map_err(|e| UsageError(format!("--count: generated {e}")))?,
        None => flags.names,
    };
    Ok(names
        .into_iter()
        .map(|name| NodeSpec {
            cluster: cluster.clone(),
            group: flags.group.clone(),
            name,
            region: flags.region.clone(),
            node_type: flags.node_type.clone(),
            image: flags.image.clone(),
            tags: flags.tags.clone(),
            user_data: user_data.clone(),
        })
        .collect())
}

/// Makes every image the specs name ready before any node is made (an lct image found,
/// checked whole and prepared once): a bad image fails here, with nothing made.
pub async fn prepare_images<P: crate::Provider>(provider: &P, specs: &[NodeSpec]) -> anyhow::Result<()> {
    let images: BTreeSet<&str> = specs.iter().filter_map(|s| s.image.as_deref()).collect();
    for image in images {
        provider.prepare_image(image, None).await.with_context(|| format!("image {image}"))?;
    }
    Ok(())
}

fn read_specs() -> anyhow::Result<Vec<NodeSpec>> {
    let (specs, others) = stream::read_kind::<NodeSpec>(io::stdin().lock()).context("stdin")?;
    if let Some(other) = others.first() {
        bail!("stdin: line {}: kind {:?} is not a node-spec", other.number, other.kind);
    }
    Ok(specs)
}

/// The clusters' records remember where their nodes are: queries by cluster find them
/// without --provider. A failure is a warning: the nodes are made.
pub async fn remember(created: &[Node], provider: ProviderName) {
    let clusters: BTreeSet<Name> = created.iter().map(|n| n.cluster.clone()).collect();
    let store = match lct_core::state::ClusterStore::open() {
        Ok(store) => store,
        Err(e) => {
            tracing::warn!(
                "the cluster records do not say these nodes are on {provider} ({e}): queries by cluster need --provider {provider}"
            );
            return;
        }
    };
    match crate::remember_provider(&store, &clusters, provider).await {
        Ok(changed) => {
            for c in changed {
                let on: Vec<&str> = c.providers().iter().map(|p| p.as_str()).collect();
                tracing::info!(cluster = %c.name, "its record says its nodes are on {}", on.join(", "));
            }
        }
        Err(e) => tracing::warn!(
            "{path}: the cluster records do not say these nodes are on {p} ({e}): queries by cluster need --provider {p}",
            path = store.describe(),
            p = provider
        ),
    }
}

/// The nodes to act on (`start`, `stop`, `delete`): none when names are given, else the node
/// records piped in.
pub fn piped_nodes(names_given: bool, verb: &str) -> anyhow::Result<Vec<Node>> {
    if names_given {
        return Ok(Vec::new());
    }
    if io::stdin().is_terminal() {
        return Err(UsageError("name the nodes, or pipe node records".into()).into());
    }
    let (nodes, _) = stream::read_kind::<Node>(io::stdin().lock()).context("stdin")?;
    if nodes.is_empty() {
        tracing::warn!("no node records on stdin; nothing to {verb}");
    }
    Ok(nodes)
}

/// A bar of nodes running on a terminal (cron and pipes see none): a bulk create takes
/// minutes on Linode.
pub fn progress_bar(total: usize) -> indicatif::ProgressBar {
    let shown = io::stderr().is_terminal() && total > 1;
    let bar = if shown { indicatif::ProgressBar::new(total as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} nodes running [{elapsed}] {wide_bar} {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
