use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

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
        RenderOptions {
            private: true,
            public: None,
            ipv6: true,
            aliases: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("{0:?} is not a valid host name: {1}")]
    BadName(String, String),
    #[error(
        "the name {name:?} is given to both {first} ({first_node}) and {second} ({second_node})"
    )]
    Conflict {
        name: String,
        first: IpAddr,
        first_node: String,
        second: IpAddr,
        second_node: String,
    },
    #[error("{path}: line {line}: {message}")]
    File {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
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
pub fn render(
    nodes: &[Node],
    clusters: &[Cluster],
    options: &RenderOptions,
) -> Result<Vec<HostEntry>, HostsError> {
    let domains: BTreeMap<&Name, &DomainName> = clusters
        .iter()
        .filter_map(|c| c.domain.as_ref().map(|d| (&c.name, d)))
        .collect();
    let mut entries = Vec::with_capacity(nodes.len() * 2);
    for node in nodes {
        let domain = domains.get(&node.cluster);
        let aliases = options
            .aliases
            .get(&node.name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if options.private {
            let mut names = Vec::with_capacity(2 + aliases.len());
            if let Some(d) = domain {
                names.push(format!("{}.{d}", node.name));
            }
            names.push(node.name.to_string());
            names.extend(aliases.iter().cloned());
            push_addresses(
                &mut entries,
                node,
                Scope::Private,
                &node.private_ipv4,
                &node.private_ipv6,
                &names,
                options,
            );
        }
        if let Some(public) = &options.public {
            let mut names = vec![match public {
                PublicNames::Suffix(s) => format!("{}.{s}", node.name),
                PublicNames::Domain(d) => format!("{}.{d}", node.name),
            }];
            if !options.private {
                names.extend(aliases.iter().cloned());
            }
            push_addresses(
                &mut entries,
                node,
                Scope::Public,
                &node.public_ipv4,
                &node.public_ipv6,
                &names,
                options,
            );
        }
    }
    entries.sort_by(|a, b| {
        (&a.cluster, &a.node, a.scope, a.address.is_ipv6(), a.address).cmp(&(
            &b.cluster,
            &b.node,
            b.scope,
            b.address.is_ipv6(),
            b.address,
        ))
    });
    check(&entries)?;
    Ok(entries)
}

fn push_addresses(
    entries: &mut Vec<HostEntry>,
    node: &Node,
    scope: Scope,
    v4: &[std::net::Ipv4Addr],
    v6: &[std::net::Ipv6Addr],
    names: &[String],
    options: &RenderOptions,
) {
    // A node's primary address carries its names; further addresses of the same family
    // would make the names ambiguous, so only the first of each family is listed.
    let v6 = if options.ipv6 {
        v6.first().map(|a| IpAddr::V6(*a))
    } else {
        None
    };
    for address in v4.first().map(|a| IpAddr::V4(*a)).into_iter().chain(v6) {
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
    let mut seen: BTreeMap<(&str, bool), (&IpAddr, &HostEntry)> = BTreeMap::new();
    let mut checked: BTreeSet<&str> = BTreeSet::new();
    for e in entries {
        for name in &e.names {
            if checked.insert(name) {
                check_host_name(name)?;
            }
            let key = (name.as_str(), e.address.is_ipv6());
            match seen.get(&key) {
                Some((addr, first)) if **addr != e.address => {
                    return Err(HostsError::Conflict {
                        name: name.clone(),
                        first: **addr,
                        first_node: format!("{}/{}", first.cluster, first.node),
                        second: e.address,
                        second_node: format!("{}/{}", e.cluster, e.node),
                    });
                }
                Some(_) => {}
                None => {
                    seen.insert(key, (&e.address, e));
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
        options
            .aliases
            .insert("zk-1".parse().unwrap(), vec!["leader".into()]);
        let text = hosts_text(&render(&nodes, &zk(), &options).unwrap());
        assert_eq!(
            text,
            "192.168.128.1\tzk-1.zk.lct zk-1 leader\n192.168.128.2\tzk-2.zk.lct zk-2\n"
        );

        options.public = Some(PublicNames::Suffix("public".into()));
        let text = hosts_text(&render(&nodes, &zk(), &options).unwrap());
        assert_eq!(
            text,
            "192.168.128.1\tzk-1.zk.lct zk-1 leader\n203.0.113.1\tzk-1.public\n2001:db8::1\tzk-1.public\n\
             192.168.128.2\tzk-2.zk.lct zk-2\n203.0.113.2\tzk-2.public\n2001:db8::2\tzk-2.public\n"
        );
        options.ipv6 = false;
        options.private = false;
        options.public = Some(PublicNames::Domain("pub.example".parse().unwrap()));
        let text = hosts_text(&render(&nodes, &zk(), &options).unwrap());
        assert_eq!(
            text,
            "203.0.113.1\tzk-1.pub.example leader\n203.0.113.2\tzk-2.pub.example\n"
        );
    }

    #[test]
    fn refuses_conflicts_and_bad_names() {
        let nodes = vec![
            node("zk", "zk-1", "192.168.128.1", "203.0.113.1", "2001:db8::1"),
            node(
                "kafka",
                "zk-1",
                "192.168.128.9",
                "203.0.113.9",
                "2001:db8::9",
            ),
        ];
        let err = render(&nodes, &[], &RenderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "\"zk-1\" is given to both 192.168.128.9 (kafka/zk-1) and 192.168.128.1 (zk/zk-1)"
            ),
            "{err}"
        );

        let mut options = RenderOptions::default();
        options
            .aliases
            .insert("zk-1".parse().unwrap(), vec!["bad_alias".into()]);
        let err = render(&nodes[..1], &[], &options).unwrap_err().to_string();
        assert!(
            err.contains("\"bad_alias\" is not a valid host name"),
            "{err}"
        );
    }
}
