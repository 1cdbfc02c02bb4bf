//! `lct-plan`: cluster plans on the command line (arguments and output only).

use std::path::Path;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lct_core::cli::{GlobalArgs, MetaCommand, UsageError};
use lct_plan::plan::Count;
use lct_plan::{PACKAGES, PlanRef, parameters, parse};

const EXAMPLES: &str = "\
Examples:
  lct-plan list                                   # the plans built into lct
  lct-plan show package:zookeeper                 # what it makes, its parameters
  lct-plan validate ./my-plan.yaml --set servers=5
  lct-plan schema > plan.schema.json              # for editors (YAML language servers)
  lct-plan create zk package:zookeeper --set servers=3
  lct-plan status zk
  lct-plan destroy zk

Plans: YAML (JSON accepted), see docs/plans.md. A plan reference is package:NAME, a path, or
an HTTPS URL, pinned with #sha256=HEX (checked before use; an unpinned remote plan's shell
hooks run only with --trust-hooks).

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
    /// A plan's description, downloads, parameters, groups and services
    Show { plan: String },
    /// Check a plan (and --set values) without making anything
    Validate {
        plan: String,
        /// A parameter's value, NAME=VALUE (repeatable; checked against its type)
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
    },
    /// Make a cluster from a plan, or finish making it (a re-run never makes a node twice)
    Create {
        name: lct_core::record::Name,
        plan: String,
        #[arg(long, short = 'p', value_enum, env = "LCT_PROVIDER", default_value_t = lct_core::record::ProviderName::Local)]
        provider: lct_core::record::ProviderName,
        /// A parameter's value, NAME=VALUE (repeatable)
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
        sets: Vec<(String, String)>,
        /// Run the shell hooks of a plan by URL that is not pinned (#sha256=HEX)
        #[arg(long)]
        trust_hooks: bool,
    },
    /// A cluster's plan, parameters (secrets hidden), nodes and last events
    Status { name: lct_core::record::Name },
    /// Delete a cluster's nodes, record and state (refused while others depend on it)
    Destroy {
        name: lct_core::record::Name,
        /// Even when other clusters depend on it
        #[arg(long)]
        force: bool,
    },
    /// The JSON Schema of the plan format
    Schema,
    #[command(flatten)]
    Meta(MetaCommand),
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    Ok((k.to_string(), v.to_string()))
}

fn load(reference: &str, allow_http: bool) -> anyhow::Result<(lct_plan::Plan, String)> {
    let (plan, _, source) = PlanRef::parse_with(reference, allow_http)?.load()?;
    Ok((plan, source))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run("lct-plan", || match &cli.command {
        Command::List => {
            for (name, text) in PACKAGES {
                let plan = parse(text, &format!("package:{name}"))?;
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
                    println!("  {role:<12} cluster {}, services {}", d.cluster, d.services.join(", "));
                }
            }
            if !plan.offers.is_empty() {
                let names: Vec<&str> = plan.offers.keys().map(String::as_str).collect();
                println!("\nOffers its dependents: {}", names.join(", "));
            }
            Ok(())
        }
        Command::Validate { plan, sets } => {
            let (plan, source) = load(plan, cli.allow_http)?;
            parameters(&plan, sets).map_err(UsageError).context(source.clone())?;
            eprintln!("{source}: valid");
            Ok(())
        }
        Command::Create { name, plan, provider, sets, trust_hooks } => {
            let bin_dir = std::env::current_exe()?.parent().map(Path::to_path_buf).unwrap_or_default();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let nodes = runtime.block_on(lct_plan::cluster::create(
                &lct_core::state::state_dir(),
                name,
                plan,
                *provider,
                sets,
                &bin_dir,
                lct_plan::cluster::Trust { allow_http: cli.allow_http, trust_hooks: *trust_hooks },
            ))?;
            lct_core::table::emit(&nodes, cli.global.output())?;
            Ok(())
        }
        Command::Status { name } => {
            let state_dir = lct_core::state::state_dir();
            let (state, plan) = lct_plan::cluster::load_cluster(&state_dir, name)?;
            println!("cluster {name}: from {} on {}", state.source, state.provider);
            for (k, v) in &state.parameters {
                let secret = plan.parameters.get(k).is_some_and(|p| p.secret);
                println!("  {k} = {}", if secret { "<secret>".into() } else { v.to_string() });
            }
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let api = lct_api::AnyProvider::from_env(state.provider)?;
            let nodes: Vec<_> =
                runtime.block_on(lct_api::Provider::list(&api))?.into_iter().filter(|n| &n.cluster == name).collect();
            let records = lct_core::state::ClusterStore::new(&state_dir).load()?;
            for (k, v) in lct_plan::cluster::offers(&plan, name, &state.parameters, &nodes, &records)? {
                println!("  offers {k} = {v}");
            }
            lct_core::table::emit(&nodes, lct_core::cli::OutputFormat::Table)?;
            let log = lct_plan::cluster::plans_dir(&state_dir).join(name.as_str()).join("events.jsonl");
            let text = std::fs::read_to_string(log).unwrap_or_default();
            println!("last events:");
            for line in text.lines().rev().take(5) {
                println!("  {line}");
            }
            Ok(())
        }
        Command::Destroy { name, force } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(lct_plan::cluster::destroy(&lct_core::state::state_dir(), name, *force))?;
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
