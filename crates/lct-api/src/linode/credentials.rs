//! Where the token and the API's address come from, as linode-cli finds them; the token is
//! kept in a type that never shows it.

use std::path::{Path, PathBuf};

/// The API token. `Debug` and `Display` print a placeholder: it must never reach a log, an
/// error message or the process list.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(secret: impl Into<String>) -> Token {
        Token(secret.into())
    }

    /// The `Authorization` header's value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Linode's public API.
pub const DEFAULT_URL: &str = "https://api.linode.com/v4";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no Linode API token: set LINODE_TOKEN (or LINODE_CLI_TOKEN), or configure linode-cli \
         (~/.config/linode-cli with default-user)"
    )]
    Missing,
    #[error("{path}: line {line}: {message}")]
    Config { path: String, line: usize, message: String },
}

/// The token: `LINODE_TOKEN`, else `LINODE_CLI_TOKEN`, else linode-cli's configuration file
/// (`$XDG_CONFIG_HOME/linode-cli` or `~/.config/linode-cli`): the `token` of the section named
/// by `default-user` in `[DEFAULT]`.
pub fn discover_token() -> Result<Token, CredentialsError> {
    for var in ["LINODE_TOKEN", "LINODE_CLI_TOKEN"] {
        if let Ok(t) = std::env::var(var)
            && !t.trim().is_empty()
        {
            return Ok(Token(t.trim().to_string()));
        }
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|dir| dir.join("linode-cli"));
    match config {
        Some(path) if path.exists() => token_from_cli_config(&path),
        _ => Err(CredentialsError::Missing),
    }
}

/// The API's base URL: `LINODE_URL` (tests point it at the test double), else Linode's.
pub fn base_url() -> String {
    std::env::var("LINODE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| DEFAULT_URL.to_string())
}

/// Reads linode-cli's INI file.
pub fn token_from_cli_config(path: &Path) -> Result<Token, CredentialsError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| CredentialsError::Config {
        path: shown.clone(),
        line: 0,
        message: e.to_string(),
    })?;
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push((name.trim().to_string(), Vec::new()));
            continue;
        }
        let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            return Err(CredentialsError::Config {
                path: shown,
                line: n + 1,
                message: "expected KEY = VALUE or [SECTION]".into(),
            });
        };
        let Some(section) = sections.last_mut() else {
            return Err(CredentialsError::Config {
                path: shown,
                line: n + 1,
                message: "a key before any [SECTION]".into(),
            });
        };
        section.1.push((key.trim().to_string(), value.trim().to_string()));
    }
    let get = |section: &str, key: &str| {
        sections.iter().filter(|(s, _)| s == section).flat_map(|(_, kv)| kv).find(|(k, _)| k == key).map(|(_, v)| v)
    };
    let user = get("DEFAULT", "default-user").ok_or(CredentialsError::Missing)?;
    let token = get(user, "token").ok_or(CredentialsError::Missing)?;
    Ok(Token(token.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linode_cli_config_and_no_leaks() {
        let dir = std::env::temp_dir().join(format!("lct-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("linode-cli");
        std::fs::write(&file, "[DEFAULT]\ndefault-user = ops\n\n[ops]\ntoken = s3cret-token\nregion = us-east\n")
            .unwrap();
        let token = token_from_cli_config(&file).unwrap();
        assert_eq!(token.bearer(), "Bearer s3cret-token");
        assert!(!format!("{token:?}").contains("s3cret"));
        std::fs::write(&file, "[DEFAULT]\ndefault-user = ops\nbroken line\n").unwrap();
        let err = token_from_cli_config(&file).unwrap_err().to_string();
        assert!(err.ends_with("line 3: expected KEY = VALUE or [SECTION]"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
