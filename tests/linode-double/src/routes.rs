//! The API's paths: what each method and path does to the state.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::crud::{create_plain, delete_plain, id_of, update_plain};
use crate::state::*;
use crate::{Fault, FaultKind};
use crate::{disks, networking};

pub(crate) fn control(s: &mut State, method: &str, rest: &str, body: &[u8]) -> Reply {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match (method, rest) {
        ("GET", "stats") => ok(s.stats.to_json()),
        ("GET", "requests") => ok(json!({ "data": s.stats.log.iter().map(logged).collect::<Vec<_>>() })),
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
            let (count, prefix) =
                (body["instances"].as_u64().unwrap_or(0), body["prefix"].as_str().unwrap_or("seeded-"));
            match body["lct_clusters"].as_u64().filter(|c| *c > 0) {
                Some(clusters) => seed_lct_nodes(s, count, prefix, clusters),
                None => s.seed_instances(count, prefix),
            }
            ok(json!({}))
        }
        _ => error(404, "Not found", None),
    }
}

/// A logged request as the `requests` control shows it: method, path and body, without what
/// grants access to a node (a root password, the first boot's document with its host key,
/// authorized keys): the controls need no token.
fn logged((method, path, body): &(String, String, Value)) -> Value {
    let mut body = body.clone();
    if let Some(fields) = body.as_object_mut() {
        for secret in ["root_pass", "metadata", "authorized_keys", "authorized_users"] {
            if fields.contains_key(secret) {
                fields.insert(secret.to_string(), json!("(redacted)"));
            }
        }
    }
    json!({ "method": method, "path": path, "body": body })
}

/// `count` running instances tagged as lct-api tags its nodes, spread over clusters
/// `c0`..: a provider holding that many of lct's nodes (the state benchmark's query).
fn seed_lct_nodes(s: &mut State, count: u64, prefix: &str, clusters: u64) {
    for i in 0..count {
        let tags = json!(["lct", format!("lct-cluster:c{}", i % clusters), "lct-group:node"]);
        let body = json!({ "label": format!("{prefix}{i}"), "region": "us-east", "type": "g6-nanode-1", "tags": tags });
        let _ = s.new_instance(&body);
    }
    s.offset += 3600.0; // let them all be running
}

pub(crate) fn upload(s: &mut State, id: &str, body: &[u8]) -> Reply {
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
    let image_id = obj.v["id"].as_str().unwrap_or_default().to_string();
    obj.schedule(
        now,
        &[(0.0, json!({ "status": "creating", "size": size_mib })), (ready, json!({ "status": "available" }))],
    );
    s.uploads.insert(image_id, body.to_vec());
    ok(json!({}))
}
pub(crate) fn route(
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
            ("POST", ["linode", "instances"]) => {
                let made = s.new_instance(body)?;
                if let (Some(id), Some(image)) = (made["id"].as_u64(), body["image"].as_str()) {
                    disks::image_profile(s, id, image);
                }
                ok(made)
            }
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
                s.remove_children("disks", id);
                s.remove_children("configs", id);
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
                disks::check_boot(s, id_of(id)?, body)?;
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
                let is_private = |a: &Value| {
                    a.as_str().and_then(|a| a.parse::<std::net::Ipv4Addr>().ok()).is_some_and(|a| a.is_private())
                };
                if v["ipv4"].as_array().is_some_and(|a| a.iter().any(is_private)) {
                    return Err(error(400, "This Linode already has a private IP address.", None));
                }
                let private = s.private_in(v["region"].as_str().unwrap_or_default());
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
            ("POST", ["linode", "instances", id, "disks"]) => {
                disks::check_new_disk(s, body)?;
                let made = s.new_disk(id_of(id)?, body)?;
                // Which disks come from an image (a backing boots those as a machine).
                if let (Some(d), Some(image)) = (made["id"].as_u64(), body["image"].as_str())
                    && let Some(obj) = s.kind("disks").get_mut(&d)
                {
                    obj.v["_image"] = json!(image);
                }
                ok(made)
            }
            ("POST", ["linode", "instances", id, "disks", d, "resize"]) => {
                disks::resize_disk(s, id_of(id)?, id_of(d)?, body)?
            }
            ("PUT", ["linode", "instances", id, "configs", c]) => disks::update_config(s, id_of(id)?, id_of(c)?, body)?,
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
                let devices = disks::checked_devices(s, id, body.get("devices").unwrap_or(&json!({})))?;
                let kernel = body["kernel"].as_str().unwrap_or("linode/grub2");
                let mut v =
                    disks::profile_json(label, kernel, body["root_device"].as_str().unwrap_or("/dev/sda"), devices);
                v["comments"] = json!(body["comments"].as_str().unwrap_or(""));
                v["interfaces"] = body.get("interfaces").cloned().filter(|i| !i.is_null()).unwrap_or(json!([]));
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
                page(&all, "regions", query, filter)
            }
            ("GET", ["regions", id]) => {
                let r = REGIONS.iter().find(|r| r.0 == *id).ok_or_else(|| error(404, "Not found", None))?;
                ok(State::region_json(r.0, r.1, r.2))
            }
            ("GET", ["linode", "types"]) => {
                let all: Vec<Value> = TYPES.iter().map(State::type_json).collect();
                page(&all, "types", query, filter)
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
                s.remove_children("records", id);
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
                page(&all, "tags", query, filter)
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
            (_, ["networking", ..] | ["nodebalancers", ..]) => {
                networking::route(s, method, segs.as_slice(), query, filter, body)?
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
