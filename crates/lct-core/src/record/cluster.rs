//! The cluster record: a cluster's name, domain, providers, the clusters it depends on and
//! how its nodes are named; fields other tools add are kept as they are.

use serde::{Deserialize, Serialize};

use super::kind::Record;
use super::names::{DomainName, Name};
use super::node::ProviderName;
use super::port::PortSpec;

/// What one cluster uses of another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Dependency {
    pub cluster: Name,
    /// The groups of that cluster this one talks to; empty means all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Name>,
    /// The ports it talks to them on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
}

/// How a cluster's nodes are named: which of their addresses hosts files carry and which
/// DNS views publish them (a plan's `names`). lct-hosts and lct-dns read it; a cluster
/// without one gets the tools' defaults (private entries in hosts files, split DNS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamePolicy {
    /// Hosts-file entries for private addresses (`NODE.DOMAIN NODE`).
    #[serde(default = "yes")]
    pub hosts_private: bool,
    /// Hosts-file entries for public addresses (`NODE.public`, or lct-hosts' naming).
    #[serde(default)]
    pub hosts_public: bool,
    /// Which addresses DNS publishes.
    #[serde(default)]
    pub dns: DnsPublish,
}

fn yes() -> bool {
    true
}

impl Default for NamePolicy {
    fn default() -> Self {
        NamePolicy { hosts_private: true, hosts_public: false, dns: DnsPublish::Split }
    }
}

/// Which of a cluster's addresses DNS publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DnsPublish {
    /// Private addresses to internal clients, public ones to everyone else.
    #[default]
    Split,
    /// Private addresses only: the names exist for internal clients alone.
    Private,
    /// Public addresses only, to every client.
    Public,
    /// No names in DNS.
    None,
}

/// A cluster: its name, domain, provider and the clusters it depends on.
///
/// Fields this build does not know (added by later tools, e.g. firewall declarations)
/// are kept in `extra` and written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Cluster {
    pub name: Name,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainName>,
    /// Where its nodes live: `lct-api create` and `lct-plan create` set it, and queries by
    /// cluster ask this provider.
    #[serde(default)]
    pub provider: ProviderName,
    /// Other providers that hold nodes of it too (a cluster created on one and grown on
    /// another); queries by cluster ask them as well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_on: Vec<ProviderName>,
    #[serde(default)]
    pub depends_on: Vec<Dependency>,
    /// How its nodes are named; `None`: the tools' defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<NamePolicy>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Cluster {
    /// How its nodes are named: its own policy, else the defaults.
    pub fn name_policy(&self) -> NamePolicy {
        self.names.unwrap_or_default()
    }

    /// Every provider that holds nodes of it: its own, then the others, without repeats.
    pub fn providers(&self) -> Vec<ProviderName> {
        let mut list = vec![self.provider];
        for p in &self.also_on {
            if !list.contains(p) {
                list.push(*p);
            }
        }
        list
    }

    /// A cluster record with nothing but its name (on the local cloud, no dependencies).
    pub fn new(name: Name) -> Cluster {
        Cluster {
            name,
            domain: None,
            provider: ProviderName::Local,
            also_on: Vec::new(),
            depends_on: Vec::new(),
            names: None,
            extra: Default::default(),
        }
    }
}

impl Record for Cluster {
    const KIND: &'static str = "cluster";
    const VERSION: u32 = 1;

    fn strip_envelope(&mut self) {
        self.extra.remove("kind");
        self.extra.remove("v");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_keeps_unknown_fields() {
        let json = r#"{"name":"zk","depends_on":[],"firewall":{"rules":[1,2]}}"#;
        let c: Cluster = serde_json::from_str(json).unwrap();
        assert_eq!(c.extra["firewall"]["rules"][1], 2);
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["firewall"]["rules"][0], 1);
    }
}
