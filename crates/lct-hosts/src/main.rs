//! `lct-hosts`: render, apply and push host entries on the command line.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use lct_core::cli::{GlobalArgs, MetaCommand, OutputFormat, UsageError};
use lct_core::record::{Name, ProviderName};
use lct_core::state::ClusterStore;
use lct_core::stream;
use lct_core::table::emit;
use lct_hosts::args::Naming;
use lct_hosts::input::Input;
use lct_hosts::{ApplyOutcome, PushStatus, WriteMode, apply, plan, push, render, render_blocks};
use lct_inventory::exec::ExecOptions;
use lct_inventory::{Selector, query};

const EXAMPLES: &str = "\
Examples:
  # The hosts lines of a cluster, for review
  lct-inventory query --cluster zk | lct-hosts render --format hosts

  # Keep this machine's /etc/hosts in step (a managed block per cluster)
  lct-inventory query --cluster zk | lct-hosts apply
  lct-inventory query --cluster zk | lct-hosts apply --check --diff   # cron / review
  lct-hosts apply --remove zk

  # Every node of zk and of the clusters that depend on it
  lct-hosts push --cluster zk

  # Public addresses too, named NODE.public
  lct-inventory query --cluster web | lct-hosts render --public --format hosts

Exit status: 0 success, 1 failure (apply --check: a change is due; push: a node failed, each
named), 2 usage error. Environment: LCT_STATE_DIR (cluster records: domains, dependencies).";

/// /etc/hosts for lct clusters: render node records as hosts entries, keep a managed block
/// per cluster in a hosts file, and push them to every node that needs them.
#[derive(Parser)]
#[command(name = "lct-hosts", version, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Node records in, host-entry records (or hosts-file lines) out; other lines pass through
    Render {
        /// hosts: hosts-file text instead of records
        #[arg(long, value_enum)]
        format: Option<Format>,
        #[command(flatten)]
        naming: Naming,
    },
    /// Write the managed blocks of the clusters on stdin (host-entry or node records)
    Apply {
        /// The hosts file
        #[arg(long, default_value = "/etc/hosts")]
        file: PathBuf,
        /// Also (re)write this cluster's block when the input has no entry of it: it empties
        #[arg(long = "cluster", value_name = "CLUSTER")]
        clusters: Vec<Name>,
        /// Delete this cluster's block (repeatable)
        #[arg(long = "remove", value_name = "CLUSTER")]
        remove: Vec<Name>,
        /// Change nothing; exit 1 if the file would change
        #[arg(long)]
        check: bool,
        /// Print the lines that change
        #[arg(long)]
        diff: bool,
        /// Always rewrite in place (keep the inode), e.g. for a file bind-mounted elsewhere
        #[arg(long, conflicts_with = "check")]
        in_place: bool,
        #[command(flatten)]
        naming: Naming,
    },
    /// Render once from the inventory and apply on every node of the clusters and their dependents
    Push {
        /// The clusters whose blocks to push (repeatable) [default: all]
        #[arg(long = "cluster", short = 'c', value_name = "CLUSTER")]
        clusters: Vec<Name>,
        /// Providers to ask (repeatable)
        #[arg(long = "provider", short = 'p', value_enum, long_help = lct_inventory::providers_long_help())]
        providers: Vec<ProviderName>,
        /// The hosts file on the nodes
        #[arg(long, default_value = "/etc/hosts")]
        file: String,
        /// How many nodes at once
        #[arg(long, default_value_t = 32)]
        parallel: usize,
        /// Give up on a node after this many seconds
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// lct-hosts on remote (ssh) nodes
        #[arg(long, default_value = "lct-hosts")]
        remote_bin: String,
        #[command(flatten)]
        naming: Naming,
    },
    #[command(flatten)]
    Meta(MetaCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// host-entry records
    Jsonl,
    /// hosts-file lines
    Hosts,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run_async("lct-hosts", run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.global.output();
    match cli.command {
        Command::Render { format: text_format, naming } => {
            let options = naming.options()?;
            let jsonl = matches!((text_format, format), (Some(Format::Jsonl), _) | (None, OutputFormat::Jsonl));
            let input = Input::read(io::stdin().lock(), &ClusterStore::open()?, jsonl)?;
            if let Some(Format::Hosts) = text_format {
                let mut out = io::stdout().lock();
                for text in render_blocks(&input.nodes, &input.clusters, &options)?.values() {
                    out.write_all(text.as_bytes())?;
                }
                out.flush()?;
            } else {
                let entries = render(&input.nodes, &input.clusters, &options)?;
                match jsonl {
                    true => input.write_through(&entries, io::stdout().lock())?,
                    false => emit(&entries, OutputFormat::Table)?,
                }
            }
            // Freeing 100,000 members one by one costs milliseconds, just before the
            // process ends and the memory goes anyway.
            std::mem::forget(input);
            Ok(())
        }
        Command::Apply { file, clusters, remove, check, diff, in_place, naming } => {
            let options = naming.options()?;
            let mut changes: BTreeMap<Name, String> = BTreeMap::new();
            if !io::stdin().is_terminal() {
                let input = Input::read(io::stdin().lock(), &ClusterStore::open()?, false)?;
                changes = input.blocks(&options)?;
                std::mem::forget(input); // as in render
            } else if remove.is_empty() {
                return Err(UsageError("pipe host-entry or node records, or give --remove".into()).into());
            }
            for c in clusters {
                changes.entry(c).or_default();
            }
            for c in remove {
                if changes.get(&c).is_some_and(|t| !t.is_empty()) {
                    return Err(UsageError(format!("cluster {c} is both given entries and --remove'd")).into());
                }
                changes.insert(c, String::new());
            }
            if changes.is_empty() {
                tracing::warn!("no entries and no clusters: nothing to apply");
                return Ok(());
            }
            let mode = match (check, in_place) {
                (true, _) => WriteMode::Check,
                (false, true) => WriteMode::InPlace,
                (false, false) => WriteMode::Auto,
            };
            let report = apply(&file, &changes, mode, diff)?;
            if diff {
                io::stdout().write_all(report.diff.as_bytes())?;
            }
            if format == OutputFormat::Jsonl && !diff {
                println!("{}", stream::to_line(&report));
            } else {
                let what = match report.outcome {
                    ApplyOutcome::Unchanged => "unchanged",
                    ApplyOutcome::Replaced => "updated",
                    ApplyOutcome::WrittenInPlace => "updated in place",
                    ApplyOutcome::WouldChange => "would change",
                };
                eprintln!("{}: {what}", report.file);
            }
            if report.outcome == ApplyOutcome::WouldChange {
                bail!("{} is not up to date", report.file);
            }
            Ok(())
        }
        Command::Push { clusters, providers, file, parallel, timeout, remote_bin, naming } => {
            let options = naming.options()?;
            let records = ClusterStore::open()?.load()?;
            let nodes = query(&Selector { providers, ..Default::default() }, &records).await?;
            let selected: BTreeSet<Name> = if clusters.is_empty() {
                nodes.iter().map(|n| n.cluster.clone()).chain(records.iter().map(|c| c.name.clone())).collect()
            } else {
                lct_inventory::say_unknown_clusters(&clusters, &nodes, &records);
                clusters.into_iter().collect()
            };
            // Nodes of other regions by their mesh addresses where both ends are members.
            let mesh = lct_mesh::addresses(lct_core::store::open()?.as_ref())?;
            let work = plan(&nodes, &records, &selected, &options, &mesh)?;
            let local_bin = std::env::current_exe().context("where is lct-hosts?")?;
            let exec = ExecOptions { parallel, timeout: Some(Duration::from_secs(timeout)), ..Default::default() };
            let reports = push(work, &file, &local_bin, &remote_bin, &exec).await;
            emit(&reports, format)?;
            let failed: Vec<String> = reports
                .iter()
                .filter(|r| r.status == PushStatus::Failed)
                .map(|r| format!("{} ({})", r.node, r.error.as_deref().unwrap_or("failed")))
                .collect();
            if !failed.is_empty() {
                bail!("push failed on {} of {} nodes: {}", failed.len(), reports.len(), failed.join(", "));
            }
            Ok(())
        }
        Command::Meta(meta) => meta.run::<Cli>(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
