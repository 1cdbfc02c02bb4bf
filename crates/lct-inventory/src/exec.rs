//! Running a command on many nodes at once.
//!
//! A local node's command runs inside its network namespace (`ip netns exec`, which also
//! bind-mounts the node's `/etc/netns/NS/hosts` and `resolv.conf`) and in a UTS namespace of
//! its own whose host name is the node's name. A remote node's command runs over OpenSSH in
//! batch mode. Either way the node record is in the environment: `LCT_NODE` (the record as
//! one JSON line), `LCT_NODE_NAME`, `LCT_NODE_CLUSTER`, `LCT_NODE_GROUP`,
//! `LCT_NODE_PRIVATE_IPV4`, `LCT_NODE_PUBLIC_IPV4`.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lct_core::record::{Access, Name, Node, Record};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::{Semaphore, mpsc};

/// How to run.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// How many nodes run at once.
    pub parallel: usize,
    /// Kill a node's command (and everything it started) after this long.
    pub timeout: Option<Duration>,
    /// Extra `-o` options for ssh, e.g. `ServerAliveInterval=5`.
    pub ssh_options: Vec<String>,
    /// lct's own (its client key, its known_hosts, strict host key checking): see
    /// `lct_core::ssh`.
    pub lct_ssh_options: Vec<String>,
    /// The files those options name (a shared store's private copy lives as long as they).
    pub lct_ssh_files: Option<lct_core::ssh::SshFiles>,
    /// Why lct's SSH files could not be had (the state store unreadable, no `LCT_STATE_KEY`
    /// for a shared one): an SSH node is then refused, never reached without lct's pins.
    pub lct_ssh_error: Option<String>,
    /// The most a node's command may write to stdout or to stderr, each, before it is killed
    /// and fails ([`OUTPUT_LIMIT`] unless a tool knows its answers are smaller): every node's
    /// result is kept, so a run holds at most nodes x 2 x this.
    pub output_limit: usize,
}

impl ExecOptions {
    /// The defaults with lct's SSH trust read from the state store; fails when it cannot be
    /// read (ssh without lct's pinned host keys would trust whatever answers).
    pub fn new() -> std::io::Result<ExecOptions> {
        let files = lct_core::ssh::SshFiles::from_env()
            .map_err(|e| std::io::Error::new(e.kind(), format!("lct's SSH keys and pinned host keys: {e}")))?;
        Ok(ExecOptions {
            parallel: 16,
            timeout: None,
            ssh_options: Vec::new(),
            lct_ssh_options: files.client_options(),
            lct_ssh_files: Some(files),
            lct_ssh_error: None,
            output_limit: OUTPUT_LIMIT,
        })
    }
}

impl Default for ExecOptions {
    /// [`ExecOptions::new`], or, when the state cannot be read, options that refuse every
    /// SSH node with the reason (local nodes need no SSH trust).
    fn default() -> Self {
        ExecOptions::new().unwrap_or_else(|e| ExecOptions {
            parallel: 16,
            timeout: None,
            ssh_options: Vec::new(),
            lct_ssh_options: Vec::new(),
            lct_ssh_files: None,
            lct_ssh_error: Some(e.to_string()),
            output_limit: OUTPUT_LIMIT,
        })
    }
}

/// How a node's command ended: lct-core's bounded runner's outcome, shared with every
/// bounded program lct runs.
pub use lct_core::bounded::Outcome;

/// The most a node's command may write to stdout or to stderr, each: a node that sends more
/// (broken, or hostile) fails there instead of filling the controller's memory.
pub const OUTPUT_LIMIT: usize = 16 << 20;

/// One node's result: the `exec-result` record.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExecResult {
    pub node: Name,
    pub cluster: Name,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
}

impl Record for ExecResult {
    const KIND: &'static str = "exec-result";
    const VERSION: u32 = 1;
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A line of output as it arrives.
#[derive(Debug, Clone)]
pub struct OutputLine {
    pub node: Name,
    pub stream: Stream,
    pub text: String,
}

/// Runs `argv` on every node; results come back in the order nodes finish. Lines are also
/// sent to `lines` as they arrive, when given.
pub async fn exec(
    nodes: Vec<Node>,
    argv: Vec<String>,
    options: &ExecOptions,
    lines: Option<mpsc::UnboundedSender<OutputLine>>,
) -> Vec<ExecResult> {
    let jobs = nodes.into_iter().map(|n| (n, argv.clone(), Vec::new())).collect();
    exec_each(jobs, options, lines).await
}

/// Runs a command of its own on each node, with `input` on its stdin (empty: no stdin).
pub async fn exec_each(
    jobs: Vec<(Node, Vec<String>, Vec<u8>)>,
    options: &ExecOptions,
    lines: Option<mpsc::UnboundedSender<OutputLine>>,
) -> Vec<ExecResult> {
    let permits = Arc::new(Semaphore::new(options.parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (node, argv, input) in jobs {
        let permits = permits.clone();
        let options = options.clone();
        let lines = lines.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore is never closed");
            run_one(node, &argv, input, &options, lines).await
        });
    }
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        results.push(r.expect("exec tasks do not panic"));
    }
    results
}

fn node_env(node: &Node) -> Vec<(&'static str, String)> {
    let join = |v: &[std::net::Ipv4Addr]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" ");
    vec![
        ("LCT_NODE", lct_core::stream::to_line(node)),
        ("LCT_NODE_NAME", node.name.to_string()),
        ("LCT_NODE_CLUSTER", node.cluster.to_string()),
        ("LCT_NODE_GROUP", node.group.to_string()),
        ("LCT_NODE_PRIVATE_IPV4", join(&node.private_ipv4)),
        ("LCT_NODE_PUBLIC_IPV4", join(&node.public_ipv4)),
    ]
}

/// Quotes a word for a POSIX shell (the remote side of ssh joins its arguments into one
/// command line).
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The program and arguments that run `argv` on `node`.
pub fn command_for(node: &Node, argv: &[String], options: &ExecOptions) -> Result<Vec<String>, String> {
    match &node.access {
        Some(Access::Netns { netns }) => {
            let mut cmd: Vec<String> = ["ip", "netns", "exec", netns, "unshare", "--uts", "--", "sh", "-c"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            cmd.push(r#"hostname "$0" 2>/dev/null; exec "$@""#.into());
            cmd.push(node.name.to_string());
            cmd.extend(argv.iter().cloned());
            Ok(cmd)
        }
        Some(Access::Ssh { host, port, user, netns }) => {
            // Before anything connects: a lab's address is reached from inside the lab only.
            check_reach(node)?;
            // Never without lct's pins: the operator's ssh config would decide (TOFU).
            if let Some(why) = &options.lct_ssh_error {
                return Err(format!("node {}: not reached over SSH without lct's pinned host keys: {why}", node.name));
            }
            if options.lct_ssh_options.is_empty() {
                return Err(format!("node {}: not reached over SSH without lct's pinned host keys", node.name));
            }
            let mut cmd: Vec<String> = Vec::new();
            if let Some(ns) = netns {
                cmd.extend(["ip", "netns", "exec", ns].map(String::from));
            }
            cmd.push("ssh".into());
            // The operator's options first (for ssh the first value of an option wins, so a
            // deliberate override is possible), then lct's pinned key and host keys.
            for o in options.ssh_options.iter().chain(&options.lct_ssh_options) {
                cmd.extend(["-o".into(), o.clone()]);
            }
            cmd.extend(["-o".into(), "ConnectTimeout=15".into()]);
            cmd.extend(["-p".into(), port.to_string(), "-l".into(), user.clone(), host.clone(), "--".into()]);
            let mut remote = vec!["env".to_string()];
            remote.extend(node_env(node).into_iter().map(|(k, v)| shell_quote(&format!("{k}={v}"))));
            remote.extend(argv.iter().map(|a| shell_quote(a)));
            cmd.push(remote.join(" "));
            Ok(cmd)
        }
        None => Err(format!("node {} has no access method in its record", node.name)),
    }
}

/// Refuses an SSH node whose address is a documentation address (a lab's) that the
/// namespace ssh would start in does not route inside the lab ([`lct_core::reach`]): the
/// one check every connection lct makes to a node over SSH passes, before it is made.
pub fn check_reach(node: &Node) -> Result<(), String> {
    let Some(Access::Ssh { host, netns, .. }) = &node.access else { return Ok(()) };
    match host.parse::<std::net::IpAddr>() {
        Ok(addr) => lct_core::reach::check(addr, netns.as_deref()).map_err(|e| format!("node {}: {e}", node.name)),
        // A host name: resolved by ssh, to whatever it names (not one of the labs' records).
        Err(_) => Ok(()),
    }
}

async fn run_one(
    node: Node,
    argv: &[String],
    input: Vec<u8>,
    options: &ExecOptions,
    lines: Option<mpsc::UnboundedSender<OutputLine>>,
) -> ExecResult {
    let started = Instant::now();
    let mut result = ExecResult {
        node: node.name.clone(),
        cluster: node.cluster.clone(),
        outcome: Outcome::TimedOut,
        stdout: String::new(),
        stderr: String::new(),
        duration_ms: 0,
    };
    let cmd = match command_for(&node, argv, options) {
        Ok(c) => c,
        Err(reason) => {
            result.outcome = Outcome::NotStarted { reason };
            return result;
        }
    };
    let mut command = tokio::process::Command::new(&cmd[0]);
    command
        .args(&cmd[1..])
        .envs(node_env(&node))
        .stdin(if input.is_empty() { Stdio::null() } else { Stdio::piped() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            result.outcome = Outcome::NotStarted { reason: format!("{}: {e}", cmd[0]) };
            return result;
        }
    };
    let pgid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        // Fed from a task of its own so a command that does not read cannot block us.
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(&input).await;
        });
    }
    let limit = options.output_limit;
    let out =
        collect(child.stdout.take().expect("piped"), node.name.clone(), Stream::Stdout, lines.clone(), pgid, limit);
    let err = collect(child.stderr.take().expect("piped"), node.name.clone(), Stream::Stderr, lines, pgid, limit);
    let run = async {
        let (stdout, stderr, status) = tokio::join!(out, err, child.wait());
        (stdout, stderr, status)
    };
    let finished = match options.timeout {
        Some(limit) => tokio::time::timeout(limit, run).await.ok(),
        None => Some(run.await),
    };
    match finished {
        Some(((stdout, out_over), (stderr, err_over), status)) => {
            result.stdout = stdout;
            result.stderr = stderr;
            result.outcome = if out_over || err_over {
                Outcome::OutputTooLarge { limit_bytes: limit as u64 }
            } else {
                Outcome::of(status)
            };
        }
        None => {
            // The whole process group: a shell's children must not outlive the timeout.
            if let Some(pgid) = pgid {
                lct_core::bounded::kill_group(pgid);
            }
            result.outcome = Outcome::TimedOut;
        }
    }
    result.duration_ms = started.elapsed().as_millis() as u64;
    result
}

/// A stream's text, at most `limit` bytes of it, and whether the command wrote more
/// (its process group is then killed: it is not read any further).
async fn collect(
    reader: impl AsyncRead + Unpin,
    node: Name,
    stream: Stream,
    lines: Option<mpsc::UnboundedSender<OutputLine>>,
    pgid: Option<u32>,
    limit: usize,
) -> (String, bool) {
    // A line is read at most up to what is left of the limit (plus one byte, to see it passed).
    let mut reader = BufReader::new(reader).take(limit as u64 + 1);
    let mut head = lct_core::bounded::Head::new(limit);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if head.push(&line) {
                    if let Some(pgid) = pgid {
                        lct_core::bounded::kill_group(pgid);
                    }
                    break;
                }
                if let Some(tx) = &lines {
                    let text = String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']).to_string();
                    let _ = tx.send(OutputLine { node: node.clone(), stream, text });
                }
            }
        }
    }
    let over = head.over();
    (String::from_utf8_lossy(&head.into_bytes()).into_owned(), over)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("plain-word"), "plain-word");
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn ssh_command_quotes_remote_words() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "cluster": "c", "group": "g", "name": "n-1", "provider": "linode", "status": "running",
            "access": {"method": "ssh", "host": "100.64.0.9", "port": 2222}
        }))
        .unwrap();
        let cmd = command_for(&node, &["echo".into(), "a b".into()], &ExecOptions::default()).unwrap();
        assert_eq!(&cmd[..3], ["ssh", "-o", "BatchMode=yes"]);
        let remote = cmd.last().unwrap();
        assert!(remote.starts_with("env 'LCT_NODE={"), "{remote}");
        assert!(remote.ends_with(" echo 'a b'"), "{remote}");
        assert!(cmd.windows(2).any(|w| w == ["-p", "2222"]));
        assert!(cmd.windows(2).any(|w| w == ["-l", "root"]));
    }

    #[test]
    fn a_lab_address_is_refused_before_ssh_is_even_named() {
        // A documentation address from a namespace that does not exist: no route inside a
        // lab, so no command at all (the check asks the kernel; nothing is sent).
        let node: Node = serde_json::from_value(serde_json::json!({
            "cluster": "lz", "group": "node", "name": "lz-1", "provider": "linode", "status": "running",
            "access": {"method": "ssh", "host": "203.0.113.9", "netns": "lct-no-such-lab-outside"}
        }))
        .unwrap();
        let e = command_for(&node, &["true".into()], &ExecOptions::default()).unwrap_err();
        assert!(e.contains("LCT_LINODE_SSH_NETNS") && e.starts_with("node lz-1: refusing"), "{e}");
    }

    #[test]
    fn a_state_that_cannot_be_read_refuses_ssh_rather_than_running_unpinned() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "cluster": "c", "group": "g", "name": "n-1", "provider": "linode", "status": "running",
            "access": {"method": "ssh", "host": "100.64.0.9", "port": 2222}
        }))
        .unwrap();
        let broken = ExecOptions {
            lct_ssh_options: Vec::new(),
            lct_ssh_files: None,
            lct_ssh_error: Some("state store etcd://x/lct: set LCT_STATE_KEY".into()),
            ..ExecOptions::default()
        };
        let e = command_for(&node, &["true".into()], &broken).unwrap_err();
        assert!(e.contains("n-1") && e.contains("pinned host keys") && e.contains("LCT_STATE_KEY"), "{e}");
        let bare = ExecOptions { lct_ssh_options: Vec::new(), lct_ssh_error: None, ..ExecOptions::default() };
        assert!(command_for(&node, &["true".into()], &bare).unwrap_err().contains("pinned host keys"));
    }

    #[tokio::test]
    async fn output_is_bounded() {
        use tokio::io::AsyncReadExt as _;
        let name: Name = "n-1".parse().unwrap();
        // A node that never stops writing (one endless line): cut at the limit, and said so.
        let endless = || tokio::io::repeat(b'x');
        let (text, over) = collect(endless(), name.clone(), Stream::Stdout, None, None, OUTPUT_LIMIT).await;
        assert!(over);
        assert_eq!(text.len(), OUTPUT_LIMIT);
        // Exactly the limit, in lines: all of it, not over.
        let lines = tokio::io::repeat(b'\n').take(OUTPUT_LIMIT as u64);
        let (text, over) = collect(lines, name.clone(), Stream::Stdout, None, None, OUTPUT_LIMIT).await;
        assert!(!over);
        assert_eq!(text.len(), OUTPUT_LIMIT);
        // A tool's own, smaller bound (lct-mesh's answers are small): cut there.
        let (text, over) = collect(endless(), name, Stream::Stdout, None, None, 1000).await;
        assert!(over && text.len() == 1000);
        assert_eq!(ExecOptions::default().output_limit, OUTPUT_LIMIT);
        assert!(Outcome::OutputTooLarge { limit_bytes: 16 }.describe().contains("more than 16 bytes"));
    }

    #[tokio::test]
    async fn node_without_access_is_reported_not_run() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "cluster": "c", "group": "g", "name": "n-1", "provider": "local", "status": "running"
        }))
        .unwrap();
        let results = exec(vec![node], vec!["true".into()], &ExecOptions::default(), None).await;
        assert!(matches!(results[0].outcome, Outcome::NotStarted { .. }));
    }
}
