//! `lct-dns`: zones from the inventory, the authoritative server, updates and keys on the command line.

mod args;
mod keycmd;
#[cfg(feature = "linode")]
mod linodecheck;

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use lct_core::cli::{OutputFormat, UsageError};
use lct_core::record::Node;
use lct_core::state::ClusterStore;
use lct_core::stream;
use lct_dns::client::Client;
use lct_dns::config::Config;
use lct_dns::live::Live;
use lct_dns::tsig::Key;
use lct_dns::zone::{DnsRecord, View, master_file, zone_records};

use args::{Cli, Command, Format, ViewArg, ZoneArgs};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run("lct-dns", || run(cli))
}

/// The zones' records from node records on stdin (and cluster records there or in the
/// state directory), and the lines that were not node records.
fn records(args: ZoneArgs) -> anyhow::Result<(Vec<DnsRecord>, Vec<stream::Line>)> {
    let mut options = args.options();
    if options.region.is_some() && options.mesh.is_empty() {
        // Other regions' mesh members by their mesh addresses (none without a mesh), from
        // the store unless the command line named them (--mesh-address).
        options.mesh = lct_mesh::addresses(lct_core::store::open()?.as_ref())?;
    }
    let (nodes, others) = stream::read_kind_parallel::<Node, Node>(io::stdin().lock(), |n, _| n).context("stdin")?;
    let nodes: Vec<Node> = nodes.into_iter().map(|(_, n)| n).collect();
    let clusters = ClusterStore::open()?.with_input(&others)?;
    Ok((zone_records(&nodes, &clusters, &options)?, others))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.global.output();
    match cli.command {
        Command::Zone { zone: args, format: text, zone_name, view } => {
            let domain = args.domain.to_string();
            let (records, others) = records(args)?;
            let mut out = io::stdout().lock();
            match (text, format) {
                (Some(Format::Zone), _) | (None, OutputFormat::Table) => {
                    let zone = zone_name.unwrap_or(domain);
                    let zone_fqdn = lct_dns::zone::fqdn(&zone);
                    if !records.iter().any(|r| r.zone == zone_fqdn) {
                        let zones: BTreeSet<&str> = records.iter().map(|r| r.zone.as_str()).collect();
                        bail!(
                            "no zone {zone} here; the zones are: {}",
                            zones.into_iter().collect::<Vec<_>>().join(", ")
                        );
                    }
                    let view = match view {
                        ViewArg::Internal => View::Internal,
                        ViewArg::External => View::External,
                    };
                    out.write_all(master_file(&records, &zone, view).as_bytes())?;
                }
                _ => stream::write_after_passthrough(out, &others, &records)?,
            }
            Ok(())
        }
        Command::Update { zone: args, server, key_file, dry_run, timeout } => {
            let key = Key::load(&key_file)?;
            let (desired, _) = records(args)?;
            let client = Client { server, key, timeout: std::time::Duration::from_secs(timeout) };
            let (reports, failed) = client.update_zones(&desired, dry_run);
            lct_core::table::emit(&reports, format)?;
            if failed > 0 {
                bail!("{failed} zone(s) not updated");
            }
            Ok(())
        }
        #[cfg(feature = "linode")]
        Command::SyncLinode { zone: args, soa_email, dry_run, config, check_server } => {
            let domain = args.domain.to_string();
            linodecheck::refuse_signed_here(&domain)?;
            let (records, _) = records(args)?;
            linodecheck::refuse_signed(&domain, config.as_deref(), &check_server, &records)?;
            let soa_email = soa_email.unwrap_or_else(|| format!("hostmaster@{domain}"));
            let want = lct_dns::linode::desired(&records, &domain);
            let provider = lct_api::linode::LinodeProvider::from_env()?;
            let store = lct_core::store::open()?;
            let changes = lct_core::cli::block_on(lct_dns::linode::sync(
                &provider.api,
                &domain,
                &want,
                &soa_email,
                &*store,
                dry_run,
            ))?;
            lct_core::table::emit(&changes, format)
                .map_err(Into::into)
                .inspect(|_| tracing::info!("{domain}: {} changes, {} records wanted", changes.len(), want.len()))
        }
        Command::Keygen { name, out } => {
            let key = Key::generate(&name).map_err(UsageError)?;
            let text = key.to_file_text();
            match out {
                Some(path) => lct_core::fsutil::atomic_write(&path, text.as_bytes(), 0o600)
                    .with_context(|| path.display().to_string())?,
                None => io::stdout().lock().write_all(text.as_bytes())?,
            }
            Ok(())
        }
        Command::Ds { zone, config } => keycmd::ds(&zone, &config, format),
        Command::Keys { zone, config } => keycmd::keys(&zone, &config, format),
        Command::Roll { zone, kind, config } => keycmd::roll(&zone, matches!(kind, args::RollKind::Ksk), &config),
        Command::DsSeen { zone, config } => keycmd::ds_seen(&zone, &config),
        Command::Serve {
            config,
            records,
            listen,
            internal,
            udp_sockets,
            modes,
            key_files,
            state,
            rate_limit,
            slip,
            tcp_clients,
            stats,
        } => {
            // The answer tables' random seed: a failing random source stops the start here.
            lct_dns::keyed::init()?;
            let (config, config_path): (Config, Option<PathBuf>) = match config {
                Some(path) => (Config::load(&path)?, Some(path)),
                None => {
                    let config = Config {
                        records: records.expect("required without --config"),
                        listen,
                        internal,
                        public: Vec::new(),
                        regions: Vec::new(),
                        udp_sockets,
                        modes: modes.into_iter().collect(),
                        keys: key_files,
                        state,
                        rate_limit: lct_dns::rrl::RateLimitSettings {
                            responses_per_second: rate_limit,
                            slip,
                            ..Default::default()
                        },
                        tcp_clients: Some(tcp_clients),
                        stats: stats
                            .map(|listen| lct_dns::scrape::StatsConfig {
                                listen,
                                allow_public: false,
                                allow: Vec::new(),
                            })
                            .map(|s| s.check().map(|()| s))
                            .transpose()
                            .map_err(UsageError)?,
                        secondaries: Vec::new(),
                        primaries: Vec::new(),
                        updates: Vec::new(),
                        dnssec: Default::default(),
                        dnssec_timers: Default::default(),
                        dnssec_policy: Default::default(),
                        base: None,
                        source: None,
                    };
                    config.prefixes().map_err(UsageError)?;
                    (config, None)
                }
            };
            let served = config.load_served(None)?;
            lct_core::cli::block_on(lct_dns::service::serve(Live::new(served), config, config_path))
        }
        Command::Stats { server, timeout } => {
            let stats = lct_dns::scrape::fetch(server, std::time::Duration::from_secs(timeout))?;
            lct_core::table::emit(&stats, format).map_err(Into::into)
        }
        Command::Meta(meta) => meta.run::<Cli>(),
    }
}
