//! TSIG keys (RFC 8945): the key file format BIND's `tsig-keygen` writes and `nsupdate -k`
//! reads, and making one. The secret never leaves this type in text: not in `Debug`, not in
//! errors.

use std::path::Path;

use hickory_proto::rr::Name;
use hickory_proto::rr::TSigner;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;

/// How far apart the signer's and our clocks may be (BIND's and Knot's default).
pub const FUDGE: u16 = 300;

/// A shared secret with its name and algorithm.
#[derive(Clone)]
pub struct Key {
    pub name: Name,
    pub algorithm: TsigAlgorithm,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("name", &self.name).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: line {line}: {message}")]
    Syntax { path: String, line: usize, message: String },
}

const ALGORITHMS: [&str; 4] = ["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224"];

fn algorithm(name: &str) -> Option<TsigAlgorithm> {
    Some(match name.trim_end_matches('.').to_ascii_lowercase().as_str() {
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        _ => return None,
    })
}

impl Key {
    /// Reads a key file: `key "NAME" { algorithm hmac-sha256; secret "BASE64"; };`.
    pub fn load(path: &Path) -> Result<Key, KeyError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| KeyError::Io { path: shown.clone(), error: source })?;
        // A secret others can read is no secret (systemd's credentials are 0400; keygen writes 0600).
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            tracing::warn!("{shown}: readable by others than its owner: chmod 600 it");
        }
        Key::parse(&text).map_err(|(line, message)| KeyError::Syntax { path: shown, line, message })
    }

    /// Parses the key file format; errors carry the line.
    pub fn parse(text: &str) -> Result<Key, (usize, String)> {
        // Tokens with their line: words, quoted strings, and the punctuation { } ;
        let mut tokens: Vec<(usize, String)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '#' => break,
                    '/' if chars.peek() == Some(&'/') => break,
                    c if c.is_whitespace() => {}
                    '{' | '}' | ';' => tokens.push((line_no, c.to_string())),
                    '"' => {
                        let s: String = chars.by_ref().take_while(|c| *c != '"').collect();
                        tokens.push((line_no, s));
                    }
                    c => {
                        let mut word = c.to_string();
                        while let Some(&c) = chars.peek() {
                            if c.is_whitespace() || matches!(c, '{' | '}' | ';' | '"') {
                                break;
                            }
                            word.push(c);
                            chars.next();
                        }
                        tokens.push((line_no, word));
                    }
                }
            }
        }
        let last_line = text.lines().count().max(1);
        let mut it = tokens.into_iter();
        let mut next = |what: &str| it.next().ok_or((last_line, format!("expected {what}, found the end")));
        let (line, word) = next("key")?;
        if word != "key" {
            return Err((line, format!("expected `key`, found {word:?}")));
        }
        let (line, name) = next("the key's name")?;
        let mut name = Name::from_ascii(&name).map_err(|e| (line, format!("key name {name:?}: {e}")))?;
        name.set_fqdn(true);
        let (line, brace) = next("{")?;
        if brace != "{" {
            return Err((line, format!("expected {{, found {brace:?}")));
        }
        let (mut algo, mut secret) = (None, None);
        loop {
            let (line, field) = next("algorithm, secret or }")?;
            match field.as_str() {
                "}" => break,
                "algorithm" => {
                    let (line, value) = next("an algorithm")?;
                    algo = Some(algorithm(&value).ok_or((
                        line,
                        format!("algorithm {value:?} is not supported (use {})", ALGORITHMS[..3].join(", ")),
                    ))?);
                }
                "secret" => {
                    let (line, value) = next("a secret")?;
                    let bytes = data_encoding::BASE64
                        .decode(value.as_bytes())
                        .map_err(|_| (line, "secret: not valid base64".to_string()))?;
                    if bytes.len() < 16 {
                        return Err((line, "secret: shorter than 16 bytes".into()));
                    }
                    secret = Some(bytes);
                }
                other => return Err((line, format!("unknown field {other:?} (algorithm, secret)"))),
            }
            let (line, semi) = next(";")?;
            if semi != ";" {
                return Err((line, format!("expected ;, found {semi:?}")));
            }
        }
        let algorithm = algo.ok_or((last_line, "algorithm is missing".to_string()))?;
        let secret = secret.ok_or((last_line, "secret is missing".to_string()))?;
        Ok(Key { name, algorithm, secret })
    }

    /// A new key of 32 random bytes (as `tsig-keygen -a hmac-sha256`).
    pub fn generate(name: &str) -> Result<Key, String> {
        let mut name = Name::from_ascii(name).map_err(|e| format!("key name {name:?}: {e}"))?;
        name.set_fqdn(true);
        let secret = lct_core::random::bytes::<32>().map_err(|e| e.to_string())?.to_vec();
        Ok(Key { name, algorithm: TsigAlgorithm::HmacSha256, secret })
    }

    /// The key file text (what `tsig-keygen` prints).
    pub fn to_file_text(&self) -> String {
        let name = self.name.to_string();
        format!(
            "key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
            name.trim_end_matches('.'),
            self.algorithm_name(),
            data_encoding::BASE64.encode(&self.secret)
        )
    }

    pub fn algorithm_name(&self) -> &'static str {
        match self.algorithm {
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
            _ => "hmac-sha256",
        }
    }

    pub fn signer(&self) -> TSigner {
        TSigner::new(self.secret.clone(), self.algorithm.clone(), self.name.clone(), FUDGE)
            .expect("only supported algorithms are parsed")
    }
}

/// The keys a server knows, by name (lower case, fully qualified).
#[derive(Clone, Default, Debug)]
pub struct Keys {
    keys: Vec<Key>,
}

impl Keys {
    pub fn new(keys: Vec<Key>) -> Keys {
        Keys { keys }
    }

    pub fn get(&self, name: &Name) -> Option<&Key> {
        self.keys.iter().find(|k| k.name == *name)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Seconds since 1970: TSIG's clock.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_errors_name_the_line() {
        let key = Key::generate("lct-update").unwrap();
        let text = key.to_file_text();
        let back = Key::parse(&text).unwrap();
        assert_eq!(back.name, key.name);
        assert_eq!(back.secret, key.secret);
        assert!(!format!("{key:?}").contains(&data_encoding::BASE64.encode(&key.secret)), "no secret in Debug");
        let bind = "key \"k\" {\n  algorithm hmac-sha512;\n  secret \"c2VjcmV0c2VjcmV0c2VjcmV0MTI=\";\n};\n";
        assert_eq!(Key::parse(bind).unwrap().algorithm, TsigAlgorithm::HmacSha512);
        let bad = "key \"k\" {\n  algorithm hmac-md5;\n  secret \"x\";\n};\n";
        assert_eq!(Key::parse(bad).unwrap_err().0, 2);
        let bad = "key \"k\" {\n  algorithm hmac-sha256;\n  secret \"not base64!\";\n};\n";
        let err = Key::parse(bad).unwrap_err();
        assert_eq!(err, (3, "secret: not valid base64".to_string()));
        assert!(!err.1.contains("not base64!"), "the secret is not echoed");
    }
}
