//! `lct-api`: nodes and volumes on a provider from the command line (arguments and output only).

use std::io;

use anyhow::bail;
use clap::Parser;
use lct_api::act::Action;
use lct_api::cli::create::{SpecFlags, piped_nodes, prepare_images, remember, specs};
use lct_api::cli::{Cli, Command, LabCommand, PackagesCommand, VolumeCommand};
use lct_api::create::{CreateMany, create_many};
use lct_api::local::LocalCloud;
use lct_api::{AnyProvider, Provider, ProviderError, VolumeSpec};
use lct_core::cli::{OutputFormat, UsageError};
use lct_core::record::{Name, NodeSpec, ProviderName};
use lct_core::stream::Writer;
use lct_core::table::emit;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run_async("lct-api", run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.global.output();
    let chosen = cli.provider;
    match cli.command {
        Command::Meta(meta) => meta.run::<Cli>(),
        Command::Lab(LabCommand::RunMachine { state_dir, lab, pid_file, nspawn_args }) => {
            use lct_api::local::reboot::{Supervised, run};
            Ok(run(&Supervised { state_dir: &state_dir, lab: &lab, pid_file: &pid_file, nspawn_args: &nspawn_args })?)
        }
        #[cfg(feature = "linode")]
        Command::Linode(args) => linode(args, format).await,
        // Start, stop and delete act on each node's own provider (records say which).
        Command::Start { names, missing_ok } => act_on(names, chosen, Action::Start, missing_ok, format).await,
        Command::Stop { names, missing_ok } => act_on(names, chosen, Action::Stop, missing_ok, format).await,
        Command::Delete { names, missing_ok } => act_on(names, chosen, Action::Delete, missing_ok, format).await,
        command => on_provider(AnyProvider::from_env(chosen.unwrap_or_default())?, command, format).await,
    }
}

async fn on_provider(provider: AnyProvider, command: Command, format: OutputFormat) -> anyhow::Result<()> {
    match command {
        Command::Create { cluster, group, count, names, tags, region, node_type, image, user_data, parallel } => {
            let flags = SpecFlags { cluster, group, count, names, tags, region, node_type, image, user_data };
            let specs = specs(flags)?;
            prepare_images(&provider, &specs).await?;
            create(provider, specs, parallel, format).await
        }
        Command::List { cluster } => {
            let mut nodes = provider.list().await?;
            nodes.retain(|n| cluster.as_ref().is_none_or(|c| n.cluster == *c));
            Ok(emit(&nodes, format)?)
        }
        Command::Get { name } => match provider.list().await?.into_iter().find(|n| n.name == name) {
            Some(node) => Ok(emit(&[node], format)?),
            None => bail!("no node named {name}"),
        },
        Command::Volume(cmd) => volume(&provider, cmd, format).await,
        Command::Lab(cmd) => {
            #[cfg_attr(not(feature = "linode"), allow(irrefutable_let_patterns))]
            let AnyProvider::Local(local) = provider else {
                return Err(UsageError("lab is the local cloud's: use --provider local".into()).into());
            };
            // Locks, `ip`, `losetup` and apt: off the async runtime.
            tokio::task::spawn_blocking(move || lab(&local, cmd, format)).await?
        }
        _ => unreachable!("handled by run"),
    }
}

/// `lct-api linode RESOURCE VERB ...`: the items as JSON lines, or a table.
#[cfg(feature = "linode")]
async fn linode(args: lct_api::cli::LinodeArgs, format: OutputFormat) -> anyhow::Result<()> {
    use serde_json::Value;
    use std::io::Write;
    let outcome = lct_api::cli::linode::run(args).await?;
    match format {
        OutputFormat::Jsonl => {
            let mut out = io::stdout().lock();
            for item in outcome.items {
                writeln!(out, "{}", lct_api::linode::with_kind(outcome.kind, item))?;
            }
        }
        OutputFormat::Table => {
            let mut t = lct_core::table::Table::new(&["ID", "NAME", "STATUS", "REGION"]);
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let first = |v: &Value, keys: &[&str]| keys.iter().map(|k| &v[*k]).find(|x| !x.is_null()).map(text);
            for v in &outcome.items {
                let name = first(v, &["label", "domain", "address", "name", "action"]);
                let status = first(v, &["status", "type", "class"]);
                t.row(vec![text(&v["id"]), name.unwrap_or_default(), status.unwrap_or_default(), text(&v["region"])]);
            }
            t.print()?;
        }
    }
    if outcome.failed > 0 {
        bail!("{} request(s) failed", outcome.failed);
    }
    Ok(())
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
    let verb = action.as_str();
    let records = piped_nodes(!names.is_empty(), verb)?;
    let targets = lct_api::act::targets(names, records, chosen)?;
    let (mut nodes, mut failed) = (Vec::new(), 0);
    for (target, outcome) in lct_api::act::act(&targets, action).await {
        match outcome {
            Ok(Some(node)) => nodes.push(node),
            Ok(None) => tracing::info!(node = %target.name, provider = %target.provider, "{verb}: done"),
            Err(ProviderError::NoSuchNode(name)) if missing_ok => {
                tracing::warn!("{verb} {name}: no such node on {}; nothing to do (--missing-ok)", target.provider);
            }
            Err(ProviderError::NoSuchNode(name)) => {
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
        bail!("{failed} of {} nodes failed to {verb}", targets.len());
    }
    Ok(())
}

/// `create`: each node printed as soon as it is ready (so a pipeline can start on it), a
/// progress bar on a terminal (a bulk create takes minutes on Linode).
async fn create(
    provider: AnyProvider,
    specs: Vec<NodeSpec>,
    parallel: usize,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let total = specs.len();
    let bar = lct_api::cli::create::progress_bar(total);
    let mut out = Writer::new(io::stdout().lock());
    let (mut failed, mut written) = (0, Ok(()));
    let how = CreateMany { parallel: parallel.max(1), wait_ready: true };
    let made = create_many(&provider, specs, how, |(spec, result)| {
        bar.inc(1);
        match result {
            Ok(node) if format == OutputFormat::Jsonl && written.is_ok() => {
                written = out.write(node).and_then(|()| out.flush());
            }
            Ok(_) => {}
            Err(e) => {
                bar.suspend(|| eprintln!("lct-api: create {}: {e}", spec.name));
                failed += 1;
                bar.set_message(format!("{failed} failed"));
            }
        }
    })
    .await;
    bar.finish_and_clear();
    drop(out);
    written?;
    let mut created: Vec<_> = made.into_iter().filter_map(|(_, r)| r.ok()).collect();
    remember(&created, provider.name()).await;
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
        LabCommand::Status if format == OutputFormat::Jsonl => {
            println!("{}", lct_core::stream::to_line(&local.status()?))
        }
        LabCommand::Status => {
            let s = local.status()?;
            let state = |up: bool| if up { "up" } else { "absent" };
            println!("lab        {}", s.lab);
            println!("bridges    {} ({})", s.lab_namespace, state(s.lab_namespace_exists));
            let outside = (s.outside_namespace, s.outside_ipv4, s.outside_ipv6);
            println!("outside    {} {} {} ({})", outside.0, outside.1, outside.2, state(s.outside_namespace_exists));
            println!("nodes      {}", s.nodes);
            println!("volumes    {}", s.volumes);
        }
        LabCommand::Repair => local.repair_all()?,
        LabCommand::Regions => emit(&local.regions()?, format)?,
        LabCommand::RunMachine { .. } => unreachable!("handled before the provider"),
        LabCommand::Down => local.destroy()?,
        LabCommand::Capture { node, release: false } => println!("{}", local.capture(&node)?.display()),
        LabCommand::Capture { node, release: true } => local.release(&node)?,
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
