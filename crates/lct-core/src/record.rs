//! The records that flow between the lct tools as JSON lines.
//!
//! Every line is one JSON object with a `kind` and a schema version `v`. The types here
//! are the single definition of the node, cluster and node-spec records; other crates
//! define their own kinds (host entries, firewall rules, DNS records) by implementing
//! [`Record`]. `schemas/records.schema.json` describes the same shapes for other languages.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A record kind that can travel in the stream.
pub trait Record: Serialize + serde::de::DeserializeOwned {
    /// The value of the `kind` field.
    const KIND: &'static str;
    /// The newest schema version of this kind this build reads and writes.
    const VERSION: u32;

    /// Drops the envelope fields (`kind`, `v`) where a record keeps unknown fields.
    fn strip_envelope(&mut self) {}
}

/// Why a name or address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("{0:?} is not a valid host name label: {1}")]
    Label(String, &'static str),
    #[error("{0:?} is not a valid domain name: {1}")]
    Domain(String, String),
    #[error("{0:?} is not a valid port spec (expected PORT[-PORT][/tcp|/udp], e.g. 2181/tcp): {1}")]
    Port(String, &'static str),
}

/// A name that is valid as a single DNS/host-name label (RFC 1123): 1 to 63 characters of
/// lower-case letters, digits and hyphens, not starting or ending with a hyphen.
///
/// Node, group and cluster names are all labels, because they become host names, DNS
/// labels, namespace names and firewall set names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn check_label(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("it is empty");
    }
    if s.len() > 63 {
        return Err("it is longer than 63 characters");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("it starts or ends with a hyphen");
    }
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("it has upper-case letters (use lower case)");
    }
    if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("only a-z, 0-9 and '-' are allowed");
    }
    Ok(())
}

impl TryFrom<String> for Name {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match check_label(&s) {
            Ok(()) => Ok(Name(s)),
            Err(why) => Err(InvalidValue::Label(s, why)),
        }
    }
}

impl FromStr for Name {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::try_from(s.to_string())
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// A fully qualified domain name without the trailing dot, e.g. `zk.example.internal`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

impl DomainName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DomainName {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let trimmed = s.strip_suffix('.').unwrap_or(&s);
        if trimmed.len() > 253 {
            return Err(InvalidValue::Domain(s, "it is longer than 253 characters".into()));
        }
        for label in trimmed.split('.') {
            if let Err(why) = check_label(label) {
                return Err(InvalidValue::Domain(s.clone(), format!("label {label:?}: {why}")));
            }
        }
        Ok(DomainName(trimmed.to_string()))
    }
}

impl FromStr for DomainName {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DomainName::try_from(s.to_string())
    }
}

impl From<DomainName> for String {
    fn from(n: DomainName) -> String {
        n.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which provider a node or cluster lives on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ProviderName {
    /// The embedded local cloud: network namespaces on this machine.
    #[default]
    Local,
    /// Linode API v4.
    Linode,
}

impl ProviderName {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::Local => "local",
            ProviderName::Linode => "linode",
        }
    }
}

impl FromStr for ProviderName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "local" => Ok(ProviderName::Local),
            "linode" => Ok(ProviderName::Linode),
            _ => Err(format!("{s:?} is not a provider (local, linode)")),
        }
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The life-cycle state of a node. The names follow Linode's instance statuses so both
/// providers report the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Status {
    Provisioning,
    Booting,
    Running,
    ShuttingDown,
    Offline,
    Rebooting,
    Rebuilding,
    Cloning,
    Migrating,
    Restoring,
    Stopped,
    Deleting,
    BillingSuspension,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Provisioning => "provisioning",
            Status::Booting => "booting",
            Status::Running => "running",
            Status::ShuttingDown => "shutting_down",
            Status::Offline => "offline",
            Status::Rebooting => "rebooting",
            Status::Rebuilding => "rebuilding",
            Status::Cloning => "cloning",
            Status::Migrating => "migrating",
            Status::Restoring => "restoring",
            Status::Stopped => "stopped",
            Status::Deleting => "deleting",
            Status::BillingSuspension => "billing_suspension",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How lct reaches a node to run commands on it.
///
/// Written `{"method":"netns","netns":"lct-zk-1"}` or
/// `{"method":"ssh","host":"203.0.113.7","port":22,"user":"root"}`. Read through a flat form
/// rather than serde's internally tagged enums, which buffer every record they read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase", try_from = "AccessFields")]
pub enum Access {
    /// A local-cloud node: run inside this network namespace (`ip netns exec`).
    Netns { netns: String },
    /// A remote node: OpenSSH to `user@host -p port`; with `netns`, ssh runs inside that
    /// network namespace (a local machine node, reached from the lab's outside namespace).
    Ssh {
        host: String,
        #[serde(default = "default_ssh_port")]
        port: u16,
        #[serde(default = "default_ssh_user")]
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        netns: Option<String>,
    },
}

#[derive(Deserialize)]
struct AccessFields {
    method: AccessMethod,
    netns: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum AccessMethod {
    Netns,
    Ssh,
}

impl TryFrom<AccessFields> for Access {
    type Error = &'static str;
    fn try_from(f: AccessFields) -> Result<Self, Self::Error> {
        match f.method {
            AccessMethod::Netns => Ok(Access::Netns { netns: f.netns.ok_or("method netns needs field netns")? }),
            AccessMethod::Ssh => Ok(Access::Ssh {
                host: f.host.ok_or("method ssh needs field host")?,
                port: f.port.unwrap_or_else(default_ssh_port),
                user: f.user.unwrap_or_else(default_ssh_user),
                netns: f.netns,
            }),
        }
    }
}

fn default_ssh_port() -> u16 {
    22
}

fn default_ssh_user() -> String {
    "root".into()
}

/// A block volume attached to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VolumeAttachment {
    pub label: Name,
    pub size_mib: u64,
    /// A device path that stays the same across re-attachment.
    pub path: String,
}

/// One server of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Node {
    pub cluster: Name,
    /// The node's role in its cluster (e.g. `namenode`, `journal`).
    pub group: Name,
    /// Unique per provider; also the node's host name.
    pub name: Name,
    pub provider: ProviderName,
    /// The provider's own identifier (Linode instance id, local-cloud node number).
    #[serde(default)]
    pub provider_id: String,
    #[serde(default)]
    pub region: String,
    pub status: Status,
    #[serde(default)]
    pub private_ipv4: Vec<Ipv4Addr>,
    #[serde(default)]
    pub public_ipv4: Vec<Ipv4Addr>,
    #[serde(default)]
    pub private_ipv6: Vec<Ipv6Addr>,
    #[serde(default)]
    pub public_ipv6: Vec<Ipv6Addr>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeAttachment>,
}

impl Record for Node {
    const KIND: &'static str = "node";
    const VERSION: u32 = 1;
}

/// A port or port range with its protocol, written `2181/tcp`, `8000-8010/udp` or `22`
/// (TCP when no protocol is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortSpec {
    pub first: u16,
    pub last: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for PortSpec {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let bad = |why| InvalidValue::Port(s.clone(), why);
        let (ports, protocol) = match s.split_once('/') {
            None => (s.as_str(), Protocol::Tcp),
            Some((p, "tcp")) => (p, Protocol::Tcp),
            Some((p, "udp")) => (p, Protocol::Udp),
            Some(_) => return Err(bad("the protocol must be tcp or udp")),
        };
        let parse = |p: &str| p.parse::<u16>().ok().filter(|&n| n > 0);
        let (first, last) = match ports.split_once('-') {
            None => {
                let n = parse(ports).ok_or_else(|| bad("a port is a number from 1 to 65535"))?;
                (n, n)
            }
            Some((a, b)) => {
                let a = parse(a).ok_or_else(|| bad("a port is a number from 1 to 65535"))?;
                let b = parse(b).ok_or_else(|| bad("a port is a number from 1 to 65535"))?;
                if a > b {
                    return Err(bad("the range is reversed"));
                }
                (a, b)
            }
        };
        Ok(PortSpec { first, last, protocol })
    }
}

impl FromStr for PortSpec {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PortSpec::try_from(s.to_string())
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = self.protocol;
        if self.first == self.last {
            write!(f, "{}/{proto}", self.first)
        } else {
            write!(f, "{}-{}/{proto}", self.first, self.last)
        }
    }
}

impl From<PortSpec> for String {
    fn from(p: PortSpec) -> String {
        p.to_string()
    }
}

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

/// A request for a node: what `lct-api create` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NodeSpec {
    pub cluster: Name,
    #[serde(default = "default_group")]
    pub group: Name,
    pub name: Name,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Instance type (Linode plan, e.g. `g6-nanode-1`); ignored by the local cloud.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub node_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The user's own cloud-init user-data, merged with lct's at first boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

pub fn default_group() -> Name {
    Name("node".into())
}

impl Record for NodeSpec {
    const KIND: &'static str = "node-spec";
    const VERSION: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!("zk-1".parse::<Name>().is_ok());
        assert!("a".parse::<Name>().is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"x".repeat(64)] {
            assert!(bad.parse::<Name>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn domains() {
        assert_eq!("zk.lct.internal.".parse::<DomainName>().unwrap().as_str(), "zk.lct.internal");
        assert!("zk..internal".parse::<DomainName>().is_err());
        assert!("zk_1.internal".parse::<DomainName>().is_err());
    }

    #[test]
    fn ports() {
        let p: PortSpec = "8000-8010/udp".parse().unwrap();
        assert_eq!((p.first, p.last, p.protocol), (8000, 8010, Protocol::Udp));
        assert_eq!("22".parse::<PortSpec>().unwrap().to_string(), "22/tcp");
        for bad in ["0", "70000", "10-5", "22/icmp", "x/tcp", ""] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cluster_keeps_unknown_fields() {
        let json = r#"{"name":"zk","depends_on":[],"firewall":{"rules":[1,2]}}"#;
        let c: Cluster = serde_json::from_str(json).unwrap();
        assert_eq!(c.extra["firewall"]["rules"][1], 2);
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["firewall"]["rules"][0], 1);
    }
}

/// A block volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Volume {
    pub label: Name,
    pub size_mib: u64,
    pub provider: ProviderName,
    #[serde(default)]
    pub provider_id: String,
    #[serde(default)]
    pub region: String,
    /// `creating`, `active`, `resizing` (Linode's words).
    pub status: String,
    /// The node it is attached to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_to: Option<Name>,
    /// The stable device path while attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Record for Volume {
    const KIND: &'static str = "volume";
    const VERSION: u32 = 1;
}

/// JSON Schemas of the string types that check their own syntax (`schemas/records.schema.json`
/// is generated from the types).
mod schema {
    use std::borrow::Cow;

    use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

    use super::{Access, DomainName, Name, PortSpec};

    impl JsonSchema for Access {
        fn schema_name() -> Cow<'static, str> {
            "access".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "How lct reaches the node: inside a network namespace, or over OpenSSH.",
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["method", "netns"],
                        "properties": { "method": { "const": "netns" }, "netns": { "type": "string" } }
                    },
                    {
                        "type": "object",
                        "required": ["method", "host"],
                        "properties": {
                            "method": { "const": "ssh" },
                            "host": { "type": "string" },
                            "port": { "type": "integer", "minimum": 1, "maximum": 65535, "default": 22 },
                            "user": { "type": "string", "default": "root" },
                            "netns": { "type": "string", "description": "Run ssh inside this network namespace." }
                        }
                    }
                ]
            })
        }
    }

    const LABEL: &str = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";

    impl JsonSchema for Name {
        fn schema_name() -> Cow<'static, str> {
            "label".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "An RFC 1123 host-name label: lower-case letters, digits and hyphens, 1 to 63 characters, no hyphen at either end.",
                "type": "string",
                "pattern": format!("^{LABEL}$"),
            })
        }
    }

    impl JsonSchema for DomainName {
        fn schema_name() -> Cow<'static, str> {
            "domain".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "A domain name of labels; a trailing dot is dropped.",
                "type": "string",
                "maxLength": 254,
                "pattern": format!("^({LABEL}\\.)*{LABEL}\\.?$"),
            })
        }
    }

    impl JsonSchema for PortSpec {
        fn schema_name() -> Cow<'static, str> {
            "port".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "PORT or FIRST-LAST, optionally /tcp or /udp (tcp when omitted).",
                "type": "string",
                "pattern": "^[0-9]{1,5}(-[0-9]{1,5})?(/(tcp|udp))?$",
            })
        }
    }
}
