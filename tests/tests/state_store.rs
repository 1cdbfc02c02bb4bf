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
