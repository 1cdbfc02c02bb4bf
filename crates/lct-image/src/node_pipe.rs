//! A program run on a node over lct's SSH (pinned host keys, argument vectors quoted word by
//! word by `lct_inventory::exec::command_for`), its answer read with bounds: at most so many
//! bytes, and killed when it has said nothing for a while (`LCT_IMAGE_NODE_TIMEOUT` seconds,
//! 60 by default). Every byte through these pipes is counted ([`traffic`]): what the
//! controller carried for a repository on a node.

use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lct_core::bounded::{Tail, kill_group};
use lct_core::record::Node;

use crate::error::ImageError;

/// Bytes through the controller's pipes to nodes, in this process.
static TRAFFIC: AtomicU64 = AtomicU64::new(0);

/// Counts `bytes` sent to a node another way (a program installed by lct-inventory).
pub fn count(bytes: u64) {
    TRAFFIC.fetch_add(bytes, Ordering::Relaxed);
}

/// What went through the controller's pipes to nodes so far (both ways).
pub fn traffic() -> u64 {
    TRAFFIC.load(Ordering::Relaxed)
}

/// How long a node may say nothing before its command is killed.
pub fn idle_limit() -> Duration {
    let secs = std::env::var("LCT_IMAGE_NODE_TIMEOUT").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(60);
    Duration::from_secs(secs.max(1))
}

fn refused(message: String) -> ImageError {
    ImageError::Refused(message)
}

/// The command that runs `argv` on `node` (no shell string built here: each word is quoted
/// by lct-inventory's one quoting function).
pub fn on_node(node: &Node, argv: &[&str]) -> Result<Command, ImageError> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let options = lct_inventory::exec::ExecOptions::default();
    let full = lct_inventory::exec::command_for(node, &argv, &options).map_err(refused)?;
    let mut command = Command::new(&full[0]);
    command.args(&full[1..]);
    Ok(command)
}

/// A running command on a node: its stdout read through [`Piped::read`], watched.
pub struct Piped {
    /// Who answers, for errors (`node NAME: lct-image repo list`).
    pub what: String,
    child: Child,
    stdout: ChildStdout,
    stdin: Option<ChildStdin>,
    last: Arc<AtomicU64>,
    started: Instant,
    timed_out: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    stderr: Arc<Mutex<Tail>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
    finished: bool,
    /// Why it failed, once known (said once, however often asked).
    failed: Option<String>,
}

/// The last this many bytes of a command's stderr are kept (for its error message).
const STDERR_TAIL: usize = 8192;

impl Piped {
    /// Starts `command` (`what` names it in errors), its stdin piped when `stdin`.
    pub fn spawn(mut command: Command, what: String, stdin: bool) -> Result<Piped, ImageError> {
        command.stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        // A group of its own: what it started (ip netns exec, a shell) is stopped with it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| refused(format!("{what}: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let started = Instant::now();
        let last = Arc::new(AtomicU64::new(0));
        let stderr = Arc::new(Mutex::new(Tail::new(STDERR_TAIL)));
        let (tail, seen) = (stderr.clone(), last.clone());
        // stderr is read as it comes (progress lines count as signs of life), only its tail kept.
        let stderr_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                TRAFFIC.fetch_add(n as u64, Ordering::Relaxed);
                seen.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                tail.lock().expect("not poisoned").push(&buf[..n]);
            }
        });
        let (timed_out, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let pid = child.id();
        let (watch_last, watch_out, watch_stop, limit) = (last.clone(), timed_out.clone(), stop.clone(), idle_limit());
        std::thread::spawn(move || {
            while !watch_stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let quiet = started.elapsed().saturating_sub(Duration::from_millis(watch_last.load(Ordering::Relaxed)));
                if quiet > limit && !watch_stop.load(Ordering::Relaxed) {
                    watch_out.store(true, Ordering::Relaxed);
                    // Our own child's group, not reaped yet (reaping sets `stop` first).
                    kill_group(pid);
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(Piped {
            what,
            child,
            stdout,
            stdin,
            last,
            started,
            timed_out,
            stop,
            stderr,
            stderr_thread: Some(stderr_thread),
            finished: false,
            failed: None,
        })
    }

    /// Stops the command and everything it started.
    fn kill(&mut self) {
        if !self.finished {
            // Our own child's group; the child is not reaped yet.
            kill_group(self.child.id());
        }
    }

    fn alive(&self) {
        self.last.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Writes to the command's stdin.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        // Written in pieces, so that a long write is a sign of life, not silence.
        for chunk in bytes.chunks(1 << 16) {
            let stdin = self.stdin.as_mut().ok_or_else(|| refused(format!("{}: its input is closed", self.what)))?;
            if let Err(e) = stdin.write_all(chunk) {
                return Err(self.failure(Some(e)));
            }
            TRAFFIC.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            self.alive();
        }
        Ok(())
    }

    /// Closes the command's stdin (it has all its input).
    pub fn close_input(&mut self) {
        self.stdin = None;
    }

    /// Waits for the command (its stdout at its end) and says why it failed, if it did.
    fn finish(&mut self) -> Result<(), ImageError> {
        if self.finished {
            return self.failed.clone().map_or(Ok(()), |why| Err(refused(why)));
        }
        let result = self.wait();
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }

    fn wait(&mut self) -> Result<(), ImageError> {
        self.stdin = None;
        let status = self.child.wait().map_err(|e| refused(format!("{}: {e}", self.what)));
        self.stop.store(true, Ordering::Relaxed);
        self.finished = true;
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        let status = status?;
        if self.timed_out.load(Ordering::Relaxed) {
            return Err(refused(format!("{}: said nothing for {} s: stopped", self.what, idle_limit().as_secs())));
        }
        if !status.success() {
            let tail = std::mem::take(&mut *self.stderr.lock().expect("not poisoned")).into_bytes();
            // The last line that is not a progress record says why.
            let text = String::from_utf8_lossy(&tail);
            let why = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.contains("\"image-progress\""))
                .unwrap_or("no message")
                .trim()
                .to_string();
            return Err(refused(format!("{}: {why} ({status})", self.what)));
        }
        Ok(())
    }

    /// The error a broken pipe stands for: the command's own, else `error`.
    fn failure(&mut self, error: Option<io::Error>) -> ImageError {
        self.kill();
        match (self.finish(), error) {
            (Err(e), _) => e,
            (Ok(()), Some(e)) => refused(format!("{}: {e}", self.what)),
            (Ok(()), None) => refused(format!("{}: ended early", self.what)),
        }
    }

    /// Everything the command writes (at most `limit` bytes), once it has ended well.
    pub fn answer(mut self, limit: u64) -> Result<Vec<u8>, ImageError> {
        self.close_input();
        let mut out = Vec::new();
        let read = (&mut self).take(limit + 1).read_to_end(&mut out);
        if let Err(e) = read {
            return Err(self.failure(Some(e)));
        }
        if out.len() as u64 > limit {
            self.kill();
            let _ = self.finish();
            return Err(refused(format!("{}: an answer longer than the {limit} bytes it may have", self.what)));
        }
        self.finish()?;
        Ok(out)
    }
}

impl Read for Piped {
    /// The command's stdout; at its end, the command's failure (if it failed) as an error.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 {
            return self.finish().map(|()| 0).map_err(io::Error::other);
        }
        TRAFFIC.fetch_add(n as u64, Ordering::Relaxed);
        self.alive();
        Ok(n)
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        if !self.finished {
            self.kill();
            let _ = self.child.wait();
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    //! A node's answer is never trusted to end or to be short: these use local commands
    //! standing in for a hostile node.

    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn an_answer_that_never_ends_is_cut_at_its_bound() {
        let piped = Piped::spawn(sh("yes"), "node x: endless".into(), false).unwrap();
        let error = piped.answer(1 << 20).unwrap_err().to_string();
        assert!(error.contains("longer than the 1048576 bytes"), "{error}");
    }

    #[test]
    fn a_node_that_says_nothing_is_stopped() {
        // SAFETY: set before any thread of this test reads it; the other tests use the default.
        unsafe { std::env::set_var("LCT_IMAGE_NODE_TIMEOUT", "1") };
        let started = Instant::now();
        let piped = Piped::spawn(sh("sleep 30"), "node x: silent".into(), false).unwrap();
        let error = piped.answer(100).unwrap_err().to_string();
        assert!(error.contains("said nothing for 1 s"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_failure_is_said_with_the_nodes_own_words() {
        let piped = Piped::spawn(sh("echo 'no image zk' >&2; exit 3"), "node x: show".into(), false).unwrap();
        let error = piped.answer(100).unwrap_err().to_string();
        assert!(error.contains("node x: show: no image zk"), "{error}");
    }
}
