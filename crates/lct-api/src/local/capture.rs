//! A stopped machine's root as a raw ext4 disk, for `lct-plan bake` to image.
//!
//! Two captures from one base share most of their 4 MiB extents: each starts from a copy
//! of one template disk (the base root's, `mkfs.ext4 -d` once, rebuilt with the base root;
//! or the lct image's own disk for a machine made from one), and rsync writes only the
//! files that differ (unchanged files keep their blocks: mkfs -d keeps their mtimes).
//! fstrim then punches the freed blocks out (loop devices discard by punching holes), so
//! deleted data neither leaks into the image nor costs an extent.

use std::fs;
use std::path::PathBuf;

use lct_core::fsutil::{Lock, atomic_write};
use lct_core::record::Name;

use super::LocalCloud;
use super::images::{Images, io_at, manifest_text};
use super::net;
use crate::ProviderError;

/// The template disk's size: room for a plan's packages beyond the base root (sparse: only
/// what is written takes space).
pub const TEMPLATE_DISK_MIB: u64 = 4096;

/// Run by `sh -c` with the disk (`$1`), the mount point (`$2`) and the machine's root (`$3`,
/// ending in `/`): the root copied onto the disk, freed blocks punched out, unmounted.
const COPY_IN: &str = r#"set -e
mount -t ext4 -o loop,nosuid,nodev "$1" "$2"
trap 'umount "$2"' EXIT
rsync -aHAX --delete --numeric-ids "$3" "$2/"
fstrim "$2"
"#;

impl Images {
    /// The base root as an ext4 disk, built once (and again when the base root is rebuilt).
    pub fn base_disk(&self) -> Result<PathBuf, ProviderError> {
        let root = self.base()?;
        let dir = self.base_dir();
        let disk = dir.join("disk.raw");
        let stamp = dir.join("disk.manifest");
        let wanted = manifest_text();
        let fresh = || fs::read_to_string(&stamp).is_ok_and(|m| m == wanted) && disk.is_file();
        if fresh() {
            return Ok(disk);
        }
        let lock_path = dir.join("lock");
        let _lock = Lock::acquire(&lock_path).map_err(io_at(&lock_path))?;
        if fresh() {
            return Ok(disk);
        }
        let building = dir.join("disk.raw.building");
        let _ = fs::remove_file(&building);
        let size = format!("{TEMPLATE_DISK_MIB}M");
        net::run(
            "mkfs.ext4",
            &["-q", "-F", "-L", "lct-root", "-d", &root.to_string_lossy(), &building.to_string_lossy(), &size],
        )?;
        fs::rename(&building, &disk).map_err(io_at(&disk))?;
        atomic_write(&stamp, wanted.as_bytes(), 0o644).map_err(io_at(&stamp))?;
        Ok(disk)
    }
}

impl LocalCloud {
    fn capture_file(&self, name: &Name) -> PathBuf {
        self.dir.join("captures").join(format!("{name}.raw"))
    }

    /// Stops machine `name` and writes its root as a raw ext4 disk (checked by e2fsck);
    /// returns the file.
    pub fn capture(&self, name: &Name) -> Result<PathBuf, ProviderError> {
        let (machine, template) = {
            let state = self.load()?;
            if !state.machines.contains(name) {
                Self::find(&state, name)?;
                return Err(ProviderError::Invalid(format!(
                    "{name} is a namespace node, not a machine: no disk to capture"
                )));
            }
            drop(state);
            self.set_power(name, false)?;
            let (_lock, state) = self.begin()?;
            let node = Self::find(&state, name)?.clone();
            let machine = self.machine(&state, &node);
            let images = self.images();
            let template = match machine.golden_disk() {
                Some(disk) => disk,
                None => images.base_disk()?,
            };
            machine.mount_root(&images)?;
            (machine, template)
        };
        let out = self.capture_file(name);
        let dir = out.parent().expect("captures/NAME.raw");
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let building = dir.join(format!("{name}.raw.building"));
        let mnt = dir.join(format!("{name}.mnt"));
        let _ = fs::remove_file(&building);
        let result = (|| {
            let t = template.to_string_lossy();
            let b = building.to_string_lossy();
            net::run("cp", &["--reflink=auto", "--sparse=always", &t, &b])?;
            fs::create_dir_all(&mnt).map_err(io_at(&mnt))?;
            let from = format!("{}/", machine.root_path().display());
            let m = mnt.to_string_lossy();
            // In a mount namespace of its own: a machine booted meanwhile (nspawn copies the
            // host's mounts into its namespace) would otherwise keep the file system mounted
            // after our umount, unwritten, and e2fsck would find it torn (seen under load).
            // The loop device clears itself at the umount, or when the namespace ends.
            net::run(
                "unshare",
                &["--mount", "--propagation", "private", "--", "sh", "-c", COPY_IN, "lct-capture", &b, &m, &from],
            )?;
            net::check_ext4(&building)?;
            fs::rename(&building, &out).map_err(io_at(&out))
        })();
        let _ = fs::remove_dir(&mnt);
        if let Err(e) = result {
            let _ = fs::remove_file(&building);
            return Err(e);
        }
        Ok(out)
    }

    /// Removes a capture's disk.
    pub fn release(&self, name: &Name) -> Result<(), ProviderError> {
        let file = self.capture_file(name);
        match fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_at(&file)(e)),
            _ => Ok(()),
        }
    }
}
