//! package:etcd on machine nodes, its whole lifecycle on Debian's etcd-server: three members
//! with TLS between them and to clients (certificates made by the plan), a key written at the
//! start and read after a scale 3 -> 5 -> 3 through etcd's own membership (member add, member
//! remove before the node goes), and a member deleted behind lct's back: the cluster stays
//! writable, `lct-plan reconcile --replace` removes the dead member and adds a new one.

use std::process::Command;
use std::time::Duration;

use lct_tests::Env;
use lct_tests::fixtures::{node_address, settle, tcp_connects};

const PKI: &str = "/etc/etcd/pki";

/// Python, run on a node: `SCHEME HOST PORT PATH [CERT KEY]`, a GET over plain TCP or TLS
/// (the server checked against the plan's CA, a member's copy unless `$CA` names another,
/// a client certificate if given); prints the status line and body, or fails.
const HTTPS_GET: &str = "import os, socket, ssl, sys
scheme, host, port, path = sys.argv[1:5]
s = socket.create_connection((host, int(port)), 5)
if scheme == \"https\":
    c = ssl.create_default_context(cafile=os.environ.get(\"CA\", \"/etc/etcd/pki/ca.crt\"))
    if len(sys.argv) > 6:
        c.load_cert_chain(sys.argv[5], sys.argv[6])
    s = c.wrap_socket(s, server_hostname=host)
s.sendall(f\"GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n\".encode())
answer = b\"\"
while chunk := s.recv(65536):
    answer += chunk
print(answer.decode(errors=\"replace\"))";

/// A client cluster of one node depending on etcd's client service.
const APP_PLAN: &str = r#"description: A client of etcd.
groups:
  app:
    count: 1
    image: debian-12
    type: g6-standard-1
    hostname: "{{ cluster }}-{{ index }}"
firewall:
  admin: ["{{ admin_cidr }}"]
depends_on:
  etcd:
    cluster: etcd
    services: [server.client]
    uses: [endpoints, ca_file]
hooks:
  created:
    - action: install
    - action: hosts
    - action: firewall
  dependency-changed:
    - action: hosts
    - action: firewall
"#;

fn private_ip(env: &Env, node: &str) -> String {
    node_address(env, node, "private_ipv4")
}

fn public_ip(env: &Env, node: &str) -> String {
    node_address(env, node, "public_ipv4")
}

/// etcdctl on `node` against its own member (its private address), checking the server's
/// certificate against the plan's CA, with the member's certificate as client.
fn etcdctl(env: &Env, node: &str, args: &str) -> lct_tests::Run {
    let ip = private_ip(env, node);
    env.ssh(
        node,
        &format!(
            "cd / && etcdctl --endpoints=https://{ip}:2379 --cacert={PKI}/ca.crt --cert={PKI}/member.crt \
             --key={PKI}/member.key --command-timeout=10s {args}"
        ),
    )
}

/// The started members' names (sorted), as `node` sees them.
fn members(env: &Env, node: &str) -> Vec<String> {
    let out = etcdctl(env, node, "member list -w json");
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    let mut names: Vec<String> = list["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

/// The member ID of `name`, as `node` sees it.
fn member_id(env: &Env, node: &str, name: &str) -> u64 {
    let list: serde_json::Value = serde_json::from_str(&etcdctl(env, node, "member list -w json").stdout).unwrap();
    list["members"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap()["ID"].as_u64().unwrap()
}

fn get(env: &Env, node: &str, key: &str) -> String {
    etcdctl(env, node, &format!("get --print-value-only {key}")).stdout.trim().to_string()
}

fn expect_members(env: &Env, node: &str, expected: &[&str]) {
    let seen = settle(Duration::from_secs(30), || members(env, node), |m| m == expected);
    assert_eq!(seen, expected, "{node}'s member list");
}

#[test]
#[ignore = "needs root: machine nodes (namespaces, overlays, systemd-nspawn) with etcd"]
fn etcd_scales_through_its_membership_with_tls_and_replaces_a_lost_member() {
    let env = Env::new();
    let started = std::time::Instant::now();
    env.run("lct-plan", &["create", "etcd", "package:etcd"]).ok();
    eprintln!("create: {:?}", started.elapsed());
    expect_members(&env, "etcd-1", &["etcd-1", "etcd-2", "etcd-3"]);
    let put = etcdctl(&env, "etcd-2", "put lct/before written-at-3");
    assert!(put.stdout.contains("OK"), "{} {}", put.stdout, put.stderr);
    assert_eq!(get(&env, "etcd-3", "lct/before"), "written-at-3");

    // TLS: clients must check the server against the plan's CA (no CA: refused; plain HTTP:
    // no answer); peers must show a member's certificate.
    let ip1 = private_ip(&env, "etcd-1");
    let no_ca = env.ssh("etcd-2", &format!("cd / && etcdctl --endpoints=https://{ip1}:2379 --dial-timeout=3s get x"));
    assert_ne!(no_ca.status, 0, "a client trusting the system's CAs was served");
    let plain = env.ssh("etcd-2", &format!("python3 -c '{HTTPS_GET}' http {ip1} 2379 /health"));
    assert!(!plain.stdout.contains("health"), "plain HTTP served: {}", plain.stdout);
    let health = env.ssh("etcd-2", &format!("python3 -c '{HTTPS_GET}' https {ip1} 2379 /health"));
    assert!(health.stdout.contains("\"health\":\"true\""), "{} {}", health.stdout, health.stderr);
    let peer = |cert: &str| env.ssh("etcd-2", &format!("python3 -c '{HTTPS_GET}' https {ip1} 2380 /members {cert}"));
    let with = peer(&format!("{PKI}/member.crt {PKI}/member.key"));
    assert!(with.stdout.starts_with("HTTP/1.1 200"), "{} {}", with.stdout, with.stderr);
    let without = peer("");
    assert!(!without.stdout.contains("200"), "the peer port served a client without a certificate: {}", without.stdout);
    // The CA is the same everywhere (derived from the secret); the key is the member's own, 0600.
    let ca = |n: &str| env.ssh(n, &format!("sha256sum {PKI}/ca.crt")).ok().stdout;
    assert_eq!(ca("etcd-1"), ca("etcd-3"));
    let key = env.ssh("etcd-1", &format!("stat -c '%a %U' {PKI}/member.key")).ok().stdout;
    assert_eq!(key.trim(), "600 etcd");
    let san = env.ssh("etcd-1", &format!("openssl x509 -in {PKI}/member.crt -noout -ext subjectAltName")).ok().stdout;
    assert!(san.contains(&format!("IP Address:{ip1}")) && san.contains("etcd-1.etcd.lct.internal"), "{san}");
    // Only the private address listens; the outside reaches neither port.
    let listening = env.in_ns("etcd-1", &["ss", "-Hltn"]).stdout;
    for port in [2379, 2380] {
        let on: Vec<&str> = listening
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .filter(|a| a.ends_with(&format!(":{port}")))
            .collect();
        assert_eq!(on, [format!("{ip1}:{port}")], "port {port} listens on {on:?}");
        assert!(!tcp_connects(&format!("{}-outside", env.lab), &public_ip(&env, "etcd-1"), port));
    }
    // The secret never reached the event log, status or hook logs.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.state.path().join("plans/etcd/cluster.json")).unwrap())
            .unwrap();
    let secret = state["parameters"]["ca_key"].as_str().unwrap().to_string();
    assert!(secret.len() >= 24);
    let dir = env.state.path().join("plans/etcd");
    let mut files: Vec<std::path::PathBuf> =
        std::fs::read_dir(dir.join("events")).unwrap().map(|e| e.unwrap().path()).collect();
    files.extend(std::fs::read_dir(dir.join("logs")).unwrap().map(|e| e.unwrap().path()));
    for f in files {
        assert!(!std::fs::read_to_string(&f).unwrap().contains(&secret), "the CA's secret in {}", f.display());
    }
    assert!(!env.run("lct-plan", &["status", "etcd"]).ok().stdout.contains(&secret));
    let offers = env.run("lct-plan", &["status", "etcd"]).ok().stdout;
    assert!(offers.contains("endpoints = https://etcd-1.etcd.lct.internal:2379,https://etcd-2"), "{offers}");

    // A dependent: its node gets the CA's certificate where the offer says, and with it
    // reaches the members' client port by name, checking the certificate; not the peer port.
    let dependent = env.state.path().join("app.yaml");
    std::fs::write(&dependent, APP_PLAN).unwrap();
    env.run("lct-plan", &["create", "app", dependent.to_str().unwrap()]).ok();
    assert_eq!(
        env.ssh("app-1", "sha256sum < /etc/lct/ca/etcd.crt").ok().stdout,
        ca("etcd-1").replacen(&format!("{PKI}/ca.crt"), "-", 1)
    );
    let by_name = env.ssh(
        "app-1",
        &format!("CA=/etc/lct/ca/etcd.crt python3 -c '{HTTPS_GET}' https etcd-3.etcd.lct.internal 2379 /health"),
    );
    assert!(by_name.stdout.contains("\"health\":\"true\""), "{} {}", by_name.stdout, by_name.stderr);
    let probe = |node: &str, port: u16| {
        env.ssh(node, &format!("python3 -c 'import socket; socket.create_connection((\"{ip1}\", {port}), 3)'")).status
            == 0
    };
    assert!(probe("app-1", 2379) && !probe("app-1", 2380), "the dependent's flows are not exactly the client port");
    assert!(probe("etcd-3", 2380), "a member does not reach the peer port");
    let offers = env.run("lct-plan", &["status", "etcd"]).ok().stdout;
    assert!(offers.contains("ca_file = /etc/lct/ca/etcd.crt"), "{offers}");

    // Scale up: each new member added through etcd, then it serves the old data.
    let t = std::time::Instant::now();
    env.run("lct-plan", &["scale", "etcd", "server", "5"]).ok();
    eprintln!("scale 3 -> 5: {:?}", t.elapsed());
    expect_members(&env, "etcd-1", &["etcd-1", "etcd-2", "etcd-3", "etcd-4", "etcd-5"]);
    assert_eq!(get(&env, "etcd-5", "lct/before"), "written-at-3");
    assert!(etcdctl(&env, "etcd-4", "put lct/at-5 written-at-5").stdout.contains("OK"));

    // Scale down: the leaving members are removed before their nodes go.
    let t = std::time::Instant::now();
    env.run("lct-plan", &["scale", "etcd", "server", "3"]).ok();
    eprintln!("scale 5 -> 3: {:?}", t.elapsed());
    let log = env.run("lct-plan", &["log", "etcd", "node-removing"]).ok().stdout;
    assert!(log.contains("etcd-5: node-removing: left the cluster"), "{log}");
    expect_members(&env, "etcd-1", &["etcd-1", "etcd-2", "etcd-3"]);
    assert_eq!(get(&env, "etcd-3", "lct/before"), "written-at-3");
    assert_eq!(get(&env, "etcd-3", "lct/at-5"), "written-at-5");

    // A member deleted behind lct's back: two of three still make a majority and take writes.
    let old_id = member_id(&env, "etcd-1", "etcd-2");
    env.run("lct-api", &["delete", "etcd-2"]).ok();
    assert!(etcdctl(&env, "etcd-1", "put lct/without-2 written").stdout.contains("OK"));
    let t = std::time::Instant::now();
    let found = env.run("lct-plan", &["reconcile", "--replace", "etcd"]).ok().json_lines();
    eprintln!("reconcile --replace: {:?}", t.elapsed());
    assert_eq!(found[0]["removed"], serde_json::json!(["etcd-2"]), "{found:?}");
    assert_eq!(found[0]["added"], serde_json::json!(["etcd-2"]), "{found:?}");
    expect_members(&env, "etcd-1", &["etcd-1", "etcd-2", "etcd-3"]);
    assert_ne!(member_id(&env, "etcd-3", "etcd-2"), old_id, "the dead member was not replaced");
    for key in ["lct/before", "lct/at-5", "lct/without-2"] {
        assert!(!get(&env, "etcd-2", key).is_empty(), "the new member does not serve {key}");
    }

    env.run("lct-plan", &["destroy", "app"]).ok();
    env.run("lct-plan", &["destroy", "etcd"]).ok();
    assert!(env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().stdout.trim().is_empty());
    eprintln!("total: {:?}", started.elapsed());
}

/// A joining member writes the member list etcd answers (another node's word) into
/// /etc/default/etcd: a name or peer URL that could add a line of its own (a newline, a
/// setting, a URL elsewhere) is refused, and a good answer passes unchanged.
#[test]
fn a_hostile_member_list_is_refused_before_it_reaches_the_settings() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/lct-plan/plans/etcd/configure.py");
    let initial = |listed: &str| {
        let program = format!(
            r#"
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("configure", {script:?})
configure = importlib.util.module_from_spec(spec); spec.loader.exec_module(configure)
print(json.dumps(configure.initial_cluster(json.loads(sys.argv[1]), "etcd-4", "192.168.128.5")))
"#,
            script = script.display().to_string(),
        );
        Command::new("python3").args(["-c", &program, listed]).env("PYTHONDONTWRITEBYTECODE", "1").output().unwrap()
    };
    let good = initial(
        r#"[{"ID": 1, "name": "etcd-1", "peerURLs": ["https://192.168.128.2:2380"]}, {"ID": 2, "peerURLs": ["https://192.168.128.5:2380"]}]"#,
    );
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    let good: serde_json::Value = serde_json::from_slice(&good.stdout).unwrap();
    assert_eq!(
        good,
        serde_json::json!({"etcd-1": "https://192.168.128.2:2380", "etcd-4": "https://192.168.128.5:2380"})
    );
    for (name, url) in [
        ("etcd-1\\nETCD_CLIENT_CERT_AUTH=false", "https://192.168.128.2:2380"),
        ("etcd-1 ETCD_X=1", "https://192.168.128.2:2380"),
        ("$(reboot)", "https://192.168.128.2:2380"),
        ("etcd-1", "https://192.168.128.2:2380\\nETCD_DATA_DIR=/"),
        ("etcd-1", "https://evil.example:2380"),
        ("etcd-1", "http://192.168.128.2:2380"),
        ("etcd-1", "https://192.168.128.2:2380,x=https://10.0.0.1:2380"),
    ] {
        let listed = format!(r#"[{{"ID": 1, "name": "{name}", "peerURLs": ["{url}"]}}]"#);
        let out = initial(&listed);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("no host name and peer URL"), "{listed}: {stderr}");
    }
}
