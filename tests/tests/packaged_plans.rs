//! The main job end to end, on machine nodes: `zk` from package:zookeeper elects a leader,
//! `pg` from package:postgres-ha elects a PostgreSQL primary through it and its replica
//! streams; names resolve through /etc/hosts and through lct-dns (package:dns-private:
//! private answers inside, public ones outside); the firewall admits exactly the declared flows; scaling zk
//! reaches ZooKeeper's server list and Patroni's hosts; a node deleted behind lct's back is
//! found by reconcile; destroy removes everything.

use std::process::Command;

use lct_tests::fixtures::dig_in as dig;
use lct_tests::fixtures::names_address as names;
use lct_tests::{Env, Run};

/// These tests boot many machines and install Java and PostgreSQL on them: one at a time,
/// so that two cores are not asked to boot twenty machines at once.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Python, run on a ZooKeeper server: `srvr` at the address its zoo.cfg binds clients to
/// (the server's private address: nothing else answers).
const ZK_SRVR: &str = "import socket; address = next(l.split('=', 1)[1].strip() for l in open('/etc/zookeeper/conf/zoo.cfg') if l.startswith('clientPortAddress=')); s = socket.create_connection((address, 2181), 5); s.sendall(b'srvr'); print(s.makefile().read())";

/// `Mode: leader` / `follower` / `standalone` of the ZooKeeper server on `node`.
fn zk_mode(env: &Env, node: &str) -> String {
    let out = env.ssh(node, &format!("python3 -c \"{ZK_SRVR}\""));
    out.stdout.lines().find_map(|l| l.strip_prefix("Mode: ")).unwrap_or_default().to_string()
}

/// The servers' modes once one leads and the others follow (a re-election after a restart
/// takes a moment), or as they are after 30 s.
fn settled(mut modes: impl FnMut() -> Vec<String>) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let m = modes();
        let leaders = m.iter().filter(|x| *x == "leader").count();
        let followers = m.iter().filter(|x| *x == "follower").count();
        if (leaders == 1 && followers + 1 == m.len()) || std::time::Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn psql(env: &Env, node: &str, sql: &str) -> String {
    env.ssh(node, &format!("cd / && runuser -u postgres -- psql -XAtc \"{sql}\"")).stdout.trim().to_string()
}

fn private_ip(env: &Env, node: &str) -> String {
    env.node_address(node, "private_ipv4")
}

fn public_ip(env: &Env, node: &str) -> String {
    env.node_address(node, "public_ipv4")
}

/// The status of the DNS server's answer (NOERROR, NXDOMAIN, ...), or "no answer".
fn dig_status(from_ns: &str, server: &str, name: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", from_ns, "dig", "+time=2", "+tries=2", &format!("@{server}"), name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("no answer").to_string()
}

/// [`dig`] until it answers `expected` (a secondary follows its primary within moments),
/// or what it answers after 15 s.
fn dig_until(from_ns: &str, server: &str, name: &str, expected: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let answer = dig(from_ns, server, name);
        if answer == expected || std::time::Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Whether a TCP connection from namespace `ns` to `addr:port` is accepted.
fn tcp_connects(ns: &str, addr: &str, port: u16) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "nc", "-z", "-w", "2", addr, &port.to_string()])
        .status()
        .unwrap()
        .success()
}

/// The addresses TCP `port` listens on in namespace `ns` (`ss`), once `expected` is among
/// them (a service comes up in moments), or as they are after 30 s.
fn listening(ns: &str, port: u16, expected: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ss", "-Hltn", "sport", "=", &format!(":{port}")])
            .output()
            .unwrap();
        let addresses: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .filter_map(|local| local.rsplit_once(':'))
            .map(|(address, _)| address.trim_start_matches('[').trim_end_matches(']'))
            // Java binds IPv4 addresses through IPv6 sockets: ::ffff:192.168.128.3.
            .map(|address| address.strip_prefix("::ffff:").unwrap_or(address).to_string())
            .collect();
        if addresses.iter().any(|a| a == expected) || std::time::Instant::now() > deadline {
            return addresses;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `node` serves `port` on its private address (listening, and answering from its own
/// namespace) and on nothing else but `also` (localhost): no wildcard, not its public
/// address, which neither its own namespace (its firewall admits its own traffic, so what
/// answers there is the bind) nor the outside reaches.
fn serves_privately(env: &Env, node: &str, port: u16, also: &[&str]) {
    let (ns, private, public) = (env.ns(node), private_ip(env, node), public_ip(env, node));
    let listening = listening(&ns, port, &private);
    assert!(listening.contains(&private), "{node}: nothing listens on {private}:{port} ({listening:?})");
    let others: Vec<&String> = listening.iter().filter(|a| **a != private && !also.contains(&a.as_str())).collect();
    assert!(others.is_empty(), "{node}: port {port} listens on {others:?} too");
    assert!(tcp_connects(&ns, &private, port), "{node}: {private}:{port} does not answer");
    assert!(!tcp_connects(&ns, &public, port), "{node}: {public}:{port} answers inside the node");
    assert!(!tcp_connects(&format!("{}-outside", env.lab), &public, port), "the outside reaches {node}:{port}");
}

/// The status code of a request to Patroni's REST API on `node` (at its private address,
/// from the node's namespace), with `credentials` (`user:password`, on stdin, never on a
/// command line) or none.
fn patroni_request(env: &Env, node: &str, method: &str, path: &str, body: &str, credentials: Option<&str>) -> String {
    let script = "import base64, sys, urllib.error, urllib.request
url, method, body = sys.argv[1:4]
credentials = sys.stdin.read().strip()
request = urllib.request.Request(url, data=body.encode() or None, method=method, headers={'Content-Type': 'application/json'})
if credentials:
    request.add_header('Authorization', 'Basic ' + base64.b64encode(credentials.encode()).decode())
try:
    response = urllib.request.urlopen(request, timeout=10)
    print(response.status, response.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
";
    let url = format!("http://{}:8008{path}", private_ip(env, node));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &env.ns(node), "python3", "-c", script, &url, method, body]);
    lct_tests::run_command(cmd, credentials.unwrap_or_default()).stdout.trim().to_string()
}

fn connects(env: &Env, from: &str, addr: &str, port: u16) -> bool {
    let probe = format!("python3 -c 'import socket; socket.create_connection((\"{addr}\", {port}), 3)'");
    env.ssh(from, &probe).status == 0
}

#[test]
#[ignore = "needs root: machine nodes (namespaces, overlays, systemd-nspawn) with ZooKeeper and PostgreSQL"]
fn zookeeper_and_postgres_ha_end_to_end() {
    let _heavy = one_at_a_time();
    let env = Env::new();
    // The lab's DNS server first: every later cluster's names reach it (the dns action).
    env.run("lct-plan", &["create", "dns", "package:dns-private"]).ok();
    let (dns_private, dns_public) = (private_ip(&env, "dns-1"), public_ip(&env, "dns-1"));
    // dns-2 is dns-1's secondary: the internal view by NOTIFY and IXFR, inside only.
    let dns_secondary = private_ip(&env, "dns-2");
    env.run("lct-plan", &["create", "zk", "package:zookeeper"]).ok();
    let modes = settled(|| ["zk-1", "zk-2", "zk-3"].iter().map(|n| zk_mode(&env, n)).collect());
    assert_eq!(modes.iter().filter(|m| *m == "leader").count(), 1, "{modes:?}");
    assert_eq!(modes.iter().filter(|m| *m == "follower").count(), 2, "{modes:?}");

    env.run("lct-plan", &["create", "pg", "package:postgres-ha", "--set", "zookeeper=zk"]).ok();
    let roles: Vec<String> = ["pg-1", "pg-2"].iter().map(|n| psql(&env, n, "select pg_is_in_recovery()")).collect();
    let primary = if roles[0] == "f" { "pg-1" } else { "pg-2" };
    let replica = if primary == "pg-1" { "pg-2" } else { "pg-1" };
    assert_eq!(
        {
            let mut r = roles.clone();
            r.sort();
            r
        },
        ["f", "t"],
        "one primary, one replica: {roles:?}"
    );
    // The primary takes writes and the replica streams them.
    psql(&env, primary, "create table lct (v text); insert into lct values ('written')");
    assert_eq!(psql(&env, primary, "select count(*) from pg_stat_replication where state = 'streaming'"), "1");
    let mut seen = String::new();
    for _ in 0..50 {
        seen = psql(&env, replica, "select v from lct");
        if seen == "written" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(seen, "written", "the replica did not get the write");
    // Patroni's leader key lives in ZooKeeper.
    let zk1 = private_ip(&env, "zk-1");
    let leader = env
        .ssh("zk-1", &format!("/usr/share/zookeeper/bin/zkCli.sh -server {zk1}:2181 get /lct/pg/leader 2>/dev/null"));
    assert!(leader.stdout.contains(primary), "{}", leader.stdout);
    // The secrets never reached the event log, status or hook logs.
    let state = std::fs::read_to_string(env.state.path().join("plans/pg/cluster.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let secret = |name: &str| state["parameters"][name].as_str().unwrap().to_string();
    let (password, api_password) = (secret("superuser_password"), secret("restapi_password"));
    assert_eq!((password.len(), api_password.len()), (24, 24));
    let status = env.run("lct-plan", &["status", "pg"]).ok();
    assert!(!status.stdout.contains(&password) && !status.stdout.contains(&api_password));
    for cluster in ["zk", "pg"] {
        let dir = env.state.path().join("plans").join(cluster);
        let mut files: Vec<std::path::PathBuf> =
            std::fs::read_dir(dir.join("events")).unwrap().map(|e| e.unwrap().path()).collect();
        files.extend(std::fs::read_dir(dir.join("logs")).unwrap().map(|e| e.unwrap().path()));
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            assert!(!text.contains(&password) && !text.contains(&api_password), "a secret in {}", f.display());
        }
    }

    // Nothing listens on a public address: ZooKeeper's clients, quorum (the leader's 2888)
    // and election ports, PostgreSQL (and localhost) and Patroni's REST API.
    for zk in ["zk-1", "zk-2", "zk-3"] {
        serves_privately(&env, zk, 2181, &[]);
        serves_privately(&env, zk, 3888, &[]);
    }
    let leading = ["zk-1", "zk-2", "zk-3"].into_iter().find(|n| zk_mode(&env, n) == "leader").expect("a leader");
    serves_privately(&env, leading, 2888, &[]);
    for pg in ["pg-1", "pg-2"] {
        serves_privately(&env, pg, 5432, &["127.0.0.1"]);
        serves_privately(&env, pg, 8008, &[]);
    }
    // Patroni's REST API: changes without its password (none, or a wrong one) are refused
    // and change nothing; with it, they are made. Reading stays open (health checks).
    let credentials = format!("patroni:{api_password}");
    let parameter =
        |name: &str, value: &str| format!("{{\"postgresql\": {{\"parameters\": {{\"{name}\": \"{value}\"}}}}}}");
    let refused = parameter("work_mem", "6MB");
    for (method, path, body) in [("PATCH", "/config", refused.as_str()), ("POST", "/restart", "")] {
        for wrong in [None, Some("patroni:guessed")] {
            let answer = patroni_request(&env, primary, method, path, body, wrong);
            assert!(answer.starts_with("401"), "{method} {path} with {wrong:?}: {answer}");
        }
    }
    // The authenticated change answers with the whole configuration, read from ZooKeeper:
    // the refused one is not in it.
    let made = parameter("maintenance_work_mem", "70MB");
    let answer = patroni_request(&env, primary, "PATCH", "/config", &made, Some(&credentials));
    assert!(answer.starts_with("200") && answer.contains("70MB"), "{answer}");
    assert!(!answer.contains("\"work_mem\""), "a refused change was made: {answer}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut config = patroni_request(&env, replica, "GET", "/config", "", None);
    while !config.contains("70MB") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(500));
        config = patroni_request(&env, replica, "GET", "/config", "", None);
    }
    assert!(config.starts_with("200") && config.contains("70MB"), "the replica does not see the change: {config}");

    // Names: pg reaches zk by name; the firewall admits pg to 2181 and not to 2888, and the
    // outside to nothing but SSH.
    assert_eq!(
        env.ssh("pg-1", "getent hosts zk-1.zk.lct.internal").stdout.split_whitespace().next(),
        Some(zk1.as_str())
    );
    assert!(connects(&env, "pg-1", &zk1, 2181), "pg cannot reach zk's client port");
    // The members' ports: the election port (every server listens on it) and the leader's
    // quorum port admit a member and refuse pg, so a closed port cannot pass for a firewall.
    let leader = private_ip(&env, leading);
    let member = ["zk-1", "zk-2", "zk-3"].into_iter().find(|n| *n != leading).unwrap();
    for (address, port) in [(zk1.as_str(), 3888), (leader.as_str(), 2888)] {
        let from = if address == private_ip(&env, member) { leading } else { member };
        assert!(connects(&env, from, address, port), "{from} cannot reach {address}:{port}");
        assert!(!connects(&env, "pg-1", address, port), "pg reaches zk's {address}:{port}");
    }
    let outside = format!("{}-outside", env.lab);
    // DNS: private answers inside, public ones outside; the outside reaches DNS and SSH only.
    assert_eq!(dig(&env.ns("pg-1"), &dns_private, "zk-1.zk.lct.internal"), zk1);
    assert_eq!(dig_until(&env.ns("pg-1"), &dns_secondary, "zk-1.zk.lct.internal", &zk1), zk1);
    // The secondary answers inside only: it listens on its private address and nothing else
    // (not just silent from the outside).
    serves_privately(&env, "dns-2", 53, &[]);
    let from_outside = dig(&outside, &public_ip(&env, "dns-2"), "zk-1.zk.lct.internal");
    assert!(
        !from_outside.lines().any(|l| l.parse::<std::net::IpAddr>().is_ok()),
        "the secondary answers outside: {from_outside}"
    );
    assert_eq!(dig(&outside, &dns_public, "zk-1.zk.lct.internal"), public_ip(&env, "zk-1"));
    assert_eq!(dig(&outside, &dns_public, "pg-2.pg.lct.internal"), public_ip(&env, "pg-2"));
    let refused = Command::new("ip")
        .args(["netns", "exec", &outside, "nc", "-z", "-w", "2", &public_ip(&env, "zk-1"), "2181"])
        .status()
        .unwrap();
    assert!(!refused.success(), "the outside reaches ZooKeeper");

    // Scale: every dependent piece follows. Patroni reads ZooKeeper's hosts only when it
    // starts: it restarts (a new process) under the same PostgreSQL (same postmaster), without
    // a failover, and the cluster leaves maintenance mode afterwards.
    let pids = |node: &str| {
        let patroni = env.ssh(node, "systemctl show -p MainPID --value patroni").stdout.trim().to_string();
        let postmaster =
            env.ssh(node, "head -n 1 /var/lib/postgresql/15/patroni/postmaster.pid").stdout.trim().to_string();
        (patroni, postmaster)
    };
    let before: Vec<_> = ["pg-1", "pg-2"].iter().map(|n| pids(n)).collect();
    env.run("lct-plan", &["scale", "zk", "server", "5"]).ok();
    for (node, (patroni, postmaster)) in ["pg-1", "pg-2"].iter().zip(&before) {
        let (patroni_now, postmaster_now) = pids(node);
        assert_ne!(&patroni_now, patroni, "{node}: Patroni was not restarted for the new ZooKeeper hosts");
        assert_eq!(&postmaster_now, postmaster, "{node}: PostgreSQL was restarted");
    }
    assert_eq!(psql(&env, primary, "select pg_is_in_recovery()"), "f", "the primary changed");
    let health = patroni_request(&env, primary, "GET", "/patroni", "", None);
    let (code, body) = health.split_once(' ').unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    assert_eq!((code, body["state"].as_str()), ("200", Some("running")), "Patroni's health: {health}");
    assert!(body.get("pause").is_none(), "left in maintenance mode: {health}");
    let modes = settled(|| (1..=5).map(|i| zk_mode(&env, &format!("zk-{i}"))).collect());
    assert_eq!(modes.iter().filter(|m| *m == "leader").count(), 1, "{modes:?}");
    assert_eq!(modes.iter().filter(|m| *m == "follower").count(), 4, "{modes:?}");
    let zoo = env.ssh("zk-1", "grep -c '^server\\.' /etc/zookeeper/conf/zoo.cfg").stdout;
    assert_eq!(zoo.trim(), "5");
    let patroni = env.ssh("pg-1", "grep -A1 '^zookeeper:' /etc/patroni/config.yml").stdout;
    assert!(patroni.contains("zk-5.zk.lct.internal:2181"), "{patroni}");
    let zk5 = private_ip(&env, "zk-5");
    assert!(env.ssh("pg-2", "getent hosts zk-5.zk.lct.internal").stdout.starts_with(&zk5));
    assert!(connects(&env, "pg-2", &zk5, 2181), "zk-5 does not admit pg");
    assert_eq!(dig(&env.ns("pg-2"), &dns_private, "zk-5.zk.lct.internal"), zk5);
    assert_eq!(dig_until(&env.ns("pg-2"), &dns_secondary, "zk-5.zk.lct.internal", &zk5), zk5, "the secondary follows");
    assert_eq!(dig(&outside, &dns_public, "zk-5.zk.lct.internal"), public_ip(&env, "zk-5"));
    assert!(connects(&env, "zk-5", &zk1, 3888), "zk-5 does not reach zk-1's election port");
    assert!(connects(&env, "zk-1", &zk5, 3888), "zk-1 does not reach zk-5's election port");
    // zk-1 admits zk-5 by address (its table names it), until zk-5 goes.
    let zk1_table = || env.ssh("zk-1", "nft list table inet lct").ok().stdout;
    assert!(names(&zk1_table(), &zk5), "zk-1's firewall does not name zk-5: {}", zk1_table());
    assert_eq!(psql(&env, primary, "select count(*) from lct"), "1", "PostgreSQL lost its data");

    // A node deleted behind lct's back is found, and the ensemble follows.
    env.run("lct-api", &["delete", "zk-5"]).ok();
    let found = env.run("lct-plan", &["reconcile"]).ok().json_lines();
    let zk = found.iter().find(|r| r["cluster"] == "zk").unwrap();
    assert_eq!(zk["removed"], serde_json::json!(["zk-5"]));
    let zoo = env.ssh("zk-1", "grep -c '^server\\.' /etc/zookeeper/conf/zoo.cfg").stdout;
    assert_eq!(zoo.trim(), "4");
    // The removed node's address is no longer admitted by the members that remain.
    for member in ["zk-1", "zk-2", "zk-3", "zk-4"] {
        let table = env.ssh(member, "nft list table inet lct").ok().stdout;
        assert!(names(&table, &zk1) && !names(&table, &zk5), "{member} still admits zk-5 ({zk5}): {table}");
    }
    assert!(!env.ssh("pg-1", "grep -A1 '^zookeeper:' /etc/patroni/config.yml").stdout.contains("zk-5"));
    assert_eq!(dig_status(&outside, &dns_public, "zk-5.zk.lct.internal"), "NXDOMAIN", "zk-5 still has a name");
    assert_eq!(dig_until(&env.ns("pg-1"), &dns_secondary, "zk-5.zk.lct.internal", ""), "", "the secondary keeps zk-5");

    env.run("lct-plan", &["destroy", "pg"]).ok();
    env.run("lct-plan", &["destroy", "zk"]).ok();
    assert_eq!(
        dig_status(&outside, &dns_public, "zk-1.zk.lct.internal"),
        "NXDOMAIN",
        "a destroyed cluster keeps its names"
    );
    env.run("lct-plan", &["destroy", "dns"]).ok();
    assert!(env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().stdout.trim().is_empty());
}

#[test]
#[ignore = "needs root: machine nodes (namespaces, overlays, systemd-nspawn) with ZooKeeper"]
fn hdfs_ha_nodes_flows_and_names_around_zookeeper() {
    // install=false: the nodes, names and flows alone (the install path runs against a
    // stand-in release in tests/tests/stacks/plan_hdfs.rs; nothing leaves a test machine).
    let env = Env::new();
    env.run("lct-plan", &["create", "dns", "package:dns-private"]).ok();
    let dns_private = private_ip(&env, "dns-1");
    env.run("lct-plan", &["create", "zk", "package:zookeeper", "--set", "servers=1"]).ok();
    let made = env
        .run(
            "lct-plan",
            &["create", "hdfs", "package:hdfs-ha", "--set", "install=false", "--set", "datanodes=1", "-o", "jsonl"],
        )
        .ok()
        .json_lines();
    let names: Vec<&str> = made.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hdfs-dn-1", "hdfs-jn-1", "hdfs-jn-2", "hdfs-jn-3", "hdfs-nn-1", "hdfs-nn-2"]);
    let hook = env.ssh("hdfs-jn-2", "test -x /usr/local/sbin/lct-hadoop && echo installed").stdout;
    assert_eq!(hook, "installed\n");
    let log = std::fs::read_to_string(env.state.path().join("plans/hdfs/logs/created.script_hadoop.py.hdfs-nn-1.log"))
        .unwrap();
    assert!(log.contains("install is false"), "{log}");

    // Names: /etc/hosts and DNS, its own and ZooKeeper's.
    let nn1 = private_ip(&env, "hdfs-nn-1");
    let zk1 = private_ip(&env, "zk-1");
    assert_eq!(
        env.ssh("hdfs-dn-1", "getent hosts hdfs-nn-1.hdfs.lct.internal").stdout.split_whitespace().next(),
        Some(nn1.as_str())
    );
    assert_eq!(
        env.ssh("hdfs-nn-2", "getent hosts zk-1.zk.lct.internal").stdout.split_whitespace().next(),
        Some(zk1.as_str())
    );
    assert_eq!(dig(&env.ns("hdfs-dn-1"), &dns_private, "hdfs-nn-2.hdfs.lct.internal"), private_ip(&env, "hdfs-nn-2"));

    // Flows: the NameNodes reach ZooKeeper's client port; DataNodes reach NameNode RPC;
    // only NameNodes reach ZKFC; the outside reaches none of it.
    assert!(connects(&env, "hdfs-nn-1", &zk1, 2181), "a NameNode cannot reach ZooKeeper");
    let serve = "for p in 8020 8019; do nohup python3 -m http.server $p >/dev/null 2>&1 & done; \
                 for p in 8020 8019; do for i in $(seq 100); do python3 -c \"import socket; socket.create_connection(('127.0.0.1', $p), 1)\" 2>/dev/null && break; sleep 0.05; done; done";
    env.ssh("hdfs-nn-1", serve).ok();
    assert!(connects(&env, "hdfs-nn-1", "127.0.0.1", 8019), "the stand-in ZKFC does not start");
    assert!(connects(&env, "hdfs-dn-1", &nn1, 8020), "a DataNode cannot reach NameNode RPC");
    assert!(connects(&env, "hdfs-nn-2", &nn1, 8019), "the other NameNode cannot reach ZKFC");
    assert!(!connects(&env, "hdfs-jn-1", &nn1, 8019), "a JournalNode reaches ZKFC");
    let outside = format!("{}-outside", env.lab);
    let reached = Command::new("ip")
        .args(["netns", "exec", &outside, "nc", "-z", "-w", "2", &public_ip(&env, "hdfs-nn-1"), "8020"])
        .status()
        .unwrap();
    assert!(!reached.success(), "the outside reaches NameNode RPC");
    // What it offers its dependents.
    let status = env.run("lct-plan", &["status", "hdfs"]).ok().stdout;
    assert!(
        status.contains("offers:\n  namenodes = hdfs-nn-1.hdfs.lct.internal:8020,hdfs-nn-2.hdfs.lct.internal:8020"),
        "{status}"
    );

    for cluster in ["hdfs", "zk", "dns"] {
        env.run("lct-plan", &["destroy", cluster]).ok();
    }
    assert!(env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().stdout.trim().is_empty());
}

#[test]
#[ignore = "needs root: the Linode double backed by machine nodes, with ZooKeeper and PostgreSQL"]
fn zookeeper_and_postgres_ha_on_the_linode_path_against_the_double_backed_by_machines() {
    let _heavy = one_at_a_time();
    let env = Env::new();
    let (_double, url) = env.linode_double_backed_by_machines("backed");
    // The machines' apt source is the lab's mirror: it gets the plan's packages first (on
    // Linode the nodes reach Debian's archive themselves).
    env.run("lct-api", &["lab", "packages", "add", "zookeeperd", "postgresql", "patroni", "python3-kazoo"]).ok();
    // The controller knows Linode only (a state of its own) and reaches the nodes from the
    // lab's outside namespace, as it would reach real Linodes from the internet.
    let controller = env.state.path().join("controller");
    std::fs::create_dir_all(&controller).unwrap();
    let linode = |program: &str, args: &[&str]| {
        let mut cmd = env.command(program, args);
        cmd.env("LCT_STATE_DIR", &controller)
            .env("LCT_PROVIDER", "linode")
            .env("LINODE_URL", &url)
            .env("LINODE_TOKEN", "backed")
            .env("LCT_LINODE_POLL", "0.05")
            .env("LCT_LINODE_SSH_NETNS", format!("{}-outside", env.lab))
            .env("HOME", &controller);
        Run::from(cmd.stdin(std::process::Stdio::null()).output().unwrap())
    };
    linode("lct-plan", &["create", "zk", "package:zookeeper", "-p", "linode"]).ok();
    let modes = settled(|| {
        let out = linode("lct-inventory", &["exec", "--cluster", "zk", "-o", "jsonl", "--", "python3", "-c", ZK_SRVR]);
        out.json_lines()
            .iter()
            .map(|r| {
                r["stdout"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .find_map(|l| l.strip_prefix("Mode: "))
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    });
    assert_eq!(modes.iter().filter(|m| *m == "leader").count(), 1, "{modes:?}");
    assert_eq!(modes.iter().filter(|m| *m == "follower").count(), 2, "{modes:?}");
    // Hosts and firewalls went over SSH: names resolve; the outside reaches SSH, not 2181.
    let names = linode(
        "lct-inventory",
        &["exec", "--cluster", "zk", "-o", "jsonl", "--", "getent", "hosts", "zk-3.zk.lct.internal"],
    )
    .ok();
    assert_eq!(names.json_lines().len(), 3);
    let nodes = linode("lct-inventory", &["query", "-o", "jsonl"]).ok().json_lines();
    assert!(nodes.iter().all(|n| n["provider"] == "linode"), "{nodes:?}");
    let public = nodes[0]["public_ipv4"][0].as_str().unwrap().to_string();
    let outside = format!("{}-outside", env.lab);
    let nc = |port: &str| {
        Command::new("ip")
            .args(["netns", "exec", &outside, "nc", "-z", "-w", "2", &public, port])
            .status()
            .unwrap()
            .success()
    };
    assert!(nc("22") && !nc("2181"), "the firewall admits more or less than SSH from the outside");

    // pg depends on zk, as in the local demo: Patroni elects a primary through ZooKeeper and
    // the replica streams from it, every step over SSH to the double's nodes.
    linode("lct-plan", &["create", "pg", "package:postgres-ha", "--set", "zookeeper=zk", "-p", "linode"]).ok();
    let sql = |sql: &str| {
        let out = linode(
            "lct-inventory",
            &[
                "exec",
                "--cluster",
                "pg",
                "-o",
                "jsonl",
                "--",
                "sh",
                "-c",
                &format!("cd / && runuser -u postgres -- psql -XAtc \"{sql}\""),
            ],
        );
        let mut rows: Vec<(String, String)> = out
            .json_lines()
            .iter()
            .map(|r| {
                (r["node"].as_str().unwrap_or_default().into(), r["stdout"].as_str().unwrap_or_default().trim().into())
            })
            .collect();
        rows.sort();
        rows
    };
    let roles = sql("select pg_is_in_recovery()");
    let mut in_recovery: Vec<&str> = roles.iter().map(|(_, r)| r.as_str()).collect();
    in_recovery.sort();
    assert_eq!(in_recovery, ["f", "t"], "one primary, one replica: {roles:?}");
    let streaming = sql("select count(*) from pg_stat_replication where state = 'streaming'");
    assert!(streaming.iter().any(|(_, n)| n == "1"), "no replica streams: {streaming:?}");
    let zk1 = nodes_of(&linode, "zk").remove(0);
    // pg reaches zk's client port, not its quorum port (the dependency's flows, over SSH).
    let reach = |port: u16| {
        let probe = format!("import socket; socket.create_connection((\"{zk1}\", {port}), 3)");
        let out = linode("lct-inventory", &["exec", "--cluster", "pg", "-o", "jsonl", "--", "python3", "-c", &probe]);
        let codes: Vec<i64> = out.json_lines().iter().map(|r| r["code"].as_i64().unwrap_or(-1)).collect();
        assert_eq!(codes.len(), 2, "{}", out.stdout);
        codes.iter().filter(|c| **c == 0).count()
    };
    assert_eq!((reach(2181), reach(3888)), (2, 0), "pg's access to zk is not exactly the declared flow");
    // The election port is open to the members (every server listens on it): closed to pg
    // by the firewall, not for want of a listener.
    let probe = format!("import socket; socket.create_connection((\"{zk1}\", 3888), 3)");
    let members = linode("lct-inventory", &["exec", "--cluster", "zk", "-o", "jsonl", "--", "python3", "-c", &probe]);
    let codes: Vec<i64> = members.json_lines().iter().map(|r| r["code"].as_i64().unwrap_or(-1)).collect();
    assert_eq!(codes, [0, 0, 0], "zk's members do not reach zk-1's election port: {}", members.stdout);
    linode("lct-plan", &["destroy", "pg"]).ok();
    linode("lct-plan", &["destroy", "zk"]).ok();
    assert!(env.run("lct-api", &["list", "-o", "jsonl"]).ok().stdout.trim().is_empty(), "backing machines left");
}

/// The first private address of each node of `cluster` (names sorted) as the given
/// controller sees them.
fn nodes_of(run: &dyn Fn(&str, &[&str]) -> Run, cluster: &str) -> Vec<String> {
    let mut nodes = run("lct-inventory", &["query", "--cluster", cluster, "-o", "jsonl"]).ok().json_lines();
    nodes.sort_by_key(|n| n["name"].as_str().unwrap_or_default().to_string());
    nodes.iter().map(|n| n["private_ipv4"][0].as_str().unwrap_or_default().to_string()).collect()
}
