//! The local backend against the interface's contract ([`super::contract`]) and its own
//! promises (today's files and modes, no link followed, a lock dies with its process).

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use super::api::Store;
use super::key::Key;
use super::local::LocalStore;
use super::open::open_spec;
use super::types::{Expect, Holder, Secrecy, Wait, since_text};

macro_rules! key {
    ($($arg:tt)*) => {
        Key::new(format!($($arg)*)).expect("a fixed state key")
    };
}

#[test]
fn local_store_keeps_the_contract() {
    let dir = crate::fsutil::temp_dir("lct-store-test.").unwrap();
    super::contract::check(&LocalStore::new(dir.path()));
}

#[test]
fn local_store_keeps_todays_files() {
    let dir = crate::fsutil::temp_dir("lct-store-test.").unwrap();
    let store = LocalStore::new(dir.path());
    store.put(&key!("clusters.jsonl"), b"{}\n", Secrecy::Public).unwrap();
    store.put_secret(&key!("plans/zk/cluster.json"), b"{}", Expect::Any).unwrap();
    let mode = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().mode() & 0o777;
    assert_eq!(mode("clusters.jsonl"), 0o644);
    assert_eq!(mode("plans/zk/cluster.json"), 0o600);
    assert_eq!(mode("plans/zk"), 0o700);
    // A public file that becomes secret is narrowed, never left readable.
    store.put_secret(&key!("clusters.jsonl"), b"s", Expect::Any).unwrap();
    assert_eq!(mode("clusters.jsonl"), 0o600);
    // So is one appended to as a secret, and a key the table calls secret whatever the
    // writer asked (store::layout).
    store.put(&key!("log"), b"a\n", Secrecy::Public).unwrap();
    store.append(&key!("log"), b"b\n", Secrecy::Secret).unwrap();
    assert_eq!(mode("log"), 0o600);
    store.put(&key!("plans/zk/plan.yaml"), b"name: zk\n", Secrecy::Public).unwrap();
    assert_eq!(mode("plans/zk/plan.yaml"), 0o600);
    std::fs::set_permissions(
        dir.path().join("plans/zk/plan.yaml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    store.put(&key!("plans/zk/plan.yaml"), b"name: zk\n", Secrecy::Public).unwrap();
    assert_eq!(mode("plans/zk/plan.yaml"), 0o600);
    store.delete_if(&key!("plans/zk/plan.yaml"), Expect::Any).unwrap();
    // A file written by an older lct (no store) is read, with a revision.
    std::fs::write(dir.path().join("old.json"), "old").unwrap();
    assert_eq!(store.get(&key!("old.json")).unwrap().unwrap().value, b"old");
    // Temporary and lock files are no keys.
    std::fs::write(dir.path().join(".clusters.jsonl.abc.tmp"), "").unwrap();
    let keys: Vec<String> = store.keys(&key!("plans")).unwrap().into_iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(keys, ["plans/zk/cluster.json"]);
    assert_eq!(store.local_path(&key!("a/b")).unwrap(), dir.path().join("a/b"));
}

#[test]
fn local_store_follows_no_link_out() {
    let dir = crate::fsutil::temp_dir("lct-store-test.").unwrap();
    let outside = crate::fsutil::temp_dir("lct-store-test.").unwrap();
    std::fs::write(outside.path().join("secret"), "outside").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
    let store = LocalStore::new(dir.path());
    assert!(store.get(&key!("link")).is_err(), "a link is not read through");
    store.put(&key!("link"), b"new", Secrecy::Public).unwrap();
    assert_eq!(std::fs::read_to_string(outside.path().join("secret")).unwrap(), "outside", "nor written through");
    assert!(store.append(&key!("link2"), b"x", Secrecy::Public).is_ok());
}

#[test]
fn a_locks_holder_dies_with_its_process() {
    // A child holds the lock, then is killed: the next taker gets it at once.
    let dir = crate::fsutil::temp_dir("lct-store-test.").unwrap();
    let store = LocalStore::new(dir.path());
    let name = key!("plans/zk");
    let lock_file = dir.path().join(".locks/plans/zk");
    std::fs::create_dir_all(lock_file.parent().unwrap()).unwrap();
    std::fs::write(&lock_file, serde_json::to_vec(&Holder::here("create zk")).unwrap()).unwrap();
    // One process (the shell execs sleep with the locked descriptor open).
    let mut child = std::process::Command::new("sh")
        .args(["-c", "exec 9<>\"$0\" && flock 9 && exec sleep 30"])
        .arg(&lock_file)
        .spawn()
        .expect("sh and flock (util-linux)");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.lock_holder(&name).unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the child never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = store.unlock(&name).unwrap_err();
    assert!(err.to_string().contains("create zk"), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
    let _ours = store
        .lock(&name, &Holder::here("create zk"), Duration::from_secs(10), Wait::Upto(Duration::from_secs(5)))
        .unwrap();
}

#[test]
fn specs_name_a_backend() {
    assert!(open_spec("/var/lib/lct").is_ok());
    let err = open_spec("relative/dir").unwrap_err().to_string();
    assert!(err.contains("LCT_STATE=\"relative/dir\""), "{err}");
    // `dir:` with nothing or a relative path: refused (the state would land in the current
    // directory).
    assert!(open_spec("dir:/var/lib/lct").is_ok());
    for spec in ["dir:", "dir:relative", "dir:./x"] {
        let err = open_spec(spec).unwrap_err().to_string();
        assert!(err.contains(spec) && err.contains("absolute directory"), "{err}");
    }
    assert!(since_text(0).starts_with("1970-01-01T00:00:00Z"));
}

#[test]
fn a_local_value_is_its_own_file_for_programs() {
    let dir = crate::fsutil::temp_dir("lct-store-test.").unwrap();
    let store = LocalStore::new(dir.path());
    let known = key!("ssh/known_hosts");
    store.put(&known, b"zk-1 ssh-ed25519 AAAA\n", Secrecy::Public).unwrap();
    let file = super::open::materialize(&store, &known).unwrap();
    assert_eq!(file.path, dir.path().join("ssh/known_hosts"));
    assert_eq!(std::fs::read(&file.path).unwrap(), b"zk-1 ssh-ed25519 AAAA\n");
}
