//! Helpers for the end-to-end tests: finding the built binaries, running them with a
//! private state directory, and a local-cloud lab that cleans up after itself.
//!
//! The binaries are those of `cargo build --workspace` in the same target directory
//! (`scripts/test` builds them first).

pub mod fixtures;
pub mod schema;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use lct_core::record::Node;

/// The path of a built binary of the workspace.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/TEST-HASH -> target/debug/NAME
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace` first (scripts/test does)", path.display());
    path
}

pub use lct_core::privilege::is_root;

/// Runs a prepared command with `input` on stdin.
pub fn run_command(mut command: Command, input: &str) -> Run {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    // A command that exits without reading all of its input (a usage error) closes the pipe.
    match child.stdin.take().unwrap().write_all(input.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing stdin: {e}"),
        _ => {}
    }
    Run::from(child.wait_with_output().expect("wait"))
}

/// The result of running a binary.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// What a finished command gave.
    pub fn from(out: Output) -> Run {
        Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with the output unless the exit status is 0.
    pub fn ok(self) -> Run {
        assert_eq!(self.status, 0, "command failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect()
    }

    pub fn nodes(&self) -> Vec<Node> {
        lct_core::stream::read_kind::<Node>(self.stdout.as_bytes()).expect("node records").0
    }
}

/// A state directory (and, for the local cloud, a lab of its own) for one test.
pub struct Env {
    pub state: tempfile::TempDir,
    pub lab: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Env {
    pub fn new() -> Env {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        // Unique per run (scripts/test sets LCT_TEST_RUN, so it can check afterwards that its
        // own run left nothing, without touching a concurrent run's labs), per process and per
        // test; short enough for namespace and interface names.
        let run: String = std::env::var("LCT_TEST_RUN")
            .ok()
            .filter(|r| !r.is_empty() && r.len() <= 6 && r.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or_else(|| "0".into());
        let lab = format!("t{run}x{}x{n}y{}", std::process::id() % 100_000, nanos % 100);
        Env { state: tempfile::tempdir().expect("temp dir"), lab }
    }

    pub fn command(&self, name: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin(name));
        c.args(args)
            .env("LCT_STATE_DIR", self.state.path())
            .env("LCT_LAB", &self.lab)
            .env_remove("LCT_PROVIDER")
            .env("LCT_IMAGE_DIR", image_dir())
            .env("NO_COLOR", "1");
        c
    }

    /// Runs a binary with no stdin.
    pub fn run(&self, name: &str, args: &[&str]) -> Run {
        Run::from(self.command(name, args).stdin(Stdio::null()).output().expect("spawn"))
    }

    /// Runs a binary with no stdin, and the CPU time it used (user and system, its own:
    /// `wait4`'s accounting), which a busy machine does not stretch as it does wall time.
    #[allow(clippy::zombie_processes, reason = "reaped by wait4 below, which std cannot do")]
    pub fn run_cpu_timed(&self, name: &str, args: &[&str]) -> (Run, std::time::Duration) {
        use std::io::Read;
        let mut child = self
            .command(name, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
        // SAFETY: the child is ours and not yet reaped; status and usage are valid out-pointers.
        let reaped = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
        assert_eq!(reaped, child.id() as libc::pid_t, "wait4: {}", std::io::Error::last_os_error());
        let time = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        let cpu = time(usage.ru_utime) + time(usage.ru_stime);
        let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
        let run = Run { status: code, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() };
        (run, cpu)
    }

    /// Runs a binary with `input` on stdin.
    pub fn run_with_input(&self, name: &str, args: &[&str], input: &str) -> Run {
        run_command(self.command(name, args), input)
    }

    /// The first address in `field` (`private_ipv4`, `public_ipv4`) of `node`, as the
    /// inventory has it.
    pub fn node_address(&self, node: &str, field: &str) -> String {
        let nodes = self.run("lct-inventory", &["query", "-o", "jsonl"]).ok().json_lines();
        let n = nodes.iter().find(|n| n["name"] == node).unwrap_or_else(|| panic!("no node {node}"));
        n[field][0].as_str().unwrap_or_else(|| panic!("{node} has no {field}")).to_string()
    }

    /// The namespace of a node of this lab.
    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.lab)
    }

    /// Runs a command inside a namespace of this lab (`node`, or `outside`).
    pub fn in_ns(&self, node: &str, args: &[&str]) -> Run {
        let ns = self.ns(node);
        let mut full = vec!["netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        Run::from(Command::new("ip").args(&full).stdin(Stdio::null()).output().expect("spawn ip"))
    }

    /// Whether `node`'s namespace reaches `addr` with one ping.
    pub fn pings(&self, node: &str, addr: &str) -> bool {
        self.in_ns(node, &["ping", "-c", "1", "-W", "1", "-q", addr]).status == 0
    }

    /// The namespaces of this lab that exist now.
    /// The Linode API double as a process of its own, backed by this test's local cloud
    /// (its instances are machines of this lab): the helper, and the API's URL.
    pub fn linode_double_backed_by_machines(&self, token: &str) -> (Background, String) {
        let (double, settings) = self.linode_double_settings(token);
        (double, settings["LINODE_URL"].clone())
    }

    /// The same, and the settings it prints for lct (`export LINODE_URL=... LINODE_TOKEN=...
    /// LCT_LINODE_SSH_NETNS=...`), by name.
    pub fn linode_double_settings(&self, token: &str) -> (Background, std::collections::BTreeMap<String, String>) {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut double = self.command("lct-linode-double", &["--speed", "100", "--token", token, "--backing", "local"]);
        double.stdout(Stdio::piped()).stderr(Stdio::null()).stdin(Stdio::null()).process_group(0);
        let mut child = double.spawn().expect("the Linode double starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("its settings");
        let settings = line
            .trim()
            .strip_prefix("export ")
            .unwrap_or_else(|| panic!("not an export line: {line:?}"))
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (Background(child, None), settings)
    }

    /// Runs `cmd` on a machine node over SSH, as lct does (its key, its pinned host keys),
    /// from the namespace its access names.
    pub fn ssh(&self, node: &str, cmd: &str) -> Run {
        Run::from(self.ssh_command(node, cmd).output().unwrap())
    }

    /// [`Env::ssh`] with `input` on the remote command's standard input (a secret a test
    /// hands a node stays off every command line).
    pub fn ssh_with_input(&self, node: &str, cmd: &str, input: &str) -> Run {
        run_command(self.ssh_command(node, cmd), input)
    }

    fn ssh_command(&self, node: &str, cmd: &str) -> Command {
        let nodes = self.run("lct-inventory", &["query", "-o", "jsonl"]).ok().json_lines();
        let n = nodes.iter().find(|n| n["name"] == node).unwrap_or_else(|| panic!("no node {node}"));
        let ssh = self.state.path().join("ssh");
        let mut argv: Vec<String> =
            vec!["netns".into(), "exec".into(), n["access"]["netns"].as_str().unwrap().into(), "ssh".into()];
        for o in [
            "BatchMode=yes".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            format!("UserKnownHostsFile={}", ssh.join("known_hosts").display()),
            format!("IdentityFile={}", ssh.join("id_ed25519").display()),
            "ConnectTimeout=5".to_string(),
        ] {
            argv.extend(["-o".into(), o]);
        }
        argv.push(format!("root@{}", n["access"]["host"].as_str().unwrap()));
        argv.push(cmd.into());
        let mut command = Command::new("ip");
        command.args(&argv);
        command
    }

    pub fn namespaces(&self) -> Vec<String> {
        let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
        let prefix = format!("{}-", self.lab);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|ns| ns.starts_with(&prefix))
            .map(str::to_string)
            .collect()
    }
}

impl Env {
    /// The machines' own cgroups of this lab left anywhere in this host's cgroup file
    /// systems (`lct-LAB-NODE`, made by each machine's supervisor; local/cgroups.rs).
    pub fn machine_cgroups(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, prefix: &str, depth: usize, found: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for e in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(prefix) {
                    found.push(e.path());
                } else if depth > 0 && !name.starts_with("lct-") {
                    walk(&e.path(), prefix, depth - 1, found);
                }
            }
        }
        let mut found = Vec::new();
        walk(Path::new("/sys/fs/cgroup"), &format!("lct-{}-", self.lab), 8, &mut found);
        found
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if !is_root() {
            return;
        }
        // The tool's own teardown first; then, whatever happened, nothing of this lab stays.
        let _ = self.command("lct-api", &["lab", "down"]).stdin(Stdio::null()).output();
        for ns in self.namespaces() {
            let _ = Command::new("ip").args(["netns", "delete", &ns]).status();
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
        }
        let prefix = format!("{}-", self.lab);
        for dir in ["/etc/netns", "/run/lct/netns"] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        let _ = std::fs::remove_dir_all(e.path());
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        // Machines: no container or overlay of this state directory may outlive the test.
        let state = self.state.path().display().to_string();
        let _ = Command::new("pkill").args(["-KILL", "-f", &format!("systemd-nspawn.*--directory={state}/")]).status();
        // And no helper of it (Ansible's shared SSH connections name the state directory).
        let _ = Command::new("pkill").args(["-KILL", "-f", &format!("{state}/")]).status();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
            for m in mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&state)) {
                let _ = Command::new("umount").args(["--lazy", m]).status();
            }
        }
        // The machines' own cgroups (their supervisors killed above leave them).
        for dir in self.machine_cgroups() {
            let _ = Command::new("find").arg(&dir).args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"]).status();
        }
        let volumes = self.state.path().join("local/volumes");
        if let Ok(entries) = std::fs::read_dir(&volumes) {
            for e in entries.flatten() {
                let _ = Command::new("sh")
                    .args(["-c", "losetup -j \"$1\" -O NAME -n -l | xargs -r -n1 losetup -d", "sh"])
                    .arg(e.path())
                    .status();
            }
        }
    }
}

/// Where tests keep the machine base root and the package mirror: one for every test and
/// run of this machine (`LCT_IMAGE_DIR` if set), so the base is built once, not per test.
pub fn image_dir() -> String {
    std::env::var("LCT_IMAGE_DIR").ok().filter(|d| !d.is_empty()).unwrap_or_else(|| "/var/tmp/lct-test-images".into())
}

/// A helper process of a test (a listener, a probe, a server), in a process group of its
/// own, with no inherited output (a leftover must never hold the test runner's pipes open),
/// and ended with its whole group when dropped, also when the test fails.
pub struct Background(pub std::process::Child, Option<std::path::PathBuf>);

impl Background {
    pub fn spawn(mut cmd: Command) -> Background {
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
        Background(cmd.spawn().expect("spawn a helper process"), None)
    }

    /// As [`Background::spawn`], its standard error going to `log` (to read what it said).
    pub fn spawn_logged(mut cmd: Command, log: &std::path::Path) -> Background {
        use std::os::unix::process::CommandExt;
        let file = std::fs::File::create(log).expect("create a log file");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file).process_group(0);
        Background(cmd.spawn().expect("spawn a helper process"), Some(log.to_path_buf()))
    }

    /// Waits for it to end by itself (a probe that saw its stop file).
    pub fn wait(&mut self) {
        let _ = self.0.wait();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let ended = self.0.try_wait();
        if let Ok(None) = ended {
            lct_core::bounded::kill_group(self.0.id());
            let _ = self.0.wait();
        }
        // A failing test shows what its helper said (the log goes with the test's directory),
        // and whether it had ended before the test let go of it.
        if let (true, Some(log)) = (std::thread::panicking(), &self.1) {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let ended = match ended {
                Ok(Some(status)) => format!("had ended by itself ({status})"),
                _ => "was still running".to_string(),
            };
            eprintln!("helper {} {ended}; the end of {}:", self.0.id(), log.display());
            for line in tail.iter().rev() {
                eprintln!("  {line}");
            }
        }
    }
}

/// A port free on loopback for TCP and UDP right now, for a server a test starts: tests
/// running side by side never collide.
pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range (`ip_local_port_range`, 32768-60999 by default): a
    // port from that range, free at the pick, can be taken before the server binds it as the
    // source port of any query or connection on the machine (a dig, a transfer, a NOTIFY).
    // Never the same port twice in one test binary, so two tests side by side never start
    // their servers on one port (one fails to bind, the other answers for it until it ends).
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10000u16, ephemeral.clamp(12000, 32768) - 1);
    let span = high - low + 1;
    let start = lct_core::random::u16().expect("a random start") % span;
    for step in 0..span {
        let port = low + (start + step) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port)
        {
            return port;
        }
    }
    panic!("no loopback port free for TCP and UDP in {low}-{high}");
}

/// Runs a blocking socket call again when it was interrupted. A read with a timeout
/// (SO_RCVTIMEO) fails with EINTR when the process is stopped and continued (SIGSTOP, then
/// SIGCONT: a CI runner or a debugger pausing the tests), even with no signal handler.
pub fn uninterrupted<T>(mut call: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A small HTTP/1.1 file server on loopback for the tests of sources by URL: GET with
/// `Range: bytes=A-` or `bytes=A-B` (206) or without (200), 404 for what is not there.
/// `cut_next_after(n)` makes the next response with a body longer than `n` stop after `n`
/// bytes and close the connection (a dropped transfer); `requests()` counts the requests.
pub struct HttpFiles {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicU64>,
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl HttpFiles {
    pub fn serve(dir: &std::path::Path) -> HttpFiles {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (dir, cut2, requests2) = (dir.to_path_buf(), cut.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (dir, cut, requests) = (dir.clone(), cut2.clone(), requests2.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut out = stream;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        requests.fetch_add(1, Ordering::SeqCst);
                        let path = line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
                        let mut range: Option<(u64, Option<u64>)> = None;
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                                break;
                            }
                            if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                                let (a, b) = v.trim().split_once('-').unwrap();
                                range = Some((a.parse().unwrap(), b.parse().ok()));
                            }
                        }
                        let Ok(body) = std::fs::read(dir.join(&path)) else {
                            let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
                            continue;
                        };
                        let len = body.len() as u64;
                        let (status, from, to) = match range {
                            Some((a, b)) => (206, a, b.unwrap_or(len - 1).min(len - 1)),
                            None => (200, 0, len - 1),
                        };
                        let part = &body[from as usize..=to as usize];
                        let mut head = format!("HTTP/1.1 {status} OK\r\ncontent-length: {}\r\n", part.len());
                        if status == 206 {
                            head.push_str(&format!("content-range: bytes {from}-{to}/{len}\r\n"));
                        }
                        head.push_str("\r\n");
                        let _ = out.write_all(head.as_bytes());
                        let limit = cut.load(Ordering::SeqCst);
                        if limit > 0 && (part.len() as u64) > limit {
                            cut.store(0, Ordering::SeqCst);
                            let _ = out.write_all(&part[..limit as usize]);
                            let _ = out.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        if out.write_all(part).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        HttpFiles { port, cut, requests }
    }

    pub fn url(&self, file: &str) -> String {
        format!("http://127.0.0.1:{}/{file}", self.port)
    }

    pub fn cut_next_after(&self, bytes: u64) {
        self.cut.store(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Writes `bytes` bytes of pseudo-random data (xorshift from `seed`), each byte masked by
/// `mask`: compressible, but not trivially (a disk for image tests).
pub fn pseudo_random_file(path: &Path, bytes: u64, seed: u64, mask: u8) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create the file"));
    let mut seed = seed;
    let mask = u64::from_le_bytes([mask; 8]);
    for _ in 0..bytes / 8 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        f.write_all(&(seed & mask).to_le_bytes()).expect("write the file");
    }
    f.flush().expect("write the file");
}
