//! `lct-mesh`: a WireGuard mesh across regions, planned from the inventory, on the command line.

use std::collections::BTreeSet;
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use ipnet::Ipv4Net;
use lct_core::cli::OutputFormat;
use lct_core::record::{Cluster, Name, Node};
use lct_core::state::ClusterStore;
use lct_core::stream;
use lct_core::table::emit;
use lct_mesh::cli::{Cli, Command, Reach};
use lct_mesh::model::{MeshConfig, SyncStatus, Topology};
use lct_mesh::{follow, graph, node, remote, state::MeshState};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run_async("lct-mesh", run(cli))
}

fn options(
    reach: &Reach,
    prefix: Option<Ipv4Net>,
    topology: Option<Topology>,
    port: Option<u16>,
    full: bool,
) -> anyhow::Result<remote::Options> {
    Ok(remote::Options {
        store: lct_core::store::open()?,
        prefix,
        topology,
        port,
        parallel: reach.parallel,
        timeout: Duration::from_secs(reach.timeout),
        full,
        local_bin: std::env::current_exe().context("where is lct-mesh?")?,
        remote_bin: reach.remote_bin.clone(),
    })
}

/// The node records piped in, or (nothing piped) the inventory's.
async fn nodes(reach: &Reach) -> anyhow::Result<Vec<Node>> {
    if !io::stdin().is_terminal() {
        let mut text = String::new();
        io::stdin().lock().read_to_string(&mut text).context("stdin")?;
        if !text.trim().is_empty() {
            let (nodes, _) = stream::read_kind::<Node>(text.as_bytes()).context("stdin")?;
            return Ok(nodes);
        }
    }
    inventory(reach).await
}

async fn inventory(reach: &Reach) -> anyhow::Result<Vec<Node>> {
    // The store's cluster records (a shared store's too: its controllers see one inventory).
    query(reach, &ClusterStore::open()?.load()?).await
}

async fn query(reach: &Reach, clusters: &[Cluster]) -> anyhow::Result<Vec<Node>> {
    let selector = lct_inventory::Selector { providers: reach.providers.clone(), ..Default::default() };
    Ok(lct_inventory::query(&selector, clusters).await?)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.global.output();
    match cli.command {
        Command::Sync { prefix, topology, port, full, reach } => {
            let nodes = nodes(&reach).await?;
            let reports = remote::sync(&nodes, &options(&reach, prefix, topology, port, full)?).await?;
            emit(&reports, format)?;
            let failed: Vec<String> = reports
                .iter()
                .filter(|r| r.status == SyncStatus::Failed)
                .map(|r| format!("{} ({})", r.node, r.error.as_deref().unwrap_or("failed")))
                .collect();
            if !failed.is_empty() {
                bail!("sync failed on {} of {} nodes: {}", failed.len(), reports.len(), failed.join(", "));
            }
            Ok(())
        }
        Command::Watch { interval, verify_every, records, lct_fw, reach } => {
            let mut options = options(&reach, None, None, None, false)?;
            let exe = std::env::current_exe().context("where is lct-mesh?")?;
            let lct_fw = follow::lct_fw_program(lct_fw.as_deref(), &exe)?;
            let mut follower = follow::Follower::new(lct_fw, reach.providers.clone());
            let mut round = 0u64;
            loop {
                // The first round verifies too: whatever happened before the watch started.
                options.full = round.is_multiple_of(verify_every);
                round = round.wrapping_add(1);
                if let Err(e) = watch_round(&reach, records.as_deref(), &options, &mut follower, format).await {
                    tracing::error!("{e:#}");
                }
                tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
            }
        }
        Command::Status { reach } => {
            let nodes = nodes(&reach).await?;
            let (peers, problems) = remote::status(&nodes, &options(&reach, None, None, None, false)?).await?;
            emit(&peers, format)?;
            if !problems.is_empty() {
                bail!("status failed on: {}", problems.join(", "));
            }
            Ok(())
        }
        Command::Graph { format: picture, offline, reach } => {
            let (state, _) =
                MeshState::load(lct_core::store::open()?.as_ref())?.context("no mesh yet: lct-mesh sync first")?;
            let peers = if offline {
                Vec::new()
            } else {
                let nodes = nodes(&reach).await?;
                let (peers, problems) = remote::status(&nodes, &options(&reach, None, None, None, false)?).await?;
                if !problems.is_empty() {
                    tracing::warn!("no status from: {}", problems.join(", "));
                }
                peers
            };
            let text = graph::dot(&state, &peers, now());
            let bytes = if picture == "svg" { svg(&text)? } else { text.into_bytes() };
            io::stdout().write_all(&bytes)?;
            Ok(())
        }
        Command::Down { reach } => {
            let nodes = nodes(&reach).await?;
            let problems = remote::down(&nodes, &options(&reach, None, None, None, false)?).await?;
            if !problems.is_empty() {
                bail!("down failed on: {}", problems.join(", "));
            }
            Ok(())
        }
        Command::Apply { key, interface } => {
            let applied = if key {
                let interface = interface.context("--key needs --interface")?;
                let k = node::ensure_key(&interface)?;
                node::ensure_interface(&interface)?;
                k
            } else {
                let (mut configs, _) = stream::read_kind::<MeshConfig>(io::stdin().lock()).context("stdin")?;
                let config = configs.pop().context("stdin: no mesh-config record")?;
                node::apply(&config)?
            };
            println!("{}", stream::to_line(&applied));
            Ok(())
        }
        Command::Peers { interface, node: name } => {
            let peers = node::peers(&name, &interface)?;
            emit(&peers, if format == OutputFormat::Table { OutputFormat::Table } else { OutputFormat::Jsonl })?;
            Ok(())
        }
        Command::DownHere { interface } => Ok(node::down(&interface)?),
        Command::Meta(meta) => meta.run::<Cli>(),
    }
}

/// One round of `watch`: the node records (from `records`, else the inventory), a sync, lct-fw
/// pushed to the clusters whose firewalls the mesh made stale (`mesh-sync`'s reach: a new
/// leader's default-deny table, and its peers', admit its WireGuard within the round), then
/// the changes printed (a quiet mesh prints nothing).
async fn watch_round(
    reach: &Reach,
    records: Option<&Path>,
    options: &remote::Options,
    follower: &mut follow::Follower,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let clusters = ClusterStore::open()?.load()?;
    let nodes = match records {
        Some(file) => {
            let bytes = std::fs::read(file).with_context(|| file.display().to_string())?;
            stream::read_kind::<Node>(&bytes[..]).context(file.display().to_string())?.0
        }
        None => query(reach, &clusters).await?,
    };
    let mut reports = remote::sync(&nodes, options).await.context("sync")?;
    match follower.after_sync(&mut reports, &nodes, &clusters) {
        Ok(pushed) if pushed.is_empty() => {}
        // At the level the sync said they were stale: the one answers the other.
        Ok(pushed) => tracing::warn!("lct-fw pushed after the mesh changed: {}", joined(&pushed)),
        Err(e) => tracing::error!("lct-fw push (tried again next round): {e}"),
    }
    let changed: Vec<_> =
        reports.into_iter().filter(|r| r.status != SyncStatus::Unchanged || r.firewall_stale).collect();
    emit(&changed, format)?;
    Ok(())
}

fn joined(names: &BTreeSet<Name>) -> String {
    names.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// SVG through Graphviz's dot.
fn svg(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("dot (Graphviz) is needed for --format svg; install graphviz, or use the DOT output")?;
    child.stdin.take().expect("piped").write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("dot -Tsvg failed");
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
