//! lct-plan create/status/destroy on the local cloud with machine nodes: nodes named by the
//! plan, the cluster record filled, packages from the mirror, hosts and firewalls that follow
//! a dependent cluster, re-runs that make nothing twice.

use std::process::Command;

use lct_tests::fixtures::names_address;
use lct_tests::{Env, Run};

const SERVICE: &str = "description: a web service
parameters:
  n: {type: integer, default: 2, description: how many}
  token: {type: string, default: s3cret-token, secret: true, description: a secret}
groups:
  server:
    count: \"{{ n }}\"
    image: debian-12
    services:
      web: {ports: [8080/tcp]}
firewall:
  allow:
    - {from: self, to: server.web}
    - {from: dependents, to: server.web}
offers:
  urls: \"{% for n in nodes.server %}http://{{ n.fqdn }}:8080{% if not loop.last %},{% endif %}{% endfor %}\"
packages: [htop]
hooks:
  created:
    - action: install
    - action: hosts
    - action: firewall
    - action: packages
    - {script: configure.sh, on: [server]}
    - {playbook: site.yml}
  node-added:
    - action: install
    - action: hosts
    - action: firewall
    - {run: \"echo added $LCT_NODES_ADDED > /etc/lct-added\", on: [server]}
  node-removed:
    - action: hosts
    - action: firewall
";

/// A playbook hook: its plays name their hosts by role; parameters (the secret too, from a
/// 0600 file) are extra variables.
const PLAYBOOK: &str = "- hosts: \"{{ lct_groups.server }}\"
  gather_facts: false
  tasks:
    - copy:
        dest: /etc/lct-playbook
        content: \"{{ lct_event }} {{ lct_param_n }} {{ lct_param_token | length }}\\n\"
";

/// A hook script: what it is given (event, parameters, the inventory on stdin, secrets on
/// the first stdin line only).
const CONFIGURE: &str = "#!/bin/sh
set -e
input=$(cat)
nodes=$(printf '%s\\n' \"$input\" | grep -c '\"kind\":\"node\"')
printf '%s\\n' \"$input\" | head -1 | grep -o 's3cret-token' > /etc/lct-secret
env | grep -c LCT_PARAM_TOKEN > /etc/lct-secret-in-env || true
echo \"$LCT_EVENT $LCT_CLUSTER $LCT_PARAM_N $nodes\" > /etc/lct-hook
";

const CLIENT: &str = "description: a client of the web service
parameters:
  upstream: {type: string, default: svc, description: the service cluster}
groups:
  node:
    count: 1
    image: debian-12
depends_on:
  web:
    cluster: \"{{ upstream }}\"
    services: [server.web]
hooks:
  created:
    - action: install
    - action: hosts
    - action: firewall
    - {script: upstream.sh, on: [node]}
  dependency-changed:
    - action: hosts
    - {script: upstream.sh, on: [node]}
";

fn on(env: &Env, node: &str, cmd: &str) -> Run {
    env.ssh(node, cmd)
}

fn private_ip(env: &Env, node: &str) -> String {
    let nodes = env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().json_lines();
    let n = nodes.iter().find(|n| n["name"] == node).unwrap_or_else(|| panic!("no node {node}"));
    n["private_ipv4"][0].as_str().unwrap().to_string()
}

/// Whether a TCP connection from (netns) node `from`'s namespace to `addr:port` is accepted.
fn tcp_connects(env: &Env, from: &str, addr: &str, port: u16) -> bool {
    env.in_ns(from, &["nc", "-z", "-w", "2", addr, &port.to_string()]).status == 0
}

#[test]
#[ignore = "needs root: network namespaces, overlays and systemd-nspawn (scripts/test runs it as root)"]
fn a_plan_makes_a_cluster_and_a_dependent_one_and_their_flows_follow() {
    let env = Env::new();
    let dir = env.state.path().join("plans-src");
    std::fs::create_dir_all(&dir).unwrap();
    let (svc, cli) = (dir.join("svc.yaml"), dir.join("cli.yaml"));
    std::fs::write(&svc, SERVICE).unwrap();
    std::fs::write(&cli, CLIENT).unwrap();
    std::fs::write(dir.join("configure.sh"), CONFIGURE).unwrap();
    std::fs::write(dir.join("site.yml"), PLAYBOOK).unwrap();
    std::fs::write(dir.join("upstream.sh"), "#!/bin/sh\necho \"$LCT_OFFER_WEB_URLS\" > /etc/lct-upstream\n").unwrap();

    let made = env.run("lct-plan", &["create", "svc", svc.to_str().unwrap(), "-o", "jsonl"]).ok();
    let names: Vec<String> = made.json_lines().iter().map(|n| n["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["svc-1", "svc-2"]);
    assert_eq!(on(&env, "svc-1", "dpkg-query -W -f='${Status}' htop").stdout, "install ok installed");
    // The script hook ran on every server with the event, parameters and inventory; the
    // secret came on stdin, not in its environment.
    for node in ["svc-1", "svc-2"] {
        assert_eq!(on(&env, node, "cat /etc/lct-hook").stdout, "created svc 2 2\n");
        assert_eq!(on(&env, node, "cat /etc/lct-secret").stdout, "s3cret-token\n");
        assert_eq!(on(&env, node, "cat /etc/lct-secret-in-env").stdout, "0\n");
    }
    // The playbook ran on every server (through lct-inventory ansible, pinned host keys).
    for node in ["svc-1", "svc-2"] {
        assert_eq!(on(&env, node, "cat /etc/lct-playbook").stdout, "created 2 12\n");
    }
    let logs = env.state.path().join("plans/svc/logs");
    assert!(logs.join("created.script_configure.sh.svc-1.log").exists(), "no hook log in {}", logs.display());
    let peer = on(&env, "svc-1", "getent hosts svc-2.svc.lct.internal").stdout;
    assert!(peer.starts_with("192.168.128."), "{peer}");

    // A re-run makes nothing twice.
    let again = env.run("lct-plan", &["create", "svc", svc.to_str().unwrap(), "-o", "jsonl"]).ok();
    assert_eq!(again.json_lines().len(), 2);

    // The dependent: its record says what it uses; the service admits it and nobody else.
    env.run("lct-plan", &["create", "cli", cli.to_str().unwrap()]).ok();
    let records = env.run("lct-inventory", &["clusters", "list", "-o", "jsonl"]).ok().json_lines();
    let record = records.iter().find(|c| c["name"] == "cli").unwrap();
    assert_eq!(record["depends_on"][0]["cluster"], "svc");
    assert_eq!(record["depends_on"][0]["ports"][0], "8080/tcp");
    let serve = "nohup python3 -m http.server 8080 >/dev/null 2>&1 & \
                 for i in $(seq 100); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8080), 1)' 2>/dev/null && exit 0; sleep 0.05; done; exit 1";
    assert_eq!(on(&env, "svc-1", serve).status, 0, "the web server on svc-1 does not start");
    // What svc offers reached cli's hook, rendered from svc's inventory.
    assert_eq!(
        on(&env, "cli-1", "cat /etc/lct-upstream").stdout,
        "http://svc-1.svc.lct.internal:8080,http://svc-2.svc.lct.internal:8080\n"
    );
    let svc1 = on(&env, "cli-1", "getent hosts svc-1.svc.lct.internal").stdout;
    let address = svc1.split_whitespace().next().unwrap_or_else(|| panic!("cli-1 cannot name svc-1")).to_string();
    assert_eq!(
        on(&env, "cli-1", &format!("python3 -c 'import socket; socket.create_connection((\"{address}\", 8080), 3)'"))
            .status,
        0,
        "the dependent is refused"
    );
    let public = env
        .run("lct-inventory", &["query", "-o", "jsonl"])
        .ok()
        .json_lines()
        .into_iter()
        .find(|n| n["name"] == "svc-1")
        .unwrap()["public_ipv4"][0]
        .as_str()
        .unwrap()
        .to_string();
    let outside = Command::new("ip")
        .args(["netns", "exec", &format!("{}-outside", env.lab), "nc", "-z", "-w", "2", &public, "8080"])
        .status()
        .unwrap();
    assert!(!outside.success(), "the outside reaches the service");
    // A private cluster that is not a dependent (in the same private network) is refused.
    env.run("lct-api", &["create", "--cluster", "other", "--name", "other-1"]).ok();
    assert!(!tcp_connects(&env, "other-1", &address, 8080), "an unrelated cluster reaches the service");

    // Scaling: diff says what would happen and changes nothing; scale makes svc-3, its
    // node-added hooks run, and the dependent's dependency-changed hooks follow.
    let diff = env.run("lct-plan", &["diff", "svc", "--count", "server=3"]).ok();
    assert!(
        diff.stdout.contains("+ node svc-3 (group server") && diff.stdout.contains("event node-added"),
        "{}",
        diff.stdout
    );
    assert_eq!(env.run("lct-plan", &["diff", "svc"]).ok().stdout, "cluster svc: no changes\n");
    env.run("lct-plan", &["scale", "svc", "server", "3"]).ok();
    assert_eq!(on(&env, "svc-3", "cat /etc/lct-added").stdout, "added svc-3\n");
    assert_eq!(
        on(&env, "cli-1", "cat /etc/lct-upstream").stdout,
        "http://svc-1.svc.lct.internal:8080,http://svc-2.svc.lct.internal:8080,http://svc-3.svc.lct.internal:8080\n"
    );
    assert!(on(&env, "cli-1", "getent hosts svc-3.svc.lct.internal").stdout.starts_with("192.168.128."));
    // The new member is admitted by the others (from: self).
    let svc3 = private_ip(&env, "svc-3");
    let reach_svc1 = format!("python3 -c 'import socket; socket.create_connection((\"{address}\", 8080), 3)'");
    assert_eq!(on(&env, "svc-3", &reach_svc1).status, 0, "svc-3 is not admitted by svc-1");
    let log = env.run("lct-plan", &["log", "svc", "node-added"]).ok();
    assert!(
        log.stdout.contains("\"added\":[\"svc-3\"]") && log.stdout.contains("node-added.run__4.svc-3.log"),
        "{}",
        log.stdout
    );
    // fire runs an event by hand: the dependent's file comes back.
    on(&env, "cli-1", "rm /etc/lct-upstream");
    env.run("lct-plan", &["fire", "cli", "dependency-changed"]).ok();
    assert!(on(&env, "cli-1", "cat /etc/lct-upstream").stdout.contains("svc-3"));
    // A node deleted behind lct's back: reconcile finds it and the hooks follow.
    env.run("lct-api", &["delete", "svc-3"]).ok();
    let found = env.run("lct-plan", &["reconcile", "svc"]).ok().json_lines();
    assert_eq!(found[0]["removed"], serde_json::json!(["svc-3"]));
    assert_eq!(found[0]["short"], serde_json::json!(["server: 2 of 3 nodes"]));
    assert_eq!(
        on(&env, "cli-1", "cat /etc/lct-upstream").stdout,
        "http://svc-1.svc.lct.internal:8080,http://svc-2.svc.lct.internal:8080\n"
    );
    // The removed member's address is no longer admitted: a node of another cluster that
    // gets it next (the lowest free address) is refused where svc-3 was let in.
    env.run("lct-api", &["create", "--cluster", "other", "--name", "other-2"]).ok();
    assert_eq!(private_ip(&env, "other-2"), svc3, "other-2 did not get svc-3's address");
    assert!(!tcp_connects(&env, "other-2", &address, 8080), "svc-1 still admits the removed svc-3's address");
    env.run("lct-api", &["delete", "other-1", "other-2"]).ok();
    // A failing hook stops the operation naming the hook, the node and the exit status.
    // create converges to the plan's count again: svc-3 is made, its hook fails.
    let good = std::fs::read_to_string(&svc).unwrap();
    std::fs::write(&svc, good.replace("echo added", "exit 3; echo")).unwrap();
    let failed = env.run("lct-plan", &["create", "svc", svc.to_str().unwrap()]);
    assert_eq!(failed.status, 1);
    assert!(
        failed.stderr.contains("cluster svc, event node-added, hook run #4")
            && failed.stderr.contains("node svc-3: exit 3"),
        "{}",
        failed.stderr
    );
    // The event is raised again by the next run (the membership its hooks saw did not
    // change), and no node is made twice.
    std::fs::write(&svc, good).unwrap();
    let again = env.run("lct-plan", &["create", "svc", svc.to_str().unwrap(), "-o", "jsonl"]).ok();
    assert_eq!(again.json_lines().len(), 3);
    assert_eq!(on(&env, "svc-3", "cat /etc/lct-added").stdout, "added svc-3\n");

    let status = env.run("lct-plan", &["status", "svc"]).ok();
    assert!(
        status.stdout.contains("svc-3")
            && status.stdout.contains("  server       3 of 3 nodes (scaled from 2)  web 8080/tcp")
            && status.stdout.contains(" node-added          ok "),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("offers:\n  urls = http://svc-1.svc.lct.internal:8080,"), "{}", status.stdout);
    assert!(!status.stdout.contains("s3cret-token"), "a secret in status: {}", status.stdout);
    // Scaled in: svc-3 goes, and the members that remain no longer admit its address.
    let svc3 = private_ip(&env, "svc-3");
    let table = |node: &str| on(&env, node, "nft list table inet lct").ok().stdout;
    assert!(names_address(&table("svc-1"), &svc3), "svc-1 does not admit svc-3: {}", table("svc-1"));
    env.run("lct-plan", &["scale", "svc", "server", "2"]).ok();
    for (node, peer) in [("svc-1", "svc-2"), ("svc-2", "svc-1")] {
        let (table, peer) = (table(node), private_ip(&env, peer));
        assert!(names_address(&table, &peer) && !names_address(&table, &svc3), "{node} admits svc-3: {table}");
    }
    let refused = env.run("lct-plan", &["destroy", "svc"]);
    assert_eq!(refused.status, 1);
    assert!(refused.stderr.contains("cluster svc is used by cli"), "{}", refused.stderr);
    env.run("lct-plan", &["destroy", "cli"]).ok();
    env.run("lct-plan", &["destroy", "svc"]).ok();
    assert!(env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().stdout.trim().is_empty());
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn a_create_killed_part_way_is_finished_by_the_next_run_and_makes_no_node_twice() {
    let env = Env::new();
    let plan = env.state.path().join("ns.yaml");
    let marker = env.state.path().join("events.txt");
    std::fs::write(
        &plan,
        "description: namespace nodes\nparameters:\n  marker: {type: string, description: a file}\ngroups:\n  node: {count: 3, image: lct/netns, volumes: [{name: data, size: 8M}]}\nhooks:\n  created:\n    - action: hosts\n    - run: \"echo $LCT_EVENT $LCT_NODES_ADDED >> $LCT_PARAM_MARKER\"\n",
    )
    .unwrap();
    let set = format!("marker={}", marker.display());
    let args = ["create", "ns", plan.to_str().unwrap(), "--set", &set, "-o", "jsonl"];
    // The process dies in the provider, after the first node is recorded.
    let mut crashing = env.command("lct-plan", &args);
    crashing.env("LCT_LOCAL_CRASH_AFTER", "node-recorded").stdin(std::process::Stdio::null());
    let crashed = Run::from(crashing.output().unwrap());
    assert_ne!(crashed.status, 0, "the create did not crash");
    assert!(!marker.exists(), "hooks ran before the nodes were made");
    // The next run finishes: three nodes, each made once, the created event once.
    let made = env.run("lct-plan", &args).ok().json_lines();
    let names: Vec<&str> = made.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ns-1", "ns-2", "ns-3"]);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "created ns-1,ns-2,ns-3\n");
    let listed = env.run("lct-api", &["list", "-o", "jsonl"]).ok().json_lines();
    assert_eq!(listed.len(), 3, "a node made twice");
    // Every node got its volume, once, attached to it.
    let volumes = env.run("lct-api", &["volume", "list", "-o", "jsonl"]).ok().json_lines();
    let attached: Vec<(String, String, u64)> = volumes
        .iter()
        .map(|v| {
            (
                v["label"].as_str().unwrap().into(),
                v["attached_to"].as_str().unwrap_or("").into(),
                v["size_mib"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attached,
        [
            ("ns-1-data".into(), "ns-1".into(), 8),
            ("ns-2-data".into(), "ns-2".into(), 8),
            ("ns-3-data".into(), "ns-3".into(), 8)
        ]
    );
    // Nothing changed: a third run raises nothing.
    env.run("lct-plan", &args).ok();
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "created ns-1,ns-2,ns-3\n");
    assert_eq!(env.run("lct-api", &["volume", "list", "-o", "jsonl"]).ok().json_lines().len(), 3);
    // A scale down leaves the volume (data is never deleted by a scale); destroy deletes it.
    env.run("lct-plan", &["scale", "ns", "node", "2"]).ok();
    let volumes = env.run("lct-api", &["volume", "list", "-o", "jsonl"]).ok().json_lines();
    assert_eq!(volumes.len(), 3);
    assert!(volumes.iter().any(|v| v["label"] == "ns-3-data" && v.get("attached_to").is_none()), "{volumes:?}");
    env.run("lct-plan", &["destroy", "ns"]).ok();
    assert!(env.run("lct-api", &["volume", "list", "-o", "jsonl"]).ok().stdout.trim().is_empty(), "volumes left");
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn a_plans_names_decide_hosts_files_and_dns() {
    let env = Env::new();
    let write = |name: &str, names: &str| {
        let plan = env.state.path().join(format!("{name}.yaml"));
        std::fs::write(
            &plan,
            format!(
                "description: names\ngroups:\n  node: {{count: 1, image: lct/netns}}\nnames: {names}\nhooks:\n  created:\n    - action: hosts\n"
            ),
        )
        .unwrap();
        plan
    };
    let public = write("pub", "{hosts_private: false, hosts_public: true, dns: public}");
    let hidden = write("hid", "{dns: none}");
    env.run("lct-plan", &["create", "pub", public.to_str().unwrap()]).ok();
    env.run("lct-plan", &["create", "hid", hidden.to_str().unwrap()]).ok();
    // The plan's names reach the cluster record (the defaults are not written out).
    let records = env.run("lct-inventory", &["clusters", "list", "-o", "jsonl"]).ok().json_lines();
    let record = |name: &str| records.iter().find(|r| r["name"] == name).unwrap()["names"].clone();
    assert_eq!(record("pub"), serde_json::json!({"hosts_private": false, "hosts_public": true, "dns": "public"}));
    assert_eq!(record("hid"), serde_json::json!({"hosts_private": true, "hosts_public": false, "dns": "none"}));

    let nodes = env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().json_lines();
    let address = |node: &str, field: &str| {
        nodes.iter().find(|n| n["name"] == node).unwrap()[field][0].as_str().unwrap().to_string()
    };
    // pub's block in the hosts file on pub-1 has its public entry and no private one (the
    // line the namespace names itself with is outside lct's block).
    let hosts = env.in_ns("pub-1", &["cat", "/etc/hosts"]).stdout;
    let block = hosts.split("# BEGIN lct-hosts cluster pub\n").nth(1).unwrap().split("# END").next().unwrap();
    assert!(block.starts_with(&format!("{}\tpub-1.public\n", address("pub-1", "public_ipv4"))), "{hosts}");
    assert!(!block.contains(&address("pub-1", "private_ipv4")), "{hosts}");
    let hosts = env.in_ns("hid-1", &["cat", "/etc/hosts"]).stdout;
    assert!(hosts.contains(&format!("{}\thid-1.hid.", address("hid-1", "private_ipv4"))), "{hosts}");

    // DNS: pub's public address to everyone, nothing of hid.
    let input = env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().stdout;
    let zone = env.run_with_input("lct-dns", &["zone", "--serial", "1", "-o", "jsonl"], &input).ok().json_lines();
    let of = |name: &str| -> Vec<(String, String)> {
        zone.iter()
            .filter(|r| r["name"].as_str().unwrap().starts_with(name))
            .map(|r| (r["data"].as_str().unwrap().to_string(), r["view"].as_str().unwrap().to_string()))
            .collect()
    };
    let both = |a: String| (a, "both".to_string());
    assert_eq!(of("pub-1."), [both(address("pub-1", "public_ipv4")), both(address("pub-1", "public_ipv6"))]);
    assert_eq!(of("hid-1."), []);
    assert!(!zone.iter().any(|r| r["data"].as_str().unwrap().starts_with("hid-1")), "a PTR for hid-1");
    env.run("lct-plan", &["destroy", "hid"]).ok();
    env.run("lct-plan", &["destroy", "pub"]).ok();
}

/// A ZooKeeper-like ensemble on namespace nodes: clients are opened to dependents, the
/// quorum and election ports to its own nodes, the admin port to nobody.
const ENSEMBLE: &str = "description: an ensemble
groups:
  server:
    count: 1
    image: lct/netns
    services:
      client: {ports: [2181/tcp]}
      quorum: {ports: [2888/tcp, 3888/tcp]}
      admin: {ports: [8080/tcp]}
firewall:
  allow:
    - {from: self, to: server.quorum}
    - {from: dependents, to: server.client}
offers:
  connect: \"{{ nodes.server[0].private_ipv4 }}:2181\"
";

/// A dependent of the ensemble asking for `services`; `plan` names the ensemble's plan (or
/// not: then only `create` knows it).
fn ensemble_client(services: &str, plan: &str) -> String {
    format!(
        "description: a client\ngroups:\n  node: {{count: 1, image: lct/netns}}\ndepends_on:\n  zookeeper:\n    cluster: zk\n{plan}    services: [{services}]\n    uses: [connect]\n"
    )
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn a_dependent_is_refused_what_its_dependency_does_not_open_to_dependents() {
    let env = Env::new();
    let dir = env.state.path();
    std::fs::write(dir.join("ensemble.yaml"), ENSEMBLE).unwrap();
    env.run("lct-plan", &["create", "zk", dir.join("ensemble.yaml").to_str().unwrap()]).ok();
    let client = dir.join("client.yaml");
    // Each refusal names the place, the field, the service, its ports and what the
    // dependency opens (the services are on line 8 with the dependency's plan named, 7 without).
    let reason = |line: usize, column: usize, field: &str, why: &str, other: &str| {
        format!(
            "{}: line {line}, column {column}: field depends_on.zookeeper.{field}: {}; it opens to dependents: \
             server.client (2181/tcp)",
            client.display(),
            why.replace("OTHER", other)
        )
    };
    for (services, column, field, why) in [
        ("server.quorum", 16, "services[0]", "server.quorum (2888/tcp, 3888/tcp) is not opened to dependents by OTHER"),
        (
            "server.client, server.admin",
            31,
            "services[1]",
            "server.admin (8080/tcp) is not opened to dependents by OTHER",
        ),
        ("server.shell", 16, "services[0]", "OTHER has no service server.shell"),
    ] {
        // Named in the dependent's plan, the dependency's plan is checked at validate...
        std::fs::write(&client, ensemble_client(services, "    plan: ensemble.yaml\n")).unwrap();
        let out = env.run("lct-plan", &["validate", client.to_str().unwrap()]);
        assert_eq!(out.status, 1, "{services}: {}", out.stderr);
        let ensemble = dir.join("ensemble.yaml").display().to_string();
        assert!(out.stderr.contains(&reason(8, column, field, why, &ensemble)), "{services}: {}", out.stderr);
        // ...and, not named, create and diff refuse it against the cluster's own plan,
        // before anything is written.
        std::fs::write(&client, ensemble_client(services, "")).unwrap();
        env.run("lct-plan", &["validate", client.to_str().unwrap()]).ok();
        let path = client.to_str().unwrap();
        for args in [["create", "cli", path].as_slice(), &["diff", "cli", "--plan", path]] {
            let out = env.run("lct-plan", args);
            assert_eq!(out.status, 1, "{args:?}: {}", out.stderr);
            assert!(out.stderr.contains(&reason(7, column, field, why, "cluster zk")), "{args:?}: {}", out.stderr);
        }
        assert!(!dir.join("plans/cli").exists(), "{services}: a refused create wrote state");
        let records = env.run("lct-inventory", &["clusters", "list", "-o", "jsonl"]).ok().json_lines();
        assert!(records.iter().all(|r| r["name"] != "cli"), "{services}: a refused create wrote a record");
        assert_eq!(env.run("lct-api", &["list", "-o", "jsonl"]).ok().json_lines().len(), 1, "{services}: a node made");
    }
    // What it opens to dependents is taken, and only that reaches the record lct-fw reads.
    std::fs::write(&client, ensemble_client("server.client", "    plan: ensemble.yaml\n")).unwrap();
    env.run("lct-plan", &["create", "cli", client.to_str().unwrap()]).ok();
    let records = env.run("lct-inventory", &["clusters", "list", "-o", "jsonl"]).ok().json_lines();
    let record = records.iter().find(|r| r["name"] == "cli").unwrap();
    assert_eq!(
        record["depends_on"],
        serde_json::json!([{"cluster": "zk", "groups": ["server"], "ports": ["2181/tcp"]}])
    );
    env.run("lct-plan", &["destroy", "cli"]).ok();
    env.run("lct-plan", &["destroy", "zk"]).ok();
}
