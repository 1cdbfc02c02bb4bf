//! Host entries: the record (an address and its names), what to render, the checks (valid
//! names, no name for two addresses of one family) and hosts-file text. [`crate::render`]
//! decides which names each node's addresses get.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

use lct_core::record::{DomainName, Name, Record, check_label};
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

impl lct_core::table::Tabular for HostEntry {
    const HEADERS: &'static [&'static str] = &["ADDRESS", "NAMES", "CLUSTER", "NODE", "SCOPE"];
    fn row(&self) -> Vec<String> {
        let scope = match self.scope {
            Scope::Private => "private",
            Scope::Public => "public",
        };
        vec![
            self.address.to_string(),
            self.names.join(" "),
            self.cluster.to_string(),
            self.node.to_string(),
            scope.into(),
        ]
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

/// An address as text: IPv4 by hand (the hot case), IPv6 as the standard library writes it.
pub(crate) fn push_address(text: &mut String, address: IpAddr) {
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

/// Each cluster's block text from entries (in their order within a cluster).
pub fn blocks_of(entries: Vec<HostEntry>) -> BTreeMap<Name, String> {
    let mut by_cluster: BTreeMap<Name, Vec<HostEntry>> = BTreeMap::new();
    for e in entries {
        by_cluster.entry(e.cluster.clone()).or_default().push(e);
    }
    by_cluster.into_iter().map(|(c, list)| (c, hosts_text(&list))).collect()
}
