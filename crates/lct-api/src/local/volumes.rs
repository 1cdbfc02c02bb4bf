//! Volumes: sparse files attached as loop devices, reached through a stable symlink (and a
//! machine booting one as its root disk).

use std::fs;
use std::path::{Path, PathBuf};

use lct_core::record::{Name, ProviderName, Status, Volume};

use super::lab::Lab;
use super::net;
use super::region::check_region;
use super::state::set_status;
use super::{LocalCloud, REGION, Seed};
use crate::{ProviderError, VolumeSpec};

impl LocalCloud {
    /// The stable device path of a volume: a symlink to whichever loop device backs it now.
    pub(super) fn device_link(&self, label: &Name) -> PathBuf {
        self.dir.join("dev").join(format!("lct-volume-{label}"))
    }

    pub(super) fn backing_file(&self, label: &Name) -> PathBuf {
        self.dir.join("volumes").join(format!("{label}.img"))
    }

    pub(super) fn attach_loop(&self, label: &Name) -> Result<String, ProviderError> {
        let file = self.backing_file(label);
        let device = match net::loops_of(&file)?.into_iter().next() {
            Some(dev) => dev,
            None => net::run("losetup", &["--find", "--show", &file.to_string_lossy()])?.trim().to_string(),
        };
        let link = self.device_link(label);
        let io = |what: &Path| {
            let what = what.display().to_string();
            move |source| ProviderError::Io { what, error: source }
        };
        fs::create_dir_all(link.parent().expect("has parent")).map_err(io(&link))?;
        let tmp = link.with_extension("new");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&device, &tmp).map_err(io(&tmp))?;
        fs::rename(&tmp, &link).map_err(io(&link))?;
        Ok(link.display().to_string())
    }

    /// Makes attached volume `label` a block device at `path` in its machine as well (the
    /// Linode double's backing: a Linode disk at /dev/sdb).
    pub fn expose_volume_at(&self, label: &Name, path: &str) -> Result<(), ProviderError> {
        let state = self.load()?;
        let node = state.volumes.iter().find(|v| &v.label == label).and_then(|v| v.attached_to.clone());
        let node = node.ok_or_else(|| ProviderError::Invalid(format!("volume {label} is not attached")))?;
        let n = Self::find(&state, &node)?.clone();
        self.machine(&state, &n).add_device(path, &self.device_link(label))
    }

    /// Boots machine `name` from attached volume `label` (a raw disk holding an ext4 file
    /// system) as its root, as a Linode whose profile now boots that disk: stopped, its root
    /// switched, its network stack renewed, and, the first time on this disk, its first-boot
    /// files written into the disk's file system from `seed` (the instance's metadata).
    pub fn boot_from_volume(&self, name: &Name, label: &Name, seed: Seed<'_>) -> Result<(), ProviderError> {
        let (_lock, mut state) = self.begin()?;
        let node = Self::find(&state, name)?.clone();
        if !state.machines.contains(name) {
            return Err(ProviderError::Invalid(format!("{name} is a namespace node: it boots no disk")));
        }
        let volume = state
            .volumes
            .iter()
            .find(|v| &v.label == label)
            .ok_or_else(|| ProviderError::NoSuchVolume(label.clone()))?;
        if volume.attached_to.as_ref() != Some(name) {
            return Err(ProviderError::Invalid(format!("volume {label} is not attached to {name}: it cannot boot it")));
        }
        let machine = self.machine(&state, &node);
        machine.stop()?;
        if machine.set_root_disk(&self.device_link(label))? {
            Lab::new(&state.lab).renew_node(&node)?;
        } else {
            Lab::new(&state.lab).set_links(&node, true)?;
        }
        self.ensure_machine(&state, &node, seed, true)?;
        set_status(&mut state, name, Status::Booting);
        self.save(&state)
    }

    pub(super) fn detach_loops(&self, label: &Name) -> Result<(), ProviderError> {
        let file = self.backing_file(label);
        if file.exists() {
            for dev in net::loops_of(&file)? {
                net::run("losetup", &["--detach", &dev])?;
            }
        }
        let _ = fs::remove_file(self.device_link(label));
        Ok(())
    }

    pub(super) fn list_volumes(&self) -> Result<Vec<Volume>, ProviderError> {
        let mut volumes = self.load()?.volumes;
        volumes.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(volumes)
    }

    pub(super) fn make_volume(&self, spec: &VolumeSpec) -> Result<Volume, ProviderError> {
        if spec.size_mib == 0 {
            return Err(ProviderError::Invalid("field size: a volume needs at least 1 MiB".into()));
        }
        let region = spec.region.as_deref().unwrap_or(REGION);
        check_region("region", region)?;
        let (_lock, mut state) = self.begin()?;
        if let Some(v) = state.volumes.iter().find(|v| v.label == spec.label) {
            if v.size_mib != spec.size_mib {
                return Err(ProviderError::Invalid(format!(
                    "volume {} exists with {} MiB, not {} MiB",
                    spec.label, v.size_mib, spec.size_mib
                )));
            }
            return Ok(v.clone());
        }
        let file = self.backing_file(&spec.label);
        let io = |source| ProviderError::Io { what: file.display().to_string(), error: source };
        fs::create_dir_all(file.parent().expect("has parent")).map_err(io)?;
        let f = fs::OpenOptions::new().write(true).create(true).truncate(false).open(&file).map_err(io)?;
        f.set_len(spec.size_mib * 1024 * 1024).map_err(io)?;
        let volume = Volume {
            label: spec.label.clone(),
            size_mib: spec.size_mib,
            provider: ProviderName::Local,
            provider_id: state.next_id.to_string(),
            region: region.into(),
            status: "active".into(),
            attached_to: None,
            path: None,
        };
        state.next_id += 1;
        state.volumes.push(volume.clone());
        self.save(&state)?;
        Ok(volume)
    }

    pub(super) fn attach(&self, label: &Name, node: &Name) -> Result<Volume, ProviderError> {
        let (_lock, mut state) = self.begin()?;
        Self::find(&state, node)?;
        let volume = state
            .volumes
            .iter()
            .find(|v| &v.label == label)
            .ok_or_else(|| ProviderError::NoSuchVolume(label.clone()))?;
        if let Some(other) = volume.attached_to.as_ref().filter(|n| *n != node) {
            return Err(ProviderError::Invalid(format!("volume {label} is attached to {other}; detach it first")));
        }
        let path = self.attach_loop(label)?;
        if state.machines.contains(node) {
            let n = Self::find(&state, node)?.clone();
            self.machine(&state, &n).add_volume(label.as_str(), &self.device_link(label))?;
        }
        let v = state.volumes.iter_mut().find(|v| &v.label == label).expect("found above");
        v.attached_to = Some(node.clone());
        v.path = Some(path);
        let v = v.clone();
        self.save(&state)?;
        Ok(v)
    }

    pub(super) fn detach(&self, label: &Name) -> Result<Volume, ProviderError> {
        let (_lock, mut state) = self.begin()?;
        let Some(volume) = state.volumes.iter().find(|v| &v.label == label).cloned() else {
            return Err(ProviderError::NoSuchVolume(label.clone()));
        };
        self.remove_from_machine(&state, &volume)?;
        self.detach_loops(label)?;
        let v = state.volumes.iter_mut().find(|v| &v.label == label).expect("found above");
        v.attached_to = None;
        v.path = None;
        let v = v.clone();
        self.save(&state)?;
        Ok(v)
    }

    pub(super) fn remove_volume(&self, label: &Name) -> Result<bool, ProviderError> {
        let (_lock, mut state) = self.begin()?;
        let Some(volume) = state.volumes.iter().find(|v| &v.label == label).cloned() else {
            return Ok(false);
        };
        self.remove_from_machine(&state, &volume)?;
        self.detach_loops(label)?;
        let file = self.backing_file(label);
        match fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ProviderError::Io { what: file.display().to_string(), error: source });
            }
        }
        state.volumes.retain(|v| &v.label != label);
        self.save(&state)?;
        Ok(true)
    }
}
