//! DNSSEC keys of the zones this server signs: made once (ECDSA P-256, algorithm 13, or
//! Ed25519, 15, through hickory-proto and ring: no cryptography of ours), kept in the state
//! directory (`dnssec/ZONE.json`, mode 0600, in a directory of mode 0700), read back at each
//! start; their DNSKEY data, key tag and the DS the parent zone needs.

use std::path::{Path, PathBuf};

use hickory_proto::dnssec::crypto::{EcdsaSigningKey, Ed25519SigningKey};
use hickory_proto::dnssec::{Algorithm, SigningKey, TBS};
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde::{Deserialize, Serialize};

/// A signing algorithm lct-dns offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256 (13): the default, what every validator knows.
    Ecdsa,
    /// Ed25519 (15): smaller signatures, not every old validator knows it.
    Ed25519,
}

impl KeyAlgorithm {
    pub fn number(self) -> u8 {
        match self {
            KeyAlgorithm::Ecdsa => 13,
            KeyAlgorithm::Ed25519 => 15,
        }
    }
}

/// A key that cannot be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("zone {zone}: {message}")]
    Key { zone: String, message: String },
}

/// A key as its file keeps it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    zone: String,
    algorithm: KeyAlgorithm,
    /// 257: a combined signing key (CSK: signs the DNSKEY set and the zone).
    flags: u16,
    /// When it was made (Unix seconds): a clock before it is a clock gone wrong.
    created: u64,
    /// The private key, PKCS#8, base64.
    pkcs8: String,
}

/// A zone's signing key, loaded.
pub struct ZoneKey {
    pub algorithm: KeyAlgorithm,
    pub flags: u16,
    pub created: u64,
    /// The DNSKEY record's data (flags, protocol 3, algorithm, public key).
    pub dnskey: Vec<u8>,
    pub tag: u16,
    signer: Box<dyn SigningKey>,
}

impl std::fmt::Debug for ZoneKey {
    // The private half is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ZoneKey({:?}, flags {}, tag {})", self.algorithm, self.flags, self.tag)
    }
}

/// Where a zone's keys are kept under the state directory `dir`.
pub fn key_file(dir: &Path, zone: &str) -> PathBuf {
    dir.join("dnssec").join(format!("{}json", zone.to_ascii_lowercase()))
}

/// The DS of `zone`'s key, kept beside it once the key is made: a key file gone while this
/// is there was lost, not never made (a new key would not match the DS at the parent).
pub fn ds_file(dir: &Path, zone: &str) -> PathBuf {
    dir.join("dnssec").join(format!("{}ds", zone.to_ascii_lowercase()))
}

impl ZoneKey {
    fn from_pkcs8(
        zone: &str,
        algorithm: KeyAlgorithm,
        flags: u16,
        created: u64,
        der: Vec<u8>,
    ) -> Result<ZoneKey, KeyError> {
        let bad = |e: &dyn std::fmt::Display| KeyError::Key {
            zone: zone.to_string(),
            message: format!("the key cannot be used: {e}"),
        };
        let der = PrivatePkcs8KeyDer::from(der);
        let signer: Box<dyn SigningKey> = match algorithm {
            KeyAlgorithm::Ecdsa => {
                Box::new(EcdsaSigningKey::from_pkcs8(&der, Algorithm::ECDSAP256SHA256).map_err(|e| bad(&e))?)
            }
            KeyAlgorithm::Ed25519 => Box::new(Ed25519SigningKey::from_pkcs8(&der).map_err(|e| bad(&e))?),
        };
        let public = signer.to_public_key().map_err(|e| bad(&e))?;
        let mut dnskey = Vec::with_capacity(68);
        dnskey.extend_from_slice(&flags.to_be_bytes());
        dnskey.push(3);
        dnskey.push(algorithm.number());
        dnskey.extend_from_slice(hickory_proto::dnssec::PublicKey::public_bytes(&public));
        let tag = hickory_proto::dnssec::rdata::DNSKEY::calculate_key_tag_internal(&dnskey);
        Ok(ZoneKey { algorithm, flags, created, dnskey, tag, signer })
    }

    /// A new combined signing key for `zone`, and its file's text.
    fn generate(zone: &str, algorithm: KeyAlgorithm, now: u64) -> Result<(ZoneKey, Vec<u8>), KeyError> {
        let bad =
            |e: &dyn std::fmt::Display| KeyError::Key { zone: zone.to_string(), message: format!("no key made: {e}") };
        let der = match algorithm {
            KeyAlgorithm::Ecdsa => EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256).map_err(|e| bad(&e))?,
            KeyAlgorithm::Ed25519 => Ed25519SigningKey::generate_pkcs8().map_err(|e| bad(&e))?,
        };
        let bytes = der.secret_pkcs8_der().to_vec();
        let file = KeyFile {
            zone: zone.to_string(),
            algorithm,
            flags: 257,
            created: now,
            pkcs8: data_encoding::BASE64.encode(&bytes),
        };
        let mut text = serde_json::to_vec_pretty(&file).map_err(|e| bad(&e))?;
        text.push(b'\n');
        Ok((ZoneKey::from_pkcs8(zone, algorithm, 257, now, bytes)?, text))
    }

    /// `zone`'s key from its file under `dir`; an error if there is none.
    pub fn load(dir: &Path, zone: &str, algorithm: KeyAlgorithm) -> Result<ZoneKey, KeyError> {
        let path = key_file(dir, zone);
        if !path.exists() {
            return Err(KeyError::File {
                path: path.display().to_string(),
                message: format!("zone {zone} has no key yet: `lct-dns serve` makes it when it first signs the zone"),
            });
        }
        ZoneKey::load_or_create(dir, zone, algorithm, 0)
    }

    /// `zone`'s key from its file under `dir`, made (and kept, 0600) if there is none yet;
    /// a key of another algorithm than asked for is an error (an algorithm rollover is not
    /// done by lct-dns: remove the file to start afresh, and replace the DS at the parent).
    pub fn load_or_create(dir: &Path, zone: &str, algorithm: KeyAlgorithm, now: u64) -> Result<ZoneKey, KeyError> {
        let path = key_file(dir, zone);
        let shown = path.display().to_string();
        let file_err = |message: String| KeyError::File { path: shown.clone(), message };
        match std::fs::read(&path) {
            Ok(text) => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).map_err(|e| file_err(e.to_string()))?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(file_err(format!(
                        "mode {:o}: a zone's private key must be its owner's alone (chmod 600)",
                        mode & 0o777
                    )));
                }
                let file: KeyFile =
                    serde_json::from_slice(&text).map_err(|e| file_err(format!("not a key file: {e}")))?;
                if file.zone != zone {
                    return Err(file_err(format!("holds the key of {}, not {zone}", file.zone)));
                }
                if file.algorithm != algorithm {
                    return Err(file_err(format!(
                        "the key is {:?} but {algorithm:?} is configured (lct-dns does not roll algorithms)",
                        file.algorithm
                    )));
                }
                let der =
                    data_encoding::BASE64.decode(file.pkcs8.as_bytes()).map_err(|e| file_err(format!("pkcs8: {e}")))?;
                ZoneKey::from_pkcs8(zone, file.algorithm, file.flags, file.created, der)
                    .map_err(|e| file_err(e.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ds_path = ds_file(dir, zone);
                if ds_path.exists() {
                    return Err(file_err(format!(
                        "missing, but a key was made for {zone} (its DS is in {}): restore the key file; \
                         or remove that file to make a new key, and replace the DS at the parent",
                        ds_path.display()
                    )));
                }
                let (key, text) = ZoneKey::generate(zone, algorithm, now)?;
                let parent = path.parent().expect("under a directory");
                private_dir(parent).map_err(|e| file_err(format!("{}: {e}", parent.display())))?;
                lct_core::fsutil::atomic_write(&path, &text, 0o600).map_err(|e| file_err(e.to_string()))?;
                let ds = key.ds(zone).map_err(|e| KeyError::Key { zone: zone.into(), message: e })?;
                lct_core::fsutil::atomic_write(&ds_path, format!("{ds}\n").as_bytes(), 0o644)
                    .map_err(|e| file_err(e.to_string()))?;
                tracing::info!("zone {zone}: a new DNSSEC key (tag {}) in {shown}", key.tag);
                Ok(key)
            }
            Err(e) => Err(file_err(e.to_string())),
        }
    }

    /// A signature over `data` (what RFC 4034 section 3.1.8.1 says is signed).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        self.signer.sign(&TBS::from(data)).map_err(|e| e.to_string())
    }

    /// The DS record the parent zone publishes for this key (SHA-256, digest type 2), as a
    /// master file line.
    pub fn ds(&self, zone: &str) -> Result<String, String> {
        let ds = self.ds_record(zone)?;
        Ok(format!("{} IN DS {} {} {} {}", ds.zone, ds.key_tag, ds.algorithm, ds.digest_type, ds.digest))
    }

    /// The DS record the parent zone publishes for this key (SHA-256), as a `dns-ds` record.
    pub fn ds_record(&self, zone: &str) -> Result<DsRecord, String> {
        let owner = crate::wire::wire_name(zone).ok_or_else(|| format!("{zone}: not a name"))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &[owner, self.dnskey.clone()].concat());
        Ok(DsRecord {
            zone: crate::zone::fqdn(&zone.to_ascii_lowercase()),
            key_tag: self.tag,
            algorithm: self.algorithm.number(),
            digest_type: 2,
            digest: data_encoding::HEXUPPER.encode(digest.as_ref()),
        })
    }
}

/// The DS a signed zone's parent publishes for its key: the `dns-ds` record
/// (`lct-dns ds -o jsonl`). `zone` is the child (the DS's owner), which the parent holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DsRecord {
    /// The signed zone, fully qualified: the DS record's owner in its parent zone.
    pub zone: String,
    pub key_tag: u16,
    /// The key's algorithm number (13 ECDSA P-256, 15 Ed25519).
    pub algorithm: u8,
    /// The digest's type (2: SHA-256).
    pub digest_type: u8,
    /// The digest, hexadecimal, upper case.
    pub digest: String,
}

impl lct_core::record::Record for DsRecord {
    const KIND: &'static str = "dns-ds";
    const VERSION: u32 = 1;
}

/// `dir` made if missing, and readable by its owner alone.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lost key is not silently replaced (the parent's DS would no longer match), and a key
    /// others can read is refused; the first load makes the key and its DS.
    #[test]
    fn a_lost_or_exposed_key_is_an_error_naming_the_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = lct_core::fsutil::temp_dir("lct-dns-keys").unwrap();
        let zone = "lct.internal.";
        let made = ZoneKey::load_or_create(dir.path(), zone, KeyAlgorithm::Ecdsa, 1).unwrap();
        let ds = std::fs::read_to_string(ds_file(dir.path(), zone)).unwrap();
        assert_eq!(ds.trim(), made.ds(zone).unwrap());
        assert_eq!(ZoneKey::load_or_create(dir.path(), zone, KeyAlgorithm::Ecdsa, 2).unwrap().tag, made.tag);
        let key = key_file(dir.path(), zone);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = ZoneKey::load_or_create(dir.path(), zone, KeyAlgorithm::Ecdsa, 2).err().unwrap().to_string();
        assert!(err.contains(&key.display().to_string()) && err.contains("mode 644"), "{err}");
        std::fs::remove_file(&key).unwrap();
        let err = ZoneKey::load_or_create(dir.path(), zone, KeyAlgorithm::Ecdsa, 2).err().unwrap().to_string();
        assert!(err.contains("missing") && err.contains("lct.internal.ds"), "{err}");
        assert!(!key.exists(), "no new key was made");
    }
}
