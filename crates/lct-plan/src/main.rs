//! `lct-plan`: cluster plans on the command line (arguments and output only).

use anyhow::Context as _;
use clap::Parser;
use lct_core::cli::{OutputFormat, UsageError};
use lct_plan::cli::{Cli, Command, Making};
use lct_plan::cluster::Trust;
use lct_plan::setting::Settings;
use lct_plan::state::{Change, Context, Tools};
use lct_plan::{PlanRef, parameters, report};

/// The `--set` and `--set-file` values (a file that cannot be read is a usage error).
fn settings(sets: &[(String, String)], files: &[(String, String)]) -> anyhow::Result<Settings> {
    Ok(Settings::read(sets, files).map_err(UsageError)?)
}

/// The trust and values `create` and `bake` are given.
fn making_of(making: &Making, allow_http: bool) -> anyhow::Result<(Trust, Settings)> {
    let trust = Trust { allow_http, trust_hooks: making.trust_hooks };
    Ok((trust, settings(&making.sets, &making.set_files)?))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run_async("lct-plan", run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let home = &lct_plan::state::Home::open()?;
    let tools = || Tools::beside_current_exe();
    let out = &mut std::io::stdout();
    match &cli.command {
        Command::List => report::list(out)?,
        Command::Show { plan } => {
            let loaded = PlanRef::parse_with(plan, cli.allow_http)?.load()?;
            report::show(out, &loaded.plan, &loaded.source)?;
        }
        Command::Validate { plan, sets, set_files } => {
            let settings = settings(sets, set_files)?;
            let loaded = PlanRef::parse_with(plan, cli.allow_http)?.load()?;
            settings.warn_visible_secrets(&loaded.plan);
            let values =
                parameters(&loaded.plan, &settings.all()).map_err(UsageError).context(loaded.source.clone())?;
            // Every template rendered once, within its bounds, as a cluster named `example`.
            lct_plan::template::check_plan(&loaded, "example", &values)?;
            let (text, source) = (&loaded.text, &loaded.source);
            lct_plan::spec::warn_unwise(&loaded.plan, text, source, &"example".parse()?, &values, &Default::default())?;
            eprintln!("{}: valid", loaded.source);
        }
        Command::Create { name, making, bake, repo } => {
            let (trust, sets) = making_of(making, cli.allow_http)?;
            let (plan, provider) = (&making.plan, making.provider);
            if *bake {
                let repo = repo.clone().unwrap_or_else(|| lct_plan::images::default_repo(home));
                let to = lct_plan::bake::BakeTo { repo: &repo, provider };
                lct_plan::bake::bake_for_create(home, &tools()?, name, plan, &sets, to, trust).await?;
            }
            let nodes = lct_plan::cluster::create(home, &tools()?, name, plan, provider, &sets, trust).await?;
            lct_core::table::emit(&nodes, cli.global.output())?;
        }
        Command::Bake { name, making, repo } => {
            let (trust, sets) = making_of(making, cli.allow_http)?;
            let repo = repo.clone().unwrap_or_else(|| lct_plan::images::default_repo(home));
            let to = lct_plan::bake::BakeTo { repo: &repo, provider: making.provider };
            let baked = lct_plan::bake::bake(home, &tools()?, name, &making.plan, &sets, to, trust).await?;
            lct_core::table::emit(&[baked], cli.global.output())?;
        }
        Command::Scale { name, group, count } => {
            let nodes = lct_plan::cluster::scale(home, &tools()?, name, group, *count).await?;
            lct_core::table::emit(&nodes, cli.global.output())?;
        }
        Command::Stop { name } => {
            lct_plan::cluster::stop(home, &tools()?, name).await?;
            eprintln!("cluster {name} stopped");
        }
        Command::Start { name } => {
            lct_plan::cluster::start(home, &tools()?, name).await?;
            eprintln!("cluster {name} started");
        }
        Command::Diff { name, plan, sets, set_files, counts } => {
            let trust = Trust { allow_http: cli.allow_http, trust_hooks: false };
            let sets = &settings(sets, set_files)?;
            let lines = lct_plan::diff::diff(home, name, plan.as_deref(), sets, counts, trust).await?;
            if lines.is_empty() {
                println!("cluster {name}: no changes");
            }
            for line in lines {
                println!("{line}");
            }
        }
        Command::Fire { name, event } => {
            let lock = lct_plan::state::lock(home, name, "fire")?;
            let ctx = Context::load(home, &tools()?, name)?.under(&lock);
            lct_plan::hooks::fire(&ctx, *event, &Change::default()).await?;
            eprintln!("cluster {name}: {event} ran");
        }
        Command::Log { name, event: Some(event) } => report::event_log(out, home, name, *event)?,
        Command::Log { name, event: None } => {
            report::log(out, home, name, cli.global.output() == OutputFormat::Jsonl)?;
        }
        Command::Reconcile { names, replace, watch: true } => {
            use lct_plan::watch::Report;
            let stop = lct_plan::watch::stop_on_signals()?;
            lct_plan::watch::watch(home, &tools()?, names, *replace, stop, |report| match report {
                Report::Reconciled(_, Ok(r)) => println!("{}", lct_core::stream::to_line(&r)),
                Report::Reconciled(name, Err(e)) => eprintln!("lct-plan: reconcile {name}: {e:#} (tried again)"),
                Report::Busy(name, holder) => eprintln!("lct-plan: cluster {name} is busy ({holder}): tried again"),
                Report::StoreDown { error, retry } => {
                    eprintln!("lct-plan: watching the state: {error} (again in {} s)", retry.as_secs())
                }
                Report::StoreBack => eprintln!("lct-plan: the state store answers again"),
            })
            .await?;
        }
        Command::Reconcile { names, replace, watch: false } => {
            lct_plan::cluster::reconcile_all(home, &tools()?, names, *replace, |name, result| match result {
                Ok(r) => println!("{}", lct_core::stream::to_line(&r)),
                Err(e) => eprintln!("lct-plan: reconcile {name}: {e:#}"),
            })
            .await?;
        }
        Command::Status { name } => report::status(out, home, name).await?,
        Command::Graph { clusters, plans, format } => {
            let dot = lct_plan::graph::dot(&lct_plan::graph::gather(home, clusters, plans, cli.allow_http)?);
            std::io::Write::write_all(&mut std::io::stdout(), &lct_plan::graph::output(&dot, *format)?)?;
        }
        Command::Destroy { name, force, keep_volumes } => {
            lct_plan::cluster::destroy(home, &tools()?, name, *force, *keep_volumes).await?;
            eprintln!("cluster {name} destroyed");
        }
        Command::Unlock { name, force } => match lct_plan::state::unlock(home, name, *force)? {
            Some(was) => eprintln!("cluster {name}: unlocked (it was held by {was})"),
            None => eprintln!("cluster {name}: not locked"),
        },
        Command::Schema => println!("{}", serde_json::to_string_pretty(&schemars::schema_for!(lct_plan::Plan))?),
        Command::Meta(meta) => meta.run::<Cli>()?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
