//! Controllers sharing state on a real three-member etcd, against the Linode API double
//! (docs/state.md): `lct-plan reconcile --watch` on one controller reacts within seconds to
//! what another records (a scale, a scale recorded by a controller that died before making
//! its node), survives the whole etcd cluster going away, and stops on SIGTERM; a controller
//! killed mid-create loses its lock when its lease runs out, and a second controller's create
//! finishes the cluster with no node made twice. The watch on one machine's directory too, and
//! lct-dns's record of what it made at Linode shared through the store.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lct_core::etcd::{EtcdUrl, Options, TlsFiles};
use lct_core::seal::SealKey;
use lct_core::store::etcd::EtcdStore;
use lct_core::store::{Expect, Key, Store};
use lct_linode_double::{Config, Double};
use lct_tests::fixtures::etcd::EtcdCluster;
use lct_tests::fixtures::linode::Api;
use lct_tests::{Env, Run};

/// A plan of `n` Linode nodes without hooks: the double's nodes run nothing to reach.
fn plan(dir: &Path, n: u32) -> PathBuf {
    let path = dir.join("web.yaml");
    let text = format!(
        "description: web nodes\ngroups:\n  node:\n    count: {n}\n    image: debian-12\n    type: g6-nanode-1\n    \
         region: us-east\n    hostname: \"{{{{ cluster }}}}-{{{{ index }}}}\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// One controller: its own machine directory (`LCT_STATE_DIR`), the team's etcd and seal key.
struct Controller<'a> {
    api: Api<'a>,
    url: String,
    key_file: PathBuf,
}

impl Controller<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.api.tool("lct-plan", args);
        // An empty URL: the local directory (LCT_STATE_DIR).
        if !self.url.is_empty() {
            c.env("LCT_STATE", &self.url).env("LCT_STATE_KEY", &self.key_file);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).stdin(Stdio::null()).output().unwrap())
    }
}

/// The nodes of cluster `web` the double made, label by label (deleted ones too).
fn web_labels(double: &Double) -> std::collections::BTreeMap<String, u32> {
    double.stats().created_labels.into_iter().filter(|(l, _)| l.starts_with("web-")).collect()
}

/// A running `lct-plan reconcile --watch`: its stdout lines as they come, its stderr kept.
struct Watcher {
    child: Child,
    lines: Receiver<serde_json::Value>,
    stderr: Arc<Mutex<String>>,
}

impl Watcher {
    fn start(mut command: Command) -> Watcher {
        let mut child = command
            .args(["-o", "jsonl"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str(&line).expect("a JSON line"));
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err, kept) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                kept.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Watcher { child, lines, stderr }
    }

    /// The next `plan-reconciled` line of cluster `web` within `within`; how long it took.
    fn reconciled(&self, within: Duration) -> (serde_json::Value, Duration) {
        let started = Instant::now();
        loop {
            let left = within.checked_sub(started.elapsed()).unwrap_or_default();
            match self.lines.recv_timeout(left) {
                Ok(line) if line["kind"] == "plan-reconciled" && line["cluster"] == "web" => {
                    return (line, started.elapsed());
                }
                Ok(_) => {}
                Err(_) => panic!("no reconcile of web within {within:?}; stderr:\n{}", self.stderr()),
            }
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scale recorded in `plans/web/cluster.json` by a controller that died before making its
/// nodes: the group's count set, nothing made.
fn record_scale(store: &EtcdStore, count: u32) {
    let key = Key::new("plans/web/cluster.json").unwrap();
    let now = store.get_secret(&key).unwrap().expect("web's state");
    let mut state: serde_json::Value = serde_json::from_slice(&now.value).unwrap();
    state["counts"]["node"] = count.into();
    store.put_secret(&key, &serde_json::to_vec_pretty(&state).unwrap(), Expect::Rev(now.rev)).unwrap();
}

/// This test's own connection to the team's store.
fn team_store(url: &str, key_file: &Path) -> EtcdStore {
    let key = SealKey::load(key_file).unwrap();
    EtcdStore::new(EtcdUrl::parse(url).unwrap(), &TlsFiles::default(), Options::default(), Some(key)).unwrap()
}

fn wait_healthy(cluster: &EtcdCluster) {
    lct_tests::fixtures::until("the etcd cluster answers again", Duration::from_secs(60), || {
        cluster.etcdctl(&["endpoint", "health"]).status.success()
    });
}

#[test]
fn reconcile_watch_reacts_to_another_controllers_changes_survives_an_outage_and_stops_on_sigterm() {
    let mut cluster = EtcdCluster::start(3, false);
    let double = Double::start(Config::fast());
    let (env_a, env_b) = (Env::new(), Env::new());
    let url = cluster.url("lct");
    // The team's seal key, in the cluster's private directory (removed with it).
    let key_file = cluster.dir.path().join("state.key");
    SealKey::generate(&key_file).unwrap();
    let a = Controller { api: Api { env: &env_a, double: &double }, url: url.clone(), key_file: key_file.clone() };
    let b = Controller { api: Api { env: &env_b, double: &double }, url: url.clone(), key_file: key_file.clone() };
    let plan = plan(env_b.state.path(), 2);
    b.run(&["create", "web", plan.to_str().unwrap(), "-p", "linode"]).ok();

    // A watches; its first reconcile of web (what changed before it ran) comes at once.
    let mut watch_cmd = a.command(&["reconcile", "--watch", "--replace"]);
    watch_cmd.env("NO_COLOR", "1");
    let mut watcher = Watcher::start(watch_cmd);
    let (first, _) = watcher.reconciled(Duration::from_secs(30));
    assert_eq!(first["added"], serde_json::json!([]), "{first}");

    // 1. B scales web (another process, another machine directory, the same etcd): A
    // reconciles web within seconds of B's end, and finds nothing left to do.
    let out = b.run(&["scale", "web", "node", "3"]).ok();
    assert_eq!(out.nodes().len(), 3, "{}", out.stdout);
    let (line, took) = watcher.reconciled(Duration::from_secs(15));
    assert!(took < Duration::from_secs(8), "A reacted after {took:?}");
    assert_eq!((line["added"].as_array().unwrap().len(), line["short"].as_array().unwrap().len()), (0, 0), "{line}");
    eprintln!("B's scale: A reconciled {took:?} after it ended");

    // 2. A scale recorded by a controller that died before making the node (C: this test's
    // process, its own connection): A, reconciling with --replace, makes it, once.
    let c = team_store(&url, &key_file);
    record_scale(&c, 4);
    let (line, took) = watcher.reconciled(Duration::from_secs(15));
    assert!(took < Duration::from_secs(8), "A reacted after {took:?}");
    assert_eq!(line["added"].as_array().unwrap().len(), 1, "{line}");
    eprintln!("a recorded scale: A made the node, its reconcile ended {took:?} after the record");
    let labels = web_labels(&double);
    assert_eq!(labels.len(), 4, "{labels:?}");
    assert!(labels.values().all(|n| *n == 1), "a node made twice: {labels:?}");

    // 3. The whole etcd cluster goes away: A says so and waits it out; once it is back, a
    // change recorded then reaches A like any other.
    for i in 0..3 {
        cluster.kill(i);
    }
    lct_tests::fixtures::until("A says the store is gone", Duration::from_secs(60), || {
        watcher.stderr().contains("watching the state")
    });
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..3 {
        cluster.restart(i);
    }
    wait_healthy(&cluster);
    record_scale(&c, 5);
    let (line, took) = watcher.reconciled(Duration::from_secs(40));
    assert!(took < Duration::from_secs(25), "A reacted after {took:?}");
    eprintln!("after the outage: A's reconcile ended {took:?} after the record");
    assert_eq!(line["added"].as_array().unwrap().len(), 1, "{line}");
    let labels = web_labels(&double);
    assert_eq!(labels.len(), 5, "{labels:?}");
    assert!(labels.values().all(|n| *n == 1), "a node made twice: {labels:?}");
    assert!(watcher.stderr().contains("the state store answers again"), "{}", watcher.stderr());

    // Its own writes are not news: no further reconcile comes without a change.
    assert!(watcher.lines.recv_timeout(Duration::from_secs(4)).is_err(), "A reconciled again with nothing changed");

    // SIGTERM: it stops, exit status 0, no lock left behind.
    stop(&mut watcher);
    let locks = cluster.etcdctl(&["get", "--prefix", "--keys-only", "lct/.locks/"]);
    assert!(String::from_utf8_lossy(&locks.stdout).trim().is_empty(), "a lock left behind");
}

#[test]
fn a_controller_killed_mid_create_loses_its_lock_and_another_finishes_with_no_duplicate() {
    let cluster = EtcdCluster::start(3, false);
    // Creates two at a time (Linode's limit made tighter): the create runs long enough to be
    // killed between its nodes.
    let double = Double::start(Config::fast());
    double.set_limit("create_instance", 2, 2.0);
    let (env_a, env_b) = (Env::new(), Env::new());
    let url = cluster.url("lct");
    // The team's seal key, in the cluster's private directory (removed with it).
    let key_file = cluster.dir.path().join("state.key");
    SealKey::generate(&key_file).unwrap();
    let a = Controller { api: Api { env: &env_a, double: &double }, url: url.clone(), key_file: key_file.clone() };
    let b = Controller { api: Api { env: &env_b, double: &double }, url: url.clone(), key_file: key_file.clone() };
    let plan = plan(env_a.state.path(), 6);
    let mut first = a.command(&["create", "web", plan.to_str().unwrap(), "-p", "linode"]);
    let mut first = first.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    lct_tests::fixtures::until_every("A made some nodes", Duration::from_secs(60), Duration::from_millis(10), || {
        web_labels(&double).len() >= 2
    });
    let made_before = web_labels(&double).len();
    first.kill().unwrap(); // SIGKILL: no chance to let its lock go
    first.wait().unwrap();
    let killed = Instant::now();
    assert!(made_before < 6, "A finished before it was killed ({made_before} nodes)");

    // Its lock outlives it for a while: B is told who holds it, nothing done.
    let out = b.run(&["create", "web", plan.to_str().unwrap(), "-p", "linode"]);
    assert_eq!(out.status, 1, "{}", out.stderr);
    assert!(out.stderr.contains("cluster web is busy") && out.stderr.contains("create web"), "{}", out.stderr);
    // Its lease runs out within the lock's TTL: then B's create finishes the cluster.
    let ttl = lct_plan::state::LOCK_TTL;
    let (done, waited) = loop {
        // When this try began: the lock was free by then at the latest.
        let tried = killed.elapsed();
        let out = b.run(&["create", "web", plan.to_str().unwrap(), "-p", "linode"]);
        if out.status == 0 {
            break (out, tried);
        }
        assert!(out.stderr.contains("cluster web is busy"), "{}", out.stderr);
        assert!(killed.elapsed() < ttl + Duration::from_secs(10), "the dead controller's lock outlived its lease");
        std::thread::sleep(Duration::from_millis(250));
    };
    // Within the lease's TTL of the kill (and a try's time: the tries are that far apart).
    assert!(waited <= ttl + Duration::from_secs(3), "B got the lock {waited:?} after the kill");
    assert_eq!(done.nodes().len(), 6, "{}", done.stdout);
    let labels = web_labels(&double);
    assert_eq!(labels.len(), 6, "{labels:?}");
    assert!(labels.values().all(|n| *n == 1), "a node made twice: {labels:?}");
    // And the state says so: web's six members, recorded once B's run ended well.
    let store = team_store(&url, &key_file);
    let state = store.get_secret(&Key::new("plans/web/cluster.json").unwrap()).unwrap().unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state.value).unwrap();
    assert_eq!(state["members"].as_array().unwrap().len(), 6, "{state}");
    eprintln!("killed with {made_before} of 6 nodes made; B got the lock {waited:?} after the kill");
}

/// SIGTERM: the watcher stops within seconds, exit status 0.
fn stop(watcher: &mut Watcher) {
    let pid = watcher.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = watcher.child.try_wait().unwrap() {
            break status;
        }
        assert!(stopped.elapsed() < Duration::from_secs(10), "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}: {}", watcher.stderr());
}

/// The same on one machine's local directory (two controllers sharing it): its watch polls.
#[test]
fn reconcile_watch_on_the_local_directory_reacts_to_another_process() {
    let double = Double::start(Config::fast());
    let env = Env::new();
    let controller =
        || Controller { api: Api { env: &env, double: &double }, url: String::new(), key_file: PathBuf::new() };
    let (a, b) = (controller(), controller());
    let plan = plan(env.state.path(), 2);
    b.run(&["create", "web", plan.to_str().unwrap(), "-p", "linode"]).ok();
    let mut watcher = Watcher::start(a.command(&["reconcile", "--watch", "--replace"]));
    watcher.reconciled(Duration::from_secs(30));
    b.run(&["scale", "web", "node", "3"]).ok();
    let (line, took) = watcher.reconciled(Duration::from_secs(15));
    assert!(took < Duration::from_secs(8), "A reacted after {took:?}");
    assert_eq!(line["added"], serde_json::json!([]), "{line}");
    // A scale recorded by a controller that died before making the node.
    let file = env.state.path().join("plans/web/cluster.json");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    state["counts"]["node"] = 4.into();
    lct_core::fsutil::atomic_write(&file, &serde_json::to_vec_pretty(&state).unwrap(), 0o600).unwrap();
    let (line, took) = watcher.reconciled(Duration::from_secs(15));
    assert!(took < Duration::from_secs(8), "A reacted after {took:?}");
    assert_eq!(line["added"].as_array().unwrap().len(), 1, "{line}");
    let labels = web_labels(&double);
    assert_eq!(labels.len(), 4, "{labels:?}");
    assert!(labels.values().all(|n| *n == 1), "a node made twice: {labels:?}");
    assert!(watcher.lines.recv_timeout(Duration::from_secs(3)).is_err(), "A reconciled again with nothing changed");
    stop(&mut watcher);
}

/// `lct-dns sync-linode` keeps which records at Linode are lct's in the shared state
/// (`dns/linode-DOMAIN.json`): a second controller (another directory, the same etcd) finds
/// nothing to do and deletes what the first made once the node goes, where a directory of
/// its own would take the first's records for someone else's and leave them.
#[test]
fn linode_dns_records_lct_made_are_known_to_every_controller() {
    let cluster = EtcdCluster::start(3, false);
    let double = Double::start(Config::fast());
    let (env_a, env_b) = (Env::new(), Env::new());
    let url = cluster.url("lct");
    let key_file = cluster.dir.path().join("state.key");
    SealKey::generate(&key_file).unwrap();
    let sync = |env: &Env, nodes: &str| {
        let api = Api { env, double: &double };
        let mut command = api.tool(
            "lct-dns",
            &["sync-linode", "--domain", "example.com", "--parent-domain", "example.com", "-o", "jsonl"],
        );
        command.env("LCT_STATE", &url).env("LCT_STATE_KEY", &key_file);
        let out = lct_tests::run_command(command, nodes).ok();
        let mut changes: Vec<String> = out
            .json_lines()
            .iter()
            .map(|c| format!("{} {}", c["action"].as_str().unwrap(), c["name"].as_str().unwrap()))
            .collect();
        changes.sort();
        changes
    };
    let node =
        |name: &str, public: &str| lct_tests::fixtures::node("zk", "server", name, "192.168.128.1", Some(public));
    let both = node("zk-1", "203.0.113.1") + &node("zk-2", "203.0.113.2");
    assert_eq!(sync(&env_a, &both), ["create server.zk", "create server.zk", "create zk-1.zk", "create zk-2.zk"]);
    let kept = team_store(&url, &key_file).get(&Key::new("dns/linode-example.com.json").unwrap()).unwrap();
    let kept: serde_json::Value =
        serde_json::from_slice(&kept.expect("the record ids in etcd").value).expect("the record ids in etcd");
    assert_eq!(kept["records"].as_array().unwrap().len(), 4, "{kept}");
    assert!(!env_a.state.path().join("dns").exists(), "written to the local directory");
    // B knows them: nothing to do; and once zk-2 goes, B deletes lct's records of it.
    assert!(sync(&env_b, &both).is_empty());
    assert_eq!(sync(&env_b, &node("zk-1", "203.0.113.1")), ["delete server.zk", "delete zk-2.zk"]);
}
