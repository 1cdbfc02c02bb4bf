use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lct_core::record::{Cluster, DomainName, Name, Node, Record, check_label};
use serde::{Deserialize, Serialize};

/// Which network an address is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Private,
    Public,
}

/// One line of a hosts file: an address and its names, the first being the canonical one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// What rendering needs of a node: its names and first address of each kind. Small, so
/// 100,000 of them fit in a few MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub cluster: Name,
    pub name: Name,
    pub private_ipv4: Option<Ipv4Addr>,
    pub private_ipv6: Option<Ipv6Addr>,
    pub public_ipv4: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
}

impl From<Node> for Member {
    fn from(n: Node) -> Member {
        Member {
            private_ipv4: n.private_ipv4.first().copied(),
            private_ipv6: n.private_ipv6.first().copied(),
            public_ipv4: n.public_ipv4.first().copied(),
            public_ipv6: n.public_ipv6.first().copied(),
            cluster: n.cluster,
            name: n.name,
        }
    }
}

impl From<&Node> for Member {
    fn from(n: &Node) -> Member {
        Member::from(n.clone())
    }
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
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { private: true, public: None, ipv6: true, aliases: BTreeMap::new() }
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
    let domains: HashMap<&Name, &DomainName> =
        clusters.iter().filter_map(|c| c.domain.as_ref().map(|d| (&c.name, d))).collect();
    for name in options.aliases.values().flatten() {
        check_host_name(name)?;
    }
    if let Some(PublicNames::Suffix(s)) = &options.public {
        check_host_name(s)?;
    }
    // Labels joined with a valid domain are valid, if not too long.
    let longest_domain = domains
        .values()
        .map(|d| d.as_str().len())
        .chain(match &options.public {
            Some(PublicNames::Domain(d)) => Some(d.as_str().len()),
            Some(PublicNames::Suffix(s)) => Some(s.len()),
            None => None,
        })
        .max()
        .unwrap_or(0);
    let mut entries = Vec::with_capacity(nodes.len() * 2);
    // Sorted once by node, entries come out in order: a node's private entries before its
    // public ones, IPv4 before IPv6.
    let mut order: Vec<&Member> = nodes.iter().collect();
    order.sort_by(|a, b| (&a.cluster, &a.name).cmp(&(&b.cluster, &b.name)));
    for node in order {
        let domain = domains.get(&node.cluster);
        let aliases = options.aliases.get(&node.name).map(Vec::as_slice).unwrap_or_default();
        if options.private {
            let mut names = Vec::with_capacity(2 + aliases.len());
            if let Some(d) = domain {
                names.push(format!("{}.{d}", node.name));
            }
            names.push(node.name.to_string());
            names.extend(aliases.iter().cloned());
            push_addresses(&mut entries, node, Scope::Private, node.private_ipv4, node.private_ipv6, &names, options);
        }
        if let Some(public) = &options.public {
            let mut names = vec![match public {
                PublicNames::Suffix(s) => format!("{}.{s}", node.name),
                PublicNames::Domain(d) => format!("{}.{d}", node.name),
            }];
            if !options.private {
                names.extend(aliases.iter().cloned());
            }
            push_addresses(&mut entries, node, Scope::Public, node.public_ipv4, node.public_ipv6, &names, options);
        }
    }
    if let Some(long) = nodes.iter().find(|n| n.name.as_str().len() + 1 + longest_domain > 253) {
        for e in entries.iter().filter(|e| e.node == long.name) {
            for n in &e.names {
                check_host_name(n)?;
            }
        }
    }
    check_names(&entries, false)?;
    Ok(entries)
}

fn push_addresses(
    entries: &mut Vec<HostEntry>,
    node: &Member,
    scope: Scope,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    names: &[String],
    options: &RenderOptions,
) {
    // A node's primary address carries its names; further addresses of the same family
    // would make the names ambiguous, so only the first of each family is listed.
    let v6 = v6.filter(|_| options.ipv6).map(IpAddr::V6);
    for address in v4.map(IpAddr::V4).into_iter().chain(v6) {
        entries.push(HostEntry {
            cluster: node.cluster.clone(),
            node: node.name.clone(),
            scope,
            address,
            names: names.to_vec(),
        });
    }
}

/// Every name valid; no name bound to two addresses of the same family.
pub fn check(entries: &[HostEntry]) -> Result<(), HostsError> {
    check_names(entries, true)
}

/// With `validate` false, only conflicts are looked for: names built from node names and
/// domains are valid by construction, and [`render`] checks the rest itself.
fn check_names(entries: &[HostEntry], validate: bool) -> Result<(), HostsError> {
    let mut seen: HashMap<(&str, bool), usize> = HashMap::with_capacity(entries.len() * 2);
    for (i, e) in entries.iter().enumerate() {
        for name in &e.names {
            match seen.entry((name.as_str(), e.address.is_ipv6())) {
                Entry::Vacant(v) => {
                    if validate {
                        check_host_name(name)?;
                    }
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
        let _ = write!(text, "{}\t", e.address);
        for (i, n) in e.names.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(n);
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
