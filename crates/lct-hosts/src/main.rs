//! `lct-hosts`: render, apply and push host entries on the command line.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use lct_core::cli::{GlobalArgs, MetaCommand, OutputFormat, UsageError};
use lct_core::record::{Cluster, DomainName, Name, Node, ProviderName};
use lct_core::state::{ClusterStore, state_dir};
use lct_core::stream::{self, Writer};
use lct_core::table::{Tabular, emit};
use lct_hosts::{
    ApplyOutcome, HostEntry, Member, PublicNames, PushStatus, RenderOptions, WriteMode, apply, hosts_text, plan, push,
    render, render_blocks,
};
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

/// Which entries and names.
#[derive(Args, Clone)]
struct Naming {
    /// Entries for public addresses too (named NODE.public unless --public-domain); a
    /// cluster whose record has `names` (a plan's) gets what that says instead
    #[arg(long)]
    public: bool,
    /// Name public entries NODE.SUFFIX
    #[arg(long, value_name = "SUFFIX", default_value = "public")]
    public_suffix: Name,
    /// Name public entries NODE.DOMAIN instead
    #[arg(long, value_name = "DOMAIN")]
    public_domain: Option<DomainName>,
    /// No entries for private addresses (except for clusters whose record says otherwise)
    #[arg(long)]
    no_private: bool,
    /// IPv4 only
    #[arg(long)]
    no_ipv6: bool,
    /// An extra name for a node: NODE=NAME (repeatable)
    #[arg(long, value_name = "NODE=NAME", value_parser = parse_alias)]
    alias: Vec<(Name, String)>,
    /// The parent of clusters without a domain: their nodes are NODE.CLUSTER.PARENT (as in
    /// lct-dns)
    #[arg(long, value_name = "DOMAIN", env = "LCT_DOMAIN", default_value = lct_core::naming::DEFAULT_PARENT_DOMAIN)]
    parent_domain: DomainName,
}

fn parse_alias(s: &str) -> Result<(Name, String), String> {
    let (node, name) = s.split_once('=').ok_or("expected NODE=NAME")?;
    let node = node.parse::<Name>().map_err(|e| e.to_string())?;
    lct_hosts::check_host_name(name).map_err(|e| e.to_string())?;
    Ok((node, name.to_string()))
}

impl Naming {
    fn options(&self) -> Result<RenderOptions, UsageError> {
        let public = match (&self.public_domain, self.public) {
            (Some(d), _) => Some(PublicNames::Domain(d.clone())),
            (None, true) => Some(PublicNames::Suffix(self.public_suffix.to_string())),
            (None, false) => None,
        };
        if self.no_private && public.is_none() {
            return Err(UsageError("--no-private without --public leaves nothing to render".into()));
        }
        let mut aliases: BTreeMap<Name, Vec<String>> = BTreeMap::new();
        for (node, name) in &self.alias {
            aliases.entry(node.clone()).or_default().push(name.clone());
        }
        Ok(RenderOptions {
            private: !self.no_private,
            public,
            ipv6: !self.no_ipv6,
            aliases,
            parent_domain: self.parent_domain.clone(),
        })
    }
}

struct HostRow<'a>(&'a HostEntry);

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run("lct-hosts", || {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(run(cli))
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.global.output();
    match cli.command {
        Command::Render { format: text_format, naming } => {
            let options = naming.options()?;
            let jsonl = matches!((text_format, format), (Some(Format::Jsonl), _) | (None, OutputFormat::Jsonl));
            let input = read_input(jsonl)?;
            let stdout = io::stdout();
            if let Some(Format::Hosts) = text_format {
                let mut out = stdout.lock();
                for text in render_blocks(&input.nodes, &input.clusters, &options)?.values() {
                    out.write_all(text.as_bytes())?;
                }
                out.flush()?;
                std::mem::forget(input); // as in apply
                return Ok(());
            }
            let entries = render(&input.nodes, &input.clusters, &options)?;
            match (text_format, format) {
                (Some(Format::Hosts), _) => unreachable!("written above"),
                (None, OutputFormat::Table) => print_entries(&entries)?,
                (Some(Format::Jsonl), _) | (None, OutputFormat::Jsonl) => {
                    // Every input line passes on, node records too (the next tool, e.g. lct-fw,
                    // needs them), in input order; the entries follow.
                    let mut out = Writer::new(stdout.lock());
                    let mut nodes = input.node_lines.iter().peekable();
                    for line in &input.others {
                        while let Some((_, text)) = nodes.next_if(|(n, _)| *n < line.number) {
                            out.write_raw(text)?;
                        }
                        out.passthrough(line)?;
                    }
                    for (_, text) in nodes {
                        out.write_raw(text)?;
                    }
                    for e in &entries {
                        out.write(e)?;
                    }
                    out.flush()?;
                }
            }
            Ok(())
        }
        Command::Apply { file, clusters, remove, check, diff, in_place, naming } => {
            let options = naming.options()?;
            let mut changes: BTreeMap<Name, String> = BTreeMap::new();
            if !io::stdin().is_terminal() {
                let input = read_input(false)?;
                let mut entries = Vec::new();
                for line in input.others.iter().filter(|l| l.is::<HostEntry>()) {
                    entries.push(line.parse::<HostEntry>().context("stdin")?);
                }
                // Node records are rendered only when no host entries came (after `render`,
                // they travel along as context). Rendering checks what it makes; entries that
                // came in are checked here.
                if entries.is_empty() {
                    changes = render_blocks(&input.nodes, &input.clusters, &options)?;
                } else {
                    lct_hosts::check(&entries)?;
                    let mut by_cluster: BTreeMap<Name, Vec<HostEntry>> = BTreeMap::new();
                    for e in entries {
                        by_cluster.entry(e.cluster.clone()).or_default().push(e);
                    }
                    changes = by_cluster.into_iter().map(|(c, list)| (c, hosts_text(&list))).collect();
                }
                // Freeing 100,000 members one by one costs milliseconds, just before the
                // process ends and the memory goes anyway.
                std::mem::forget(input);
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
            let mode = if check {
                WriteMode::Check
            } else if in_place {
                WriteMode::InPlace
            } else {
                WriteMode::Auto
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
            let records = ClusterStore::new(&state_dir()).load()?;
            let selector = Selector { providers, ..Default::default() };
            let nodes = query(&selector, &records).await?;
            let selected: BTreeSet<Name> = if clusters.is_empty() {
                nodes.iter().map(|n| n.cluster.clone()).chain(records.iter().map(|c| c.name.clone())).collect()
            } else {
                clusters.into_iter().collect()
            };
            let work = plan(&nodes, &records, &selected, &options)?;
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

/// What a hosts command reads: nodes (slimmed to what rendering needs), cluster records,
/// and every line that is not a node record.
struct Input {
    nodes: Vec<Member>,
    /// With `keep_node_lines`: each node line's number and text, to pass it on.
    node_lines: Vec<(usize, String)>,
    clusters: Vec<Cluster>,
    others: Vec<stream::Line>,
}

fn read_input(keep_node_lines: bool) -> anyhow::Result<Input> {
    // Only what rendering needs is kept of each node: 100,000 nodes stay well within memory.
    let (nodes, node_lines, others) = if keep_node_lines {
        let (kept, others) = stream::read_kind_parallel_with::<Node, (Member, String)>(
            io::stdin().lock(),
            |text| Some((Member::from_node_json(text)?, text.to_string())),
            |node, text| (Member::from(node), text.to_string()),
        )
        .context("stdin")?;
        let (nodes, lines) = kept.into_iter().map(|(number, (member, text))| (member, (number, text))).unzip();
        (nodes, lines, others)
    } else {
        let (kept, others) =
            stream::read_kind_parallel_with::<Node, Member>(io::stdin().lock(), Member::from_node_json, |node, _| {
                Member::from(node)
            })
            .context("stdin")?;
        (kept.into_iter().map(|(_, member)| member).collect(), Vec::new(), others)
    };
    let clusters = ClusterStore::new(&state_dir()).with_input(&others)?;
    Ok(Input { nodes, node_lines, clusters, others })
}

fn print_entries(entries: &[HostEntry]) -> io::Result<()> {
    let mut t = lct_core::table::Table::new(HostRow::HEADERS);
    for e in entries {
        t.row(HostRow(e).row());
    }
    t.print()
}

impl Tabular for HostRow<'_> {
    const HEADERS: &'static [&'static str] = &["ADDRESS", "NAMES", "CLUSTER", "NODE", "SCOPE"];
    fn row(&self) -> Vec<String> {
        let e = self.0;
        vec![
            e.address.to_string(),
            e.names.join(" "),
            e.cluster.to_string(),
            e.node.to_string(),
            format!("{:?}", e.scope).to_lowercase(),
        ]
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
