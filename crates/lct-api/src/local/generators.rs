//! systemd's generators that do nothing in a container, masked in a machine's own layer so
//! its systemd does not start them at every boot (issue 22's scale target).
//!
//! systemd runs every generator it finds before it loads its units, each a process of about
//! 5 ms of CPU (measured: 20 runs of each, docs/benchmarks.md), twelve in Debian 12 with
//! cloud-init. These look only at what a container does not have: the kernel's command line
//! (a container's PID 1 is given none: debug, run), disks and firmware (gpt-auto,
//! hibernate-resume: both exit at once in a container), device-mapper tables
//! (cryptsetup, veritysetup, integritysetup: no /dev/mapper in a container) and an offline
//! update's `/system-update` link (system-update). A link to /dev/null of the same name in
//! /etc/systemd/system-generators masks one, as `native_boot` masks cloud-init's.
//!
//! Written into an overlay machine's upper layer only, never onto a disk a machine boots
//! (a Linode double's instance stands for a real computer, where these do work). A file of
//! that name the image has already (a plan's own generator) is left alone. lct-plan's
//! GENERALIZE removes lct's masks before a bake images a node, so an image is as its
//! packages made it and a disk written from it elsewhere runs every generator.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use super::confined;
use super::images::io_at;
use crate::ProviderError;

/// Where a machine's own generators (and masks of the image's) live.
pub const GENERATORS_DIR: &str = "etc/systemd/system-generators";

/// The generators masked in every overlay machine.
pub const CONTAINER_GENERATOR_MASKS: [&str; 8] = [
    "systemd-cryptsetup-generator",
    "systemd-debug-generator",
    "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator",
    "systemd-integritysetup-generator",
    "systemd-run-generator",
    "systemd-system-update-generator",
    "systemd-veritysetup-generator",
];

/// Masks [`CONTAINER_GENERATOR_MASKS`] in the machine's root (through real directories only:
/// [`confined`]); a name the image already has there is kept.
pub fn mask(root: &Path) -> Result<(), ProviderError> {
    let dir = confined::dir(root, GENERATORS_DIR)?;
    for name in CONTAINER_GENERATOR_MASKS {
        // symlink(2) makes the link itself, following nothing; the directory is real.
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&path)(e)),
        }
        symlink("/dev/null", &path).map_err(io_at(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_is_masked_once_and_what_the_image_has_is_kept() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(GENERATORS_DIR);
        fs::create_dir_all(&dir).unwrap();
        // The image's own file of one name (a plan's generator), and its own link of another:
        // kept as they are.
        fs::write(dir.join("systemd-run-generator"), "#!/bin/sh\n").unwrap();
        symlink("/usr/local/lib/own", dir.join("systemd-debug-generator")).unwrap();
        mask(root.path()).unwrap();
        mask(root.path()).unwrap(); // again: harmless
        for name in CONTAINER_GENERATOR_MASKS {
            let path = dir.join(name);
            if name == "systemd-run-generator" {
                assert_eq!(fs::read_to_string(&path).unwrap(), "#!/bin/sh\n");
            } else if name == "systemd-debug-generator" {
                assert_eq!(fs::read_link(&path).unwrap(), Path::new("/usr/local/lib/own"));
            } else {
                assert_eq!(fs::read_link(&path).unwrap(), Path::new("/dev/null"), "{name}");
            }
        }
        // Nothing of the machine's generators that do work in a container is masked.
        for kept in ["systemd-fstab-generator", "systemd-getty-generator", "systemd-sysv-generator"] {
            assert!(!dir.join(kept).exists(), "{kept}");
        }
    }

    #[test]
    fn a_link_in_the_image_never_leads_a_mask_out_of_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc/systemd")).unwrap();
        symlink(outside.path(), root.path().join(GENERATORS_DIR)).unwrap();
        assert!(mask(root.path()).is_err());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
