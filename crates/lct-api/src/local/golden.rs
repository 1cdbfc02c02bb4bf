//! Machines from lct images (golden images): an image is checked whole, restored once into
//! `IMAGES/lct/<id>/disk.raw` and copied out into `IMAGES/lct/<id>/root`, the lower layer of
//! every machine made from it.
//!
//! The id is the image's root hash (BLAKE3 over its extents' entries): one content under
//! two names is restored once. The image is read by the `lct-image` program (lct-api sits
//! below lct-image: see [`crate::disk_image`]). A disk from someone else is an attack on the
//! host kernel's ext4 code once mounted, so it is checked by e2fsck first, its architecture
//! read by debugfs (user space), and only then mounted read-only, nosuid, nodev, noexec,
//! copied out and unmounted at once: no loop device stays.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use lct_core::fsutil::{Lock, atomic_write};
use serde::{Deserialize, Serialize};

use super::images::{Images, io_at};
use super::{confined, net};
use crate::ProviderError;
use crate::disk_image::{LctImage, lct_image_program};

/// An image restored and copied out, ready to make machines from.
#[derive(Debug, Clone)]
pub struct Golden {
    /// `IMAGES/lct/<id>`.
    pub dir: PathBuf,
    /// The image's disk size in bytes.
    pub size: u64,
}

impl Golden {
    /// The machines' lower layer.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// The image's disk (a capture of a machine made from it starts from a copy).
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.raw")
    }
}

/// What `IMAGES/lct/<id>/ready` says: written last, so a directory without it is unfinished.
#[derive(Debug, Serialize, Deserialize)]
struct Ready {
    size: u64,
    arch: String,
}

/// What `lct-image verify` reports (the `image-verified` record's fields lct-api reads).
#[derive(Debug, Deserialize)]
struct Verified {
    size: u64,
    root: String,
}

impl Images {
    fn lct_dir(&self) -> PathBuf {
        self.dir().join("lct")
    }

    /// Where the id of the image last prepared under this name is kept.
    fn name_file(&self, image: &LctImage) -> PathBuf {
        let hash = blake3::hash(image.argument().as_bytes()).to_hex();
        self.lct_dir().join("names").join(&hash.as_str()[..32])
    }

    /// Checks `image` whole (every extent against its hash), its architecture against this
    /// host's and its disk against `disk_mib`, and restores it once: the machines' lower
    /// layer. A clear error, naming the image, otherwise.
    ///
    /// Checked once, when restored: the image's index is read first (`lct-image info`, its
    /// root hash checked against its entries), and where that root was restored already (its
    /// extents checked against their hashes then, its disk by e2fsck) the restored root is
    /// the content the name now stands for, whatever happened to the repository's copy
    /// since. A name whose content changed has another root, so it is checked and restored
    /// anew. This skips a whole-image read (about 1 s a GiB) on every create and scale.
    pub fn prepare_lct(&self, image: &LctImage, disk_mib: Option<u64>) -> Result<Golden, ProviderError> {
        let arg = image.argument();
        let program = lct_image_program()?;
        let named = |e: ProviderError| match e {
            ProviderError::Command { stderr, .. } => ProviderError::Invalid(format!("image {arg}: {stderr}")),
            other => other,
        };
        let indexed = index_of(&run_lct_image(&program, &["info", &arg]).map_err(named)?)
            .map_err(|e| ProviderError::Invalid(format!("image {arg}: lct-image info: {e}")))?;
        // A pinned URL's content is refused before anything is restored or reused.
        image.check_root(&indexed.root)?;
        let golden = match self.restored(&indexed.root) {
            Some(golden) => {
                check_size(&arg, golden.size, disk_mib)?;
                golden
            }
            None => {
                let out = run_lct_image(&program, &["--output", "jsonl", "verify", &arg]).map_err(named)?;
                let verified: Verified = out.lines().find_map(|l| serde_json::from_str(l).ok()).ok_or_else(|| {
                    ProviderError::Invalid(format!("image {arg}: lct-image verify said nothing readable"))
                })?;
                check_root(&arg, &verified.root)?;
                image.check_root(&verified.root)?;
                check_size(&arg, verified.size, disk_mib)?;
                self.restore_once(&program, &arg, &verified)?
            }
        };
        let root = golden.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let names = self.name_file(image);
        if let Some(d) = names.parent() {
            fs::create_dir_all(d).map_err(io_at(d))?;
        }
        atomic_write(&names, format!("{arg}\n{root}\n").as_bytes(), 0o644).map_err(io_at(&names))?;
        Ok(golden)
    }

    /// The image of root hash `root` if it was restored (and checked) before.
    fn restored(&self, root: &str) -> Option<Golden> {
        let dir = self.lct_dir().join(root);
        let ready: Ready = serde_json::from_slice(&fs::read(dir.join("ready")).ok()?).ok()?;
        Some(Golden { dir, size: ready.size })
    }

    /// The image last prepared under this name (by `prepare_image` before the nodes are
    /// made), else prepared now.
    pub fn golden(&self, image: &LctImage) -> Result<Golden, ProviderError> {
        let names = self.name_file(image);
        if let Ok(text) = fs::read_to_string(&names)
            && let Some((arg, id)) = text.trim_end().split_once('\n')
            && arg == image.argument()
        {
            let dir = self.lct_dir().join(id);
            if let Ok(ready) = fs::read(dir.join("ready"))
                && let Ok(ready) = serde_json::from_slice::<Ready>(&ready)
            {
                return Ok(Golden { dir, size: ready.size });
            }
        }
        self.prepare_lct(image, None)
    }

    /// Restores the image into `IMAGES/lct/<root>` unless it is there, under a lock.
    fn restore_once(&self, program: &Path, arg: &str, verified: &Verified) -> Result<Golden, ProviderError> {
        let base = self.lct_dir();
        let dir = base.join(&verified.root);
        let ready_file = dir.join("ready");
        let lock_path = base.join("locks").join(&verified.root);
        let _lock = Lock::acquire(&lock_path).map_err(io_at(&lock_path))?;
        if ready_file.exists() {
            return Ok(Golden { dir, size: verified.size });
        }
        let building = base.join(format!("{}.building", verified.root));
        remove_tree(&building)?;
        fs::create_dir_all(&building).map_err(io_at(&building))?;
        let result = (|| {
            let disk = building.join("disk.raw");
            let disk_s = disk.to_string_lossy().into_owned();
            let report = run_lct_image(program, &["--output", "jsonl", "restore", arg, &disk_s])
                .map_err(|e| ProviderError::Invalid(format!("image {arg}: {e}")))?;
            crate::disk_image::check_restored(arg, &report, &verified.root)?;
            // e2fsck before anything reads the file system: a damaged or hostile one is refused.
            net::check_ext4(&disk).map_err(|e| {
                ProviderError::Invalid(format!(
                    "image {arg}: its disk is not a clean ext4 file system (e2fsck -fn): {}",
                    short(&e.to_string())
                ))
            })?;
            let arch = check_arch(arg, &disk)?;
            copy_out(&disk, &building.join("root"), &building.join("mnt"))?;
            confined::refuse_links(&building.join("root"), confined::FIRST_BOOT_DIRS)
                .map_err(|e| ProviderError::Invalid(format!("image {arg}: {e}")))?;
            let ready = Ready { size: verified.size, arch };
            let text = serde_json::to_vec(&ready).expect("json");
            atomic_write(&building.join("ready"), &text, 0o644).map_err(io_at(&building))
        })();
        if let Err(e) = result {
            let _ = remove_tree(&building);
            return Err(e);
        }
        remove_tree(&dir)?;
        fs::rename(&building, &dir).map_err(io_at(&dir))?;
        Ok(Golden { dir, size: verified.size })
    }
}

/// What `lct-image info` says of an image: its manifest (pretty JSON), then a line ending
/// in `root HEX`.
#[derive(Debug)]
struct Indexed {
    root: String,
}

fn index_of(text: &str) -> Result<Indexed, String> {
    let last = text.trim_end().lines().last().unwrap_or_default();
    let root = last
        .rsplit_once("root ")
        .map(|(_, r)| r.trim().to_string())
        .ok_or_else(|| format!("no root hash in {last:?}"))?;
    check_root("", &root).map_err(|e| e.to_string())?;
    Ok(Indexed { root })
}

/// A root hash names a directory: 64 hex digits, nothing else.
fn check_root(arg: &str, root: &str) -> Result<(), ProviderError> {
    if root.len() != 64 || !root.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ProviderError::Invalid(format!("image {arg}: root hash {root:?} is not 64 hex digits")));
    }
    Ok(())
}

fn run_lct_image(program: &Path, args: &[&str]) -> Result<String, ProviderError> {
    net::run(&program.to_string_lossy(), args)
}

fn remove_tree(path: &Path) -> Result<(), ProviderError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_at(path)(e)),
        _ => Ok(()),
    }
}

/// The first lines of a long tool message.
fn short(text: &str) -> String {
    text.lines().take(6).collect::<Vec<_>>().join("; ")
}

/// The image's disk must fit the node's disk, where the node's size is known.
fn check_size(arg: &str, size: u64, disk_mib: Option<u64>) -> Result<(), ProviderError> {
    let Some(mib) = disk_mib else { return Ok(()) };
    if size > mib.saturating_mul(1 << 20) {
        return Err(ProviderError::Invalid(format!(
            "image {arg}: its disk is {} MiB, more than the node's disk of {mib} MiB",
            size.div_ceil(1 << 20)
        )));
    }
    Ok(())
}

/// This host's architecture, in dpkg's names.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        other => other,
    }
}

/// The architecture an ELF header says, in dpkg's names.
fn elf_arch(header: &[u8]) -> Option<&'static str> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return None;
    }
    let machine = match header[5] {
        1 => u16::from_le_bytes([header[18], header[19]]),
        2 => u16::from_be_bytes([header[18], header[19]]),
        _ => return None,
    };
    Some(match machine {
        62 => "amd64",
        183 => "arm64",
        3 => "i386",
        40 => "armhf",
        243 => "riscv64",
        21 => "ppc64el",
        22 => "s390x",
        _ => "unknown",
    })
}

/// A file of the image's file system, read by debugfs in user space (no mount): at most
/// the first 64 KiB.
fn read_in_image(disk: &Path, path: &str) -> Result<Vec<u8>, ProviderError> {
    let out = Command::new("debugfs").args(["-R", &format!("cat {path}"), &disk.to_string_lossy()]).output().map_err(
        |error| ProviderError::Io { what: "cannot run debugfs (scripts/setup installs e2fsprogs)".into(), error },
    )?;
    let mut bytes = out.stdout;
    bytes.truncate(64 << 10);
    Ok(bytes)
}

/// Refuses an image made for another architecture: dpkg's architecture and the ELF machine
/// of /usr/bin/env, each where present, must be this host's, and at least one must be.
fn check_arch(arg: &str, disk: &Path) -> Result<String, ProviderError> {
    let host = host_arch();
    let dpkg = String::from_utf8_lossy(&read_in_image(disk, "/var/lib/dpkg/arch")?)
        .lines()
        .next()
        .map(str::trim)
        .map(String::from);
    let elf = elf_arch(&read_in_image(disk, "/usr/bin/env")?);
    let mut said = Vec::new();
    if let Some(a) = dpkg.filter(|a| !a.is_empty()) {
        said.push(("/var/lib/dpkg/arch", a));
    }
    if let Some(a) = elf {
        said.push(("/usr/bin/env's ELF header", a.to_string()));
    }
    if said.is_empty() {
        return Err(ProviderError::Invalid(format!(
            "image {arg}: no /var/lib/dpkg/arch and no ELF /usr/bin/env: not a Debian machine's disk"
        )));
    }
    for (source, arch) in &said {
        if arch != host {
            return Err(ProviderError::Invalid(format!(
                "image {arg}: made for {arch} ({source}), this host is {host}"
            )));
        }
    }
    Ok(host.to_string())
}

/// Copies the checked disk's files out (owners, modes, xattrs, ACLs, hard links kept) from
/// a read-only, nosuid, nodev, noexec mount.
fn copy_out(disk: &Path, root: &Path, mnt: &Path) -> Result<(), ProviderError> {
    fs::create_dir_all(root).map_err(io_at(root))?;
    fs::create_dir_all(mnt).map_err(io_at(mnt))?;
    let to = format!("{}/", root.display());
    // In a mount namespace of its own (see capture.rs's COPY_IN): no machine booted
    // meanwhile keeps a copy of the mount, and the loop device clears itself at the umount.
    net::run(
        "unshare",
        &[
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            COPY_OUT,
            "lct-copy-out",
            &disk.to_string_lossy(),
            &mnt.to_string_lossy(),
            &to,
        ],
    )?;
    let _ = fs::remove_dir(mnt);
    Ok(())
}

/// Run by `sh -c` with the disk (`$1`), the mount point (`$2`) and the target (`$3`, ending
/// in `/`): a read-only, nosuid, nodev, noexec mount without the journal replayed.
const COPY_OUT: &str = r#"set -e
mount -t ext4 -o loop,ro,nosuid,nodev,noexec,noload "$1" "$2"
trap 'umount "$2"' EXIT
rsync -aHAX --numeric-ids "$2/" "$3"
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn elf_headers_name_their_architecture() {
        let mut amd64 = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0".to_vec();
        amd64.extend([62, 0]);
        assert_eq!(super::elf_arch(&amd64), Some("amd64"));
        let mut arm64 = amd64.clone();
        arm64[18] = 183;
        assert_eq!(super::elf_arch(&arm64), Some("arm64"));
        assert_eq!(super::elf_arch(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn the_root_hash_is_read_from_info_and_must_be_hex() {
        let root = "ab".repeat(32);
        let text = format!("{{\n  \"size\": 16\n}}\n4 extents (1 data, 3 zero), root {root}\n");
        assert_eq!(super::index_of(&text).unwrap().root, root);
        assert!(super::index_of("4 extents, root ../../etc").is_err());
        assert!(super::index_of("nothing").is_err());
    }

    #[test]
    fn an_image_larger_than_the_disk_is_refused() {
        assert!(super::check_size("r::x", 4 << 30, Some(4096)).is_ok());
        let e = super::check_size("r::x", 4 << 30, Some(2048)).unwrap_err().to_string();
        assert!(e.contains("4096 MiB") && e.contains("2048 MiB") && e.contains("r::x"), "{e}");
    }
}
