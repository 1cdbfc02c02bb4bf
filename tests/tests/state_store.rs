//! lct's state interface on the command line: a cluster's lock keeps a second operation on it
//! out (at once, naming the holder, nothing written) while other clusters proceed;
//! `lct-plan unlock`; an `LCT_STATE` that names no store is refused before anything is done.

use std::time::Duration;

use lct_core::store::local::LocalStore;
use lct_core::store::{Holder, Key, Store, Wait};
use lct_tests::Env;

/// zk as lct-plan keeps it (its state and its plan's copy), made without nodes.
fn zk_made_here(env: &Env) -> std::path::PathBuf {
    let dir = env.state.path().join("plans/zk");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plan.yaml"), include_str!("../../crates/lct-plan/plans/zookeeper/plan.yaml")).unwrap();
    let state = r#"{"name":"zk","source":"package:zookeeper","provider":"local","parameters":{"servers":3}}"#;
    std::fs::write(dir.join("cluster.json"), state).unwrap();
    dir
}

#[test]
fn a_busy_cluster_names_its_holder_and_other_clusters_proceed() {
    let env = Env::new();
    let dir = zk_made_here(&env);
    let state_before = std::fs::read(dir.join("cluster.json")).unwrap();
    let store = LocalStore::new(env.state.path());
    let zk = Key::new("plans/zk").unwrap();
    let held = store.lock(&zk, &Holder::here("scale zk"), Duration::from_secs(30), Wait::No).unwrap();
    let pid = format!("pid {}", std::process::id());
    for args in [&["scale", "zk", "server", "5"][..], &["destroy", "zk"], &["reconcile", "zk"], &["stop", "zk"]] {
        let started = std::time::Instant::now();
        let out = env.run("lct-plan", args);
        assert_eq!(out.status, 1, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("cluster zk is busy") && out.stderr.contains(&pid) && out.stderr.contains("scale zk"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} waited for the lock");
    }
    assert_eq!(std::fs::read(dir.join("cluster.json")).unwrap(), state_before, "a refused operation wrote state");
    // Another cluster is not held up by zk's lock: it gets past it, to its own error.
    let out = env.run("lct-plan", &["scale", "pg", "server", "5"]);
    assert!(out.stderr.contains("cluster pg was not made by lct-plan here"), "{}", out.stderr);
    // unlock names the live holder and takes nothing from it.
    let out = env.run("lct-plan", &["unlock", "zk"]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("is locked by") && out.stderr.contains("scale zk"), "{}", out.stderr);
    // Nor does --force: a live process's flock is not taken from it.
    let out = env.run("lct-plan", &["unlock", "--force", "zk"]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("still runs; its lock ends with it"), "{}", out.stderr);
    assert_eq!(store.lock_holder(&zk).unwrap().unwrap().operation, "scale zk");
    drop(held);
    let out = env.run("lct-plan", &["unlock", "zk"]).ok();
    assert!(out.stderr.contains("cluster zk: not locked"), "{}", out.stderr);
    // Free again: the next operation takes it (and gets on to its own work).
    let out = env.run("lct-plan", &["scale", "zk", "nosuchgroup", "5"]);
    assert!(out.stderr.contains("cluster zk has no group nosuchgroup"), "{}", out.stderr);
}

#[test]
fn a_state_store_that_names_nothing_is_refused() {
    let env = Env::new();
    zk_made_here(&env);
    for spec in ["relative/dir", "s3://bucket", "etcd://"] {
        let mut command = env.command("lct-plan", &["scale", "zk", "server", "5"]);
        command.env("LCT_STATE", spec);
        let out = lct_tests::run_command(command, "");
        assert_eq!(out.status, 1, "{spec}: {}", out.stderr);
        assert!(out.stderr.contains(&format!("LCT_STATE={spec:?}")), "{spec}: {}", out.stderr);
        let mut command = env.command("lct-inventory", &["clusters", "list"]);
        command.env("LCT_STATE", spec);
        let out = lct_tests::run_command(command, "");
        assert_ne!(out.status, 0, "{spec}: {}", out.stdout);
        assert!(out.stderr.contains("LCT_STATE="), "{spec}: {}", out.stderr);
    }
    // The state directory by LCT_STATE=dir:PATH is the same state.
    let mut command = env.command("lct-plan", &["graph", "zk"]);
    command.env("LCT_STATE", format!("dir:{}", env.state.path().display()));
    command.env("LCT_STATE_DIR", "/nonexistent");
    lct_tests::Run::from(command.output().unwrap()).ok();
}

/// Namespace nodes whose node-added event takes a while (the lock is held through it).
const SLOW: &str = "description: namespace nodes\ngroups:\n  node: {count: 1, image: lct/netns}\nhooks:\n  node-added:\n    - run: \"sleep 2\"\n";

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn two_scales_of_one_cluster_one_waits_out_and_another_cluster_proceeds() {
    let env = Env::new();
    let plan = env.state.path().join("slow.yaml");
    std::fs::write(&plan, SLOW).unwrap();
    for name in ["a", "b"] {
        env.run("lct-plan", &["create", name, plan.to_str().unwrap()]).ok();
    }
    let store = LocalStore::new(env.state.path());
    let spawn = |args: &[&str]| {
        use std::process::Stdio;
        env.command("lct-plan", args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn(&["scale", "a", "node", "3"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let a = Key::new("plans/a").unwrap();
    while store.lock_holder(&a).unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the first scale never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    // While it runs: a second scale of a is refused at once naming it; b is scaled meanwhile.
    let other = spawn(&["scale", "b", "node", "2"]);
    let second = env.run("lct-plan", &["scale", "a", "node", "4"]);
    assert_eq!(second.status, 1, "{}", second.stderr);
    assert!(second.stderr.contains("cluster a is busy") && second.stderr.contains("scale a"), "{}", second.stderr);
    let lct_tests::Run { status, stderr, .. } = lct_tests::Run::from(other.wait_with_output().unwrap());
    assert_eq!(status, 0, "b: {stderr}");
    let first = lct_tests::Run::from(first.wait_with_output().unwrap());
    assert_eq!(first.status, 0, "{}", first.stderr);
    // The end state: a has the first scale's three nodes, once each; b its two.
    let mut names: Vec<String> = env
        .run("lct-api", &["list", "-o", "jsonl"])
        .ok()
        .json_lines()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["a-1", "a-2", "a-3", "b-1", "b-2"]);
    assert!(store.lock_holder(&a).unwrap().is_none());
    for name in ["a", "b"] {
        env.run("lct-plan", &["destroy", name]).ok();
    }
}

#[test]
fn unlock_clears_the_record_of_a_holder_that_died() {
    let env = Env::new();
    zk_made_here(&env);
    // A holder killed outright (no chance to clear its record): its flock goes with it.
    let file = env.state.path().join(".locks/plans/zk");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let holder = Holder { who: "ops@ctl".into(), pid: 1, operation: "create zk".into(), since: 1 };
    std::fs::write(&file, serde_json::to_vec(&holder).unwrap()).unwrap();
    let mut child = std::process::Command::new("sh")
        .args(["-c", "exec 9<>\"$0\" && flock 9 && exec sleep 30"])
        .arg(&file)
        .spawn()
        .expect("sh and flock (util-linux)");
    let store = LocalStore::new(env.state.path());
    let zk = Key::new("plans/zk").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.lock_holder(&zk).unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = env.run("lct-plan", &["unlock", "zk"]);
    assert_eq!(out.status, 1);
    assert!(
        out.stderr.contains("is locked by ops@ctl (pid 1, create zk) since 1970-01-01T00:00:01Z"),
        "{}",
        out.stderr
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let out = env.run("lct-plan", &["unlock", "zk"]).ok();
    assert!(out.stderr.contains("cluster zk: unlocked (it was held by ops@ctl (pid 1, create zk)"), "{}", out.stderr);
    let out = env.run("lct-plan", &["unlock", "zk"]).ok();
    assert!(out.stderr.contains("cluster zk: not locked"), "{}", out.stderr);
}

/// A cluster whose state cannot be read is not a new cluster: `create` (and `diff`) refuse,
/// naming the state, instead of making the cluster's generated secrets anew over the real ones.
#[test]
fn a_state_that_cannot_be_read_is_not_taken_for_a_new_cluster() {
    let env = Env::new();
    let dir = zk_made_here(&env);
    std::fs::write(dir.join("cluster.json"), "{not json").unwrap();
    let files_before: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    for args in [&["create", "zk", "package:zookeeper"][..], &["diff", "zk", "--plan", "package:zookeeper"]] {
        let out = env.run("lct-plan", args);
        assert_eq!(out.status, 1, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("cluster.json"), "{args:?}: {}", out.stderr);
    }
    assert_eq!(std::fs::read(dir.join("cluster.json")).unwrap(), b"{not json", "the state was rewritten");
    let files_after: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files_before, files_after, "a refused create wrote files");
}
