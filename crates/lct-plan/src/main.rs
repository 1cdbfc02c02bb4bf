//! `lct-plan`: cluster plans on the command line (arguments and output only).

use std::path::Path;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand, UsageError};
use lct_core::record::Name;
use lct_plan::cluster::Trust;
use lct_plan::hooks::Tools;
use lct_plan::plan::{Count, Event};
use lct_plan::setting::{Settings, parse_set_file};
use lct_plan::{PACKAGES, PlanRef, parameters, parse};

const EXAMPLES: &str = "\
Examples:
  lct-plan list                                   # the plans built into lct
  lct-plan show package:zookeeper                 # what it makes, its parameters
  lct-plan validate ./my-plan.yaml --set servers=5
  lct-plan schema > plan.schema.json              # for editors (YAML language servers)
  lct-plan create zk package:zookeeper --set servers=3
  lct-plan create pg package:postgres-ha --set zookeeper=zk \\
      --set-file superuser_password=./pg-password  # a secret from a file, not in ps
  pass pg | lct-plan create pg ... --set-file superuser_password=-  # from stdin
  lct-plan status zk
  lct-plan diff zk --count server=5              # what scale would do, changing nothing
  lct-plan scale zk server 5                     # pg's hooks follow (dependency-changed)
  lct-plan log zk node-added                     # the event's hooks and their output
  lct-plan fire zk dependent-changed             # an event by hand
  lct-plan reconcile                             # for cron / lct-plan-reconcile.timer
  lct-plan stop zk; lct-plan start zk
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
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    /// Take plans by plain-HTTP URLs too (HTTPS only otherwise)
    #[arg(long, global = true)]
    allow_http: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    Create {
        name: Name,
        plan: String,
        #[arg(long, short = 'p', value_enum, env = "LCT_PROVIDER", default_value_t = lct_core::record::ProviderName::Local)]
        provider: lct_core::record::ProviderName,
        /// A parameter's value, NAME=VALUE (repeatable; a secret's is visible in `ps`: use --set-file)
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// A parameter's value read from a file, NAME=PATH (NAME=- reads standard input):
        /// for secrets, e.g. --set-file superuser_password=./pg-password
        #[arg(long = "set-file", value_name = "NAME=PATH", value_parser = parse_set_file)]
        set_files: Vec<(String, String)>,
        /// Run the shell hooks, playbooks and `packages` actions of a plan by URL that is not
        /// pinned (#sha256=HEX)
        #[arg(long)]
        trust_hooks: bool,
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
        /// created, starting, started, stopping, stopped, node-added, node-removed,
        /// dependency-changed, dependent-changed, destroying
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
    Reconcile { names: Vec<Name> },
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
        #[arg(long, value_enum, default_value_t = lct_plan::graph::Format::Dot)]
        format: lct_plan::graph::Format,
    },
    #[command(flatten)]
    Meta(MetaCommand),
}

fn parse_count(s: &str) -> Result<(Name, u32), String> {
    let (g, n) = s.split_once('=').ok_or("expected GROUP=N")?;
    Ok((g.parse().map_err(|e| format!("{e}"))?, n.parse().map_err(|_| format!("{n:?} is not a count"))?))
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    Ok((k.to_string(), v.to_string()))
}

/// The `--set` and `--set-file` values (a file that cannot be read is a usage error).
fn settings(sets: &[(String, String)], files: &[(String, String)]) -> anyhow::Result<Settings> {
    Ok(Settings::read(sets, files).map_err(UsageError)?)
}

fn load(reference: &str, allow_http: bool) -> anyhow::Result<(lct_plan::Plan, String)> {
    let loaded = PlanRef::parse_with(reference, allow_http)?.load()?;
    Ok((loaded.plan, loaded.source))
}

/// Events as a table: when (UTC), which, how it ended, how long, its hooks or its error.
fn print_events(events: &[serde_json::Value]) {
    println!("  {:<20} {:<19} {:<7} {:>9}  HOOKS / ERROR", "AT (UTC)", "EVENT", "OUTCOME", "TOOK");
    for e in events {
        let at = e["at"]
            .as_i64()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default();
        let hooks: Vec<&str> = e["hooks"].as_array().into_iter().flatten().filter_map(|h| h["hook"].as_str()).collect();
        let detail = e["error"].as_str().map_or_else(|| hooks.join(", "), String::from);
        println!(
            "  {at:<20} {:<19} {:<7} {:>9}  {detail}",
            e["event"].as_str().unwrap_or_default(),
            e["outcome"].as_str().unwrap_or_default(),
            format!("{} ms", e["took_ms"])
        );
    }
}

fn tools() -> anyhow::Result<Tools> {
    Ok(Tools { bin_dir: std::env::current_exe()?.parent().map(Path::to_path_buf).unwrap_or_default() })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run("lct-plan", || match &cli.command {
        Command::List => {
            for package in PACKAGES {
                let name = package.name;
                let plan = parse(package.plan, &format!("package:{name}"))?;
                let first = plan.description.split(". ").next().unwrap_or_default().trim().trim_end_matches('.');
                println!("package:{name:<14} {first}");
            }
            Ok(())
        }
        Command::Show { plan } => {
            let (plan, source) = load(plan, cli.allow_http)?;
            println!("{source}\n\n{}", plan.description.trim());
            if plan.downloads.is_empty() {
                println!("\nDownloads: nothing outside Debian's archive.");
            } else {
                println!("\nDownloads (checked by SHA-256 before use):");
                for d in &plan.downloads {
                    println!("  {} sha256:{} {}", d.url, d.sha256, d.description);
                }
            }
            if !plan.packages.is_empty() {
                println!("\nDebian packages: {}", plan.packages.join(" "));
            }
            println!("\nParameters:");
            for (name, p) in &plan.parameters {
                let default = match (&p.default, p.secret) {
                    (_, true) => "<secret>".to_string(),
                    (Some(d), _) => d.to_string(),
                    (None, _) => "(required)".to_string(),
                };
                let kind = serde_json::to_value(p.kind)?;
                println!("  {name:<20} {:<8} {default:<20} {}", kind.as_str().unwrap_or_default(), p.description);
            }
            println!("\nGroups:");
            for (g, group) in &plan.groups {
                let count = match &group.count {
                    Count::Fixed(n) => n.to_string(),
                    Count::Template(t) => t.clone(),
                };
                println!("  {:<12} count {count}, image {}", g.as_str(), group.image);
                for (s, service) in &group.services {
                    let ports: Vec<String> = service.ports.iter().map(ToString::to_string).collect();
                    println!("    {:<10} {:<22} {}", s.as_str(), ports.join(","), service.description);
                }
            }
            if !plan.depends_on.is_empty() {
                println!("\nDepends on:");
                for (role, d) in &plan.depends_on {
                    let made_from = d.plan.as_deref().map_or(String::new(), |p| format!(" (made from {p})"));
                    println!("  {role:<12} cluster {}{made_from}, services {}", d.cluster, d.services.join(", "));
                }
            }
            let opened = lct_plan::offered::opened_to_dependents(&plan);
            println!("\nOpens to its dependents: {}", lct_plan::offered::describe(&opened));
            if !plan.offers.is_empty() {
                let names: Vec<&str> = plan.offers.keys().map(String::as_str).collect();
                println!("\nOffers its dependents: {}", names.join(", "));
            }
            Ok(())
        }
        Command::Validate { plan, sets, set_files } => {
            let settings = settings(sets, set_files)?;
            let loaded = PlanRef::parse_with(plan, cli.allow_http)?.load()?;
            settings.warn_visible_secrets(&loaded.plan);
            let values =
                parameters(&loaded.plan, &settings.all()).map_err(UsageError).context(loaded.source.clone())?;
            // Every template rendered once, within its bounds, as a cluster named `example`.
            lct_plan::template::check_plan(&loaded, "example", &values)?;
            eprintln!("{}: valid", loaded.source);
            Ok(())
        }
        Command::Create { name, plan, provider, sets, set_files, trust_hooks } => {
            let trust = Trust { allow_http: cli.allow_http, trust_hooks: *trust_hooks };
            let sets = &settings(sets, set_files)?;
            let state_dir = lct_core::state::state_dir();
            let nodes = runtime()?.block_on(lct_plan::cluster::create(
                &state_dir,
                &tools()?,
                name,
                plan,
                *provider,
                sets,
                trust,
            ))?;
            lct_core::table::emit(&nodes, cli.global.output())?;
            Ok(())
        }
        Command::Scale { name, group, count } => {
            let state_dir = lct_core::state::state_dir();
            let nodes = runtime()?.block_on(lct_plan::cluster::scale(&state_dir, &tools()?, name, group, *count))?;
            lct_core::table::emit(&nodes, cli.global.output())?;
            Ok(())
        }
        Command::Stop { name } => {
            runtime()?.block_on(lct_plan::cluster::stop(&lct_core::state::state_dir(), &tools()?, name))?;
            eprintln!("cluster {name} stopped");
            Ok(())
        }
        Command::Start { name } => {
            runtime()?.block_on(lct_plan::cluster::start(&lct_core::state::state_dir(), &tools()?, name))?;
            eprintln!("cluster {name} started");
            Ok(())
        }
        Command::Diff { name, plan, sets, set_files, counts } => {
            let trust = Trust { allow_http: cli.allow_http, trust_hooks: false };
            let sets = &settings(sets, set_files)?;
            let state_dir = lct_core::state::state_dir();
            let lines =
                runtime()?.block_on(lct_plan::cluster::diff(&state_dir, name, plan.as_deref(), sets, counts, trust))?;
            if lines.is_empty() {
                println!("cluster {name}: no changes");
            }
            for line in lines {
                println!("{line}");
            }
            Ok(())
        }
        Command::Fire { name, event } => {
            let state_dir = lct_core::state::state_dir();
            let change = lct_plan::hooks::Change::default();
            runtime()?.block_on(lct_plan::hooks::fire(&state_dir, &tools()?, name, *event, &change))?;
            eprintln!("cluster {name}: {event} ran");
            Ok(())
        }
        Command::Log { name, event } => {
            let dir = lct_plan::cluster::plans_dir(&lct_core::state::state_dir()).join(name.as_str());
            let text = std::fs::read_to_string(dir.join("events.jsonl"))
                .with_context(|| format!("cluster {name} has no event log here"))?;
            let events: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            let Some(event) = event else {
                if cli.global.output() == lct_core::cli::OutputFormat::Jsonl {
                    for e in &events {
                        println!("{e}");
                    }
                    return Ok(());
                }
                print_events(&events);
                return Ok(());
            };
            let last = events
                .iter()
                .rev()
                .find(|e| e["event"] == event.as_str())
                .with_context(|| format!("cluster {name}: no {event} event yet"))?;
            println!("{last}");
            let prefix = format!("{event}.");
            let mut logs: Vec<_> = std::fs::read_dir(dir.join("logs"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .collect();
            logs.sort_by_key(|e| e.file_name());
            for log in logs {
                println!("==> {} <==", log.file_name().to_string_lossy());
                print!("{}", std::fs::read_to_string(log.path()).unwrap_or_default());
            }
            Ok(())
        }
        Command::Reconcile { names } => {
            let state_dir = lct_core::state::state_dir();
            let names = if names.is_empty() { lct_plan::cluster::clusters(&state_dir)? } else { names.clone() };
            let tools = tools()?;
            let runtime = runtime()?;
            let mut failed = 0;
            for name in &names {
                match runtime.block_on(lct_plan::cluster::reconcile(&state_dir, &tools, name)) {
                    Ok(r) => println!(
                        "{}",
                        lct_core::stream::to_line(&lct_plan::records::PlanReconciled {
                            cluster: r.cluster,
                            added: r.added,
                            removed: r.removed,
                            short: r.short,
                            repaired: r.repaired
                        })
                    ),
                    Err(e) => {
                        failed += 1;
                        eprintln!("lct-plan: reconcile {name}: {e:#}");
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} clusters failed to reconcile", names.len());
            }
            Ok(())
        }
        Command::Status { name } => {
            let state_dir = lct_core::state::state_dir();
            let (state, plan) = lct_plan::cluster::load_cluster(&state_dir, name)?;
            let stopped = if state.stopped { " (stopped)" } else { "" };
            println!("cluster {name}: from {} on {}{stopped}", state.source, state.provider);
            println!("parameters:");
            for (k, v) in &state.parameters {
                let secret = plan.parameters.get(k).is_some_and(|p| p.secret);
                println!("  {k} = {}", if secret { "<secret>".into() } else { v.to_string() });
            }
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let api = lct_api::AnyProvider::from_env(state.provider)?;
            let nodes: Vec<_> =
                runtime.block_on(lct_api::Provider::list(&api))?.into_iter().filter(|n| &n.cluster == name).collect();
            let records = lct_core::state::ClusterStore::new(&state_dir).load()?;
            let planned =
                lct_plan::cluster::node_specs(&plan, name, &state.parameters, &Default::default(), state.provider)?;
            let wanted = lct_plan::cluster::node_specs(&plan, name, &state.parameters, &state.counts, state.provider)?;
            println!("groups:");
            for (g, group) in &plan.groups {
                let count = |specs: &[lct_core::record::NodeSpec]| specs.iter().filter(|s| &s.group == g).count();
                let have = nodes.iter().filter(|n| &n.group == g).count();
                let scaled = if state.counts.contains_key(g) {
                    format!(" (scaled from {})", count(&planned))
                } else {
                    String::new()
                };
                let services: Vec<String> = group
                    .services
                    .iter()
                    .map(|(s, svc)| {
                        format!("{s} {}", svc.ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
                    })
                    .collect();
                println!("  {:<12} {have} of {} nodes{scaled}  {}", g.as_str(), count(&wanted), services.join("; "));
            }
            let offered = lct_plan::hooks::offers(&plan, name, &state.parameters, &nodes, &records)?;
            if !offered.is_empty() {
                println!("offers:");
                for (k, v) in offered {
                    println!("  {k} = {v}");
                }
            }
            if let Some(record) = records.iter().find(|c| &c.name == name)
                && !record.depends_on.is_empty()
            {
                let deps: Vec<String> = record
                    .depends_on
                    .iter()
                    .map(|d| {
                        format!(
                            "{} ({})",
                            d.cluster,
                            d.ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
                        )
                    })
                    .collect();
                println!("depends on: {}", deps.join(", "));
            }
            println!("nodes:");
            lct_core::table::emit(&nodes, lct_core::cli::OutputFormat::Table)?;
            let log = lct_plan::cluster::plans_dir(&state_dir).join(name.as_str()).join("events.jsonl");
            let events: Vec<serde_json::Value> = std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            println!("last events:");
            print_events(&events[events.len().saturating_sub(5)..]);
            Ok(())
        }
        Command::Graph { clusters, plans, format } => {
            let members = lct_plan::graph::gather(&lct_core::state::state_dir(), clusters, plans, cli.allow_http)?;
            let dot = lct_plan::graph::dot(&members);
            match format {
                lct_plan::graph::Format::Dot => print!("{dot}"),
                lct_plan::graph::Format::Svg => {
                    std::io::Write::write_all(&mut std::io::stdout(), &lct_plan::graph::svg(&dot)?)?
                }
            }
            Ok(())
        }
        Command::Destroy { name, force, keep_volumes } => {
            let state_dir = lct_core::state::state_dir();
            runtime()?.block_on(lct_plan::cluster::destroy(&state_dir, &tools()?, name, *force, *keep_volumes))?;
            eprintln!("cluster {name} destroyed");
            Ok(())
        }
        Command::Schema => {
            let schema = schemars::schema_for!(lct_plan::Plan);
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(())
        }
        Command::Meta(meta) => meta.run::<Cli>(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
