//! Zones from the inventory: `dns-record` records for nodes, groups and services, views, master files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use lct_core::naming::Naming;
use lct_core::record::{Cluster, DnsPublish, DomainName, Name, Node, Protocol, Record, Status, check_label};
use serde::{Deserialize, Serialize};

/// Which clients see a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// Clients inside the private network: private addresses.
    Internal,
    /// Everyone else: public addresses only.
    External,
    Both,
}

impl View {
    pub fn includes(self, view: View) -> bool {
        self == View::Both || view == View::Both || self == view
    }
}

/// Record types are hickory's, the wire's own; lct-dns makes and keeps these.
pub use hickory_proto::rr::RecordType;

/// The types a `dns-record` may have: what lct-dns makes from the inventory and takes in
/// updates.
pub const SUPPORTED_TYPES: [RecordType; 6] =
    [RecordType::SOA, RecordType::NS, RecordType::A, RecordType::AAAA, RecordType::SRV, RecordType::PTR];

/// A supported type as `Some`, anything else as `None`.
pub fn supported(t: RecordType) -> Option<RecordType> {
    SUPPORTED_TYPES.contains(&t).then_some(t)
}

/// The DNSSEC types a secondary keeps from a signed zone's transfer (never taken from a
/// records file or an UPDATE: a zone signed here gets them from its signer). Their `data`
/// is RFC 3597's generic form (`\# LENGTH HEX`), the exact bytes that were signed.
pub const DNSSEC_TYPES: [RecordType; 6] =
    [RecordType::DNSKEY, RecordType::RRSIG, RecordType::NSEC, RecordType::DS, RecordType::CDS, RecordType::CDNSKEY];

/// Whether `t` is one of [`DNSSEC_TYPES`].
pub fn is_dnssec(t: RecordType) -> bool {
    DNSSEC_TYPES.contains(&t)
}

/// A type a `dns-record` may hold: [`SUPPORTED_TYPES`], or [`DNSSEC_TYPES`] (a secondary's
/// copy of a signed zone, in the state file).
pub fn kept(t: RecordType) -> Option<RecordType> {
    (SUPPORTED_TYPES.contains(&t) || is_dnssec(t)).then_some(t)
}

/// `type` in a `dns-record`: the type's mnemonic (`AAAA`), one of [`SUPPORTED_TYPES`] or
/// [`DNSSEC_TYPES`].
mod type_mnemonic {
    use super::{DNSSEC_TYPES, RecordType, SUPPORTED_TYPES, kept};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<String> = SUPPORTED_TYPES.iter().chain(&DNSSEC_TYPES).map(ToString::to_string).collect();
        schemars::json_schema!({
            "description": "The record type (the DNSSEC types only in a secondary's copy of a signed zone).",
            "enum": names
        })
    }

    pub fn serialize<S: Serializer>(t: &RecordType, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RecordType, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse::<RecordType>().ok().and_then(kept).ok_or_else(|| {
            let names: Vec<String> = SUPPORTED_TYPES.iter().chain(&DNSSEC_TYPES).map(ToString::to_string).collect();
            D::Error::custom(format!("{text:?} is not a record type lct-dns keeps ({})", names.join(", ")))
        })
    }
}

/// One resource record: the `dns-record` record. `name` and names inside `data` are fully
/// qualified with the final dot; `data` is in master-file presentation form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DnsRecord {
    pub zone: String,
    pub name: String,
    #[serde(rename = "type", with = "type_mnemonic")]
    #[schemars(schema_with = "type_mnemonic::schema")]
    pub rtype: RecordType,
    pub ttl: u32,
    pub data: String,
    pub view: View,
}

impl Record for DnsRecord {
    const KIND: &'static str = "dns-record";
    const VERSION: u32 = 1;
}

/// A service a cluster offers, declared in its cluster record under `services`, published as
/// SRV records: `_NAME._PROTOCOL.CLUSTER.DOMAIN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    /// The group whose members offer it (empty: every member).
    #[serde(default)]
    pub group: Option<Name>,
    pub port: u16,
    #[serde(default = "tcp")]
    pub protocol: Protocol,
    #[serde(default)]
    pub priority: u16,
    #[serde(default = "weight")]
    pub weight: u16,
}

fn tcp() -> Protocol {
    Protocol::Tcp
}

fn weight() -> u16 {
    10
}

/// How to build the zones.
#[derive(Debug, Clone)]
pub struct ZoneOptions {
    /// The forward zone's apex: nodes whose names (lct-core's naming rule) fall outside it
    /// are left out.
    pub domain: DomainName,
    /// The parent of clusters without a domain of their own.
    pub parent_domain: DomainName,
    pub ttl: u32,
    pub serial: u32,
    /// Name servers and their addresses (glue, when inside the domain).
    pub name_servers: Vec<(String, Vec<IpAddr>)>,
    /// The SOA's responsible mailbox, as a name (`hostmaster.DOMAIN.`).
    pub hostmaster: String,
    /// Reverse zones for private IPv4 addresses.
    pub reverse: bool,
    /// The zone as the nodes of one private network see it (`Node::private_network`: a
    /// provider's region): a node of another (private addresses overlap across regions and
    /// providers and do not route between them) is published by its public addresses only,
    /// and gets no PTR record. `None`: every node's private addresses.
    pub region: Option<lct_core::record::PrivateNetwork>,
    /// With `region`: the mesh members' mesh addresses ([`lct_mesh::addresses`]). A member of
    /// another region is published by its mesh address where its private ones would be (the
    /// region's nodes, members too, reach it over the mesh), and gets no PTR record here.
    pub mesh: BTreeMap<Name, Ipv4Addr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("cluster {cluster}: field services{path}: {message}")]
    Service { cluster: Name, path: String, message: String },
    #[error("{0:?} is not a valid name server name")]
    NameServer(String),
}

/// A name with its final dot (`lct.internal` -> `lct.internal.`).
pub fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

/// The services a cluster record declares.
pub fn services(cluster: &Cluster) -> Result<Vec<Service>, ZoneError> {
    let Some(value) = cluster.extra.get("services") else { return Ok(Vec::new()) };
    let services: Vec<Service> =
        lct_core::stream::from_str_with_path(&value.to_string()).map_err(|(f, message)| ZoneError::Service {
            cluster: cluster.name.clone(),
            path: f.map(|f| if f.starts_with('[') { f } else { format!(".{f}") }).unwrap_or_default(),
            message,
        })?;
    for (i, s) in services.iter().enumerate() {
        let bad = |path: &str, message: &str| ZoneError::Service {
            cluster: cluster.name.clone(),
            path: format!("[{i}].{path}"),
            message: message.into(),
        };
        check_label(&s.name).map_err(|why| bad("name", why))?;
        if s.port == 0 {
            return Err(bad("port", "must be 1 to 65535"));
        }
    }
    Ok(services)
}

/// Every record of the forward zone `options.domain` and, with `options.reverse`, of the
/// reverse zones of the private IPv4 addresses, sorted and deduplicated.
pub fn zone_records(nodes: &[Node], clusters: &[Cluster], options: &ZoneOptions) -> Result<Vec<DnsRecord>, ZoneError> {
    let domain = fqdn(options.domain.as_str());
    let ttl = options.ttl;
    let mut out: BTreeSet<DnsRecord> = BTreeSet::new();
    let rec = |zone: &str, name: String, rtype, data: String, view| DnsRecord {
        zone: zone.to_string(),
        name,
        rtype,
        ttl,
        data,
        view,
    };
    apex(&mut out, &domain, options)?;
    // Each cluster's domain by the one naming rule (lct-hosts names nodes the same way);
    // `None` for a cluster whose names are outside this zone.
    let naming = Naming::new(clusters, options.parent_domain.clone());
    let members: Vec<&Node> = nodes.iter().filter(|n| n.status != Status::Deleting).collect();
    let mut domains: HashMap<&Name, Option<String>> = HashMap::new();
    for cluster in members.iter().map(|n| &n.cluster).chain(clusters.iter().map(|c| &c.name)) {
        domains.entry(cluster).or_insert_with(|| {
            let d = naming.cluster_domain(cluster);
            if options.domain.contains(d.as_str()) {
                Some(fqdn(d.as_str()))
            } else {
                // At the default log level: an empty zone with no word why is a puzzle.
                tracing::warn!(
                    "cluster {cluster}: its domain {d} is outside the zone {}: its names are left out (a zone \
                     of {d} or of a parent domain serves them)",
                    options.domain
                );
                None
            }
        });
    }
    // Clusters that publish less than both kinds of address (their records' names.dns).
    let publish: HashMap<&Name, DnsPublish> =
        clusters.iter().filter_map(|c| c.names.map(|p| (&c.name, p.dns))).collect();
    let publish_of = |cluster: &Name| publish.get(cluster).copied().unwrap_or_default();
    let mut reverse_zones: BTreeSet<String> = BTreeSet::new();
    for node in &members {
        let Some(cluster_domain) = &domains[&node.cluster] else { continue };
        let elsewhere = options.region.as_ref().is_some_and(|r| *r != node.private_network());
        let meshed = options.mesh.get(&node.name).filter(|_| elsewhere);
        let mode = match publish_of(&node.cluster) {
            // Its mesh address stands for its private ones: what it publishes, as at home.
            mode if meshed.is_some() => mode,
            DnsPublish::Split if elsewhere => DnsPublish::Public,
            DnsPublish::Private if elsewhere => DnsPublish::None,
            mode => mode,
        };
        if mode == DnsPublish::None {
            continue;
        }
        let host = format!("{}.{cluster_domain}", node.name);
        let group = format!("{}.{cluster_domain}", node.group);
        let seen;
        let node = match meshed {
            Some(address) => {
                seen = Node { private_ipv4: vec![*address], private_ipv6: Vec::new(), ..(*node).clone() };
                &seen
            }
            None => *node,
        };
        for (addr, view) in addresses(node, mode) {
            let rtype = if addr.is_ipv4() { RecordType::A } else { RecordType::AAAA };
            out.insert(rec(&domain, host.clone(), rtype, addr.to_string(), view));
            out.insert(rec(&domain, group.clone(), rtype, addr.to_string(), view));
        }
        if options.reverse && mode != DnsPublish::Public && meshed.is_none() {
            for a in &node.private_ipv4 {
                let [w, x, y, z] = a.octets();
                let zone = format!("{x}.{w}.in-addr.arpa.");
                out.insert(rec(&zone, format!("{z}.{y}.{zone}"), RecordType::PTR, host.clone(), View::Internal));
                reverse_zones.insert(zone);
            }
        }
    }
    for cluster in clusters {
        let services = services(cluster)?;
        let Some(cluster_domain) = &domains[&cluster.name] else { continue };
        if publish_of(&cluster.name) == DnsPublish::None {
            continue;
        }
        for s in services {
            let owner = format!("_{}._{}.{cluster_domain}", s.name, s.protocol);
            // A node another region cannot reach (it publishes private addresses only) is
            // no target there.
            let unreachable = |n: &Node| {
                publish_of(&n.cluster) == DnsPublish::Private
                    && options.region.as_ref().is_some_and(|r| *r != n.private_network())
                    && !options.mesh.contains_key(&n.name)
            };
            for node in members.iter().filter(|n| {
                n.cluster == cluster.name && s.group.as_ref().is_none_or(|g| *g == n.group) && !unreachable(n)
            }) {
                let target = format!("{}.{cluster_domain}", node.name);
                let data = format!("{} {} {} {target}", s.priority, s.weight, s.port);
                out.insert(rec(&domain, owner.clone(), RecordType::SRV, data, View::Both));
            }
        }
    }
    for zone in &reverse_zones {
        apex(&mut out, zone, options)?;
    }
    Ok(assign_views(out))
}

/// A node's addresses its cluster publishes: which view shows each is [`assign_views`]'s
/// business (with only public ones, every client sees them; with only private ones,
/// internal clients alone).
fn addresses(node: &Node, mode: DnsPublish) -> Vec<(IpAddr, View)> {
    let (private, public) = match mode {
        DnsPublish::Split => (true, true),
        DnsPublish::Private => (true, false),
        DnsPublish::Public => (false, true),
        DnsPublish::None => (false, false),
    };
    let mut out = Vec::new();
    if private {
        out.extend(node.private_ipv4.iter().map(|a| IpAddr::V4(*a)));
        out.extend(node.private_ipv6.iter().map(|a| IpAddr::V6(*a)));
    }
    if public {
        out.extend(node.public_ipv4.iter().map(|a| IpAddr::V4(*a)));
        out.extend(node.public_ipv6.iter().map(|a| IpAddr::V6(*a)));
    }
    out.into_iter().map(|a| (a, View::Both)).collect()
}

/// Whether an address belongs to a private network (RFC 1918, shared 100.64/10, link-local,
/// loopback, IPv6 unique-local): such addresses are shown only to internal clients.
pub fn is_private(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            let [w, x, ..] = a.octets();
            a.is_private() || a.is_loopback() || a.is_link_local() || (w == 100 && (64..128).contains(&x))
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00 || (a.segments()[0] & 0xffc0) == 0xfe80,
        },
    }
}

/// Decides who sees each record, from the data alone, so that zones made from the inventory
/// and zones changed by dynamic updates follow one rule:
///
/// * a private address: internal clients only;
/// * a public address: external clients, and internal ones too when its name has no private
///   address of that family;
/// * SRV: the views in which its target has an address (both when the target is elsewhere);
/// * PTR: internal; SOA and NS: both.
///
/// Records the same but for their view or TTL are merged (the first TTL wins).
pub fn assign_views(records: impl IntoIterator<Item = DnsRecord>) -> Vec<DnsRecord> {
    use std::collections::{BTreeMap, HashMap};
    let mut unique: BTreeMap<(String, String, RecordType, String), DnsRecord> = BTreeMap::new();
    for r in records {
        unique.entry((r.zone.clone(), r.name.clone(), r.rtype, r.data.clone())).or_insert(r);
    }
    let address = |r: &DnsRecord| r.data.parse::<IpAddr>().ok();
    let with_private: BTreeSet<(&str, RecordType)> = unique
        .values()
        .filter(|r| matches!(r.rtype, RecordType::A | RecordType::AAAA) && address(r).is_some_and(is_private))
        .map(|r| (r.name.as_str(), r.rtype))
        .collect();
    let view_of_address = |r: &DnsRecord| match address(r) {
        Some(a) if is_private(a) => View::Internal,
        _ if with_private.contains(&(r.name.as_str(), r.rtype)) => View::External,
        _ => View::Both,
    };
    // Which views each name has an address in: (inside, outside).
    let mut seen: HashMap<&str, (bool, bool)> = HashMap::new();
    for r in unique.values().filter(|r| matches!(r.rtype, RecordType::A | RecordType::AAAA)) {
        let v = view_of_address(r);
        let e = seen.entry(r.name.as_str()).or_default();
        e.0 |= v.includes(View::Internal);
        e.1 |= v.includes(View::External);
    }
    let views: Vec<View> = unique
        .values()
        .map(|r| match r.rtype {
            RecordType::A | RecordType::AAAA => view_of_address(r),
            RecordType::PTR => View::Internal,
            RecordType::SRV => {
                let target = r.data.rsplit(' ').next().unwrap_or_default();
                match seen.get(target) {
                    Some((true, false)) => View::Internal,
                    Some((false, true)) => View::External,
                    _ => View::Both,
                }
            }
            // SOA and NS (no other type is kept).
            _ => View::Both,
        })
        .collect();
    unique.into_values().zip(views).map(|(r, view)| DnsRecord { view, ..r }).collect()
}

fn apex(out: &mut BTreeSet<DnsRecord>, zone: &str, options: &ZoneOptions) -> Result<(), ZoneError> {
    let ns: Vec<String> = options.name_servers.iter().map(|(n, _)| fqdn(n)).collect();
    let primary = ns.first().cloned().unwrap_or_else(|| format!("ns1.{zone}"));
    let soa = format!(
        "{primary} {} {} 3600 600 1209600 {}",
        fqdn(&options.hostmaster),
        options.serial,
        options.ttl.min(3600)
    );
    let rec = |name: &str, rtype, data: String| DnsRecord {
        zone: zone.to_string(),
        name: name.to_string(),
        rtype,
        ttl: options.ttl,
        data,
        view: View::Both,
    };
    out.insert(rec(zone, RecordType::SOA, soa));
    for (name, addrs) in &options.name_servers {
        let name = fqdn(name);
        if name.trim_end_matches('.').split('.').any(|l| check_label(l).is_err()) {
            return Err(ZoneError::NameServer(name));
        }
        out.insert(rec(zone, RecordType::NS, name.clone()));
        // Glue: only for a name server inside this zone.
        if name.ends_with(&format!(".{zone}")) {
            for a in addrs {
                let rtype = if a.is_ipv4() { RecordType::A } else { RecordType::AAAA };
                out.insert(rec(&name, rtype, a.to_string()));
            }
        }
    }
    Ok(())
}

/// The master file of `zone` as `view` sees it: `$ORIGIN`, `$TTL`, the SOA first, then NS,
/// then every other record in name order, names relative to the origin where they can be.
pub fn master_file(records: &[DnsRecord], zone: &str, view: View) -> String {
    let zone = fqdn(zone);
    let mut text = String::new();
    let _ = writeln!(text, "; zone {zone}, {} view, written by lct-dns", format!("{view:?}").to_lowercase());
    let _ = writeln!(text, "$ORIGIN {zone}");
    let mut ours: Vec<&DnsRecord> = records.iter().filter(|r| r.zone == zone && r.view.includes(view)).collect();
    let rank = |t: RecordType| match t {
        RecordType::SOA => 0,
        RecordType::NS => 1,
        _ => 2,
    };
    ours.sort_by(|a, b| (rank(a.rtype), &a.name, a.rtype, &a.data).cmp(&(rank(b.rtype), &b.name, b.rtype, &b.data)));
    if let Some(first) = ours.first() {
        let _ = writeln!(text, "$TTL {}", first.ttl);
    }
    let suffix = format!(".{zone}");
    for r in ours {
        let owner = if r.name == zone {
            "@".to_string()
        } else if let Some(rel) = r.name.strip_suffix(&suffix) {
            rel.to_string()
        } else {
            r.name.clone()
        };
        let _ = writeln!(text, "{owner}\t{}\tIN\t{}\t{}", r.ttl, r.rtype, r.data);
    }
    text
}

/// The reverse zone a private IPv4 address belongs to (`168.192.in-addr.arpa.`).
pub fn reverse_zone_of(a: Ipv4Addr) -> String {
    let [w, x, _, _] = a.octets();
    format!("{x}.{w}.in-addr.arpa.")
}

/// `dns-record` records from a file of JSON lines (a records file, the state directory's
/// zones), an error naming the file.
pub fn read_records(path: &std::path::Path) -> anyhow::Result<Vec<DnsRecord>> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let (records, _) = lct_core::stream::read_kind::<DnsRecord>(std::io::BufReader::new(file))
        .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    Ok(records)
}

/// A small zone for tests: SOA, NS, and a node with a private and a public address.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{DnsRecord, RecordType, View, assign_views};

    pub fn rec(name: &str, rtype: RecordType, data: &str) -> DnsRecord {
        DnsRecord {
            zone: "lct.internal.".into(),
            name: name.into(),
            rtype,
            ttl: 300,
            data: data.into(),
            view: View::Both,
        }
    }

    pub fn zone() -> Vec<DnsRecord> {
        assign_views(vec![
            rec("lct.internal.", RecordType::SOA, "ns1.lct.internal. hostmaster.lct.internal. 7 3600 600 1209600 300"),
            rec("lct.internal.", RecordType::NS, "ns1.lct.internal."),
            rec("a.zk.lct.internal.", RecordType::A, "192.168.128.1"),
            rec("a.zk.lct.internal.", RecordType::A, "203.0.113.1"),
        ])
    }
}

#[cfg(test)]
#[path = "zone_tests.rs"]
mod tests;
