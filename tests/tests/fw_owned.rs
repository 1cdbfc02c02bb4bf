//! `lct-fw watch` owning lct's table (nf_tables' owner and persist flags, Linux 6.9+): others'
//! flushes pass it by and their changes to it are refused, syncs go through the watcher, and
//! the table outlives it. In the local cloud's namespaces, probed with real TCP connections.

mod fw_lab;

use std::sync::atomic::{AtomicBool, Ordering};

use fw_lab::*;
use lct_tests::Env;

/// The path of the watcher's unix socket for a node's namespace.
/// Polls `done` every 50 ms for up to `secs` s.
fn poll_for(secs: u64, mut done: impl FnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn socket_of(env: &Env, node: &str) -> String {
    let ino = env.in_ns(node, &["stat", "-L", "-c", "%i", "/proc/self/ns/net"]).ok().stdout.trim().to_string();
    format!("/run/lct/fw/net-{ino}.sock")
}

/// Sends `bytes` (a Python expression) to the watcher's socket, as root or as nobody; the
/// client's exit status and what it printed (the reply, or its error).
fn send_raw(env: &Env, socket: &str, bytes: &str, as_nobody: bool) -> (i32, String) {
    let script = format!(
        "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.settimeout(20)\ns.connect(sys.argv[1])\n\
         try:\n    s.sendall({bytes})\n    s.shutdown(socket.SHUT_WR)\nexcept OSError:\n    pass\n\
         try:\n    print(s.recv(1 << 16).decode())\nexcept OSError as e:\n    print(e)\n"
    );
    let mut args = vec![];
    if as_nobody {
        args.extend(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
    }
    args.extend(["python3", "-c", &script, socket]);
    let out = env.in_ns("zk-1", &args);
    (out.status, format!("{}{}", out.stdout, out.stderr))
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn the_watcher_owns_the_table_flushes_pass_it_by_and_syncs_go_through_it() {
    let env = Env::new();
    cluster_setup(&env);
    let _listen = Listeners::start(&env, "zk-1", &[2181]);
    env.run("lct-fw", &["push"]).ok();
    let (mut watcher, log) = start_watcher(&env, "zk-1", &[]);
    let said = || std::fs::read_to_string(&log).unwrap();
    assert!(said().contains("is this process's own"), "{}", said());
    // A second watcher cannot take the table, nor the socket.
    let fw = lct_tests::bin("lct-fw");
    let second = env.in_ns("zk-1", &[fw.to_str().unwrap(), "watch"]);
    assert!(second.status != 0 && second.stderr.contains("owned by another process"), "{}", second.stderr);
    let owned = table(&env, "zk-1");
    assert!(owned.contains("flags owner"), "{owned}");

    // Flushes, one after the other, while probes go on: the forbidden one is refused and the
    // allowed one admitted throughout; the flushes take the other tables.
    let stop = AtomicBool::new(false);
    let flushes = std::thread::scope(|s| {
        let flusher = s.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                env.in_ns("zk-1", &["nft", "add", "table", "inet", "other"]).ok();
                env.in_ns("zk-1", &["nft", "flush", "ruleset"]).ok();
                n += 1;
            }
            n
        });
        for _ in 0..10 {
            assert!(!connects(&env, "web-1", ZK1, 2181), "a forbidden probe admitted during the flushes");
            assert!(connects(&env, "hdfs-1", ZK1, 2181), "an allowed probe refused during the flushes");
        }
        stop.store(true, Ordering::Relaxed);
        flusher.join().unwrap()
    });
    assert!(flushes >= 2, "{flushes} flushes");
    assert_eq!(table(&env, "zk-1"), owned, "the table was changed by the flushes");
    assert!(env.in_ns("zk-1", &["nft", "list", "table", "inet", "other"]).status != 0, "the flush left other tables");
    assert!(!said().contains("restored"), "nothing to put back: {}", said());

    // Others' changes to the table are refused.
    assert!(env.in_ns("zk-1", &["nft", "delete", "table", "inet", "lct"]).status != 0, "deleted by nft");
    let foreign = ["nft", "insert", "rule", "inet", "lct", "input", "tcp", "dport", "2181", "accept"];
    assert!(env.in_ns("zk-1", &foreign).status != 0, "a foreign rule added");
    assert!(!connects(&env, "web-1", ZK1, 2181));

    // lct-fw's own syncs go through the watcher: a new dependent node is admitted.
    env.run("lct-api", &["create", "--cluster", "hdfs", "--name", "hdfs-2"]).ok(); // .5
    env.run("lct-fw", &["push", "--cluster", "hdfs"]).ok();
    let synced = table(&env, "zk-1");
    assert!(synced.contains("192.168.128.5") && synced.contains("flags owner"), "{synced}");
    assert!(connects(&env, "hdfs-2", ZK1, 2181), "the sync stands");

    // An attacker's requests: a local user cannot reach the socket; a malformed or oversized
    // request is refused, and the watcher goes on serving.
    let socket = socket_of(&env, "zk-1");
    let mode = env.in_ns("zk-1", &["stat", "-c", "%a %U", &socket]).ok().stdout;
    assert_eq!(mode.trim(), "600 root");
    let (status, out) = send_raw(&env, &socket, "b'{\"remove\": null}'", true);
    assert!(status != 0 && out.contains("Permission denied"), "{status} {out}");
    let (_, out) = send_raw(&env, &socket, "b'{not json'", false);
    assert!(out.contains("malformed request"), "{out}");
    send_raw(&env, &socket, "b' ' * (33 << 20)", false);
    poll(|| said().contains("request over 33554432 bytes"), "the oversized request is refused");
    assert_eq!(table(&env, "zk-1"), synced, "a refused request changed the table");

    // The watcher killed: the table stays, unowned, and guards as before; a sync applies it
    // directly.
    watcher.0.kill().unwrap();
    watcher.0.wait().unwrap();
    poll(|| !table(&env, "zk-1").contains("flags owner"), "the table is no longer owned");
    assert!(table(&env, "zk-1").contains("192.168.128.5"), "the table outlived its owner");
    assert!(!connects(&env, "web-1", ZK1, 2181), "forbidden after the watcher went");
    assert!(connects(&env, "hdfs-1", ZK1, 2181));
    env.run("lct-api", &["create", "--cluster", "hdfs", "--name", "hdfs-3"]).ok(); // .6
    env.run("lct-fw", &["push", "--cluster", "hdfs"]).ok();
    assert!(connects(&env, "hdfs-3", ZK1, 2181), "a sync without a watcher");

    // Started again, it takes the table over, and syncs go through it again.
    let (_watcher, log) = start_watcher(&env, "zk-1", &[]);
    assert!(std::fs::read_to_string(&log).unwrap().contains("is this process's own"));
    assert!(table(&env, "zk-1").contains("flags owner"), "{}", table(&env, "zk-1"));
    assert!(env.in_ns("zk-1", &["nft", "delete", "table", "inet", "lct"]).status != 0, "deleted by nft");
    env.run("lct-api", &["delete", "hdfs-2"]).ok();
    env.run("lct-fw", &["push", "--cluster", "hdfs"]).ok();
    let after = table(&env, "zk-1");
    assert!(!after.contains("192.168.128.5") && after.contains("192.168.128.6"), "{after}");
    assert!(connects(&env, "hdfs-3", ZK1, 2181));
    assert!(!connects(&env, "web-1", ZK1, 2181));

    // Removed through the watcher; synced again from nothing, owned.
    env.in_ns("zk-1", &[lct_tests::bin("lct-fw").to_str().unwrap(), "remove"]).ok();
    assert!(env.in_ns("zk-1", &["nft", "list", "table", "inet", "lct"]).status != 0, "removed");
    env.run("lct-fw", &["push", "--cluster", "zk"]).ok();
    assert!(table(&env, "zk-1").contains("flags owner"), "{}", table(&env, "zk-1"));
    assert!(!connects(&env, "web-1", ZK1, 2181));

    // A change that is not confirmed in time is rolled back through the watcher.
    let before = table(&env, "zk-1");
    env.run("lct-inventory", &["clusters", "set", "hdfs", "--no-dependencies"]).ok();
    let nodes = env.run("lct-inventory", &["query"]).ok().stdout;
    fw_in(&env, "zk-1", &["sync", "--node", "zk-1", "--confirm-timeout", "1"], &nodes).ok();
    assert!(!table(&env, "zk-1").contains("2181"), "the change is in force at first");
    poll_for(20, || table(&env, "zk-1") == before, "unconfirmed: the previous table is back");
}
