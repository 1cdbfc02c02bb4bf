//! The names of lct's state: path-like keys with a strict grammar.
//!
//! A key is one or more segments joined by `/`; a segment is 1 to 128 of `A-Z a-z 0-9 . _ -`,
//! does not start with `.` (so never `.` or `..`, and never a backend's hidden temporary or
//! lock file) and the whole key is at most 1024 bytes. The same key names a file under the
//! state directory (the local backend) and an etcd key under the configured prefix: a key
//! can never climb out of either.

use std::fmt;

/// A checked key (`clusters.jsonl`, `plans/zk/cluster.json`, `ssh/id_ed25519`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

/// Why a key was refused; the message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state key {key:?}: {reason}")]
pub struct KeyError {
    pub key: String,
    pub reason: &'static str,
}

pub const MAX_KEY_LEN: usize = 1024;
pub const MAX_SEGMENT_LEN: usize = 128;

impl Key {
    /// Checks `text` against the grammar.
    pub fn new(text: impl Into<String>) -> Result<Key, KeyError> {
        let key = text.into();
        let bad = |reason| Err(KeyError { key: key.clone(), reason });
        if key.is_empty() {
            return bad("empty");
        }
        if key.len() > MAX_KEY_LEN {
            return bad("longer than 1024 bytes");
        }
        for segment in key.split('/') {
            if segment.is_empty() {
                return bad("an empty segment (a leading, trailing or doubled /)");
            }
            if segment.len() > MAX_SEGMENT_LEN {
                return bad("a segment longer than 128 bytes");
            }
            if segment.starts_with('.') {
                return bad("a segment starts with '.'");
            }
            if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
                return bad("only A-Z a-z 0-9 . _ - and / are allowed");
            }
        }
        Ok(Key(key))
    }

    /// `self/segment...`: `rest` is checked as a key of its own.
    pub fn join(&self, rest: &str) -> Result<Key, KeyError> {
        Key::new(format!("{}/{rest}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `self` is `prefix` itself or lies under it (`plans/zk` is under `plans`, not
    /// under `pla`).
    pub fn is_under(&self, prefix: &Key) -> bool {
        self.0 == prefix.0
            || (self.0.len() > prefix.0.len()
                && self.0.starts_with(&prefix.0)
                && self.0.as_bytes()[prefix.0.len()] == b'/')
    }

    /// The segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment.
    pub fn last(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Key {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Key, KeyError> {
        Key::new(s)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_climb_out() {
        for good in ["clusters.jsonl", "plans/zk/cluster.json", "ssh/id_ed25519", "a-b_c.d/E9"] {
            Key::new(good).unwrap();
        }
        for bad in [
            "", "/abs", "a//b", "a/", "..", "a/../b", "a/./b", ".hidden", "a/.tmp", "a b", "a\\b", "a\0b", "é",
            "a/b\n", "*", "a:b",
        ] {
            let err = Key::new(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(Key::new("x".repeat(129)).is_err());
        assert!(Key::new(["y"; 600].join("/")).is_err(), "over 1024 bytes");
    }

    #[test]
    fn under_is_by_segment() {
        let plans = Key::new("plans").unwrap();
        assert!(Key::new("plans/zk").unwrap().is_under(&plans));
        assert!(plans.is_under(&plans));
        assert!(!Key::new("plansx/zk").unwrap().is_under(&plans));
        assert_eq!(plans.join("zk/plan.yaml").unwrap().last(), "plan.yaml");
        assert!(plans.join("../x").is_err());
    }
}
