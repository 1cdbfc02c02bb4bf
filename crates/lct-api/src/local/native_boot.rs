//! A first boot without cloud-init, for a machine made from an lct image with no user-data
//! of its own: the fast path of machines from golden images (issue 22's scale target).
//!
//! cloud-init's Python start was most of such a boot's CPU (0.33-0.65 s of about 1 s a
//! machine), and all it did there lct had already done: before the boot lct writes the host
//! name, the hosts file, the machine id, the SSH host key (made on the controller and pinned
//! there, never learnt from the network) and root's authorized keys into the machine's own
//! overlay layer (see [`super::machine`]). What is left for the boot is small and native:
//! the metadata service's guard (`bootcmd` in lct's cloud-config, the same shell) and
//! cloud-init's result file, which waiting for a node looks for (every boot: `/run` is a
//! tmpfs). So lct's unit `lct-cloud-init.service` gets a drop-in running [`NATIVE_BOOT`]
//! (a shell script) in place of cloud-init, and cloud-init's generator (a shell script
//! that runs ds-identify, another) is masked.
//!
//! These files are in the machine's upper layer only, written by lct; generalizing a node
//! for a bake removes them (lct-plan's GENERALIZE), so an image made from such a machine
//! boots with cloud-init again wherever user-data asks for it. A machine with user-data, a
//! machine from the base root, a Linode double's instance (its whole document) and an image
//! without lct's unit (not made from lct's base root) keep cloud-init.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use lct_core::fsutil::atomic_write;

use super::confined;
use super::images::io_at;
use crate::ProviderError;
use crate::cloudinit::{FirstBoot, RESULT_PATH, metadata_guard};

/// lct's unit that runs cloud-init's stages in the base root (see [`super::images`]).
pub const UNIT: &str = "etc/systemd/system/lct-cloud-init.service";
/// The drop-in that runs [`NATIVE_BOOT`] in its place.
pub const DROP_IN: &str = "etc/systemd/system/lct-cloud-init.service.d/lct-native.conf";
/// The native first boot's script.
pub const SCRIPT: &str = "usr/local/lib/lct/native-boot";
/// cloud-init's generator, masked (a link to /dev/null overrides /lib's).
pub const GENERATOR_MASK: &str = "etc/systemd/system-generators/cloud-init-generator";

const DROP_IN_TEXT: &str = "# lct: a machine from an lct image with no user-data boots without cloud-init
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=
ExecStart=/bin/sh /usr/local/lib/lct/native-boot
";

/// The script: the metadata service's guard, then cloud-init's result, naming an error.
fn script() -> String {
    format!(
        "#!/bin/sh\n# lct's first boot of a machine from an lct image (no cloud-init: lct wrote its identity\n\
         # before the boot). The metadata service's guard, then the result waiting looks for.\n\
         errors='[]'\n\
         ( {guard} ) || errors='[\"lct native boot: the metadata guard failed\"]'\n\
         mkdir -p /run/cloud-init\n\
         printf '{{\"v1\": {{\"datasource\": \"lct (native first boot)\", \"errors\": %s}}}}\\n' \"$errors\" > {RESULT_PATH}.tmp\n\
         mv -f {RESULT_PATH}.tmp {RESULT_PATH}\n",
        guard = metadata_guard(),
    )
}

/// Whether the native first boot is allowed: `LCT_LOCAL_FIRST_BOOT=cloud-init` keeps
/// cloud-init for every machine (the path before, for benchmarks side by side and for
/// anyone who wants cloud-init's own boot on machines from images).
pub fn chosen() -> bool {
    std::env::var("LCT_LOCAL_FIRST_BOOT").map_or(true, |v| v != "cloud-init")
}

/// Whether a machine with this first boot over this root boots natively: no user-data of
/// the user's or a whole document of the Linode double's, and lct's unit in the image.
pub fn applies(root: &Path, boot: &FirstBoot) -> bool {
    boot.raw_user_data.is_none()
        && boot.user_data.as_deref().is_none_or(|u| u.trim().is_empty())
        && fs::symlink_metadata(root.join(UNIT)).is_ok_and(|m| m.is_file())
}

/// Writes the drop-in, the script and the generator's mask into the machine's root (through
/// real directories only: [`confined`]).
pub fn write(root: &Path) -> Result<(), ProviderError> {
    let put = |rel: &str, text: &str, mode: u32| -> Result<(), ProviderError> {
        let path = confined::file(root, rel)?;
        atomic_write(&path, text.as_bytes(), mode).map_err(io_at(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_at(&path))
    };
    put(DROP_IN, DROP_IN_TEXT, 0o644)?;
    put(SCRIPT, &script(), 0o755)?;
    let mask = confined::file(root, GENERATOR_MASK)?;
    match fs::remove_file(&mask) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_at(&mask)(e)),
        _ => {}
    }
    symlink("/dev/null", &mask).map_err(io_at(&mask))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lct_core::ssh::HostKey;

    fn boot(user: Option<&str>, raw: Option<&str>) -> FirstBoot {
        FirstBoot {
            hostname: "m-1".parse().unwrap(),
            host_key: HostKey { private: "k".into(), public: "ssh-ed25519 AAAA".into() },
            authorized_keys: vec![],
            user_data: user.map(String::from),
            raw_user_data: raw.map(String::from),
        }
    }

    #[test]
    fn only_an_lct_image_without_user_data_boots_natively() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(!applies(root, &boot(None, None)), "no lct unit: not lct's base root");
        fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
        fs::write(root.join(UNIT), "[Unit]\n").unwrap();
        assert!(applies(root, &boot(None, None)));
        assert!(applies(root, &boot(Some("  \n"), None)), "blank user-data is none");
        assert!(!applies(root, &boot(Some("#!/bin/sh\ntrue\n"), None)), "user-data: cloud-init");
        assert!(!applies(root, &boot(None, Some("#cloud-config\n"))), "the double's document: cloud-init");
    }

    #[test]
    fn the_native_files_are_written_inside_the_root_and_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root).unwrap();
        assert!(fs::read_to_string(root.join(DROP_IN)).unwrap().contains("ExecStart=\n"));
        let script = fs::read_to_string(root.join(SCRIPT)).unwrap();
        assert!(script.contains(RESULT_PATH) && script.contains("meta skuid != 0 drop"), "{script}");
        assert_eq!(fs::read_link(root.join(GENERATOR_MASK)).unwrap(), Path::new("/dev/null"));
        write(root).unwrap();
        // An image linking lct's script directory to the host's is refused, the host untouched.
        fs::remove_dir_all(root.join("usr/local/lib/lct")).unwrap();
        symlink(host.path(), root.join("usr/local/lib/lct")).unwrap();
        let e = write(root).unwrap_err().to_string();
        assert!(e.contains("symbolic link at /usr/local/lib/lct"), "{e}");
        assert!(fs::read_dir(host.path()).unwrap().next().is_none());
    }

    #[test]
    fn the_script_is_valid_shell_writing_a_result_cloud_init_would() {
        let text = script();
        let out = std::process::Command::new("sh").args(["-n", "-c", &text]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json = "{\"v1\": {\"datasource\": \"lct (native first boot)\", \"errors\": []}}";
        assert!(text.contains(&json.replace("[]", "%s")), "{text}");
        assert_eq!(crate::cloudinit::boot_result(json.as_bytes()), Ok(()));
    }
}
