//! Parameter values from the command line: `--set NAME=VALUE`, and `--set-file NAME=PATH`
//! (`NAME=-`: standard input) for secrets, which on a command line every local user reads
//! in `ps`. A secret given with `--set` still works, with a warning saying so.

use std::io::Read;

use lct_core::record::Name;

use crate::plan::Plan;

/// The values given on the command line, by where they came from.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `--set NAME=VALUE`.
    pub given: Vec<(String, String)>,
    /// `--set-file NAME=PATH`, read.
    pub from_files: Vec<(String, String)>,
}

impl Settings {
    /// Reads every `--set-file` (`-`: standard input, once). One final newline is not part of
    /// the value (`echo secret > file` gives `secret`). Errors name the file, never what is in it.
    pub fn read(given: &[(String, String)], files: &[(String, String)]) -> Result<Settings, String> {
        if files.iter().filter(|(_, path)| path == "-").count() > 1 {
            return Err("--set-file NAME=- reads standard input: only one parameter can".into());
        }
        let mut from_files = Vec::new();
        for (name, path) in files {
            let mut bytes = Vec::new();
            let read = if path == "-" {
                std::io::stdin().read_to_end(&mut bytes)
            } else {
                std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes))
            };
            let from = if path == "-" { "standard input".to_string() } else { path.clone() };
            read.map_err(|e| format!("--set-file {name}={path}: {from}: {e}"))?;
            let mut value =
                String::from_utf8(bytes).map_err(|_| format!("--set-file {name}={path}: {from} is not UTF-8 text"))?;
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            from_files.push((name.clone(), value));
        }
        Ok(Settings { given: given.to_vec(), from_files })
    }

    /// Every value, `--set` first, then the files'.
    pub fn all(&self) -> Vec<(String, String)> {
        self.given.iter().chain(&self.from_files).cloned().collect()
    }

    /// Says (at the default log level) which secrets came on the command line.
    pub fn warn_visible_secrets(&self, plan: &Plan) {
        for (name, _) in &self.given {
            if plan.parameters.get(name).is_some_and(|p| p.secret) {
                tracing::warn!(
                    "secret parameter {name} given with --set: its value is on the command line, \
                     visible to every local user in `ps`; give it with --set-file {name}=PATH (or {name}=- \
                     for standard input)"
                );
            }
        }
    }
}

/// `GROUP=N` of `diff --count`.
pub fn parse_count(s: &str) -> Result<(Name, u32), String> {
    let (g, n) = s.split_once('=').ok_or("expected GROUP=N")?;
    Ok((g.parse().map_err(|e| format!("{e}"))?, n.parse().map_err(|_| format!("{n:?} is not a count"))?))
}

/// `NAME=VALUE` of `--set`.
pub fn parse_set(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    Ok((k.to_string(), v.to_string()))
}

/// `NAME=PATH` of `--set-file`.
pub fn parse_set_file(s: &str) -> Result<(String, String), String> {
    let (name, path) = s.split_once('=').ok_or("expected NAME=PATH (PATH - for standard input)")?;
    if path.is_empty() {
        return Err("expected NAME=PATH (PATH - for standard input)".into());
    }
    Ok((name.to_string(), path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_give_values_without_their_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2\n").unwrap();
        let files = [("pw".to_string(), path.display().to_string())];
        let s = Settings::read(&[("n".into(), "3".into())], &files).unwrap();
        assert_eq!(s.all(), [("n".to_string(), "3".to_string()), ("pw".to_string(), "hunter2".to_string())]);
        let missing = [("pw".to_string(), dir.path().join("none").display().to_string())];
        let e = Settings::read(&[], &missing).unwrap_err();
        assert!(e.starts_with("--set-file pw=") && e.contains("No such file"), "{e}");
        let twice = [("a".to_string(), "-".to_string()), ("b".to_string(), "-".to_string())];
        assert!(Settings::read(&[], &twice).is_err());
        assert!(parse_set_file("pw").is_err() && parse_set_file("pw=").is_err());
    }
}
