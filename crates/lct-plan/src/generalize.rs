//! Generalizing a bake node's disk before it is imaged, the way virt-sysprep and
//! `cloud-init clean` do: everything that made the bake node one machine (its identity,
//! keys, logs, caches, anyone's traces) goes, so that every node made from the image is
//! itself; and the check, on the captured disk, that no secret of the plan is in it.

use std::io::Read;
use std::path::Path;

/// Run on the bake node as `sh -c GENERALIZE` with no argument: nothing from a plan or a
/// node goes into its text or its arguments. Each line says what it removes; none fails
/// the script when there is nothing to remove. The node is stopped right after it.
pub const GENERALIZE: &str = r#"set -u
# Identity: systemd makes a new machine-id at the next boot of an empty file (Debian's cloud
# images ship it so); D-Bus's copy follows it.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id /var/lib/systemd/random-seed /var/lib/systemd/credential.secret
# SSH host keys: each node gets its own (lct pins them), never the bake node's.
rm -f /etc/ssh/ssh_host_*
# cloud-init runs again as on a first boot: instance state, logs and the bake node's seed.
if command -v cloud-init >/dev/null; then cloud-init clean --logs --seed >/dev/null 2>&1; fi
rm -rf /var/lib/cloud/instances /var/lib/cloud/instance /var/lib/cloud/data /var/lib/cloud/seed /var/lib/cloud/sem
# A bake node made from an lct image may have booted without cloud-init (lct_api's
# native_boot): its files go, so nodes from this image run cloud-init where user-data asks.
rm -rf /etc/systemd/system/lct-cloud-init.service.d/lct-native.conf /usr/local/lib/lct/native-boot \
  /etc/systemd/system-generators/cloud-init-generator
# lct's masks of systemd generators that do nothing in a container (lct_api's generators):
# links to /dev/null only (a plan's own file of that name stays); every node gets them again.
for g in cryptsetup debug gpt-auto hibernate-resume integritysetup run system-update veritysetup; do
  f=/etc/systemd/system-generators/systemd-$g-generator
  if [ "$(readlink "$f")" = /dev/null ]; then rm -f "$f"; fi
done
# apt: package lists and downloaded packages (a node from the image installs nothing; lists
# from the bake's mirror would be stale).
apt-get clean >/dev/null 2>&1
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/cache/debconf/*-old
# Logs: rotated ones removed, the others emptied (services keep their files open);
# the journal's files removed.
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' -o -name '*.journal' -o -name '*.journal~' \) -delete 2>/dev/null
find /var/log -type f -exec truncate -s 0 {} + 2>/dev/null
# Who did what: shell and tool histories, SSH access given to the bake.
for home in /root /home/*; do
  rm -f "$home/.bash_history" "$home/.python_history" "$home/.lesshst" "$home/.viminfo" \
    "$home/.wget-hsts" "$home/.ssh/authorized_keys" "$home/.ssh/known_hosts"
  rm -rf "$home/.cache"
done
# Temporary files, and the node's leases.
find /tmp /var/tmp -mindepth 1 -delete 2>/dev/null
rm -f /var/lib/dhcp/*.leases
# lct's node-side state: the saved firewall, DNS keys (lct's programs themselves stay).
rm -rf /var/lib/lct/fw /etc/lct/*.key
sync
echo generalized
"#;

/// Whether any of `secrets` is in the file at `path` (a captured disk, read whole: a value
/// in a deleted file's blocks counts too): the indexes of those found. A value shorter than
/// 8 bytes is not looked for (it would match by chance).
pub fn secrets_in(path: &Path, secrets: &[String]) -> std::io::Result<Vec<usize>> {
    let finders: Vec<(usize, memchr::memmem::Finder)> = secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.len() >= 8)
        .map(|(i, s)| (i, memchr::memmem::Finder::new(s.as_bytes()).into_owned()))
        .collect();
    let mut found = Vec::new();
    if finders.is_empty() {
        return Ok(found);
    }
    let overlap = secrets.iter().map(String::len).max().unwrap_or(0).saturating_sub(1);
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 8 << 20];
    // The last `overlap` bytes of a block stay for the next: a value across two is found.
    let mut kept = 0;
    loop {
        let n = file.read(&mut buf[kept..])?;
        if n == 0 {
            break;
        }
        let end = kept + n;
        for (i, finder) in &finders {
            if !found.contains(i) && finder.find(&buf[..end]).is_some() {
                found.push(*i);
            }
        }
        kept = overlap.min(end);
        buf.copy_within(end - kept..end, 0);
    }
    found.sort_unstable();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_takes_nothing_from_outside_and_removes_what_identifies_a_node() {
        for must in [
            ": > /etc/machine-id",
            "/var/lib/dbus/machine-id",
            "rm -f /etc/ssh/ssh_host_*",
            "cloud-init clean --logs --seed",
            "/var/lib/apt/lists/*",
            "truncate -s 0",
            ".bash_history",
            ".ssh/authorized_keys",
            "find /tmp /var/tmp -mindepth 1 -delete",
            "/var/lib/lct/fw",
        ] {
            assert!(GENERALIZE.contains(must), "{must}");
        }
        // Every generator mask lct writes into a machine is removed.
        for name in lct_api::local::CONTAINER_GENERATOR_MASKS {
            let short = name.trim_start_matches("systemd-").trim_end_matches("-generator");
            assert!(GENERALIZE.contains(&format!(" {short} ")) || GENERALIZE.contains(&format!(" {short};")), "{name}");
        }
        assert!(GENERALIZE.contains(&format!("/{}/systemd-$g-generator", lct_api::local::GENERATORS_DIR)));
        // No positional parameter or expansion of anything a plan or node gave.
        assert!(!GENERALIZE.contains("$1") && !GENERALIZE.contains("$@") && !GENERALIZE.contains("$LCT"));
    }

    #[test]
    fn the_script_is_valid_shell() {
        let out = std::process::Command::new("sh").args(["-n", "-c", GENERALIZE]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn secrets_are_found_anywhere_on_a_disk_even_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.raw");
        let secret = "s3cretVALUEabcdefghijklm".to_string();
        let mut bytes = vec![0u8; (8 << 20) * 2 + 100];
        // Across the first read's end: half in one block, half in the next.
        let at = (8 << 20) - 10;
        bytes[at..at + secret.len()].copy_from_slice(secret.as_bytes());
        std::fs::write(&disk, &bytes).unwrap();
        let absent = "notthereatall123".to_string();
        let short = "\0\0\0".to_string();
        assert_eq!(secrets_in(&disk, &[absent.clone(), secret.clone(), short]).unwrap(), vec![1]);
        assert_eq!(secrets_in(&disk, &[absent]).unwrap(), Vec::<usize>::new());
    }
}
