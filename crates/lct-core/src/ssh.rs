//! lct's own SSH trust: a client key and a known_hosts file in the state directory.
//!
//! lct makes each node's host key itself (at creation, before first boot) and records it
//! here, so `ssh` runs with `StrictHostKeyChecking=yes` against exactly that key: no trust
//! on first use. The client key (`STATE/ssh/id_ed25519`, 0600) is every node's authorized
//! key, with the operator's own keys from `LCT_SSH_AUTHORIZED_KEYS` (a file of public keys).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fsutil::{Lock, atomic_write};

/// The SSH files of one state directory.
#[derive(Debug, Clone)]
pub struct SshFiles {
    dir: PathBuf,
}

/// A host key pair, in OpenSSH's formats.
#[derive(Clone)]
pub struct HostKey {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----...`: secret; never logged.
    pub private: String,
    /// `ssh-ed25519 AAAA...` (no comment).
    pub public: String,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey").field("public", &self.public).field("private", &"<redacted>").finish()
    }
}

impl SshFiles {
    /// `STATE/ssh`.
    pub fn new(state_dir: &Path) -> SshFiles {
        SshFiles { dir: state_dir.join("ssh") }
    }

    /// Of the state directory `LCT_STATE_DIR` names.
    pub fn from_env() -> SshFiles {
        SshFiles::new(&crate::state::state_dir())
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// The client's private key (its public half beside it, `.pub`).
    pub fn identity(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// Makes lct's client key if there is none; returns its public key line.
    pub fn ensure_identity(&self) -> io::Result<String> {
        let private = self.identity();
        let public = private.with_extension("pub");
        if !private.exists() || !public.exists() {
            fs::create_dir_all(&self.dir)?;
            fs::set_permissions(&self.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
            let _lock = Lock::acquire(&self.dir.join("lock"))?;
            if !private.exists() || !public.exists() {
                let key = generate_key("lct")?;
                atomic_write(&private, key.private.as_bytes(), 0o600)?;
                atomic_write(&public, format!("{} lct\n", key.public).as_bytes(), 0o644)?;
            }
        }
        Ok(fs::read_to_string(public)?.trim().to_string())
    }

    /// The public keys a node authorizes: lct's own and the operator's
    /// (`LCT_SSH_AUTHORIZED_KEYS`, a file of public key lines).
    pub fn authorized_keys(&self) -> io::Result<Vec<String>> {
        let mut keys = vec![self.ensure_identity()?];
        if let Some(path) = std::env::var_os("LCT_SSH_AUTHORIZED_KEYS").filter(|p| !p.is_empty()) {
            let text = fs::read_to_string(&path).map_err(|e| {
                io::Error::new(e.kind(), format!("LCT_SSH_AUTHORIZED_KEYS {}: {e}", Path::new(&path).display()))
            })?;
            keys.extend(
                text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string),
            );
        }
        Ok(keys)
    }

    /// Records `public` as the one host key of `names` (a node's name and addresses),
    /// replacing whatever those names had.
    pub fn trust_host(&self, names: &[String], public: &str) -> io::Result<()> {
        self.edit_known_hosts(names, Some(public))
    }

    /// Forgets every key of `names`.
    pub fn forget_host(&self, names: &[String]) -> io::Result<()> {
        self.edit_known_hosts(names, None)
    }

    fn edit_known_hosts(&self, names: &[String], public: Option<&str>) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let _lock = Lock::acquire(&self.dir.join("lock"))?;
        let path = self.known_hosts();
        let old = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut text: String = old
            .lines()
            .filter(|l| {
                let hosts = l.split_whitespace().next().unwrap_or_default();
                !hosts.split(',').any(|h| names.iter().any(|n| n == h))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        if let Some(public) = public {
            text.push_str(&format!("{} {}\n", names.join(","), public.trim()));
        }
        if text != old {
            atomic_write(&path, text.as_bytes(), 0o644)?;
        }
        Ok(())
    }

    /// `-o` options for `ssh` to nodes: lct's key only, the host key pinned in lct's
    /// known_hosts only, no password and no prompt.
    pub fn client_options(&self) -> Vec<String> {
        vec![
            "BatchMode=yes".into(),
            "StrictHostKeyChecking=yes".into(),
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "GlobalKnownHostsFile=/dev/null".into(),
            format!("IdentityFile={}", self.identity().display()),
            "IdentitiesOnly=yes".into(),
            "PasswordAuthentication=no".into(),
            "KbdInteractiveAuthentication=no".into(),
            // A node that vanishes (deleted, its namespace gone) ends the session in 15 s
            // rather than never.
            "ServerAliveInterval=5".into(),
            "ServerAliveCountMax=3".into(),
            "LogLevel=ERROR".into(),
        ]
    }
}

/// A new ed25519 key pair from `ssh-keygen` (in a private temporary directory, removed
/// after; the private key never touches a command line).
pub fn generate_key(comment: &str) -> io::Result<HostKey> {
    let dir = crate::fsutil::temp_dir("lct-keygen.")?;
    let file = dir.path().join("key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&file)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run ssh-keygen (openssh-client): {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!("ssh-keygen: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let private = fs::read_to_string(&file)?;
    let public = fs::read_to_string(file.with_extension("pub"))?;
    let public = public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    Ok(HostKey { private, public })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_pin_one_key_per_host() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = SshFiles::new(dir.path());
        let names = |n: &str, a: &str| vec![n.to_string(), a.to_string()];
        ssh.trust_host(&names("zk-1", "203.0.113.1"), "ssh-ed25519 AAAAone").unwrap();
        ssh.trust_host(&names("zk-2", "203.0.113.2"), "ssh-ed25519 AAAAtwo").unwrap();
        // A node made again (same name, new key) replaces its line.
        ssh.trust_host(&names("zk-1", "203.0.113.1"), "ssh-ed25519 AAAAthree").unwrap();
        let text = fs::read_to_string(ssh.known_hosts()).unwrap();
        assert_eq!(text, "zk-2,203.0.113.2 ssh-ed25519 AAAAtwo\nzk-1,203.0.113.1 ssh-ed25519 AAAAthree\n");
        ssh.forget_host(&names("zk-2", "203.0.113.2")).unwrap();
        assert_eq!(fs::read_to_string(ssh.known_hosts()).unwrap(), "zk-1,203.0.113.1 ssh-ed25519 AAAAthree\n");
        assert!(ssh.client_options().contains(&"StrictHostKeyChecking=yes".to_string()));
    }

    #[test]
    fn the_client_key_is_private_and_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = SshFiles::new(dir.path());
        let first = ssh.ensure_identity().unwrap();
        assert!(first.starts_with("ssh-ed25519 "), "{first}");
        assert_eq!(ssh.ensure_identity().unwrap(), first);
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(ssh.identity()).unwrap().mode() & 0o777, 0o600);
        let key = generate_key("node").unwrap();
        assert!(format!("{key:?}").contains("<redacted>") && !format!("{key:?}").contains("PRIVATE"));
    }
}
