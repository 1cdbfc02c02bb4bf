//! What the double holds: resources with their timelines, the catalogs, the clock, and the
//! behaviours of instances, disks and volumes.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::filter::Filter;
use crate::{Config, Fault, Stats};

/// A stored resource: its fields, and changes that take effect at given times (status
/// transitions, an attachment that shows up later). Fields starting with `_` are ours.
#[derive(Debug, Clone)]
pub(crate) struct Obj {
    pub(crate) v: Value,
    pub(crate) timeline: Vec<(f64, Value)>,
}

impl Obj {
    pub(crate) fn new(v: Value) -> Obj {
        Obj { v, timeline: Vec::new() }
    }

    pub(crate) fn at(&self, now: f64) -> Value {
        let mut v = self.v.clone();
        for (t, patch) in &self.timeline {
            if *t <= now {
                merge(&mut v, patch);
            }
        }
        v
    }

    /// Busy while a change is pending.
    pub(crate) fn busy(&self, now: f64) -> bool {
        self.timeline.iter().any(|(t, _)| *t > now)
    }

    /// Makes the present state the base and schedules `steps` (relative seconds) after `now`.
    pub(crate) fn schedule(&mut self, now: f64, steps: &[(f64, Value)]) {
        self.v = self.at(now);
        self.timeline.retain(|(t, _)| *t > now);
        let mut t = now;
        for (dt, patch) in steps {
            t += dt;
            self.timeline.push((t, patch.clone()));
        }
    }
}

pub(crate) fn merge(v: &mut Value, patch: &Value) {
    if let (Value::Object(base), Value::Object(p)) = (v, patch) {
        for (k, val) in p {
            base.insert(k.clone(), val.clone());
        }
    }
}

pub(crate) fn public(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(k, _)| !k.starts_with('_')).map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        other => other.clone(),
    }
}

pub(crate) struct Window {
    pub(crate) start: Instant,
    pub(crate) count: u32,
    /// After a 429: nothing of this class should come before then.
    pub(crate) not_before: Option<Instant>,
    /// When the last 429 went out: requests that arrive within [`IN_FLIGHT`] of it crossed it
    /// on the wire and are not counted as early.
    pub(crate) refused_at: Option<Instant>,
}

/// How long after a 429 other requests may still be on their way.
pub(crate) const IN_FLIGHT: Duration = Duration::from_millis(50);

pub(crate) struct State {
    pub(crate) cfg: Config,
    pub(crate) started: Instant,
    pub(crate) epoch: SystemTime,
    pub(crate) offset: f64,
    pub(crate) next_id: u64,
    /// Collections by kind, each by id.
    pub(crate) kinds: HashMap<&'static str, BTreeMap<u64, Obj>>,
    pub(crate) windows: HashMap<&'static str, Window>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) stats: Stats,
    pub(crate) base_url: String,
    /// What was PUT to each image's upload URL (for the tests to check).
    pub(crate) uploads: HashMap<String, Vec<u8>>,
}

pub(crate) type Reply = (StatusCode, Vec<(&'static str, String)>, Value);

pub(crate) fn error(status: u16, reason: &str, field: Option<&str>) -> Reply {
    let mut e = json!({ "reason": reason });
    if let Some(f) = field {
        e["field"] = json!(f);
    }
    (StatusCode::from_u16(status).expect("a status"), Vec::new(), json!({ "errors": [e] }))
}

pub(crate) fn ok(v: Value) -> Reply {
    (StatusCode::OK, Vec::new(), v)
}

pub(crate) const REGIONS: [(&str, &str, &str); 6] = [
    ("us-east", "Newark, NJ", "us"),
    ("us-central", "Dallas, TX", "us"),
    ("us-west", "Fremont, CA", "us"),
    ("eu-west", "London, UK", "gb"),
    ("ap-south", "Singapore, SG", "sg"),
    ("in-bom-2", "Mumbai 2, IN", "in"),
];

pub(crate) const TYPES: [(&str, &str, u64, u64, u32); 4] = [
    ("g6-nanode-1", "Nanode 1GB", 25_600, 1024, 1),
    ("g6-standard-1", "Linode 2GB", 51_200, 2048, 1),
    ("g6-standard-2", "Linode 4GB", 81_920, 4096, 2),
    ("g6-dedicated-2", "Dedicated 4GB", 81_920, 4096, 2),
];

pub(crate) const PUBLIC_IMAGES: [&str; 4] =
    ["linode/debian12", "linode/debian11", "linode/ubuntu24.04", "linode/alpine3.20"];

impl State {
    pub(crate) fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * self.cfg.speed + self.offset
    }

    pub(crate) fn time_string(&self, at: f64) -> String {
        lct_api::linode::api::api_time(self.epoch + Duration::from_secs_f64(at.max(0.0)))
    }

    pub(crate) fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn kind(&mut self, k: &'static str) -> &mut BTreeMap<u64, Obj> {
        self.kinds.entry(k).or_default()
    }

    /// Deletes the objects of kind `k` that belong to `parent` (when the parent goes).
    pub(crate) fn remove_children(&mut self, k: &'static str, parent: u64) {
        self.kind(k).retain(|_, o| o.v["_parent"] != json!(parent));
    }

    pub(crate) fn get(&self, k: &str, id: u64) -> Option<Value> {
        let now = self.now();
        self.kinds.get(k).and_then(|m| m.get(&id)).map(|o| o.at(now))
    }

    /// A visible resource of kind `k` with `id` under `parent` (if the kind has one).
    pub(crate) fn find(&self, k: &str, id: u64, parent: Option<u64>) -> Result<Value, Reply> {
        match self.get(k, id) {
            Some(v) if parent.is_none_or(|p| v["_parent"] == json!(p)) && v["_hidden"] != json!(true) => Ok(v),
            _ => Err(error(404, "Not found", None)),
        }
    }

    pub(crate) fn event(&mut self, action: &str, entity: &Value, entity_type: &str, duration: f64) {
        let now = self.now();
        let id = self.id();
        let created = self.time_string(now);
        let url = match entity_type {
            "linode" => format!("/v4/linode/instances/{}", entity["id"]),
            "volume" => format!("/v4/volumes/{}", entity["id"]),
            "image" => format!("/v4/images/{}", entity["id"].as_str().unwrap_or_default()),
            _ => format!("/v4/{entity_type}s/{}", entity["id"]),
        };
        let mut obj = Obj::new(json!({
            "id": id, "action": action, "created": created, "status": "started",
            "entity": { "id": entity["id"], "label": entity["label"], "type": entity_type, "url": url },
            "secondary_entity": null, "percent_complete": 0, "time_remaining": null, "rate": null,
            "seen": false, "read": false, "username": "lct-test", "message": null, "duration": null,
        }));
        obj.timeline
            .push((now + duration, json!({ "status": "finished", "percent_complete": 100, "duration": duration })));
        self.kind("events").insert(id, obj);
    }

    // The catalogs.

    pub(crate) fn region_json(id: &str, label: &str, country: &str) -> Value {
        json!({
            "id": id, "label": label, "country": country, "status": "ok", "site_type": "core",
            "capabilities": ["Linodes", "Block Storage", "NodeBalancers", "Cloud Firewall", "Vlans", "Metadata"],
            "resolvers": { "ipv4": "192.0.2.5,192.0.2.6", "ipv6": "2001:db8::5,2001:db8::6" },
            "placement_group_limits": { "maximum_pgs_per_customer": null, "maximum_linodes_per_pg": 5 },
        })
    }

    pub(crate) fn type_json(t: &(&str, &str, u64, u64, u32)) -> Value {
        let class = if t.0.contains("nanode") {
            "nanode"
        } else if t.0.contains("dedicated") {
            "dedicated"
        } else {
            "standard"
        };
        json!({
            "id": t.0, "label": t.1, "class": class, "disk": t.2, "memory": t.3, "vcpus": t.4, "gpus": 0,
            "network_out": 1000, "transfer": 1000, "successor": null,
            "price": { "hourly": 0.0075, "monthly": 5.0 }, "region_prices": [],
            "addons": { "backups": { "price": { "hourly": 0.003, "monthly": 2.0 }, "region_prices": [] } },
        })
    }

    pub(crate) fn seed_catalog(&mut self) {
        for img in PUBLIC_IMAGES {
            let id = self.id();
            let v = json!({
                "id": img, "label": img.trim_start_matches("linode/"), "description": "", "status": "available",
                "type": "manual", "is_public": true, "deprecated": false, "size": 2500, "vendor": "Debian",
                "created": self.time_string(0.0), "created_by": "linode", "expiry": null, "eol": null,
                "updated": self.time_string(0.0), "capabilities": ["cloud-init"], "tags": [], "total_size": 2500,
                "regions": [],
            });
            self.kind("images").insert(id, Obj::new(v));
        }
    }

    // Instances.

    /// The lowest private address (192.168.128.0/17) no instance of `region` has: regions'
    /// private networks are their own, so they hand out the same addresses, as Linode's do.
    pub(crate) fn private_in(&mut self, region: &str) -> String {
        let used: std::collections::BTreeSet<String> = self
            .kind("instances")
            .values()
            .filter(|o| o.v["region"] == json!(region))
            .flat_map(|o| o.v["ipv4"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a.as_str().map(String::from))
            .collect();
        (u32::from(std::net::Ipv4Addr::new(192, 168, 128, 1))..u32::from(std::net::Ipv4Addr::new(192, 168, 255, 255)))
            .map(|a| std::net::Ipv4Addr::from(a).to_string())
            .find(|a| !used.contains(a))
            .unwrap_or_else(|| "192.168.255.254".into())
    }

    pub(crate) fn addresses(&self, n: u64) -> (String, String, String) {
        // Public addresses from documentation ranges only (RFC 5737's 198.51.100.0/24 and
        // 203.0.113.0/24, repeating after 508): they exist on no real network, and lct
        // refuses to connect to them from outside a lab (lct_core::reach).
        const BLOCKS: [&str; 2] = ["198.51.100", "203.0.113"];
        let public = format!("{}.{}", BLOCKS[((n / 254) % 2) as usize], n % 254 + 1);
        let private = format!("192.168.{}.{}", 128 + (n / 254) % 128, n % 254 + 1);
        let v6 = format!("2001:db8::{n:x}/128");
        (public, private, v6)
    }

    pub(crate) fn new_instance(&mut self, body: &Value) -> Result<Value, Reply> {
        let label = body["label"].as_str().unwrap_or_default().to_string();
        let label = if label.is_empty() { format!("linode{}", self.next_id + 1) } else { label };
        check_label(&label)?;
        let region = body["region"].as_str().ok_or_else(|| error(400, "region is required", Some("region")))?;
        if !REGIONS.iter().any(|r| r.0 == region) {
            return Err(error(400, "Region does not exist.", Some("region")));
        }
        let itype = body["type"].as_str().ok_or_else(|| error(400, "type is required", Some("type")))?;
        let Some(t) = TYPES.iter().find(|t| t.0 == itype) else {
            return Err(error(400, "A valid plan type by that ID was not found", Some("type")));
        };
        let image = body["image"].as_str();
        if let Some(img) = image {
            if !self.image_exists(img) {
                return Err(error(400, "No image with that id", Some("image")));
            }
            if body["root_pass"].as_str().is_none_or(str::is_empty)
                && body["authorized_keys"].as_array().is_none_or(Vec::is_empty)
            {
                return Err(error(400, "root_pass is required when deploying an image", Some("root_pass")));
            }
        }
        if let Some(pass) = body["root_pass"].as_str()
            && pass.len() < 11
        {
            return Err(error(400, "Password does not meet strength requirement.", Some("root_pass")));
        }
        // Metadata (cloud-init): user_data is base64, at most 64 KiB once encoded.
        let user_data = &body["metadata"]["user_data"];
        if !user_data.is_null() {
            let text = user_data.as_str().ok_or_else(|| error(400, "Must be a string", Some("metadata.user_data")))?;
            if text.len() > 65_535 || data_encoding::BASE64.decode(text.as_bytes()).is_err() {
                return Err(error(
                    400,
                    "user_data must be base64 encoded and at most 64 KiB",
                    Some("metadata.user_data"),
                ));
            }
        }
        let has_user_data = !user_data.is_null();
        let id = self.id();
        let (public_v4, _, v6) = self.addresses(id);
        let private = self.private_in(region);
        let mut ipv4 = vec![public_v4];
        if body["private_ip"] == json!(true) {
            ipv4.push(private);
        }
        let now = self.now();
        let created = self.time_string(now);
        let tags = body["tags"].clone();
        let v = json!({
            "id": id, "label": label, "group": "", "status": "provisioning", "created": created, "updated": created,
            "type": itype, "ipv4": ipv4, "ipv6": v6, "image": image, "region": region,
            "specs": { "disk": t.2, "memory": t.3, "vcpus": t.4, "gpus": 0, "transfer": 1000 },
            "alerts": { "cpu": 90, "io": 10000, "network_in": 10, "network_out": 10, "transfer_quota": 80 },
            "backups": { "enabled": false, "available": false, "schedule": { "day": null, "window": null }, "last_successful": null },
            "hypervisor": "kvm", "watchdog_enabled": true, "tags": if tags.is_array() { tags } else { json!([]) },
            "host_uuid": format!("{:032x}", id), "has_user_data": has_user_data, "placement_group": null,
            "disk_encryption": "disabled", "lke_cluster_id": null, "capabilities": [],
        });
        let mut obj = Obj::new(v.clone());
        let (p, b) = (self.cfg.provision, self.cfg.boot);
        if body["booted"] == json!(false) || image.is_none() {
            obj.schedule(now, &[(p, json!({ "status": "offline" }))]);
        } else {
            obj.schedule(now, &[(p, json!({ "status": "booting" })), (b, json!({ "status": "running" }))]);
        }
        self.kind("instances").insert(id, obj);
        *self.stats.created_labels.entry(label).or_default() += 1;
        self.event("linode_create", &v, "linode", p + b);
        if let Some(img) = image {
            // The image's disks, as the API makes them.
            let disk_mib = t.2 - 512;
            for (label, size, fs) in [
                (format!("{} Disk", img.rsplit('/').next().unwrap_or(img)), disk_mib, "ext4"),
                ("512 MB Swap Image".into(), 512, "swap"),
            ] {
                let did = self.id();
                let d = json!({
                    "id": did, "label": label, "status": "ready", "size": size, "filesystem": fs,
                    "created": created, "updated": created, "disk_encryption": "disabled", "_parent": id,
                });
                self.kind("disks").insert(did, Obj::new(d));
            }
        }
        Ok(public(&self.get("instances", id).expect("just made")))
    }

    pub(crate) fn image_exists(&self, id: &str) -> bool {
        self.kinds.get("images").is_some_and(|m| m.values().any(|o| o.v["id"] == json!(id)))
    }

    pub(crate) fn instance_action(&mut self, id: u64, action: &str, body: &Value) -> Result<Value, Reply> {
        let now = self.now();
        let (boot, shutdown) = (self.cfg.boot, self.cfg.shutdown);
        let obj = self.kind("instances").get_mut(&id).ok_or_else(|| error(404, "Not found", None))?;
        if obj.busy(now) {
            return Err(error(400, "Linode busy.", None));
        }
        let status = obj.at(now)["status"].as_str().unwrap_or_default().to_string();
        let (steps, event, duration) = match action {
            "boot" if status == "running" => (vec![], "linode_boot", 0.0),
            "boot" => {
                (vec![(0.0, json!({"status": "booting"})), (boot, json!({"status": "running"}))], "linode_boot", boot)
            }
            "shutdown" if status == "offline" => (vec![], "linode_shutdown", 0.0),
            "shutdown" => (
                vec![(0.0, json!({"status": "shutting_down"})), (shutdown, json!({"status": "offline"}))],
                "linode_shutdown",
                shutdown,
            ),
            "reboot" => (
                vec![(0.0, json!({"status": "rebooting"})), (shutdown + boot, json!({"status": "running"}))],
                "linode_reboot",
                shutdown + boot,
            ),
            _ => return Err(error(404, "Not found", None)),
        };
        let _ = body;
        obj.schedule(now, &steps);
        let v = obj.at(now);
        self.event(event, &v, "linode", duration);
        Ok(json!({}))
    }

    // Disks.

    pub(crate) fn new_disk(&mut self, linode: u64, body: &Value) -> Result<Value, Reply> {
        let now = self.now();
        let inst = self.find("instances", linode, None)?;
        if self.kinds.get("instances").and_then(|m| m.get(&linode)).is_some_and(|o| o.busy(now)) {
            return Err(error(400, "Linode busy.", None));
        }
        let size = body["size"].as_u64().ok_or_else(|| error(400, "size is required", Some("size")))?;
        let used: u64 = self
            .kinds
            .get("disks")
            .map(|m| {
                m.values()
                    .map(|o| o.at(now))
                    .filter(|d| d["_parent"] == json!(linode))
                    .map(|d| d["size"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        if size == 0 || used + size > inst["specs"]["disk"].as_u64().unwrap_or(0) {
            return Err(error(400, "Insufficient space for requested disk size.", Some("size")));
        }
        let label = body["label"].as_str().unwrap_or("disk").to_string();
        check_label_len(&label, "label")?;
        let id = self.id();
        let created = self.time_string(now);
        let d = json!({
            "id": id, "label": label, "status": "not ready", "size": size,
            "filesystem": body["filesystem"].as_str().unwrap_or("ext4"), "created": created, "updated": created,
            "disk_encryption": "disabled", "_parent": linode, "_hidden": true,
        });
        let mut obj = Obj::new(d.clone());
        obj.schedule(
            now,
            &[(self.cfg.disk_hidden, json!({ "_hidden": false })), (self.cfg.disk_ready, json!({ "status": "ready" }))],
        );
        self.kind("disks").insert(id, obj);
        let total = self.cfg.disk_hidden + self.cfg.disk_ready;
        if let Some(o) = self.kind("instances").get_mut(&linode) {
            // The instance is busy while the disk is made.
            o.timeline.push((now + total, json!({})));
        }
        self.event("disk_create", &json!({ "id": linode, "label": inst["label"] }), "linode", total);
        Ok(public(&d))
    }

    // Volumes.

    pub(crate) fn new_volume(&mut self, body: &Value) -> Result<Value, Reply> {
        let label = body["label"].as_str().ok_or_else(|| error(400, "label is required", Some("label")))?.to_string();
        check_label(&label)?;
        let size = body["size"].as_u64().unwrap_or(20);
        if !(10..=16_384).contains(&size) {
            return Err(error(400, "Size must be between 10 and 16384.", Some("size")));
        }
        let linode = body["linode_id"].as_u64();
        let region = match (body["region"].as_str(), linode) {
            (Some(r), _) => r.to_string(),
            (None, Some(l)) => self.find("instances", l, None)?["region"].as_str().unwrap_or_default().to_string(),
            (None, None) => return Err(error(400, "region is required", Some("region"))),
        };
        if !REGIONS.iter().any(|r| r.0 == region) {
            return Err(error(400, "Region does not exist.", Some("region")));
        }
        let now = self.now();
        let id = self.id();
        let created = self.time_string(now);
        let v = json!({
            "id": id, "label": label, "status": "creating", "size": size, "region": region,
            "linode_id": null, "linode_label": null, "created": created, "updated": created,
            "filesystem_path": format!("/dev/disk/by-id/scsi-0Linode_Volume_{label}"),
            "tags": body["tags"].as_array().cloned().unwrap_or_default(), "hardware_type": "nvme",
            "encryption": "disabled",
        });
        let mut obj = Obj::new(v.clone());
        obj.schedule(now, &[(self.cfg.volume_ready, json!({ "status": "active" }))]);
        self.kind("volumes").insert(id, obj);
        self.event("volume_create", &v, "volume", self.cfg.volume_ready);
        Ok(v)
    }

    pub(crate) fn volume_action(&mut self, id: u64, action: &str, body: &Value) -> Result<Value, Reply> {
        let now = self.now();
        let attach = self.cfg.attach;
        let target = match action {
            "attach" => {
                let l =
                    body["linode_id"].as_u64().ok_or_else(|| error(400, "linode_id is required", Some("linode_id")))?;
                let inst = self.find("instances", l, None)?;
                Some((l, inst["label"].clone()))
            }
            "detach" => None,
            _ => return Err(error(404, "Not found", None)),
        };
        let obj = self.kind("volumes").get_mut(&id).ok_or_else(|| error(404, "Not found", None))?;
        let v = obj.at(now);
        if obj.busy(now) {
            return Err(error(400, "Volume is busy.", None));
        }
        if action == "attach" && !v["linode_id"].is_null() {
            return Err(error(400, "Volume is already attached.", Some("linode_id")));
        }
        // Eventually consistent: the change shows up a moment later.
        let patch = match &target {
            Some((l, label)) => json!({ "linode_id": l, "linode_label": label }),
            None => json!({ "linode_id": null, "linode_label": null }),
        };
        obj.schedule(now, &[(attach, patch)]);
        let v = obj.at(now);
        self.event(if target.is_some() { "volume_attach" } else { "volume_detach" }, &v, "volume", attach);
        Ok(json!({}))
    }

    // Generic resources: the catalog of what is stored where.

    /// A page of the visible resources of kind `k` (under `parent`), filtered as asked.
    pub(crate) fn list(
        &self,
        k: &str,
        parent: Option<u64>,
        query: &HashMap<String, String>,
        filter: Option<&str>,
    ) -> Reply {
        let now = self.now();
        let all: Vec<Value> = self
            .kinds
            .get(k)
            .map(|m| m.values().map(|o| o.at(now)).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v["_hidden"] != json!(true))
            .filter(|v| parent.is_none_or(|p| v["_parent"] == json!(p)))
            .collect();
        page(&all, k, query, filter)
    }

    pub(crate) fn seed_instances(&mut self, count: u64, prefix: &str) {
        for i in 0..count {
            let body = json!({ "label": format!("{prefix}{i}"), "region": "us-east", "type": "g6-nanode-1", "tags": ["seeded"] });
            let _ = self.new_instance(&body);
        }
        self.offset += 3600.0; // let them all be running
    }
}

pub(crate) fn check_label(label: &str) -> Result<(), Reply> {
    let bad = || {
        error(
            400,
            "Label must begin and end with a letter or number, and may only contain letters, numbers, dashes, underscores, and periods.",
            Some("label"),
        )
    };
    check_label_len(label, "label")?;
    let b = label.as_bytes();
    if !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err(bad());
    }
    if b.iter().any(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))) {
        return Err(bad());
    }
    if b.windows(2).any(|w| !w[0].is_ascii_alphanumeric() && !w[1].is_ascii_alphanumeric()) {
        return Err(error(400, "Label must not include two dashes, underscores, or periods in a row.", Some("label")));
    }
    Ok(())
}

pub(crate) fn check_label_len(label: &str, field: &str) -> Result<(), Reply> {
    if !(3..=64).contains(&label.len()) {
        return Err(error(400, "Length must be 3-64 characters", Some(field)));
    }
    Ok(())
}

pub(crate) fn filterable(kind: &str) -> &'static [&'static str] {
    match kind {
        "instances" => &["id", "label", "region", "type", "image", "status", "tags", "group", "created"],
        "volumes" => &["id", "label", "region", "tags", "linode_id", "status", "size"],
        "images" => &["id", "label", "is_public", "vendor", "deprecated", "type", "status", "size"],
        "events" => &["id", "created", "action", "entity.id", "entity.type", "seen", "status"],
        "regions" => &["id", "country", "status"],
        "types" => &["id", "class", "label", "disk", "memory", "vcpus"],
        "domains" => &["id", "domain", "type", "status", "tags"],
        "tags" => &["label"],
        _ => &["id", "label"],
    }
}

/// One page of `all` as the API gives it: `page` and `page_size` checked (25 to 500), `X-Filter`
/// applied with the fields `kind` may be filtered on.
pub(crate) fn page(all: &[Value], kind: &str, query: &HashMap<String, String>, filter: Option<&str>) -> Reply {
    let page: u64 = match query.get("page").map(|p| p.parse::<u64>()) {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        _ => return error(400, "Must be an integer greater than or equal to 1", Some("page")),
    };
    let size: u64 = match query.get("page_size").map(|p| p.parse::<u64>()) {
        None => 100,
        Some(Ok(s)) if (25..=500).contains(&s) => s,
        _ => return error(400, "Must be an integer between 25 and 500", Some("page_size")),
    };
    let filter = match filter.map(|f| Filter::parse(f, filterable(kind))).transpose() {
        Ok(f) => f,
        Err(reason) => return error(400, &reason, Some("X-Filter")),
    };
    let mut items: Vec<&Value> = all.iter().filter(|v| filter.as_ref().is_none_or(|f| f.matches(v))).collect();
    if let Some(f) = &filter {
        f.sort(&mut items);
    }
    let results = items.len() as u64;
    let pages = results.div_ceil(size).max(1);
    let data: Vec<Value> =
        items.into_iter().skip(((page - 1) * size) as usize).take(size as usize).map(public).collect();
    ok(json!({ "data": data, "page": page, "pages": pages, "results": results }))
}
