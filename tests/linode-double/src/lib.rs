//! A stateful test double of the Linode API v4, as the recorded real traffic and NOTICE.md
//! in `shared/linode-api` show it behaving: instances, disks, configs, IPs, images (capture
//! and upload), volumes, domains and records, Cloud Firewalls, regions, types, events, tags,
//! StackScripts, NodeBalancers (configs and nodes); asynchronous status changes on a clock
//! that tests can speed up or move forward; "Linode busy." while a job runs; per-operation
//! rate limits with their headers and 429s; a new disk missing from its list for a moment;
//! pages and `X-Filter` with their errors; JSON error bodies; and knobs that inject 408, 503,
//! nginx's HTML 400 and dropped connections, before or after the request is carried out.
//!
//! For tests and benchmarks only: no shipped binary depends on it.

pub mod filter;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use filter::Filter;

/// How the double behaves. Delays are in the double's seconds (see `speed`).
#[derive(Debug, Clone)]
pub struct Config {
    pub token: String,
    /// Double seconds per real second: 1 for the benchmark, 100 for quick tests.
    pub speed: f64,
    pub provision: f64,
    pub boot: f64,
    pub shutdown: f64,
    /// How long a new disk is missing from its instance's list (and its GET is 404).
    pub disk_hidden: f64,
    pub disk_ready: f64,
    pub volume_ready: f64,
    pub attach: f64,
    pub image_ready: f64,
    /// Per rate-limit class: requests per window (seconds, real time).
    pub limits: HashMap<&'static str, (u32, f64)>,
}

/// Linode's documented limits (NOTICE.md).
pub fn linode_limits() -> HashMap<&'static str, (u32, f64)> {
    HashMap::from([
        ("create_instance", (20, 15.0)),
        ("create_volume", (100, 60.0)),
        ("list_images", (20, 60.0)),
        ("list_stackscripts", (60, 60.0)),
        ("collection", (200, 60.0)),
        ("other", (1600, 60.0)),
    ])
}

impl Config {
    /// Real limits and realistic delays, in real time: the benchmark's.
    pub fn realistic() -> Config {
        Config {
            token: "test-token".into(),
            speed: 1.0,
            provision: 12.0,
            boot: 8.0,
            shutdown: 5.0,
            disk_hidden: 2.0,
            disk_ready: 6.0,
            volume_ready: 5.0,
            attach: 4.0,
            image_ready: 10.0,
            limits: linode_limits(),
        }
    }

    /// The same, a hundred times faster: for tests.
    pub fn fast() -> Config {
        Config { speed: 100.0, ..Config::realistic() }
    }
}

/// What went wrong on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 408 "Please try again".
    Timeout408,
    /// 503 without `X-Maintenance-Mode`.
    Unavailable503,
    /// 503 with `X-Maintenance-Mode`: not to be retried.
    Maintenance503,
    /// nginx's text/html 400.
    Html400,
    /// 400 "Linode busy.".
    Busy,
    /// The connection closes without an answer.
    Drop,
}

impl FaultKind {
    pub fn parse(s: &str) -> Option<FaultKind> {
        Some(match s {
            "408" => FaultKind::Timeout408,
            "503" => FaultKind::Unavailable503,
            "maintenance" => FaultKind::Maintenance503,
            "html400" => FaultKind::Html400,
            "busy" => FaultKind::Busy,
            "drop" => FaultKind::Drop,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Fault {
    /// `GET`, `POST`, ... (`None`: any).
    pub method: Option<String>,
    /// Matches paths that start with it (below the version: `/linode/instances`).
    pub path: String,
    pub kind: FaultKind,
    /// How many requests it hits.
    pub count: u32,
    /// Carry the request out first, then answer with the fault: the client cannot know.
    pub after: bool,
}

/// What the double saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: u64,
    pub by_class: BTreeMap<String, u64>,
    /// 429s sent.
    pub throttled: u64,
    /// Requests of a class that arrived before the `Retry-After` its 429 asked for (those
    /// that crossed the 429 on the wire aside).
    pub early_after_429: u64,
    /// Instances created per label, over the whole run (deleted ones too).
    pub created_labels: BTreeMap<String, u32>,
    pub faults_served: u64,
}

impl Stats {
    pub fn duplicates(&self) -> Vec<String> {
        self.created_labels.iter().filter(|(_, n)| **n > 1).map(|(l, _)| l.clone()).collect()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "by_class": self.by_class,
            "throttled": self.throttled,
            "early_after_429": self.early_after_429,
            "instances_created": self.created_labels.values().sum::<u32>(),
            "duplicates": self.duplicates(),
            "faults_served": self.faults_served,
        })
    }
}

/// A stored resource: its fields, and changes that take effect at given times (status
/// transitions, an attachment that shows up later). Fields starting with `_` are ours.
#[derive(Debug, Clone)]
struct Obj {
    v: Value,
    timeline: Vec<(f64, Value)>,
}

impl Obj {
    fn new(v: Value) -> Obj {
        Obj { v, timeline: Vec::new() }
    }

    fn at(&self, now: f64) -> Value {
        let mut v = self.v.clone();
        for (t, patch) in &self.timeline {
            if *t <= now {
                merge(&mut v, patch);
            }
        }
        v
    }

    /// Busy while a change is pending.
    fn busy(&self, now: f64) -> bool {
        self.timeline.iter().any(|(t, _)| *t > now)
    }

    /// Makes the present state the base and schedules `steps` (relative seconds) after `now`.
    fn schedule(&mut self, now: f64, steps: &[(f64, Value)]) {
        self.v = self.at(now);
        self.timeline.retain(|(t, _)| *t > now);
        let mut t = now;
        for (dt, patch) in steps {
            t += dt;
            self.timeline.push((t, patch.clone()));
        }
    }
}

fn merge(v: &mut Value, patch: &Value) {
    if let (Value::Object(base), Value::Object(p)) = (v, patch) {
        for (k, val) in p {
            base.insert(k.clone(), val.clone());
        }
    }
}

fn public(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(k, _)| !k.starts_with('_')).map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        other => other.clone(),
    }
}

struct Window {
    start: Instant,
    count: u32,
    /// After a 429: nothing of this class should come before then.
    not_before: Option<Instant>,
    /// When the last 429 went out: requests that arrive within [`IN_FLIGHT`] of it crossed it
    /// on the wire and are not counted as early.
    refused_at: Option<Instant>,
}

/// How long after a 429 other requests may still be on their way.
const IN_FLIGHT: Duration = Duration::from_millis(50);

struct State {
    cfg: Config,
    started: Instant,
    epoch: SystemTime,
    offset: f64,
    next_id: u64,
    /// Collections by kind, each by id.
    kinds: HashMap<&'static str, BTreeMap<u64, Obj>>,
    windows: HashMap<&'static str, Window>,
    faults: Vec<Fault>,
    stats: Stats,
    base_url: String,
}

type Reply = (StatusCode, Vec<(&'static str, String)>, Value);

fn error(status: u16, reason: &str, field: Option<&str>) -> Reply {
    let mut e = json!({ "reason": reason });
    if let Some(f) = field {
        e["field"] = json!(f);
    }
    (StatusCode::from_u16(status).expect("a status"), Vec::new(), json!({ "errors": [e] }))
}

fn ok(v: Value) -> Reply {
    (StatusCode::OK, Vec::new(), v)
}

const REGIONS: [(&str, &str, &str); 6] = [
    ("us-east", "Newark, NJ", "us"),
    ("us-central", "Dallas, TX", "us"),
    ("us-west", "Fremont, CA", "us"),
    ("eu-west", "London, UK", "gb"),
    ("ap-south", "Singapore, SG", "sg"),
    ("in-bom-2", "Mumbai 2, IN", "in"),
];

const TYPES: [(&str, &str, u64, u64, u32); 4] = [
    ("g6-nanode-1", "Nanode 1GB", 25_600, 1024, 1),
    ("g6-standard-1", "Linode 2GB", 51_200, 2048, 1),
    ("g6-standard-2", "Linode 4GB", 81_920, 4096, 2),
    ("g6-dedicated-2", "Dedicated 4GB", 81_920, 4096, 2),
];

const PUBLIC_IMAGES: [&str; 4] = ["linode/debian12", "linode/debian11", "linode/ubuntu24.04", "linode/alpine3.20"];

impl State {
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * self.cfg.speed + self.offset
    }

    fn time_string(&self, at: f64) -> String {
        lct_api::linode::api::api_time(self.epoch + Duration::from_secs_f64(at.max(0.0)))
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn kind(&mut self, k: &'static str) -> &mut BTreeMap<u64, Obj> {
        self.kinds.entry(k).or_default()
    }

    fn get(&self, k: &str, id: u64) -> Option<Value> {
        let now = self.now();
        self.kinds.get(k).and_then(|m| m.get(&id)).map(|o| o.at(now))
    }

    /// A visible resource of kind `k` with `id` under `parent` (if the kind has one).
    fn find(&self, k: &str, id: u64, parent: Option<u64>) -> Result<Value, Reply> {
        match self.get(k, id) {
            Some(v) if parent.is_none_or(|p| v["_parent"] == json!(p)) && v["_hidden"] != json!(true) => Ok(v),
            _ => Err(error(404, "Not found", None)),
        }
    }

    fn event(&mut self, action: &str, entity: &Value, entity_type: &str, duration: f64) {
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

    fn region_json(id: &str, label: &str, country: &str) -> Value {
        json!({
            "id": id, "label": label, "country": country, "status": "ok", "site_type": "core",
            "capabilities": ["Linodes", "Block Storage", "NodeBalancers", "Cloud Firewall", "Vlans", "Metadata"],
            "resolvers": { "ipv4": "192.0.2.5,192.0.2.6", "ipv6": "2001:db8::5,2001:db8::6" },
            "placement_group_limits": { "maximum_pgs_per_customer": null, "maximum_linodes_per_pg": 5 },
        })
    }

    fn type_json(t: &(&str, &str, u64, u64, u32)) -> Value {
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

    fn seed_catalog(&mut self) {
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

    fn addresses(&self, n: u64) -> (String, String, String) {
        let public = format!("198.51.{}.{}", 100 + (n / 254) % 100, n % 254 + 1);
        let private = format!("192.168.{}.{}", 128 + (n / 254) % 128, n % 254 + 1);
        let v6 = format!("2001:db8::{n:x}/128");
        (public, private, v6)
    }

    fn new_instance(&mut self, body: &Value) -> Result<Value, Reply> {
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
        let id = self.id();
        let (public_v4, private, v6) = self.addresses(id);
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
            "host_uuid": format!("{:032x}", id), "has_user_data": false, "placement_group": null,
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

    fn image_exists(&self, id: &str) -> bool {
        self.kinds.get("images").is_some_and(|m| m.values().any(|o| o.v["id"] == json!(id)))
    }

    fn instance_action(&mut self, id: u64, action: &str, body: &Value) -> Result<Value, Reply> {
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

    fn new_disk(&mut self, linode: u64, body: &Value) -> Result<Value, Reply> {
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

    fn new_volume(&mut self, body: &Value) -> Result<Value, Reply> {
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

    fn volume_action(&mut self, id: u64, action: &str, body: &Value) -> Result<Value, Reply> {
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

    fn list(&self, k: &str, parent: Option<u64>, query: &HashMap<String, String>, filter: Option<&str>) -> Reply {
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
        let filter = match filter.map(|f| Filter::parse(f, filterable(k))).transpose() {
            Ok(f) => f,
            Err(reason) => return error(400, &reason, Some("X-Filter")),
        };
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

    fn seed_instances(&mut self, count: u64, prefix: &str) {
        for i in 0..count {
            let body = json!({ "label": format!("{prefix}{i}"), "region": "us-east", "type": "g6-nanode-1", "tags": ["seeded"] });
            let _ = self.new_instance(&body);
        }
        self.offset += 3600.0; // let them all be running
    }
}

fn check_label(label: &str) -> Result<(), Reply> {
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

fn check_label_len(label: &str, field: &str) -> Result<(), Reply> {
    if !(3..=64).contains(&label.len()) {
        return Err(error(400, "Length must be 3-64 characters", Some(field)));
    }
    Ok(())
}

fn filterable(kind: &str) -> &'static [&'static str] {
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

/// Which rate limit a request counts against (NOTICE.md).
fn class_of(method: &str, path: &str, paginated: bool) -> &'static str {
    match (method, path) {
        ("POST", "/linode/instances") => "create_instance",
        ("POST", "/volumes") => "create_volume",
        ("GET", "/images") => "list_images",
        ("GET", "/linode/stackscripts") => "list_stackscripts",
        ("GET", _) if paginated => "collection",
        _ => "other",
    }
}

/// The double: a server on 127.0.0.1 with its own runtime thread. Dropping it stops it.
pub struct Double {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Double {
    /// Starts on a free loopback port (or `port`).
    pub fn start(cfg: Config) -> Double {
        Double::start_on(cfg, 0)
    }

    pub fn start_on(cfg: Config, port: u16) -> Double {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the double's port");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("its address");
        let mut state = State {
            cfg,
            started: Instant::now(),
            epoch: SystemTime::now(),
            offset: 0.0,
            next_id: 1000,
            kinds: HashMap::new(),
            windows: HashMap::new(),
            faults: Vec::new(),
            stats: Stats::default(),
            base_url: format!("http://{addr}"),
        };
        state.seed_catalog();
        let state = Arc::new(Mutex::new(state));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
            runtime.block_on(serve(listener, shared, stopped));
        });
        Double { addr, state, stop: Some(stop), thread: Some(thread) }
    }

    /// The base URL for `LINODE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}/v4", self.addr)
    }

    pub fn token(&self) -> String {
        self.state.lock().expect("not poisoned").cfg.token.clone()
    }

    pub fn inject(&self, fault: Fault) {
        self.state.lock().expect("not poisoned").faults.push(fault);
    }

    /// Moves the double's clock forward: pending changes that are due take effect.
    pub fn advance(&self, seconds: f64) {
        self.state.lock().expect("not poisoned").offset += seconds;
    }

    pub fn stats(&self) -> Stats {
        self.state.lock().expect("not poisoned").stats.clone()
    }

    /// Adds `count` running instances labelled `PREFIX0`... without requests.
    pub fn seed_instances(&self, count: u64, prefix: &str) {
        self.state.lock().expect("not poisoned").seed_instances(count, prefix);
    }

    /// Sets a rate limit (requests per window in real seconds) of a class.
    pub fn set_limit(&self, class: &'static str, limit: u32, window: f64) {
        self.state.lock().expect("not poisoned").cfg.limits.insert(class, (limit, window));
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<Mutex<State>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { handle(req, state).await }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(io, service).await;
        });
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn handle(req: Request<Incoming>, state: Arc<Mutex<State>>) -> Result<Response<Full<Bytes>>, Dropped> {
    let method = req.method().to_string();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut s = state.lock().expect("not poisoned");
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let query: HashMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let full_path = uri.path().to_string();

    // The test's own controls and the upload URL need no token.
    if let Some(rest) = full_path.strip_prefix("/_double/") {
        return Ok(respond(control(&mut s, &method, rest, &body)));
    }
    if let Some(id) = full_path.strip_prefix("/_upload/") {
        return Ok(respond(upload(&mut s, id, &body)));
    }
    let Some(path) = full_path.strip_prefix("/v4beta").or_else(|| full_path.strip_prefix("/v4")) else {
        return Ok(respond(error(404, "Not found", None)));
    };
    let path = path.trim_end_matches('/').to_string();
    s.stats.requests += 1;
    if header("Authorization") != Some(format!("Bearer {}", s.cfg.token)) {
        return Ok(respond(error(401, "Invalid Token", None)));
    }

    // Rate limits, per class, in fixed windows of real time.
    let class = class_of(&method, &path, query.contains_key("page") || is_collection(&method, &path));
    *s.stats.by_class.entry(class.to_string()).or_default() += 1;
    let (limit, window) = s.cfg.limits.get(class).copied().unwrap_or((1600, 60.0));
    let now = Instant::now();
    let w = s.windows.entry(class).or_insert(Window { start: now, count: 0, not_before: None, refused_at: None });
    if now.duration_since(w.start).as_secs_f64() >= window {
        w.start = now;
        w.count = 0;
    }
    let early = w.not_before.is_some_and(|t| now < t) && w.refused_at.is_some_and(|r| now > r + IN_FLIGHT);
    let reset_in = (window - now.duration_since(w.start).as_secs_f64()).max(0.0);
    // The reset as a whole second, never before the window really ends.
    let epoch_now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let epoch_reset = (epoch_now + reset_in).ceil() as u64;
    let refused = w.count >= limit;
    let retry_after = reset_in.ceil().max(1.0) as u64;
    if refused {
        w.not_before = Some(now + Duration::from_secs(retry_after));
        w.refused_at = Some(now);
    } else {
        w.count += 1;
    }
    let remaining = limit.saturating_sub(w.count);
    if early {
        s.stats.early_after_429 += 1;
    }
    if refused {
        s.stats.throttled += 1;
        let (status, mut hs, v) = error(429, "Too many requests", None);
        hs.push(("Retry-After", retry_after.to_string()));
        hs.push(("X-RateLimit-Limit", limit.to_string()));
        hs.push(("X-RateLimit-Remaining", "0".into()));
        hs.push(("X-RateLimit-Reset", epoch_reset.to_string()));
        return Ok(respond((status, hs, v)));
    }
    let rate_headers = vec![
        ("X-RateLimit-Limit", limit.to_string()),
        ("X-RateLimit-Remaining", remaining.to_string()),
        ("X-RateLimit-Reset", epoch_reset.to_string()),
    ];

    // Faults before the request is carried out, or after.
    let fault = s
        .faults
        .iter_mut()
        .find(|f| f.count > 0 && f.method.as_ref().is_none_or(|m| *m == method) && path.starts_with(&f.path))
        .map(|f| {
            f.count -= 1;
            (f.kind, f.after)
        });
    if let Some((kind, false)) = fault {
        s.stats.faults_served += 1;
        return fault_response(kind);
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return Ok(respond(error(400, "Invalid JSON", None))),
        }
    };
    let filter = header("X-Filter");
    let (status, mut hs, v) = route(&mut s, &method, &path, &query, filter.as_deref(), &body);
    if let Some((kind, true)) = fault {
        s.stats.faults_served += 1;
        return fault_response(kind);
    }
    hs.extend(rate_headers);
    Ok(respond((status, hs, v)))
}

fn is_collection(method: &str, path: &str) -> bool {
    method == "GET"
        && path.rsplit('/').next().is_some_and(|last| last.parse::<u64>().is_err())
        && !path.ends_with("/rules")
        && !path.starts_with("/images/")
}

fn fault_response(kind: FaultKind) -> Result<Response<Full<Bytes>>, Dropped> {
    let reply = match kind {
        FaultKind::Drop => return Err(Dropped),
        FaultKind::Timeout408 => error(408, "Please try again", None),
        FaultKind::Unavailable503 => error(503, "Service Unavailable", None),
        FaultKind::Maintenance503 => {
            let (s, mut h, v) = error(503, "Currently in maintenance mode.", None);
            h.push(("X-Maintenance-Mode", "true".into()));
            (s, h, v)
        }
        FaultKind::Busy => error(400, "Linode busy.", None),
        FaultKind::Html400 => {
            let html = "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
            return Ok(Response::builder()
                .status(400)
                .header("Content-Type", "text/html")
                .body(Full::new(Bytes::from(html)))
                .expect("a response"));
        }
    };
    Ok(respond(reply))
}

fn respond((status, headers, v): Reply) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status).header("Content-Type", "application/json");
    for (k, val) in headers {
        r = r.header(k, val);
    }
    r.body(Full::new(Bytes::from(v.to_string()))).expect("a response")
}

fn control(s: &mut State, method: &str, rest: &str, body: &[u8]) -> Reply {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (method, rest) {
        ("GET", "stats") => ok(s.stats.to_json()),
        ("POST", "advance") => {
            s.offset += body["seconds"].as_f64().unwrap_or(0.0);
            ok(json!({}))
        }
        ("POST", "faults") => {
            let Some(kind) = body["kind"].as_str().and_then(FaultKind::parse) else {
                return error(400, "kind: 408, 503, maintenance, html400, busy or drop", Some("kind"));
            };
            s.faults.push(Fault {
                method: body["method"].as_str().map(str::to_string),
                path: body["path"].as_str().unwrap_or("/").to_string(),
                kind,
                count: body["count"].as_u64().unwrap_or(1) as u32,
                after: body["after"].as_bool().unwrap_or(false),
            });
            ok(json!({}))
        }
        ("POST", "seed") => {
            s.seed_instances(body["instances"].as_u64().unwrap_or(0), body["prefix"].as_str().unwrap_or("seeded-"));
            ok(json!({}))
        }
        _ => error(404, "Not found", None),
    }
}

fn upload(s: &mut State, id: &str, body: &[u8]) -> Reply {
    let now = s.now();
    let ready = s.cfg.image_ready;
    let Some(obj) = s.kind("images").values_mut().find(|o| o.v["id"] == json!(format!("private/{id}"))) else {
        return error(404, "Not found", None);
    };
    if obj.at(now)["status"] != json!("pending_upload") {
        return error(400, "Image is not awaiting an upload.", None);
    }
    if body.len() < 2 || body[0] != 0x1f || body[1] != 0x8b {
        return error(400, "Upload must be a gzip'd raw disk image.", None);
    }
    let size_mib = (body.len() as u64).div_ceil(1 << 20).max(1);
    obj.schedule(
        now,
        &[(0.0, json!({ "status": "creating", "size": size_mib })), (ready, json!({ "status": "available" }))],
    );
    ok(json!({}))
}

fn id_of(seg: &str) -> Result<u64, Reply> {
    seg.parse::<u64>().map_err(|_| error(404, "Not found", None))
}

/// Generic create for the resources without behaviour of their own.
fn create_plain(s: &mut State, kind: &'static str, parent: Option<u64>, mut v: Value) -> Value {
    let id = s.id();
    let now = s.now();
    let created = s.time_string(now);
    // Which resources carry their times, as the recorded responses show.
    let stamped = !matches!(kind, "nb_configs" | "nb_nodes" | "tags" | "firewall_devices");
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), json!(id));
        if stamped {
            m.entry("created").or_insert(json!(created));
            m.entry("updated").or_insert(json!(created));
        }
        if let Some(p) = parent {
            m.insert("_parent".into(), json!(p));
        }
    }
    s.kind(kind).insert(id, Obj::new(v.clone()));
    public(&v)
}

fn update_plain(
    s: &mut State,
    kind: &'static str,
    id: u64,
    parent: Option<u64>,
    body: &Value,
    fields: &[&str],
) -> Reply {
    if let Err(e) = s.find(kind, id, parent) {
        return e;
    }
    let now = s.now();
    let obj = s.kind(kind).get_mut(&id).expect("found");
    let mut v = obj.at(now);
    for f in fields {
        if let Some(val) = body.get(*f) {
            v[*f] = val.clone();
        }
    }
    obj.v = v.clone();
    obj.timeline.retain(|(t, _)| *t > now);
    ok(public(&obj.at(now)))
}

fn delete_plain(s: &mut State, kind: &'static str, id: u64, parent: Option<u64>) -> Reply {
    if let Err(e) = s.find(kind, id, parent) {
        return e;
    }
    s.kind(kind).remove(&id);
    ok(json!({}))
}

fn route(
    s: &mut State,
    method: &str,
    path: &str,
    query: &HashMap<String, String>,
    filter: Option<&str>,
    body: &Value,
) -> Reply {
    // Image ids arrive with their slash encoded (`/images/private%2F123`).
    let path = path.replace("%2F", "/").replace("%2f", "/");
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result: Result<Reply, Reply> = (|| {
        Ok(match (method, segs.as_slice()) {
            // Instances.
            ("GET", ["linode", "instances"]) => s.list("instances", None, query, filter),
            ("POST", ["linode", "instances"]) => ok(s.new_instance(body)?),
            ("GET", ["linode", "instances", id]) => ok(public(&s.find("instances", id_of(id)?, None)?)),
            ("PUT", ["linode", "instances", id]) => {
                if let Some(l) = body["label"].as_str() {
                    check_label(l)?;
                }
                update_plain(
                    s,
                    "instances",
                    id_of(id)?,
                    None,
                    body,
                    &["label", "tags", "group", "watchdog_enabled", "alerts"],
                )
            }
            ("DELETE", ["linode", "instances", id]) => {
                let id = id_of(id)?;
                let v = s.find("instances", id, None)?;
                s.kind("instances").remove(&id);
                s.kind("disks").retain(|_, d| d.v["_parent"] != json!(id));
                s.kind("configs").retain(|_, d| d.v["_parent"] != json!(id));
                // A deleted instance leaves the Cloud Firewalls it was behind.
                s.kind("firewall_devices")
                    .retain(|_, d| !(d.v["entity"]["type"] == json!("linode") && d.v["entity"]["id"] == json!(id)));
                let now = s.now();
                for vol in s.kind("volumes").values_mut() {
                    if vol.at(now)["linode_id"] == json!(id) {
                        vol.schedule(now, &[(0.0, json!({ "linode_id": null, "linode_label": null }))]);
                    }
                }
                s.event("linode_delete", &v, "linode", 0.0);
                ok(json!({}))
            }
            ("POST", ["linode", "instances", id, action @ ("boot" | "shutdown" | "reboot")]) => {
                ok(s.instance_action(id_of(id)?, action, body)?)
            }
            ("POST", ["linode", "instances", id, "clone"]) => {
                let src = s.find("instances", id_of(id)?, None)?;
                let mut b = json!({
                    "label": body["label"], "region": body["region"].as_str().unwrap_or(src["region"].as_str().unwrap_or_default()),
                    "type": body["type"].as_str().unwrap_or(src["type"].as_str().unwrap_or_default()),
                    "tags": src["tags"], "private_ip": src["ipv4"].as_array().is_some_and(|a| a.len() > 1),
                    "booted": false,
                });
                if b["label"].is_null() {
                    b["label"] = json!(format!("{}-clone", src["label"].as_str().unwrap_or("linode")));
                }
                ok(s.new_instance(&b)?)
            }
            ("GET", ["linode", "instances", id, "ips"]) => {
                let v = s.find("instances", id_of(id)?, None)?;
                let ipv4: Vec<Value> = v["ipv4"].as_array().cloned().unwrap_or_default();
                let addr = |a: &Value, public: bool| {
                    json!({
                        "address": a, "type": "ipv4", "public": public, "prefix": if public { 24 } else { 17 },
                        "gateway": if public { json!("198.51.100.1") } else { Value::Null },
                        "subnet_mask": if public { "255.255.255.0" } else { "255.255.128.0" },
                        "rdns": null, "linode_id": v["id"], "region": v["region"],
                    })
                };
                let (private, public_): (Vec<&Value>, Vec<&Value>) =
                    ipv4.iter().partition(|a| a.as_str().is_some_and(|a| a.starts_with("192.168.")));
                ok(json!({
                    "ipv4": {
                        "public": public_.iter().map(|a| addr(a, true)).collect::<Vec<_>>(),
                        "private": private.iter().map(|a| addr(a, false)).collect::<Vec<_>>(),
                        "shared": [], "reserved": [],
                    },
                    "ipv6": { "slaac": { "address": v["ipv6"].as_str().unwrap_or_default().trim_end_matches("/128"), "prefix": 64, "type": "ipv6", "public": true, "rdns": null, "linode_id": v["id"], "region": v["region"], "gateway": "fe80::1", "subnet_mask": "ffff:ffff:ffff:ffff::" }, "link_local": { "address": format!("fe80::{:x}", v["id"].as_u64().unwrap_or(0)), "prefix": 64, "type": "ipv6", "public": false, "rdns": null, "linode_id": v["id"], "region": v["region"], "gateway": "fe80::1", "subnet_mask": "ffff:ffff:ffff:ffff::" }, "global": [] },
                }))
            }
            ("POST", ["linode", "instances", id, "ips"]) => {
                let id = id_of(id)?;
                let v = s.find("instances", id, None)?;
                if body["public"] != json!(false) || body["type"] != json!("ipv4") {
                    return Err(error(400, "Only private IPv4 addresses can be allocated here.", Some("public")));
                }
                let (_, private, _) = s.addresses(id);
                if v["ipv4"].as_array().is_some_and(|a| a.contains(&json!(private))) {
                    return Err(error(400, "This Linode already has a private IP address.", None));
                }
                let now = s.now();
                let obj = s.kind("instances").get_mut(&id).expect("found");
                let mut ipv4 = obj.at(now)["ipv4"].clone();
                ipv4.as_array_mut().expect("a list").push(json!(private));
                obj.v["ipv4"] = ipv4;
                ok(json!({
                    "address": private, "type": "ipv4", "public": false, "prefix": 17, "gateway": null,
                    "subnet_mask": "255.255.128.0", "rdns": null, "linode_id": id, "region": v["region"],
                }))
            }
            // Disks and configs.
            ("GET", ["linode", "instances", id, "disks"]) => {
                let id = id_of(id)?;
                s.find("instances", id, None)?;
                s.list("disks", Some(id), query, filter)
            }
            ("POST", ["linode", "instances", id, "disks"]) => ok(s.new_disk(id_of(id)?, body)?),
            ("GET", ["linode", "instances", id, "disks", d]) => {
                ok(public(&s.find("disks", id_of(d)?, Some(id_of(id)?))?))
            }
            ("DELETE", ["linode", "instances", id, "disks", d]) => {
                delete_plain(s, "disks", id_of(d)?, Some(id_of(id)?))
            }
            ("GET", ["linode", "instances", id, "configs"]) => {
                let id = id_of(id)?;
                s.find("instances", id, None)?;
                s.list("configs", Some(id), query, filter)
            }
            ("POST", ["linode", "instances", id, "configs"]) => {
                let id = id_of(id)?;
                s.find("instances", id, None)?;
                let label = body["label"].as_str().ok_or_else(|| error(400, "label is required", Some("label")))?;
                check_label_len(label, "label")?;
                let v = json!({
                    "label": label, "kernel": body["kernel"].as_str().unwrap_or("linode/grub2"),
                    "comments": body["comments"].as_str().unwrap_or(""), "memory_limit": 0, "run_level": "default",
                    "virt_mode": "paravirt", "root_device": body["root_device"].as_str().unwrap_or("/dev/sda"),
                    "devices": body.get("devices").cloned().unwrap_or(json!({})),
                    "helpers": { "updatedb_disabled": true, "distro": true, "modules_dep": true, "network": true, "devtmpfs_automount": true },
                    "interfaces": body.get("interfaces").cloned().unwrap_or(json!([])),
                });
                ok(create_plain(s, "configs", Some(id), v))
            }
            ("GET", ["linode", "instances", id, "configs", c]) => {
                ok(public(&s.find("configs", id_of(c)?, Some(id_of(id)?))?))
            }
            ("DELETE", ["linode", "instances", id, "configs", c]) => {
                delete_plain(s, "configs", id_of(c)?, Some(id_of(id)?))
            }
            // Catalogs.
            ("GET", ["regions"]) => {
                let all: Vec<Value> = REGIONS.iter().map(|r| State::region_json(r.0, r.1, r.2)).collect();
                list_static(&all, "regions", query, filter)
            }
            ("GET", ["regions", id]) => {
                let r = REGIONS.iter().find(|r| r.0 == *id).ok_or_else(|| error(404, "Not found", None))?;
                ok(State::region_json(r.0, r.1, r.2))
            }
            ("GET", ["linode", "types"]) => {
                let all: Vec<Value> = TYPES.iter().map(State::type_json).collect();
                list_static(&all, "types", query, filter)
            }
            ("GET", ["linode", "types", id]) => {
                ok(State::type_json(TYPES.iter().find(|t| t.0 == *id).ok_or_else(|| error(404, "Not found", None))?))
            }
            // Images.
            ("GET", ["images"]) => s.list("images", None, query, filter),
            ("POST", ["images"]) => {
                let disk =
                    body["disk_id"].as_u64().ok_or_else(|| error(400, "disk_id is required", Some("disk_id")))?;
                let d = s.get("disks", disk).ok_or_else(|| error(400, "Disk not found.", Some("disk_id")))?;
                let label = body["label"].as_str().unwrap_or("image").to_string();
                check_label_len(&label, "label")?;
                let id = s.id();
                let now = s.now();
                let v = image_json(s, id, &label, body, "creating", d["size"].as_u64().unwrap_or(0));
                let mut obj = Obj::new(v.clone());
                obj.schedule(now, &[(s.cfg.image_ready, json!({ "status": "available" }))]);
                s.kind("images").insert(id, obj);
                let linode = d["_parent"].as_u64().unwrap_or(0);
                let label = s.get("instances", linode).map(|i| i["label"].clone()).unwrap_or_default();
                s.event("disk_imagize", &json!({ "id": linode, "label": label }), "linode", s.cfg.image_ready);
                ok(v)
            }
            ("POST", ["images", "upload"]) => {
                let label =
                    body["label"].as_str().ok_or_else(|| error(400, "label is required", Some("label")))?.to_string();
                check_label_len(&label, "label")?;
                let region = body["region"].as_str().ok_or_else(|| error(400, "region is required", Some("region")))?;
                if !REGIONS.iter().any(|r| r.0 == region) {
                    return Err(error(400, "Region does not exist.", Some("region")));
                }
                let id = s.id();
                let v = image_json(s, id, &label, body, "pending_upload", 0);
                s.kind("images").insert(id, Obj::new(v.clone()));
                ok(json!({ "upload_to": format!("{}/_upload/{id}", s.base_url), "image": v }))
            }
            ("GET", ["images", vendor, name]) => {
                let want = json!(format!("{vendor}/{name}"));
                let now = s.now();
                let v = s.kinds.get("images").and_then(|m| m.values().map(|o| o.at(now)).find(|v| v["id"] == want));
                ok(public(&v.ok_or_else(|| error(404, "Not found", None))?))
            }
            ("DELETE", ["images", "private", n]) => {
                let want = json!(format!("private/{n}"));
                let key =
                    s.kinds.get("images").and_then(|m| m.iter().find(|(_, o)| o.v["id"] == want).map(|(k, _)| *k));
                let key = key.ok_or_else(|| error(404, "Not found", None))?;
                s.kind("images").remove(&key);
                ok(json!({}))
            }
            // Volumes.
            ("GET", ["volumes"]) => s.list("volumes", None, query, filter),
            ("POST", ["volumes"]) => ok(s.new_volume(body)?),
            ("GET", ["volumes", id]) => ok(public(&s.find("volumes", id_of(id)?, None)?)),
            ("PUT", ["volumes", id]) => update_plain(s, "volumes", id_of(id)?, None, body, &["label", "tags"]),
            ("DELETE", ["volumes", id]) => {
                let id = id_of(id)?;
                let v = s.find("volumes", id, None)?;
                if !v["linode_id"].is_null() {
                    return Err(error(400, "Volume must be detached before it can be deleted.", None));
                }
                s.kind("volumes").remove(&id);
                ok(json!({}))
            }
            ("POST", ["volumes", id, action @ ("attach" | "detach")]) => {
                ok(s.volume_action(id_of(id)?, action, body)?)
            }
            // Domains and records.
            ("GET", ["domains"]) => s.list("domains", None, query, filter),
            ("POST", ["domains"]) => {
                let domain = body["domain"].as_str().ok_or_else(|| error(400, "domain is required", Some("domain")))?;
                if !domain.contains('.') || domain.len() > 253 {
                    return Err(error(400, "Domain is not valid.", Some("domain")));
                }
                let dtype = body["type"].as_str().unwrap_or("master");
                if dtype == "master" && body["soa_email"].as_str().is_none() {
                    return Err(error(400, "soa_email is required for master domains", Some("soa_email")));
                }
                let v = json!({
                    "domain": domain, "type": dtype, "status": "active", "soa_email": body["soa_email"].as_str().unwrap_or(""),
                    "description": "", "tags": body["tags"].as_array().cloned().unwrap_or_default(), "group": "",
                    "master_ips": body["master_ips"].as_array().cloned().unwrap_or_default(), "axfr_ips": [],
                    "ttl_sec": 0, "refresh_sec": 0, "retry_sec": 0, "expire_sec": 0,
                });
                ok(create_plain(s, "domains", None, v))
            }
            ("GET", ["domains", id]) => ok(public(&s.find("domains", id_of(id)?, None)?)),
            ("PUT", ["domains", id]) => update_plain(
                s,
                "domains",
                id_of(id)?,
                None,
                body,
                &["soa_email", "tags", "ttl_sec", "description", "status"],
            ),
            ("DELETE", ["domains", id]) => {
                let id = id_of(id)?;
                s.kind("records").retain(|_, r| r.v["_parent"] != json!(id));
                delete_plain(s, "domains", id, None)
            }
            ("GET", ["domains", id, "records"]) => {
                let id = id_of(id)?;
                s.find("domains", id, None)?;
                s.list("records", Some(id), query, filter)
            }
            ("POST", ["domains", id, "records"]) => {
                let id = id_of(id)?;
                s.find("domains", id, None)?;
                let rtype = body["type"].as_str().ok_or_else(|| error(400, "type is required", Some("type")))?;
                if !["A", "AAAA", "NS", "MX", "CNAME", "TXT", "SRV", "PTR", "CAA"].contains(&rtype) {
                    return Err(error(400, "Invalid record type", Some("type")));
                }
                let target = body["target"].as_str().unwrap_or_default();
                if rtype == "A" && target.parse::<std::net::Ipv4Addr>().is_err() {
                    return Err(error(400, "You must provide a valid IPv4 address.", Some("target")));
                }
                if rtype == "AAAA" && target.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(error(400, "You must provide a valid IPv6 address.", Some("target")));
                }
                let v = json!({
                    "type": rtype, "name": body["name"].as_str().unwrap_or(""), "target": target,
                    "priority": body["priority"].as_u64().unwrap_or(0), "weight": body["weight"].as_u64().unwrap_or(0),
                    "port": body["port"].as_u64().unwrap_or(0), "service": body["service"].clone(),
                    "protocol": body["protocol"].clone(), "ttl_sec": body["ttl_sec"].as_u64().unwrap_or(0), "tag": null,
                });
                ok(create_plain(s, "records", Some(id), v))
            }
            ("GET", ["domains", id, "records", r]) => ok(public(&s.find("records", id_of(r)?, Some(id_of(id)?))?)),
            ("PUT", ["domains", id, "records", r]) => update_plain(
                s,
                "records",
                id_of(r)?,
                Some(id_of(id)?),
                body,
                &["name", "target", "ttl_sec", "priority", "weight", "port"],
            ),
            ("DELETE", ["domains", id, "records", r]) => delete_plain(s, "records", id_of(r)?, Some(id_of(id)?)),
            // Cloud Firewalls.
            ("GET", ["networking", "firewalls"]) => s.list("firewalls", None, query, filter),
            ("POST", ["networking", "firewalls"]) => {
                let label = body["label"].as_str().ok_or_else(|| error(400, "label is required", Some("label")))?;
                check_label(label)?;
                let rules = firewall_rules(&body["rules"])?;
                let v = json!({ "label": label, "status": "enabled", "rules": rules, "tags": body["tags"].as_array().cloned().unwrap_or_default(), "entities": [] });
                let made = create_plain(s, "firewalls", None, v);
                let fid = made["id"].as_u64().expect("an id");
                for l in body["devices"]["linodes"].as_array().cloned().unwrap_or_default() {
                    let inst = s.find("instances", l.as_u64().unwrap_or(0), None)?;
                    let d = json!({ "entity": { "id": l, "type": "linode", "label": inst["label"], "url": format!("/v4/linode/instances/{l}") } });
                    create_plain(s, "firewall_devices", Some(fid), d);
                }
                ok(made)
            }
            ("GET", ["networking", "firewalls", id]) => ok(public(&s.find("firewalls", id_of(id)?, None)?)),
            ("PUT", ["networking", "firewalls", id]) => {
                update_plain(s, "firewalls", id_of(id)?, None, body, &["label", "status", "tags"])
            }
            ("DELETE", ["networking", "firewalls", id]) => {
                let id = id_of(id)?;
                s.kind("firewall_devices").retain(|_, d| d.v["_parent"] != json!(id));
                delete_plain(s, "firewalls", id, None)
            }
            ("GET", ["networking", "firewalls", id, "rules"]) => {
                ok(s.find("firewalls", id_of(id)?, None)?["rules"].clone())
            }
            ("PUT", ["networking", "firewalls", id, "rules"]) => {
                let id = id_of(id)?;
                s.find("firewalls", id, None)?;
                let rules = firewall_rules(body)?;
                let now = s.now();
                let obj = s.kind("firewalls").get_mut(&id).expect("found");
                obj.v = obj.at(now);
                obj.v["rules"] = rules.clone();
                ok(rules)
            }
            ("GET", ["networking", "firewalls", id, "devices"]) => {
                let id = id_of(id)?;
                s.find("firewalls", id, None)?;
                s.list("firewall_devices", Some(id), query, filter)
            }
            ("POST", ["networking", "firewalls", id, "devices"]) => {
                let fid = id_of(id)?;
                s.find("firewalls", fid, None)?;
                if body["type"] != json!("linode") && body["type"] != json!("nodebalancer") {
                    return Err(error(400, "type must be linode or nodebalancer", Some("type")));
                }
                let eid = body["id"].as_u64().ok_or_else(|| error(400, "id is required", Some("id")))?;
                let kind = if body["type"] == json!("linode") { "instances" } else { "nodebalancers" };
                let e = s.find(kind, eid, None).map_err(|_| error(400, "Entity not found", Some("id")))?;
                let url = if kind == "instances" {
                    format!("/v4/linode/instances/{eid}")
                } else {
                    format!("/v4/nodebalancers/{eid}")
                };
                let d = json!({ "entity": { "id": eid, "type": body["type"], "label": e["label"], "url": url } });
                ok(create_plain(s, "firewall_devices", Some(fid), d))
            }
            ("GET", ["networking", "firewalls", id, "devices", d]) => {
                ok(public(&s.find("firewall_devices", id_of(d)?, Some(id_of(id)?))?))
            }
            ("DELETE", ["networking", "firewalls", id, "devices", d]) => {
                delete_plain(s, "firewall_devices", id_of(d)?, Some(id_of(id)?))
            }
            // Events.
            ("GET", ["account", "events"]) => {
                let mut reply = s.list("events", None, query, filter);
                // Newest first, as the API lists them.
                if let Some(data) = reply.2["data"].as_array_mut() {
                    data.sort_by_key(|e| std::cmp::Reverse(e["id"].as_u64().unwrap_or(0)));
                }
                reply
            }
            ("GET", ["account", "events", id]) => ok(public(&s.find("events", id_of(id)?, None)?)),
            // Tags.
            ("GET", ["tags"]) => {
                let mut labels: Vec<String> = Vec::new();
                let now = s.now();
                for k in ["instances", "volumes", "domains", "nodebalancers", "tags"] {
                    for o in s.kinds.get(k).map(|m| m.values().collect::<Vec<_>>()).unwrap_or_default() {
                        let v = o.at(now);
                        if k == "tags" {
                            labels.push(v["label"].as_str().unwrap_or_default().to_string());
                        }
                        labels.extend(
                            v["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)),
                        );
                    }
                }
                labels.sort();
                labels.dedup();
                let all: Vec<Value> = labels.into_iter().map(|l| json!({ "label": l })).collect();
                list_static(&all, "tags", query, filter)
            }
            ("POST", ["tags"]) => {
                let label = body["label"].as_str().ok_or_else(|| error(400, "label is required", Some("label")))?;
                if !(3..=50).contains(&label.len()) {
                    return Err(error(400, "Length must be 3-50 characters", Some("label")));
                }
                create_plain(s, "tags", None, json!({ "label": label }));
                ok(json!({ "label": label }))
            }
            ("DELETE", ["tags", label]) => {
                let now = s.now();
                let key = s
                    .kinds
                    .get("tags")
                    .and_then(|m| m.iter().find(|(_, o)| o.at(now)["label"] == json!(label)).map(|(k, _)| *k));
                let key = key.ok_or_else(|| error(404, "Not found", None))?;
                s.kind("tags").remove(&key);
                ok(json!({}))
            }
            // StackScripts.
            ("GET", ["linode", "stackscripts"]) => s.list("stackscripts", None, query, filter),
            ("POST", ["linode", "stackscripts"]) => {
                let label = body["label"].as_str().ok_or_else(|| error(400, "label is required", Some("label")))?;
                check_label_len(label, "label")?;
                let script = body["script"].as_str().ok_or_else(|| error(400, "script is required", Some("script")))?;
                if !script.starts_with("#!") {
                    return Err(error(400, "Script must begin with a shebang (#!).", Some("script")));
                }
                let images = body["images"].as_array().cloned().unwrap_or_default();
                if images.is_empty() {
                    return Err(error(400, "images is required", Some("images")));
                }
                let v = json!({
                    "label": label, "script": script, "images": images, "description": body["description"].as_str().unwrap_or(""),
                    "is_public": body["is_public"].as_bool().unwrap_or(false), "rev_note": body["rev_note"].as_str().unwrap_or(""),
                    "mine": true, "username": "lct-test", "user_gravatar_id": "", "deployments_total": 0, "deployments_active": 0,
                    "user_defined_fields": [],
                });
                ok(create_plain(s, "stackscripts", None, v))
            }
            ("GET", ["linode", "stackscripts", id]) => ok(public(&s.find("stackscripts", id_of(id)?, None)?)),
            ("PUT", ["linode", "stackscripts", id]) => update_plain(
                s,
                "stackscripts",
                id_of(id)?,
                None,
                body,
                &["label", "script", "description", "images", "rev_note"],
            ),
            ("DELETE", ["linode", "stackscripts", id]) => delete_plain(s, "stackscripts", id_of(id)?, None),
            // NodeBalancers, their configs and nodes.
            ("GET", ["nodebalancers"]) => s.list("nodebalancers", None, query, filter),
            ("POST", ["nodebalancers"]) => {
                let region = body["region"].as_str().ok_or_else(|| error(400, "region is required", Some("region")))?;
                if !REGIONS.iter().any(|r| r.0 == region) {
                    return Err(error(400, "Region does not exist.", Some("region")));
                }
                if let Some(l) = body["label"].as_str() {
                    check_label(l)?;
                }
                let n = s.next_id + 1;
                let v = json!({
                    "label": body["label"].as_str().map_or(format!("nodebalancer{n}"), str::to_string), "region": region,
                    "hostname": format!("nb-{n}.newark.nodebalancer.example"), "ipv4": format!("203.0.113.{}", n % 250 + 1),
                    "ipv6": format!("2001:db8:1::{n:x}"), "client_conn_throttle": body["client_conn_throttle"].as_u64().unwrap_or(0),
                    "tags": body["tags"].as_array().cloned().unwrap_or_default(), "transfer": { "in": null, "out": null, "total": null },
                });
                ok(create_plain(s, "nodebalancers", None, v))
            }
            ("GET", ["nodebalancers", id]) => ok(public(&s.find("nodebalancers", id_of(id)?, None)?)),
            ("PUT", ["nodebalancers", id]) => {
                update_plain(s, "nodebalancers", id_of(id)?, None, body, &["label", "client_conn_throttle", "tags"])
            }
            ("DELETE", ["nodebalancers", id]) => {
                let id = id_of(id)?;
                s.kind("nb_configs").retain(|_, c| c.v["_parent"] != json!(id));
                delete_plain(s, "nodebalancers", id, None)
            }
            ("GET", ["nodebalancers", id, "configs"]) => {
                let id = id_of(id)?;
                s.find("nodebalancers", id, None)?;
                s.list("nb_configs", Some(id), query, filter)
            }
            ("POST", ["nodebalancers", id, "configs"]) => {
                let nb = id_of(id)?;
                s.find("nodebalancers", nb, None)?;
                let port = body["port"].as_u64().unwrap_or(80);
                if !(1..=65_535).contains(&port) {
                    return Err(error(400, "Port must be between 1 and 65535", Some("port")));
                }
                let protocol = body["protocol"].as_str().unwrap_or("http");
                if !["http", "https", "tcp", "udp"].contains(&protocol) {
                    return Err(error(400, "Invalid protocol", Some("protocol")));
                }
                let v = json!({
                    "port": port, "protocol": protocol, "algorithm": body["algorithm"].as_str().unwrap_or("roundrobin"),
                    "stickiness": body["stickiness"].as_str().unwrap_or("none"), "check": body["check"].as_str().unwrap_or("none"),
                    "check_interval": 0, "check_timeout": 30, "check_attempts": 3, "check_path": "", "check_body": "",
                    "check_passive": true, "proxy_protocol": "none", "cipher_suite": "recommended", "ssl_commonname": "",
                    "ssl_fingerprint": "", "ssl_cert": null, "ssl_key": null, "nodebalancer_id": nb,
                    "nodes_status": { "up": 0, "down": 0 }, "udp_check_port": 80, "udp_session_timeout": 16,
                });
                ok(create_plain(s, "nb_configs", Some(nb), v))
            }
            ("GET", ["nodebalancers", id, "configs", c]) => {
                ok(public(&s.find("nb_configs", id_of(c)?, Some(id_of(id)?))?))
            }
            ("DELETE", ["nodebalancers", id, "configs", c]) => {
                let c = id_of(c)?;
                s.kind("nb_nodes").retain(|_, n| n.v["_parent"] != json!(c));
                delete_plain(s, "nb_configs", c, Some(id_of(id)?))
            }
            ("GET", ["nodebalancers", id, "configs", c, "nodes"]) => {
                let c = id_of(c)?;
                s.find("nb_configs", c, Some(id_of(id)?))?;
                s.list("nb_nodes", Some(c), query, filter)
            }
            ("POST", ["nodebalancers", id, "configs", c, "nodes"]) => {
                let (nb, c) = (id_of(id)?, id_of(c)?);
                s.find("nb_configs", c, Some(nb))?;
                let label = body["label"].as_str().ok_or_else(|| error(400, "label is required", Some("label")))?;
                check_label_len(label, "label")?;
                let address =
                    body["address"].as_str().ok_or_else(|| error(400, "address is required", Some("address")))?;
                let ok_address = address.rsplit_once(':').is_some_and(|(ip, port)| {
                    ip.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_private()) && port.parse::<u16>().is_ok()
                });
                if !ok_address {
                    return Err(error(
                        400,
                        "Must be a private IPv4 address with a port (192.168.x.x:80)",
                        Some("address"),
                    ));
                }
                let v = json!({
                    "label": label, "address": address, "status": "Unknown", "weight": body["weight"].as_u64().unwrap_or(100),
                    "mode": body["mode"].as_str().unwrap_or("accept"), "config_id": c, "nodebalancer_id": nb,
                });
                ok(create_plain(s, "nb_nodes", Some(c), v))
            }
            ("GET", ["nodebalancers", _, "configs", c, "nodes", n]) => {
                ok(public(&s.find("nb_nodes", id_of(n)?, Some(id_of(c)?))?))
            }
            ("DELETE", ["nodebalancers", _, "configs", c, "nodes", n]) => {
                delete_plain(s, "nb_nodes", id_of(n)?, Some(id_of(c)?))
            }
            _ => error(404, "Not found", None),
        })
    })();
    result.unwrap_or_else(|e| e)
}

fn image_json(s: &State, id: u64, label: &str, body: &Value, status: &str, size: u64) -> Value {
    let now = s.time_string(s.now());
    json!({
        "id": format!("private/{id}"), "label": label, "description": body["description"].as_str().unwrap_or(""),
        "status": status, "type": "manual", "is_public": false, "deprecated": false, "size": size, "vendor": null,
        "created": now, "updated": now, "created_by": "lct-test", "expiry": null, "eol": null,
        "capabilities": [], "tags": body["tags"].as_array().cloned().unwrap_or_default(), "total_size": size, "regions": [],
    })
}

/// A ruleset as the API checks it: at most 25 rules, known actions and protocols.
fn firewall_rules(rules: &Value) -> Result<Value, Reply> {
    let mut out = json!({
        "inbound": rules["inbound"].as_array().cloned().unwrap_or_default(),
        "outbound": rules["outbound"].as_array().cloned().unwrap_or_default(),
        "inbound_policy": rules["inbound_policy"].as_str().unwrap_or("ACCEPT"),
        "outbound_policy": rules["outbound_policy"].as_str().unwrap_or("ACCEPT"),
    });
    let count = out["inbound"].as_array().map_or(0, Vec::len) + out["outbound"].as_array().map_or(0, Vec::len);
    if count > 25 {
        return Err(error(400, "A firewall may have at most 25 rules.", Some("rules")));
    }
    for dir in ["inbound", "outbound"] {
        for (i, r) in out[dir].as_array().cloned().unwrap_or_default().iter().enumerate() {
            let field = |f: &str| format!("rules.{dir}[{i}].{f}");
            if !matches!(r["action"].as_str(), Some("ACCEPT" | "DROP")) {
                return Err(error(400, "Must be ACCEPT or DROP", Some(&field("action"))));
            }
            if !matches!(r["protocol"].as_str(), Some("TCP" | "UDP" | "ICMP" | "IPENCAP")) {
                return Err(error(400, "Must be TCP, UDP, ICMP or IPENCAP", Some(&field("protocol"))));
            }
        }
    }
    for p in ["inbound_policy", "outbound_policy"] {
        if !matches!(out[p].as_str(), Some("ACCEPT" | "DROP")) {
            return Err(error(400, "Must be ACCEPT or DROP", Some(&format!("rules.{p}"))));
        }
    }
    out["version"] = json!(1);
    out["fingerprint"] = json!("0011223344");
    Ok(out)
}

fn list_static(all: &[Value], kind: &str, query: &HashMap<String, String>, filter: Option<&str>) -> Reply {
    let mut tmp = State {
        cfg: Config::fast(),
        started: Instant::now(),
        epoch: SystemTime::now(),
        offset: 0.0,
        next_id: 0,
        kinds: HashMap::new(),
        windows: HashMap::new(),
        faults: Vec::new(),
        stats: Stats::default(),
        base_url: String::new(),
    };
    let key: &'static str = match kind {
        "regions" => "regions",
        "types" => "types",
        _ => "tags",
    };
    let m: BTreeMap<u64, Obj> = all.iter().enumerate().map(|(i, v)| (i as u64, Obj::new(v.clone()))).collect();
    tmp.kinds.insert(key, m);
    tmp.list(key, None, query, filter)
}
