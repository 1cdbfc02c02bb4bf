//! What the firewall tests share: a lab with clusters, listeners and probes in its node
//! namespaces, and `lct-fw watch` started in one.
#![allow(dead_code)] // each test file uses its part

use std::process::{Command, Stdio};

use lct_tests::{Background, Env};

/// Listeners in a node's namespace, killed on drop.
pub struct Listeners(#[allow(dead_code)] Vec<Background>);

impl Listeners {
    pub fn start(env: &Env, node: &str, ports: &[u16]) -> Listeners {
        let ns = env.ns(node);
        let mut children = Vec::new();
        for port in ports {
            for family in ["-4", "-6"] {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &ns, "nc", family, "-lk", &port.to_string()]);
                children.push(Background::spawn(cmd));
            }
        }
        // Until every port accepts on loopback (lo is always admitted).
        for port in ports {
            lct_tests::fixtures::until(
                &format!("{node} listens on {port}"),
                std::time::Duration::from_secs(10),
                || env.in_ns(node, &["nc", "-z", "-w", "1", "127.0.0.1", &port.to_string()]).status == 0,
            );
        }
        Listeners(children)
    }
}

/// Whether a new TCP connection from `from`'s namespace to `addr:port` is accepted.
pub fn connects(env: &Env, from: &str, addr: &str, port: u16) -> bool {
    env.in_ns(from, &["nc", "-z", "-w", "1", addr, &port.to_string()]).status == 0
}

pub fn table(env: &Env, node: &str) -> String {
    env.in_ns(node, &["nft", "list", "table", "inet", "lct"]).stdout
}

pub const ZK1: &str = "192.168.128.1";
pub const ZK1_V6: &str = "2001:db8::1";
pub const ZK1_PUBLIC: &str = "203.0.113.1";

pub fn cluster_setup(env: &Env) {
    env.run("lct-api", &["create", "--cluster", "zk", "--count", "2"]).ok(); // .1 .2
    env.run("lct-api", &["create", "--cluster", "hdfs", "--count", "1"]).ok(); // .3
    env.run("lct-api", &["create", "--cluster", "web", "--count", "1"]).ok(); // .4
    env.run("lct-fw", &["declare", "zk", "--admin-cidr", "203.0.113.254/32", "--allow", "self->*:2888-3888/tcp"]).ok();
    env.run("lct-inventory", &["clusters", "set", "hdfs", "--depends-on", "zk:node:2181/tcp,5353/udp"]).ok();
}

/// `lct-fw watch` in a node's namespace, its log (info level) in the state directory, once it
/// says it is watching.
pub fn start_watcher(env: &Env, node: &str, args: &[&str]) -> (Background, std::path::PathBuf) {
    let fw = lct_tests::bin("lct-fw");
    let log = env.state.path().join(format!("watch-{node}.log"));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &env.ns(node), fw.to_str().unwrap(), "-v", "watch"]).args(args);
    let watcher = Background::spawn_logged(cmd, &log);
    poll(
        || std::fs::read_to_string(&log).unwrap_or_default().contains("watching table inet lct"),
        "the watcher starts",
    );
    (watcher, log)
}

/// Polls `done` every 2 ms for up to 5 s; panics naming `what` if it never holds.
pub fn poll(done: impl FnMut() -> bool, what: &str) {
    use std::time::Duration;
    lct_tests::fixtures::until_every(what, Duration::from_secs(5), Duration::from_millis(2), done);
}

/// Runs `lct-fw ARGS` inside a node's namespace with `input` on stdin.
pub fn fw_in(env: &Env, node: &str, args: &[&str], input: &str) -> lct_tests::Run {
    let fw = lct_tests::bin("lct-fw").to_str().unwrap().to_string();
    let ns = env.ns(node);
    let mut full = vec!["netns", "exec", ns.as_str(), fw.as_str()];
    full.extend_from_slice(args);
    let mut child = Command::new("ip")
        .args(&full)
        .env("LCT_STATE_DIR", env.state.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    lct_tests::Run::from(child.wait_with_output().unwrap())
}
