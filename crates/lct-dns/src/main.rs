use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::IpAddr;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use lct_core::cli::{GlobalArgs, MetaCommand, OutputFormat, UsageError};
use lct_core::record::{DomainName, Node};
use lct_core::state::{ClusterStore, state_dir};
use lct_core::stream;
use lct_dns::service::{Config, Live, Served, notify, udp_sockets};
use lct_dns::zone::{View, ZoneOptions, master_file, zone_records};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  # The zone's records, each marked internal, external or both
  lct-inventory query | lct-dns zone --domain lct.internal --ns ns1.lct.internal=192.168.128.53

  # Master files that BIND and Knot load as they are, one per view
  lct-inventory query | lct-dns zone --domain lct.internal --format zone --view internal
  lct-inventory query | lct-dns zone --domain lct.internal --format zone --view external
  lct-inventory query | lct-dns zone --domain lct.internal --format zone --zone 168.192.in-addr.arpa

Names: NODE.CLUSTER.DOMAIN, GROUP.CLUSTER.DOMAIN (an address set over the group), and
_SERVICE._PROTO.CLUSTER.DOMAIN SRV for the services a cluster record declares.

Exit status: 0 success, 1 failure, 2 usage error.";

/// Authoritative DNS for lct clusters: zones built from the inventory, with split-horizon
/// views (private addresses inside, public ones outside).
#[derive(Parser)]
#[command(name = "lct-dns", version, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Node records in, dns-record records (or a master file) out
    Zone {
        /// The forward zone, e.g. lct.internal
        #[arg(long)]
        domain: DomainName,
        /// A name server, NAME[=ADDRESS,...] (repeatable) [default: ns1.DOMAIN=127.0.0.1]
        #[arg(long = "ns", value_name = "NAME=ADDRESS", value_parser = parse_ns)]
        name_servers: Vec<(String, Vec<IpAddr>)>,
        /// The SOA serial [default: seconds since 1970, so it grows]
        #[arg(long)]
        serial: Option<u32>,
        /// TTL of every record
        #[arg(long, default_value_t = 300)]
        ttl: u32,
        /// No reverse (PTR) zones for private addresses
        #[arg(long)]
        no_reverse: bool,
        /// zone: an RFC 1035 master file of one zone and view
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// With --format zone: which zone [default: the domain]
        #[arg(long)]
        zone: Option<String>,
        /// With --format zone: which view
        #[arg(long, value_enum, default_value_t = ViewArg::Internal)]
        view: ViewArg,
    },
    /// Serve dns-record records authoritatively over UDP and TCP (in the foreground)
    #[command(after_help = "\
Clients from an --internal prefix get the internal view (private addresses); everyone else the
external view (public addresses; reverse zones refused). A query outside the zones is REFUSED:
lct-dns never recurses.

Example:
  lct-inventory query | lct-dns zone --domain lct.internal > zones.jsonl
  lct-dns serve --records zones.jsonl --listen 192.168.128.53:53 --listen 203.0.113.53:53 \\
                --internal 192.168.128.0/17")]
    Serve {
        /// A TOML configuration (records, listen, internal, udp_sockets); SIGHUP reloads it
        #[arg(long, value_name = "FILE", conflicts_with_all = ["records", "listen", "internal", "modes"])]
        config: Option<PathBuf>,
        /// dns-record records (from `lct-dns zone`)
        #[arg(long, value_name = "FILE", required_unless_present = "config")]
        records: Option<PathBuf>,
        /// Address and port to answer on, UDP and TCP (repeatable)
        #[arg(long, value_name = "ADDR:PORT", required_unless_present = "config")]
        listen: Vec<std::net::SocketAddr>,
        /// Clients in this prefix see the internal view (repeatable)
        #[arg(long = "internal", value_name = "CIDR")]
        internal: Vec<String>,
        /// UDP sockets per address (SO_REUSEPORT) [default: one per core]
        #[arg(long)]
        udp_sockets: Option<usize>,
        /// A zone's mode, ZONE=split|private|public (repeatable) [default: split; reverse zones private]
        #[arg(long = "zone-mode", value_name = "ZONE=MODE", value_parser = parse_mode)]
        modes: Vec<(String, lct_dns::server::ZoneMode)>,
    },
    #[command(flatten)]
    Meta(MetaCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Jsonl,
    Zone,
}

#[derive(Clone, Copy, ValueEnum)]
enum ViewArg {
    Internal,
    External,
}

fn parse_mode(s: &str) -> Result<(String, lct_dns::server::ZoneMode), String> {
    let (zone, mode) = s.split_once('=').ok_or("expected ZONE=MODE")?;
    Ok((zone.to_string(), mode.parse()?))
}

fn parse_ns(s: &str) -> Result<(String, Vec<IpAddr>), String> {
    let (name, addrs) = s.split_once('=').unwrap_or((s, ""));
    name.trim_end_matches('.').parse::<DomainName>().map_err(|e| e.to_string())?;
    let addrs = addrs
        .split(',')
        .filter(|a| !a.is_empty())
        .map(|a| a.parse::<IpAddr>().map_err(|_| format!("{a:?} is not an IP address")))
        .collect::<Result<_, _>>()?;
    Ok((name.to_string(), addrs))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli.global.init_logging();
    lct_core::cli::run("lct-dns", || run(cli))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.global.output();
    match cli.command {
        Command::Zone { domain, mut name_servers, serial, ttl, no_reverse, format: text, zone, view } => {
            if name_servers.is_empty() {
                name_servers.push((format!("ns1.{domain}"), vec!["127.0.0.1".parse().expect("an address")]));
            }
            let serial = serial.unwrap_or_else(|| {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs() as u32)
            });
            let options = ZoneOptions {
                hostmaster: format!("hostmaster.{domain}"),
                domain: domain.clone(),
                ttl,
                serial,
                name_servers,
                reverse: !no_reverse,
            };
            let (nodes, others) =
                stream::read_kind_parallel::<Node, Node>(io::stdin().lock(), |n, _| n).context("stdin")?;
            let nodes: Vec<Node> = nodes.into_iter().map(|(_, n)| n).collect();
            let clusters = ClusterStore::new(&state_dir()).with_input(&others)?;
            let records = zone_records(&nodes, &clusters, &options)?;
            let mut out = io::stdout().lock();
            match (text, format) {
                (Some(Format::Zone), _) | (None, OutputFormat::Table) => {
                    let zone = zone.unwrap_or_else(|| domain.to_string());
                    let zone_fqdn = if zone.ends_with('.') { zone.clone() } else { format!("{zone}.") };
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
        Command::Serve { config, records, listen, internal, udp_sockets, modes } => {
            let (config, config_path) = match config {
                Some(path) => (Config::load(&path)?, Some(path)),
                None => {
                    let config = Config {
                        records: records.expect("required without --config"),
                        listen,
                        internal,
                        udp_sockets,
                        modes: modes.into_iter().collect(),
                    };
                    config.prefixes().map_err(UsageError)?;
                    (config, None)
                }
            };
            let served = config.views()?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(serve(served, config, config_path))
        }
        Command::Meta(meta) => meta.run::<Cli>(),
    }
}

async fn serve(served: Served, config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let live = Live::new(served);
    let mut server = hickory_server::Server::new(live.clone());
    let per_address = config.udp_sockets.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    for addr in &config.listen {
        for udp in udp_sockets(*addr, per_address).with_context(|| format!("binding UDP {addr}"))? {
            tokio::spawn(lct_dns::fast::udp_loop(udp, live.clone()));
        }
        let tcp = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding TCP {addr}"))?;
        server.register_listener(tcp, std::time::Duration::from_secs(10), 65_535);
    }
    tracing::info!("serving on {:?}", config.listen);
    notify("READY=1");
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut config = config;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                notify("RELOADING=1");
                // A bad configuration or zone is refused with a log line; the old one serves on.
                let reloaded = match &config_path {
                    Some(path) => Config::load(path).map_err(anyhow::Error::from),
                    None => Ok(config.clone()),
                };
                match reloaded.and_then(|c| c.views().map(|v| (c, v))) {
                    Ok((c, views)) => {
                        if c.listen != config.listen {
                            tracing::warn!("reload: listen addresses change only on restart");
                        }
                        live.swap(views);
                        config = c;
                        tracing::info!("reloaded");
                    }
                    Err(e) => tracing::error!("reload refused, still serving the previous zones: {e:#}"),
                }
                notify("READY=1");
            }
        }
    }
    notify("STOPPING=1");
    server.shutdown_gracefully().await?;
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
