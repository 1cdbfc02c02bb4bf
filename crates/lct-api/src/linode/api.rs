//! The Linode API's operations that lct uses, typed, with the waits done right: instance
//! status by polling the instance, a new disk by polling the disk *list* (its own GET can 404
//! for a moment), volume attachment by polling `linode_id`, events by a `created` `+gte`
//! filter (not `seen`, which other clients change), and creates that never make a duplicate:
//! an unknown outcome is checked by label before the create is tried again.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::client::{ApiFailure, Client, Outcome};
use super::types::*;

/// The Linode API v4.
#[derive(Clone)]
pub struct Linode {
    pub client: Client,
}

impl Linode {
    pub fn new(client: Client) -> Linode {
        Linode { client }
    }

    async fn wait<T, Fut>(&self, what: &str, mut probe: impl FnMut() -> Fut) -> Result<T, ApiFailure>
    where
        Fut: Future<Output = Result<Option<T>, ApiFailure>>,
    {
        let retry = self.client.retry().clone();
        let deadline = tokio::time::Instant::now() + retry.wait_limit;
        loop {
            if let Some(done) = probe().await? {
                return Ok(done);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiFailure::Timeout(format!("{what}: still not done after {:?}", retry.wait_limit)));
            }
            tokio::time::sleep(retry.poll).await;
        }
    }

    /// A create that is safe to retry: when its outcome is unknown, `find` looks for what it
    /// would have made (by label) before it is sent again.
    pub async fn create_once<T: DeserializeOwned, Fut>(
        &self,
        path: &str,
        body: &Value,
        find: impl Fn() -> Fut,
    ) -> Result<T, ApiFailure>
    where
        Fut: Future<Output = Result<Option<T>, ApiFailure>>,
    {
        let attempts = self.client.retry().attempts;
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.client.post::<T>(path, body, Outcome::Report).await {
                Ok(made) => return Ok(made),
                Err(ApiFailure::Unknown { message, .. }) => {
                    tracing::info!(path, attempt, "create outcome unknown ({message}); looking before retrying");
                    if let Some(made) = find().await? {
                        return Ok(made);
                    }
                    last = message;
                    tokio::time::sleep(self.client.backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ApiFailure::Exhausted { method: "POST".into(), path: path.into(), attempts, last })
    }

    // Instances.

    pub async fn instances(&self, filter: Option<&Value>) -> Result<Vec<Instance>, ApiFailure> {
        self.client.list("/linode/instances", filter).await
    }

    pub async fn instance(&self, id: u64) -> Result<Instance, ApiFailure> {
        self.client.get(&format!("/linode/instances/{id}")).await
    }

    pub async fn instance_by_label(&self, label: &str) -> Result<Option<Instance>, ApiFailure> {
        let found = self.instances(Some(&json!({ "label": label }))).await?;
        Ok(found.into_iter().find(|i| i.label == label))
    }

    /// `POST /linode/instances` with `body` (label, region, type, image, root_pass or
    /// authorized_keys, tags, private_ip, booted): never twice for one label.
    pub async fn create_instance(&self, body: &Value) -> Result<Instance, ApiFailure> {
        let label = body["label"].as_str().unwrap_or_default();
        self.create_once("/linode/instances", body, move || async move { self.instance_by_label(label).await }).await
    }

    pub async fn update_instance(&self, id: u64, body: &Value) -> Result<Instance, ApiFailure> {
        self.client.put(&format!("/linode/instances/{id}"), body).await
    }

    pub async fn delete_instance(&self, id: u64) -> Result<bool, ApiFailure> {
        self.client.delete(&format!("/linode/instances/{id}")).await
    }

    pub async fn boot(&self, id: u64) -> Result<(), ApiFailure> {
        self.client.action(&format!("/linode/instances/{id}/boot"), &json!({})).await
    }

    pub async fn shutdown(&self, id: u64) -> Result<(), ApiFailure> {
        self.client.action(&format!("/linode/instances/{id}/shutdown"), &json!({})).await
    }

    pub async fn reboot(&self, id: u64) -> Result<(), ApiFailure> {
        self.client.action(&format!("/linode/instances/{id}/reboot"), &json!({})).await
    }

    /// Clones an instance into a new one labelled `body["label"]` (never twice).
    pub async fn clone_instance(&self, id: u64, body: &Value) -> Result<Instance, ApiFailure> {
        let label = body["label"].as_str().unwrap_or_default();
        let path = format!("/linode/instances/{id}/clone");
        self.create_once(&path, body, move || async move { self.instance_by_label(label).await }).await
    }

    /// Waits until the instance has one of `want`'s statuses.
    pub async fn wait_instance(&self, id: u64, want: &[InstanceStatus]) -> Result<Instance, ApiFailure> {
        self.wait(&format!("instance {id}"), move || async move {
            let i = self.instance(id).await?;
            Ok(want.contains(&i.status).then_some(i))
        })
        .await
    }

    pub async fn instance_ips(&self, id: u64) -> Result<Value, ApiFailure> {
        self.client.get(&format!("/linode/instances/{id}/ips")).await
    }

    /// A private IPv4 address for an instance that has none.
    pub async fn allocate_private_ipv4(&self, id: u64) -> Result<IpAddress, ApiFailure> {
        let body = json!({ "type": "ipv4", "public": false });
        self.client.post(&format!("/linode/instances/{id}/ips"), &body, Outcome::Retry).await
    }

    // Disks and configs.

    pub async fn disks(&self, linode: u64) -> Result<Vec<Disk>, ApiFailure> {
        self.client.list(&format!("/linode/instances/{linode}/disks"), None).await
    }

    /// Creates a disk and waits until it is `ready`, watching the list (a new disk's own GET
    /// can answer 404 for a moment).
    pub async fn create_disk(&self, linode: u64, body: &Value) -> Result<Disk, ApiFailure> {
        let label = body["label"].as_str().unwrap_or_default();
        let path = format!("/linode/instances/{linode}/disks");
        let disk: Disk = self
            .create_once(&path, body, move || async move {
                Ok(self.disks(linode).await?.into_iter().find(|d| d.label == label))
            })
            .await?;
        self.wait_disk(linode, disk.id).await
    }

    pub async fn wait_disk(&self, linode: u64, disk: u64) -> Result<Disk, ApiFailure> {
        self.wait(&format!("disk {disk} of instance {linode}"), move || async move {
            Ok(self.disks(linode).await?.into_iter().find(|d| d.id == disk && d.status == "ready"))
        })
        .await
    }

    pub async fn delete_disk(&self, linode: u64, disk: u64) -> Result<bool, ApiFailure> {
        self.client.delete(&format!("/linode/instances/{linode}/disks/{disk}")).await
    }

    pub async fn configs(&self, linode: u64) -> Result<Vec<InstanceConfig>, ApiFailure> {
        self.client.list(&format!("/linode/instances/{linode}/configs"), None).await
    }

    pub async fn create_config(&self, linode: u64, body: &Value) -> Result<InstanceConfig, ApiFailure> {
        let label = body["label"].as_str().unwrap_or_default();
        let path = format!("/linode/instances/{linode}/configs");
        self.create_once(&path, body, move || async move {
            Ok(self.configs(linode).await?.into_iter().find(|c| c.label == label))
        })
        .await
    }

    /// Changes a configuration profile (its devices, root device, ...).
    pub async fn update_config(&self, linode: u64, config: u64, body: &Value) -> Result<InstanceConfig, ApiFailure> {
        self.client.put(&format!("/linode/instances/{linode}/configs/{config}"), body).await
    }

    /// Shrinks or grows a disk (`POST .../disks/ID/resize`) and waits until it is ready again.
    pub async fn resize_disk(&self, linode: u64, disk: u64, size_mib: u64) -> Result<Disk, ApiFailure> {
        let path = format!("/linode/instances/{linode}/disks/{disk}/resize");
        self.client.action(&path, &json!({ "size": size_mib })).await?;
        self.wait_disk(linode, disk).await
    }

    /// Boots with a given configuration profile.
    pub async fn boot_config(&self, id: u64, config: u64) -> Result<(), ApiFailure> {
        self.client.action(&format!("/linode/instances/{id}/boot"), &json!({ "config_id": config })).await
    }

    // Images.

    pub async fn images(&self, filter: Option<&Value>) -> Result<Vec<Image>, ApiFailure> {
        self.client.list("/images", filter).await
    }

    pub async fn image(&self, id: &str) -> Result<Image, ApiFailure> {
        self.client.get(&format!("/images/{}", image_path(id))).await
    }

    async fn own_image_by_label(&self, label: &str) -> Result<Option<Image>, ApiFailure> {
        let found = self.images(Some(&json!({ "label": label, "is_public": false }))).await?;
        Ok(found.into_iter().find(|i| i.label == label))
    }

    /// Captures a disk as an image (`POST /images`), waiting until it is available.
    pub async fn capture_image(&self, disk_id: u64, label: &str, description: &str) -> Result<Image, ApiFailure> {
        let body = json!({ "disk_id": disk_id, "label": label, "description": description });
        let image: Image =
            self.create_once("/images", &body, move || async move { self.own_image_by_label(label).await }).await?;
        self.wait_image(&image.id).await
    }

    /// Starts an upload: the image record (`pending_upload`) and the URL to PUT it to.
    pub async fn upload_image(&self, label: &str, region: &str, description: &str) -> Result<ImageUpload, ApiFailure> {
        let body = json!({ "label": label, "region": region, "description": description });
        self.client.post("/images/upload", &body, Outcome::Report).await
    }

    /// PUTs a gzip'd raw disk image to `upload_to` (no token: the URL carries its own grant).
    pub async fn put_upload(&self, upload_to: &str, gzip: Vec<u8>) -> Result<(), ApiFailure> {
        let failure =
            |message: String| ApiFailure::Transport { method: "PUT".into(), path: "(upload URL)".into(), message };
        let response = reqwest::Client::new()
            .put(upload_to)
            .header("Content-Type", "application/octet-stream")
            .body(gzip)
            .send()
            .await
            .map_err(|e| failure(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(failure(format!("{}", response.status())));
        }
        Ok(())
    }

    pub async fn wait_image(&self, id: &str) -> Result<Image, ApiFailure> {
        self.wait(&format!("image {id}"), move || async move {
            let i = self.image(id).await?;
            Ok((i.status.as_deref() == Some("available")).then_some(i))
        })
        .await
    }

    pub async fn delete_image(&self, id: &str) -> Result<bool, ApiFailure> {
        self.client.delete(&format!("/images/{}", image_path(id))).await
    }

    // Volumes.

    pub async fn volumes(&self, filter: Option<&Value>) -> Result<Vec<Volume>, ApiFailure> {
        self.client.list("/volumes", filter).await
    }

    pub async fn volume(&self, id: u64) -> Result<Volume, ApiFailure> {
        self.client.get(&format!("/volumes/{id}")).await
    }

    pub async fn volume_by_label(&self, label: &str) -> Result<Option<Volume>, ApiFailure> {
        Ok(self.volumes(Some(&json!({ "label": label }))).await?.into_iter().find(|v| v.label == label))
    }

    /// Creates a volume (never twice for a label) and waits until it is active.
    pub async fn create_volume(&self, body: &Value) -> Result<Volume, ApiFailure> {
        let label = body["label"].as_str().unwrap_or_default();
        let v: Volume =
            self.create_once("/volumes", body, move || async move { self.volume_by_label(label).await }).await?;
        self.wait_volume(v.id).await
    }

    /// Waits until a volume is active.
    pub async fn wait_volume(&self, id: u64) -> Result<Volume, ApiFailure> {
        self.wait(&format!("volume {id}"), move || async move {
            let v = self.volume(id).await?;
            Ok((v.status == "active").then_some(v))
        })
        .await
    }

    /// Attaches and waits until the volume says so (attachment is eventually consistent).
    pub async fn attach_volume(&self, id: u64, linode: u64) -> Result<Volume, ApiFailure> {
        self.client.action(&format!("/volumes/{id}/attach"), &json!({ "linode_id": linode })).await?;
        self.wait(&format!("volume {id} attaching"), move || async move {
            let v = self.volume(id).await?;
            Ok((v.linode_id == Some(linode)).then_some(v))
        })
        .await
    }

    pub async fn detach_volume(&self, id: u64) -> Result<Volume, ApiFailure> {
        self.client.action(&format!("/volumes/{id}/detach"), &json!({})).await?;
        self.wait(&format!("volume {id} detaching"), move || async move {
            let v = self.volume(id).await?;
            Ok(v.linode_id.is_none().then_some(v))
        })
        .await
    }

    pub async fn delete_volume(&self, id: u64) -> Result<bool, ApiFailure> {
        self.client.delete(&format!("/volumes/{id}")).await
    }

    // Events.

    /// Events created at or after `since` (`YYYY-MM-DDTHH:MM:SS`, UTC), oldest first, that
    /// match `filter` too.
    pub async fn events_since(&self, since: &str, filter: Option<Value>) -> Result<Vec<Event>, ApiFailure> {
        let mut f = json!({ "created": { "+gte": since } });
        if let (Some(Value::Object(extra)), Value::Object(base)) = (filter, &mut f) {
            base.extend(extra);
        }
        let mut events: Vec<Event> = self.client.list("/account/events", Some(&f)).await?;
        events.sort_by_key(|e| e.id);
        Ok(events)
    }

    /// Waits for the event of `action` on `entity` after `since` to finish; its failure is an
    /// error.
    pub async fn wait_event(&self, action: &str, entity: u64, since: &str) -> Result<Event, ApiFailure> {
        self.wait(&format!("event {action} on {entity}"), move || async move {
            let filter = json!({ "action": action, "entity.id": entity });
            let events = self.events_since(since, Some(filter)).await?;
            match events.into_iter().rev().find(|e| matches!(e.status.as_deref(), Some("finished" | "failed"))) {
                Some(e) if e.status.as_deref() == Some("failed") => Err(ApiFailure::Api {
                    method: "EVENT".into(),
                    path: action.into(),
                    status: 0,
                    errors: vec![ApiError { reason: e.message.clone().unwrap_or("failed".into()), field: None }],
                }),
                other => Ok(other),
            }
        })
        .await
    }

    // The rest: plain reads and writes.

    pub async fn regions(&self) -> Result<Vec<Region>, ApiFailure> {
        self.client.list("/regions", None).await
    }

    pub async fn types(&self) -> Result<Vec<LinodeType>, ApiFailure> {
        self.client.list("/linode/types", None).await
    }

    pub async fn domains(&self) -> Result<Vec<Domain>, ApiFailure> {
        self.client.list("/domains", None).await
    }

    pub async fn domain_records(&self, domain: u64) -> Result<Vec<DomainRecord>, ApiFailure> {
        self.client.list(&format!("/domains/{domain}/records"), None).await
    }

    /// A primary ("master") domain in the DNS Manager.
    pub async fn create_domain(&self, domain: &str, soa_email: &str) -> Result<Domain, ApiFailure> {
        let body = json!({ "domain": domain, "type": "master", "soa_email": soa_email, "tags": ["lct"] });
        self.client.post("/domains", &body, Outcome::Report).await
    }

    /// A record (`body`: type, name, target, ttl_sec, ...).
    pub async fn create_domain_record(&self, domain: u64, body: &Value) -> Result<DomainRecord, ApiFailure> {
        self.client.post(&format!("/domains/{domain}/records"), body, Outcome::Report).await
    }

    pub async fn update_domain_record(&self, domain: u64, id: u64, body: &Value) -> Result<DomainRecord, ApiFailure> {
        self.client.put(&format!("/domains/{domain}/records/{id}"), body).await
    }

    pub async fn delete_domain_record(&self, domain: u64, id: u64) -> Result<bool, ApiFailure> {
        self.client.delete(&format!("/domains/{domain}/records/{id}")).await
    }

    pub async fn firewalls(&self) -> Result<Vec<Firewall>, ApiFailure> {
        self.client.list("/networking/firewalls", None).await
    }

    pub async fn firewall_rules(&self, id: u64) -> Result<FirewallRules, ApiFailure> {
        self.client.get(&format!("/networking/firewalls/{id}/rules")).await
    }

    pub async fn set_firewall_rules(&self, id: u64, rules: &Value) -> Result<FirewallRules, ApiFailure> {
        self.client.put(&format!("/networking/firewalls/{id}/rules"), rules).await
    }

    pub async fn firewall_devices(&self, id: u64) -> Result<Vec<FirewallDevice>, ApiFailure> {
        self.client.list(&format!("/networking/firewalls/{id}/devices"), None).await
    }

    /// Creates a Cloud Firewall (never twice for a label).
    pub async fn create_firewall(&self, body: &Value) -> Result<Firewall, ApiFailure> {
        let label = body["label"].as_str().unwrap_or_default();
        self.create_once("/networking/firewalls", body, move || async move {
            Ok(self.firewalls().await?.into_iter().find(|f| f.label == label))
        })
        .await
    }

    /// Puts an instance behind a Cloud Firewall.
    pub async fn add_firewall_device(&self, firewall: u64, linode: u64) -> Result<FirewallDevice, ApiFailure> {
        let path = format!("/networking/firewalls/{firewall}/devices");
        let body = json!({ "type": "linode", "id": linode });
        self.create_once(&path, &body, move || async move {
            Ok(self.firewall_devices(firewall).await?.into_iter().find(|d| d.entity.id.as_u64() == Some(linode)))
        })
        .await
    }

    pub async fn remove_firewall_device(&self, firewall: u64, device: u64) -> Result<bool, ApiFailure> {
        self.client.delete(&format!("/networking/firewalls/{firewall}/devices/{device}")).await
    }

    pub async fn tags(&self) -> Result<Vec<Tag>, ApiFailure> {
        self.client.list("/tags", None).await
    }

    pub async fn nodebalancers(&self) -> Result<Vec<NodeBalancer>, ApiFailure> {
        self.client.list("/nodebalancers", None).await
    }

    pub async fn stackscripts(&self, filter: Option<&Value>) -> Result<Vec<StackScript>, ApiFailure> {
        self.client.list("/linode/stackscripts", filter).await
    }
}

/// An image id in a path: its slash encoded (`private%2F123`), as the API expects.
pub fn image_path(id: &str) -> String {
    id.replace('/', "%2F")
}

/// The UTC time now as the API writes it (`2026-11-25T13:40:00`), for event filters.
pub fn api_time_now() -> String {
    api_time(std::time::SystemTime::now())
}

pub fn api_time(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn api_times() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_613_714);
        assert_eq!(super::api_time(t), "2026-11-25T13:35:14");
        assert_eq!(super::api_time(std::time::UNIX_EPOCH), "1970-01-01T00:00:00");
    }
}
