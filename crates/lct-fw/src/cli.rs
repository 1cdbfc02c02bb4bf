//! lct-fw's command line: its subcommands, arguments and help (the binary parses and prints;
//! tests and docs read the same definitions).

use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand};
use lct_core::prefix::Prefix;
use lct_core::record::{Name, ProviderName};

use crate::model::{Allow, Mode};
use crate::sync::Backend;

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

On Linux 6.9 and later the watcher first makes the table its own (nf_tables' table flags
owner and persist, taken over in one commit): `nft flush ruleset` then leaves it in place
and any other process's change to it (`nft delete table inet lct`, a rule added) is refused,
so nothing is exposed meanwhile. `lct-fw sync`, `remove` and a roll-back then hand their
change to the watcher over a unix socket beside lct-fw's memory in /run/lct/fw (root only),
and it applies them. When the watcher stops the table stays, unowned, and the next watcher
takes it over. On older kernels (Debian 12's 6.1 has owner but not persist: an owned table
would die with the watcher), or with --restore-only, it puts the table back after the fact.
Runs until stopped; on nodes it is the lct-fw-watch systemd service (Restart=always),
installed and started by `lct-inventory install`.";

/// Host firewalls that follow cluster membership: nftables rules applied in-process over
/// netlink, atomically, with SSH from the admin prefixes always admitted.
#[derive(Parser)]
#[command(name = "lct-fw", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        #[arg(long = "allow", value_name = "SPEC")]
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
    Watch {
        /// Never own the table: put it back after others' changes (as on kernels before 6.9)
        #[arg(long)]
        restore_only: bool,
    },
    /// Delete this host's `inet lct` table (or, with iptables, lct's chains)
    Remove {
        #[arg(long, value_enum, default_value_t = Backend::Nft)]
        backend: Backend,
    },
    #[command(flatten)]
    Meta(MetaCommand),
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    ManagedPorts,
    DefaultDeny,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Nft,
}

pub fn parse_cidr(s: &str) -> Result<Prefix, String> {
    s.parse().map_err(|e: lct_core::prefix::PrefixError| e.to_string())
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::ManagedPorts => Mode::ManagedPorts,
            ModeArg::DefaultDeny => Mode::DefaultDeny,
        }
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
