//! lct-dns zone: master files that BIND's and Knot's checkers accept, served by a real
//! Knot DNS on loopback and queried with kdig.

use std::process::Command;

use lct_tests::{Background, Env};

const NODES: &str = concat!(
    r#"{"kind":"node","v":1,"cluster":"zk","group":"zookeeper","name":"zk-1","provider":"local","status":"running","private_ipv4":["192.168.128.1"],"public_ipv4":["203.0.113.1"],"public_ipv6":["2001:db8::1"]}"#,
    "\n",
    r#"{"kind":"node","v":1,"cluster":"zk","group":"zookeeper","name":"zk-2","provider":"local","status":"running","private_ipv4":["192.168.128.2"]}"#,
    "\n",
    r#"{"kind":"node","v":1,"cluster":"hdfs","group":"namenode","name":"nn-1","provider":"local","status":"running","private_ipv4":["192.168.129.7"],"public_ipv4":["198.51.100.7"]}"#,
    "\n",
);

fn zone(env: &Env, extra: &[&str]) -> String {
    let mut args = vec!["zone", "--domain", "lct.internal", "--serial", "42", "--ns", "ns1.lct.internal=203.0.113.53"];
    args.extend_from_slice(extra);
    env.run_with_input("lct-dns", &args, NODES).ok().stdout
}

fn setup(env: &Env) {
    env.run("lct-inventory", &["clusters", "set", "zk"]).ok();
    let store = env.state.path().join("clusters.jsonl");
    let with_services = std::fs::read_to_string(&store).unwrap().replace(
        "\"depends_on\":[]",
        "\"depends_on\":[],\"services\":[{\"name\":\"zookeeper\",\"group\":\"zookeeper\",\"port\":2181}]",
    );
    std::fs::write(&store, with_services).unwrap();
}

#[test]
fn master_files_pass_bind_and_knot_checks() {
    let env = Env::new();
    setup(&env);
    let dir = env.state.path();
    for (view, zone_name) in
        [("internal", "lct.internal"), ("external", "lct.internal"), ("internal", "168.192.in-addr.arpa")]
    {
        let text = zone(&env, &["--format", "zone", "--view", view, "--zone", zone_name]);
        let file = dir.join(format!("{view}-{zone_name}.zone"));
        std::fs::write(&file, &text).unwrap();
        let bind = Command::new("named-checkzone").args([zone_name, file.to_str().unwrap()]).output().unwrap();
        assert!(
            bind.status.success(),
            "named-checkzone {view} {zone_name}:\n{}\n{text}",
            String::from_utf8_lossy(&bind.stdout)
        );
        let knot = Command::new("kzonecheck").args(["-o", zone_name, file.to_str().unwrap()]).output().unwrap();
        assert!(
            knot.status.success(),
            "kzonecheck {view} {zone_name}:\n{}\n{text}",
            String::from_utf8_lossy(&knot.stderr)
        );
    }
    let external = zone(&env, &["--format", "zone", "--view", "external"]);
    for line in external.lines() {
        assert!(!line.contains("192.168."), "a private address outside: {line}");
    }
    assert!(!external.contains("zk-2"), "no public address, no name outside:\n{external}");
    assert!(external.contains("_zookeeper._tcp.zk\t300\tIN\tSRV\t0 10 2181 zk-1.zk.lct.internal."), "{external}");
    let internal = zone(&env, &["--format", "zone"]);
    assert!(internal.contains("_zookeeper._tcp.zk\t300\tIN\tSRV\t0 10 2181 zk-2.zk.lct.internal."), "{internal}");

    // Records: every one marked with its zone and view.
    let records = zone(&env, &[]);
    let lines: Vec<serde_json::Value> = records.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().all(|r| r["kind"] == "dns-record" && r["view"].is_string() && r["zone"].is_string()));
    assert!(lines.iter().any(|r| r["type"] == "PTR" && r["name"] == "7.129.168.192.in-addr.arpa."));
}

#[test]
fn bad_services_and_names_are_refused() {
    let env = Env::new();
    env.run("lct-inventory", &["clusters", "set", "zk"]).ok();
    let store = env.state.path().join("clusters.jsonl");
    let bad = std::fs::read_to_string(&store)
        .unwrap()
        .replace("\"depends_on\":[]", "\"depends_on\":[],\"services\":[{\"name\":\"zk\",\"port\":0}]");
    std::fs::write(&store, bad).unwrap();
    let out = env.run_with_input("lct-dns", &["zone", "--domain", "lct.internal"], NODES);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("cluster zk: field services[0].port: must be 1 to 65535"), "{}", out.stderr);
    // The protocol is lct-core's enum: anything but tcp or udp is named with its field.
    std::fs::write(
        &store,
        std::fs::read_to_string(&store).unwrap().replace("\"port\":0", "\"port\":1,\"protocol\":\"sctp\""),
    )
    .unwrap();
    let out = env.run_with_input("lct-dns", &["zone", "--domain", "lct.internal"], NODES);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("cluster zk: field services[0].protocol: unknown variant `sctp`"), "{}", out.stderr);
    let out = env.run_with_input("lct-dns", &["zone", "--domain", "bad_domain"], NODES);
    assert_eq!(out.status, 2);
    let out = env.run_with_input(
        "lct-dns",
        &["zone", "--domain", "lct.internal"],
        &NODES.replace("192.168.128.2", "192.168.1280.2"),
    );
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("line 2: field private_ipv4[0]"), "{}", out.stderr);
}

#[test]
fn a_cluster_outside_the_zone_is_named_at_the_default_log_level() {
    let env = Env::new();
    env.run("lct-inventory", &["clusters", "set", "hdfs", "--domain", "hdfs.example.org"]).ok();
    // No -v: what is left out is said at the default level, naming the cluster, its domain and
    // the zone, so an empty zone is never a puzzle.
    let out = env.run_with_input("lct-dns", &["zone", "--domain", "lct.internal"], NODES).ok();
    assert!(
        out.stderr.contains("cluster hdfs: its domain hdfs.example.org is outside the zone lct.internal"),
        "{}",
        out.stderr
    );
    let names: Vec<String> = out.json_lines().iter().filter_map(|r| r["name"].as_str().map(String::from)).collect();
    assert!(names.iter().any(|n| n == "zk-1.zk.lct.internal."), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("nn-1.")), "{names:?}");
    // The zone of its own domain serves it, and says nothing of hdfs.
    let out = env.run_with_input("lct-dns", &["zone", "--domain", "example.org"], NODES).ok();
    assert!(out.stdout.contains("nn-1.hdfs.example.org."), "{}", out.stdout);
    assert!(!out.stderr.contains("cluster hdfs"), "{}", out.stderr);
}

#[test]
fn knot_serves_the_zone_as_written() {
    let env = Env::new();
    setup(&env);
    let dir = env.state.path().join("knot");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lct.internal.zone"), zone(&env, &["--format", "zone"])).unwrap();
    let port = lct_tests::free_port();
    let conf = format!(
        "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\ndatabase:\n    storage: {d}\nlog:\n  - target: stderr\n    any: error\nzone:\n  - domain: lct.internal\n    file: {d}/lct.internal.zone\n",
        d = dir.display()
    );
    std::fs::write(dir.join("knot.conf"), conf).unwrap();
    let mut knot_cmd = Command::new("knotd");
    knot_cmd.args(["-c", dir.join("knot.conf").to_str().unwrap()]);
    let knot = Background::spawn(knot_cmd);
    let query = |name: &str, rtype: &str| -> String {
        let out = Command::new("kdig")
            .args(["@127.0.0.1", "-p", &port.to_string(), "+short", "+time=1", "+retry=0", name, rtype])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let mut answer = String::new();
    for _ in 0..50 {
        answer = query("zk-1.zk.lct.internal", "A");
        if !answer.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let group = query("zookeeper.zk.lct.internal", "A");
    let srv = query("_zookeeper._tcp.zk.lct.internal", "SRV");
    let soa = query("lct.internal", "SOA");
    drop(knot);
    assert_eq!(answer, "192.168.128.1");
    let mut group: Vec<&str> = group.lines().collect();
    group.sort();
    assert_eq!(group, ["192.168.128.1", "192.168.128.2"]);
    assert!(srv.contains("0 10 2181 zk-1.zk.lct.internal.") && srv.contains("zk-2.zk.lct.internal."), "{srv}");
    assert!(soa.contains(" 42 "), "{soa}");
}
