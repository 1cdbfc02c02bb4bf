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

/// Reads linode-cli's INI file as Python's configparser (which linode-cli uses) does: `=` or
/// `:` separates a key from its value at the first of either (`token: ab=c` is `ab=c`), keys
/// are case-insensitive, no inline comments, indented lines continue a value, and every
/// section inherits what `[DEFAULT]` sets.
pub fn token_from_cli_config(path: &Path) -> Result<Token, CredentialsError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| CredentialsError::Config {
        path: shown.clone(),
        line: 0,
        message: e.to_string(),
    })?;
    let mut defaults = configparser::ini::IniDefault::default();
    defaults.default_section = "default".into();
    defaults.multiline = true;
    defaults.enable_inline_comments = false;
    defaults.cascade_defaults = true;
    let mut ini = configparser::ini::Ini::new_from_defaults(defaults);
    ini.read(text).map_err(|message| {
        // configparser says `line N: why` (or `line N:COLUMN: why`).
        let (line, message) = message
            .strip_prefix("line ")
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(n, why)| {
                Some((
                    n.parse().ok()?,
                    why.trim_start_matches(|c: char| c.is_ascii_digit() || c == ':').trim().to_string(),
                ))
            })
            .unwrap_or((0, message));
        CredentialsError::Config { path: shown.clone(), line, message }
    })?;
    let user = ini.get("default", "default-user").filter(|u| !u.is_empty()).ok_or(CredentialsError::Missing)?;
    let token = ini.get(&user, "token").filter(|t| !t.is_empty()).ok_or(CredentialsError::Missing)?;
    Ok(Token(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linode_cli_config_and_no_leaks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("linode-cli");
        std::fs::write(&file, "[DEFAULT]\ndefault-user = ops\n\n[ops]\ntoken = s3cret-token\nregion = us-east\n")
            .unwrap();
        let token = token_from_cli_config(&file).unwrap();
        assert_eq!(token.bearer(), "Bearer s3cret-token");
        assert!(!format!("{token:?}").contains("s3cret"));
        std::fs::write(&file, "[DEFAULT]\ndefault-user = ops\n[ops\n").unwrap();
        let err = token_from_cli_config(&file).unwrap_err().to_string();
        assert!(err.contains("line 3: "), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    fn read(config: &str) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("linode-cli");
        std::fs::write(&file, config).unwrap();
        token_from_cli_config(&file).ok().map(|t| t.0)
    }

    #[test]
    fn linode_cli_layouts_as_configparser_reads_them() {
        // What `linode-cli configure` writes (linode-cli 5.x): a DEFAULT naming the user, a
        // section per user with token, region, type, image and so on.
        let written = "[DEFAULT]\ndefault-user = ops\n\n[ops]\ntoken = 0123abcd\nregion = us-east\n\
                       type = g6-standard-2\nimage = linode/debian12\nmysql_engine = mysql/8\n\n\
                       [dev]\ntoken = feed\n";
        assert_eq!(read(written).as_deref(), Some("0123abcd"));
        // `:` separates as well; the first separator wins, so `=` inside a value stays in it.
        assert_eq!(read("[DEFAULT]\ndefault-user: ops\n[ops]\ntoken: ab=c\n").as_deref(), Some("ab=c"));
        assert_eq!(read("[DEFAULT]\ndefault-user = ops\n[ops]\ntoken = ab:c=d\n").as_deref(), Some("ab:c=d"));
        // A section inherits DEFAULT's keys (configparser's rule), its own win.
        assert_eq!(
            read("[DEFAULT]\ndefault-user = ops\ntoken = shared\n[ops]\nregion = x\n").as_deref(),
            Some("shared")
        );
        assert_eq!(read("[DEFAULT]\ndefault-user = ops\ntoken = shared\n[ops]\ntoken = own\n").as_deref(), Some("own"));
        // No inline comments in configparser's default: `#` is part of the value.
        assert_eq!(read("[DEFAULT]\ndefault-user = ops\n[ops]\ntoken = a#b;c\n").as_deref(), Some("a#b;c"));
        // Keys are case-insensitive; comment lines are skipped.
        assert_eq!(read("# linode-cli\n[DEFAULT]\nDefault-User = ops\n; x\n[ops]\nTOKEN = t\n").as_deref(), Some("t"));
        assert_eq!(read("[DEFAULT]\ndefault-user = nobody\n[ops]\ntoken = t\n"), None);
    }
}
