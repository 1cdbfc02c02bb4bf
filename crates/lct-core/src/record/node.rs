//! The node, node-spec and volume records: one server of a cluster (where it lives, its
//! state, its addresses, how lct reaches it), the request for one, and a block volume.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::kind::Record;
use super::names::Name;

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
