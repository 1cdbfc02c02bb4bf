//! `lct-dns`: zones from the inventory, the authoritative server, updates and keys on the command line.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::IpAddr;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use lct_core::cli::{GlobalArgs, MetaCommand, OutputFormat, UsageError};
use lct_core::record::{DomainName, Node};
use lct_core::state::{ClusterStore, state_dir};
use lct_core::stream;
use lct_dns::client::{Client, ZoneUpdate, difference};
use lct_dns::service::{Config, Live, notify, udp_sockets};
use lct_dns::tsig::Key;
use lct_dns::zone::{DnsRecord, View, ZoneOptions, master_file, zone_records};
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
        #[command(flatten)]
        zone: ZoneArgs,
        /// zone: an RFC 1035 master file of one zone and view
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// With --format zone: which zone [default: the domain]
        #[arg(long = "zone")]
        zone_name: Option<String>,
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
        #[arg(long, value_name = "FILE", conflicts_with_all = ["records", "listen", "internal", "modes", "key_files", "state"])]
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
        /// A TSIG key file that may update zones and transfer them (repeatable; `lct-dns keygen`)
        #[arg(long = "key-file", value_name = "FILE")]
        key_files: Vec<PathBuf>,
        /// Where updated zones are kept [default: $LCT_STATE_DIR/dns]
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// UDP answers per second to one outside /24 (/56) for one name and type, or one zone's
        /// negative answers (RRL); 0 turns it off
        #[arg(long, value_name = "N", default_value_t = 20)]
        rate_limit: u32,
        /// With --rate-limit: every N-th limited answer goes out truncated (clients retry over TCP)
        #[arg(long, value_name = "N", default_value_t = 2)]
        slip: u32,
        /// TCP connections at once; when full, the longest idle one is closed
        #[arg(long, value_name = "N", default_value_t = 4096)]
        tcp_clients: usize,
    },
    /// Node records in: make Linode's DNS Manager serve the zone's public addresses
    #[cfg(feature = "linode")]
    #[command(after_help = "\
The external view of the zone (A and AAAA of node and group names, public addresses only) is
made the DNS Manager's: records lct made before (their ids kept in
$LCT_STATE_DIR/dns/linode-DOMAIN.json) are updated or deleted as the nodes change, records
already saying what is wanted are adopted, and every other record of the domain is left
alone. The domain is created (type master) if Linode does not have it. The token comes from
LINODE_TOKEN or linode-cli's configuration, as for lct-api.

Clusters without a domain of their own are named under --parent-domain, as everywhere in lct
(LCT_DOMAIN sets both).

Example:
  export LCT_DOMAIN=example.com
  lct-inventory query | lct-dns sync-linode --domain example.com --dry-run
  lct-inventory query | lct-dns sync-linode --domain example.com")]
    SyncLinode {
        #[command(flatten)]
        zone: ZoneArgs,
        /// The SOA contact if the domain is created [default: hostmaster@DOMAIN]
        #[arg(long, value_name = "EMAIL")]
        soa_email: Option<String>,
        /// Show what would change, change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Node records in: bring a running server's zones in line, by signed dynamic update
    #[command(after_help = "\
Transfers each zone from the server (AXFR signed with the key), computes the difference with
the zones the node records make (the same options as `lct-dns zone`), and sends it as RFC 2136
UPDATE messages signed with the key. The server gives each changed zone a new SOA serial and
keeps it in its state directory. Prints a dns-update record per zone.

Examples:
  lct-dns keygen lct-update > /etc/lct/lct-update.key
  lct-inventory query | lct-dns update --server 192.168.128.53:53 --key-file /etc/lct/lct-update.key \\
                        --domain lct.internal --ns ns1.lct.internal=192.168.128.53
  lct-inventory query | lct-dns update --key-file k.key --domain lct.internal --dry-run

A reverse zone the server does not have yet is reported and skipped: zones come from the
server's records file (regenerate it and reload to add one).")]
    Update {
        #[command(flatten)]
        zone: ZoneArgs,
        /// The server's address and port
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:53")]
        server: std::net::SocketAddr,
        /// The TSIG key file (`lct-dns keygen`, `tsig-keygen`)
        #[arg(long = "key-file", value_name = "FILE")]
        key_file: PathBuf,
        /// Show the difference, send nothing
        #[arg(long)]
        dry_run: bool,
        /// Seconds to wait for the server
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Make a TSIG key (hmac-sha256, 32 random bytes) in the format of BIND's tsig-keygen
    #[command(after_help = "\
Examples:
  lct-dns keygen lct-update > /etc/lct/lct-update.key     # written with mode 0600 if a file
  nsupdate -k /etc/lct/lct-update.key                     # BIND's tools read it as is")]
    Keygen {
        /// The key's name, as the server and clients know it
        name: String,
        /// Write to this file (mode 0600) instead of standard output
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
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

/// How zones are made from node records: shared by `zone` and `update`.
#[derive(clap::Args)]
struct ZoneArgs {
    /// The forward zone: nodes named outside it are left out
    #[arg(long, env = "LCT_DOMAIN", default_value = lct_core::naming::DEFAULT_PARENT_DOMAIN)]
    domain: DomainName,
    /// The parent of clusters without a domain: their nodes are NODE.CLUSTER.PARENT (as in
    /// lct-hosts)
    #[arg(long, value_name = "DOMAIN", env = "LCT_DOMAIN", default_value = lct_core::naming::DEFAULT_PARENT_DOMAIN)]
    parent_domain: DomainName,
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
}

impl ZoneArgs {
    /// The zones' records from node records on stdin (and cluster records there or in the
    /// state directory), and the lines that were not node records.
    fn records(self) -> anyhow::Result<(Vec<DnsRecord>, Vec<stream::Line>)> {
        let ZoneArgs { domain, parent_domain, mut name_servers, serial, ttl, no_reverse } = self;
        if name_servers.is_empty() {
            name_servers.push((format!("ns1.{domain}"), vec!["127.0.0.1".parse().expect("an address")]));
        }
        let serial = serial.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs() as u32)
        });
        let options = ZoneOptions {
            hostmaster: format!("hostmaster.{domain}"),
            domain,
            parent_domain,
            ttl,
            serial,
            name_servers,
            reverse: !no_reverse,
        };
        let (nodes, others) =
            stream::read_kind_parallel::<Node, Node>(io::stdin().lock(), |n, _| n).context("stdin")?;
        let nodes: Vec<Node> = nodes.into_iter().map(|(_, n)| n).collect();
        let clusters = ClusterStore::new(&state_dir()).with_input(&others)?;
        Ok((zone_records(&nodes, &clusters, &options)?, others))
    }
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
        Command::Zone { zone: args, format: text, zone_name, view } => {
            let domain = args.domain.to_string();
            let (records, others) = args.records()?;
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
            let (desired, _) = args.records()?;
            let client = Client { server, key, timeout: std::time::Duration::from_secs(timeout) };
            let zones: BTreeSet<String> = desired.iter().map(|r| r.zone.clone()).collect();
            let mut reports = Vec::new();
            let mut failed = 0;
            for zone in zones {
                let current = match client.transfer(&zone) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!("{e}");
                        failed += 1;
                        continue;
                    }
                };
                let serial_of = |records: &[DnsRecord]| lct_dns::wire::serial_of(records, &zone);
                let want: Vec<DnsRecord> = desired.iter().filter(|r| r.zone == zone).cloned().collect();
                let (deletes, adds) = difference(&current, &want);
                let serial_before = serial_of(&current);
                let mut serial_after = serial_before;
                let nothing_to_do = deletes.is_empty() && adds.is_empty();
                if !dry_run && !nothing_to_do {
                    // One message per zone while it fits in 64 KiB; else in parts (each one
                    // atomic on the server).
                    let parts = (deletes.len() + adds.len()).div_ceil(1500).max(1);
                    let (dchunk, achunk) = (deletes.len().div_ceil(parts).max(1), adds.len().div_ceil(parts).max(1));
                    let mut result = Ok(());
                    for i in 0..parts {
                        let d = deletes.chunks(dchunk).nth(i).unwrap_or(&[]);
                        let a = adds.chunks(achunk).nth(i).unwrap_or(&[]);
                        result = client.update(&zone, d, a);
                        if result.is_err() {
                            break;
                        }
                    }
                    if let Err(e) = result {
                        tracing::error!("{e}");
                        failed += 1;
                        continue;
                    }
                    serial_after = client.transfer(&zone).ok().and_then(|c| serial_of(&c));
                }
                reports.push(ZoneUpdate {
                    zone,
                    added: adds.len(),
                    removed: deletes.len(),
                    serial_before,
                    serial_after,
                    dry_run,
                });
            }
            lct_core::table::emit(&reports, format)?;
            if failed > 0 {
                bail!("{failed} zone(s) not updated");
            }
            Ok(())
        }
        #[cfg(feature = "linode")]
        Command::SyncLinode { zone: args, soa_email, dry_run } => {
            let domain = args.domain.to_string();
            let soa_email = soa_email.unwrap_or_else(|| format!("hostmaster@{domain}"));
            let (records, _) = args.records()?;
            let want = lct_dns::linode::desired(&records, &domain);
            let provider = lct_api::linode::LinodeProvider::from_env()?;
            let state = state_dir().join("dns").join(format!("linode-{domain}.json"));
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let changes =
                runtime.block_on(lct_dns::linode::sync(&provider.api, &domain, &want, &soa_email, &state, dry_run))?;
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
        } => {
            // The answer tables' random seed: a failing random source stops the start here.
            lct_dns::keyed::init()?;
            let (config, config_path) = match config {
                Some(path) => (Config::load(&path)?, Some(path)),
                None => {
                    let config = Config {
                        records: records.expect("required without --config"),
                        listen,
                        internal,
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
                        secondaries: Vec::new(),
                        primaries: Vec::new(),
                        updates: Vec::new(),
                        base: None,
                        source: None,
                    };
                    config.prefixes().map_err(UsageError)?;
                    (config, None)
                }
            };
            let served = config.load_served(None)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(serve(Live::new(served), config, config_path))
        }
        Command::Meta(meta) => meta.run::<Cli>(),
    }
}

async fn serve(live: Live, config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let per_address = config.udp_sockets.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rrl = lct_dns::rrl::RateLimit::new(&config.rate_limit)?.map(std::sync::Arc::new);
    // One table of TCP connections for all addresses, and file descriptors for them.
    let tcp_clients = config.tcp_clients.unwrap_or(lct_dns::net::TCP_CLIENTS);
    lct_dns::net::raise_file_limit(tcp_clients + 256);
    let connections = lct_dns::net::Connections::new(tcp_clients);
    // Every socket bound before any is served: a client that gets a UDP answer can open a
    // TCP connection (a secondary's transfer right after our start).
    let mut bound = Vec::new();
    for addr in &config.listen {
        let udp = udp_sockets(*addr, per_address).with_context(|| format!("binding UDP {addr}"))?;
        let tcp = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding TCP {addr}"))?;
        bound.push((udp, tcp));
    }
    for (udp, tcp) in bound {
        tokio::spawn(lct_dns::net::tcp_loop(tcp, live.clone(), connections.clone()));
        for udp in udp {
            let (live, rrl, runtime) = (live.clone(), rrl.clone(), tokio::runtime::Handle::current());
            std::thread::Builder::new()
                .name("lct-dns-udp".into())
                .spawn(move || lct_dns::net::udp_batch_loop(udp, live, rrl, runtime))
                .context("starting a UDP thread")?;
        }
    }
    lct_dns::secondary::follow_all(&live);
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
                let turn = live.update_lock().await;
                let held = live.current();
                match reloaded.and_then(|c| c.load_served(Some(&held.records)).map(|v| (c, v))) {
                    Ok((c, served)) => {
                        if c.listen != config.listen
                            || c.rate_limit != config.rate_limit
                            || c.tcp_clients != config.tcp_clients
                            || c.udp_sockets != config.udp_sockets
                            || c.primaries != config.primaries
                        {
                            tracing::warn!(
                                "reload: listen, udp_sockets, tcp_clients, rate_limit and [[primary]] change only on restart"
                            );
                        }
                        live.swap(served);
                        config = c;
                        tracing::info!("reloaded: {} records", live.current().records.len());
                    }
                    Err(e) => tracing::error!("reload refused, still serving the previous zones: {e:#}"),
                }
                drop(turn);
                notify("READY=1");
            }
        }
    }
    notify("STOPPING=1");
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
