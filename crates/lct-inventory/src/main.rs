//! `lct-inventory`: query nodes, keep cluster records, run commands on nodes.

use std::io::{self, IsTerminal};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand, UsageError};
use lct_core::record::{Access, Node};
use lct_core::state::ClusterStore;
use lct_core::stream;
use lct_core::table::emit;
use lct_inventory::clusters::{self, ClustersCommand};
use lct_inventory::exec::ExecOptions;
use lct_inventory::report::{exec_printed, install_printed};
use lct_inventory::{Selector, query};

const EXAMPLES: &str = "\
Examples:
  lct-inventory query --cluster demo
  lct-inventory query 'zk-*' pg-1                  # by name or glob (like Ansible's --limit)
  lct-inventory query --cluster zk --with-dependents -o jsonl

  lct-inventory clusters set zk --domain zk.lct.internal
  lct-inventory clusters set hdfs --depends-on zk:zookeeper:2181/tcp
  lct-inventory clusters list

  lct-inventory exec --cluster demo -- hostname
  lct-inventory exec zk-1 -- systemctl status zookeeper
  lct-inventory query --cluster demo | lct-inventory exec -- ip -brief addr

  lct-inventory check < records.jsonl
  lct-inventory state migrate --to etcd://10.0.0.1:2379,10.0.0.2:2379/team

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
Nodes come from the names and selectors, or, when none is given and stdin is not a terminal, from the
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
        #[arg(long, conflicts_with_all = ["names", "clusters", "groups", "tags", "statuses"])]
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
    /// lct's state: move it between the local directory and etcd (docs/state.md)
    #[cfg(feature = "etcd")]
    #[command(subcommand)]
    State(lct_inventory::state::StateCommand),
    #[command(flatten)]
    Meta(MetaCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run_async("lct-inventory", run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.global.output();
    #[cfg(feature = "etcd")]
    if let Command::State(command) = cli.command {
        return lct_inventory::state::run(command);
    }
    let store = ClusterStore::open()?;
    match cli.command {
        Command::Query { selector } => {
            let clusters = store.load()?;
            let nodes = query(&selector, &clusters).await?;
            Ok(emit(&nodes, format)?)
        }
        Command::Clusters(ClustersCommand::List) => Ok(emit(&store.load()?, format)?),
        Command::Clusters(ClustersCommand::Set { name: None, flags }) => {
            if flags.any() {
                return Err(UsageError("flags need a cluster name".into()).into());
            }
            if io::stdin().is_terminal() {
                return Err(UsageError("name a cluster, or pipe cluster records".into()).into());
            }
            Ok(emit(&clusters::set_piped(&store, io::stdin().lock())?, format)?)
        }
        Command::Clusters(ClustersCommand::Set { name: Some(name), flags }) => {
            Ok(emit(&[clusters::set(&store, &name, flags)?], format)?)
        }
        Command::Clusters(ClustersCommand::Remove { names }) => {
            let removed = store.remove(&names)?;
            for n in names.iter().filter(|n| !removed.contains(n)) {
                tracing::warn!(cluster = %n, "no such cluster record");
            }
            Ok(())
        }
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
                    "no nodes selected: give names or selectors (--all for every node) or pipe node records".into(),
                )
                .into());
            };
            exec_printed(nodes, command, &options, format, &passthrough).await
        }
        Command::Install { selector, parallel } => {
            let nodes = query(&selector, &store.load()?).await?;
            let (ssh, local): (Vec<Node>, Vec<Node>) =
                nodes.into_iter().partition(|n| matches!(n.access, Some(Access::Ssh { .. })));
            if !local.is_empty() {
                let names: Vec<&str> = local.iter().map(|n| n.name.as_str()).collect();
                tracing::warn!(
                    "nothing installed on {} (not reached over SSH: a namespace node runs this machine's programs)",
                    names.join(", ")
                );
            }
            let dir = std::env::current_exe().context("where is lct-inventory?")?;
            let programs = lct_inventory::install::Program::beside(dir.parent().unwrap_or(std::path::Path::new(".")))
                .context(
                "lct's node-side programs must be beside lct-inventory (scripts/install puts them there)",
            )?;
            let options = ExecOptions { parallel, timeout: Some(Duration::from_secs(300)), ..Default::default() };
            install_printed(lct_inventory::install::install(&ssh, &programs, &options).await, format)
        }
        Command::Ansible { selector, list: _, host } => {
            if host.is_some() {
                // Every host's variables are in --list's _meta: Ansible does not ask.
                println!("{{}}");
                return Ok(());
            }
            let nodes = query(&selector, &store.load()?).await?;
            let doc = lct_inventory::ansible::inventory(&nodes, &lct_core::ssh::SshFiles::from_env()?)
                .map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
        Command::Check => {
            let checked = lct_inventory::check::check(io::stdin().lock());
            for e in &checked.errors {
                eprintln!("stdin: {e}");
            }
            if !checked.errors.is_empty() {
                bail!("{} bad line(s)", checked.errors.len());
            }
            eprintln!("ok: {}", checked.summary());
            Ok(())
        }
        Command::Meta(meta) => meta.run::<Cli>(),
        #[cfg(feature = "etcd")]
        Command::State(_) => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
