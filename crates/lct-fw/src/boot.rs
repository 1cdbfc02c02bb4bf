//! The firewall from the first packet after boot: every sync of a host's own firewall is
//! saved on its disk, and `lct-fw boot` (the `lct-fw-boot.service` unit, ordered before the
//! network as Debian's nftables.service is) loads it again. Failing closed: with no saved
//! ruleset, or one that cannot be read, it loads a default-deny table that admits SSH from
//! the admin prefixes only, never leaving the node open.
//!
//! Only the host's own network namespace (PID 1's) is saved: a sync of a namespace node
//! from the controller (`lct-fw push`, `ip netns exec`) is not this host's boot firewall.

use std::io;
use std::path::{Path, PathBuf};

use lct_core::prefix::Prefix;
use lct_core::record::Name;
use serde::{Deserialize, Serialize};

use crate::model::Mode;
use crate::report::Applied;
use crate::ruleset::Ruleset;
use crate::sync::Backend;
use crate::{iptables, nft};

/// Where the saved firewall is kept (`LCT_FW_SAVED_DIR` moves it, for tests).
pub const SAVED_DIR: &str = "/var/lib/lct/fw";
/// The first line of a saved file, naming its format.
const FORMAT: &str = "lct-fw saved 1";

/// What the next boot loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum Saved {
    /// The ruleset last applied (and confirmed), with the backend that applied it.
    Applied { backend: SavedBackend, ruleset: Ruleset },
    /// `lct-fw remove` took lct's firewall off on purpose: the boot loads nothing.
    Removed,
}

/// [`Backend`], as saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SavedBackend {
    Nft,
    Iptables,
}

impl From<Backend> for SavedBackend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Nft => SavedBackend::Nft,
            Backend::Iptables => SavedBackend::Iptables,
        }
    }
}

/// Where SSH is admitted from when nothing else can be read: kept apart from the ruleset (a
/// small file, rewritten with it), so a damaged ruleset still leaves the admin network in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admin {
    pub admin_cidrs: Vec<Prefix>,
    pub ssh_port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{path}: {error}")]
    Io { path: String, error: io::Error },
    #[error("loading the default-deny table: {0}")]
    Fallback(io::Error),
}

/// What `lct-fw boot` did, for its log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Booted {
    /// The saved ruleset is in place.
    Saved { node: Name, rules: usize },
    /// The default-deny table is in place, for this reason.
    DefaultDeny { reason: String, admin: Admin },
    /// lct's firewall was removed on purpose: nothing loaded.
    Removed,
}

/// The directory of the saved files.
pub fn saved_dir() -> PathBuf {
    std::env::var_os("LCT_FW_SAVED_DIR").filter(|d| !d.is_empty()).map(PathBuf::from).unwrap_or(SAVED_DIR.into())
}

fn ruleset_path(dir: &Path) -> PathBuf {
    dir.join("saved.json")
}

fn admin_path(dir: &Path) -> PathBuf {
    dir.join("admin.json")
}

/// Whether this thread runs in the host's own network namespace (PID 1's): only then is
/// what it applies the host's firewall, to load at the host's boot.
pub fn in_hosts_own_netns() -> bool {
    use std::os::unix::fs::MetadataExt;
    let inode = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    match (inode("/proc/thread-self/ns/net"), inode("/proc/1/ns/net")) {
        (Ok(mine), Ok(init)) => mine == init,
        // PID 1's namespace hidden from us: not root, so not a node's sync either.
        _ => false,
    }
}

/// Saves what the next boot loads, when this is the host's own firewall; `Ok(false)` (nothing
/// written) for a namespace that is not the host's.
pub fn save(saved: &Saved) -> Result<bool, BootError> {
    if !in_hosts_own_netns() {
        return Ok(false);
    }
    save_in(&saved_dir(), saved)?;
    Ok(true)
}

/// Saves what is applied now (after `lct-fw confirm` kept it).
pub fn save_applied_now() -> Result<bool, BootError> {
    match nft::last_applied() {
        Some(ruleset) => save(&Saved::Applied { backend: SavedBackend::Nft, ruleset }),
        None => Ok(false),
    }
}

fn save_in(dir: &Path, saved: &Saved) -> Result<(), BootError> {
    let io_at = |p: &Path| {
        let path = p.display().to_string();
        move |error| BootError::Io { path, error }
    };
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    if let Saved::Applied { ruleset, .. } = saved {
        let admin = Admin { admin_cidrs: ruleset.admin_cidrs.clone(), ssh_port: ruleset.ssh_port };
        let path = admin_path(dir);
        let text = serde_json::to_string(&admin).expect("serializes") + "\n";
        lct_core::fsutil::atomic_write(&path, text.as_bytes(), 0o600).map_err(io_at(&path))?;
    }
    let path = ruleset_path(dir);
    let text = format!("{FORMAT}\n{}\n", serde_json::to_string(saved).expect("serializes"));
    lct_core::fsutil::atomic_write(&path, text.as_bytes(), 0o600).map_err(io_at(&path))
}

/// Reads the saved file; the error says why it cannot be used.
fn read_saved(dir: &Path) -> Result<Saved, String> {
    let path = ruleset_path(dir);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let body = text
        .strip_prefix(FORMAT)
        .and_then(|rest| rest.strip_prefix('\n'))
        .ok_or_else(|| format!("{}: not a file lct-fw saved (its first line is not {FORMAT:?})", path.display()))?;
    serde_json::from_str(body.trim_end()).map_err(|e| format!("{}: line 2: {e}", path.display()))
}

/// The admin network to keep SSH open to; SSH on 22 from anywhere when it is unknown, so
/// the node stays reachable for the push that puts its firewall back.
fn read_admin(dir: &Path) -> Admin {
    let path = admin_path(dir);
    let admin = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Admin>(&b).ok());
    match admin {
        Some(a) if !a.admin_cidrs.is_empty() && a.ssh_port != 0 => a,
        _ => Admin {
            admin_cidrs: ["0.0.0.0/0", "::/0"].iter().map(|p| p.parse().expect("valid prefix")).collect(),
            ssh_port: admin.map(|a| a.ssh_port).filter(|p| *p != 0).unwrap_or(22),
        },
    }
}

/// The table loaded when the saved ruleset cannot be: default-deny (loopback, replies,
/// ICMP), SSH from the admin prefixes, nothing else.
pub fn default_deny(node: Name, admin: &Admin) -> Ruleset {
    Ruleset {
        cluster: node.clone(),
        node,
        mode: Mode::DefaultDeny,
        ssh_port: admin.ssh_port,
        admin_cidrs: admin.admin_cidrs.clone(),
        rules: Vec::new(),
        managed: Vec::new(),
    }
}

/// Loads the saved firewall, or the default-deny table when it cannot be read or applied.
/// `node` names the default-deny table's node (the host name).
pub fn boot(node: Name) -> Result<Booted, BootError> {
    boot_from(&saved_dir(), node)
}

fn boot_from(dir: &Path, node: Name) -> Result<Booted, BootError> {
    let reason = match read_saved(dir) {
        Ok(Saved::Removed) => return Ok(Booted::Removed),
        Ok(Saved::Applied { backend, ruleset }) => {
            let applied = match backend {
                SavedBackend::Nft => nft::sync(&ruleset, true),
                SavedBackend::Iptables => iptables::sync(&ruleset),
            };
            match applied {
                Ok(Applied::Table | Applied::Elements { .. } | Applied::Unchanged) => {
                    return Ok(Booted::Saved { node: ruleset.node.clone(), rules: ruleset.rules.len() });
                }
                Err(e) => format!("applying the saved ruleset: {e}"),
            }
        }
        Err(why) => why,
    };
    let admin = read_admin(dir);
    nft::sync(&default_deny(node, &admin), true).map_err(BootError::Fallback)?;
    Ok(Booted::DefaultDeny { reason, admin })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ruleset() -> Ruleset {
        serde_json::from_str(
            r#"{"node":"n1","cluster":"zk","mode":"managed-ports","ssh_port":2222,"admin_cidrs":["192.0.2.0/24"],
                "rules":[{"name":"r0","comment":"zk peers","ports":["2181/tcp"],"peers_v4":["192.168.128.2"]}],
                "managed":["2181/tcp"]}"#,
        )
        .unwrap()
    }

    #[test]
    fn saved_files_round_trip_and_anything_else_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let saved = Saved::Applied { backend: SavedBackend::Nft, ruleset: ruleset() };
        save_in(dir.path(), &saved).unwrap();
        assert_eq!(read_saved(dir.path()).unwrap(), saved);
        assert_eq!(
            read_admin(dir.path()),
            Admin { admin_cidrs: vec!["192.0.2.0/24".parse().unwrap()], ssh_port: 2222 }
        );

        // Torn, foreign or missing: a reason naming the file, never a ruleset.
        let path = ruleset_path(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert!(read_saved(dir.path()).unwrap_err().contains("saved.json: line 2:"));
        std::fs::write(&path, "{}").unwrap();
        assert!(read_saved(dir.path()).unwrap_err().contains("not a file lct-fw saved"));
        std::fs::remove_file(&path).unwrap();
        assert!(read_saved(dir.path()).unwrap_err().contains("No such file"));

        // Removed on purpose stays removed; the admin network is still known.
        save_in(dir.path(), &Saved::Removed).unwrap();
        assert_eq!(read_saved(dir.path()).unwrap(), Saved::Removed);
        assert_eq!(read_admin(dir.path()).ssh_port, 2222);
    }

    #[test]
    fn with_no_admin_network_known_ssh_stays_reachable_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let admin = read_admin(dir.path());
        assert_eq!(admin.ssh_port, 22);
        let rs = default_deny("n1".parse().unwrap(), &admin);
        let text = rs.to_nft();
        assert!(text.contains("policy drop;"), "{text}");
        assert!(text.contains("ip saddr 0.0.0.0/0 tcp dport 22 accept"), "{text}");
        assert!(text.contains("ip6 saddr ::/0 tcp dport 22 accept"), "{text}");
        assert!(rs.rules.is_empty() && rs.managed.is_empty());
    }
}
