//! The Linode API v4 provider.
//!
//! * [`client`]: HTTP, paging, `X-Filter`, retries; [`limits`]: rate limits kept before the
//!   server has to refuse; [`credentials`]: the token and the API's URL.
//! * [`api`]: the operations, typed, with their waits; [`types`]: what the API sends;
//!   [`validate`]: checks made before any request.
//! * [`LinodeProvider`]: nodes and volumes as the rest of lct sees them. A node is an instance
//!   labelled with the node's name and tagged `lct`, `lct-cluster:CLUSTER`,
//!   `lct-group:GROUP`; labels are the idempotency key, so a re-run creates only what is
//!   missing and an unknown outcome never becomes a duplicate.

pub mod api;
pub mod client;
pub mod credentials;
pub mod images;
pub mod limits;
pub mod resources;
pub mod types;
pub mod validate;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use lct_core::record::{Access, Name, Node, NodeSpec, ProviderName, Status, Volume};
use serde_json::{Value, json};

use crate::provider::{Provider, ProviderError, VolumeSpec};
use api::Linode;
use client::{ApiFailure, Client, RetryPolicy};
use limits::Limiter;
use types::{Instance, InstanceStatus};

/// What a node gets when its spec does not say.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub region: String,
    pub instance_type: String,
    pub image: String,
    /// Public keys for root (`authorized_keys`); without any, a random root password that
    /// nobody sees (the nodes are then reached with keys added later, or not at all).
    pub authorized_keys: Vec<String>,
}

impl Defaults {
    /// `LCT_LINODE_REGION` (us-east), `LCT_LINODE_TYPE` (g6-nanode-1), `LCT_LINODE_IMAGE`
    /// (linode/debian12), keys from `LCT_SSH_AUTHORIZED_KEYS` (a file) or `~/.ssh/id_*.pub`.
    pub fn from_env() -> Defaults {
        let var =
            |name: &str, default: &str| std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or(default.into());
        let mut keys = Vec::new();
        let files: Vec<std::path::PathBuf> = match std::env::var_os("LCT_SSH_AUTHORIZED_KEYS") {
            Some(f) => vec![f.into()],
            None => std::env::var_os("HOME")
                .map(|h| {
                    ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
                        .iter()
                        .map(|f| std::path::Path::new(&h).join(".ssh").join(f))
                        .collect()
                })
                .unwrap_or_default(),
        };
        for f in files {
            if let Ok(text) = std::fs::read_to_string(&f) {
                keys.extend(
                    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from),
                );
            }
        }
        Defaults {
            region: var("LCT_LINODE_REGION", "us-east"),
            instance_type: var("LCT_LINODE_TYPE", "g6-nanode-1"),
            image: var("LCT_LINODE_IMAGE", "linode/debian12"),
            authorized_keys: keys,
        }
    }
}

/// Regions and types, asked once per run: what a spec is checked against.
struct Catalog {
    regions: Vec<String>,
    /// Type id and its disk (MiB).
    types: HashMap<String, u64>,
}

pub struct LinodeProvider {
    pub api: Linode,
    pub defaults: Defaults,
    catalog: tokio::sync::OnceCell<Catalog>,
    /// lct's instances by label, listed once (one request for a bulk create) and kept up to
    /// date by this process's own creates and deletes.
    known: tokio::sync::OnceCell<tokio::sync::Mutex<HashMap<String, Instance>>>,
    /// lct images checked by this run, by name (each verified once).
    lct_images: tokio::sync::Mutex<HashMap<String, std::sync::Arc<tokio::sync::OnceCell<images::Checked>>>>,
}

const TAG: &str = "lct";

fn cluster_tag(c: &Name) -> String {
    format!("lct-cluster:{c}")
}

fn group_tag(g: &Name) -> String {
    format!("lct-group:{g}")
}

impl From<ApiFailure> for ProviderError {
    fn from(e: ApiFailure) -> Self {
        ProviderError::Api(e.to_string())
    }
}

impl LinodeProvider {
    /// Token and URL from the environment (see [`credentials`]); the waits' pace from
    /// `LCT_LINODE_POLL` (seconds, default 3).
    pub fn from_env() -> Result<LinodeProvider, ProviderError> {
        let token = credentials::discover_token().map_err(|e| ProviderError::Invalid(e.to_string()))?;
        let mut retry = RetryPolicy::default();
        if let Some(poll) = std::env::var("LCT_LINODE_POLL").ok().and_then(|p| p.parse::<f64>().ok()) {
            retry.poll = Duration::from_secs_f64(poll.max(0.001));
            // A fast poll means a fast API (the test double): back off as quickly.
            retry.base = retry.base.min(retry.poll * 2);
        }
        let client = Client::new(credentials::base_url(), token, Limiter::new(), retry)?;
        Ok(LinodeProvider::new(Linode::new(client), Defaults::from_env()))
    }

    pub fn new(api: Linode, defaults: Defaults) -> LinodeProvider {
        LinodeProvider {
            api,
            defaults,
            catalog: tokio::sync::OnceCell::new(),
            known: tokio::sync::OnceCell::new(),
            lct_images: Default::default(),
        }
    }

    async fn catalog(&self) -> Result<&Catalog, ApiFailure> {
        self.catalog
            .get_or_try_init(|| async {
                let (regions, types) = tokio::try_join!(self.api.regions(), self.api.types())?;
                Ok(Catalog {
                    regions: regions.into_iter().map(|r| r.id).collect(),
                    types: types.into_iter().map(|t| (t.id, t.disk)).collect(),
                })
            })
            .await
    }

    async fn known(&self) -> Result<&tokio::sync::Mutex<HashMap<String, Instance>>, ApiFailure> {
        self.known
            .get_or_try_init(|| async {
                let all = self.api.instances(Some(&json!({ "tags": TAG }))).await?;
                Ok(tokio::sync::Mutex::new(all.into_iter().map(|i| (i.label.clone(), i)).collect()))
            })
            .await
    }

    /// The instance of a node, from lct's instances as listed once by this run (and kept up
    /// to date by its own creates and deletes): a bulk create costs one listing, not one per
    /// node. A create whose outcome is unknown still asks the API (see `create_once`).
    async fn find(&self, name: &Name) -> Result<Option<Instance>, ApiFailure> {
        Ok(self.known().await?.lock().await.get(name.as_str()).cloned())
    }

    async fn remember(&self, i: &Instance) -> Result<(), ApiFailure> {
        self.known().await?.lock().await.insert(i.label.clone(), i.clone());
        Ok(())
    }

    /// Checks a spec: shapes locally, then region, type and image against the API's lists.
    pub async fn check(&self, spec: &NodeSpec) -> Result<(String, String, String), ApiFailure> {
        validate::label("name", spec.name.as_str())?;
        let region = spec.region.clone().unwrap_or_else(|| self.defaults.region.clone());
        let instance_type = spec.node_type.clone().unwrap_or_else(|| self.defaults.instance_type.clone());
        let image = spec.image.clone().unwrap_or_else(|| self.defaults.image.clone());
        validate::region("region", &region)?;
        validate::instance_type("type", &instance_type)?;
        if crate::disk_image::LctImage::parse(&image).is_none() {
            validate::image("image", &image)?;
        }
        let catalog = self.catalog().await?;
        if !catalog.regions.contains(&region) {
            return Err(ApiFailure::Invalid { field: "region".into(), message: format!("{region:?}: no such region") });
        }
        if !catalog.types.contains_key(&instance_type) {
            return Err(ApiFailure::Invalid {
                field: "type".into(),
                message: format!("{instance_type:?}: no such type"),
            });
        }
        Ok((region, instance_type, image))
    }

    async fn create_node(&self, spec: &NodeSpec) -> Result<Node, ProviderError> {
        let (region, instance_type, image) = self.check(spec).await?;
        // An lct image is checked whole, and its way chosen, before any instance is made.
        let from_lct = match crate::disk_image::LctImage::parse(&image) {
            Some(lct) if self.find(&spec.name).await?.is_none() => Some(self.way_for(&lct, &instance_type).await?),
            _ => None,
        };
        let instance = match self.find(&spec.name).await? {
            Some(existing) => {
                tracing::info!(node = %spec.name, "exists; kept");
                existing
            }
            None => {
                let tags = images::tags_of(spec);
                let mut body = json!({
                    "label": spec.name.as_str(),
                    "region": region,
                    "type": instance_type,
                    "image": image,
                    "tags": tags,
                    "private_ip": true,
                    "booted": true,
                    "root_pass": root_password()?,
                });
                // First boot through Linode's Metadata service: the same cloud-init document a
                // local machine gets, with a host key lct made and pins before any connection.
                let local = |e: std::io::Error| ApiFailure::Invalid { field: "ssh".into(), message: e.to_string() };
                let ssh = lct_core::ssh::SshFiles::from_env().map_err(local)?;
                let host_key = lct_core::ssh::generate_key(spec.name.as_str()).map_err(local)?;
                let mut keys = ssh.authorized_keys().map_err(local)?;
                for k in &self.defaults.authorized_keys {
                    if !keys.contains(k) {
                        keys.push(k.clone());
                    }
                }
                let boot = crate::cloudinit::FirstBoot {
                    hostname: spec.name.clone(),
                    host_key: host_key.clone(),
                    authorized_keys: keys.clone(),
                    user_data: spec.user_data.clone(),
                    raw_user_data: None,
                };
                body["authorized_keys"] = json!(keys);
                body["metadata"] = json!({ "user_data": data_encoding::BASE64.encode(boot.user_data().as_bytes()) });
                let made = match from_lct {
                    None => self.api.create_instance(&body).await?,
                    Some((_, images::Way::LinodeImage(id))) => {
                        body["image"] = json!(id);
                        self.api.create_instance(&body).await?
                    }
                    Some((checked, images::Way::HelperDisk)) => {
                        // Pinned before the stream's connection: the helper boots with this
                        // node's metadata, so with its host key too.
                        let pin = |made: &Instance| {
                            ssh.trust_host(&pinned_names(made), &host_key.public)
                                .map_err(|e| ProviderError::from(local(e)))
                        };
                        self.create_through_helper(spec, &checked, body, &keys, &pin).await?
                    }
                };
                self.remember(&made).await?;
                ssh.trust_host(&pinned_names(&made), &host_key.public).map_err(local)?;
                made
            }
        };
        let running = match instance.status {
            InstanceStatus::Running => instance,
            InstanceStatus::Offline | InstanceStatus::Stopped => {
                self.api.boot(instance.id).await?;
                self.api.wait_instance(instance.id, &[InstanceStatus::Running]).await?
            }
            _ => self.api.wait_instance(instance.id, &[InstanceStatus::Running]).await?,
        };
        self.remember(&running).await?;
        node_of(&running).ok_or_else(|| {
            ProviderError::Invalid(format!("instance {} is not one of lct's (no lct tags)", running.label))
        })
    }

    async fn power(&self, name: &Name, up: bool) -> Result<Node, ApiFailure> {
        let i = self.find(name).await?.ok_or_else(|| ApiFailure::Api {
            method: "GET".into(),
            path: "/linode/instances".into(),
            status: 404,
            errors: vec![types::ApiError { reason: format!("no node named {name}"), field: None }],
        })?;
        let i = if up {
            if i.status != InstanceStatus::Running {
                self.api.boot(i.id).await?;
            }
            self.api.wait_instance(i.id, &[InstanceStatus::Running]).await?
        } else {
            if i.status != InstanceStatus::Offline {
                self.api.shutdown(i.id).await?;
            }
            self.api.wait_instance(i.id, &[InstanceStatus::Offline]).await?
        };
        self.remember(&i).await?;
        node_of(&i).ok_or_else(|| ApiFailure::Invalid { field: "name".into(), message: "not one of lct's".into() })
    }

    async fn volume_of(&self, label: &Name) -> Result<types::Volume, ProviderError> {
        self.api.volume_by_label(label.as_str()).await?.ok_or_else(|| ProviderError::NoSuchVolume(label.clone()))
    }
}

/// 32 random characters with every class Linode's strength check wants: 24 drawn from the
/// system's random source (about 140 bits), then a fixed tail of the classes.
fn root_password() -> Result<String, ApiFailure> {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut s = lct_core::random::token(24, CHARS)?;
    s.push_str("#9aZ!q7X");
    Ok(s)
}

fn status_of(s: InstanceStatus) -> Status {
    match s {
        InstanceStatus::Running => Status::Running,
        InstanceStatus::Offline => Status::Offline,
        InstanceStatus::Booting => Status::Booting,
        InstanceStatus::Rebooting => Status::Rebooting,
        InstanceStatus::ShuttingDown => Status::ShuttingDown,
        InstanceStatus::Provisioning | InstanceStatus::Unknown => Status::Provisioning,
        InstanceStatus::Deleting => Status::Deleting,
        InstanceStatus::Migrating | InstanceStatus::Resizing => Status::Migrating,
        InstanceStatus::Rebuilding => Status::Rebuilding,
        InstanceStatus::Cloning => Status::Cloning,
        InstanceStatus::Restoring => Status::Restoring,
        InstanceStatus::Stopped => Status::Stopped,
        InstanceStatus::BillingSuspension => Status::BillingSuspension,
    }
}

/// Linode's private range (192.168.128.0/17), and the other private ones.
fn is_private_v4(a: Ipv4Addr) -> bool {
    a.is_private() || a.is_link_local()
}

/// The names an instance's host key is pinned under: its label and public addresses. Not
/// its private address: Linode's private network is per datacenter, and another region's
/// instance may hold the same one; pinning under it would replace that instance's pin (a
/// pin replaces every line naming any of its names), whose SSH then fails host-key checks.
fn pinned_names(made: &Instance) -> Vec<String> {
    let mut names = vec![made.label.clone()];
    names.extend(made.ipv4.iter().filter(|a| a.parse().is_ok_and(|a| !is_private_v4(a))).cloned());
    names
}

/// The node record of one of lct's instances (`None` for an instance without lct's tags or
/// with a label that is not a node name).
pub fn node_of(i: &Instance) -> Option<Node> {
    let tag = |prefix: &str| i.tags.iter().find_map(|t| t.strip_prefix(prefix)).and_then(|v| v.parse::<Name>().ok());
    let cluster = tag("lct-cluster:")?;
    let group = tag("lct-group:").unwrap_or_else(lct_core::record::default_group);
    let name: Name = i.label.parse().ok()?;
    let v4: Vec<Ipv4Addr> = i.ipv4.iter().filter_map(|a| a.parse().ok()).collect();
    let v6: Option<Ipv6Addr> = i.ipv6.as_deref().and_then(|a| a.split('/').next()).and_then(|a| a.parse().ok());
    let public_ipv4: Vec<Ipv4Addr> = v4.iter().copied().filter(|a| !is_private_v4(*a)).collect();
    // LCT_LINODE_SSH_NETNS: the controller reaches its nodes from that network namespace (a
    // VPN's, or the local cloud's outside when the API double is backed by machines).
    // lct_core::reach refuses a documentation address (the double's) from anywhere else.
    let netns = std::env::var(lct_core::reach::SSH_NETNS_VAR).ok().filter(|ns| !ns.is_empty());
    let access = public_ipv4.first().map(|a| Access::Ssh { host: a.to_string(), port: 22, user: "root".into(), netns });
    Some(Node {
        cluster,
        group,
        name,
        provider: ProviderName::Linode,
        provider_id: i.id.to_string(),
        region: i.region.clone(),
        status: status_of(i.status),
        private_ipv4: v4.iter().copied().filter(|a| is_private_v4(*a)).collect(),
        public_ipv4,
        private_ipv6: Vec::new(),
        public_ipv6: v6.filter(|a| !IpAddr::V6(*a).is_loopback()).into_iter().collect(),
        tags: i.tags.iter().filter(|t| *t != TAG && !t.starts_with("lct-")).cloned().collect(),
        access,
        volumes: Vec::new(),
    })
}

fn volume_record(v: &types::Volume) -> Option<Volume> {
    Some(Volume {
        label: v.label.parse().ok()?,
        size_mib: v.size * 1024,
        provider: ProviderName::Linode,
        provider_id: v.id.to_string(),
        region: v.region.clone(),
        status: v.status.clone(),
        attached_to: v.linode_label.as_deref().and_then(|l| l.parse().ok()),
        path: v.linode_id.map(|_| v.filesystem_path.clone()).filter(|p| !p.is_empty()),
    })
}

impl Provider for LinodeProvider {
    fn name(&self) -> ProviderName {
        ProviderName::Linode
    }

    async fn list(&self) -> Result<Vec<Node>, ProviderError> {
        let all = self.api.instances(Some(&json!({ "tags": TAG }))).await?;
        let mut nodes: Vec<Node> = all.iter().filter_map(node_of).collect();
        nodes.sort_by(|a, b| (&a.cluster, &a.name).cmp(&(&b.cluster, &b.name)));
        Ok(nodes)
    }

    async fn create(&self, spec: &NodeSpec) -> Result<Node, ProviderError> {
        self.create_node(spec).await
    }

    async fn check_specs(&self, specs: &[NodeSpec]) -> Vec<Result<(), ProviderError>> {
        // One catalog (regions, types) for all: asked once, then every spec checked against it.
        let mut outcomes = Vec::with_capacity(specs.len());
        for spec in specs {
            outcomes.push(self.check(spec).await.map(drop).map_err(ProviderError::from));
        }
        outcomes
    }

    async fn prepare_image(&self, image: &str, disk_mib: Option<u64>) -> Result<(), ProviderError> {
        let Some(lct) = crate::disk_image::LctImage::parse(image) else { return Ok(()) };
        let checked = self.checked(&lct).await?;
        if let Some(disk) = disk_mib.filter(|d| checked.size_mib() > *d) {
            return Err(ProviderError::Invalid(format!(
                "image {image}: a {} MiB disk does not fit the {disk} MiB asked for",
                checked.size_mib()
            )));
        }
        Ok(())
    }

    async fn capture_disk(&self, name: &Name) -> Result<crate::disk_image::DiskCapture, ProviderError> {
        self.capture(name).await
    }

    async fn release_capture(&self, name: &Name) -> Result<(), ProviderError> {
        self.release(name).await
    }

    async fn start(&self, name: &Name) -> Result<Node, ProviderError> {
        if self.find(name).await?.is_none() {
            return Err(ProviderError::NoSuchNode(name.clone()));
        }
        Ok(self.power(name, true).await?)
    }

    async fn stop(&self, name: &Name) -> Result<Node, ProviderError> {
        if self.find(name).await?.is_none() {
            return Err(ProviderError::NoSuchNode(name.clone()));
        }
        Ok(self.power(name, false).await?)
    }

    async fn delete(&self, name: &Name) -> Result<bool, ProviderError> {
        let Some(i) = self.find(name).await? else { return Ok(false) };
        let deleted = self.api.delete_instance(i.id).await?;
        self.known().await?.lock().await.remove(name.as_str());
        Ok(deleted)
    }

    async fn volumes(&self) -> Result<Vec<Volume>, ProviderError> {
        let all = self.api.volumes(Some(&json!({ "tags": TAG }))).await?;
        Ok(all.iter().filter_map(volume_record).collect())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Volume, ProviderError> {
        validate::label("label", spec.label.as_str()).map_err(ProviderError::from)?;
        let size_gib = spec.size_mib.div_ceil(1024);
        validate::volume_size("size", size_gib).map_err(ProviderError::from)?;
        let region = spec.region.clone().unwrap_or_else(|| self.defaults.region.clone());
        validate::region("region", &region).map_err(ProviderError::from)?;
        let body = json!({ "label": spec.label.as_str(), "size": size_gib, "region": region, "tags": [TAG] });
        let v = self.api.create_volume(&body).await?;
        volume_record(&v).ok_or_else(|| ProviderError::Invalid(format!("volume label {:?}", v.label)))
    }

    async fn attach_volume(&self, label: &Name, node: &Name) -> Result<Volume, ProviderError> {
        let v = self.volume_of(label).await?;
        let i = self.find(node).await?.ok_or_else(|| ProviderError::NoSuchNode(node.clone()))?;
        let v = if v.linode_id == Some(i.id) { v } else { self.api.attach_volume(v.id, i.id).await? };
        volume_record(&v).ok_or_else(|| ProviderError::Invalid(format!("volume label {:?}", v.label)))
    }

    async fn detach_volume(&self, label: &Name) -> Result<Volume, ProviderError> {
        let v = self.volume_of(label).await?;
        let v = if v.linode_id.is_none() { v } else { self.api.detach_volume(v.id).await? };
        volume_record(&v).ok_or_else(|| ProviderError::Invalid(format!("volume label {:?}", v.label)))
    }

    async fn delete_volume(&self, label: &Name) -> Result<bool, ProviderError> {
        let Some(v) = self.api.volume_by_label(label.as_str()).await? else { return Ok(false) };
        if v.linode_id.is_some() {
            self.api.detach_volume(v.id).await?;
        }
        Ok(self.api.delete_volume(v.id).await?)
    }
}

/// A resource's JSON as the API sent it, for printing.
pub fn with_kind(kind: &str, mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.insert("kind".into(), Value::String(kind.into()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_are_pinned_under_names_no_other_region_shares() {
        let in_region = |label: &str, region: &str, public: &str| -> Instance {
            serde_json::from_value(json!({
                "id": 1, "label": label, "status": "running", "region": region,
                "ipv4": [public, "192.168.128.1"], "tags": ["lct"]
            }))
            .unwrap()
        };
        // Two regions hand out the same private address: neither pin may name it.
        let east = pinned_names(&in_region("zk-1", "us-east", "203.0.113.7"));
        let west = pinned_names(&in_region("zk-2", "eu-west", "203.0.113.8"));
        assert_eq!(east, ["zk-1", "203.0.113.7"]);
        assert_eq!(west, ["zk-2", "203.0.113.8"]);
        assert!(!east.iter().any(|n| west.contains(n)));
    }

    #[test]
    fn instances_become_nodes() {
        let i: Instance = serde_json::from_value(json!({
            "id": 42, "label": "zk-1", "status": "running", "region": "us-east",
            "ipv4": ["203.0.113.7", "192.168.130.9"], "ipv6": "2600:3c03::f03c:91ff:fe24:3a2f/128",
            "tags": ["lct", "lct-cluster:zk", "lct-group:zookeeper", "prod"]
        }))
        .unwrap();
        let n = node_of(&i).unwrap();
        assert_eq!((n.cluster.as_str(), n.group.as_str(), n.name.as_str()), ("zk", "zookeeper", "zk-1"));
        assert_eq!(n.private_ipv4, vec!["192.168.130.9".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(n.public_ipv4, vec!["203.0.113.7".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(n.public_ipv6.len(), 1);
        assert_eq!(n.tags, vec!["prod".to_string()]);
        assert_eq!(n.provider_id, "42");
        let mut other = i.clone();
        other.tags.clear();
        assert!(node_of(&other).is_none(), "not one of lct's");
    }

    #[test]
    fn root_passwords_are_strong_and_differ() {
        let (a, b) = (root_password().unwrap(), root_password().unwrap());
        assert_ne!(a, b);
        assert!(a.len() >= 32 && a.chars().any(|c| c.is_ascii_digit()) && a.contains('#'));
    }
}
