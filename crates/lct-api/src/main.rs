//! `lct-api`: nodes and volumes on a provider from the command line (arguments and output only).

use std::io::{self, IsTerminal};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use lct_api::act::Action;
use lct_api::local::LocalCloud;
use lct_api::{AnyProvider, Provider, VolumeSpec};
use lct_core::cli::{GlobalArgs, MetaCommand, OutputFormat, UsageError};
use lct_core::record::{Name, Node, NodeSpec, ProviderName};
use lct_core::stream::{self, Writer};
use lct_core::table::emit;

const LINODE_HELP: &str = "\
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

const EXAMPLES: &str = "\
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
struct Cli {
    /// Which provider to talk to [default: local]; node records piped to start, stop and
    /// delete go to the provider each names
    #[arg(long, short = 'p', global = true, value_enum, env = "LCT_PROVIDER")]
    provider: Option<ProviderName>,
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        /// Region of the new nodes (Linode) [default: $LCT_LINODE_REGION or us-east]
        #[arg(long)]
        region: Option<String>,
        /// Instance type (Linode) [default: $LCT_LINODE_TYPE or g6-nanode-1]
        #[arg(long = "type")]
        node_type: Option<String>,
        /// Image: Linode's [default: $LCT_LINODE_IMAGE or linode/debian12]; local: lct/netns
        /// (a namespace, the default) or debian-12 (a machine: systemd, sshd, apt)
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
    Linode {
        /// instances, disks, configs, ips, images, volumes, domains, records, firewalls,
        /// firewall-rules, firewall-devices, regions, types, events, tags, stackscripts,
        /// nodebalancers, nodebalancer-configs, nodebalancer-nodes
        resource: String,
        /// list, get, create, update, delete, or an action (boot, shutdown, reboot, clone,
        /// attach, detach; images: upload)
        verb: String,
        /// The parents' ids (an instance's for disks), then the item's
        ids: Vec<String>,
        /// X-Filter, as JSON (list)
        #[arg(long, value_name = "JSON")]
        filter: Option<String>,
        /// The request body, as JSON, or @FILE [default: JSON lines on stdin, one request each]
        #[arg(long, value_name = "JSON")]
        data: Option<String>,
        /// Wait until it is done (instances running, disks ready, volumes active, images available)
        #[arg(long)]
        wait: bool,
        /// images upload: the gzip'd raw disk image to upload
        #[arg(long, value_name = "FILE")]
        file: Option<std::path::PathBuf>,
        /// events list: only events created at or after this time (YYYY-MM-DDTHH:MM:SS, UTC)
        #[arg(long)]
        since: Option<String>,
    },
    #[command(flatten)]
    Meta(MetaCommand),
}

#[derive(Subcommand)]
enum VolumeCommand {
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
enum LabCommand {
    /// Show the lab's namespaces and counts
    Status,
    /// Re-check every namespace, link, address and loop device and fix what is missing
    Repair,
    /// Delete every node and volume, the lab and the outside namespaces, and the state
    Down,
    /// The package mirror machines install from (they have no route out)
    #[command(subcommand)]
    Packages(PackagesCommand),
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
enum PackagesCommand {
    /// Download Debian packages and what they need into the mirror
    Add {
        #[arg(required = true)]
        packages: Vec<String>,
    },
    /// The packages the mirror holds
    List,
}

fn parse_size_mib(s: &str) -> Result<u64, String> {
    lct_api::parse_size_mib(s)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run("lct-api", || {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(run(cli))
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.global.output();
    if let Command::Meta(meta) = &cli.command {
        return meta.run::<Cli>();
    }
    if let Command::Lab(LabCommand::RunMachine { state_dir, lab, pid_file, nspawn_args }) = &cli.command {
        use lct_api::local::reboot::{Supervised, run};
        return Ok(run(&Supervised { state_dir, lab, pid_file, nspawn_args })?);
    }
    if let Command::Linode { resource, verb, ids, filter, data, wait, file, since } = cli.command {
        return linode(LinodeArgs { resource, verb, ids, filter, data, wait, file, since }, format).await;
    }
    let chosen = cli.provider;
    // Start, stop and delete act on each node's own provider (records say which).
    let command = match cli.command {
        Command::Start { names, missing_ok } => return act_on(names, chosen, Action::Start, missing_ok, format).await,
        Command::Stop { names, missing_ok } => return act_on(names, chosen, Action::Stop, missing_ok, format).await,
        Command::Delete { names, missing_ok } => {
            return act_on(names, chosen, Action::Delete, missing_ok, format).await;
        }
        other => other,
    };
    let provider = AnyProvider::from_env(chosen.unwrap_or_default())?;
    match command {
        Command::Create { cluster, group, count, names, tags, region, node_type, image, user_data, parallel } => {
            let user_data = match user_data {
                Some(path) => {
                    Some(std::fs::read_to_string(&path).with_context(|| format!("--user-data {}", path.display()))?)
                }
                None => None,
            };
            let specs = match cluster {
                Some(cluster) => {
                    let mut specs = specs_from_flags(cluster, group, count, names, tags)?;
                    for s in &mut specs {
                        s.region = region.clone();
                        s.node_type = node_type.clone();
                        s.image = image.clone();
                        s.user_data = user_data.clone();
                    }
                    specs
                }
                None => {
                    if io::stdin().is_terminal() {
                        return Err(UsageError(
                            "give --cluster with --count or --name, or pipe node-spec records".into(),
                        )
                        .into());
                    }
                    read_specs()?
                }
            };
            create_all(provider, specs, parallel.max(1), format).await
        }
        Command::List { cluster } => {
            let mut nodes = provider.list().await?;
            if let Some(c) = cluster {
                nodes.retain(|n| n.cluster == c);
            }
            Ok(emit(&nodes, format)?)
        }
        Command::Get { name } => {
            let nodes = provider.list().await?;
            let node = nodes.into_iter().find(|n| n.name == name).with_context(|| format!("no node named {name}"))?;
            Ok(emit(&[node], format)?)
        }
        Command::Volume(cmd) => volume(&provider, cmd, format).await,
        Command::Lab(cmd) => {
            let AnyProvider::Local(local) = &provider else {
                return Err(UsageError("lab is the local cloud's: use --provider local".into()).into());
            };
            lab(local, cmd, format)
        }
        Command::Meta(_)
        | Command::Linode { .. }
        | Command::Start { .. }
        | Command::Stop { .. }
        | Command::Delete { .. } => {
            unreachable!("handled above")
        }
    }
}

struct LinodeArgs {
    resource: String,
    verb: String,
    ids: Vec<String>,
    filter: Option<String>,
    data: Option<String>,
    wait: bool,
    file: Option<std::path::PathBuf>,
    since: Option<String>,
}

/// `lct-api linode RESOURCE VERB ...`: the generic path to every resource.
async fn linode(args: LinodeArgs, format: OutputFormat) -> anyhow::Result<()> {
    use lct_api::linode::resources::{self, Call, RESOURCES};
    use serde_json::Value;
    let resource = resources::find(&args.resource).ok_or_else(|| {
        UsageError(format!(
            "no resource {:?}; there are: {}",
            args.resource,
            RESOURCES.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
        ))
    })?;
    resources::check(resource, &args.verb, &args.ids).map_err(UsageError)?;
    let parse = |what: &str, text: &str| -> anyhow::Result<Value> {
        serde_json::from_str(text).map_err(|e| UsageError(format!("--{what}: not JSON: {e}")).into())
    };
    let mut filter = args.filter.as_deref().map(|f| parse("filter", f)).transpose()?;
    if let Some(since) = &args.since {
        let mut f = filter.take().unwrap_or(serde_json::json!({}));
        f["created"] = serde_json::json!({ "+gte": since });
        filter = Some(f);
    }
    // Bodies: --data, or a JSON line each on stdin (kind and v dropped), or none.
    let takes_body = !matches!(args.verb.as_str(), "list" | "get" | "delete");
    let bodies: Vec<Option<Value>> = match (&args.data, takes_body && !io::stdin().is_terminal()) {
        (Some(d), _) => {
            // A secret in an argument is in every process list: say so (stdin and @FILE are not).
            if ["root_pass", "password", "secret", "token"].iter().any(|k| d.contains(k)) {
                tracing::warn!(
                    "--data holds what looks like a secret; other users can read arguments: use @FILE or stdin"
                );
            }
            // `@FILE` reads the body from a file, as curl does.
            let text = match d.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file).with_context(|| format!("--data {d}"))?,
                None => d.clone(),
            };
            vec![Some(parse("data", &text)?)]
        }
        (None, true) => {
            let mut out = Vec::new();
            for (n, line) in io::read_to_string(io::stdin())?.lines().enumerate().filter(|(_, l)| !l.trim().is_empty())
            {
                let mut v: Value = serde_json::from_str(line).map_err(|e| {
                    let what = e.to_string();
                    let what = what.split(" at line ").next().unwrap_or_default().to_string();
                    anyhow::anyhow!("stdin: line {}, column {}: {what}", n + 1, e.column())
                })?;
                if let Value::Object(m) = &mut v {
                    m.remove("kind");
                    m.remove("v");
                }
                out.push(Some(v));
            }
            if out.is_empty() { vec![None] } else { out }
        }
        (None, false) => vec![None],
    };
    let provider = lct_api::linode::LinodeProvider::from_env()?;
    let api = &provider.api;
    let mut items = Vec::new();
    let mut failed = 0;
    for body in bodies {
        let result = if resource.name == "images" && args.verb == "upload" {
            upload_image(api, body, args.file.as_deref(), args.wait).await
        } else {
            let call = Call {
                resource,
                verb: &args.verb,
                ids: args.ids.clone(),
                filter: filter.clone(),
                body,
                wait: args.wait,
            };
            resources::run(api, call).await.map_err(anyhow::Error::from)
        };
        match result {
            Ok(made) => items.extend(made),
            Err(e) => {
                eprintln!("lct-api: {} {}: {e:#}", resource.name, args.verb);
                failed += 1;
            }
        }
    }
    match format {
        OutputFormat::Jsonl => {
            let mut out = io::stdout().lock();
            for item in items {
                use std::io::Write;
                writeln!(out, "{}", lct_api::linode::with_kind(resource.kind, item))?;
            }
        }
        OutputFormat::Table => {
            let mut t = lct_core::table::Table::new(&["ID", "NAME", "STATUS", "REGION"]);
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            for v in &items {
                let name =
                    ["label", "domain", "address", "name", "action"].iter().map(|k| &v[*k]).find(|x| !x.is_null());
                let status = ["status", "type", "class"].iter().map(|k| &v[*k]).find(|x| !x.is_null());
                t.row(vec![
                    text(&v["id"]),
                    name.map(text).unwrap_or_default(),
                    status.map(text).unwrap_or_default(),
                    text(&v["region"]),
                ]);
            }
            t.print()?;
        }
    }
    if failed > 0 {
        bail!("{failed} request(s) failed");
    }
    Ok(())
}

/// `images upload`: the image record, the PUT of the gzip'd file, and (with --wait) until it
/// is available.
async fn upload_image(
    api: &lct_api::linode::api::Linode,
    body: Option<serde_json::Value>,
    file: Option<&std::path::Path>,
    wait: bool,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let body = body.ok_or_else(|| UsageError("images upload needs --data '{\"label\":...,\"region\":...}'".into()))?;
    let file = file.ok_or_else(|| UsageError("images upload needs --file IMAGE.gz".into()))?;
    let bytes = std::fs::read(file).with_context(|| file.display().to_string())?;
    if bytes.len() < 2 || bytes[..2] != [0x1f, 0x8b] {
        bail!("{}: not gzip'd (upload a raw disk image compressed with gzip)", file.display());
    }
    // Linode's limits: 5 GB compressed.
    if bytes.len() as u64 > 5_000_000_000 {
        bail!("{}: larger than the 5 GB an upload may be", file.display());
    }
    let label = body["label"].as_str().unwrap_or_default();
    let region = body["region"].as_str().unwrap_or_default();
    lct_api::linode::validate::label("label", label)?;
    lct_api::linode::validate::region("region", region)?;
    let started = api.upload_image(label, region, body["description"].as_str().unwrap_or("")).await?;
    api.put_upload(&started.upload_to, bytes).await?;
    let image = if wait { api.wait_image(&started.image.id).await? } else { api.image(&started.image.id).await? };
    Ok(vec![serde_json::to_value(image)?])
}

fn specs_from_flags(
    cluster: Name,
    group: Name,
    count: Option<u32>,
    names: Vec<Name>,
    tags: Vec<String>,
) -> anyhow::Result<Vec<NodeSpec>> {
    let names = match count {
        Some(n) => (1..=n)
            .map(|i| {
                let name =
                    if group.as_str() == "node" { format!("{cluster}-{i}") } else { format!("{cluster}-{group}-{i}") };
                name.parse::<Name>()
            })
            .collect::<Result<Vec<_>, _>>(),
        None => Ok(names),
    };
    let names = names.map_err(|e| UsageError(format!("--count: generated {e}")))?;
    Ok(names
        .into_iter()
        .map(|name| NodeSpec {
            cluster: cluster.clone(),
            group: group.clone(),
            name,
            region: None,
            node_type: None,
            image: None,
            tags: tags.clone(),
            user_data: None,
        })
        .collect())
}

fn read_specs() -> anyhow::Result<Vec<NodeSpec>> {
    let (specs, others) = stream::read_kind::<NodeSpec>(io::stdin().lock()).context("stdin")?;
    if let Some(other) = others.first() {
        bail!("stdin: line {}: kind {:?} is not a node-spec", other.number, other.kind);
    }
    Ok(specs)
}

/// `start`, `stop`, `delete`: the nodes named (on the chosen provider) or piped (each on its
/// own), acted on, each failure named; a missing node fails unless `missing_ok`.
async fn act_on(
    names: Vec<Name>,
    chosen: Option<ProviderName>,
    action: Action,
    missing_ok: bool,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let records = if !names.is_empty() {
        Vec::new()
    } else if io::stdin().is_terminal() {
        return Err(UsageError("name the nodes, or pipe node records".into()).into());
    } else {
        let (nodes, _) = stream::read_kind::<Node>(io::stdin().lock()).context("stdin")?;
        if nodes.is_empty() {
            tracing::warn!("no node records on stdin; nothing to {}", action.as_str());
        }
        nodes
    };
    let targets = lct_api::act::targets(names, records, chosen)?;
    let mut nodes = Vec::new();
    let mut failed = 0;
    for (target, outcome) in lct_api::act::act(&targets, action).await {
        let verb = action.as_str();
        match outcome {
            Ok(Some(node)) => nodes.push(node),
            Ok(None) => tracing::info!(node = %target.name, provider = %target.provider, "{verb}: done"),
            Err(lct_api::ProviderError::NoSuchNode(name)) if missing_ok => {
                tracing::warn!("{verb} {name}: no such node on {}; nothing to do (--missing-ok)", target.provider);
            }
            Err(lct_api::ProviderError::NoSuchNode(name)) => {
                eprintln!("lct-api: {verb} {name}: no node named {name} on {}", target.provider);
                failed += 1;
            }
            Err(e) => {
                eprintln!("lct-api: {verb} {} (on {}): {e}", target.name, target.provider);
                failed += 1;
            }
        }
    }
    if action != Action::Delete {
        emit(&nodes, format)?;
    }
    if failed > 0 {
        bail!("{failed} of {} nodes failed to {}", targets.len(), action.as_str());
    }
    Ok(())
}

async fn create_all(
    provider: AnyProvider,
    specs: Vec<NodeSpec>,
    parallel: usize,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let total = specs.len();
    // The local cloud serialises its creates (one at a time, in input order, so demo-1 gets
    // .1), but machines then boot and come up side by side; Linode's creates run in
    // parallel, paced by its rate limits.
    let serial = provider.name() == ProviderName::Local;
    let parallel = if serial { total.max(1) } else { parallel.max(1) };
    let provider = Arc::new(provider);
    let gate = Arc::new(tokio::sync::Mutex::new(()));
    let mut created = Vec::new();
    let mut out = Writer::new(io::stdout().lock());
    let mut failed = 0;
    // A bar on a terminal (cron and pipes see none): a bulk create takes minutes on Linode.
    let bar = if io::stderr().is_terminal() && total > 1 {
        indicatif::ProgressBar::new(total as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} nodes running [{elapsed}] {wide_bar} {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    // At most `parallel` nodes in the making at once; a finished one is reported (record and
    // bar) at once, so records stream out as nodes are ready.
    let mut specs = specs.into_iter().peekable();
    let mut tasks: tokio::task::JoinSet<(NodeSpec, Result<Node, lct_api::ProviderError>)> = tokio::task::JoinSet::new();
    let mut report = |joined: Result<(NodeSpec, Result<Node, lct_api::ProviderError>), tokio::task::JoinError>,
                      out: &mut Writer<_>|
     -> anyhow::Result<()> {
        let (spec, result) = joined?;
        bar.inc(1);
        match result {
            Ok(node) => {
                // Each node is printed as soon as it is ready, so a pipeline can start on it.
                if format == OutputFormat::Jsonl {
                    out.write(&node)?;
                    out.flush()?;
                }
                created.push(node);
            }
            Err(e) => {
                bar.suspend(|| eprintln!("lct-api: create {}: {e}", spec.name));
                failed += 1;
                bar.set_message(format!("{failed} failed"));
            }
        }
        Ok(())
    };
    loop {
        if specs.peek().is_some() && tasks.len() < parallel {
            // The next create may start once the previous one has (serial) or at once.
            let permit = if serial {
                tokio::select! {
                    biased;
                    Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                        report(joined, &mut out)?;
                        continue;
                    }
                    permit = gate.clone().lock_owned() => Some(permit),
                }
            } else {
                None
            };
            let spec = specs.next().expect("peeked");
            let provider = provider.clone();
            tasks.spawn(async move {
                let result = provider.create(&spec).await;
                drop(permit);
                let result = match result {
                    Ok(node) => provider.wait_ready(node).await,
                    Err(e) => Err(e),
                };
                (spec, result)
            });
        } else if let Some(joined) = tasks.join_next().await {
            report(joined, &mut out)?;
        } else {
            break;
        }
    }
    bar.finish_and_clear();
    drop(out);
    // The clusters' records remember where their nodes are: queries by cluster find them
    // without --provider.
    let clusters: std::collections::BTreeSet<Name> = created.iter().map(|n| n.cluster.clone()).collect();
    let store = lct_core::state::ClusterStore::new(&lct_core::state::state_dir());
    match lct_api::remember_provider(&store, &clusters, provider.name()).await {
        Ok(changed) => {
            for c in changed {
                let on: Vec<&str> = c.providers().iter().map(|p| p.as_str()).collect();
                tracing::info!(cluster = %c.name, "its record says its nodes are on {}", on.join(", "));
            }
        }
        Err(e) => tracing::warn!(
            "{path}: the cluster records do not say these nodes are on {p} ({e}): queries by cluster need --provider {p}",
            path = store.path().display(),
            p = provider.name()
        ),
    }
    if format == OutputFormat::Table {
        created.sort_by(|a, b| a.name.cmp(&b.name));
        emit(&created, format)?;
    }
    if failed > 0 {
        bail!("{failed} of {total} nodes failed");
    }
    Ok(())
}

async fn volume(provider: &AnyProvider, cmd: VolumeCommand, format: OutputFormat) -> anyhow::Result<()> {
    let show = |v| emit(&[v], format);
    match cmd {
        VolumeCommand::Create { label, size, attach } => {
            let mut v =
                provider.create_volume(&VolumeSpec { label: label.clone(), size_mib: size, region: None }).await?;
            if let Some(node) = attach {
                v = provider.attach_volume(&label, &node).await?;
            }
            show(v)?;
        }
        VolumeCommand::List => emit(&provider.volumes().await?, format)?,
        VolumeCommand::Attach { label, node } => show(provider.attach_volume(&label, &node).await?)?,
        VolumeCommand::Detach { label } => show(provider.detach_volume(&label).await?)?,
        VolumeCommand::Delete { labels } => {
            for label in labels {
                if !provider.delete_volume(&label).await? {
                    tracing::warn!(volume = %label, "no such volume; nothing to delete");
                }
            }
        }
    }
    Ok(())
}

fn lab(local: &LocalCloud, cmd: LabCommand, format: OutputFormat) -> anyhow::Result<()> {
    match cmd {
        LabCommand::Status => {
            let s = local.status()?;
            match format {
                OutputFormat::Jsonl => {
                    println!("{}", lct_core::stream::to_line(&s));
                }
                OutputFormat::Table => {
                    println!("lab        {}", s.lab);
                    println!(
                        "bridges    {} ({})",
                        s.lab_namespace,
                        if s.lab_namespace_exists { "up" } else { "absent" }
                    );
                    println!(
                        "outside    {} {} {} ({})",
                        s.outside_namespace,
                        s.outside_ipv4,
                        s.outside_ipv6,
                        if s.outside_namespace_exists { "up" } else { "absent" }
                    );
                    println!("nodes      {}", s.nodes);
                    println!("volumes    {}", s.volumes);
                }
            }
        }
        LabCommand::Repair => local.repair_all()?,
        LabCommand::RunMachine { .. } => unreachable!("handled before the provider"),
        LabCommand::Down => local.destroy()?,
        LabCommand::Packages(PackagesCommand::Add { packages }) => {
            let added = local.images().add_packages(&packages)?;
            eprintln!("lct-api: {} package file(s) added to the mirror", added.len());
            for file in added {
                println!("{file}");
            }
        }
        LabCommand::Packages(PackagesCommand::List) => {
            for (name, version) in local.images().mirror_packages()? {
                println!("{name} {version}");
            }
        }
    }
    Ok(())
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
