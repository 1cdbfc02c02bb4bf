use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::IpAddr;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use lct_core::cli::{GlobalArgs, MetaCommand, OutputFormat};
use lct_core::record::{Cluster, DomainName, Name, Node};
use lct_core::state::{ClusterStore, state_dir};
use lct_core::stream::{self, Writer};
use lct_dns::server::Views;
use lct_dns::zone::{DnsRecord, View, ZoneOptions, master_file, zone_records};

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
        /// dns-record records (from `lct-dns zone`); - for stdin
        #[arg(long, value_name = "FILE")]
        records: String,
        /// Address and port to answer on, UDP and TCP (repeatable)
        #[arg(long, value_name = "ADDR:PORT", required = true)]
        listen: Vec<std::net::SocketAddr>,
        /// Clients in this prefix see the internal view (repeatable)
        #[arg(long = "internal", value_name = "CIDR")]
        internal: Vec<lct_dns::server::Prefix>,
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
            let mut clusters: Vec<Cluster> = others
                .iter()
                .filter(|l| l.is::<Cluster>())
                .map(|l| l.parse::<Cluster>())
                .collect::<Result<_, _>>()
                .context("stdin")?;
            let known: BTreeSet<Name> = clusters.iter().map(|c| c.name.clone()).collect();
            clusters.extend(ClusterStore::new(&state_dir()).load()?.into_iter().filter(|c| !known.contains(&c.name)));
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
                _ => {
                    let mut w = Writer::new(out);
                    for line in &others {
                        w.passthrough(line)?;
                    }
                    for r in &records {
                        w.write(r)?;
                    }
                    w.flush()?;
                }
            }
            Ok(())
        }
        Command::Serve { records, listen, internal } => {
            let records: Vec<DnsRecord> = if records == "-" {
                stream::read_kind::<DnsRecord>(io::stdin().lock()).context("stdin")?.0
            } else {
                let file = std::fs::File::open(&records).with_context(|| records.clone())?;
                stream::read_kind::<DnsRecord>(io::BufReader::new(file)).with_context(|| records.clone())?.0
            };
            let views = Views::new(&records, internal)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(serve(views, listen))
        }
        Command::Meta(meta) => meta.run::<Cli>(),
    }
}

async fn serve(views: Views, listen: Vec<std::net::SocketAddr>) -> anyhow::Result<()> {
    let mut server = hickory_server::Server::new(views);
    for addr in &listen {
        let udp = tokio::net::UdpSocket::bind(addr).await.with_context(|| format!("binding UDP {addr}"))?;
        server.register_socket(udp);
        let tcp = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding TCP {addr}"))?;
        server.register_listener(tcp, std::time::Duration::from_secs(10), 65_535);
    }
    tracing::info!("serving on {listen:?}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
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
