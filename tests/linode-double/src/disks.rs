//! Disks and configuration profiles beyond plain records, as the API behaves: a disk from an
//! image (which must exist, with a root password), a raw disk, a resize within the type's
//! disk; a profile whose devices must be this instance's disks; the profile an image deploy
//! makes; a boot of a named profile.

use serde_json::{Value, json};

use crate::crud::{create_plain, update_plain};
use crate::state::*;

const FILESYSTEMS: [&str; 5] = ["raw", "swap", "ext3", "ext4", "initrd"];

/// Checks a disk's create body before the disk is made (`State::new_disk` checks the size).
pub(crate) fn check_new_disk(s: &State, body: &Value) -> Result<(), Reply> {
    if let Some(fs) = body.get("filesystem").filter(|v| !v.is_null())
        && !fs.as_str().is_some_and(|f| FILESYSTEMS.contains(&f))
    {
        return Err(error(400, "filesystem must be one of raw, swap, ext3, ext4, initrd", Some("filesystem")));
    }
    if let Some(image) = body.get("image").filter(|v| !v.is_null()) {
        let image = image.as_str().ok_or_else(|| error(400, "Must be a string", Some("image")))?;
        if !s.image_exists(image) {
            return Err(error(400, "Image not found.", Some("image")));
        }
        if body["root_pass"].as_str().is_none_or(|p| p.len() < 11) {
            return Err(error(400, "root_pass is required when deploying an image", Some("root_pass")));
        }
    }
    Ok(())
}

/// The profile an image deploy makes: its disk at sda, its swap at sdb.
pub(crate) fn image_profile(s: &mut State, linode: u64, image: &str) {
    let now = s.now();
    let mut disks: Vec<(u64, String)> = s
        .kinds
        .get("disks")
        .map(|m| {
            m.iter()
                .map(|(id, o)| (*id, o.at(now)))
                .filter(|(_, d)| d["_parent"] == json!(linode))
                .map(|(id, d)| (id, d["filesystem"].as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    disks.sort();
    let root = disks.iter().find(|d| d.1 != "swap").map(|d| d.0);
    let swap = disks.iter().find(|d| d.1 == "swap").map(|d| d.0);
    let name = image.rsplit('/').next().unwrap_or(image);
    let v = profile_json(&format!("My {name} Disk Profile"), "linode/grub2", "/dev/sda", devices_json(root, swap));
    create_plain(s, "configs", Some(linode), v);
}

fn devices_json(sda: Option<u64>, sdb: Option<u64>) -> Value {
    let dev = |d: Option<u64>| d.map_or(Value::Null, |id| json!({ "disk_id": id, "volume_id": null }));
    json!({ "sda": dev(sda), "sdb": dev(sdb), "sdc": null, "sdd": null, "sde": null, "sdf": null, "sdg": null, "sdh": null })
}

pub(crate) fn profile_json(label: &str, kernel: &str, root: &str, devices: Value) -> Value {
    json!({
        "label": label, "kernel": kernel, "comments": "", "memory_limit": 0, "run_level": "default",
        "virt_mode": "paravirt", "root_device": root, "devices": devices,
        "helpers": { "updatedb_disabled": true, "distro": true, "modules_dep": true, "network": true, "devtmpfs_automount": true },
        "interfaces": [],
    })
}

/// A profile's devices as the API keeps them (every slot, `disk_id` and `volume_id`), each
/// disk one of this instance's.
pub(crate) fn checked_devices(s: &State, linode: u64, devices: &Value) -> Result<Value, Reply> {
    let Some(map) = devices.as_object() else { return Err(error(400, "Must be an object", Some("devices"))) };
    let mut out = devices_json(None, None);
    for (slot, dev) in map {
        if out.get(slot).is_none() {
            return Err(error(400, &format!("{slot} is not a device slot"), Some("devices")));
        }
        if dev.is_null() {
            continue;
        }
        let disk = dev["disk_id"].as_u64().ok_or_else(|| error(400, "disk_id is required", Some("devices")))?;
        let d = s.get("disks", disk).ok_or_else(|| error(400, "Disk not found.", Some("devices")))?;
        if d["_parent"] != json!(linode) {
            return Err(error(400, "Disk is not on this Linode.", Some("devices")));
        }
        out[slot.as_str()] = json!({ "disk_id": disk, "volume_id": null });
    }
    Ok(out)
}

/// `PUT .../configs/ID`.
pub(crate) fn update_config(s: &mut State, linode: u64, config: u64, body: &Value) -> Result<Reply, Reply> {
    s.find("instances", linode, None)?;
    s.find("configs", config, Some(linode))?;
    let mut body = body.clone();
    if let Some(devices) = body.get("devices").cloned() {
        body["devices"] = checked_devices(s, linode, &devices)?;
    }
    if let Some(root) = body.get("root_device").filter(|v| !v.is_null())
        && !root.as_str().is_some_and(|r| r.starts_with("/dev/") && r.len() <= 50)
    {
        return Err(error(400, "root_device must be a device path", Some("root_device")));
    }
    Ok(update_plain(
        s,
        "configs",
        config,
        Some(linode),
        &body,
        &["label", "kernel", "comments", "root_device", "devices"],
    ))
}

/// `POST .../disks/ID/resize`: within the type's disk; the disk is not ready meanwhile.
pub(crate) fn resize_disk(s: &mut State, linode: u64, disk: u64, body: &Value) -> Result<Reply, Reply> {
    let inst = s.find("instances", linode, None)?;
    let d = s.find("disks", disk, Some(linode))?;
    let size = body["size"].as_u64().filter(|n| *n > 0).ok_or_else(|| error(400, "size is required", Some("size")))?;
    let now = s.now();
    let others: u64 = s
        .kinds
        .get("disks")
        .map(|m| {
            m.iter()
                .filter(|(id, _)| **id != disk)
                .map(|(_, o)| o.at(now))
                .filter(|o| o["_parent"] == json!(linode))
                .map(|o| o["size"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    if others + size > inst["specs"]["disk"].as_u64().unwrap_or(0) {
        return Err(error(400, "Insufficient space for requested disk size.", Some("size")));
    }
    if inst["status"] != json!("offline") {
        return Err(error(400, "Linode must be powered off to resize a disk.", None));
    }
    let ready = s.cfg.disk_ready;
    let obj = s.kind("disks").get_mut(&disk).expect("found");
    obj.schedule(now, &[(0.0, json!({ "status": "resizing", "size": size })), (ready, json!({ "status": "ready" }))]);
    s.event("disk_resize", &json!({ "id": linode, "label": inst["label"] }), "linode", ready);
    let _ = d;
    Ok(ok(json!({})))
}

/// A boot's `config_id`, when given, must be one of this instance's profiles.
pub(crate) fn check_boot(s: &State, linode: u64, body: &Value) -> Result<(), Reply> {
    match body.get("config_id").filter(|v| !v.is_null()) {
        None => Ok(()),
        Some(c) => {
            let c = c.as_u64().ok_or_else(|| error(400, "Must be an integer", Some("config_id")))?;
            s.find("configs", c, Some(linode)).map(drop).map_err(|_| error(400, "Config not found.", Some("config_id")))
        }
    }
}
