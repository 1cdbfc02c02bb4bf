//! lct's own SSH trust: a client key and a known_hosts file in lct's state.
//!
//! lct makes each node's host key itself (at creation, before first boot) and records it
//! here, so `ssh` runs with `StrictHostKeyChecking=yes` against exactly that key: no trust
//! on first use. The client key (`ssh/id_ed25519`, secret: 0600 in the state directory) is
//! every node's authorized key, with the operator's own keys from `LCT_SSH_AUTHORIZED_KEYS`
//! (a file of public keys). The keys live in the state store ([`crate::store`]); ssh reads
//! files, so where the store keeps none (a shared store) they are copied into a private
//! temporary directory of this process.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

pub use crate::host_key::HostKey;
use crate::store::{Expect, Key, Secrecy, SharedStore, StoreError, Txn};

/// The SSH files of one state store.
#[derive(Debug, Clone)]
pub struct SshFiles {
    store: SharedStore,
    /// Where ssh reads them: the state directory's `ssh/`, or a private copy.
    dir: PathBuf,
    _copy: Option<Arc<tempfile::TempDir>>,
}

const IDENTITY: &str = "ssh/id_ed25519";
const IDENTITY_PUB: &str = "ssh/id_ed25519.pub";
const KNOWN_HOSTS: &str = "ssh/known_hosts";

fn key(text: &str) -> Key {
    Key::new(text).expect("a fixed key")
}

fn io_err(e: StoreError) -> io::Error {
    match e {
        StoreError::Io { place, error } => io::Error::new(error.kind(), format!("{place}: {error}")),
        e => io::Error::other(e.to_string()),
    }
}

impl SshFiles {
    /// `STATE/ssh` of the state directory `state_dir`.
    pub fn new(state_dir: &Path) -> SshFiles {
        SshFiles::on(Arc::new(crate::store::local::LocalStore::new(state_dir))).expect("a local store needs no copy")
    }

    /// Of the store the environment names ([`crate::store::open`]).
    pub fn from_env() -> io::Result<SshFiles> {
        SshFiles::on(crate::store::open().map_err(io_err)?)
    }

    /// Of the store the environment names when `LCT_STATE` names one, else of `state_dir`
    /// (a provider's own directory, as the tests give it).
    pub fn of_state_or(state_dir: &Path) -> io::Result<SshFiles> {
        match std::env::var(crate::store::STATE_ENV) {
            Ok(spec) if !spec.is_empty() => SshFiles::from_env(),
            _ => Ok(SshFiles::new(state_dir)),
        }
    }

    /// Of `store`: its own files, or a private copy of them made now.
    pub fn on(store: SharedStore) -> io::Result<SshFiles> {
        if let Some(path) = store.local_path(&key(IDENTITY)) {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            return Ok(SshFiles { store, dir, _copy: None });
        }
        let copy = crate::fsutil::secret_temp_dir("lct-ssh.")?;
        let files = SshFiles { store, dir: copy.path().to_path_buf(), _copy: Some(Arc::new(copy)) };
        for name in [IDENTITY, IDENTITY_PUB, KNOWN_HOSTS] {
            files.copy_out(name)?;
        }
        Ok(files)
    }

    /// Refreshes the private copy of `name` (nothing when ssh reads the store's own file).
    fn copy_out(&self, name: &str) -> io::Result<()> {
        if self._copy.is_none() {
            return Ok(());
        }
        let path = self.dir.join(key(name).last());
        match self.store.get(&key(name)).map_err(io_err)? {
            Some(entry) => crate::fsutil::atomic_write(&path, &entry.value, 0o600),
            None => Ok(()),
        }
    }

    /// The local store's `ssh/` directory: private (0700), made if needed.
    fn private_dir(&self) -> io::Result<()> {
        if self._copy.is_none() {
            fs::DirBuilder::new().recursive(true).create(&self.dir)?;
            fs::set_permissions(&self.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        }
        Ok(())
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// The client's private key (its public half beside it, `.pub`).
    pub fn identity(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// Makes lct's client key if there is none; returns its public key line. Two makers
    /// at once: one key wins (made only if absent), both return it. The public line is
    /// derived from the private key (`ssh-keygen -y`), never taken from `.pub`: a missing
    /// or replaced `.pub` is written again from it, and never makes a new private key.
    pub fn ensure_identity(&self) -> io::Result<String> {
        let (private, public) = (key(IDENTITY), key(IDENTITY_PUB));
        let secret = match self.store.get(&private).map_err(io_err)? {
            Some(entry) => entry.value,
            None => {
                self.private_dir()?;
                let made = generate_key("lct")?;
                let txn =
                    Txn::new().expect(&private, Expect::Absent).put(&private, made.private.as_bytes(), Secrecy::Secret);
                match self.store.commit(&txn) {
                    Ok(_) => made.private.into_bytes(),
                    // Another made it meanwhile: theirs is the key.
                    Err(e) if e.is_conflict() => {
                        self.store
                            .get(&private)
                            .map_err(io_err)?
                            .ok_or_else(|| io::Error::other(format!("{IDENTITY}: made by another, then gone")))?
                            .value
                    }
                    Err(e) => return Err(io_err(e)),
                }
            }
        };
        let line = format!("{} lct", public_of(&secret)?);
        let want = format!("{line}\n").into_bytes();
        let now = self.store.get(&public).map_err(io_err)?;
        if now.as_ref().map(|e| &e.value) != Some(&want) {
            if now.is_some() {
                tracing::warn!("{IDENTITY_PUB} did not match {IDENTITY}: written again from the private key");
            }
            match self.store.put_if(&public, &want, Secrecy::Public, Expect::from_read(now.as_ref())) {
                Ok(_) => {}
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        self.copy_out(IDENTITY)?;
        self.copy_out(IDENTITY_PUB)?;
        Ok(line)
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
        self.private_dir()?;
        crate::store::update(&*self.store, &key(KNOWN_HOSTS), Secrecy::Public, |old| {
            let old = String::from_utf8_lossy(old.unwrap_or_default());
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
            Ok((text != old).then(|| text.into_bytes()))
        })
        .map_err(io_err)?;
        self.copy_out(KNOWN_HOSTS)
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

/// A new ed25519 key pair: made in process where lct-core has ring (the controller's
/// programs: [`crate::openssh_key`]; a machine create made one `ssh-keygen` process per
/// node), else from `ssh-keygen` (in a private temporary directory, removed after; the
/// private key never touches a command line).
pub fn generate_key(comment: &str) -> io::Result<HostKey> {
    #[cfg(feature = "native-keys")]
    return crate::openssh_key::generate(comment);
    #[cfg(not(feature = "native-keys"))]
    keygen_process(comment)
}

/// A new ed25519 key pair from a `ssh-keygen` process.
#[cfg_attr(feature = "native-keys", allow(dead_code, reason = "the fallback without ring; its test runs"))]
fn keygen_process(comment: &str) -> io::Result<HostKey> {
    let dir = crate::fsutil::secret_temp_dir("lct-keygen.")?;
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

/// The public half (`ssh-ed25519 AAAA...`, no comment) of an OpenSSH private key, from
/// `ssh-keygen -y` on a private copy (0600, in a private temporary directory, removed after).
pub fn public_of(private: &[u8]) -> io::Result<String> {
    let dir = crate::fsutil::secret_temp_dir("lct-keygen.")?;
    let file = dir.path().join("key");
    crate::fsutil::atomic_write(&file, private, 0o600)?;
    let out = Command::new("ssh-keygen")
        .args(["-y", "-f"])
        .arg(&file)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run ssh-keygen (openssh-client): {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{IDENTITY}: not a private key ssh-keygen reads: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = text.split_whitespace().take(2).collect();
    if fields.len() != 2 {
        return Err(io::Error::other(format!("{IDENTITY}: ssh-keygen -y printed no public key")));
    }
    Ok(fields.join(" "))
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
        for key in [generate_key("node").unwrap(), keygen_process("node").unwrap()] {
            assert!(key.public.starts_with("ssh-ed25519 ") && key.private.contains("OPENSSH PRIVATE KEY"));
            assert!(format!("{key:?}").contains("<redacted>") && !format!("{key:?}").contains("PRIVATE"));
            assert_eq!(public_of(key.private.as_bytes()).unwrap(), key.public);
        }
    }

    #[test]
    fn a_missing_or_foreign_public_half_never_replaces_the_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = SshFiles::new(dir.path());
        let first = ssh.ensure_identity().unwrap();
        let private = fs::read(ssh.identity()).unwrap();
        // Only the public half gone: derived again, the private key kept.
        fs::remove_file(dir.path().join("ssh/id_ed25519.pub")).unwrap();
        assert_eq!(ssh.ensure_identity().unwrap(), first);
        assert_eq!(fs::read(ssh.identity()).unwrap(), private, "the private key is kept");
        assert_eq!(fs::read_to_string(dir.path().join("ssh/id_ed25519.pub")).unwrap(), format!("{first}\n"));
        // Someone else's key put in `.pub`: not what nodes authorize; written again.
        let foreign = generate_key("attacker").unwrap();
        fs::write(dir.path().join("ssh/id_ed25519.pub"), format!("{} attacker\n", foreign.public)).unwrap();
        assert_eq!(ssh.authorized_keys().unwrap()[0], first);
        assert!(!fs::read_to_string(dir.path().join("ssh/id_ed25519.pub")).unwrap().contains(&foreign.public));
        // A private key that is none: said, naming it, nothing made over it.
        fs::write(ssh.identity(), "not a key").unwrap();
        let e = ssh.ensure_identity().unwrap_err().to_string();
        assert!(e.contains("ssh/id_ed25519") && e.contains("not a private key"), "{e}");
        assert_eq!(fs::read_to_string(ssh.identity()).unwrap(), "not a key");
    }
}
