//! `lct-dns`'s command line: its subcommands, their arguments and help.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use lct_core::cli::{GlobalArgs, MetaCommand};
use lct_core::record::DomainName;
use lct_dns::mode::ZoneMode;
use lct_dns::zone::ZoneOptions;

const EXAMPLES: &str = "\
Examples:
  # The zone's records, each marked internal, external or both
  lct-inventory query | lct-dns zone --domain lct.internal --ns ns1.lct.internal=192.168.128.53

  # Master files that BIND and Knot load as they are, one per view
  lct-inventory query | lct-dns zone --domain lct.internal --format zone --view internal
  lct-inventory query | lct-dns zone --domain lct.internal --format zone --view external
  lct-inventory query | lct-dns zone --domain lct.internal --format zone --zone 168.192.in-addr.arpa

  # The zone as Linode's us-east sees it (other regions by mesh or public address)
  lct-inventory query | lct-dns zone --domain lct.internal --region linode:us-east

Names, in the zone --domain: NODE.CD and GROUP.CD (A and AAAA; a group's name holds every
member's address) and _SERVICE._PROTO.CD (SRV, for the services a cluster record declares),
where CD is the cluster's domain: its cluster record's own, else CLUSTER.PARENT
(--parent-domain). A cluster whose domain is outside the zone is left out, with a warning.
Private addresses are in the internal view, public ones in the external view (and inside too
for a name without a private address); a cluster's names.dns can publish only its private or
only its public addresses, or no names. Reverse zones: a PTR per private IPv4 address, inside.

Exit status: 0 success, 1 failure, 2 usage error.";

/// Authoritative DNS for lct clusters: zones built from the inventory, with split-horizon
/// views (private addresses inside, public ones outside).
#[derive(Parser)]
#[command(name = "lct-dns", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        #[arg(long, value_name = "FILE", conflicts_with_all = ["records", "listen", "internal", "modes", "key_files", "state", "stats"])]
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
        modes: Vec<(String, ZoneMode)>,
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
        /// Serve statistics here over HTTP (/metrics, /stats): a loopback or private address
        #[arg(long, value_name = "ADDR:PORT")]
        stats: Option<std::net::SocketAddr>,
    },
    /// A running server's statistics (from its --stats / [stats] listener)
    #[command(after_help = "\
Counters of queries (by view, type and rcode), RRL drops and slips, TCP connections,
transfers and NOTIFYs, and each zone's serial, as dns-stat records: a table on a terminal,
JSON lines in a pipe. Prometheus scrapes the same numbers from http://ADDR:PORT/metrics.

Examples:
  lct-dns serve --records zones.jsonl --listen 192.168.128.53:53 --stats 127.0.0.1:9153
  lct-dns stats --server 127.0.0.1:9153
  lct-dns stats --server 127.0.0.1:9153 -o jsonl | jq 'select(.metric == \"lct_dns_queries_total\")'")]
    Stats {
        /// The statistics listener's address and port
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9153")]
        server: std::net::SocketAddr,
        /// Seconds to wait for the server
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Node records in: make Linode's DNS Manager serve the zone's public addresses
    #[cfg(feature = "linode")]
    #[command(after_help = "\
The external view of the zone (A and AAAA of node and group names, public addresses only) is
made the DNS Manager's: records lct made before (their ids kept in lct's state,
dns/linode-DOMAIN.json: LCT_STATE, else $LCT_STATE_DIR) are updated or deleted as the nodes change, records
already saying what is wanted are adopted, and every other record of the domain is left
alone. The domain is created (type master) if Linode does not have it. The token comes from
LINODE_TOKEN or linode-cli's configuration, as for lct-api.

Clusters without a domain of their own are named under --parent-domain, as everywhere in lct
(LCT_DOMAIN sets both).

Linode's DNS Manager serves no DNSSEC: a zone signed by lct-dns is refused, before any change.
Signed means: a key in this machine's state directory, `[dnssec]` on for it in the --config
given, or a DNSKEY set answered by one of its name servers (--check-server: none answering is
an error; else the addresses its NS records' glue gives, port 53: none answering is a warning).

Example:
  export LCT_DOMAIN=example.com
  lct-inventory query | lct-dns sync-linode --domain example.com --dry-run
  lct-inventory query | lct-dns sync-linode --domain example.com --config /etc/lct/lct-dns.toml
  lct-inventory query | lct-dns sync-linode --domain example.com --check-server 192.0.2.53:53")]
    SyncLinode {
        #[command(flatten)]
        zone: ZoneArgs,
        /// The lct-dns configuration of the zone's servers: refused if it signs the zone
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// A name server of the zone to ask for its DNSKEY [default: the NS records' glue, port 53]
        #[arg(long, value_name = "ADDR:PORT")]
        check_server: Vec<std::net::SocketAddr>,
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
    /// The DS record a signed zone's parent publishes (SHA-256 of its key)
    #[command(after_help = "\
The keys are the ones `lct-dns serve` made in its state directory when it first signed the
zone ([dnssec] in its configuration); nothing is made here. One DS covers both views: they
are signed with the same keys. During a KSK rollover it is the new key's DS (the zone's CDS),
once the new key is ready to be submitted; before and after, the active KSK's.

Examples:
  lct-dns ds lct.internal --config /etc/lct/lct-dns.toml            # a master file line
  lct-dns ds lct.internal --config /etc/lct/lct-dns.toml -o jsonl   # a dns-record record")]
    Ds {
        /// The signed zone
        zone: String,
        /// The server's configuration (where its state directory is)
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// A signed zone's keys: role, state, the next event
    #[command(after_help = "\
One dns-key record per key (a table on a terminal): its tag, role (KSK, ZSK or CSK), state
(published, ready, active, retire-active, retired) and the zone's next key event. A KSK in
state ready waits for its DS at the parent: publish the DS `lct-dns ds` prints (the CDS the
zone shows), then `lct-dns ds-seen`.

Examples:
  lct-dns keys lct.internal --config /etc/lct/lct-dns.toml
  lct-dns keys lct.internal --config /etc/lct/lct-dns.toml -o jsonl")]
    Keys {
        /// The signed zone
        zone: String,
        /// The server's configuration (where its state directory is)
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Start a key rollover now (like `knotc zone-key-rollover`)
    #[command(after_help = "\
zsk: a new ZSK is published now and signs once caches have it (pre-publication); the old one
goes once its signatures left them. ksk: a new KSK (or CSK) signs the DNSKEY set beside the
old one (double signature) and, once caches have it, the zone asks the parent for its DS
(CDS, CDNSKEY); `lct-dns ds-seen` once the parent has it retires the old key. The running
server takes the request within seconds (it looks at its key files every 2 s).

Examples:
  lct-dns roll lct.internal zsk --config /etc/lct/lct-dns.toml
  lct-dns roll lct.internal ksk --config /etc/lct/lct-dns.toml")]
    Roll {
        /// The signed zone
        zone: String,
        /// Which key
        kind: RollKind,
        /// The server's configuration (where its state directory is)
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// The new DS is at the parent: retire the old KSK (like `knotc zone-ksk-submitted`)
    #[command(after_help = "\
Refused unless a KSK (or CSK) waits for its DS (`lct-dns keys` shows it ready). Check the
parent first, e.g. `dig +short DS lct.internal @PARENT-SERVER` against `lct-dns ds`: the old
key stops signing once resolvers dropped the old DS ([dnssec_policy] parent_ds_ttl and
propagation_delay later).

Examples:
  lct-dns ds-seen lct.internal --config /etc/lct/lct-dns.toml")]
    DsSeen {
        /// The signed zone
        zone: String,
        /// The server's configuration (where its state directory is)
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },

    #[command(flatten)]
    Meta(MetaCommand),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RollKind {
    Zsk,
    Ksk,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Jsonl,
    Zone,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ViewArg {
    Internal,
    External,
}

/// How zones are made from node records: shared by `zone` and `update`.
#[derive(clap::Args)]
pub struct ZoneArgs {
    /// The forward zone: nodes named outside it are left out
    #[arg(long, env = "LCT_DOMAIN", default_value = lct_core::naming::DEFAULT_PARENT_DOMAIN)]
    pub domain: DomainName,
    /// The parent of clusters without a domain: their nodes are NODE.CLUSTER.PARENT (as in
    /// lct-hosts)
    #[arg(long, value_name = "DOMAIN", env = "LCT_DOMAIN", default_value = lct_core::naming::DEFAULT_PARENT_DOMAIN)]
    pub parent_domain: DomainName,
    /// A name server, NAME[=ADDRESS,...] (repeatable) [default: ns1.DOMAIN=127.0.0.1]
    #[arg(long = "ns", value_name = "NAME=ADDRESS", value_parser = parse_ns)]
    pub name_servers: Vec<(String, Vec<IpAddr>)>,
    /// The SOA serial [default: seconds since 1970, so it grows]
    #[arg(long)]
    pub serial: Option<u32>,
    /// TTL of every record
    #[arg(long, default_value_t = 300)]
    pub ttl: u32,
    /// No reverse (PTR) zones for private addresses
    #[arg(long)]
    pub no_reverse: bool,
    /// The zone as the nodes of this private network (PROVIDER:REGION, e.g. local:a or
    /// linode:us-east) see it: other networks' nodes by their mesh addresses when they are
    /// mesh members (lct-mesh), else by their public addresses only (private addresses
    /// overlap across regions and providers and do not route); no PTR for them
    #[arg(long, value_name = "PROVIDER:REGION")]
    pub region: Option<lct_core::record::PrivateNetwork>,
    /// With --region: a mesh member's mesh address, NODE=IPV4 (repeatable), instead of the
    /// mesh recorded in the state store (a DNS server's node, where the controller runs this,
    /// has no store; the controller passes what lct-mesh recorded)
    #[arg(long = "mesh-address", value_name = "NODE=IPV4", value_parser = parse_mesh_address, requires = "region")]
    pub mesh_addresses: Vec<(lct_core::record::Name, std::net::Ipv4Addr)>,
}

impl ZoneArgs {
    /// How the zones are made, defaults filled in.
    pub fn options(self) -> ZoneOptions {
        let ZoneArgs { domain, parent_domain, mut name_servers, serial, ttl, no_reverse, region, mesh_addresses } =
            self;
        if name_servers.is_empty() {
            name_servers.push((format!("ns1.{domain}"), vec!["127.0.0.1".parse().expect("an address")]));
        }
        let serial = serial.unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs() as u32)
        });
        ZoneOptions {
            hostmaster: format!("hostmaster.{domain}"),
            domain,
            parent_domain,
            ttl,
            serial,
            name_servers,
            reverse: !no_reverse,
            region,
            mesh: mesh_addresses.into_iter().collect(),
        }
    }
}

fn parse_mode(s: &str) -> Result<(String, ZoneMode), String> {
    let (zone, mode) = s.split_once('=').ok_or("expected ZONE=MODE")?;
    Ok((zone.to_string(), mode.parse()?))
}

/// `NODE=IPV4`: a node's name (lct's grammar) and its mesh address.
fn parse_mesh_address(s: &str) -> Result<(lct_core::record::Name, std::net::Ipv4Addr), String> {
    let (name, address) = s.split_once('=').ok_or("expected NODE=IPV4")?;
    let name = name.parse().map_err(|e| format!("{name:?}: {e}"))?;
    let address = address.parse().map_err(|_| format!("{address:?} is not an IPv4 address"))?;
    Ok((name, address))
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

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
