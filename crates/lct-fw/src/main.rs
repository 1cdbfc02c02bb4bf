//! `lct-fw`: firewall declarations, rendering, sync and push on the command line. Parses the
//! arguments (lct_fw::cli) and prints; the work is the library's.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use lct_core::cli::{OutputFormat, UsageError, block_on};
use lct_core::record::Name;
use lct_core::state::ClusterStore;
use lct_core::stream;
use lct_fw::boot::Booted;
use lct_fw::cli::{Cli, Command, Format};
#[cfg(feature = "linode")]
use lct_fw::cloud;
use lct_fw::host::{self, HostError};
use lct_fw::input::{Members, host_ruleset};
use lct_fw::model::{Declared, FirewallSpec};
use lct_fw::nft;
use lct_fw::push::PushOptions;
use lct_fw::sync::{SyncError, SyncOptions};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run("lct-fw", || run(cli))
}

/// Only `push` and `cloud-sync` need a runtime (`block_on`): a sync is a few syscalls, and
/// the watcher blocks on its socket.
fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.global.output();
    let store = ClusterStore::open()?;
    match cli.command {
        Command::Declare { cluster, mode, admin_cidrs, ssh_port, allow, clear } => {
            let mut record = store.get_or_new(&cluster)?;
            let declared = (!clear).then(|| Declared { mode: mode.map(Into::into), admin_cidrs, ssh_port, allow });
            FirewallSpec::declare(&mut record, declared)?;
            store.set(vec![record.clone()])?;
            lct_core::table::emit(&[record], format)?;
            Ok(())
        }
        Command::Render { nodes, format: text, force } => {
            let members = Members::read(&store, io::stdin().lock())?;
            let rulesets = members.rulesets(&nodes, force)?;
            let mut out = io::stdout().lock();
            match (text, format) {
                (Some(Format::Nft), _) | (None, OutputFormat::Table) => {
                    for r in &rulesets {
                        out.write_all(r.to_nft().as_bytes())?;
                    }
                }
                _ => stream::write_after_passthrough(out, &members.others, &rulesets)?,
            }
            Ok(())
        }
        Command::Sync { node, full, force, kill_established, confirm_timeout, backend } => {
            let options = SyncOptions { full, kill_established, confirm_timeout, backend };
            let me = match node {
                Some(n) => n,
                None => host::host_name().map_err(usage)?,
            };
            let ruleset = host_ruleset(&store, &me, io::stdin().lock(), force)?;
            let report = host::sync(me, ruleset, &options).map_err(usage)?;
            println!("{}", stream::to_line(&report));
            Ok(())
        }
        #[cfg(feature = "linode")]
        Command::CloudSync { clusters, dry_run, force } => {
            let members = Members::read(&store, io::stdin().lock())?;
            let plans = cloud::plan(&members, &clusters, force)?;
            block_on(async {
                let provider = lct_api::linode::LinodeProvider::from_env()?;
                let mut out = stream::Writer::new(io::stdout().lock());
                for p in plans {
                    let mut report =
                        cloud::sync_group(&provider.api, &p.cluster, &p.group, &p.rules, &p.instances, dry_run).await?;
                    if dry_run {
                        report.planned_rules = Some(p.rules);
                    }
                    out.write(&report)?;
                }
                Ok(())
            })
        }
        Command::Boot => boot(),
        Command::Confirm => {
            let confirmed = host::confirm()?;
            eprintln!("{}", if confirmed { "confirmed" } else { "nothing to confirm" });
            Ok(())
        }
        Command::RollbackWatch { token, after } => Ok(host::rollback_watch(&token, after)?),
        Command::Push {
            clusters,
            providers,
            force,
            full,
            kill_established,
            backend,
            parallel,
            timeout,
            remote_bin,
        } => {
            let options = PushOptions {
                force,
                full,
                kill_established,
                backend,
                parallel,
                timeout: Duration::from_secs(timeout),
                local_bin: std::env::current_exe()?.display().to_string(),
                remote_bin,
            };
            let reports =
                block_on(async { Ok(lct_fw::push::push_clusters(&store, clusters, providers, &options).await?) })?;
            print_push(&reports, format)?;
            let failed = lct_fw::push::failures(&reports);
            if !failed.is_empty() {
                bail!("push failed on {} of {} nodes: {}", failed.len(), reports.len(), failed.join(", "));
            }
            Ok(())
        }
        Command::Watch { restore_only } => Ok(nft::watch(!restore_only)?),
        Command::Remove { backend } => {
            let removed = host::remove(backend)?;
            eprintln!(
                "{}",
                match (backend, removed) {
                    (lct_fw::sync::Backend::Nft, true) => "table inet lct deleted",
                    (lct_fw::sync::Backend::Nft, false) => "no table inet lct here",
                    (lct_fw::sync::Backend::Iptables, true) => "lct's iptables chains deleted",
                    (lct_fw::sync::Backend::Iptables, false) => "no lct iptables chains here",
                }
            );
            Ok(())
        }
        Command::Meta(meta) => meta.run::<Cli>(),
    }
}

/// A host error that is the caller's to fix (exit status 2): a host name that names no node,
/// a confirm deadline on the iptables backend.
fn usage(e: HostError) -> anyhow::Error {
    match e {
        HostError::NotANodeName(_) | HostError::Sync(SyncError::ConfirmNeedsNft) => UsageError(e.to_string()).into(),
        e => e.into(),
    }
}

/// `lct-fw boot`: the saved firewall, else default-deny, said at the default log level.
fn boot() -> anyhow::Result<()> {
    let node = host::host_name().unwrap_or_else(|_| "boot".parse::<Name>().expect("a valid name"));
    match lct_fw::boot::boot(node)? {
        Booted::Saved { node, rules } => eprintln!("lct-fw: loaded the saved firewall of node {node} ({rules} rules)"),
        Booted::DefaultDeny { reason, admin } => {
            let from: Vec<String> = admin.admin_cidrs.iter().map(|c| c.to_string()).collect();
            tracing::warn!(
                "no usable saved firewall ({reason}): loaded default-deny, SSH (port {}) from {} only; `lct-fw push` puts the cluster's rules back",
                admin.ssh_port,
                from.join(", ")
            );
        }
        Booted::Removed => eprintln!("lct-fw: lct's firewall was removed (lct-fw remove): nothing loaded"),
    }
    Ok(())
}

fn print_push(reports: &[lct_fw::SyncReport], format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Jsonl => {
            let mut out = stream::Writer::new(io::stdout().lock());
            for r in reports {
                out.write(r)?;
            }
            out.flush()?;
        }
        OutputFormat::Table => {
            let mut table = lct_core::table::Table::new(&["NODE", "APPLIED", "DETAIL"]);
            for r in reports {
                let applied = serde_json::to_value(r.applied)?.as_str().unwrap_or_default().to_string();
                table.row(vec![r.node.to_string(), applied, r.detail()]);
            }
            table.print()?;
        }
    }
    Ok(())
}
