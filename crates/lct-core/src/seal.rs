//! Secrets sealed before they are stored where others can read them (etcd is not a secret
//! store: its members, backups and snapshots hold everything in clear). ChaCha20-Poly1305
//! (ring) under a 256-bit key from a file the operators hold (`LCT_STATE_KEY`, mode 0600;
//! a file others may read is refused), a random nonce per sealing, and the value's name as
//! associated data: a sealed value moved to another name does not open.
//!
//! Layout: `LCTSEAL1` (8 bytes), the key's id (8: the first bytes of SHA-256 over a label
//! and the key, to say which key a value needs), the nonce (12), the ciphertext and tag (16).
//!
//! Values that are public but carry trust (known host keys, cluster records) are
//! *authenticated* rather than sealed: readable, and a change by anyone without the key
//! fails. Layout: `LCTAUTH1` (8), the key's id (8), HMAC-SHA256 (32) under a subkey derived
//! from the key, over the name's length, the name and the value; then the value in clear.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// The environment variable naming the key file.
pub const KEY_ENV: &str = "LCT_STATE_KEY";
/// What every sealed value starts with.
pub const MAGIC: &[u8; 8] = b"LCTSEAL1";
/// What every authenticated (public, tagged) value starts with.
pub const AUTH_MAGIC: &[u8; 8] = b"LCTAUTH1";
const ID_LEN: usize = 8;
const TAG_LEN: usize = 16;
const MAC_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("state key {path}: {why}")]
    KeyFile { path: PathBuf, why: String },
    #[error(
        "secrets on a shared store are sealed with a key file the operators share: set {KEY_ENV} to it (make one with `(umask 077; openssl rand -hex 32 > FILE)`)"
    )]
    NoKey,
    #[error("secret {name:?}: {why}")]
    Open { name: String, why: String },
    #[error(transparent)]
    Random(#[from] crate::random::RandomError),
}

/// A key that seals and opens secrets.
pub struct SealKey {
    key: LessSafeKey,
    /// The subkey that authenticates public values (never the sealing key itself).
    mac: ring::hmac::Key,
    id: [u8; ID_LEN],
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({})", self.id_hex())
    }
}

impl SealKey {
    /// The key of the file `LCT_STATE_KEY` names.
    pub fn from_env() -> Result<SealKey, SealError> {
        match std::env::var_os(KEY_ENV).filter(|v| !v.is_empty()) {
            Some(path) => SealKey::load(Path::new(&path)),
            None => Err(SealError::NoKey),
        }
    }

    /// Reads a key file: 64 hexadecimal digits (a newline may follow), for its owner alone.
    pub fn load(path: &Path) -> Result<SealKey, SealError> {
        let bad = |why: String| SealError::KeyFile { path: path.to_path_buf(), why };
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if !meta.is_file() {
            return Err(bad("not a regular file".into()));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(bad(format!(
                "others may read it (mode {:04o}): it must be the owner's alone, chmod 600",
                meta.mode() & 0o7777
            )));
        }
        if meta.len() > 1024 {
            return Err(bad("too long for a key file".into()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let hex = text.strip_suffix('\n').unwrap_or(&text);
        let bytes = decode_hex(hex).ok_or_else(|| bad("not a key: 64 hexadecimal digits expected".into()))?;
        Ok(SealKey::from_bytes(&bytes))
    }

    /// Writes a new random key to `path` (mode 0600), refusing to replace a file.
    pub fn generate(path: &Path) -> Result<SealKey, SealError> {
        let bad = |why: String| SealError::KeyFile { path: path.to_path_buf(), why };
        let bytes: [u8; 32] = crate::random::bytes()?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
                bad(if e.kind() == std::io::ErrorKind::AlreadyExists {
                    "exists: a key is never replaced".into()
                } else {
                    e.to_string()
                })
            })?;
        use std::io::Write;
        file.write_all(format!("{hex}\n").as_bytes()).and_then(|()| file.sync_all()).map_err(|e| bad(e.to_string()))?;
        Ok(SealKey::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; 32]) -> SealKey {
        let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 256-bit key"));
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"lct state key id\0");
        ctx.update(bytes);
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&ctx.finish().as_ref()[..ID_LEN]);
        let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes);
        let subkey = ring::hmac::sign(&derive, b"lct state authentication subkey\0");
        let mac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, subkey.as_ref());
        SealKey { key, mac, id }
    }

    /// The key's id in hex (says which key sealed a value, reveals nothing of it).
    pub fn id_hex(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `plain` sealed under the name `name`.
    pub fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce: [u8; NONCE_LEN] = crate::random::bytes()?;
        let mut out = Vec::with_capacity(MAGIC.len() + ID_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(name.as_bytes()), &mut body)
            .map_err(|_| SealError::Open { name: name.into(), why: "sealing failed".into() })?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The plain bytes of a value sealed under `name` (by this key).
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let bad = |why: String| SealError::Open { name: name.into(), why };
        let header = MAGIC.len() + ID_LEN + NONCE_LEN;
        if !is_sealed(sealed) || sealed.len() < header + TAG_LEN {
            return Err(bad("not a sealed value".into()));
        }
        let id = &sealed[MAGIC.len()..MAGIC.len() + ID_LEN];
        if id != self.id {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            return Err(bad(format!("sealed with key {hex}, and {KEY_ENV} holds key {}", self.id_hex())));
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[MAGIC.len() + ID_LEN..header]).expect("12 bytes");
        let mut body = sealed[header..].to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut body)
            .map_err(|_| bad("it does not open: changed, or sealed under another name".into()))?;
        Ok(plain.to_vec())
    }
}

impl SealKey {
    fn tag(&self, name: &str, value: &[u8]) -> ring::hmac::Tag {
        let mut ctx = ring::hmac::Context::with_key(&self.mac);
        ctx.update(&(name.len() as u64).to_be_bytes());
        ctx.update(name.as_bytes());
        ctx.update(value);
        ctx.sign()
    }

    /// `plain` in clear with a tag binding it to `name` and this key.
    pub fn authenticate(&self, name: &str, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(AUTH_MAGIC.len() + ID_LEN + MAC_LEN + plain.len());
        out.extend_from_slice(AUTH_MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(self.tag(name, plain).as_ref());
        out.extend_from_slice(plain);
        out
    }

    /// The value of an authenticated `tagged` if its tag holds for `name` under this key.
    pub fn verify(&self, name: &str, tagged: &[u8]) -> Result<Vec<u8>, SealError> {
        let bad = |why: String| SealError::Open { name: name.into(), why };
        let header = AUTH_MAGIC.len() + ID_LEN + MAC_LEN;
        if !is_authenticated(tagged) || tagged.len() < header {
            return Err(bad("not an authenticated value".into()));
        }
        let id = &tagged[AUTH_MAGIC.len()..AUTH_MAGIC.len() + ID_LEN];
        if id != self.id {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            return Err(bad(format!("tagged with key {hex}, and {KEY_ENV} holds key {}", self.id_hex())));
        }
        let (tag, value) = (&tagged[AUTH_MAGIC.len() + ID_LEN..header], &tagged[header..]);
        let mut ctx = Vec::with_capacity(8 + name.len() + value.len());
        ctx.extend_from_slice(&(name.len() as u64).to_be_bytes());
        ctx.extend_from_slice(name.as_bytes());
        ctx.extend_from_slice(value);
        ring::hmac::verify(&self.mac, &ctx, tag)
            .map_err(|_| bad("its tag does not hold: changed, or written under another name".into()))?;
        Ok(value.to_vec())
    }
}

/// Whether `value` is authenticated (begins with [`AUTH_MAGIC`]).
pub fn is_authenticated(value: &[u8]) -> bool {
    value.starts_with(AUTH_MAGIC)
}

/// Whether `value` is sealed (begins with [`MAGIC`]).
pub fn is_sealed(value: &[u8]) -> bool {
    value.starts_with(MAGIC)
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn seals_and_opens_only_under_its_name_and_key() {
        let dir = crate::fsutil::temp_dir("seal-test").unwrap();
        let path = dir.path().join("key");
        let key = SealKey::generate(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(SealKey::generate(&path).unwrap_err().to_string().contains("never replaced"));
        let sealed = key.seal("secrets/zk/password", b"hunter2-hunter2").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "the plain text is not in the sealed value");
        let again = SealKey::load(&path).unwrap();
        assert_eq!(again.open("secrets/zk/password", &sealed).unwrap(), b"hunter2-hunter2");
        assert_ne!(key.seal("n", b"same").unwrap(), key.seal("n", b"same").unwrap(), "a nonce per sealing");
        let moved = again.open("secrets/pg/password", &sealed).unwrap_err().to_string();
        assert!(moved.contains("does not open"), "{moved}");
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(again.open("secrets/zk/password", &flipped).is_err());
        let other = SealKey::generate(&dir.path().join("other")).unwrap();
        let wrong = other.open("secrets/zk/password", &sealed).unwrap_err().to_string();
        assert!(wrong.contains(&key.id_hex()) && wrong.contains(&other.id_hex()), "{wrong}");
        assert!(again.open("x", b"LCTSEAL1short").is_err());
    }

    #[test]
    fn authenticated_values_stay_readable_and_any_change_fails() {
        let dir = crate::fsutil::temp_dir("seal-test").unwrap();
        let key = SealKey::generate(&dir.path().join("key")).unwrap();
        let tagged = key.authenticate("lct/ssh/known_hosts", b"node-1 ssh-ed25519 AAAA\n");
        assert!(is_authenticated(&tagged) && !is_sealed(&tagged));
        assert!(tagged.ends_with(b"node-1 ssh-ed25519 AAAA\n"), "the value stays in clear");
        assert_eq!(key.verify("lct/ssh/known_hosts", &tagged).unwrap(), b"node-1 ssh-ed25519 AAAA\n");
        let moved = key.verify("other/ssh/known_hosts", &tagged).unwrap_err().to_string();
        assert!(moved.contains("does not hold"), "{moved}");
        let mut changed = tagged.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(key.verify("lct/ssh/known_hosts", &changed).is_err());
        let other = SealKey::generate(&dir.path().join("other")).unwrap();
        let forged = other.authenticate("lct/ssh/known_hosts", b"attacker");
        assert!(key.verify("lct/ssh/known_hosts", &forged).unwrap_err().to_string().contains("tagged with key"));
        assert!(key.verify("x", b"plain").unwrap_err().to_string().contains("not an authenticated value"));
        assert!(key.verify("x", b"LCTAUTH1short").is_err());
    }

    #[test]
    fn refuses_a_key_file_others_may_read_or_that_is_no_key() {
        let dir = crate::fsutil::temp_dir("seal-test").unwrap();
        let path = dir.path().join("key");
        SealKey::generate(&path).unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = SealKey::load(&path).unwrap_err().to_string();
            assert!(e.contains("others may read it") && e.contains(&path.display().to_string()), "{e}");
        }
        let short = dir.path().join("short");
        std::fs::write(&short, "abcd\n").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SealKey::load(&short).unwrap_err().to_string().contains("64 hexadecimal digits"));
        assert!(SealKey::load(&dir.path().join("missing")).is_err());
    }
}
