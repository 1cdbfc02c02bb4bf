//! `lct-api`'s command line: its arguments, their help, and the commands' work that is
//! more than printing (`main.rs` parses, calls these and prints).

pub mod create;
#[cfg(feature = "linode")]
pub mod linode;

use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand};
use lct_core::record::{Name, ProviderName};

pub const LINODE_HELP: &str = "\
Each item is printed as a JSON line with kind linode-RESOURCE (a table on a terminal). Creates
never duplicate: when the outcome of a create is unknown (a timeout, 408, 5xx), lct looks for it
by label before it tries again. Requests are paced by Linode's rate limits and retried on 429
(after Retry-After), 408, \"Linode busy.\", 503 and nginx's HTML 400.

Examples:
  lct-api linode regions list
  lct-api linode instances list --filter '{\"tags\":\"lct-cluster:zk\"}'
  lct-api linode instances shutdown 12345 --wait
  lct-api linode disks create 12345 --data '{\"label\":\"data\",\"size\":10240}' --wait
  lct-api linode volumes create --data '{\"label\":\"data-1\",\"size\":20,\"region\":\"us-east\"}' --wait
  lct-api linode images upload --data '{\"label\":\"base\",\"region\":\"us-east\"}' --file disk.img.gz --wait
  lct-api linode events list --since 2026-11-25T12:00:00
  lct-api linode nodebalancer-nodes create 7 9 --data '{\"label\":\"web-1\",\"address\":\"192.168.128.5:80\"}'

Credentials: LINODE_TOKEN, else LINODE_CLI_TOKEN, else linode-cli's ~/.config/linode-cli
(default-user). LINODE_URL points elsewhere (a test double).";

pub const EXAMPLES: &str = "\
Examples:
  # Three local nodes of cluster demo (demo-1, demo-2, demo-3)
  lct-api create --cluster demo --count 3

  # Node specs as JSON lines
  echo '{\"kind\":\"node-spec\",\"cluster\":\"zk\",\"group\":\"zookeeper\",\"name\":\"zk-1\"}' | lct-api create

  lct-api list
  lct-api stop demo-2 && lct-api start demo-2
  lct-inventory query --cluster demo | lct-api delete    # each record on its own provider

  # Volumes (loop devices on the local cloud)
  lct-api volume create data-1 --size 1G --attach demo-1

  # Machines from an lct image (a repository entry, a file or an https URL)
  lct-api create --cluster zk --count 3 --image /var/lib/lct/images/repo::zookeeper-1a2b3c4d5e6f
  lct-api lab capture zk-1      # a stopped machine's root as an ext4 disk, to image

  # Regions: each a private network of its own (the same private range in each), one
  # public network for all
  lct-api create --cluster zk --count 1 --region a && lct-api create --name zk-b --cluster zk --region b
  lct-api lab regions

  # The local lab itself
  lct-api lab status
  lct-api lab down

  # Linode (token from LINODE_TOKEN or linode-cli's configuration)
  lct-api -p linode create --cluster zk --count 3 --region us-east --type g6-standard-1
  lct-api linode instances list --filter '{\"region\":\"us-east\"}'
  lct-api linode volumes attach 12345 --data '{\"linode_id\":678}' --wait

Exit status: 0 success, 1 failure (each failed node is named; start, stop and delete of a node
that does not exist fail unless --missing-ok), 2 usage error.
Environment: LCT_PROVIDER, LCT_STATE_DIR (default /var/lib/lct), LCT_LAB (default lct).";

/// Create, list, start, stop and delete nodes and volumes on a cloud provider.
///
/// The local provider (the default) needs no account: its nodes are Linux network
/// namespaces on this machine, with a private and a public address each.
#[derive(Parser)]
#[command(name = "lct-api", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Which provider to talk to [default: local]; node records piped to start, stop and
    /// delete go to the provider each names
    #[arg(long, short = 'p', global = true, value_enum, env = "LCT_PROVIDER")]
    pub provider: Option<ProviderName>,
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create nodes (from flags, or node-spec JSON lines on stdin); existing ones are kept
    Create {
        /// Cluster of the new nodes
        #[arg(long, requires = "count_or_name")]
        cluster: Option<Name>,
        /// Group (role) of the new nodes
        #[arg(long, default_value = "node")]
        group: Name,
        /// Create CLUSTER-1 ... CLUSTER-N (or CLUSTER-GROUP-i with --group)
        #[arg(long, group = "count_or_name")]
        count: Option<u32>,
        /// Names of the nodes to create
        #[arg(long = "name", group = "count_or_name", num_args = 1..)]
        names: Vec<Name>,
        /// Tags for the new nodes
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Region of the new nodes. Linode's [default: $LCT_LINODE_REGION or us-east]; local:
        /// any name of 1-12 lower-case letters, digits, hyphens [default: local], each region
        /// a private network of its own whose addresses overlap the others'
        /// (`lct-api lab regions` lists them)
        #[arg(long)]
        region: Option<String>,
        /// Instance type (Linode) [default: $LCT_LINODE_TYPE or g6-nanode-1]
        #[arg(long = "type")]
        node_type: Option<String>,
        /// Image: Linode's [default: $LCT_LINODE_IMAGE or linode/debian12]; local: lct/netns
        /// (a namespace, the default) or debian-12 (a machine: systemd, sshd, apt); or an lct
        /// image (REPO::NAME, a file, an https URL), checked whole before any node is made
        #[arg(long)]
        image: Option<String>,
        /// cloud-init user-data of your own, merged with lct's at first boot (a file)
        #[arg(long, value_name = "FILE")]
        user_data: Option<std::path::PathBuf>,
        /// How many creations run at once (Linode; the rate limits pace them anyway)
        #[arg(long, default_value_t = 32)]
        parallel: usize,
    },
    /// List nodes
    List {
        /// Only nodes of this cluster
        #[arg(long)]
        cluster: Option<Name>,
    },
    /// Show one node
    Get { name: Name },
    /// Boot nodes (names, or node records on stdin, each on its own provider)
    Start {
        names: Vec<Name>,
        /// A node that does not exist is no failure (a warning)
        #[arg(long)]
        missing_ok: bool,
    },
    /// Shut nodes down (names, or node records on stdin, each on its own provider)
    Stop {
        names: Vec<Name>,
        /// A node that does not exist is no failure (a warning)
        #[arg(long)]
        missing_ok: bool,
    },
    /// Delete nodes (names, or node records on stdin, each on its own provider); volumes
    /// stay, detached. A node that does not exist is a failure unless --missing-ok
    Delete {
        names: Vec<Name>,
        /// A node that does not exist is no failure (a warning)
        #[arg(long)]
        missing_ok: bool,
    },
    /// Block volumes
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// The local cloud's lab: its namespaces and bridges
    #[command(subcommand)]
    Lab(LabCommand),
    /// Any Linode API resource: RESOURCE VERB [PARENT-IDS...] [ID]
    #[command(after_help = LINODE_HELP)]
    #[cfg(feature = "linode")]
    Linode(LinodeArgs),
    #[command(flatten)]
    Meta(MetaCommand),
}

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (sizes like 512M, 10G; plain numbers are GiB, as Linode's)
    Create {
        label: Name,
        #[arg(long, value_parser = parse_size_mib)]
        size: u64,
        /// Attach it to this node once created
        #[arg(long)]
        attach: Option<Name>,
    },
    /// List volumes
    List,
    /// Attach a volume to a node
    Attach { label: Name, node: Name },
    /// Detach a volume
    Detach { label: Name },
    /// Delete volumes (detaching them first)
    Delete { labels: Vec<Name> },
}

#[derive(Subcommand)]
pub enum LabCommand {
    /// Show the lab's namespaces and counts
    Status,
    /// Re-check every namespace, link, address and loop device and fix what is missing
    Repair,
    /// The regions: each a private network of its own (`create --region NAME` makes one;
    /// their private ranges overlap), all on one public network
    Regions,
    /// Delete every node and volume, the lab and the outside namespaces, and the state
    Down,
    /// The package mirror machines install from (they have no route out)
    #[command(subcommand)]
    Packages(PackagesCommand),
    /// Stop a machine and write its root as a raw ext4 disk, what `lct-plan bake` images
    /// (prints the file; `lct-image repo add REPO FILE --name NAME` takes it)
    Capture {
        node: Name,
        /// Remove the disk a capture wrote instead
        #[arg(long)]
        release: bool,
    },
    /// (internal) a machine's supervisor: boots it again when it reboots itself
    #[command(hide = true)]
    RunMachine {
        #[arg(long)]
        state_dir: std::path::PathBuf,
        #[arg(long)]
        lab: String,
        #[arg(long)]
        pid_file: std::path::PathBuf,
        /// systemd-nspawn's arguments
        #[arg(last = true, required = true)]
        nspawn_args: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum PackagesCommand {
    /// Download Debian packages and what they need into the mirror
    Add {
        #[arg(required = true)]
        packages: Vec<String>,
    },
    /// The packages the mirror holds
    List,
}

pub fn parse_size_mib(s: &str) -> Result<u64, String> {
    crate::parse_size_mib(s)
}

/// `lct-api linode RESOURCE VERB ...`: the generic path to every resource.
#[derive(clap::Args)]
pub struct LinodeArgs {
    /// instances, disks, configs, ips, images, volumes, domains, records, firewalls,
    /// firewall-rules, firewall-devices, regions, types, events, tags, stackscripts,
    /// nodebalancers, nodebalancer-configs, nodebalancer-nodes
    pub resource: String,
    /// list, get, create, update, delete, or an action (boot, shutdown, reboot, clone,
    /// attach, detach; images: upload)
    pub verb: String,
    /// The parents' ids (an instance's for disks), then the item's
    pub ids: Vec<String>,
    /// X-Filter, as JSON (list)
    #[arg(long, value_name = "JSON")]
    pub filter: Option<String>,
    /// The request body, as JSON, or @FILE [default: JSON lines on stdin, one request each]
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// Wait until it is done (instances running, disks ready, volumes active, images available)
    #[arg(long)]
    pub wait: bool,
    /// images upload: the gzip'd raw disk image to upload
    #[arg(long, value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,
    /// events list: only events created at or after this time (YYYY-MM-DDTHH:MM:SS, UTC)
    #[arg(long)]
    pub since: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_mib("512M"), Ok(512));
        assert_eq!(parse_size_mib("10"), Ok(10 * 1024));
        assert_eq!(parse_size_mib("1GiB"), Ok(1024));
        assert!(parse_size_mib("0M").is_err());
        assert!(parse_size_mib("1X").is_err());
        assert!(parse_size_mib("G").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
