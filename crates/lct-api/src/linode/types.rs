//! What the Linode API v4 sends, as far as lct reads it. Identity fields are required (a
//! response without them is an error); everything else is optional or defaulted, and unknown
//! fields are ignored, so a newer API does not break an older lct. Every type is checked
//! against the recorded real responses (tests/cassettes).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A list the API may send as `null`.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// One page of a collection.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub page: u32,
    pub pages: u32,
    pub results: u32,
}

/// The error body: `{"errors":[{"reason":"...","field":"..."}]}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ApiErrors {
    pub errors: Vec<ApiError>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ApiError {
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    Running,
    Offline,
    Booting,
    Rebooting,
    ShuttingDown,
    Provisioning,
    Deleting,
    Migrating,
    Rebuilding,
    Cloning,
    Restoring,
    Stopped,
    BillingSuspension,
    Resizing,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Instance {
    pub id: u64,
    pub label: String,
    pub status: InstanceStatus,
    #[serde(default)]
    pub region: String,
    #[serde(default, rename = "type")]
    pub instance_type: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub ipv4: Vec<String>,
    #[serde(default)]
    pub ipv6: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub updated: Option<String>,
    #[serde(default)]
    pub specs: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Disk {
    pub id: u64,
    pub label: String,
    pub status: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub filesystem: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct InstanceConfig {
    pub id: u64,
    pub label: String,
    #[serde(default)]
    pub kernel: Option<String>,
    #[serde(default)]
    pub root_device: Option<String>,
    #[serde(default)]
    pub devices: Option<Value>,
    #[serde(default)]
    pub interfaces: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Image {
    pub id: String,
    pub label: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, rename = "type")]
    pub image_type: Option<String>,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub is_public: bool,
    #[serde(default)]
    pub deprecated: bool,
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `POST /images/upload`'s answer.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ImageUpload {
    pub upload_to: String,
    pub image: Image,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Volume {
    pub id: u64,
    pub label: String,
    pub status: String,
    pub size: u64,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub linode_id: Option<u64>,
    #[serde(default)]
    pub linode_label: Option<String>,
    #[serde(default)]
    pub filesystem_path: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Domain {
    pub id: u64,
    pub domain: String,
    #[serde(rename = "type")]
    pub domain_type: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub soa_email: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DomainRecord {
    pub id: u64,
    #[serde(rename = "type")]
    pub record_type: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub ttl_sec: u32,
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub port: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FirewallRule {
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub ports: Option<String>,
    #[serde(default)]
    pub addresses: Option<Value>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FirewallRules {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub inbound: Vec<FirewallRule>,
    /// The API sends `null` for an empty list here (recorded).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub outbound: Vec<FirewallRule>,
    #[serde(default)]
    pub inbound_policy: Option<String>,
    #[serde(default)]
    pub outbound_policy: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Firewall {
    pub id: u64,
    pub label: String,
    pub status: String,
    #[serde(default)]
    pub rules: Option<FirewallRules>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Entity {
    pub id: Value,
    #[serde(rename = "type")]
    pub entity_type: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FirewallDevice {
    pub id: u64,
    pub entity: Entity,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct IpAddress {
    pub address: String,
    #[serde(rename = "type")]
    pub ip_type: String,
    pub public: bool,
    #[serde(default)]
    pub prefix: Option<u32>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub linode_id: Option<u64>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub rdns: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Region {
    pub id: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub country: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LinodeType {
    pub id: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub class: Option<String>,
    /// MiB.
    #[serde(default)]
    pub disk: u64,
    #[serde(default)]
    pub memory: u64,
    #[serde(default)]
    pub vcpus: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Event {
    pub id: u64,
    pub action: String,
    pub created: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub entity: Option<Entity>,
    #[serde(default)]
    pub percent_complete: Option<u32>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Tag {
    pub label: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StackScript {
    pub id: u64,
    pub label: String,
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub is_public: bool,
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NodeBalancer {
    pub id: u64,
    #[serde(default)]
    pub label: Option<String>,
    pub region: String,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub ipv4: Option<String>,
    #[serde(default)]
    pub ipv6: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NodeBalancerConfig {
    pub id: u64,
    pub port: u16,
    pub protocol: String,
    #[serde(default)]
    pub algorithm: Option<String>,
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub nodebalancer_id: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NodeBalancerNode {
    pub id: u64,
    pub address: String,
    pub label: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub config_id: Option<u64>,
}
