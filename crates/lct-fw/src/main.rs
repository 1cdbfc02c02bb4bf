//! `lct-fw`: firewall declarations, rendering, sync and push on the command line.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand, OutputFormat, UsageError};
use lct_core::prefix::Prefix;
use lct_core::record::{Cluster, Name, Node, PortSpec, ProviderName};
use lct_core::state::{ClusterStore, state_dir};
use lct_core::stream;
use lct_fw::model::{Allow, FirewallSpec, Mode};
use lct_fw::nft;
use lct_fw::push::PushOptions;
use lct_fw::ruleset::{Ruleset, for_node};
use lct_fw::sync::{Backend, SyncError, SyncOptions, sync_here};
use lct_inventory::{Selector, query};

const EXAMPLES: &str = "\
Examples:
  # ZooKeeper admits its own members on 2888-3888 and SSH from the admin network
  lct-fw declare zk --admin-cidr 192.0.2.0/24 --allow 'self->zookeeper:2888-3888/tcp'
  # HDFS says it uses ZooKeeper's client port: zk's firewall admits HDFS's nodes on it
  lct-inventory clusters set hdfs --depends-on zk:zookeeper:2181/tcp

  lct-inventory query | lct-fw render --node zk-1 --format nft    # review
  lct-inventory query | lct-fw sync                                # this host (its host name)
  lct-fw push --cluster zk          # every node of zk, its dependencies and its dependents

Exit status: 0 success, 1 failure (push: a node failed, each named), 2 usage error.
Only the nftables table `inet lct` is ever touched.";

const BOOT_HELP: &str = "\
Every `lct-fw sync` of this host's own firewall (and `confirm`, and `remove`) is saved in
/var/lib/lct/fw; lct-fw-boot.service, installed and enabled by `lct-inventory install`,
runs `lct-fw boot` before the network comes up. With no saved ruleset, or one that cannot be
read or applied, it loads a default-deny table admitting SSH from the admin prefixes last
saved (from anywhere when none are known) and says why; after `lct-fw remove` it loads
nothing. Exit status 1 only when not even the default-deny table could be loaded.";
const WATCH_HELP: &str = "\
Listens to nf_tables' change notifications (as `nft monitor` does) and, when anyone but
lct-fw changes table inet lct (`nft flush ruleset`, a deleted chain, set or rule, a rule
added to lct's chain), puts back what lct-fw last applied in this network namespace, in
milliseconds. Each change is logged (warning level) with the process that committed it
(pid and name) and what it changed; other tables are left alone. lct-fw's own syncs are
recognised and kept. The nft backend only: hosts on the iptables backend are not watched.
Runs until stopped; on nodes it is the lct-fw-watch systemd service (Restart=always),
installed and started by `lct-inventory install`.";

/// Host firewalls that follow cluster membership: nftables rules applied in-process over
/// netlink, atomically, with SSH from the admin prefixes always admitted.
#[derive(Parser)]
#[command(name = "lct-fw", version, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set a cluster's firewall declarations (kept in its cluster record)
    Declare {
        cluster: Name,
        /// managed-ports (guard only declared ports) or default-deny
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Where SSH is always admitted from (repeatable; replaces the list)
        #[arg(long = "admin-cidr", value_name = "CIDR", value_parser = parse_cidr)]
        admin_cidrs: Vec<Prefix>,
        /// The SSH port of the failsafe
        #[arg(long)]
        ssh_port: Option<u16>,
        /// FROM->TO:PORTS, e.g. 'hdfs:namenode->zookeeper:2181/tcp', 'self->*:9000/tcp',
        /// '203.0.113.0/24->web:80/tcp,443/tcp' (repeatable; replaces the list)
        #[arg(long = "allow", value_name = "SPEC", value_parser = parse_allow)]
        allow: Vec<Allow>,
        /// Drop all declarations of the cluster
        #[arg(long, conflicts_with_all = ["mode", "admin_cidrs", "ssh_port", "allow"])]
        clear: bool,
    },
    /// Node records in (all members), fw-ruleset records (or nft text) out
    Render {
        /// Only these nodes (repeatable) [default: every node on stdin]
        #[arg(long = "node", value_name = "NODE")]
        nodes: Vec<Name>,
        /// nft: the table as `nft -f` input, for review
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Allow empty peer sets and default-deny without admin prefixes
        #[arg(long)]
        force: bool,
    },
    /// Mirror each group's rules into a Linode Cloud Firewall (node records on stdin)
    #[cfg(feature = "linode")]
    #[command(after_help = "\
One Cloud Firewall per group of a cluster, labelled lct-CLUSTER-GROUP, admitting what the
host firewalls of that group admit (SSH from the admin prefixes, each rule's peers on its
ports; managed ports dropped for everyone else, or a dropping policy in default-deny mode),
with the group's Linode instances as its devices. Made if missing; rules replaced when they
differ; devices added and removed. At most 25 rules (Linode's limit): rules with the same
ports are merged, and a group that still needs more is refused before any request.

Examples:
  lct-api -p linode list | lct-fw cloud-sync --cluster zk --dry-run
  lct-api -p linode list | lct-fw cloud-sync")]
    CloudSync {
        /// Only this cluster (repeatable) [default: every cluster with Linode nodes on stdin]
        #[arg(long = "cluster", value_name = "CLUSTER")]
        clusters: Vec<Name>,
        /// Show what would change (and the rules with -o jsonl), change nothing
        #[arg(long)]
        dry_run: bool,
        /// Allow empty peer sets and default-deny without admin prefixes
        #[arg(long)]
        force: bool,
    },
    /// Apply this host's ruleset (fw-ruleset or node records on stdin) to nftables; the
    /// host's own is saved for its next boot (`lct-fw boot`)
    Sync {
        /// Which node this host is [default: the host name]
        #[arg(long)]
        node: Option<Name>,
        /// Replace the whole table even when only members changed
        #[arg(long)]
        full: bool,
        /// Allow empty peer sets and default-deny without admin prefixes
        #[arg(long)]
        force: bool,
        /// Also end the established connections of peers that lost access (conntrack)
        #[arg(long)]
        kill_established: bool,
        /// Put the previous table back unless `lct-fw confirm` comes within SECONDS
        #[arg(long, value_name = "SECONDS")]
        confirm_timeout: Option<u64>,
        /// nft (nf_tables over netlink, atomic) or iptables (for hosts without nf_tables; not atomic)
        #[arg(long, value_enum, default_value_t = Backend::Nft)]
        backend: Backend,
    },
    /// Keep the change a `sync --confirm-timeout` made
    Confirm,
    /// Load the saved firewall at boot, else a default-deny table (lct-fw-boot.service)
    #[command(after_help = BOOT_HELP)]
    Boot,
    /// (internal) the watchdog of `sync --confirm-timeout`
    #[command(hide = true)]
    RollbackWatch {
        #[arg(long)]
        token: String,
        #[arg(long)]
        after: u64,
    },
    /// Render from the inventory and sync every affected node
    Push {
        /// The clusters that changed (repeatable) [default: all]
        #[arg(long = "cluster", short = 'c', value_name = "CLUSTER")]
        clusters: Vec<Name>,
        /// Providers to ask (repeatable)
        #[arg(long = "provider", short = 'p', value_enum, long_help = lct_inventory::providers_long_help())]
        providers: Vec<ProviderName>,
        /// Allow empty peer sets and default-deny without admin prefixes
        #[arg(long)]
        force: bool,
        /// Replace whole tables even where only members changed
        #[arg(long)]
        full: bool,
        /// Also end the established connections of peers that lost access (conntrack)
        #[arg(long)]
        kill_established: bool,
        /// The backend on the nodes
        #[arg(long, value_enum, default_value_t = Backend::Nft)]
        backend: Backend,
        #[arg(long, default_value_t = 32)]
        parallel: usize,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// lct-fw on remote (ssh) nodes
        #[arg(long, default_value = "lct-fw")]
        remote_bin: String,
    },
    /// Put this host's `inet lct` table back whenever anything else changes it (a service)
    #[command(after_help = WATCH_HELP)]
    Watch,
    /// Delete this host's `inet lct` table (or, with iptables, lct's chains)
    Remove {
        #[arg(long, value_enum, default_value_t = Backend::Nft)]
        backend: Backend,
    },
    #[command(flatten)]
    Meta(MetaCommand),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    ManagedPorts,
    DefaultDeny,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Jsonl,
    Nft,
}

fn parse_cidr(s: &str) -> Result<Prefix, String> {
    s.parse().map_err(|e: lct_core::prefix::PrefixError| e.to_string())
}

/// `FROM->TO:PORTS`; FROM is `self`, `CLUSTER[:GROUP+GROUP]` or prefixes, comma-separated;
/// TO is `*` or `GROUP+GROUP`.
fn parse_allow(s: &str) -> Result<Allow, String> {
    let (from, rest) = s.split_once("->").ok_or("expected FROM->TO:PORTS")?;
    let (to, ports) = rest.split_once(':').ok_or("expected FROM->TO:PORTS")?;
    let mut allow =
        Allow { from_cluster: None, from_groups: vec![], from_cidrs: vec![], to_groups: vec![], ports: vec![] };
    for part in from.split(',').filter(|p| !p.is_empty()) {
        if part.contains('/') || part.parse::<std::net::IpAddr>().is_ok() {
            allow.from_cidrs.push(parse_cidr(part)?);
        } else if part == "self" {
        } else {
            let (cluster, groups) = part.split_once(':').unwrap_or((part, ""));
            allow.from_cluster = Some(cluster.parse().map_err(|e: lct_core::record::InvalidValue| e.to_string())?);
            allow.from_groups = names(groups)?;
        }
    }
    if to != "*" {
        allow.to_groups = names(to)?;
    }
    allow.ports =
        ports.split(',').map(|p| p.parse::<PortSpec>().map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
    if allow.ports.is_empty() {
        return Err("name at least one port".into());
    }
    Ok(allow)
}

fn names(list: &str) -> Result<Vec<Name>, String> {
    list.split('+')
        .filter(|g| !g.is_empty())
        .map(|g| g.parse().map_err(|e: lct_core::record::InvalidValue| e.to_string()))
        .collect()
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run("lct-fw", || {
        // One thread: sync is a few syscalls, and push waits on child processes.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(run(cli))
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.global.output();
    let store = ClusterStore::new(&state_dir());
    match cli.command {
        Command::Declare { cluster, mode, admin_cidrs, ssh_port, allow, clear } => {
            declare(&store, &cluster, mode, admin_cidrs, ssh_port, allow, clear, format)
        }
        Command::Render { nodes, format: text, force } => render(&store, &nodes, text, force, format),
        Command::Sync { node, full, force, kill_established, confirm_timeout, backend } => {
            let options = SyncOptions { full, kill_established, confirm_timeout, backend };
            sync(&store, node, force, &options)
        }
        #[cfg(feature = "linode")]
        Command::CloudSync { clusters, dry_run, force } => cloud_sync(&store, &clusters, dry_run, force).await,
        Command::Boot => boot(),
        Command::Confirm => {
            let confirmed = nft::confirm()?;
            if confirmed {
                lct_fw::boot::save_applied_now()?;
            }
            eprintln!("{}", if confirmed { "confirmed" } else { "nothing to confirm" });
            Ok(())
        }
        Command::RollbackWatch { token, after } => {
            std::thread::sleep(Duration::from_secs(after));
            if nft::roll_back(&token)? {
                tracing::warn!("not confirmed in {after} s: the previous table is back");
            }
            Ok(())
        }
        Command::Push {
            clusters,
            providers,
            force,
            full,
            kill_established,
            backend,
            parallel,
            timeout,
            remote_bin,
        } => {
            let options = PushOptions {
                force,
                full,
                kill_established,
                backend,
                parallel,
                timeout: Duration::from_secs(timeout),
                local_bin: std::env::current_exe()?.display().to_string(),
                remote_bin,
            };
            push(&store, clusters, providers, &options, format).await
        }
        Command::Watch => Ok(nft::watch()?),
        Command::Remove { backend: Backend::Nft } => {
            // Forgotten first: `lct-fw watch` finds nothing to put back when the table goes.
            nft::forget()?;
            lct_fw::boot::save(&lct_fw::boot::Saved::Removed)?;
            let removed = nft::delete_table()?;
            eprintln!("{}", if removed { "table inet lct deleted" } else { "no table inet lct here" });
            Ok(())
        }
        Command::Remove { backend: Backend::Iptables } => {
            let removed = lct_fw::iptables::remove_and_forget()?;
            lct_fw::boot::save(&lct_fw::boot::Saved::Removed)?;
            eprintln!("{}", if removed { "lct's iptables chains deleted" } else { "no lct iptables chains here" });
            Ok(())
        }
        Command::Meta(meta) => meta.run::<Cli>(),
    }
}

#[allow(clippy::too_many_arguments)]
fn declare(
    store: &ClusterStore,
    cluster: &Name,
    mode: Option<ModeArg>,
    admin_cidrs: Vec<Prefix>,
    ssh_port: Option<u16>,
    allow: Vec<Allow>,
    clear: bool,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let mut record = store.get_or_new(cluster)?;
    if clear {
        record.extra.remove("firewall");
    } else {
        let mut spec = FirewallSpec::of(&record)?;
        if let Some(m) = mode {
            spec.mode = match m {
                ModeArg::ManagedPorts => Mode::ManagedPorts,
                ModeArg::DefaultDeny => Mode::DefaultDeny,
            };
        }
        if !admin_cidrs.is_empty() {
            spec.admin_cidrs = admin_cidrs;
        }
        if let Some(p) = ssh_port {
            spec.ssh_port = p;
        }
        if !allow.is_empty() {
            spec.allow = allow;
        }
        spec.store(&mut record);
        FirewallSpec::of(&record)?;
    }
    store.set(vec![record.clone()])?;
    lct_core::table::emit(&[record], format)?;
    Ok(())
}

fn render(
    store: &ClusterStore,
    only: &[Name],
    text: Option<Format>,
    force: bool,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let (nodes, clusters, others) = read_nodes(store)?;
    let targets: Vec<&Node> = nodes.iter().filter(|n| only.is_empty() || only.contains(&n.name)).collect();
    if let Some(missing) = only.iter().find(|o| !nodes.iter().any(|n| &n.name == *o)) {
        bail!("no node record for {missing} on stdin");
    }
    let rulesets = targets.iter().map(|n| for_node(n, &nodes, &clusters, force)).collect::<Result<Vec<_>, _>>()?;
    let mut out = io::stdout().lock();
    match (text, format) {
        (Some(Format::Nft), _) | (None, OutputFormat::Table) => {
            for r in &rulesets {
                out.write_all(r.to_nft().as_bytes())?;
            }
        }
        _ => stream::write_after_passthrough(out, &others, &rulesets)?,
    }
    Ok(())
}

/// This host's sync: its ruleset from stdin (a fw-ruleset record, or rendered from the node
/// records there), applied, reported as a fw-sync record.
fn sync(store: &ClusterStore, node: Option<Name>, force: bool, options: &SyncOptions) -> anyhow::Result<()> {
    let me = match node {
        Some(n) => n,
        None => host_name()?,
    };
    let lines = stream::read_all(io::stdin().lock()).context("stdin")?;
    let mut rulesets = Vec::new();
    let mut nodes = Vec::new();
    for line in &lines {
        if line.is::<Ruleset>() {
            rulesets.push(line.parse::<Ruleset>().context("stdin")?);
        } else if line.is::<Node>() {
            nodes.push(line.parse::<Node>().context("stdin")?);
        }
    }
    let ruleset = match rulesets.into_iter().find(|r| r.node == me) {
        Some(r) => r,
        None => {
            let Some(node) = nodes.iter().find(|n| n.name == me) else {
                bail!("stdin has no fw-ruleset or node record for this host ({me}); give --node");
            };
            for_node(node, &nodes, &store.load()?, force)?
        }
    };
    let report = sync_here(me, &ruleset, options, |token, after| {
        // A watchdog of our own, in this namespace, outliving this process.
        let mut watchdog = std::process::Command::new(std::env::current_exe()?);
        watchdog
            .args(["rollback-watch", "--token", token, "--after", &after.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // Its own process group: `exec --timeout` or a closing terminal must not end it.
        std::os::unix::process::CommandExt::process_group(&mut watchdog, 0);
        watchdog.spawn()?;
        eprintln!("lct-fw: run `lct-fw confirm` within {after} s, or the previous table comes back");
        Ok(())
    })
    .map_err(|e| match e {
        SyncError::ConfirmNeedsNft => anyhow::Error::from(UsageError(e.to_string())),
        e => e.into(),
    })?;
    if options.confirm_timeout.is_none() {
        // What the next boot loads (a change awaiting `confirm` is saved when confirmed).
        lct_fw::boot::save(&lct_fw::boot::Saved::Applied { backend: options.backend.into(), ruleset })?;
    }
    println!("{}", stream::to_line(&report));
    Ok(())
}

/// `lct-fw boot`: the saved firewall, else default-deny, said at the default log level.
fn boot() -> anyhow::Result<()> {
    let node = host_name().unwrap_or_else(|_| "boot".parse().expect("a valid name"));
    match lct_fw::boot::boot(node)? {
        lct_fw::boot::Booted::Saved { node, rules } => {
            eprintln!("lct-fw: loaded the saved firewall of node {node} ({rules} rules)")
        }
        lct_fw::boot::Booted::DefaultDeny { reason, admin } => {
            let from: Vec<String> = admin.admin_cidrs.iter().map(|c| c.to_string()).collect();
            tracing::warn!(
                "no usable saved firewall ({reason}): loaded default-deny, SSH (port {}) from {} only; `lct-fw push` puts the cluster's rules back",
                admin.ssh_port,
                from.join(", ")
            );
        }
        lct_fw::boot::Booted::Removed => {
            eprintln!("lct-fw: lct's firewall was removed (lct-fw remove): nothing loaded")
        }
    }
    Ok(())
}

/// One Linode Cloud Firewall per group, mirroring the group's host rules and members.
#[cfg(feature = "linode")]
async fn cloud_sync(store: &ClusterStore, only: &[Name], dry_run: bool, force: bool) -> anyhow::Result<()> {
    let (nodes, clusters, _) = read_nodes(store)?;
    let mut groups: std::collections::BTreeMap<(Name, Name), Vec<&Node>> = Default::default();
    for n in nodes.iter().filter(|n| n.provider == lct_core::record::ProviderName::Linode) {
        if only.is_empty() || only.contains(&n.cluster) {
            groups.entry((n.cluster.clone(), n.group.clone())).or_default().push(n);
        }
    }
    if groups.is_empty() {
        bail!("no Linode node records on stdin{}", if only.is_empty() { "" } else { " for those clusters" });
    }
    // Every group's rules first: a group that cannot be mirrored changes nothing at all.
    let mut plans = Vec::new();
    for ((cluster, group), members) in &groups {
        let ruleset = for_node(members[0], &nodes, &clusters, force)?;
        let rules = lct_fw::cloud::rules_of(&ruleset, group)?;
        let ids = members
            .iter()
            .map(|n| n.provider_id.parse::<u64>().with_context(|| format!("node {}: provider_id", n.name)))
            .collect::<anyhow::Result<Vec<u64>>>()?;
        plans.push((cluster.clone(), group.clone(), rules, ids));
    }
    let provider = lct_api::linode::LinodeProvider::from_env()?;
    let mut out = stream::Writer::new(io::stdout().lock());
    for (cluster, group, rules, ids) in plans {
        let mut report = lct_fw::cloud::sync_group(&provider.api, &cluster, &group, &rules, &ids, dry_run).await?;
        if dry_run {
            report.planned_rules = Some(rules);
        }
        out.write(&report)?;
    }
    Ok(())
}

async fn push(
    store: &ClusterStore,
    clusters: Vec<Name>,
    providers: Vec<ProviderName>,
    options: &PushOptions,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let records = store.load()?;
    let nodes = query(&Selector { providers, ..Default::default() }, &records).await?;
    let changed: BTreeSet<Name> = if clusters.is_empty() {
        nodes.iter().map(|n| n.cluster.clone()).collect()
    } else {
        clusters.into_iter().collect()
    };
    let reports = lct_fw::push::push(&nodes, &records, &changed, options).await?;
    match format {
        OutputFormat::Jsonl => {
            let mut out = stream::Writer::new(io::stdout().lock());
            for r in &reports {
                out.write(r)?;
            }
            out.flush()?;
        }
        OutputFormat::Table => {
            let mut table = lct_core::table::Table::new(&["NODE", "APPLIED", "DETAIL"]);
            for r in &reports {
                let applied = serde_json::to_value(r.applied)?.as_str().unwrap_or_default().to_string();
                table.row(vec![r.node.to_string(), applied, r.detail()]);
            }
            table.print()?;
        }
    }
    let failed = lct_fw::push::failures(&reports);
    if !failed.is_empty() {
        bail!("push failed on {} of {} nodes: {}", failed.len(), reports.len(), failed.join(", "));
    }
    Ok(())
}

/// Node records of stdin, the cluster records of stdin completed by the state directory's,
/// and the other lines.
fn read_nodes(store: &ClusterStore) -> anyhow::Result<(Vec<Node>, Vec<Cluster>, Vec<stream::Line>)> {
    let (nodes, others) = stream::read_kind_parallel::<Node, Node>(io::stdin().lock(), |n, _| n).context("stdin")?;
    let nodes: Vec<Node> = nodes.into_iter().map(|(_, n)| n).collect();
    let clusters = store.with_input(&others)?;
    Ok((nodes, clusters, others))
}

fn host_name() -> anyhow::Result<Name> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the host name")?;
    let short = raw.trim().split('.').next().unwrap_or_default().to_string();
    short.parse::<Name>().map_err(|e| UsageError(format!("the host name is not a node name ({e}); give --node")).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_specs() {
        let a = parse_allow("hdfs:namenode+journal->zookeeper:2181/tcp").unwrap();
        assert_eq!(a.from_cluster.unwrap().as_str(), "hdfs");
        assert_eq!(a.from_groups.len(), 2);
        assert_eq!(a.to_groups[0].as_str(), "zookeeper");
        let a = parse_allow("203.0.113.0/24,2001:db8::/32->*:80/tcp,443").unwrap();
        assert_eq!((a.from_cidrs.len(), a.to_groups.len(), a.ports.len()), (2, 0, 2));
        let a = parse_allow("self->*:9000-9010/udp").unwrap();
        assert!(a.from_cluster.is_none() && a.from_cidrs.is_empty());
        for bad in ["x", "a->b", "10.0.0.1/8->*:80", "a->b:0", "A->*:80"] {
            assert!(parse_allow(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
