//! A signed zone's keys as a set with roles and timestamps (Knot's model): each key is
//! published, ready, active, retire-active, retired and removed at the times its file
//! records, so what signs what at a given moment follows from the clock alone. Kept in the
//! state directory (`dnssec/ZONE.json`, mode 0600, changed under a lock file so the server
//! and `lct-dns roll`/`ds-seen` never lose each other's change); the single-key file of
//! earlier versions is read as a CSK and rewritten in this form.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::zonekeys::{KeyAlgorithm, KeyError, ZoneKey, ds_file, key_file};

/// What a key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Key signing key (flags 257): signs the DNSKEY set (and CDS/CDNSKEY); its DS is at the parent.
    Ksk,
    /// Zone signing key (flags 256): signs everything else.
    Zsk,
    /// Combined signing key (flags 257): both.
    Csk,
}

impl Role {
    pub fn flags(self) -> u16 {
        match self {
            Role::Zsk => 256,
            Role::Ksk | Role::Csk => 257,
        }
    }

    /// Whether its DS is at the parent (a rollover of it involves the parent).
    pub fn is_ksk(self) -> bool {
        matches!(self, Role::Ksk | Role::Csk)
    }
}

/// Where a key is in its life at a moment, as Knot names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyState {
    /// Made, not yet in the DNSKEY set.
    Created,
    /// In the DNSKEY set, not yet known to every cache.
    Published,
    /// Known to every cache: a ZSK may sign; a KSK's DS may go to the parent (CDS shown).
    Ready,
    /// Signing.
    Active,
    /// A KSK or CSK whose successor's DS is at the parent: still signing while caches
    /// may hold the old DS.
    RetireActive,
    /// Still in the DNSKEY set, signing nothing (caches may hold its signatures).
    Retired,
    /// Gone from the DNSKEY set; dropped from the file.
    Removed,
}

/// A key's timestamps (Unix seconds); `None`: not scheduled yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    pub created: u64,
    pub publish: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_active: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<u64>,
}

impl Timing {
    /// Every timestamp set, in life order.
    pub fn all(&self) -> impl Iterator<Item = u64> {
        [Some(self.publish), self.ready, self.active, self.retire_active, self.retire, self.remove]
            .into_iter()
            .flatten()
    }

    pub fn state_at(&self, now: u64) -> KeyState {
        let passed = |t: Option<u64>| t.is_some_and(|t| t <= now);
        if passed(self.remove) {
            KeyState::Removed
        } else if passed(self.retire) {
            KeyState::Retired
        } else if passed(self.retire_active) {
            KeyState::RetireActive
        } else if passed(self.active) {
            KeyState::Active
        } else if passed(self.ready) {
            KeyState::Ready
        } else if self.publish <= now {
            KeyState::Published
        } else {
            KeyState::Created
        }
    }
}

/// One key as the file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    pub role: Role,
    #[serde(flatten)]
    pub timing: Timing,
    /// The private key, PKCS#8, base64.
    pub pkcs8: String,
}

/// What an operator asked for, done by the server at its next look (it knows the zone's
/// TTLs): `lct-dns roll`, `lct-dns ds-seen`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requests {
    /// Start a rollover of this role now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roll: Vec<Role>,
    /// When the operator saw the new DS at the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ds_seen: Option<u64>,
}

/// A zone's key file (version 2: several keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingFile {
    pub zone: String,
    pub algorithm: KeyAlgorithm,
    pub keys: Vec<StoredKey>,
    /// The last time the server looked at the keys (a clock far past it is suspect).
    #[serde(default)]
    pub last_step: u64,
    #[serde(default)]
    pub requests: Requests,
}

/// The one-key file of earlier versions: a CSK, active since it was made.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OldKeyFile {
    zone: String,
    algorithm: KeyAlgorithm,
    flags: u16,
    created: u64,
    pkcs8: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AnyKeyFile {
    Ring(RingFile),
    Old(OldKeyFile),
}

/// A key of the ring, loaded.
#[derive(Debug)]
pub struct RingKey {
    pub role: Role,
    pub timing: Timing,
    pub key: ZoneKey,
}

impl RingKey {
    pub fn state_at(&self, now: u64) -> KeyState {
        self.timing.state_at(now)
    }
}

/// A zone's keys, loaded: what signs, and what the parent is asked for, at each moment.
#[derive(Debug)]
pub struct KeyRing {
    pub zone: String,
    pub algorithm: KeyAlgorithm,
    pub keys: Vec<RingKey>,
    /// The file as read (the server compares it to see an operator's change).
    pub file: RingFile,
}

/// What signs a zone at one moment.
#[derive(Debug)]
pub struct SigningPlan<'a> {
    /// The DNSKEY set.
    pub published: Vec<&'a ZoneKey>,
    /// Sign the DNSKEY, CDS and CDNSKEY sets.
    pub key_signers: Vec<&'a ZoneKey>,
    /// Sign the rest.
    pub zone_signers: Vec<&'a ZoneKey>,
    /// KSKs or CSKs whose DS the parent is asked for (CDS, CDNSKEY: RFC 7344).
    pub submitting: Vec<&'a ZoneKey>,
}

impl KeyRing {
    /// The ring of `file`, its keys decoded.
    pub fn from_file(file: RingFile) -> Result<KeyRing, KeyError> {
        let mut keys = Vec::with_capacity(file.keys.len());
        for stored in &file.keys {
            let der = data_encoding::BASE64
                .decode(stored.pkcs8.as_bytes())
                .map_err(|e| KeyError::Key { zone: file.zone.clone(), message: format!("pkcs8: {e}") })?;
            let key = ZoneKey::from_pkcs8(&file.zone, file.algorithm, stored.role.flags(), stored.timing.created, der)?;
            keys.push(RingKey { role: stored.role, timing: stored.timing, key });
        }
        Ok(KeyRing { zone: file.zone.clone(), algorithm: file.algorithm, keys, file })
    }

    /// One CSK, active since `key` was made (tests; the single key of earlier versions).
    pub fn single(zone: &str, key: ZoneKey, pkcs8: String) -> KeyRing {
        let created = key.created;
        let timing =
            Timing { created, publish: created, ready: Some(created), active: Some(created), ..Default::default() };
        let file = RingFile {
            zone: zone.to_string(),
            algorithm: key.algorithm,
            keys: vec![StoredKey { role: Role::Csk, timing, pkcs8 }],
            last_step: created,
            requests: Requests::default(),
        };
        KeyRing {
            zone: zone.to_string(),
            algorithm: key.algorithm,
            keys: vec![RingKey { role: Role::Csk, timing, key }],
            file,
        }
    }

    /// What signs at `now`; an error when nothing would (every key retired or not yet
    /// active: the zone cannot be signed, the previous version serves on). Never earlier
    /// than the last step taken: a clock gone back must not undo a step (the keys it
    /// removed are gone, the keys it made active would be only published again, and the
    /// zone left with no signer or signed by a key the parent no longer points at).
    pub fn plan(&self, now: u64) -> Result<SigningPlan<'_>, String> {
        use KeyState::*;
        let now = now.max(self.file.last_step);
        let mut plan = SigningPlan {
            published: Vec::new(),
            key_signers: Vec::new(),
            zone_signers: Vec::new(),
            submitting: Vec::new(),
        };
        for k in &self.keys {
            let state = k.state_at(now);
            if matches!(state, Created | Removed) {
                continue;
            }
            plan.published.push(&k.key);
            let signing = matches!(state, Published | Ready | Active | RetireActive);
            if k.role.is_ksk() && signing {
                // Double signature: a new KSK or CSK signs from its publication.
                plan.key_signers.push(&k.key);
            }
            if (k.role == Role::Csk && signing) || (k.role == Role::Zsk && matches!(state, Active | RetireActive)) {
                plan.zone_signers.push(&k.key);
            }
            if k.role.is_ksk() && state == Ready {
                plan.submitting.push(&k.key);
            }
        }
        if plan.key_signers.is_empty() || plan.zone_signers.is_empty() {
            return Err(format!(
                "no key is active at {now} (every key expired, retired or not yet active: {}): not signing",
                self.describe(now)
            ));
        }
        Ok(plan)
    }

    /// The DS set the parent should hold: the keys submitted if a rollover waits for it,
    /// else the active KSKs (or CSK).
    pub fn wanted_ds(&self, now: u64) -> Vec<&ZoneKey> {
        // As [`KeyRing::plan`]: a clock gone back does not undo a step.
        let now = now.max(self.file.last_step);
        let of = |want: &[KeyState]| -> Vec<&ZoneKey> {
            self.keys.iter().filter(|k| k.role.is_ksk() && want.contains(&k.state_at(now))).map(|k| &k.key).collect()
        };
        let submitting = of(&[KeyState::Ready]);
        if submitting.is_empty() { of(&[KeyState::Active]) } else { submitting }
    }

    /// `tag role state, ...` for messages.
    pub fn describe(&self, now: u64) -> String {
        let keys: Vec<String> =
            self.keys.iter().map(|k| format!("{} {:?} {:?}", k.key.tag, k.role, k.state_at(now))).collect();
        keys.join(", ")
    }
}

/// The lock file beside a zone's key file.
fn lock_file(dir: &Path, zone: &str) -> PathBuf {
    let mut path = key_file(dir, zone).into_os_string();
    path.push(".lock");
    PathBuf::from(path)
}

/// The most a key file holds: a few keys of a few hundred bytes each (a bigger one is not a
/// key file, and is not read into memory).
pub const KEY_FILE_MAX: u64 = 64 * 1024;

/// The text of the key file at `path`, opened without following a symbolic link (a link
/// would have the server read, and rewrite beside it, a file it was never given), checked on
/// the open file: a regular file, its owner's alone, at most [`KEY_FILE_MAX`] bytes.
fn read_plain(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let bad = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidData, message);
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(bad("a symbolic link: a key file must be a plain file of its own".into()));
        }
        other => other?,
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(bad("not a plain file".into()));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(bad(format!(
            "mode {:o}: a zone's private key must be its owner's alone (chmod 600)",
            mode & 0o777
        )));
    }
    let mut text = Vec::new();
    file.take(KEY_FILE_MAX + 1).read_to_end(&mut text)?;
    if text.len() as u64 > KEY_FILE_MAX {
        return Err(bad(format!("more than {KEY_FILE_MAX} bytes: not a key file")));
    }
    Ok(text)
}

/// Reads `zone`'s key file under `dir` (`None` if there is none): its mode checked (its
/// owner's alone), an old one-key file read as a CSK.
pub fn read(dir: &Path, zone: &str, algorithm: KeyAlgorithm) -> Result<Option<RingFile>, KeyError> {
    let path = key_file(dir, zone);
    let shown = path.display().to_string();
    let file_err = |message: String| KeyError::File { path: shown.clone(), message };
    let text = match read_plain(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let ds_path = ds_file(dir, zone);
            if ds_path.exists() {
                return Err(file_err(format!(
                    "missing, but a key was made for {zone} (its DS is in {}): restore the key file; \
                     or remove that file to make a new key, and replace the DS at the parent",
                    ds_path.display()
                )));
            }
            return Ok(None);
        }
        Err(e) => return Err(file_err(e.to_string())),
    };
    let file = match serde_json::from_slice(&text).map_err(|e| file_err(format!("not a key file: {e}")))? {
        AnyKeyFile::Ring(ring) => ring,
        AnyKeyFile::Old(old) => {
            if old.flags != 257 {
                return Err(file_err(format!("flags {}: a one-key file holds a CSK (257)", old.flags)));
            }
            let timing = Timing {
                created: old.created,
                publish: old.created,
                ready: Some(old.created),
                active: Some(old.created),
                ..Default::default()
            };
            RingFile {
                zone: old.zone,
                algorithm: old.algorithm,
                keys: vec![StoredKey { role: Role::Csk, timing, pkcs8: old.pkcs8 }],
                last_step: old.created,
                requests: Requests::default(),
            }
        }
    };
    if file.zone != zone {
        return Err(file_err(format!("holds the keys of {}, not {zone}", file.zone)));
    }
    if file.algorithm != algorithm {
        return Err(file_err(format!(
            "the keys are {:?} but {algorithm:?} is configured (lct-dns does not roll algorithms)",
            file.algorithm
        )));
    }
    Ok(Some(file))
}

/// Writes `file` (0600, in a directory of mode 0700) and the DS set the parent should hold
/// beside it (`ZONE.ds`: a key file gone while it is there was lost, not never made).
pub fn write(dir: &Path, ring: &KeyRing, now: u64) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let path = key_file(dir, &ring.zone);
    let file_err = |message: String| KeyError::File { path: path.display().to_string(), message };
    let parent = path.parent().expect("under a directory");
    std::fs::create_dir_all(parent)
        .and_then(|()| std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| file_err(format!("{}: {e}", parent.display())))?;
    let mut text = serde_json::to_vec_pretty(&ring.file).map_err(|e| file_err(e.to_string()))?;
    text.push(b'\n');
    lct_core::fsutil::atomic_write(&path, &text, 0o600).map_err(|e| file_err(e.to_string()))?;
    let mut ds = String::new();
    for key in ring.wanted_ds(now) {
        ds.push_str(&key.ds(&ring.zone).map_err(|e| KeyError::Key { zone: ring.zone.clone(), message: e })?);
        ds.push('\n');
    }
    lct_core::fsutil::atomic_write(&ds_file(dir, &ring.zone), ds.as_bytes(), 0o644).map_err(|e| file_err(e.to_string()))
}

/// `change` applied to `zone`'s key file under the lock, the result written if it differs
/// from what was read; the ring after it. `change` gets `None` for a zone with no keys yet.
pub fn update(
    dir: &Path,
    zone: &str,
    algorithm: KeyAlgorithm,
    now: u64,
    change: impl FnOnce(Option<RingFile>) -> Result<RingFile, KeyError>,
) -> Result<Arc<KeyRing>, KeyError> {
    let lock_path = lock_file(dir, zone);
    if let Some(parent) = lock_path.parent() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| KeyError::File { path: parent.display().to_string(), message: e.to_string() })?;
    }
    // The lock is opened for writing and made if missing: a link there would have the
    // server create or open a file elsewhere.
    if std::fs::symlink_metadata(&lock_path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(KeyError::File {
            path: lock_path.display().to_string(),
            message: "a symbolic link: the lock beside a key file must be a plain file of its own".into(),
        });
    }
    let _lock = lct_core::fsutil::Lock::acquire(&lock_path)
        .map_err(|e| KeyError::File { path: lock_path.display().to_string(), message: e.to_string() })?;
    let before = read(dir, zone, algorithm)?;
    // An old one-key file is rewritten in the several-keys form even when nothing changed.
    let migrated = before.is_some() && !is_ring_text(&key_file(dir, zone));
    let after = change(before.clone())?;
    let ring = KeyRing::from_file(after)?;
    if before.as_ref() != Some(&ring.file) || migrated {
        write(dir, &ring, now)?;
    }
    Ok(Arc::new(ring))
}

/// Whether the file at `path` is already in the several-keys form.
fn is_ring_text(path: &Path) -> bool {
    read_plain(path).ok().and_then(|t| serde_json::from_slice::<RingFile>(&t).ok()).is_some()
}

/// `zone`'s keys as the file holds them now (no change made); an error if there is none.
pub fn load(dir: &Path, zone: &str, algorithm: KeyAlgorithm) -> Result<KeyRing, KeyError> {
    match read(dir, zone, algorithm)? {
        Some(file) => KeyRing::from_file(file),
        None => Err(KeyError::File {
            path: key_file(dir, zone).display().to_string(),
            message: format!("zone {zone} has no key yet: `lct-dns serve` makes it when it first signs the zone"),
        }),
    }
}

#[cfg(test)]
#[path = "keystate_tests.rs"]
mod tests;
