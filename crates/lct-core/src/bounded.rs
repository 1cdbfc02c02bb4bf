//! Running a program lct does not trust to end or to stop talking, with bounds: a process
//! group of its own (what it starts is killed with it), a deadline, a cap on what is kept of
//! each output stream, and how it ended, described. lct-inventory's `exec` (a command on
//! each node, async) and lct-mesh's pushes (lct-fw from an unattended loop, [`run`]) share
//! these pieces; lct-image's node pipes kill and keep stderr's end through them too.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How a command ended (a node's: the `exec-result` record's `outcome`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Exited {
        code: i32,
    },
    Signalled {
        signal: i32,
    },
    TimedOut,
    /// The command wrote more than its limit (lct-inventory's `ExecOptions::output_limit`,
    /// [`Keep::Head`]) to one stream: killed (with what it started), its output cut there.
    OutputTooLarge {
        limit_bytes: u64,
    },
    /// The command could not be started at all (no such program, no access method).
    NotStarted {
        reason: String,
    },
}

impl Outcome {
    pub fn success(&self) -> bool {
        *self == Outcome::Exited { code: 0 }
    }

    pub fn describe(&self) -> String {
        match self {
            Outcome::Exited { code } => format!("exit {code}"),
            Outcome::Signalled { signal } => format!("killed by signal {signal}"),
            Outcome::TimedOut => "timed out".into(),
            Outcome::OutputTooLarge { limit_bytes } => format!("killed: more than {limit_bytes} bytes of output"),
            Outcome::NotStarted { reason } => format!("not started: {reason}"),
        }
    }

    /// What waiting for the program gave.
    pub fn of(status: std::io::Result<ExitStatus>) -> Outcome {
        match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => Outcome::Exited { code },
                (None, Some(signal)) => Outcome::Signalled { signal },
                (None, None) => Outcome::NotStarted { reason: "unknown exit status".into() },
            },
            Err(e) => Outcome::NotStarted { reason: e.to_string() },
        }
    }
}

/// Kills the process group `pgid` (a child spawned with `process_group(0)`: its pid is its
/// group's id), so that a shell's children do not outlive it. Only for a child not reaped
/// yet, whose group id cannot have been handed to another.
pub fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else { return };
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is touched.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// The first `limit` bytes of a stream, and whether it said more (a node's answer: whoever
/// sends more is broken or hostile, and is stopped there).
#[derive(Debug, Default)]
pub struct Head {
    limit: usize,
    kept: Vec<u8>,
    over: bool,
}

impl Head {
    pub fn new(limit: usize) -> Head {
        Head { limit, kept: Vec::new(), over: false }
    }

    /// Keeps what fits; true once the stream has passed the limit (what passed is dropped).
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        let room = self.limit - self.kept.len();
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.over |= bytes.len() > room;
        self.over
    }

    pub fn over(&self) -> bool {
        self.over
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.kept
    }
}

/// The last `keep` bytes of a stream (a program's error is at its end), in memory bounded
/// by twice that however much it says.
#[derive(Debug, Default)]
pub struct Tail {
    keep: usize,
    kept: Vec<u8>,
}

impl Tail {
    pub fn new(keep: usize) -> Tail {
        Tail { keep, kept: Vec::new() }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.kept.extend_from_slice(bytes);
        // Drained in batches, not at every push: a byte is moved at most twice.
        if self.kept.len() > 2 * self.keep {
            self.kept.drain(..self.kept.len() - self.keep);
        }
    }

    pub fn into_bytes(mut self) -> Vec<u8> {
        let start = self.kept.len().saturating_sub(self.keep);
        self.kept.split_off(start)
    }
}

/// The last line of `said` with a letter or digit in it, trimmed to 200 characters: a
/// failed program's reason, for an error message.
pub fn last_words(said: &[u8]) -> Option<String> {
    let said = String::from_utf8_lossy(said);
    said.lines().rev().find(|l| l.chars().any(char::is_alphanumeric)).map(|l| l.trim().chars().take(200).collect())
}

/// What [`run`] keeps of an output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Not read at all (/dev/null).
    Nothing,
    /// The first so many bytes; more kills the program ([`Outcome::OutputTooLarge`]).
    Head(usize),
    /// The last so many bytes; the program may say as much as it likes.
    Tail(usize),
}

/// The bounds of [`run`].
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The program and its process group are killed when it has run this long.
    pub deadline: Duration,
    pub stdout: Keep,
    pub stderr: Keep,
}

/// What [`run`] saw.
#[derive(Debug)]
pub struct Finished {
    pub outcome: Outcome,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// How long the output of a program that has ended is still read: something it left behind
/// may hold its pipes open, and is not waited for.
const AFTER_EXIT: Duration = Duration::from_secs(1);

/// How often a reader looks whether it is still wanted: a pipe held open by a process that
/// left the group (`setsid`) is dropped that long after [`run`] returns, not kept forever.
const READER_POLL: Duration = Duration::from_millis(50);

/// Runs `command` (its arguments an argument vector: no shell) with no stdin, in a process
/// group of its own, within `bounds`: killed with its group at the deadline
/// ([`Outcome::TimedOut`]) or when a [`Keep::Head`] stream passes its limit. When it ends,
/// what it left running in its group is killed too; a process that left the group keeps
/// its pipe only until [`run`] returns (its read end is closed then, its reader ended).
pub fn run(mut command: Command, bounds: &Bounds) -> Finished {
    let piped = |keep: Keep| if keep == Keep::Nothing { Stdio::null() } else { Stdio::piped() };
    command.stdin(Stdio::null()).stdout(piped(bounds.stdout)).stderr(piped(bounds.stderr)).process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let reason = format!("{}: {e}", command.get_program().to_string_lossy());
            return Finished { outcome: Outcome::NotStarted { reason }, stdout: Vec::new(), stderr: Vec::new() };
        }
    };
    let pgid = child.id();
    // Each stream read on a thread of its own: a full pipe would stop the program otherwise.
    let stop = Arc::new(AtomicBool::new(false));
    let stdout = child.stdout.take().map(|s| read_bounded(s, bounds.stdout, pgid, Arc::clone(&stop)));
    let stderr = child.stderr.take().map(|s| read_bounded(s, bounds.stderr, pgid, Arc::clone(&stop)));
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match exited(pgid) {
            Ok(true) => {
                // Not reaped yet, so its group's id is still its own: what it left running
                // there (a daemon holding its pipes) goes with it.
                kill_group(pgid);
                break Ok(child.wait());
            }
            Ok(false) if started.elapsed() >= bounds.deadline => {
                kill_group(pgid);
                let _ = child.wait();
                break Err(Outcome::TimedOut);
            }
            // Short at first (most programs end at once), then at most every 20 ms.
            Ok(false) => {
                std::thread::sleep(pause.min(bounds.deadline.saturating_sub(started.elapsed())));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => {
                kill_group(pgid);
                let _ = child.wait();
                break Err(Outcome::NotStarted { reason: e.to_string() });
            }
        }
    };
    // A reader still going then (a process outside the group holds the pipe) is stopped,
    // and gives what it read until then.
    let ended = Instant::now();
    let take = |read: Option<mpsc::Receiver<(Vec<u8>, bool)>>| {
        read.and_then(|r| {
            r.recv_timeout(AFTER_EXIT.saturating_sub(ended.elapsed()))
                .or_else(|_| {
                    stop.store(true, Ordering::Relaxed);
                    r.recv()
                })
                .ok()
        })
        .unwrap_or_default()
    };
    let ((stdout, out_over), (stderr, err_over)) = (take(stdout), take(stderr));
    let limit = |keep: Keep| if let Keep::Head(limit) = keep { limit as u64 } else { 0 };
    let outcome = match status {
        Err(outcome) => outcome,
        Ok(_) if out_over => Outcome::OutputTooLarge { limit_bytes: limit(bounds.stdout) },
        Ok(_) if err_over => Outcome::OutputTooLarge { limit_bytes: limit(bounds.stderr) },
        Ok(waited) => Outcome::of(waited),
    };
    Finished { outcome, stdout, stderr }
}

/// Whether the child `pid` has ended, without reaping it (`WNOWAIT`): until it is reaped
/// its pid, and so its group's id, cannot be handed to another process.
fn exited(pid: u32) -> std::io::Result<bool> {
    let pid = libc::id_t::from(pid);
    // SAFETY: waitid(2) writes only the siginfo_t given, zeroed first (si_pid stays 0 when
    // nothing has ended, as WNOHANG documents).
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let done = unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: filled in by waitid above (or still zeroed).
    Ok(unsafe { info.si_pid() } != 0)
}

/// Whether `fd` has something to read (or its end) within [`READER_POLL`].
fn readable(fd: RawFd) -> bool {
    let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll(2) on one pollfd we own, for a bounded time.
    let ready = unsafe { libc::poll(&mut poll, 1, READER_POLL.as_millis() as libc::c_int) };
    // An error other than a signal's interruption: the read says which.
    ready > 0 || (ready < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted)
}

/// Reads `stream` on a thread as `keep` says; what it kept, and whether it passed a
/// [`Keep::Head`] limit (the group `pgid` is killed then), come on the channel. The thread
/// ends, closing the stream, at its end or once `stop` is set.
fn read_bounded(
    mut stream: impl std::io::Read + AsRawFd + Send + 'static,
    keep: Keep,
    pgid: u32,
    stop: Arc<AtomicBool>,
) -> mpsc::Receiver<(Vec<u8>, bool)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        let mut head = Head::new(if let Keep::Head(limit) = keep { limit } else { 0 });
        let mut tail = Tail::new(if let Keep::Tail(keep) = keep { keep } else { 0 });
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if !readable(stream.as_raw_fd()) {
                continue;
            }
            let Ok(n) = stream.read(&mut chunk) else { break };
            if n == 0 {
                break;
            }
            match keep {
                Keep::Head(_) if head.push(&chunk[..n]) => {
                    kill_group(pgid);
                    break;
                }
                Keep::Head(_) | Keep::Nothing => {}
                Keep::Tail(_) => tail.push(&chunk[..n]),
            }
        }
        let over = head.over();
        let kept = if let Keep::Head(_) = keep { head.into_bytes() } else { tail.into_bytes() };
        let _ = tx.send((kept, over));
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &std::path::Path, name: &str, body: &str) -> Command {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Command::new(path)
    }

    fn bounds(deadline: Duration, stdout: Keep, stderr: Keep) -> Bounds {
        Bounds { deadline, stdout, stderr }
    }

    /// A program that never ends (and a child of its own holding the pipe) is killed with its
    /// group at the deadline: the caller hears so, and does not hang.
    #[test]
    fn a_hanging_program_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-pid");
        let prog = script(dir.path(), "hangs", &format!("sleep 600 & echo $! > {}; sleep 600", marker.display()));
        let started = Instant::now();
        let ran = run(prog, &bounds(Duration::from_millis(300), Keep::Nothing, Keep::Tail(100)));
        assert_eq!(ran.outcome, Outcome::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        // The background child went with its group.
        let child: libc::pid_t = std::fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        assert!(state.is_empty() || state.contains(") Z "), "the group's child still runs: {state}");
    }

    /// A program that ends leaving a daemon in its group holding its stderr: the daemon is
    /// killed with the group when the program ends (it would outlive every push otherwise).
    #[test]
    fn what_a_program_leaves_in_its_group_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-pid");
        let prog = script(dir.path(), "leaves", &format!("sleep 600 & echo $! > {}; exit 0", marker.display()));
        let started = Instant::now();
        let ran = run(prog, &bounds(Duration::from_secs(60), Keep::Nothing, Keep::Tail(100)));
        assert_eq!(ran.outcome, Outcome::Exited { code: 0 });
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let child: libc::pid_t = std::fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        assert!(state.is_empty() || state.contains(") Z "), "left running: {state}");
    }

    /// A process that left the group (`setsid`) keeps the program's stdout open: `run` returns
    /// all the same, and its read end is closed then (the reader does not stay blocked on it
    /// for ever: the process's next write fails).
    #[test]
    fn a_pipe_held_outside_the_group_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let survived = dir.path().join("survived");
        let ready = dir.path().join("ready");
        // The program waits until the other process has left its group (killed with it else).
        let body = format!(
            "setsid sh -c 'echo $$ > {ready}; sleep 3; echo late && touch {survived}' & \
             while [ ! -s {ready} ]; do sleep 0.01; done; echo early",
            ready = ready.display(),
            survived = survived.display()
        );
        let prog = script(dir.path(), "escapes", &body);
        let started = Instant::now();
        let ran = run(prog, &bounds(Duration::from_secs(60), Keep::Head(1000), Keep::Nothing));
        assert_eq!(ran.outcome, Outcome::Exited { code: 0 });
        assert_eq!(ran.stdout, b"early\n");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        std::thread::sleep(Duration::from_secs(5));
        assert!(!survived.exists(), "the escaped process still wrote to a pipe somebody read");
    }

    /// A program that says far more than is kept: stderr's end is kept (its last line is the
    /// reason), memory stays bounded, stdout not read at all.
    #[test]
    fn a_tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let prog = script(
            dir.path(),
            "says-much",
            "head -c 20000000 /dev/zero | tr '\\0' x; head -c 20000000 /dev/zero | tr '\\0' y >&2; echo >&2; echo 'the last word' >&2; exit 3",
        );
        let ran = run(prog, &bounds(Duration::from_secs(60), Keep::Nothing, Keep::Tail(16 * 1024)));
        assert_eq!(ran.outcome, Outcome::Exited { code: 3 });
        assert_eq!(ran.stderr.len(), 16 * 1024);
        assert!(ran.stdout.is_empty());
        assert_eq!(last_words(&ran.stderr).as_deref(), Some("the last word"));
    }

    /// A stream past its head limit kills the program (it would never end here) and says so.
    #[test]
    fn a_head_past_its_limit_kills_the_program() {
        let dir = tempfile::tempdir().unwrap();
        let prog = script(dir.path(), "endless", "echo first; yes; sleep 600");
        let started = Instant::now();
        let ran = run(prog, &bounds(Duration::from_secs(60), Keep::Head(1000), Keep::Nothing));
        assert_eq!(ran.outcome, Outcome::OutputTooLarge { limit_bytes: 1000 });
        assert_eq!(ran.stdout.len(), 1000);
        assert!(ran.stdout.starts_with(b"first\ny\n"));
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        // Exactly the limit is not over it.
        let prog = script(dir.path(), "exact", "head -c 1000 /dev/zero");
        let ran = run(prog, &bounds(Duration::from_secs(60), Keep::Head(1000), Keep::Nothing));
        assert_eq!((ran.outcome, ran.stdout.len()), (Outcome::Exited { code: 0 }, 1000));
    }

    /// Arguments go as an argument vector: shell characters and spaces reach the program as
    /// they are, one argument each.
    #[test]
    fn arguments_are_an_argument_vector() {
        let dir = tempfile::tempdir().unwrap();
        let mut prog = script(dir.path(), "args", "for a in \"$@\"; do printf '%s|' \"$a\"; done");
        prog.args(["--cluster=a b", "$(touch pwned)", ";id"]).current_dir(dir.path());
        let ran = run(prog, &bounds(Duration::from_secs(60), Keep::Head(1000), Keep::Nothing));
        assert!(ran.outcome.success(), "{:?}", ran.outcome);
        assert_eq!(ran.stdout, b"--cluster=a b|$(touch pwned)|;id|");
        assert!(!dir.path().join("pwned").exists());
    }

    #[test]
    fn a_program_that_cannot_start_is_named() {
        let ran =
            run(Command::new("/nonexistent/lct-prog"), &bounds(Duration::from_secs(1), Keep::Nothing, Keep::Nothing));
        assert!(
            matches!(&ran.outcome, Outcome::NotStarted { reason } if reason.starts_with("/nonexistent/lct-prog: "))
        );
        assert!(ran.outcome.describe().starts_with("not started: /nonexistent/lct-prog"));
    }

    #[test]
    fn bounded_buffers() {
        let mut head = Head::new(4);
        assert!(!head.push(b"ab") && !head.push(b"cd") && !head.over());
        assert!(head.push(b"e"));
        assert_eq!(head.into_bytes(), b"abcd");
        let mut tail = Tail::new(3);
        for _ in 0..1000 {
            tail.push(b"xyz1");
        }
        tail.push(b"end");
        assert_eq!(tail.into_bytes(), b"end");
        assert_eq!(last_words(b"ok\n\n  the reason  \n---\n").as_deref(), Some("the reason"));
        assert_eq!(last_words(b"\n--\n"), None);
        assert_eq!(Outcome::OutputTooLarge { limit_bytes: 16 }.describe(), "killed: more than 16 bytes of output");
    }
}
