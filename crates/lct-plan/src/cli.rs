//! lct-plan's command line: its subcommands, arguments and help (the binary parses and
//! prints; tests and docs read the same definitions).

use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand};
use lct_core::record::Name;

use crate::plan::Event;
use crate::setting::{parse_count, parse_set, parse_set_file};

const EXAMPLES: &str = "\
Examples:
  lct-plan list                                   # the plans built into lct
  lct-plan show package:zookeeper                 # what it makes, its parameters
  lct-plan validate ./my-plan.yaml --set servers=5
  lct-plan schema > plan.schema.json              # for editors (YAML language servers)
  lct-plan create zk package:zookeeper --set servers=3
  lct-plan bake zk ./zk-baked.yaml                # image-time work once: nodes from the image
  lct-plan create zk ./zk-baked.yaml --bake       # the same bake (if missing), then create
  lct-plan create pg package:postgres-ha --set zookeeper=zk \\
      --set-file superuser_password=./pg-password  # a secret from a file, not in ps
  pass pg | lct-plan create pg ... --set-file superuser_password=-  # from stdin
  lct-plan status zk
  lct-plan diff zk --count server=5              # what scale would do, changing nothing
  lct-plan scale zk server 5                     # pg's hooks follow (dependency-changed)
  lct-plan log zk node-added                     # the event's hooks and their output
  lct-plan fire zk dependent-changed             # an event by hand
  lct-plan reconcile                             # for cron / lct-plan-reconcile.timer
  lct-plan reconcile etcd --replace              # lost nodes made anew (a member replaced)
  lct-plan reconcile --watch                     # runs on: reacts to other controllers' changes
  lct-plan stop zk; lct-plan start zk
  lct-plan unlock zk                             # who holds zk's lock, since when
  lct-plan destroy pg; lct-plan destroy zk

Plans: YAML (JSON accepted), see docs/plans.md. A plan reference is package:NAME, a path, or
an HTTPS URL, pinned with #sha256=HEX (checked before use; an unpinned remote plan's shell
hooks, playbooks and `packages` actions run only with --trust-hooks).

Secrets: a parameter's value given with --set is on the command line, where every local user
reads it (`ps`). Give secrets with --set-file NAME=PATH, or NAME=- for standard input (one final
newline is dropped); --set on a secret still works, with a warning.

Templates in plans are bounded: one that takes more than 200000 steps or renders more than
256 KiB fails validate, diff and create, naming the file, line, column and field.

Exit status: 0 success, 1 failure (an invalid plan: file, line, column and field named),
2 usage error.";

/// Cluster plans: what a cluster is made of (groups, services, firewall flows, names,
/// dependencies, offered values, hooks), checked before anything is made.
#[derive(Parser)]
#[command(name = "lct-plan", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Take plans by plain-HTTP URLs too (HTTPS only otherwise)
    #[arg(long, global = true)]
    pub allow_http: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// What `create` and `bake` make a cluster's nodes from: the plan, the provider, the
/// parameters' values, and how far a plan from elsewhere is trusted.
#[derive(clap::Args)]
pub struct Making {
    /// The plan: package:NAME, a path, or an HTTPS URL (pinned with #sha256=HEX)
    pub plan: String,
    #[arg(long, short = 'p', value_enum, env = "LCT_PROVIDER", default_value_t = lct_core::record::ProviderName::default())]
    pub provider: lct_core::record::ProviderName,
    /// A parameter's value, NAME=VALUE (repeatable; a secret's is visible in `ps`: use --set-file)
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
    /// A parameter's value read from a file, NAME=PATH (NAME=- reads standard input):
    /// for secrets, e.g. --set-file superuser_password=./pg-password
    #[arg(long = "set-file", value_name = "NAME=PATH", value_parser = parse_set_file)]
    pub set_files: Vec<(String, String)>,
    /// Run the shell hooks, playbooks and `packages` actions of a plan by URL that is not
    /// pinned (#sha256=HEX)
    #[arg(long)]
    pub trust_hooks: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// The plans built into lct
    List,
    /// A plan's description, downloads, parameters, groups and services, what it opens to dependents
    Show { plan: String },
    /// Check a plan (and --set values) without making anything
    Validate {
        plan: String,
        /// A parameter's value, NAME=VALUE (repeatable; checked against its type)
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// A parameter's value read from a file, NAME=PATH (NAME=- reads standard input):
        /// for secrets, which --set would show in `ps`
        #[arg(long = "set-file", value_name = "NAME=PATH", value_parser = parse_set_file)]
        set_files: Vec<(String, String)>,
    },
    /// Make a cluster from a plan, or finish making it (a re-run never makes a node twice)
    ///
    /// With --bake, the groups whose image is `baked` get their image first: baked as
    /// `lct-plan bake` does when the repository has no entry for this plan, build and values,
    /// reused (no node) when it has.
    #[command(after_help = "Examples:\n  \
        lct-plan create zk package:zookeeper --set servers=3\n  \
        lct-plan create zk ./zookeeper-baked.yaml --bake   # bake if missing, then nodes from the image\n  \
        lct-plan create zk ./zookeeper-baked.yaml --bake --repo /mnt/images")]
    Create {
        name: Name,
        #[command(flatten)]
        making: Making,
        /// Bake the image of the groups with `image: baked` first if the repository lacks it
        #[arg(long)]
        bake: bool,
        /// The image repository of --bake (made when missing); default STATE/images/repo
        #[arg(long, env = "LCT_IMAGE_REPO")]
        repo: Option<std::path::PathBuf>,
    },
    /// Bake a plan's image-time work (its packages, lct's programs, its `baked` hooks) into an
    /// image once, for the groups of cluster NAME whose image is `baked`
    ///
    /// One node is made from the provider's Debian, does the work, is generalized (machine-id,
    /// SSH host keys, cloud-init state, apt lists, logs, histories, authorized keys, temporary
    /// files removed), stopped, and its disk added to the repository as PLAN-<hash12> (the
    /// hash of the plan's text and files, packages, base image, lct's node-side programs and
    /// the values given here); the node is deleted, also on failure. A re-run with nothing
    /// changed reuses the entry and makes no node.
    #[command(after_help = "Examples:\n  \
        lct-plan bake zk ./zookeeper-baked.yaml        # groups with `image: baked`\n  \
        lct-plan create zk ./zookeeper-baked.yaml      # its nodes from the image: nothing to install\n  \
        lct-plan scale zk server 5                     # new nodes from the same image\n  \
        lct-plan bake zk ./zookeeper-baked.yaml --repo /mnt/images   # another repository\n  \
        lct-image repo list ~/.local/state/lct/images/repo           # the entries (the default repository)")]
    Bake {
        /// The cluster the image is for (`image: baked` of cluster NAME)
        name: Name,
        #[command(flatten)]
        making: Making,
        /// The image repository (made when missing); default STATE/images/repo
        #[arg(long, env = "LCT_IMAGE_REPO")]
        repo: Option<std::path::PathBuf>,
    },
    /// Make a group N nodes (made or deleted, highest numbers first); events follow
    Scale { name: Name, group: Name, count: u32 },
    /// Stop a cluster's nodes (stopping, then stopped hooks)
    Stop { name: Name },
    /// Start a cluster's nodes again (starting, then started hooks)
    Start { name: Name },
    /// What create or scale would do, changing nothing
    Diff {
        name: Name,
        /// Compare with this plan instead of the cluster's copy
        #[arg(long)]
        plan: Option<String>,
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// A parameter's value read from a file, NAME=PATH (NAME=- reads standard input)
        #[arg(long = "set-file", value_name = "NAME=PATH", value_parser = parse_set_file)]
        set_files: Vec<(String, String)>,
        /// A group's size as scale would set it, GROUP=N
        #[arg(long = "count", value_name = "GROUP=N", value_parser = parse_count)]
        counts: Vec<(Name, u32)>,
    },
    /// Raise an event by hand: its hooks run as the operation would run them
    Fire {
        name: Name,
        /// created, starting, started, stopping, stopped, node-added, node-removing, node-removed,
        /// dependency-changed, dependent-changed, destroying (baked runs in `bake` only)
        event: Event,
    },
    /// The cluster's events, or one event's hooks with their output
    Log {
        name: Name,
        /// Show the last run of this event with every hook's output
        event: Option<Event>,
    },
    /// Find nodes added or removed behind lct's back and repair hosts files and firewalls
    /// (every cluster, or the named ones): made for cron and lct-plan-reconcile.timer
    ///
    /// A cluster in the mesh has every member's interface, peers and routes checked and put
    /// right (as `lct-mesh sync --full`), not only the members whose configuration changed.
    ///
    /// With --watch it runs until SIGTERM or Ctrl-C: every cluster once, then each again
    /// within seconds of another controller recording a change to it in the shared state
    /// (its cluster.json: a scale, a create, a stop); bursts are gathered, a busy cluster is
    /// tried again when its lock is free, an unreachable store is waited out.
    #[command(after_help = "Examples:
          lct-plan reconcile                       # every cluster once (cron, a timer)
          lct-plan reconcile etcd --replace        # lost nodes made anew
          LCT_STATE=etcd://10.0.0.1:2379/team lct-plan reconcile --watch   # react to the team's changes
          lct-plan reconcile --watch --replace zk pg  # only these, groups made whole again")]
    Reconcile {
        names: Vec<Name>,
        /// Make groups short of the plan whole again (lost nodes made anew, node-added)
        #[arg(long)]
        replace: bool,
        /// Keep running: reconcile a cluster whenever its recorded state changes (the store's
        /// watch), until SIGTERM
        #[arg(long)]
        watch: bool,
    },
    /// A cluster's plan, parameters (secrets hidden), nodes and last events
    Status { name: Name },
    /// Delete a cluster's nodes, record and state (refused while others depend on it)
    Destroy {
        name: Name,
        /// Even when other clusters depend on it, or its destroying hooks fail
        #[arg(long)]
        force: bool,
        /// Keep the cluster's volumes (detached) instead of deleting them
        #[arg(long)]
        keep_volumes: bool,
    },
    /// Who holds a cluster's lock (taken by create, scale, start, stop, reconcile, destroy,
    /// fire, bake) and since when; a stale record is cleared. A live holder is refused: its
    /// lock ends with it (on etcd within 30 s of its death). --force takes a live holder's
    /// lock away on etcd (Terraform's force-unlock): its later writes are refused (docs/state.md)
    #[command(
        after_help = "Examples:\n  lct-plan unlock zk            # who holds zk's lock; cleared if its holder is gone\n  \
                            lct-plan unlock --force zk    # etcd: take a stuck holder's lock away"
    )]
    Unlock {
        name: Name,
        /// On a shared store, break a live holder's lock (its lease revoked): its writes
        /// from then on are refused. A provider call or hook it runs may still finish
        #[arg(long)]
        force: bool,
    },
    /// The JSON Schema of the plan format
    Schema,
    /// Clusters (every one made here, or those named) and plans as a picture: groups,
    /// services, firewall flows, offered values and dependencies, as DOT or SVG (Graphviz)
    #[command(after_help = "Examples:\n  lct-plan graph | dot -Tpng > clusters.png\n  \
lct-plan graph --plan zk=package:zookeeper --plan pg=package:postgres-ha --format svg > plans.svg")]
    Graph {
        clusters: Vec<Name>,
        /// A plan drawn as the cluster it would make, [NAME=]PLAN (repeatable; parameters'
        /// defaults; NAME: the package's or the file's name)
        #[arg(long = "plan", value_name = "[NAME=]PLAN")]
        plans: Vec<String>,
        /// dot, or svg (drawn by Graphviz's `dot`)
        #[arg(long, value_enum, default_value_t = crate::graph::Format::Dot)]
        format: crate::graph::Format,
    },
    #[command(flatten)]
    Meta(MetaCommand),
}
