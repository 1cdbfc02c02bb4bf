//! The mesh's proof (issue 23) on real regions of the local cloud (`--region`: a private
//! network each, whose ranges overlap): ZooKeeper from package:zookeeper's configure script,
//! one server per region on machine nodes, elects one leader over the mesh that the plan's
//! `mesh-sync` action keeps; names follow the mesh (another region's server by its mesh
//! address); package:postgres-ha in region a elects its primary through that ensemble
//! (Patroni's DCS across the regions); deleting a region's mesh leader keeps the quorum
//! reachable after the next sync, and Patroni its leader and its writes; and the lab's public
//! network carries nothing between the regions but WireGuard. Needs root.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lct_tests::Env;
use lct_tests::fixtures::mesh::MeshDown;

/// The packaged plan's servers over three regions, with the mesh in their events and its
/// firewall (default-deny: SSH from the outside namespace, the ensemble's flows, clients
/// from dependents; lct-fw admits WireGuard from mesh peers and other regions' members by
/// mesh address). `dependent-changed` syncs the mesh: a dependent's node going can move a
/// region's leader, and `mesh-sync` then pushes the firewalls that admit its WireGuard.
const PLAN: &str = r#"description: ZooKeeper over three regions, through lct's mesh
groups:
  server:
    count: 3
    image: debian-12
    regions: [a, b, c]
    per_region: 1
    hostname: "{{ cluster }}-{{ index }}"
    services:
      client:
        ports: [2181/tcp]
      quorum:
        ports: [2888/tcp, 3888/tcp]
firewall:
  admin: ["203.0.113.254/32"]
  allow:
    - {from: self, to: server.quorum}
    - {from: self, to: server.client}
    - {from: dependents, to: server.client}
offers:
  connect: "{% for n in nodes.server %}{{ n.fqdn }}:2181{% if not loop.last %},{% endif %}{% endfor %}"
packages: [zookeeperd]
hooks:
  created:
    - action: install
    - action: mesh-sync
    - action: hosts
    - action: firewall
    - action: packages
    - {script: configure.py, on: [server]}
  node-removed:
    - action: mesh-sync
    - action: hosts
    - action: firewall
    - {script: configure.py, on: [server]}
  dependent-changed:
    - action: mesh-sync
    - action: hosts
"#;

/// package:postgres-ha as it is packaged, in region a, with the mesh in its events: its nodes
/// join the mesh after `install` and before `hosts` (and a removed one leaves it), so that
/// ZooKeeper's servers of other regions resolve on them to their mesh addresses: Patroni's
/// DCS is the zk ensemble of all three regions, reached by the names zk offers (`connect`).
fn postgres_plan() -> String {
    let packaged = std::fs::read_to_string(plans_dir().join("postgres-ha/plan.yaml")).unwrap();
    let edits = [
        (
            "    hostname: \"{{ cluster }}-{{ index }}\"\n",
            "    regions: [a]\n    hostname: \"{{ cluster }}-{{ index }}\"\n",
            1,
        ),
        ("    - action: install\n", "    - action: install\n    - action: mesh-sync\n", 2),
        (
            "  node-removed:\n    - action: hosts\n",
            "  node-removed:\n    - action: mesh-sync\n    - action: hosts\n",
            1,
        ),
    ];
    edits.iter().fold(packaged, |plan, (from, to, times)| {
        assert_eq!(plan.matches(from).count(), *times, "package:postgres-ha changed: {from:?}");
        plan.replace(from, to)
    })
}

fn plans_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/lct-plan/plans")
}

/// A plan's files in the state directory: its plan.yaml and its scripts from `package`.
fn plan_files(env: &Env, name: &str, plan: &str, package: &str, scripts: &[&str]) -> std::path::PathBuf {
    let dir = env.state.path().join(format!("{name}-plan"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plan.yaml"), plan).unwrap();
    for script in scripts {
        std::fs::copy(plans_dir().join(package).join(script), dir.join(script)).unwrap();
    }
    dir.join("plan.yaml")
}

/// `sql` through psql on `node`, as PostgreSQL's superuser (peer authentication).
fn psql(env: &Env, node: &str, sql: &str) -> lct_tests::Run {
    env.ssh(node, &format!("cd / && runuser -u postgres -- psql -XAtc \"{sql}\""))
}

/// The Patroni leader of cluster pg as the ZooKeeper server `at` holds it (its leader key),
/// or "" when it holds none.
fn patroni_leader(env: &Env, at: &str) -> String {
    let out =
        env.ssh(at, &format!("/usr/share/zookeeper/bin/zkCli.sh -server {at}:2181 get /lct/pg/leader 2>/dev/null"));
    out.stdout.lines().map(str::trim).find(|l| *l == "pg-1" || *l == "pg-2").unwrap_or_default().to_string()
}

/// The node where Patroni leads and PostgreSQL takes writes: the leader key in ZooKeeper
/// (read at region c's server, over the mesh) names it and its PostgreSQL is a primary, and
/// `insert` commits there; or what was seen after 90 s (a primary that lost its DCS for a
/// moment demotes itself and takes the key again in Patroni's next loop).
fn primary_writes(env: &Env, insert: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let leader = patroni_leader(env, "zk-3");
        let seen = if leader.is_empty() {
            "no leader key".to_string()
        } else {
            let out = psql(env, &leader, insert);
            if out.status == 0 {
                return Ok(leader);
            }
            format!("{leader}: {}", out.stderr.trim())
        };
        if Instant::now() > deadline {
            return Err(seen);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `query` at the replica until it answers `expected` (it streams within moments), or what
/// it answers after 20 s.
fn replica_reads(env: &Env, replica: &str, query: &str, expected: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = psql(env, replica, query).stdout.trim().to_string();
        if seen == expected || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `srvr` to ZooKeeper at `host` (a name, resolved where it runs): its `Mode:` line's value.
fn srvr(host: &str) -> String {
    format!(
        "python3 -c \"import socket; s = socket.create_connection(('{host}', 2181), 5); s.sendall(b'srvr'); \
         print(s.makefile().read())\""
    )
}

fn mode_of(out: &str) -> String {
    out.lines().find_map(|l| l.strip_prefix("Mode: ")).unwrap_or_default().to_string()
}

/// The servers' modes, asked on each server at its own name, until one leads and the others
/// follow (an election after restarts takes a moment), or as they are after 60 s.
fn settled(env: &Env, servers: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let modes: Vec<String> = servers.iter().map(|s| mode_of(&env.ssh(s, &srvr(s)).stdout)).collect();
        let leaders = modes.iter().filter(|m| *m == "leader").count();
        let followers = modes.iter().filter(|m| *m == "follower").count();
        if (leaders == 1 && followers + 1 == modes.len()) || Instant::now() > deadline {
            return modes;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Runs `cmd` in namespace node `node`'s namespace (its hosts file bound over /etc/hosts).
fn in_node(env: &Env, node: &str, cmd: &str) -> lct_tests::Run {
    let ns = format!("{}-{node}", env.lab);
    lct_tests::Run::from(Command::new("ip").args(["netns", "exec", &ns, "sh", "-c", cmd]).output().unwrap())
}

/// A capture (tcpdump, in a namespace of the lab), stopped and its packets read as text.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    /// The lab's public bridge and its ports (in the lab's namespace, where every node's
    /// public link ends): packets between two public addresses of the lab, one region to
    /// another, none to or from the outside namespace (203.0.113.254: SSH to machines, the
    /// test's own).
    fn public(env: &Env) -> Capture {
        let filter = "ip and src net 203.0.113.0/24 and dst net 203.0.113.0/24 and not host 203.0.113.254";
        Capture::start(&format!("{}-lab", env.lab), "any", env.state.path().join("public.pcap"), filter)
    }

    /// What crosses a node's mesh interface (`lctmesh0`, a machine's): the tunnel's
    /// inside, decrypted, where the bytes the public capture must not see in clear are.
    fn tunnel(env: &Env, node: &str) -> Capture {
        Capture::start(&env.ns(node), "lctmesh0", env.state.path().join(format!("{node}-tunnel.pcap")), "ip")
    }

    fn start(ns: &str, interface: &str, file: std::path::PathBuf, filter: &str) -> Capture {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "tcpdump", "-i", interface, "-nn", "-U", "-s", "0", "-w"])
            .arg(&file)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump (scripts/setup installs it)");
        // tcpdump says "listening on" once it captures.
        std::thread::sleep(Duration::from_secs(2));
        Capture { child, file }
    }

    /// The captured packets, one line each, and their bytes in hex and ASCII.
    fn stop(mut self) -> (Vec<String>, String) {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        let read = |extra: &[&str]| {
            let out = Command::new("tcpdump").args(["-nn", "-r"]).arg(&self.file).args(extra).output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let lines = read(&["-q"]).lines().map(String::from).collect();
        (lines, read(&["-A"]))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs root: network namespaces, systemd-nspawn machines, wireguard-go and tcpdump (scripts/test runs it as root)"]
fn zookeeper_and_postgres_ha_over_three_regions_through_the_mesh_and_the_outside_sees_only_wireguard() {
    lct_tests::fixtures::dns::require(&["wg", "wireguard-go", "tcpdump"]);
    let started = Instant::now();
    let env = Env::new();
    // Region a also has two namespace nodes of a client cluster that depends on zk: cl-1
    // leads region a's mesh (the lowest name), so deleting it moves the leader.
    env.run("lct-api", &["create", "--cluster", "cl", "--region", "a", "--name", "cl-1", "cl-2"]).ok();
    env.run("lct-inventory", &["clusters", "set", "cl", "--depends-on", "zk:server:2181/tcp"]).ok();
    let plan = plan_files(&env, "zk", PLAN, "zookeeper", &["configure.py"]);
    let pg_plan = plan_files(&env, "pg", &postgres_plan(), "postgres-ha", &["configure.py", "resume.py"]);

    let _down = MeshDown::new(&env, "");
    let capture = Capture::public(&env);
    env.run("lct-plan", &["create", "zk", plan.to_str().unwrap()]).ok();
    let created = started.elapsed();
    let nodes = env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().json_lines();
    let field = |name: &str, f: &str| -> String {
        let n = nodes.iter().find(|n| n["name"] == name).unwrap_or_else(|| panic!("no node {name}"));
        n[f].as_str().map(String::from).unwrap_or_else(|| n[f][0].as_str().unwrap().to_string())
    };
    // One server per region, and the regions' private ranges overlap: zk-1 and cl-1 (region
    // a) and zk-2 (region b) hold the same private address, so nothing private can cross.
    let regions: Vec<String> = ["zk-1", "zk-2", "zk-3"].iter().map(|n| field(n, "region")).collect();
    assert_eq!(regions, ["a", "b", "c"]);
    assert_eq!(field("zk-2", "private_ipv4"), field("cl-1", "private_ipv4"), "the ranges overlap");

    // One leader, elected over the mesh: the servers list each other by name.
    let servers = ["zk-1", "zk-2", "zk-3"];
    let modes = settled(&env, &servers);
    assert_eq!(modes.iter().filter(|m| *m == "leader").count(), 1, "{modes:?}");
    assert_eq!(modes.iter().filter(|m| *m == "follower").count(), 2, "{modes:?}");

    // Names follow the mesh: from zk-1, zk-2 is its mesh address; cl-2 (its own region) is
    // private; from cl-2, zk-3 is its mesh address and zk-1 its private one.
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.state.path().join("mesh.json")).unwrap()).unwrap();
    let mesh_address = |n: &str| record["members"][n]["address"].as_str().unwrap().to_string();
    // The others by name; its own line by its mesh address, where the others reach it (a
    // server's own line is what it tells the servers it connects to).
    let zoo = env.ssh("zk-1", "grep '^server\\.' /etc/zookeeper/conf/zoo.cfg").stdout;
    let own = mesh_address("zk-1");
    assert_eq!(zoo, format!("server.1={own}:2888:3888\nserver.2=zk-2:2888:3888\nserver.3=zk-3:2888:3888\n"));
    let resolved = |run: lct_tests::Run| run.stdout.split_whitespace().next().unwrap_or_default().to_string();
    assert_eq!(resolved(env.ssh("zk-1", "getent hosts zk-2")), mesh_address("zk-2"));
    assert_eq!(resolved(env.ssh("zk-1", "getent hosts zk-3.zk.lct.internal")), mesh_address("zk-3"));
    assert_eq!(resolved(in_node(&env, "cl-2", "getent hosts zk-3")), mesh_address("zk-3"));
    assert_eq!(resolved(in_node(&env, "cl-2", "getent hosts zk-1")), field("zk-1", "private_ipv4"));
    // A client in region a reaches every server by name, another region's over the mesh.
    for s in servers {
        let out = in_node(&env, "cl-2", &srvr(s));
        assert!(!mode_of(&out.stdout).is_empty(), "cl-2 does not reach {s}: {}", out.stderr);
    }
    assert_eq!(record["leaders"]["a"], "cl-1", "{record}");

    // Every server's firewall is lct-fw's default-deny table.
    for s in servers {
        let table = env.ssh(s, "nft list table inet lct").stdout;
        assert!(table.contains("policy drop"), "{s}: {table}");
    }

    // package:postgres-ha in region a depends on the spread ensemble: Patroni's DCS is zk's
    // three servers by the names zk offers, which resolve on pg's nodes to zk-1's private
    // address and to zk-2's and zk-3's mesh addresses. It elects a primary whose leader key
    // region c's server holds (Patroni's DCS writes crossed the mesh); a write there is read
    // at the replica (streaming over region a's private network).
    let tunnel = Capture::tunnel(&env, "zk-3");
    let pg_started = Instant::now();
    env.run("lct-plan", &["create", "pg", pg_plan.to_str().unwrap(), "--set", "zookeeper=zk"]).ok();
    let pg_created = pg_started.elapsed();
    let nodes = env.run("lct-inventory", &["query", "--cluster", "pg", "-o", "jsonl"]).ok().json_lines();
    let pg_regions: Vec<&str> = nodes.iter().map(|n| n["region"].as_str().unwrap_or_default()).collect();
    assert_eq!(pg_regions, ["a", "a"], "{nodes:?}");
    let patroni = env.ssh("pg-1", "grep -A1 '^zookeeper:' /etc/patroni/config.yml").stdout;
    assert!(patroni.contains("\"zk-2.zk.lct.internal:2181\""), "Patroni's DCS hosts: {patroni}");
    assert_eq!(resolved(env.ssh("pg-1", "getent hosts zk-2.zk.lct.internal")), mesh_address("zk-2"));
    assert_eq!(resolved(env.ssh("pg-2", "getent hosts zk-3.zk.lct.internal")), mesh_address("zk-3"));
    let marker = "pg-marker-5e1f";
    let write = format!("create table proof (v text); insert into proof values ('{marker}')");
    let primary = primary_writes(&env, &write).unwrap_or_else(|seen| panic!("no primary takes a write: {seen}"));
    let replica = if primary == "pg-1" { "pg-2" } else { "pg-1" };
    assert_eq!(psql(&env, replica, "select pg_is_in_recovery()").stdout.trim(), "t", "{replica} is a replica");
    assert_eq!(
        replica_reads(&env, replica, "select count(*) from proof", "1"),
        "1",
        "the replica did not get the write"
    );
    // Inside the tunnel of region c's leader (zk-3), decrypted: Patroni's DCS records did
    // cross the regions (ZooKeeper's proposals, or a request forwarded to its leader), so
    // the public capture's looking for them below can fail.
    let (_, inside) = tunnel.stop();
    for dcs in ["/lct/pg", "conn_url"] {
        assert!(inside.contains(dcs), "{dcs:?} did not cross the mesh to region c");
    }

    // Region a's mesh leader goes; zk's dependent-changed event (mesh-sync) gives the region
    // another, and pushes the firewalls whose WireGuard peers moved (zk-2 and zk-3 admit
    // cl-2's endpoint now, not cl-1's): the quorum stays reachable from region a.
    env.run("lct-api", &["delete", "cl-1"]).ok();
    env.run("lct-plan", &["fire", "zk", "dependent-changed"]).ok();
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.state.path().join("mesh.json")).unwrap()).unwrap();
    assert_eq!(record["leaders"]["a"], "cl-2", "{record}");
    let modes = settled(&env, &servers);
    assert_eq!(modes.iter().filter(|m| *m == "leader").count(), 1, "after the leader's deletion: {modes:?}");
    for s in servers {
        let out = in_node(&env, "cl-2", &srvr(s));
        assert!(!mode_of(&out.stdout).is_empty(), "after the sync, cl-2 does not reach {s}: {}", out.stderr);
    }
    // Patroni reaches its DCS again: patronictl lists a leader, whose leader key region c's
    // server holds, and a new write at the primary reaches the replica.
    let after = primary_writes(&env, &format!("insert into proof values ('{marker}')"))
        .unwrap_or_else(|seen| panic!("after the leader's deletion, no primary takes a write: {seen}"));
    let listed = env.ssh(&after, "cd / && patronictl -c /etc/patroni/config.yml list -f json");
    let members: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout)
        .unwrap_or_else(|e| panic!("patronictl list: {e}: {}{}", listed.stdout, listed.stderr));
    let leaders: Vec<&serde_json::Value> = members.iter().filter(|m| m["Role"] == "Leader").collect();
    assert_eq!(leaders.len(), 1, "patronictl list: {members:?}");
    assert_eq!(leaders[0]["Member"], after.as_str(), "patronictl list: {members:?}");
    let replica = if after == "pg-1" { "pg-2" } else { "pg-1" };
    assert_eq!(replica_reads(&env, replica, "select count(*) from proof", "2"), "2", "the replica lost a write");

    // A write through zk-2 (region b) is read at zk-3 (region c): the ensemble works.
    let write = env.ssh("zk-2", "/usr/share/zookeeper/bin/zkCli.sh -server zk-2:2181 create /lct-mesh proof 2>&1");
    assert!(write.stdout.contains("Created /lct-mesh"), "{}", write.stdout);
    let read = env.ssh("zk-3", "/usr/share/zookeeper/bin/zkCli.sh -server zk-3:2181 get /lct-mesh 2>/dev/null");
    assert!(read.stdout.lines().any(|l| l == "proof"), "{}", read.stdout);

    // Between public addresses: WireGuard only (UDP to or from its port), and some of it.
    // A deleted leader's namespace may answer a peer's WireGuard packet with ICMP port
    // unreachable between its wireguard-go's end and its own (the peers learn of the new
    // leader at the next sync): an error about WireGuard's port, no payload of its own.
    let (packets, bytes) = capture.stop();
    let wireguard = |p: &String| p.contains(".51820") && p.contains("UDP");
    let about_wireguard = |p: &String| p.contains("ICMP") && p.contains("udp port 51820 unreachable");
    assert!(packets.iter().any(wireguard), "no WireGuard seen: {packets:?}");
    let other: Vec<&String> = packets.iter().filter(|p| !wireguard(p) && !about_wireguard(p)).collect();
    assert!(other.is_empty(), "not WireGuard between the regions' public addresses: {other:?}");
    // PostgreSQL's and Patroni's: the marker written by SQL, and Patroni's DCS records (its
    // znodes' path and members' connection URLs), which ZooKeeper carried between regions.
    for clear in ["zookeeper", "lct-mesh", "proof", "srvr", "Mode: ", marker, "/lct/pg", "conn_url"] {
        assert!(!bytes.contains(clear), "{clear:?} in clear on the public network");
    }
    eprintln!(
        "create zk {:.1} s, create pg {:.1} s, whole test {:.1} s",
        created.as_secs_f64(),
        pg_created.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
