//! `lct-inventory`: query nodes, keep cluster records, run commands on nodes.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand, OutputFormat, UsageError};
use lct_core::record::{Cluster, Dependency, DomainName, Name, Node, NodeSpec, ProviderName, Record, Volume};
use lct_core::state::{ClusterStore, state_dir};
use lct_core::stream::{self, Writer};
use lct_core::table::emit;
use lct_inventory::exec::{self, ExecOptions, ExecResult, OutputLine, Stream};
use lct_inventory::{Selector, query};

const EXAMPLES: &str = "\
Examples:
  lct-inventory query --cluster demo
  lct-inventory query --cluster zk --with-dependents -o jsonl

  lct-inventory clusters set zk --domain zk.lct.internal
  lct-inventory clusters set hdfs --depends-on zk:zookeeper:2181/tcp
  lct-inventory clusters list

  lct-inventory exec --cluster demo -- hostname
  lct-inventory query --cluster demo | lct-inventory exec -- ip -brief addr

  lct-inventory check < records.jsonl

Exit status: 0 success, 1 failure (exec: any node failed, each named), 2 usage error.
A query by cluster asks the providers the cluster records name (lct-api create records them)
and says on stderr when a selected cluster has no nodes.

Environment: LCT_STATE_DIR (default /var/lib/lct), LCT_LAB (local cloud lab name),
LCT_PROVIDER, LCT_LINODE_SSH_NETNS (the namespace Linode nodes are reached from).";

/// Node records: query them across providers and clusters, keep cluster records, and run
/// commands on nodes.
#[derive(Parser)]
#[command(name = "lct-inventory", version, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print node records from the providers
    Query {
        #[command(flatten)]
        selector: Selector,
    },
    /// List, set and remove cluster records
    #[command(subcommand)]
    Clusters(ClustersCommand),
    /// Run a command on each selected node (or on the node records piped in)
    #[command(after_help = "\
Nodes come from the selectors, or, when none is given and stdin is not a terminal, from the
node records on stdin (other lines pass through to stdout). Each local node's command runs in
its namespace with the node's host name; remote nodes are reached with OpenSSH.
A node at a documentation address (a lab's, e.g. the Linode double's 203.0.113.x) is reached
only from a network namespace that routes it inside the lab (LCT_LINODE_SSH_NETNS for Linode
nodes); otherwise it is refused before any connection, and the setting is named.
On a terminal, output lines are prefixed with the node name; in a pipe, one exec-result
record per node. The node record is in LCT_NODE (and LCT_NODE_NAME, ..._CLUSTER, ..._GROUP,
..._PRIVATE_IPV4, ..._PUBLIC_IPV4).")]
    Exec {
        #[command(flatten)]
        selector: Selector,
        /// Every node of every provider
        #[arg(long, conflicts_with_all = ["clusters", "groups", "tags", "statuses"])]
        all: bool,
        /// How many nodes run at once
        #[arg(long, default_value_t = 16)]
        parallel: usize,
        /// Kill a node's command after this many seconds
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
        /// Extra ssh option for remote nodes (repeatable), e.g. StrictHostKeyChecking=accept-new
        #[arg(long = "ssh-option", value_name = "OPTION")]
        ssh_options: Vec<String>,
        /// The command and its arguments
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Copy lct's node-side programs (lct-hosts, lct-fw, lct-dns) to SSH nodes, checked by
    /// SHA-256 (the copies beside this program: the same build), and install what they need
    /// (conntrack) with apt where it is missing; lct-fw-boot.service is installed and enabled
    /// (the firewall lct-fw last applied, else default-deny, loaded before the network)
    Install {
        #[command(flatten)]
        selector: Selector,
        /// How many nodes at once
        #[arg(long, default_value_t = 16)]
        parallel: usize,
    },
    /// Print an Ansible dynamic inventory of the selected nodes (as an inventory script's
    /// --list: groups per cluster and per cluster_group, lct's SSH key and known_hosts)
    #[command(after_help = "\
Examples:
  printf '#!/bin/sh\\nexec lct-inventory ansible --cluster zk \"$@\"\\n' > zk-inventory; chmod +x zk-inventory
  ansible-playbook -i zk-inventory site.yml")]
    Ansible {
        #[command(flatten)]
        selector: Selector,
        /// What Ansible asks an inventory script first (the default)
        #[arg(long)]
        list: bool,
        /// What Ansible may ask per host (host variables are all in --list's _meta)
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
    },
    /// Check records on stdin: every error with its line and field
    Check,
    #[command(flatten)]
    Meta(MetaCommand),
}

#[derive(Subcommand)]
enum ClustersCommand {
    /// List cluster records
    List,
    /// Add or change a cluster (flags), or set the cluster records piped in
    Set {
        /// The cluster to add or change
        name: Option<Name>,
        /// Its DNS domain, e.g. zk.lct.internal
        #[arg(long)]
        domain: Option<DomainName>,
        /// Its provider
        #[arg(long, value_enum)]
        provider: Option<ProviderName>,
        /// A cluster it uses: CLUSTER[:GROUP,GROUP[:PORT/PROTO,...]] (repeatable; replaces the list)
        #[arg(long = "depends-on", value_name = "DEPENDENCY", value_parser = parse_dependency)]
        depends_on: Vec<Dependency>,
        /// Remove all its dependencies
        #[arg(long, conflicts_with = "depends_on")]
        no_dependencies: bool,
    },
    /// Remove cluster records (the nodes stay)
    Remove {
        #[arg(required = true)]
        names: Vec<Name>,
    },
}

/// `zk`, `zk:zookeeper`, `zk:zookeeper,observer:2181/tcp,2888-3888/tcp`
fn parse_dependency(s: &str) -> Result<Dependency, String> {
    let mut parts = s.splitn(3, ':');
    let cluster = parts.next().unwrap_or_default().parse::<Name>().map_err(|e| e.to_string())?;
    let list = |p: Option<&str>| -> Vec<String> {
        p.map(|p| p.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default()
    };
    let groups = list(parts.next())
        .into_iter()
        .map(|g| g.parse::<Name>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let ports = list(parts.next())
        .into_iter()
        .map(|p| p.parse().map_err(|e: lct_core::record::InvalidValue| e.to_string()))
        .collect::<Result<_, _>>()?;
    Ok(Dependency { cluster, groups, ports })
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run("lct-inventory", || {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(run(cli))
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.global.output();
    let store = ClusterStore::new(&state_dir());
    match cli.command {
        Command::Query { selector } => {
            let clusters = store.load()?;
            let nodes = query(&selector, &clusters).await?;
            Ok(emit(&nodes, format)?)
        }
        Command::Clusters(cmd) => clusters(&store, cmd, format),
        Command::Exec { selector, all, parallel, timeout, ssh_options, command } => {
            let options =
                ExecOptions { parallel, timeout: timeout.map(Duration::from_secs), ssh_options, ..Default::default() };
            let mut passthrough = Vec::new();
            let nodes = if all || !selector.is_empty() {
                query(&selector, &store.load()?).await?
            } else if !io::stdin().is_terminal() {
                let (nodes, others) = stream::read_kind::<Node>(io::stdin().lock()).context("stdin")?;
                passthrough = others;
                nodes
            } else {
                return Err(UsageError(
                    "no nodes selected: give selectors (--all for every node) or pipe node records".into(),
                )
                .into());
            };
            run_exec(nodes, command, &options, format, &passthrough).await
        }
        Command::Install { selector, parallel } => {
            let nodes = query(&selector, &store.load()?).await?;
            let dir = std::env::current_exe().context("where is lct-inventory?")?;
            let programs = lct_inventory::install::Program::beside(dir.parent().unwrap_or(std::path::Path::new(".")))
                .context(
                "lct's node-side programs must be beside lct-inventory (scripts/install puts them there)",
            )?;
            let options = ExecOptions { parallel, timeout: Some(Duration::from_secs(300)), ..Default::default() };
            let mut results = lct_inventory::install::install(&nodes, &programs, &options).await;
            results.sort_by(|a, b| a.node.cmp(&b.node));
            let failed: Vec<String> = results
                .iter()
                .filter(|r| !r.outcome.success())
                .map(|r| {
                    format!(
                        "{} ({}: {})",
                        r.node,
                        r.outcome.describe(),
                        r.stderr.trim().lines().last().unwrap_or_default()
                    )
                })
                .collect();
            match format {
                OutputFormat::Jsonl => {
                    let mut out = Writer::new(io::stdout().lock());
                    for r in &results {
                        out.write(r)?;
                    }
                    out.flush()?;
                }
                OutputFormat::Table => {
                    let mut table = lct_core::table::Table::new(&["NODE", "RESULT"]);
                    for r in &results {
                        let said = r.stdout.trim().lines().last().unwrap_or_default().to_string();
                        table.row(vec![
                            r.node.to_string(),
                            if r.outcome.success() { said } else { r.outcome.describe() },
                        ]);
                    }
                    table.print()?;
                }
            }
            if !failed.is_empty() {
                bail!("install failed on {} of {}: {}", failed.len(), results.len(), failed.join(", "));
            }
            Ok(())
        }
        Command::Ansible { selector, list: _, host } => {
            if host.is_some() {
                // Every host's variables are in --list's _meta: Ansible does not ask.
                println!("{{}}");
                return Ok(());
            }
            let nodes = query(&selector, &store.load()?).await?;
            let doc = lct_inventory::ansible::inventory(&nodes, &lct_core::ssh::SshFiles::from_env())
                .map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
        Command::Check => check(),
        Command::Meta(meta) => meta.run::<Cli>(),
    }
}

fn clusters(store: &ClusterStore, cmd: ClustersCommand, format: OutputFormat) -> anyhow::Result<()> {
    match cmd {
        ClustersCommand::List => emit(&store.load()?, format)?,
        ClustersCommand::Set { name: None, domain, provider, depends_on, no_dependencies } => {
            if domain.is_some() || provider.is_some() || !depends_on.is_empty() || no_dependencies {
                return Err(UsageError("flags need a cluster name".into()).into());
            }
            if io::stdin().is_terminal() {
                return Err(UsageError("name a cluster, or pipe cluster records".into()).into());
            }
            let (records, others) = stream::read_kind::<Cluster>(io::stdin().lock()).context("stdin")?;
            if let Some(other) = others.first() {
                bail!("stdin: line {}: kind {:?} is not a cluster record", other.number, other.kind);
            }
            let names: Vec<Name> = records.iter().map(|c| c.name.clone()).collect();
            let all = store.set(records)?;
            let changed: Vec<Cluster> = all.into_iter().filter(|c| names.contains(&c.name)).collect();
            emit(&changed, format)?;
        }
        ClustersCommand::Set { name: Some(name), domain, provider, depends_on, no_dependencies } => {
            let mut cluster = store.get_or_new(&name)?;
            if domain.is_some() {
                cluster.domain = domain;
            }
            if let Some(p) = provider {
                cluster.provider = p;
            }
            if !depends_on.is_empty() || no_dependencies {
                cluster.depends_on = depends_on;
            }
            store.set(vec![cluster.clone()])?;
            emit(&[cluster], format)?;
        }
        ClustersCommand::Remove { names } => {
            let removed = store.remove(&names)?;
            for n in names.iter().filter(|n| !removed.contains(n)) {
                tracing::warn!(cluster = %n, "no such cluster record");
            }
        }
    }
    Ok(())
}

async fn run_exec(
    nodes: Vec<Node>,
    command: Vec<String>,
    options: &ExecOptions,
    format: OutputFormat,
    passthrough: &[stream::Line],
) -> anyhow::Result<()> {
    if nodes.is_empty() {
        tracing::warn!("no nodes selected; nothing to run");
    }
    let total = nodes.len();
    let results = match format {
        OutputFormat::Table => {
            // Lines appear as they are printed, prefixed like `pdsh`: "node | text".
            let width = nodes.iter().map(|n| n.name.as_str().len()).max().unwrap_or(0);
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<OutputLine>();
            let printer = tokio::spawn(async move {
                while let Some(l) = rx.recv().await {
                    let line = format!("{:<width$} | {}\n", l.node.as_str(), l.text);
                    let _ = match l.stream {
                        Stream::Stdout => io::stdout().write_all(line.as_bytes()),
                        Stream::Stderr => io::stderr().write_all(line.as_bytes()),
                    };
                }
            });
            let results = exec::exec(nodes, command, options, Some(tx)).await;
            printer.await?;
            results
        }
        OutputFormat::Jsonl => {
            let mut out = Writer::new(io::stdout().lock());
            for line in passthrough {
                out.passthrough(line)?;
            }
            out.flush()?;
            drop(out);
            let results = exec::exec(nodes, command, options, None).await;
            let mut out = Writer::new(io::stdout().lock());
            let mut sorted: Vec<&ExecResult> = results.iter().collect();
            sorted.sort_by(|a, b| (&a.cluster, &a.node).cmp(&(&b.cluster, &b.node)));
            for r in sorted {
                out.write(r)?;
            }
            out.flush()?;
            results
        }
    };
    let mut failures: Vec<String> = results
        .iter()
        .filter(|r| !r.outcome.success())
        .map(|r| format!("{} ({})", r.node, r.outcome.describe()))
        .collect();
    failures.sort();
    if !failures.is_empty() {
        bail!("failed on {} of {total} nodes: {}", failures.len(), failures.join(", "));
    }
    Ok(())
}

/// Validates every line of stdin and reports each bad one.
fn check() -> anyhow::Result<()> {
    let mut errors = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in stream::Reader::new(io::stdin().lock()) {
        let result = line.and_then(|line| {
            match line.kind.as_str() {
                Node::KIND => line.parse::<Node>().map(drop),
                Cluster::KIND => line.parse::<Cluster>().map(drop),
                NodeSpec::KIND => line.parse::<NodeSpec>().map(drop),
                Volume::KIND => line.parse::<Volume>().map(drop),
                _ => Ok(()),
            }?;
            *counts.entry(line.kind).or_default() += 1;
            Ok(())
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }
    for e in &errors {
        eprintln!("stdin: {e}");
    }
    if !errors.is_empty() {
        bail!("{} bad line(s)", errors.len());
    }
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    eprintln!("ok: {}", if summary.is_empty() { "no records".into() } else { summary.join(", ") });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_parse() {
        let d = parse_dependency("zk:zookeeper,observer:2181/tcp,2888-3888").unwrap();
        assert_eq!(d.cluster.as_str(), "zk");
        assert_eq!(d.groups.len(), 2);
        assert_eq!(d.ports[1].to_string(), "2888-3888/tcp");
        assert!(parse_dependency("zk::99999").is_err());
        assert!(parse_dependency("Zk").is_err());
        assert_eq!(parse_dependency("zk").unwrap().groups.len(), 0);
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
