//! A DNSSEC key of a zone this server signs (ECDSA P-256, algorithm 13, or Ed25519, 15,
//! through hickory-proto and ring: no cryptography of ours): its DNSKEY data, key tag,
//! signatures and the DS the parent zone needs. A zone's keys, their roles and timestamps
//! are [`crate::keystate`]'s, kept in the state directory (`dnssec/ZONE.json`).

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
    #[error("{}: {}", shown(path), shown(message))]
    File { path: String, message: String },
    #[error("zone {}: {}", shown(zone), shown(message))]
    Key { zone: String, message: String },
}

/// `text` with its control characters escaped (`\u{1b}`): a message may quote a key file's
/// content (a zone name, an unknown role), and goes to a terminal or a log; a hostile file
/// must not write escape sequences (move the cursor, rewrite the screen) or forge log lines.
pub fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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
    pub(crate) fn from_pkcs8(
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

    /// A signature over `data` (what RFC 4034 section 3.1.8.1 says is signed).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        self.signer.sign(&TBS::from(data)).map_err(|e| e.to_string())
    }

    /// The DS record the parent zone publishes for this key (SHA-256, digest type 2), as a
    /// master file line.
    pub fn ds(&self, zone: &str) -> Result<String, String> {
        Ok(self.ds_record(zone)?.line())
    }

    /// The DS record the parent zone publishes for this key (SHA-256), as a `dns-ds` record.
    pub fn ds_record(&self, zone: &str) -> Result<DsRecord, String> {
        let owner = crate::wire::wire_name(zone).ok_or_else(|| format!("{zone}: not a name"))?;
        let data = self.ds_rdata(&owner);
        Ok(DsRecord {
            zone: crate::zone::fqdn(&zone.to_ascii_lowercase()),
            key_tag: self.tag,
            algorithm: self.algorithm.number(),
            digest_type: 2,
            digest: data_encoding::HEXUPPER.encode(&data[4..]),
        })
    }

    /// The DS (and CDS) record's data for this key of the zone `owner` (wire form, lower
    /// case): key tag, algorithm, digest type 2 (SHA-256), digest.
    pub fn ds_rdata(&self, owner: &[u8]) -> Vec<u8> {
        let digest = ring::digest::digest(&ring::digest::SHA256, &[owner, self.dnskey.as_slice()].concat());
        let mut data = Vec::with_capacity(36);
        data.extend_from_slice(&self.tag.to_be_bytes());
        data.push(self.algorithm.number());
        data.push(2);
        data.extend_from_slice(digest.as_ref());
        data
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

impl DsRecord {
    /// The record as a master file line (what `lct-dns ds` prints on a terminal).
    pub fn line(&self) -> String {
        format!("{} IN DS {} {} {} {}", self.zone, self.key_tag, self.algorithm, self.digest_type, self.digest)
    }
}

impl lct_core::record::Record for DsRecord {
    const KIND: &'static str = "dns-ds";
    const VERSION: u32 = 1;
}

/// A new private key (PKCS#8 DER) of `algorithm`.
pub fn generate_pkcs8(algorithm: KeyAlgorithm) -> Result<Vec<u8>, String> {
    let der = match algorithm {
        KeyAlgorithm::Ecdsa => {
            EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256).map_err(|e| e.to_string())?
        }
        KeyAlgorithm::Ed25519 => Ed25519SigningKey::generate_pkcs8().map_err(|e| e.to_string())?,
    };
    Ok(der.secret_pkcs8_der().to_vec())
}
