//! `lct-image`: disk images on the command line (arguments and output only).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Parser;
use lct_core::cli::{OutputFormat, block_on};
use lct_core::record::Record;
use lct_image::cli::{Cli, Command, RepoCommand};
use lct_image::node_repo::NodeRepo;
use lct_image::progress::Bar;
use lct_image::repo::Repo;
use lct_image::repo_remote::receive;
use lct_image::{CreateOptions, Opened, RestoreOptions};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run("lct-image", || {
        let result = run(&cli);
        // What went through this machine for repositories on nodes (the payload on its pipes).
        let traffic = lct_image::node_pipe::traffic();
        if traffic > 0 {
            eprintln!("lct-image: {traffic} bytes to and from nodes through this machine");
        }
        result
    })
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let format = cli.global.output();
    match &cli.command {
        Command::Create { source, out, label, level, force } => {
            let bar = Bar::new("imaging");
            let options = CreateOptions {
                label: label.clone(),
                level: *level,
                force: *force,
                allow_http: cli.allow_http,
                ..Default::default()
            };
            let report = block_on(async {
                Ok(lct_image::any::create(source, out, options, this()?, &|done, total| bar.update(done, total))
                    .await?)
            })?;
            bar.finish();
            if out.as_os_str() == "-" {
                // The image went to stdout: the report to stderr.
                eprintln!("{}", lct_core::stream::to_line(&report));
                return Ok(());
            }
            print(&report, format, || report.summary())
        }
        Command::Send { image } => {
            if std::io::stdout().is_terminal() {
                return Err(lct_core::cli::UsageError(
                    "send writes an image stream: pipe it (into lct-image restore - TARGET, over ssh)".into(),
                )
                .into());
            }
            let opened = Opened::open(image, cli.allow_http)?;
            opened.send(&mut std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock()))?;
            Ok(())
        }
        Command::Restore { image, target, skip_matching, force } => {
            let bar = Bar::new("restoring");
            let options = RestoreOptions {
                skip_matching: *skip_matching,
                force: *force,
                allow_http: cli.allow_http,
                ..Default::default()
            };
            let report = block_on(async {
                let hook = |done, total| bar.update(done, total);
                Ok(lct_image::any::restore(image, target, options, this()?, &hook).await?)
            })?;
            bar.finish();
            print(&report, format, || report.summary())
        }
        Command::Verify { image, target } => {
            let bar = Bar::new("verifying");
            let threads = lct_image::parallel::threads();
            let report = lct_image::verify(image, target.as_deref(), threads, cli.allow_http, &|done, total| {
                bar.update(done, total)
            })?;
            bar.finish();
            print(&report, format, || report.summary())
        }
        Command::Repo(command) => repo(command, format, cli.allow_http),
        Command::PushLinode { image, label, region, description, wait } => {
            let push = lct_image::linode::Push { label, region, description, wait: *wait };
            push.check()?;
            let opened = Opened::open(image, cli.allow_http)?;
            let provider = lct_api::linode::LinodeProvider::from_env()?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let image = lct_image::linode::push(&runtime, &provider.api, &opened, &push, &|step| {
                tracing::info!("{}: {step}", opened.name)
            })?;
            // Linode's own JSON, as `lct-api linode images view` prints it.
            println!("{}", lct_api::linode::with_kind("linode-image", serde_json::to_value(&image)?));
            Ok(())
        }
        Command::Info { image } => {
            let index = Opened::open(image, cli.allow_http)?.index;
            println!("{}", serde_json::to_string_pretty(&index.manifest)?);
            let data = index.extents.iter().filter(|e| e.kind == lct_image::format::Kind::Data).count();
            println!(
                "{} extents ({data} data, {} zero), root {}",
                index.extents.len(),
                index.extents.len() - data,
                lct_image::format::hex(&index.root)
            );
            Ok(())
        }
        Command::Meta(meta) => meta.run::<Cli>(),
    }
}

/// This program, to put on a node that restores or images a volume there.
fn this() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?)
}

/// A record as a JSON line, or as a terminal's line.
fn print<T: Record>(value: &T, format: OutputFormat, table: impl FnOnce() -> String) -> anyhow::Result<()> {
    match format {
        OutputFormat::Jsonl => println!("{}", lct_core::stream::to_line(value)),
        OutputFormat::Table => println!("{}", table()),
    }
    Ok(())
}

fn repo(command: &RepoCommand, format: OutputFormat, allow_http: bool) -> anyhow::Result<()> {
    let progress = |what: &'static str| {
        let bar = Bar::new(what);
        move |done: u64, total: u64| bar.update(done, total)
    };
    if let Some(name) = command.repo().to_str().and_then(lct_image::node_repo::repo_name) {
        return node_repo(command, &NodeRepo::open(&name?)?, format, allow_http);
    }
    match command {
        RepoCommand::Receive { repo, name } => {
            let added = receive(&Repo::open(repo)?, name, Box::new(std::io::stdin()), &mut std::io::stdout().lock())?;
            print(&added, format, || added.summary())
        }
        RepoCommand::Init { repo } => {
            Repo::init(repo)?;
            eprintln!("{}: an image repository", repo.display());
            Ok(())
        }
        RepoCommand::Add { repo, source, name, label, force } => {
            let repo = Repo::open(repo)?;
            let options = CreateOptions { label: label.clone(), force: *force, allow_http, ..Default::default() };
            let (imaging, adding) = (progress("imaging"), progress("adding"));
            let added = block_on(async {
                Ok(lct_image::any::repo_add(&repo, source, name, options, this()?, &imaging, &adding).await?)
            })?;
            print(&added, format, || added.summary())
        }
        RepoCommand::List { repo } => {
            let entries = Repo::open(repo)?.list()?;
            match format {
                OutputFormat::Jsonl => entries.iter().for_each(|e| println!("{}", lct_core::stream::to_line(e))),
                OutputFormat::Table => print!("{}", lct_image::repo::table(&entries)),
            }
            Ok(())
        }
        RepoCommand::Show { repo, name } => {
            let entry = Repo::open(repo)?.show(name)?;
            print(&entry, format, || serde_json::to_string_pretty(&entry).unwrap_or_default())
        }
        RepoCommand::Rm { repo, name } => {
            Repo::open(repo)?.remove(name)?;
            eprintln!("{}::{name}: removed (lct-image repo prune frees its extents)", repo.display());
            Ok(())
        }
        RepoCommand::Prune { repo, dry_run } => {
            let pruned = Repo::open(repo)?.prune(*dry_run)?;
            print(&pruned, format, || pruned.summary(*dry_run))
        }
        RepoCommand::Verify { repo, name } => {
            let r = Repo::open(repo)?;
            let names = match name {
                Some(n) => vec![n.clone()],
                None => r.list()?.into_iter().map(|e| e.name).collect(),
            };
            for n in names {
                let spec = PathBuf::from(format!("{}::{n}", repo.display()));
                let threads = lct_image::parallel::threads();
                let report = lct_image::verify(&spec, None, threads, false, &progress("verifying"))?;
                print(&report, format, || report.summary())?;
            }
            Ok(())
        }
        RepoCommand::Export { repo, name, out } => {
            Repo::open(repo)?.export(name, out, &progress("exporting"))?;
            eprintln!("{}::{name}: written to {}", repo.display(), out.display());
            Ok(())
        }
    }
}

/// A repo command on a repository on a node: run there, its records printed here.
fn node_repo(command: &RepoCommand, repo: &NodeRepo, format: OutputFormat, allow_http: bool) -> anyhow::Result<()> {
    let said = |what: String| eprintln!("{}: {what}", repo.name);
    match command {
        RepoCommand::Init { .. } => Ok(repo.init().map(|()| said("an image repository".into()))?),
        RepoCommand::Add { source, name, label, force, .. } => {
            let options = CreateOptions { label: label.clone(), force: *force, allow_http, ..Default::default() };
            let added =
                block_on(async { Ok(lct_image::any::node_repo_add(repo, source, name, options, this()?).await?) })?;
            print(&added, format, || added.summary())
        }
        RepoCommand::List { .. } => {
            let entries = repo.list()?;
            match format {
                OutputFormat::Jsonl => entries.iter().for_each(|e| println!("{}", lct_core::stream::to_line(e))),
                OutputFormat::Table => print!("{}", lct_image::repo::table(&entries)),
            }
            Ok(())
        }
        RepoCommand::Show { name, .. } => {
            let entry = repo.show(name)?;
            print(&entry, format, || serde_json::to_string_pretty(&entry).unwrap_or_default())
        }
        RepoCommand::Rm { name, .. } => Ok(repo.remove(name).map(|()| said(format!("{name} removed")))?),
        RepoCommand::Prune { dry_run, .. } => {
            let pruned = repo.prune(*dry_run)?;
            print(&pruned, format, || pruned.summary(*dry_run))
        }
        RepoCommand::Verify { name, .. } => {
            for report in repo.verify(name.as_deref())? {
                print(&report, format, || report.summary())?;
            }
            Ok(())
        }
        RepoCommand::Export { name, out, .. } => {
            let image = Opened::open(&PathBuf::from(format!("{}::{name}", repo.name)), false)?;
            lct_image::repo_remote::export(&image, out)?;
            said(format!("{name}: written to {}", out.display()));
            Ok(())
        }
        RepoCommand::Receive { .. } => Err(lct_core::cli::UsageError("receive runs on the node itself".into()).into()),
    }
}
