//! Linode nodes from lct images, and Linode's side of a capture (`lct-plan bake`).
//!
//! An lct image is checked whole first (`lct-image verify`: every extent's hash; its size and
//! root hash), before any instance is made. Then one of two ways:
//! * a Linode Image made from it by `lct-image push-linode` (which writes the image's root
//!   hash into the Linode Image's description, [`identity_mark`]): the node is created from
//!   that `private/N` as from any image;
//! * else through a helper disk, unattended: the instance is made without booting, with a
//!   small helper disk from `linode/debian12` (lct's keys; its first boot takes the node's
//!   metadata, so the host key lct pins) and a raw target disk the image's size; a
//!   configuration profile boots the helper with the target at `/dev/sdb`; the image is
//!   streamed onto it over SSH (`lct-image restore IMAGE node:NAME:/dev/sdb`: every extent's
//!   hash checked on the node before it is written); the profile is switched to boot the
//!   target, the helper disk is deleted, the node boots its image. No console, no rescue
//!   mode, no password. A failure deletes the half-made instance.
//!
//! A capture shuts the node down, makes room for a helper disk (shrinking the root disk if
//! the type's disk is full), and boots the helper with the captured disk at `/dev/sdb`.

use std::process::Stdio;

use lct_core::record::{Name, NodeSpec};
use serde_json::{Value, json};

use super::client::ApiFailure;
use super::types::{Disk, Image, Instance, InstanceConfig, InstanceStatus};
use super::{LinodeProvider, TAG, cluster_tag, group_tag, root_password};
use crate::disk_image::{DiskCapture, LctImage, lct_image_program};
use crate::provider::ProviderError;

/// Linode's limits on an uploaded image (NOTICE.md): the raw disk, and the gzip'd file.
pub const RAW_MAX: u64 = 6_000_000_000;
pub const UPLOAD_MAX: u64 = 5_000_000_000;

/// The helper disk (linode/debian12, with room for lct-image and its work).
pub const HELPER_MIB: u64 = 2048;
pub const HELPER_LABEL: &str = "lct-helper";
pub const HELPER_IMAGE: &str = "linode/debian12";
/// The disk an lct image is restored onto, and the profile that boots it.
pub const TARGET_LABEL: &str = "lct-root";
pub const PROFILE_LABEL: &str = "lct-boot";
/// Where the captured or target disk is seen from the helper.
pub const SECOND_DEVICE: &str = "/dev/sdb";

/// What a Linode Image's description says when it was made from an lct image.
pub fn identity_mark(root: &str) -> String {
    format!("lct-image:{root}")
}

/// An lct image, checked whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The name it was given as.
    pub name: String,
    /// The disk's size in bytes.
    pub size: u64,
    /// The root hash of its index (hex): its content identity.
    pub root: String,
}

impl Checked {
    pub fn size_mib(&self) -> u64 {
        self.size.div_ceil(1 << 20)
    }
}

/// How a node is made from a checked image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Way {
    /// From the Linode Image `private/N` push-linode made of it.
    LinodeImage(String),
    /// Through a helper disk.
    HelperDisk,
}

fn refused(image: &str, message: impl std::fmt::Display) -> ProviderError {
    ProviderError::Invalid(format!("image {image}: {message}"))
}

/// Runs `lct-image -o jsonl verify IMAGE` (an argument vector): every extent's hash, then
/// the size and root hash from its report.
pub async fn check_image(image: &LctImage) -> Result<Checked, ProviderError> {
    let name = image.argument();
    let program = lct_image_program()?;
    let mut command = tokio::process::Command::new(&program);
    command.args(["-o", "jsonl", "verify", &name]).stdin(Stdio::null()).kill_on_drop(true);
    if matches!(image, LctImage::Url { url, .. } if url.starts_with("http://")) {
        command.arg("--allow-http");
    }
    let out = command.output().await.map_err(|e| refused(&name, format!("{}: {e}", program.display())))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(refused(&name, why.trim().lines().last().unwrap_or("lct-image verify failed")));
    }
    let report: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| refused(&name, "lct-image verify said nothing"))?;
    let (Some(size), Some(root)) = (report["size"].as_u64(), report["root"].as_str()) else {
        return Err(refused(&name, "lct-image verify's report has no size or root"));
    };
    if root.len() != 64 || !root.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused(&name, "lct-image verify's root is not a hash"));
    }
    image.check_root(root)?;
    Ok(Checked { name, size, root: root.to_string() })
}

/// Which way a node of type disk `type_disk_mib` is made from `checked`: a Linode Image of
/// it when one exists (available) and fits, else the helper disk; an error when neither fits.
pub fn choose(checked: &Checked, images: &[Image], type_name: &str, type_disk_mib: u64) -> Result<Way, ProviderError> {
    let mark = identity_mark(&checked.root);
    let pushed = images.iter().find(|i| {
        i.status.as_deref() == Some("available") && i.description.as_deref().is_some_and(|d| d.contains(&mark))
    });
    let fits_limits = checked.size <= RAW_MAX;
    if let Some(i) = pushed.filter(|_| fits_limits)
        && checked.size_mib() <= type_disk_mib
    {
        return Ok(Way::LinodeImage(i.id.clone()));
    }
    if checked.size_mib() + HELPER_MIB > type_disk_mib {
        return Err(refused(
            &checked.name,
            format!(
                "a {} MiB disk does not fit type {type_name}'s {type_disk_mib} MiB disk beside the {HELPER_MIB} MiB helper disk: choose a larger type",
                checked.size_mib()
            ),
        ));
    }
    Ok(Way::HelperDisk)
}

fn api_error(step: &str) -> impl Fn(ApiFailure) -> ProviderError + '_ {
    move |e| ProviderError::Api(format!("{step}: {e}"))
}

/// A profile's device map: `sda` and `sdb` as given, the rest empty.
fn devices(sda: u64, sdb: Option<u64>) -> Value {
    json!({ "sda": { "disk_id": sda }, "sdb": sdb.map(|d| json!({ "disk_id": d })) })
}

fn disk_of(config: &InstanceConfig, device: &str) -> Option<u64> {
    config.devices.as_ref()?.get(device)?.get("disk_id")?.as_u64()
}

impl LinodeProvider {
    /// The image checked once per run (a bulk create verifies it once).
    pub(super) async fn checked(&self, image: &LctImage) -> Result<Checked, ProviderError> {
        let cell = {
            let mut all = self.lct_images.lock().await;
            all.entry(image.argument()).or_default().clone()
        };
        cell.get_or_try_init(|| check_image(image)).await.cloned()
    }

    /// The way a node of `instance_type` is made from `image`, decided before any instance.
    pub(super) async fn way_for(&self, image: &LctImage, instance_type: &str) -> Result<(Checked, Way), ProviderError> {
        let checked = self.checked(image).await?;
        let type_disk = self.catalog().await?.types.get(instance_type).copied().unwrap_or(0);
        let own = self.api.images(Some(&json!({ "is_public": false }))).await?;
        let way = choose(&checked, &own, instance_type, type_disk)?;
        Ok((checked, way))
    }

    /// Makes `spec`'s node from an lct image through a helper disk (see the module's text).
    /// `body` is the instance's create body without an image; `keys` the authorized keys.
    pub(super) async fn create_through_helper(
        &self,
        spec: &NodeSpec,
        checked: &Checked,
        mut body: Value,
        keys: &[String],
        pin: &(dyn Fn(&Instance) -> Result<(), ProviderError> + Sync),
    ) -> Result<Instance, ProviderError> {
        if let Value::Object(map) = &mut body {
            for field in ["image", "root_pass", "authorized_keys"] {
                map.remove(field);
            }
        }
        body["booted"] = json!(false);
        let made = self.api.create_instance(&body).await.map_err(api_error("creating the instance"))?;
        self.remember(&made).await?;
        match self.fill_from_image(spec, made.id, checked, keys, pin).await {
            Ok(running) => Ok(running),
            Err(e) => {
                // Nothing half-made stays: the instance goes, with its disks and profile.
                tracing::warn!(node = %spec.name, "from image {} failed: {e}; deleting the instance", checked.name);
                if let Err(d) = self.api.delete_instance(made.id).await {
                    tracing::warn!(node = %spec.name, "deleting the half-made instance: {d}");
                }
                self.known().await?.lock().await.remove(spec.name.as_str());
                Err(e)
            }
        }
    }

    async fn fill_from_image(
        &self,
        spec: &NodeSpec,
        id: u64,
        checked: &Checked,
        keys: &[String],
        pin: &(dyn Fn(&Instance) -> Result<(), ProviderError> + Sync),
    ) -> Result<Instance, ProviderError> {
        self.api.wait_instance(id, &[InstanceStatus::Offline]).await.map_err(api_error("the new instance"))?;
        let helper = self.helper_disk(id, keys).await?;
        let target = json!({ "label": TARGET_LABEL, "size": checked.size_mib(), "filesystem": "raw" });
        let target = self.api.create_disk(id, &target).await.map_err(api_error("creating the target disk"))?;
        let profile = json!({
            "label": PROFILE_LABEL, "kernel": "linode/grub2", "root_device": "/dev/sda",
            "devices": devices(helper.id, Some(target.id)),
        });
        let profile = self.api.create_config(id, &profile).await.map_err(api_error("creating the profile"))?;
        self.api.boot_config(id, profile.id).await.map_err(api_error("booting the helper disk"))?;
        let helper_up = self
            .api
            .wait_instance(id, &[InstanceStatus::Running])
            .await
            .map_err(api_error("booting the helper disk"))?;
        // Pinned (the instance's label and addresses) before the stream's first connection.
        pin(&helper_up)?;
        self.remember(&helper_up).await?;
        stream_onto(&spec.name, checked).await?;
        self.api.shutdown(id).await.map_err(api_error("shutting the helper down"))?;
        self.api.wait_instance(id, &[InstanceStatus::Offline]).await.map_err(api_error("shutting the helper down"))?;
        let boot_target = json!({ "root_device": "/dev/sda", "devices": devices(target.id, None) });
        self.api.update_config(id, profile.id, &boot_target).await.map_err(api_error("switching the profile"))?;
        self.api.delete_disk(id, helper.id).await.map_err(api_error("deleting the helper disk"))?;
        self.api.boot_config(id, profile.id).await.map_err(api_error("booting the image"))?;
        let running =
            self.api.wait_instance(id, &[InstanceStatus::Running]).await.map_err(api_error("booting the image"))?;
        Ok(running)
    }

    /// A helper disk on instance `id`: linode/debian12 with lct's keys, and a root password
    /// nobody sees (the API wants one).
    async fn helper_disk(&self, id: u64, keys: &[String]) -> Result<Disk, ProviderError> {
        let body = json!({
            "label": HELPER_LABEL, "size": HELPER_MIB, "image": HELPER_IMAGE,
            "authorized_keys": keys, "root_pass": root_password()?,
        });
        self.api.create_disk(id, &body).await.map_err(api_error("creating the helper disk"))
    }

    /// The instance of a node that must exist.
    async fn instance_of(&self, name: &Name) -> Result<Instance, ProviderError> {
        self.find(name).await?.ok_or_else(|| ProviderError::NoSuchNode(name.clone()))
    }

    /// The profile an instance boots (lct's own, else the first).
    async fn boot_profile(&self, id: u64, name: &Name) -> Result<InstanceConfig, ProviderError> {
        let configs = self.api.configs(id).await?;
        let chosen = configs.iter().find(|c| c.label == PROFILE_LABEL).or_else(|| configs.first());
        chosen
            .cloned()
            .ok_or_else(|| ProviderError::Invalid(format!("{name}: the instance has no configuration profile")))
    }

    /// See [`crate::Provider::capture_disk`]: the node boots a helper disk with its own root
    /// disk at `/dev/sdb`. Returns once the instance runs (the caller waits for SSH).
    pub(super) async fn capture(&self, name: &Name) -> Result<DiskCapture, ProviderError> {
        let i = self.instance_of(name).await?;
        self.api.shutdown(i.id).await.map_err(api_error("shutting the node down"))?;
        self.api.wait_instance(i.id, &[InstanceStatus::Offline]).await.map_err(api_error("shutting the node down"))?;
        let profile = self.boot_profile(i.id, name).await?;
        let root = disk_of(&profile, "sda")
            .ok_or_else(|| ProviderError::Invalid(format!("{name}: its profile {} boots no disk", profile.label)))?;
        let disks = self.api.disks(i.id).await?;
        let helper = match disks.iter().find(|d| d.label == HELPER_LABEL) {
            Some(h) => h.clone(),
            None => {
                self.make_room(i.id, &i, &disks, root).await?;
                let keys = self.node_keys()?;
                self.helper_disk(i.id, &keys).await?
            }
        };
        let body = json!({ "root_device": "/dev/sda", "devices": devices(helper.id, Some(root)) });
        self.api.update_config(i.id, profile.id, &body).await.map_err(api_error("booting the helper"))?;
        self.api.boot_config(i.id, profile.id).await.map_err(api_error("booting the helper"))?;
        let running =
            self.api.wait_instance(i.id, &[InstanceStatus::Running]).await.map_err(api_error("booting the helper"))?;
        self.remember(&running).await?;
        Ok(DiskCapture::OnNode { device: SECOND_DEVICE.into() })
    }

    /// Shrinks the root disk (ext4: Linode resizes its file system) when the type's disk has
    /// no room for the helper.
    async fn make_room(&self, id: u64, i: &Instance, disks: &[Disk], root: u64) -> Result<(), ProviderError> {
        let type_disk = i.instance_type.as_deref().and_then(|t| self.catalog_disk(t)).unwrap_or(0);
        let type_disk = match type_disk {
            0 => i.specs.as_ref().and_then(|s| s["disk"].as_u64()).unwrap_or(0),
            n => n,
        };
        let used: u64 = disks.iter().map(|d| d.size).sum();
        let free = type_disk.saturating_sub(used);
        if free >= HELPER_MIB {
            return Ok(());
        }
        let root_disk = disks.iter().find(|d| d.id == root).ok_or_else(|| {
            ProviderError::Invalid(format!("{}: its profile's root disk {root} is not among its disks", i.label))
        })?;
        let smaller = root_disk.size.checked_sub(HELPER_MIB - free).filter(|s| *s > 0).ok_or_else(|| {
            ProviderError::Invalid(format!("{}: no room for a {HELPER_MIB} MiB helper disk", i.label))
        })?;
        self.api.resize_disk(id, root, smaller).await.map_err(api_error("shrinking the root disk"))?;
        Ok(())
    }

    fn catalog_disk(&self, instance_type: &str) -> Option<u64> {
        self.catalog.get().and_then(|c| c.types.get(instance_type).copied())
    }

    /// See [`crate::Provider::release_capture`]: the profile boots the captured disk again
    /// and the helper disk is deleted; the node stays shut down (bake deletes it next).
    pub(super) async fn release(&self, name: &Name) -> Result<(), ProviderError> {
        let i = self.instance_of(name).await?;
        let profile = self.boot_profile(i.id, name).await?;
        let Some(captured) = disk_of(&profile, "sdb") else { return Ok(()) };
        self.api.shutdown(i.id).await.map_err(api_error("shutting the helper down"))?;
        self.api
            .wait_instance(i.id, &[InstanceStatus::Offline])
            .await
            .map_err(api_error("shutting the helper down"))?;
        let body = json!({ "root_device": "/dev/sda", "devices": devices(captured, None) });
        self.api.update_config(i.id, profile.id, &body).await.map_err(api_error("switching the profile back"))?;
        for d in self.api.disks(i.id).await?.iter().filter(|d| d.label == HELPER_LABEL) {
            self.api.delete_disk(i.id, d.id).await.map_err(api_error("deleting the helper disk"))?;
        }
        Ok(())
    }

    /// The keys root gets on a helper disk: lct's own and the configured ones.
    fn node_keys(&self) -> Result<Vec<String>, ProviderError> {
        let ssh = lct_core::ssh::SshFiles::from_env()
            .map_err(|e| ProviderError::Io { what: "lct's SSH keys".into(), error: e })?;
        let mut keys =
            ssh.authorized_keys().map_err(|e| ProviderError::Io { what: "lct's SSH keys".into(), error: e })?;
        for k in &self.defaults.authorized_keys {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        Ok(keys)
    }
}

/// The tags of a node's instance (one list for both ways of making it).
pub fn tags_of(spec: &NodeSpec) -> Vec<String> {
    let mut tags = vec![TAG.to_string(), cluster_tag(&spec.cluster), group_tag(&spec.group)];
    tags.extend(spec.tags.iter().cloned());
    tags
}

/// Streams the image onto the node's second device: `lct-image restore IMAGE
/// node:NAME:/dev/sdb` (it waits for the node's SSH, pinned; puts itself on the node; every
/// extent's hash is checked there before it is written).
async fn stream_onto(node: &Name, checked: &Checked) -> Result<(), ProviderError> {
    let program = lct_image_program()?;
    let target = format!("node:{node}:{SECOND_DEVICE}");
    let mut command = tokio::process::Command::new(&program);
    command
        .args(["-o", "jsonl", "restore", &checked.name, &target])
        .env("LCT_PROVIDER", "linode")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if checked.name.starts_with("http://") {
        command.arg("--allow-http");
    }
    let out = command.output().await.map_err(|e| refused(&checked.name, format!("{}: {e}", program.display())))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(refused(
            &checked.name,
            format!(
                "onto {node}'s {SECOND_DEVICE}: {}",
                why.trim().lines().last().unwrap_or("lct-image restore failed")
            ),
        ));
    }
    crate::disk_image::check_restored(&checked.name, &String::from_utf8_lossy(&out.stdout), &checked.root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, description: &str, status: &str) -> Image {
        serde_json::from_value(json!({ "id": id, "label": "x", "status": status, "description": description })).unwrap()
    }

    #[test]
    fn a_pushed_image_is_used_when_it_fits_else_the_helper_disk() {
        let root = "ab".repeat(32);
        let small = Checked { name: "r::zk".into(), size: 3 << 30, root: root.clone() };
        let pushed = [image("private/7", &format!("zk {}", identity_mark(&root)), "available")];
        assert_eq!(choose(&small, &pushed, "g6-nanode-1", 25_600).unwrap(), Way::LinodeImage("private/7".into()));
        // Another image's mark, or one still being made: not this one.
        let other = [image("private/8", &identity_mark(&"cd".repeat(32)), "available")];
        assert_eq!(choose(&small, &other, "g6-nanode-1", 25_600).unwrap(), Way::HelperDisk);
        let pending = [image("private/9", &identity_mark(&root), "pending_upload")];
        assert_eq!(choose(&small, &pending, "g6-nanode-1", 25_600).unwrap(), Way::HelperDisk);
        // Over Linode's raw limit: never from a Linode Image, through the helper.
        let big = Checked { size: 7 << 30, ..small.clone() };
        assert_eq!(choose(&big, &pushed, "g6-nanode-1", 25_600).unwrap(), Way::HelperDisk);
        // Bigger than the type's disk beside the helper: refused, naming both.
        let huge = Checked { size: 24 << 30, ..small };
        let e = choose(&huge, &[], "g6-nanode-1", 25_600).unwrap_err().to_string();
        assert!(e.contains("r::zk") && e.contains("g6-nanode-1") && e.contains("25600"), "{e}");
    }
}
