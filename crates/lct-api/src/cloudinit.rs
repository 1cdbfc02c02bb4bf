//! A node's first boot: one cloud-init user-data document for both providers (Linode's
//! Metadata service takes it as `metadata.user_data`; a local machine reads it from its
//! NoCloud seed). It carries the node's host name, its SSH host key (made by lct, so the key
//! is pinned before the first connection) and the authorized keys; password logins are off.
//! A user's own user-data is kept: both go in one multipart document, merged by cloud-init.
//! From its first boot, a node's metadata service is root's alone (`bootcmd`, below).

use std::net::{Ipv4Addr, Ipv6Addr};

use lct_core::record::Name;
use lct_core::ssh::HostKey;

/// The metadata service of a cloud node, where user-data (on Linode: the node's SSH host
/// key) can be read by anyone who asks from the node. Linode answers on all three;
/// 169.254.169.254 is every cloud's.
pub const METADATA_V4: [Ipv4Addr; 1] = [Ipv4Addr::new(169, 254, 169, 254)];
pub const METADATA_V6: [Ipv6Addr; 2] =
    [Ipv6Addr::new(0xfd00, 0xa9fe, 0xa9fe, 0, 0, 0, 0, 1), Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0xa9fe, 0xa9fe)];

/// The first boot's guard of the metadata service, until lct-fw's first push replaces it
/// (lct-fw's table holds the same rules, and lct-fw-boot.service loads that table at every
/// later boot): lct's table `inet lct` with only its output chain, dropping what users other
/// than root send to the metadata service. cloud-init runs `bootcmd` before any user can log
/// in and before its later stages; it is skipped where lct's table is already loaded. A node
/// without `nft` (not Debian's or Ubuntu's cloud images, which have it) is told in
/// cloud-init's log and left as it is.
pub(crate) fn metadata_guard() -> String {
    let v4: Vec<String> = METADATA_V4.iter().map(ToString::to_string).collect();
    let v6: Vec<String> = METADATA_V6.iter().map(ToString::to_string).collect();
    format!(
        "if ! command -v nft >/dev/null 2>&1; then \
         echo 'lct: no nft on this node: its metadata service is open to every user until lct-fw is pushed' >&2; \
         elif ! nft list table inet lct >/dev/null 2>&1; then \
         printf '%s\\n' 'table inet lct {{ chain output {{ type filter hook output priority 0; policy accept; \
         ip daddr {{ {v4} }} meta skuid != 0 drop comment \"metadata: root only\"; \
         ip6 daddr {{ {v6} }} meta skuid != 0 drop comment \"metadata: root only\"; }}; }}' | nft -f -; fi",
        v4 = v4.join(", "),
        v6 = v6.join(", "),
    )
}

/// What lct puts in every node's first boot.
#[derive(Debug, Clone)]
pub struct FirstBoot {
    pub hostname: Name,
    pub host_key: HostKey,
    pub authorized_keys: Vec<String>,
    /// The user's own user-data, merged after lct's (a `#cloud-config` document, a script,
    /// anything cloud-init takes as a part).
    pub user_data: Option<String>,
    /// A whole document to use instead of lct's (what a Linode was sent, for the double).
    pub raw_user_data: Option<String>,
}

/// The MIME boundary; no line of a part starts with it (checked).
const BOUNDARY: &str = "==lct-first-boot-7d1f0e==";

/// Where cloud-init writes its boot's result, at the end of its final stage (every boot:
/// /run is a tmpfs); what waiting for a node's first boot looks for.
pub const RESULT_PATH: &str = "/run/cloud-init/result.json";

/// Whether cloud-init's `result.json` says the boot went without errors; else the errors.
pub fn boot_result(json: &[u8]) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Result1 {
        v1: V1,
    }
    #[derive(serde::Deserialize)]
    struct V1 {
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    let result: Result1 = serde_json::from_slice(json)
        .map_err(|e| format!("cloud-init's result.json is not what cloud-init writes: {e}"))?;
    if result.v1.errors.is_empty() {
        return Ok(());
    }
    let errors: Vec<String> =
        result.v1.errors.iter().map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string)).collect();
    Err(format!(
        "cloud-init finished with errors (its log: /var/log/cloud-init.log on the node): {}",
        errors.join("; ")
    ))
}

impl FirstBoot {
    /// lct's own `#cloud-config`.
    pub fn cloud_config(&self) -> String {
        let quoted = |s: &str| serde_json::to_string(s).expect("a string serializes");
        let mut text = String::from("#cloud-config\n");
        text.push_str(&format!("hostname: {}\n", self.hostname));
        text.push_str("preserve_hostname: false\n");
        text.push_str("ssh_pwauth: false\n");
        text.push_str("disable_root: false\n");
        text.push_str("ssh_deletekeys: true\n");
        // No `ssh_genkeytypes`: with `ssh_keys` given cloud-init makes no keys of its own, and
        // an empty list does not pass its schema (a warning in every boot's log).
        text.push_str("ssh_keys:\n");
        text.push_str(&format!("  ed25519_private: {}\n", quoted(&self.host_key.private)));
        text.push_str(&format!("  ed25519_public: {}\n", quoted(&self.host_key.public)));
        text.push_str("ssh_authorized_keys:\n");
        for key in &self.authorized_keys {
            text.push_str(&format!("  - {}\n", quoted(key)));
        }
        text.push_str("users: [root]\n");
        text.push_str("chpasswd: {expire: false}\n");
        text.push_str("locale: C.UTF-8\n");
        text.push_str(&format!("bootcmd:\n  - {}\n", quoted(&metadata_guard())));
        text
    }

    /// The whole user-data: lct's cloud-config alone, or a multipart document with the
    /// user's part after it (cloud-init merges cloud-config parts, lists appended).
    pub fn user_data(&self) -> String {
        if let Some(raw) = &self.raw_user_data {
            return raw.clone();
        }
        let Some(user) = self.user_data.as_deref().filter(|u| !u.trim().is_empty()) else {
            return self.cloud_config();
        };
        let mut parts = vec![(content_type(&self.cloud_config()), self.cloud_config())];
        parts.push((content_type(user), user.to_string()));
        let mut text = format!("Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\nMIME-Version: 1.0\n\n");
        for (kind, body) in parts {
            debug_assert!(!body.lines().any(|l| l.starts_with(&format!("--{BOUNDARY}"))));
            text.push_str(&format!("--{BOUNDARY}\nContent-Type: {kind}; charset=\"utf-8\"\nMIME-Version: 1.0\n"));
            if kind == "text/cloud-config" {
                text.push_str("Merge-Type: list(append)+dict(no_replace,recurse_list)+str()\n");
            }
            text.push('\n');
            text.push_str(&body);
            if !body.ends_with('\n') {
                text.push('\n');
            }
        }
        text.push_str(&format!("--{BOUNDARY}--\n"));
        text
    }

    /// NoCloud's meta-data.
    pub fn meta_data(&self, instance_id: &str) -> String {
        format!("instance-id: {instance_id}\nlocal-hostname: {}\n", self.hostname)
    }
}

/// The MIME type cloud-init gives a part by its first line.
fn content_type(part: &str) -> &'static str {
    let first = part.lines().next().unwrap_or_default();
    if first.starts_with("#cloud-config") {
        "text/cloud-config"
    } else if first.starts_with("#!") {
        "text/x-shellscript"
    } else if first.starts_with("#include") {
        "text/x-include-url"
    } else if first.starts_with("#cloud-boothook") {
        "text/cloud-boothook"
    } else {
        "text/plain"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_init_results_with_errors_are_refused_naming_them() {
        let ok = br#"{"v1": {"datasource": "DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud]", "errors": []}}"#;
        assert_eq!(boot_result(ok), Ok(()));
        let failed =
            br#"{"v1": {"datasource": null, "errors": ["('scripts_user', RuntimeError('Runparts: 1 failures'))"]}}"#;
        let err = boot_result(failed).unwrap_err();
        assert!(err.contains("scripts_user") && err.contains("errors"), "{err}");
        let err = boot_result(b"not json").unwrap_err();
        assert!(err.contains("result.json"), "{err}");
    }

    fn boot(user: Option<&str>) -> FirstBoot {
        FirstBoot {
            hostname: "zk-1".parse().unwrap(),
            host_key: HostKey {
                private: "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n".into(),
                public: "ssh-ed25519 AAAAhost".into(),
            },
            authorized_keys: vec!["ssh-ed25519 AAAAlct lct".into()],
            user_data: user.map(String::from),
            raw_user_data: None,
        }
    }

    #[test]
    fn lct_alone_is_plain_cloud_config_with_keys_and_no_passwords() {
        let text = boot(None).user_data();
        assert!(text.starts_with("#cloud-config\n"));
        assert!(text.contains("ssh_pwauth: false\n"));
        assert!(text.contains("hostname: zk-1\n"));
        assert!(text.contains("ed25519_private: \"-----BEGIN OPENSSH PRIVATE KEY-----\\nabc\\n"), "{text}");
        assert!(text.contains("  - \"ssh-ed25519 AAAAlct lct\"\n"));
    }

    #[test]
    fn a_users_user_data_is_merged_not_dropped() {
        let text = boot(Some("#!/bin/sh\necho hello > /tmp/x\n")).user_data();
        assert!(text.starts_with("Content-Type: multipart/mixed;"));
        assert!(text.contains("Content-Type: text/cloud-config"));
        assert!(text.contains("Content-Type: text/x-shellscript"));
        assert!(text.contains("echo hello > /tmp/x\n"));
        assert!(text.trim_end().ends_with(&format!("--{BOUNDARY}--")));
        let config = boot(Some("#cloud-config\npackages: [htop]\n")).user_data();
        assert_eq!(config.matches("Content-Type: text/cloud-config").count(), 2);
        assert!(config.contains("packages: [htop]"));
    }

    #[test]
    fn the_first_boot_keeps_the_metadata_service_roots() {
        let config: serde_json::Value = serde_norway::from_str(&boot(None).cloud_config()).unwrap();
        let bootcmd = config["bootcmd"].as_array().expect("a bootcmd list");
        let guard = bootcmd[0].as_str().expect("one shell command");
        assert_eq!(guard, metadata_guard(), "the YAML reads back as the script");
        for address in ["169.254.169.254", "fd00:a9fe:a9fe::1", "fe80::a9fe:a9fe"] {
            assert!(guard.contains(address), "{guard}");
        }
        assert!(guard.contains("meta skuid != 0 drop"), "{guard}");
        if let Some(path) = std::env::var_os("LCT_PRINT_METADATA_GUARD") {
            std::fs::write(path, guard).unwrap();
        }
    }
}
