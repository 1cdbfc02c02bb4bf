//! An ed25519 key pair in OpenSSH's own formats, made in this process (ring): a node's host
//! key without a `ssh-keygen` process per node.
//!
//! The private key is OpenSSH's unencrypted `openssh-key-v1` container (PROTOCOL.key in
//! OpenSSH's sources), exactly what `ssh-keygen -t ed25519 -N ''` writes: the magic, cipher
//! and KDF `none`, one public key blob, then the private section (a check integer twice, the
//! key type, the public key, the 64-byte private key = seed and public key, the comment,
//! padding 1, 2, 3 ... to the cipher's block size of 8), base64 at 70 columns.

use std::io;

use data_encoding::BASE64;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::host_key::HostKey;

const KEY_TYPE: &str = "ssh-ed25519";

/// Appends an SSH wire `string`: a big-endian u32 length, then the bytes.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).expect("a short field").to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The public key blob: `string "ssh-ed25519"`, `string key(32)`.
fn public_blob(public: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(51);
    put_string(&mut blob, KEY_TYPE.as_bytes());
    put_string(&mut blob, public);
    blob
}

/// The key pair of a 32-byte seed, in OpenSSH's formats (`check` is the private section's
/// check integer, random in [`generate`]).
fn from_seed(seed: &[u8; 32], check: u32, comment: &str) -> io::Result<HostKey> {
    let pair = Ed25519KeyPair::from_seed_unchecked(seed)
        .map_err(|e| io::Error::other(format!("ed25519 key from a seed: {e}")))?;
    let public = pair.public_key().as_ref();
    let blob = public_blob(public);

    let mut private = Vec::with_capacity(160);
    private.extend_from_slice(&check.to_be_bytes());
    private.extend_from_slice(&check.to_be_bytes());
    put_string(&mut private, KEY_TYPE.as_bytes());
    put_string(&mut private, public);
    let mut secret = [0u8; 64];
    secret[..32].copy_from_slice(seed);
    secret[32..].copy_from_slice(public);
    put_string(&mut private, &secret);
    put_string(&mut private, comment.as_bytes());
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }

    let mut container = b"openssh-key-v1\0".to_vec();
    put_string(&mut container, b"none");
    put_string(&mut container, b"none");
    put_string(&mut container, b"");
    container.extend_from_slice(&1u32.to_be_bytes());
    put_string(&mut container, &blob);
    put_string(&mut container, &private);

    let encoded = BASE64.encode(&container);
    let mut text = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for line in encoded.as_bytes().chunks(70) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    secret.fill(0);
    Ok(HostKey { private: text, public: format!("{KEY_TYPE} {}", BASE64.encode(&blob)) })
}

/// A new ed25519 key pair from the system's randomness, in OpenSSH's formats.
pub fn generate(comment: &str) -> io::Result<HostKey> {
    let mut seed: [u8; 32] = crate::random::bytes().map_err(|e| io::Error::other(e.to_string()))?;
    let check = crate::random::u64().map_err(|e| io::Error::other(e.to_string()))? as u32;
    let key = from_seed(&seed, check, comment);
    seed.fill(0);
    key
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    use super::*;

    /// ssh-keygen reads the private key and derives the same public key from it: the file is
    /// one OpenSSH takes (sshd loads host keys with the same code).
    #[test]
    fn openssh_reads_the_private_key_and_derives_the_same_public_key() {
        let dir = tempfile::tempdir().unwrap();
        for comment in ["", "node-1", "a longer comment to change the padding"] {
            let key = generate(comment).unwrap();
            let file = dir.path().join("key");
            std::fs::write(&file, &key.private).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            let out = Command::new("ssh-keygen").arg("-y").arg("-f").arg(&file).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let derived = String::from_utf8(out.stdout).unwrap();
            assert_eq!(derived.split_whitespace().take(2).collect::<Vec<_>>().join(" "), key.public, "{comment:?}");
        }
    }

    /// The layout, byte for byte, against a key ssh-keygen made: its seed taken out of its
    /// file and given to `from_seed` with its check integer gives the same file.
    #[test]
    fn a_key_from_ssh_keygen_s_seed_is_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "zk-1", "-f"])
            .arg(&file)
            .status()
            .unwrap();
        assert!(made.success());
        let text = std::fs::read_to_string(&file).unwrap();
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let raw = BASE64.decode(body.as_bytes()).unwrap();
        // magic(15) + "none"(8) + "none"(8) + ""(4) + count(4) + blob(4 + 51) + section length(4)
        let section = 15 + 8 + 8 + 4 + 4 + 55 + 4;
        let check = u32::from_be_bytes(raw[section..section + 4].try_into().unwrap());
        // check(8) + type(4 + 11) + public(4 + 32) + secret length(4): the seed
        let seed_at = section + 8 + 15 + 36 + 4;
        let seed: [u8; 32] = raw[seed_at..seed_at + 32].try_into().unwrap();
        let ours = from_seed(&seed, check, "zk-1").unwrap();
        assert_eq!(ours.private, text);
        let public = std::fs::read_to_string(file.with_extension("pub")).unwrap();
        assert_eq!(public.split_whitespace().take(2).collect::<Vec<_>>().join(" "), ours.public);
    }
}
