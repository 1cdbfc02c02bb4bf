//! package:mariadb-galera on machine nodes (Debian 12's mariadb-server and galera-4 from the
//! lab's mirror): the first node bootstraps once, the others join by SST; a row written on
//! one node is read on every other; after stop and start the node that left last bootstraps
//! again; scale 3 -> 5 brings the row and wsrep_cluster_size along
//! without restarting running members; a node deleted behind lct's back leaves a Primary,
//! writable cluster, and reconcile takes it out of the configuration; the secrets stay off
//! logs and command lines; MariaDB and Galera listen on private addresses only.

use std::process::Command;
use std::time::{Duration, Instant};

use lct_tests::Env;
use lct_tests::fixtures::settle;

/// A query through the local Unix socket as root (Debian's unix_socket authentication), one
/// row per line, columns tab-separated. `wsrep_sync_wait` makes a read wait until the node
/// has applied everything committed in the cluster before it (a causal read).
fn sql(env: &Env, node: &str, query: &str) -> String {
    let cmd = format!("cd / && mariadb --batch --skip-column-names -e \"SET SESSION wsrep_sync_wait = 1; {query}\"");
    let out = env.ssh(node, &cmd);
    assert_eq!(out.status, 0, "{node}: {query}: {}", out.stderr);
    out.stdout.trim().to_string()
}

/// A status variable of the node (`wsrep_cluster_size`, ...), or "" when MariaDB does not answer.
fn wsrep(env: &Env, node: &str, name: &str) -> String {
    let cmd = format!("cd / && mariadb --batch --skip-column-names -e \"SHOW GLOBAL STATUS LIKE '{name}'\"");
    env.ssh(node, &cmd).stdout.split_whitespace().nth(1).unwrap_or_default().to_string()
}

/// Size, status and state of each node, once every one says `size` in a Primary component,
/// Synced (or as they are after 90 s).
fn cluster(env: &Env, nodes: &[&str], size: usize) -> Vec<String> {
    let expected = format!("{size} Primary Synced");
    settle(
        Duration::from_secs(90),
        || {
            nodes
                .iter()
                .map(|n| {
                    let get = |v: &str| wsrep(env, n, v);
                    format!(
                        "{} {} {}",
                        get("wsrep_cluster_size"),
                        get("wsrep_cluster_status"),
                        get("wsrep_local_state_comment")
                    )
                })
                .collect::<Vec<_>>()
        },
        |states| states.iter().all(|s| *s == expected),
    )
}

fn private_ip(env: &Env, node: &str) -> String {
    let nodes = env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().json_lines();
    let n = nodes.iter().find(|n| n["name"] == node).unwrap_or_else(|| panic!("no node {node}"));
    n["private_ipv4"][0].as_str().unwrap().to_string()
}

fn public_ip(env: &Env, node: &str) -> String {
    let nodes = env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().json_lines();
    let n = nodes.iter().find(|n| n["name"] == node).unwrap_or_else(|| panic!("no node {node}"));
    n["public_ipv4"][0].as_str().unwrap().to_string()
}

/// The local addresses TCP `port` listens on inside `node`.
fn listening(env: &Env, node: &str, port: u16) -> Vec<String> {
    let out = env.in_ns(node, &["ss", "-Hltn", "sport", "=", &format!(":{port}")]);
    let mut addresses: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|local| local.rsplit_once(':'))
        .map(|(address, _)| address.to_string())
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

fn outside_reaches(env: &Env, address: &str, port: u16) -> bool {
    let outside = format!("{}-outside", env.lab);
    Command::new("ip")
        .args(["netns", "exec", &outside, "nc", "-z", "-w", "2", address, &port.to_string()])
        .status()
        .unwrap()
        .success()
}

/// The addresses in the node's wsrep_cluster_address.
fn cluster_address(env: &Env, node: &str) -> String {
    let out = env.ssh(node, "grep '^wsrep_cluster_address' /etc/mysql/mariadb.conf.d/99-lct-galera.cnf").ok();
    out.stdout.trim().trim_start_matches("wsrep_cluster_address = gcomm://").to_string()
}

fn mysqld_pid(env: &Env, node: &str) -> String {
    env.ssh(node, "systemctl show -p MainPID --value mariadb").ok().stdout.trim().to_string()
}

#[test]
#[ignore = "needs root: machine nodes (namespaces, overlays, systemd-nspawn) with MariaDB Galera"]
fn galera_replicates_scales_and_stays_primary_without_a_node() {
    let env = Env::new();
    let started = Instant::now();
    env.run("lct-plan", &["create", "gal", "package:mariadb-galera"]).ok();
    let created = started.elapsed();
    let three = ["gal-1", "gal-2", "gal-3"];
    assert_eq!(cluster(&env, &three, 3), ["3 Primary Synced"; 3]);

    // Bootstrapped once, on the first node; the others joined it.
    let marker = |n: &str| env.ssh(n, "test -e /var/lib/lct-galera/bootstrapped && echo yes").stdout;
    assert_eq!(three.map(marker), ["yes\n", "", ""]);
    let log = |event: &str, script: &str, node: &str| {
        let path = env.state.path().join(format!("plans/gal/logs/{event}.script_{script}.{node}.log"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    assert!(log("created", "configure.py", "gal-1").contains("bootstrapped cluster gal"));
    assert!(log("created", "join.py", "gal-2").contains("joined, Synced"));
    let addresses: Vec<String> = three.iter().map(|n| private_ip(&env, n)).collect();
    assert_eq!(cluster_address(&env, "gal-3"), addresses.join(","));

    // A row written on one node is read on every other.
    sql(
        &env,
        "gal-2",
        "CREATE DATABASE lct; CREATE TABLE lct.t (id INT PRIMARY KEY, v VARCHAR(40)); \
         INSERT INTO lct.t VALUES (1, 'written on gal-2')",
    );
    for n in three {
        assert_eq!(sql(&env, n, "SELECT v FROM lct.t WHERE id = 1"), "written on gal-2", "{n}");
    }

    // Stop and start: the members stop last-index-first, so gal-1 leaves last and is the one
    // safe to bootstrap from; it does, the others join, the data is there.
    env.run("lct-plan", &["stop", "gal"]).ok();
    assert!(log("stopping", "stop.py", "gal-1").contains("stopped after 2 later member(s)"));
    env.run("lct-plan", &["start", "gal"]).ok();
    assert!(log("started", "configure.py", "gal-1").contains("safe_to_bootstrap, bootstrapped gal again"));
    assert!(log("started", "join.py", "gal-3").contains("joined, Synced"));
    assert_eq!(cluster(&env, &three, 3), ["3 Primary Synced"; 3]);
    assert_eq!(sql(&env, "gal-3", "SELECT v FROM lct.t WHERE id = 1"), "written on gal-2");

    // The secrets: 0600 on the node, never in lct's logs, status or a process's command line;
    // admin reaches another member over the private network with its password, not without.
    let state = std::fs::read_to_string(env.state.path().join("plans/gal/cluster.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let secret = |name: &str| state["parameters"][name].as_str().unwrap().to_string();
    let (admin, sst) = (secret("admin_password"), secret("sst_password"));
    assert_eq!((admin.len(), sst.len()), (24, 24));
    let sst_file = env.ssh("gal-1", "stat -c '%a %U' /etc/mysql/mariadb.conf.d/99-lct-sst.cnf").ok().stdout;
    assert_eq!(sst_file, "600 mysql\n");
    let dir = env.state.path().join("plans/gal");
    let mut files: Vec<std::path::PathBuf> =
        std::fs::read_dir(dir.join("events")).unwrap().map(|e| e.unwrap().path()).collect();
    files.extend(std::fs::read_dir(dir.join("logs")).unwrap().map(|e| e.unwrap().path()));
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(!text.contains(&admin) && !text.contains(&sst), "a secret in {}", f.display());
    }
    let status = env.run("lct-plan", &["status", "gal"]).ok().stdout;
    assert!(!status.contains(&admin) && !status.contains(&sst));
    let endpoints: Vec<String> = three.iter().map(|n| format!("{n}.gal.lct.internal:3306")).collect();
    assert!(status.contains(&format!("endpoints = {}", endpoints.join(","))), "{status}");
    for n in three {
        let argv = env.ssh(n, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout;
        assert!(!argv.contains(&admin) && !argv.contains(&sst), "{n}: a secret on a command line");
    }
    let login = |password: &str| {
        let cmd = format!(
            "cd / && mariadb --defaults-extra-file=/dev/stdin -h {} -u admin --batch --skip-column-names -e 'SELECT count(*) FROM lct.t'",
            addresses[0]
        );
        env.ssh_with_input("gal-3", &cmd, &format!("[client]\npassword={password}\n"))
    };
    assert_eq!(login(&admin).stdout, "1\n", "admin over the network: {}", login(&admin).stderr);
    assert_ne!(login("guessed-password").status, 0, "admin without its password");

    // Private addresses only: MariaDB and Galera's replication; the outside reaches neither.
    for n in three {
        let private = private_ip(&env, n);
        assert_eq!(listening(&env, n, 3306), vec![private.clone()], "{n}: 3306");
        assert_eq!(listening(&env, n, 4567), vec![private], "{n}: 4567");
        for port in [3306, 4567] {
            assert!(!outside_reaches(&env, &public_ip(&env, n), port), "the outside reaches {n}:{port}");
        }
    }

    // A dependent (a namespace node) reaches MariaDB, not Galera's ports.
    let client = env.state.path().join("client.yaml");
    std::fs::write(
        &client,
        "description: a client\ngroups:\n  node: {count: 1, image: lct/netns}\ndepends_on:\n  db:\n    \
         cluster: gal\n    services: [db.mysql]\n    uses: [endpoints]\n    plan: package:mariadb-galera\n",
    )
    .unwrap();
    env.run("lct-plan", &["create", "app", client.to_str().unwrap()]).ok();
    let reaches = |port: &str| env.in_ns("app-1", &["nc", "-z", "-w", "2", &addresses[0], port]).status == 0;
    assert!(reaches("3306"), "the dependent does not reach MariaDB");
    // (Every member listens on 4567; 4568 and 4444 only during a state transfer.)
    assert!(!reaches("4567"), "the dependent reaches Galera's replication port");
    env.run("lct-plan", &["destroy", "app"]).ok();

    // Scale 3 -> 5: the new nodes join (SST) and have the row; running members are not
    // restarted, and their wsrep_cluster_address follows.
    let pids: Vec<String> = three.iter().map(|n| mysqld_pid(&env, n)).collect();
    let scaling = Instant::now();
    env.run("lct-plan", &["scale", "gal", "db", "5"]).ok();
    let scaled_up = scaling.elapsed();
    let five = ["gal-1", "gal-2", "gal-3", "gal-4", "gal-5"];
    assert_eq!(cluster(&env, &five, 5), ["5 Primary Synced"; 5]);
    assert_eq!(three.map(|n| mysqld_pid(&env, n)).to_vec(), pids, "a running member was restarted");
    for n in ["gal-4", "gal-5"] {
        assert_eq!(sql(&env, n, "SELECT v FROM lct.t WHERE id = 1"), "written on gal-2", "{n}");
        assert_eq!(marker(n), "", "{n} bootstrapped");
    }
    let addresses: Vec<String> = five.iter().map(|n| private_ip(&env, n)).collect();
    assert_eq!(cluster_address(&env, "gal-1"), addresses.join(","));
    assert!(log("node-added", "configure.py", "gal-1").contains("(running)"));
    sql(&env, "gal-5", "INSERT INTO lct.t VALUES (2, 'written on gal-5')");
    assert_eq!(sql(&env, "gal-1", "SELECT count(*) FROM lct.t"), "2");

    // A node deleted behind lct's back: the other four stay a Primary component, writable.
    env.run("lct-api", &["delete", "gal-5"]).ok();
    let four = ["gal-1", "gal-2", "gal-3", "gal-4"];
    assert_eq!(cluster(&env, &four, 4), ["4 Primary Synced"; 4]);
    sql(&env, "gal-4", "INSERT INTO lct.t VALUES (3, 'written without gal-5')");
    for n in four {
        assert_eq!(sql(&env, n, "SELECT count(*) FROM lct.t"), "3", "{n}");
    }
    let found = env.run("lct-plan", &["reconcile"]).ok().json_lines();
    let gal = found.iter().find(|r| r["cluster"] == "gal").unwrap();
    assert_eq!(gal["removed"], serde_json::json!(["gal-5"]));
    assert_eq!(cluster_address(&env, "gal-2"), addresses[..4].join(","));

    // Scale 4 -> 3 through lct: the removed node goes, the rest stays Primary.
    let scaling = Instant::now();
    env.run("lct-plan", &["scale", "gal", "db", "3"]).ok();
    let scaled_down = scaling.elapsed();
    assert_eq!(cluster(&env, &three, 3), ["3 Primary Synced"; 3]);
    assert_eq!(sql(&env, "gal-3", "SELECT count(*) FROM lct.t"), "3");
    eprintln!("timing: create {created:?}, scale 3 -> 5 {scaled_up:?}, scale 4 -> 3 {scaled_down:?}");

    env.run("lct-plan", &["destroy", "gal"]).ok();
    assert!(env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().stdout.trim().is_empty());
}

/// A password set by the user reaches my.cnf (wsrep_sst_auth), SQL and the SST shell scripts:
/// configure.py refuses anything outside its grammar before it touches the node, naming the
/// parameter and not the value. The real script, fed a hostile plan-secrets line.
#[test]
fn galera_refuses_passwords_outside_their_grammar() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/lct-plan/plans/mariadb-galera/configure.py");
    let run = |admin: &str| {
        let secrets = serde_json::json!({"kind": "plan-secrets", "parameters": {"admin_password": admin, "sst_password": "Sst-password.123"}});
        let mut cmd = Command::new("python3");
        cmd.arg(&script).env("LCT_CLUSTER", "gal").env("LCT_EVENT", "created");
        lct_tests::run_command(cmd, &format!("{secrets}\n"))
    };
    for hostile in [
        "x'; DROP USER root; -- ",
        "$(touch /tmp/owned)xxxx",
        "`id`xxxxxxxxxxxx",
        "pass word 123456",
        "quote\"xxxxxxxxxxx",
        "new\nline12345678",
        "hash#comment1234",
        "short",
        &"x".repeat(129),
    ] {
        let out = run(hostile);
        assert_ne!(out.status, 0, "{hostile:?} accepted");
        assert!(out.stderr.contains("parameter admin_password: 12 to 128 letters"), "{hostile:?}: {}", out.stderr);
        assert!(!out.stderr.contains(hostile), "the value is shown: {}", out.stderr);
    }
    // A good value passes the check (and the script goes on to look for its node: not here).
    let out = run("Good.password+=-123");
    assert!(out.stderr.contains("is not a db node of gal"), "{}", out.stderr);
}
