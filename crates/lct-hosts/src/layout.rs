//! The layout of a rendering: per cluster its members in name order, each giving a line per
//! scope and address family, with the names that line carries; the conflict check over
//! hashes of the names, and the entries or the text, from the same layout.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use lct_core::record::Name;

use crate::Member;
use crate::entry::{HostEntry, HostsError, PublicNames, RenderOptions, Scope, check_host_name, push_address};

/// Which lines a cluster's members get.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scopes {
    pub(crate) private: bool,
    pub(crate) public: bool,
}

/// A rendering before it becomes text or records: per cluster, its members in name order.
/// Each member gives a line per scope and address family; the names of a line follow from
/// the member, its cluster's domain, the scope and the options.
///
/// Built for 100,000 nodes: whatever reads every member's name (grouping, sort keys, the
/// conflict check) walks the members in input order, where their names lie one after the
/// other in memory; only writing the text visits them in name order.
pub(crate) struct Layout<'a> {
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
    pub(crate) fn new(
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
    pub(crate) fn check(&self) -> Result<(), HostsError> {
        self.check_hashed(fx_hash)
    }

    /// [`check`](Self::check) with the given string hash (tests give a poor one).
    pub(crate) fn check_hashed(&self, hash: fn(&str) -> u64) -> Result<(), HostsError> {
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

    pub(crate) fn entries(&self) -> Vec<HostEntry> {
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
    pub(crate) fn texts(&self) -> BTreeMap<Name, String> {
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
