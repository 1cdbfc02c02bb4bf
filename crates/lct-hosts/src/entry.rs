//! Host entries: which names each node's addresses get, checked for conflicts, as records or text.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use lct_core::naming::Naming;
use lct_core::record::{Cluster, DomainName, Name, Record, check_label};

use crate::Member;
use serde::{Deserialize, Serialize};

/// Which network an address is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Private,
    Public,
}

/// One line of a hosts file: an address and its names, the first being the canonical one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostEntry {
    pub cluster: Name,
    pub node: Name,
    pub scope: Scope,
    pub address: IpAddr,
    pub names: Vec<String>,
}

impl Record for HostEntry {
    const KIND: &'static str = "host-entry";
    const VERSION: u32 = 1;
}

/// How public addresses are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicNames {
    /// `NAME.SUFFIX`, e.g. `zk-1.public`.
    Suffix(String),
    /// `NAME.DOMAIN`, a domain of their own, e.g. `zk-1.pub.example.com`.
    Domain(DomainName),
}

/// What to render.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Entries for private addresses, named `NAME.DOMAIN NAME ALIASES...`.
    pub private: bool,
    /// Entries for public addresses, and how they are named; `None` for none.
    pub public: Option<PublicNames>,
    /// IPv6 addresses as well as IPv4.
    pub ipv6: bool,
    /// Extra names for nodes (on their private entries, or public ones without `private`).
    pub aliases: BTreeMap<Name, Vec<String>>,
    /// The parent of clusters without a domain of their own (lct-core's naming rule).
    pub parent_domain: DomainName,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            private: true,
            public: None,
            ipv6: true,
            aliases: BTreeMap::new(),
            parent_domain: DomainName::default_parent(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("{0:?} is not a valid host name: {1}")]
    BadName(String, String),
    #[error("the name {name:?} is given to both {first} ({first_node}) and {second} ({second_node})")]
    Conflict { name: String, first: IpAddr, first_node: String, second: IpAddr, second_node: String },
    #[error("{path}: line {line}: {message}")]
    File { path: String, line: usize, message: String },
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
}

/// Checks a host name: dot-separated RFC 1123 labels, at most 253 characters.
pub fn check_host_name(name: &str) -> Result<(), HostsError> {
    let bad = |why: String| HostsError::BadName(name.to_string(), why);
    if name.is_empty() || name.len() > 253 {
        return Err(bad("it must have 1 to 253 characters".into()));
    }
    for label in name.split('.') {
        check_label(label).map_err(|why| bad(format!("label {label:?}: {why}")))?;
    }
    Ok(())
}

/// Renders the entries of `nodes`, sorted by cluster, node, scope and address family, and
/// checks them: every name valid, and no name for two addresses of one family.
pub fn render(nodes: &[Member], clusters: &[Cluster], options: &RenderOptions) -> Result<Vec<HostEntry>, HostsError> {
    let domains = cluster_domains(nodes, clusters, options);
    let scopes = cluster_scopes(clusters);
    let layout = Layout::new(nodes, &domains, &scopes, options)?;
    layout.check()?;
    Ok(layout.entries())
}

/// What [`render`] gives, as hosts-file text per cluster (what `apply` writes into each
/// cluster's block), without building an entry record per line.
pub fn render_blocks(
    nodes: &[Member],
    clusters: &[Cluster],
    options: &RenderOptions,
) -> Result<BTreeMap<Name, String>, HostsError> {
    let domains = cluster_domains(nodes, clusters, options);
    let scopes = cluster_scopes(clusters);
    let layout = Layout::new(nodes, &domains, &scopes, options)?;
    // The check and the text do not depend on each other: both at once, the text thrown
    // away if the check fails.
    let (checked, texts) = std::thread::scope(|s| {
        let check = s.spawn(|| layout.check());
        let texts = layout.texts();
        (check.join().expect("the check does not panic"), texts)
    });
    checked.map(|()| texts)
}

/// The domain of every cluster that has members, by lct-core's naming rule (the same names
/// lct-dns serves): its own domain, else `CLUSTER.PARENT`.
fn cluster_domains<'a>(
    members: &'a [Member],
    clusters: &[Cluster],
    options: &RenderOptions,
) -> HashMap<&'a Name, String> {
    let naming = Naming::new(clusters, options.parent_domain.clone());
    let mut domains: HashMap<&Name, String> = HashMap::new();
    let mut last: Option<&Name> = None;
    for member in members {
        // Members come grouped by cluster: one look-up per run of a cluster.
        if last != Some(&member.cluster) {
            last = Some(&member.cluster);
            domains.entry(&member.cluster).or_insert_with(|| naming.cluster_domain(&member.cluster).to_string());
        }
    }
    domains
}

/// The clusters whose records say which of their addresses hosts files carry (a plan's
/// `names.hosts_private` and `names.hosts_public`): for them, that wins over the options.
fn cluster_scopes(clusters: &[Cluster]) -> HashMap<&Name, Scopes> {
    clusters
        .iter()
        .filter_map(|c| c.names.map(|p| (&c.name, Scopes { private: p.hosts_private, public: p.hosts_public })))
        .collect()
}

/// Which lines a cluster's members get.
#[derive(Debug, Clone, Copy)]
struct Scopes {
    private: bool,
    public: bool,
}

/// A rendering before it becomes text or records: per cluster, its members in name order.
/// Each member gives a line per scope and address family; the names of a line follow from
/// the member, its cluster's domain, the scope and the options.
///
/// Built for 100,000 nodes: whatever reads every member's name (grouping, sort keys, the
/// conflict check) walks the members in input order, where their names lie one after the
/// other in memory; only writing the text visits them in name order.
struct Layout<'a> {
    options: &'a RenderOptions,
    /// What follows the node's name on public lines (the options' suffix or domain, else
    /// `public`).
    public_rest: &'a str,
    members: &'a [Member],
    clusters: Vec<ClusterOrder<'a>>,
}

struct ClusterOrder<'a> {
    name: &'a Name,
    domain: &'a str,
    scopes: Scopes,
    /// Indices into `members`, sorted by node name.
    order: Vec<u32>,
    /// The same, in input order.
    input_order: Vec<u32>,
}

/// A host name as the label it starts with and the rest after the first dot (empty for a
/// single label): names made of a node name and a domain are never built as strings just to
/// be compared.
type NameParts<'a> = (&'a str, &'a str);

fn split_name(name: &str) -> NameParts<'_> {
    name.split_once('.').unwrap_or((name, ""))
}

/// One line of a member: which scope, which address.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Line {
    scope: Scope,
    address: IpAddr,
}

impl<'a> Layout<'a> {
    fn new(
        members: &'a [Member],
        domains: &'a HashMap<&'a Name, String>,
        scopes: &HashMap<&Name, Scopes>,
        options: &'a RenderOptions,
    ) -> Result<Self, HostsError> {
        for name in options.aliases.values().flatten() {
            check_host_name(name)?;
        }
        if let Some(PublicNames::Suffix(s)) = &options.public {
            check_host_name(s)?;
        }
        let defaults = Scopes { private: options.private, public: options.public.is_some() };
        let public_rest = match &options.public {
            Some(PublicNames::Suffix(s)) => s.as_str(),
            Some(PublicNames::Domain(d)) => d.as_str(),
            None => "public",
        };
        let mut by_cluster: BTreeMap<&Name, Vec<(u64, u32)>> = BTreeMap::new();
        for (i, member) in members.iter().enumerate() {
            let index = u32::try_from(i).expect("fewer than 4 billion nodes");
            by_cluster.entry(&member.cluster).or_default().push((sort_prefix(member.name.as_str()), index));
        }
        let name = |i: u32| members[i as usize].name.as_str();
        let clusters = by_cluster
            .into_iter()
            .map(|(cluster, mut keyed)| {
                // The same name twice (a duplicate record) keeps its input order: the output
                // depends on nothing but the input.
                let input_order = keyed.iter().map(|&(_, i)| i).collect();
                keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| name(a.1).cmp(name(b.1))).then(a.1.cmp(&b.1)));
                ClusterOrder {
                    name: cluster,
                    domain: domains.get(cluster).map_or("", String::as_str),
                    scopes: scopes.get(cluster).copied().unwrap_or(defaults),
                    order: keyed.into_iter().map(|(_, i)| i).collect(),
                    input_order,
                }
            })
            .collect();
        Ok(Layout { options, public_rest, members, clusters })
    }

    /// A member's lines: private before public, IPv4 before IPv6. Only the first address
    /// of each family carries names: more would make the names ambiguous.
    fn lines(&self, member: &Member, scopes: Scopes, mut each: impl FnMut(Line)) {
        let mut scope = |scope, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>| {
            let v6 = v6.filter(|_| self.options.ipv6).map(IpAddr::V6);
            for address in v4.map(IpAddr::V4).into_iter().chain(v6) {
                each(Line { scope, address });
            }
        };
        if scopes.private {
            scope(Scope::Private, member.private_ipv4, member.private_ipv6);
        }
        if scopes.public {
            scope(Scope::Public, member.public_ipv4, member.public_ipv6);
        }
    }

    /// The names of a member's line of `scope`, canonical first.
    fn names(&self, member: &'a Member, cluster: &ClusterOrder<'a>, scope: Scope, mut each: impl FnMut(NameParts<'a>)) {
        let name = member.name.as_str();
        let domain = cluster.domain;
        let options = self.options;
        let aliases = || {
            let list = if options.aliases.is_empty() { None } else { options.aliases.get(&member.name) };
            list.into_iter().flatten().map(|a| split_name(a))
        };
        match scope {
            Scope::Private => {
                each((name, domain));
                each((name, ""));
                aliases().for_each(each);
            }
            Scope::Public => {
                each((name, self.public_rest));
                if !cluster.scopes.private {
                    aliases().for_each(each);
                }
            }
        }
    }

    /// Every name of every line, in input order: the member, the line, which name of the
    /// line it is, and the name.
    fn each_name(
        &self,
        mut each: impl FnMut(u32, Line, usize, NameParts<'a>) -> Result<(), HostsError>,
    ) -> Result<(), HostsError> {
        for cluster in &self.clusters {
            for &i in &cluster.input_order {
                let member = &self.members[i as usize];
                let mut result = Ok(());
                self.lines(member, cluster.scopes, |line| {
                    let mut k = 0;
                    self.names(member, cluster, line.scope, |parts| {
                        if result.is_ok() {
                            result = each(i, line, k, parts);
                        }
                        k += 1;
                    })
                });
                result?;
            }
        }
        Ok(())
    }

    /// The `k`th name of a member's line of `scope` and family, and the line.
    fn name_of(&self, i: u32, scope: Scope, v6: bool, k: usize) -> (Line, NameParts<'a>) {
        let member = &self.members[i as usize];
        let cluster =
            self.clusters.iter().find(|c| c.name == &member.cluster).expect("every member's cluster is laid out");
        let mut line = None;
        self.lines(member, cluster.scopes, |l| {
            if l.scope == scope && l.address.is_ipv6() == v6 {
                line = Some(l);
            }
        });
        let mut name = None;
        let mut n = 0;
        self.names(member, cluster, scope, |parts| {
            if n == k {
                name = Some(parts);
            }
            n += 1;
        });
        (line.expect("the line was seen"), name.expect("the name was seen"))
    }

    /// Names made of a node name and a domain are valid when not too long (the parts are
    /// checked); no name may stand for two addresses of one family. Names are compared by
    /// a 64-bit hash first (a small table that stays in cache); two names with the same
    /// hash are compared as text, and should two different names ever share a hash, the
    /// check starts over comparing every name as text.
    fn check(&self) -> Result<(), HostsError> {
        self.check_hashed(fx_hash)
    }

    /// [`check`](Self::check) with the given string hash (tests give a poor one).
    fn check_hashed(&self, hash: fn(&str) -> u64) -> Result<(), HostsError> {
        // The value says where the name came from: member, scope, family, which name.
        let mut seen: HashMap<u64, (u32, Scope, bool, usize), Prehashed> = HashMap::default();
        seen.reserve(self.members.len());
        let mut collided = false;
        self.each_name(|i, line, k, parts| {
            if parts.0.len() + 1 + parts.1.len() > 253 {
                check_host_name(&join(parts))?;
            }
            let v6 = line.address.is_ipv6();
            let key = hash(parts.0) ^ hash(parts.1).rotate_left(17) ^ u64::from(v6);
            match seen.entry(key) {
                Entry::Vacant(v) => {
                    v.insert((i, line.scope, v6, k));
                }
                Entry::Occupied(o) => {
                    let &(first, scope, first_v6, first_k) = o.get();
                    let (first_line, first_parts) = self.name_of(first, scope, first_v6, first_k);
                    if first_parts != parts || first_v6 != v6 {
                        collided = true;
                    } else if first_line.address != line.address {
                        return Err(self.conflict(parts, (first, first_line), (i, line)));
                    }
                }
            }
            Ok(())
        })?;
        if collided {
            let mut seen: HashMap<(NameParts<'a>, bool), (u32, Line)> = HashMap::new();
            self.each_name(|i, line, _, parts| match seen.entry((parts, line.address.is_ipv6())) {
                Entry::Vacant(v) => {
                    v.insert((i, line));
                    Ok(())
                }
                Entry::Occupied(o) if o.get().1.address != line.address => {
                    Err(self.conflict(parts, *o.get(), (i, line)))
                }
                Entry::Occupied(_) => Ok(()),
            })?;
        }
        Ok(())
    }

    /// The error for a name given to two addresses, the pair named in a stable order.
    fn conflict(&self, name: NameParts, a: (u32, Line), b: (u32, Line)) -> HostsError {
        let node = |(i, _): (u32, Line)| {
            let m = &self.members[i as usize];
            (m.cluster.as_str(), m.name.as_str())
        };
        let (a, b) = if node(a) <= node(b) { (a, b) } else { (b, a) };
        let shown = |x: (u32, Line)| format!("{}/{}", node(x).0, node(x).1);
        HostsError::Conflict {
            name: join(name),
            first: a.1.address,
            first_node: shown(a),
            second: b.1.address,
            second_node: shown(b),
        }
    }

    fn entries(&self) -> Vec<HostEntry> {
        let mut entries = Vec::new();
        for cluster in &self.clusters {
            for &i in &cluster.order {
                let member = &self.members[i as usize];
                self.lines(member, cluster.scopes, |line| {
                    let mut names = Vec::new();
                    self.names(member, cluster, line.scope, |parts| names.push(join(parts)));
                    entries.push(HostEntry {
                        cluster: cluster.name.clone(),
                        node: member.name.clone(),
                        scope: line.scope,
                        address: line.address,
                        names,
                    });
                });
            }
        }
        entries
    }

    /// Each cluster's hosts-file text, the clusters on all cores.
    fn texts(&self) -> BTreeMap<Name, String> {
        let next = AtomicUsize::new(0);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(self.clusters.len().max(1));
        let work = || {
            let mut done = Vec::new();
            while let Some(cluster) = self.clusters.get(next.fetch_add(1, Ordering::Relaxed)) {
                let mut text = String::with_capacity(cluster.order.len() * 40);
                for &i in &cluster.order {
                    let member = &self.members[i as usize];
                    self.lines(member, cluster.scopes, |line| {
                        push_address(&mut text, line.address);
                        let mut separator = '\t';
                        self.names(member, cluster, line.scope, |(label, rest)| {
                            text.push(separator);
                            separator = ' ';
                            text.push_str(label);
                            if !rest.is_empty() {
                                text.push('.');
                                text.push_str(rest);
                            }
                        });
                        text.push('\n');
                    });
                }
                done.push((cluster.name.clone(), text));
            }
            done
        };
        std::thread::scope(|s| {
            let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
            let mut all: BTreeMap<Name, String> = work().into_iter().collect();
            for h in helpers {
                all.extend(h.join().expect("render threads do not panic"));
            }
            all
        })
    }
}

/// The first 8 bytes of a name as a number that sorts as the name does.
fn sort_prefix(name: &str) -> u64 {
    let mut prefix = [0u8; 8];
    let n = name.len().min(8);
    prefix[..n].copy_from_slice(&name.as_bytes()[..n]);
    u64::from_be_bytes(prefix)
}

fn join((label, rest): NameParts) -> String {
    if rest.is_empty() { label.to_string() } else { format!("{label}.{rest}") }
}

/// An address as text: IPv4 by hand (the hot case), IPv6 as the standard library writes it.
fn push_address(text: &mut String, address: IpAddr) {
    match address {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                if octet >= 100 {
                    text.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    text.push(char::from(b'0' + octet / 10 % 10));
                }
                text.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(text, "{v6}");
        }
    }
}

/// FxHash (as rustc uses it) of a string, with a final rotation so that the low bits, which
/// hash tables index by, depend on every byte: names are hashed once each, and SipHash's
/// protection against chosen collisions buys nothing here (collisions are handled anyway).
fn fx_hash(text: &str) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut hash = text.len() as u64;
    let mut chunks = text.as_bytes().chunks_exact(8);
    for chunk in &mut chunks {
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(chunk.try_into().expect("8 bytes"))).wrapping_mul(K);
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    hash = (hash.rotate_left(5) ^ u64::from_le_bytes(last)).wrapping_mul(K);
    hash.rotate_left(26)
}

/// For maps whose keys are hashes already.
#[derive(Clone, Copy, Default)]
struct Prehashed;

struct PrehashedHasher(u64);

impl std::hash::BuildHasher for Prehashed {
    type Hasher = PrehashedHasher;
    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

impl std::hash::Hasher for PrehashedHasher {
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Every name valid; no name bound to two addresses of the same family.
pub fn check(entries: &[HostEntry]) -> Result<(), HostsError> {
    let mut seen: HashMap<(&str, bool), usize> = HashMap::with_capacity(entries.len() * 2);
    for (i, e) in entries.iter().enumerate() {
        for name in &e.names {
            match seen.entry((name.as_str(), e.address.is_ipv6())) {
                Entry::Vacant(v) => {
                    check_host_name(name)?;
                    v.insert(i);
                }
                Entry::Occupied(o) => {
                    let first = &entries[*o.get()];
                    if first.address != e.address {
                        // Name the pair in a stable order, whatever the input order was.
                        let (a, b) = if (&first.cluster, &first.node) <= (&e.cluster, &e.node) {
                            (first, e)
                        } else {
                            (e, first)
                        };
                        return Err(HostsError::Conflict {
                            name: name.clone(),
                            first: a.address,
                            first_node: format!("{}/{}", a.cluster, a.node),
                            second: b.address,
                            second_node: format!("{}/{}", b.cluster, b.node),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// Hosts-file lines for entries: `ADDRESS<TAB>NAME NAME...`.
pub fn hosts_text(entries: &[HostEntry]) -> String {
    let mut text = String::with_capacity(entries.len() * 48);
    for e in entries {
        push_address(&mut text, e.address);
        for (i, n) in e.names.iter().enumerate() {
            text.push(if i == 0 { '\t' } else { ' ' });
            text.push_str(n);
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use lct_core::record::Node;

    fn node(cluster: &str, name: &str, private: &str, public: &str, public6: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "cluster": cluster, "group": "g", "name": name, "provider": "local", "status": "running",
            "private_ipv4": [private], "public_ipv4": [public], "public_ipv6": [public6],
        }))
        .unwrap()
    }

    fn members(nodes: &[Node]) -> Vec<Member> {
        nodes.iter().map(Member::from).collect()
    }

    fn zk() -> Vec<Cluster> {
        vec![serde_json::from_str(r#"{"name":"zk","domain":"zk.lct"}"#).unwrap()]
    }

    #[test]
    fn renders_sorted_private_and_public_entries() {
        let nodes = vec![
            node("zk", "zk-2", "192.168.128.2", "203.0.113.2", "2001:db8::2"),
            node("zk", "zk-1", "192.168.128.1", "203.0.113.1", "2001:db8::1"),
        ];
        let mut options = RenderOptions::default();
        options.aliases.insert("zk-1".parse().unwrap(), vec!["leader".into()]);
        let text = hosts_text(&render(&members(&nodes), &zk(), &options).unwrap());
        assert_eq!(text, "192.168.128.1\tzk-1.zk.lct zk-1 leader\n192.168.128.2\tzk-2.zk.lct zk-2\n");

        options.public = Some(PublicNames::Suffix("public".into()));
        let text = hosts_text(&render(&members(&nodes), &zk(), &options).unwrap());
        assert_eq!(
            text,
            "192.168.128.1\tzk-1.zk.lct zk-1 leader\n203.0.113.1\tzk-1.public\n2001:db8::1\tzk-1.public\n\
             192.168.128.2\tzk-2.zk.lct zk-2\n203.0.113.2\tzk-2.public\n2001:db8::2\tzk-2.public\n"
        );
        options.ipv6 = false;
        options.private = false;
        options.public = Some(PublicNames::Domain("pub.example".parse().unwrap()));
        let text = hosts_text(&render(&members(&nodes), &zk(), &options).unwrap());
        assert_eq!(text, "203.0.113.1\tzk-1.pub.example leader\n203.0.113.2\tzk-2.pub.example\n");
    }

    #[test]
    fn a_clusters_names_policy_wins_over_the_options() {
        let nodes = vec![
            node("web", "web-1", "192.168.128.1", "203.0.113.1", "2001:db8::1"),
            node("zk", "zk-1", "192.168.128.2", "203.0.113.2", "2001:db8::2"),
        ];
        let clusters: Vec<Cluster> = vec![
            serde_json::from_str(
                r#"{"name":"web","domain":"web.lct","names":{"hosts_private":false,"hosts_public":true}}"#,
            )
            .unwrap(),
            serde_json::from_str(r#"{"name":"zk","domain":"zk.lct"}"#).unwrap(),
        ];
        let mut options = RenderOptions { ipv6: false, ..Default::default() };
        let text = hosts_text(&render(&members(&nodes), &clusters, &options).unwrap());
        assert_eq!(text, "203.0.113.1\tweb-1.public\n192.168.128.2\tzk-1.zk.lct zk-1\n");
        // The blocks `apply` writes say the same.
        let blocks = render_blocks(&members(&nodes), &clusters, &options).unwrap();
        assert_eq!(blocks[&"web".parse::<Name>().unwrap()], "203.0.113.1\tweb-1.public\n");
        // With public entries asked for, a cluster whose policy has none still has none.
        let clusters: Vec<Cluster> =
            vec![serde_json::from_str(r#"{"name":"zk","domain":"zk.lct","names":{"hosts_public":false}}"#).unwrap()];
        options.public = Some(PublicNames::Suffix("pub".into()));
        let text = hosts_text(&render(&members(&nodes[1..]), &clusters, &options).unwrap());
        assert_eq!(text, "192.168.128.2\tzk-1.zk.lct zk-1\n");
    }

    #[test]
    fn refuses_conflicts_and_bad_names() {
        let nodes = vec![
            node("zk", "zk-1", "192.168.128.1", "203.0.113.1", "2001:db8::1"),
            node("kafka", "zk-1", "192.168.128.9", "203.0.113.9", "2001:db8::9"),
        ];
        let err = render(&members(&nodes), &[], &RenderOptions::default()).unwrap_err().to_string();
        assert!(
            err.contains("\"zk-1\" is given to both 192.168.128.9 (kafka/zk-1) and 192.168.128.1 (zk/zk-1)"),
            "{err}"
        );

        let mut options = RenderOptions::default();
        options.aliases.insert("zk-1".parse().unwrap(), vec!["bad_alias".into()]);
        let err = render(&members(&nodes[..1]), &[], &options).unwrap_err().to_string();
        assert!(err.contains("\"bad_alias\" is not a valid host name"), "{err}");
    }

    /// Random memberships, names drawn from a small pool so that duplicates and conflicts
    /// come up: the hashed check agrees with the plain one on the rendered entries, and the
    /// text per cluster is the entries' text.
    #[test]
    fn fast_check_and_text_agree_with_the_entries() {
        use proptest::prelude::*;
        let clusters: Vec<Cluster> = vec![
            serde_json::from_str(r#"{"name":"a","domain":"a.lct"}"#).unwrap(),
            serde_json::from_str(r#"{"name":"b","domain":"public"}"#).unwrap(),
            serde_json::from_str(r#"{"name":"c"}"#).unwrap(),
        ];
        // A member: cluster, name number, private IPv4, private IPv6 (or none), public IPv4.
        let member = |pool: u32| (0..3usize, 0..pool, 0..3u8, proptest::option::of(0..3u16), 0..3u8);
        // Half the rounds draw names from a pool of 6 (conflicts), half from 40.
        let round =
            prop_oneof![proptest::collection::vec(member(6), 1..13), proptest::collection::vec(member(40), 1..13)];
        let case = (round, any::<bool>(), any::<bool>(), 0..3u8);
        let config = proptest::test_runner::Config { cases: 400, failure_persistence: None, ..Default::default() };
        let (conflicts, clean) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        proptest::test_runner::TestRunner::new(config)
            .run(&case, |(drawn, ipv6, public, alias)| {
                let members: Vec<Member> = drawn
                    .iter()
                    .map(|&(cluster, name, v4, v6, pub4)| Member {
                        cluster: ["a", "b", "c"][cluster].parse().unwrap(),
                        name: format!("n{name}").parse().unwrap(),
                        private_ipv4: Some(Ipv4Addr::new(10, 0, 0, v4)),
                        private_ipv6: v6.map(|x| Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, x)),
                        public_ipv4: Some(Ipv4Addr::new(203, 0, 113, pub4)),
                        public_ipv6: None,
                    })
                    .collect();
                let mut options = RenderOptions { ipv6, ..RenderOptions::default() };
                if public {
                    options.public = Some(PublicNames::Suffix("public".into()));
                }
                if alias == 0 {
                    options.aliases.insert("n1".parse().unwrap(), vec!["n2".into(), "n3.a.lct".into()]);
                }
                let domains = cluster_domains(&members, &clusters, &options);
                let layout = Layout::new(&members, &domains, &HashMap::new(), &options).unwrap();
                let entries = layout.entries();
                let fast = layout.check().map_err(|e| e.to_string());
                let plain = check(&entries).map_err(|e| e.to_string());
                prop_assert_eq!(fast.is_ok(), plain.is_ok(), "{:?} {:?} {:?}", fast, plain, members);
                // Names that share a hash without being equal: the check starts over with text.
                let colliding = layout.check_hashed(|name| name.len() as u64).map_err(|e| e.to_string());
                prop_assert_eq!(colliding.is_ok(), plain.is_ok(), "{:?} {:?} {:?}", colliding, plain, members);
                if fast.is_ok() {
                    clean.set(clean.get() + 1);
                    let mut by_cluster: BTreeMap<Name, Vec<HostEntry>> = BTreeMap::new();
                    for e in entries {
                        by_cluster.entry(e.cluster.clone()).or_default().push(e);
                    }
                    let texts: BTreeMap<Name, String> =
                        by_cluster.iter().map(|(c, l)| (c.clone(), hosts_text(l))).collect();
                    prop_assert_eq!(render_blocks(&members, &clusters, &options).unwrap(), texts);
                } else {
                    conflicts.set(conflicts.get() + 1);
                    prop_assert!(render_blocks(&members, &clusters, &options).is_err());
                }
                Ok(())
            })
            .unwrap();
        let (conflicts, clean) = (conflicts.get(), clean.get());
        assert!(conflicts > 50 && clean > 50, "{conflicts} conflicts, {clean} clean");
    }
}
