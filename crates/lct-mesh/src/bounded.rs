//! A local program run from an unattended loop with bounds (`lct-mesh watch` runs lct-fw
//! this way): a deadline, its process group killed at it, and only the end of its stderr
//! kept (stdout not read), through lct-core's one bounded runner (`lct_core::bounded`); here
//! only what the mesh's errors say of it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lct_core::bounded::{Bounds, Keep, Outcome, last_words};

use crate::MeshError;

/// How much of the program's stderr is kept: its end, where the error is.
pub const STDERR_KEPT: usize = 16 * 1024;

/// Runs `program` with `args` (an argument vector: no shell) and no stdin; Ok when it exits
/// with success within `deadline`. Else an error naming it with its stderr's last line, or
/// the deadline (the program and its process group killed then).
pub fn run(program: &Path, args: &[String], deadline: Duration) -> Result<(), MeshError> {
    let shown = || format!("{} {}", program.display(), args.join(" "));
    let mut command = Command::new(program);
    command.args(args);
    let bounds = Bounds { deadline, stdout: Keep::Nothing, stderr: Keep::Tail(STDERR_KEPT) };
    let finished = lct_core::bounded::run(command, &bounds);
    match finished.outcome {
        outcome if outcome.success() => Ok(()),
        Outcome::TimedOut => Err(MeshError::Node(format!("{}: still running after {deadline:?}: killed", shown()))),
        Outcome::NotStarted { reason } => Err(MeshError::Node(reason)),
        outcome => {
            let why = last_words(&finished.stderr).unwrap_or_else(|| outcome.describe());
            Err(MeshError::Node(format!("{}: {why}", shown())))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        path
    }

    /// What the mesh's error says: the program and its arguments, then its last words, the
    /// exit when it said nothing, or the deadline (the bounds themselves are lct-core's,
    /// tested there).
    #[test]
    fn the_error_names_the_program_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let args = ["push".to_string()];
        let said = script(dir.path(), "said", "echo 'noise' >&2; echo 'the last word' >&2; echo >&2; exit 3");
        let e = super::run(&said, &args, Duration::from_secs(60)).unwrap_err().to_string();
        assert!(e.ends_with(&format!("{} push: the last word", said.display())), "{e}");
        let silent = script(dir.path(), "silent", "exit 4");
        let e = super::run(&silent, &args, Duration::from_secs(60)).unwrap_err().to_string();
        assert!(e.ends_with("push: exit 4"), "{e}");
        let hangs = script(dir.path(), "hangs", "sleep 600 & sleep 600");
        let e = super::run(&hangs, &args, Duration::from_millis(300)).unwrap_err().to_string();
        assert!(e.contains("still running after 300ms: killed"), "{e}");
        assert!(super::run(&script(dir.path(), "fine", "exit 0"), &args, Duration::from_secs(60)).is_ok());
        let e = super::run(&dir.path().join("absent"), &args, Duration::from_secs(60)).unwrap_err().to_string();
        assert!(e.contains(&dir.path().join("absent").display().to_string()), "{e}");
    }
}
