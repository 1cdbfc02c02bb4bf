//! lct-mesh's command line: its subcommands, arguments and help (the binary parses and runs).

use clap::{Parser, Subcommand};
use ipnet::Ipv4Net;
use lct_core::cli::{GlobalArgs, MetaCommand};
use lct_core::record::{Name, ProviderName};

use crate::model::Topology;

const EXAMPLES: &str = "\
Examples:
  # Every node of the inventory in one mesh: one leader per region (Kilo-style)
  lct-mesh sync
  # Only some nodes, or regions by record (JSON lines in)
  lct-inventory query --cluster zk | lct-mesh sync
  lct-mesh sync --topology full --prefix 10.250.0.0/16      # on the first sync only
  # Every node contacted, not only those whose configuration changed (undoes drift)
  lct-mesh sync --full

  # Follow membership: a sync every 2 s (a leader gone is replaced within that, and
  # lct-fw pushed to the clusters whose firewalls follow it, where one is declared), every
  # node verified every 15th round
  lct-mesh watch --interval 2 --verify-every 15
  # As a unit: the lct-fw it runs is the one beside it, or one named by absolute path
  lct-mesh watch --lct-fw /usr/local/bin/lct-fw

  # Peers, last handshakes and bytes, from `wg show dump` on every node
  lct-mesh status
  # The picture: regions as boxes, leaders, tunnels with handshake ages
  lct-mesh graph > mesh.dot
  lct-mesh graph --format svg > mesh.svg

  # Leave: interfaces, routes and keys removed on the nodes, the record forgotten
  lct-mesh down

Nodes come from stdin when records are piped, else from the inventory. A node's mesh
address is recorded ($LCT_STATE_DIR/mesh.json) and kept; a tag mesh-address=ADDR pins it.
A sync contacts only the nodes whose planned configuration differs from the one they last
applied (recorded as a digest); each contacted node's report has its apply_ms.
Keys are made on the nodes and never leave them. Exit status: 0 success, 1 failure (a node
failed, each named), 2 usage error.";

/// A WireGuard mesh across regions: each node a mesh address, one leader per region (or
/// every node a peer of every other), kept in step with the inventory.
#[derive(Parser)]
#[command(name = "lct-mesh", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone)]
pub struct Reach {
    /// Providers to ask when no records are piped (repeatable)
    #[arg(long = "provider", short = 'p', value_enum, long_help = lct_inventory::providers_long_help())]
    pub providers: Vec<ProviderName>,
    /// How many nodes at once
    #[arg(long, default_value_t = 32)]
    pub parallel: usize,
    /// Give up on a node after this many seconds
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// lct-mesh on remote (ssh) nodes
    #[arg(long, default_value = "lct-mesh")]
    pub remote_bin: String,
}

#[derive(Subcommand)]
pub enum Command {
    /// Plan the mesh and push it: keys made on the nodes, configuration and routes applied
    Sync {
        /// The mesh prefix (first sync; recorded then)
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<Ipv4Net>,
        /// leader (default) or full (first sync; recorded then)
        #[arg(long, value_enum)]
        topology: Option<Topology>,
        /// WireGuard's UDP port (first sync; recorded then) [default: 51820]
        #[arg(long)]
        port: Option<u16>,
        /// Contact every node, also those whose planned configuration is the one they last
        /// applied (by default they are left alone): finds drift, such as an interface or a
        /// route removed by hand
        #[arg(long)]
        full: bool,
        #[command(flatten)]
        reach: Reach,
    },
    /// Sync again and again: a leader that went away is replaced within an interval, and the
    /// firewalls that follow the mesh are pushed (the lct-fw beside lct-mesh, or --lct-fw;
    /// never one found on the PATH)
    Watch {
        /// Seconds between syncs
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// Every this many rounds, a full sync (every node contacted, drift undone); the
        /// others contact only the nodes whose configuration changed. 1: every round
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
        verify_every: u64,
        /// Node records from this file, read again each round [default: the inventory]
        #[arg(long, value_name = "FILE")]
        records: Option<std::path::PathBuf>,
        /// The lct-fw to push with, an absolute path [default: the one beside lct-mesh]
        #[arg(long, value_name = "PATH")]
        lct_fw: Option<std::path::PathBuf>,
        #[command(flatten)]
        reach: Reach,
    },
    /// Every node's peers, last handshakes and bytes
    Status {
        #[command(flatten)]
        reach: Reach,
    },
    /// The mesh as Graphviz DOT, or SVG through dot
    Graph {
        /// dot (default) or svg
        #[arg(long, default_value = "dot", value_parser = ["dot", "svg"])]
        format: String,
        /// The planned tunnels only: no status asked of the nodes
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        reach: Reach,
    },
    /// Take the mesh down on every node and forget it
    Down {
        #[command(flatten)]
        reach: Reach,
    },
    /// On a node: bring it to the mesh-config record on stdin (lct-mesh sync runs this)
    #[command(hide = true)]
    Apply {
        /// Only make (if needed) and report this node's key, and the interface
        #[arg(long)]
        key: bool,
        #[arg(long)]
        interface: Option<String>,
    },
    /// On a node: its peers (lct-mesh status runs this)
    #[command(hide = true)]
    Peers {
        #[arg(long)]
        interface: String,
        #[arg(long)]
        node: Name,
    },
    /// On a node: leave the mesh (lct-mesh down runs this)
    #[command(name = "down-here", hide = true)]
    DownHere {
        #[arg(long)]
        interface: String,
    },
    #[command(flatten)]
    Meta(MetaCommand),
}
