//! The helper-disk way (nodes from lct images) on a backing of machines: a `raw` disk is a
//! local-cloud volume (`lct-disk-ID`: a sparse file on this machine, a loop device); booting
//! a profile whose `sda` is a disk made from an image makes the instance's machine (debian-12,
//! first boot from the instance's `metadata.user_data`) when it has none; every other raw disk
//! of the booted profile is attached to the machine and appears in it at its slot
//! (`/dev/sdb`), so an image streamed there over SSH lands in that file. A profile whose `sda`
//! is a raw disk boots *that disk*: its ext4 file system becomes the machine's root (no
//! overlay; what the node writes lands in the disk), with the node's first-boot files
//! written into it from the instance's metadata, and the disk appears at `/dev/sda`.
//! Deleting a disk or the instance deletes its volumes (the machine's root unmounted first).

use lct_api::Provider;
use lct_api::local::Seed;
use lct_core::record::{Name, NodeSpec};
use serde_json::{Value, json};

use crate::backing::{BACKING_CLUSTER, Backing};
use crate::state::State;

/// The volume a raw disk is.
pub fn volume_of(disk: u64) -> Name {
    format!("lct-disk-{disk}").parse().expect("a label")
}

/// What a boot of a profile asks of the backing, read from the double's state before it acts.
#[derive(Debug, Clone, Default)]
pub struct Boot {
    /// The instance has no machine yet and its profile boots a disk made from an image: the
    /// first boot data to make one with.
    pub user_data: Option<String>,
    /// Raw disks of the profile and the slots they are in (`sdb`), `sda` aside.
    pub raw: Vec<(String, u64)>,
    /// A raw disk at `sda`: the disk the machine boots as its root.
    pub root: Option<u64>,
    /// The instance's region: its machine's region in the lab.
    pub region: Option<String>,
}

/// The raw disks of instance `linode` (their volumes go with it).
pub(crate) fn raw_disks(s: &State, linode: u64) -> Vec<u64> {
    s.kinds
        .get("disks")
        .map(|m| {
            m.iter()
                .filter(|(_, o)| o.v["_parent"] == json!(linode) && o.v["filesystem"] == json!("raw"))
                .map(|(id, _)| *id)
                .collect()
        })
        .unwrap_or_default()
}

/// The boot of instance `linode` with `body` (its `config_id`, else its first profile).
pub(crate) fn boot_of(s: &State, linode: u64, body: &Value) -> Option<Boot> {
    let configs = s.kinds.get("configs")?;
    let config = match body["config_id"].as_u64() {
        Some(c) => configs.get(&c)?.v.clone(),
        None => configs.values().find(|o| o.v["_parent"] == json!(linode))?.v.clone(),
    };
    let disks = s.kinds.get("disks")?;
    let region = s.kinds.get("instances")?.get(&linode)?.v["region"].as_str().map(String::from);
    let mut boot = Boot { region, ..Boot::default() };
    for slot in ["sda", "sdb", "sdc", "sdd", "sde", "sdf", "sdg", "sdh"] {
        let Some(d) = config["devices"][slot]["disk_id"].as_u64() else { continue };
        let Some(disk) = disks.get(&d) else { continue };
        let raw = disk.v["filesystem"] == json!("raw");
        if slot == "sda" && (raw || disk.v["_image"].is_string()) {
            let instance = s.kinds.get("instances")?.get(&linode)?;
            boot.user_data = instance.v["_user_data"].as_str().map(String::from);
        }
        if raw && slot == "sda" {
            boot.root = Some(d);
        } else if raw {
            boot.raw.push((slot.to_string(), d));
        }
    }
    Some(boot)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
}

impl Backing {
    /// A raw disk: a volume of its size.
    pub fn raw_disk(&self, disk: u64, size_mib: u64) -> Result<(), String> {
        let spec = lct_api::VolumeSpec { label: volume_of(disk), size_mib, region: None };
        runtime()?.block_on(self.local.create_volume(&spec)).map(drop).map_err(|e| e.to_string())
    }

    /// Deletes the volumes of raw disks.
    pub fn delete_disks(&self, disks: &[u64]) -> Result<(), String> {
        let runtime = runtime()?;
        for d in disks {
            runtime.block_on(self.local.delete_volume(&volume_of(*d))).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Boots instance `label` as `boot` says; the machine's addresses when it was made now.
    pub fn boot(&self, label: &str, boot: &Boot) -> Result<Option<(Vec<String>, String)>, String> {
        let name: Name = label.parse().map_err(|e| format!("label: {e}"))?;
        let runtime = runtime()?;
        let exists = runtime.block_on(self.local.list()).map_err(|e| e.to_string())?.iter().any(|n| n.name == name);
        let mut made = None;
        if let Some(root) = boot.root {
            if !exists {
                return Err(format!(
                    "{label}: its profile boots raw disk {root}, and it never booted a disk from an image"
                ));
            }
            let volume = volume_of(root);
            runtime.block_on(self.local.attach_volume(&volume, &name)).map_err(|e| e.to_string())?;
            let seed = boot.user_data.as_deref().map_or(Seed::Merged(None), Seed::Raw);
            self.local.boot_from_volume(&name, &volume, seed).map_err(|e| e.to_string())?;
            self.local.expose_volume_at(&volume, "/dev/sda").map_err(|e| e.to_string())?;
        } else if exists {
            runtime.block_on(self.local.start(&name)).map_err(|e| e.to_string())?;
        } else if let Some(user_data) = &boot.user_data {
            let spec = NodeSpec {
                cluster: BACKING_CLUSTER.parse().expect("a label"),
                group: "node".parse().expect("a label"),
                name: name.clone(),
                region: boot.region.clone(),
                node_type: None,
                image: Some("debian-12".into()),
                tags: vec![],
                user_data: None,
            };
            let node = self.local.create_seeded(&spec, Seed::Raw(user_data)).map_err(|e| e.to_string())?;
            let mut ipv4: Vec<String> = node.public_ipv4.iter().map(|a| a.to_string()).collect();
            ipv4.extend(node.private_ipv4.iter().map(|a| a.to_string()));
            made = Some((ipv4, node.public_ipv6.first().map(|a| format!("{a}/128")).unwrap_or_default()));
        } else {
            return Err(format!("{label}: its profile boots no disk made from an image, and it has no machine"));
        }
        for (slot, disk) in &boot.raw {
            let volume = volume_of(*disk);
            runtime.block_on(self.local.attach_volume(&volume, &name)).map_err(|e| e.to_string())?;
            self.local.expose_volume_at(&volume, &format!("/dev/{slot}")).map_err(|e| e.to_string())?;
        }
        Ok(made)
    }
}
