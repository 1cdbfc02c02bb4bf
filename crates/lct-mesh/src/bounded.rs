//! Running a program lct did not write the output of, with bounds: a deadline (the program and
//! everything it started are killed at it) and a cap on what is kept of its stderr (stdout is
//! not read at all). `lct-mesh watch` runs lct-fw this way: an unattended loop must not hang
//! on a push that never ends, nor grow with a child that never stops talking.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::MeshError;

/// How much of the program's stderr is kept: its end, where the error is.
pub const STDERR_KEPT: usize = 16 * 1024;

/// Runs `program` with `args` (an argument vector: no shell) and no stdin; Ok when it exits
/// with success within `deadline`. Else an error naming it with its stderr's last line, or
/// the deadline (the program and its process group killed then).
pub fn run(program: &Path, args: &[String], deadline: Duration) -> Result<(), MeshError> {
    let shown = || format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: whatever it starts is killed with it at the deadline.
        .process_group(0)
        .spawn()
        .map_err(|e| MeshError::Node(format!("{}: {e}", program.display())))?;
    let mut stderr = child.stderr.take().expect("piped");
    // Read on a thread, keeping only the end: a full pipe would stop the child otherwise.
    let (tx, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&chunk[..n]);
            if kept.len() > 2 * STDERR_KEPT {
                kept.drain(..kept.len() - STDERR_KEPT);
            }
        }
        let start = kept.len().saturating_sub(STDERR_KEPT);
        let _ = tx.send(kept.split_off(start));
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= deadline => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(MeshError::Node(format!("{}: still running after {deadline:?}: killed", shown())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(MeshError::Node(format!("{}: {e}", program.display()))),
        }
    };
    // Something it left behind may hold stderr open: not waited for beyond a moment.
    let said = said.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&said);
    let why = said
        .trim()
        .lines()
        .rev()
        .find(|l| l.chars().any(char::is_alphanumeric))
        .map_or_else(|| status.to_string(), |l| l.trim().chars().take(200).collect());
    Err(MeshError::Node(format!("{}: {why}", shown())))
}

fn kill_group(pid: u32) {
    // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    fn script(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
        let path = dir.join("prog");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        path
    }

    /// A program that never ends (and a child of its own holding the pipe) is killed at the
    /// deadline: the caller gets an error saying so, not a hang.
    #[test]
    fn a_hanging_program_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let prog = script(dir.path(), "sleep 600 & sleep 600");
        let started = Instant::now();
        let e = super::run(&prog, &[], Duration::from_millis(300)).unwrap_err().to_string();
        assert!(e.contains("killed"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }

    /// A program that says far more than is kept: the end is kept (its last line is the
    /// error), memory stays bounded, stdout is never read.
    #[test]
    fn what_a_program_says_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let prog = script(
            dir.path(),
            "head -c 20000000 /dev/zero | tr '\\0' x; head -c 20000000 /dev/zero | tr '\\0' y >&2; echo >&2; echo 'the last word' >&2; exit 3",
        );
        let e = super::run(&prog, &[], Duration::from_secs(60)).unwrap_err().to_string();
        assert!(e.ends_with("the last word"), "{}", &e[..e.len().min(300)]);
        assert!(e.len() < 1000, "the error is bounded: {} bytes", e.len());
        assert!(super::run(&script(dir.path(), "exit 0"), &[], Duration::from_secs(60)).is_ok());
    }

    /// Arguments go as an argument vector: shell characters and spaces reach the program as
    /// they are, one argument each.
    #[test]
    fn arguments_are_an_argument_vector() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("args");
        let prog = script(dir.path(), &format!("for a in \"$@\"; do printf '%s|' \"$a\"; done > {}", out.display()));
        let args = ["--cluster=a b", "$(touch pwned)", ";id"].map(String::from);
        super::run(&prog, &args, Duration::from_secs(60)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "--cluster=a b|$(touch pwned)|;id|");
        assert!(!dir.path().join("pwned").exists());
    }
}
