//! package:glusterfs on machine nodes, its whole lifecycle on Debian's glusterfs-server: a
//! replica-3 volume on three servers' lct volumes, bricks addressed by FQDN; a dependent
//! cluster of two clients mounts it by name through FUSE (with the plan's offers): a file
//! one writes the other reads; a server's name resolves to its private address inside (hosts
//! files and lct-dns's internal view, package:dns-private) and to its public one outside
//! (lct-dns's public view); a scale 3 -> 6 -> 3
//! (add-brick + rebalance, remove-brick start/commit) loses no file (checksums before and
//! after); a server deleted behind lct's back: reads and writes go on.

use std::process::Command;
use std::time::Duration;

use lct_tests::Env;
use lct_tests::fixtures::{dig_in as dig, node_address, tcp_connects, until};

/// Two clients of the volume: they mount it at /mnt/gv from what the plan offers.
const CLIENT_PLAN: &str = r#"description: Clients of a GlusterFS volume.
groups:
  app:
    count: 2
    image: debian-12
    type: g6-standard-1
    hostname: "{{ cluster }}-{{ index }}"
firewall:
  admin: ["{{ admin_cidr }}"]
depends_on:
  gluster:
    cluster: gfs
    services: [server.management, server.bricks]
    uses: [volume, backup_servers]
packages: [glusterfs-client]
hooks:
  created:
    - action: install
    - action: hosts
    - action: firewall
    - action: packages
    - run: |
        set -e
        mkdir -p /mnt/gv
        mountpoint -q /mnt/gv || mount -t glusterfs -o "backup-volfile-servers=$LCT_OFFER_GLUSTER_BACKUP_SERVERS" "$LCT_OFFER_GLUSTER_VOLUME" /mnt/gv
      on: [app]
  dependency-changed:
    - action: hosts
    - action: firewall
"#;

/// The files under /mnt/gv/data with their SHA-256, sorted, as `node` reads them.
fn checksums(env: &Env, node: &str) -> String {
    env.ssh(node, "cd /mnt/gv/data && find . -type f | sort | xargs sha256sum").ok().stdout
}

/// The volume's bricks, as gfs-1 lists them.
fn bricks(env: &Env) -> Vec<String> {
    let info = env.ssh("gfs-1", "gluster volume info gv0").ok().stdout;
    info.lines()
        .filter_map(|l| l.strip_prefix("Brick")?.split_once(": "))
        .filter(|(number, _)| number.parse::<u32>().is_ok())
        .map(|(_, brick)| brick.to_string())
        .collect()
}

fn brick(n: u32) -> String {
    format!("gfs-{n}.gfs.lct.internal:/srv/gluster/brick/data")
}

#[test]
#[ignore = "needs root: machine nodes (namespaces, overlays, systemd-nspawn, FUSE) with GlusterFS"]
fn glusterfs_replicates_scales_by_replica_sets_and_survives_a_lost_server() {
    let env = Env::new();
    let started = std::time::Instant::now();
    // The lab's DNS server first: the glusterfs plan's `dns` action puts its names there.
    env.run("lct-plan", &["create", "dns", "package:dns-private"]).ok();
    let dns = (node_address(&env, "dns-1", "private_ipv4"), node_address(&env, "dns-1", "public_ipv4"));
    let t = std::time::Instant::now();
    env.run("lct-plan", &["create", "gfs", "package:glusterfs"]).ok();
    eprintln!("create: {:?}", t.elapsed());
    assert_eq!(bricks(&env), [brick(1), brick(2), brick(3)]);
    // Bricks sit on the servers' lct volumes, peers know each other by FQDN.
    let mounted = env.ssh("gfs-2", "findmnt -n -o SOURCE,FSTYPE /srv/gluster/brick").ok().stdout;
    assert!(mounted.contains("scsi-0Linode_Volume_gfs-2-brick") && mounted.contains("ext4"), "{mounted}");
    let peers = env.ssh("gfs-2", "gluster pool list").ok().stdout;
    for n in [1, 3] {
        assert!(peers.contains(&format!("gfs-{n}.gfs.lct.internal")), "gfs-2's peers: {peers}");
    }

    let dependent = env.state.path().join("clients.yaml");
    std::fs::write(&dependent, CLIENT_PLAN).unwrap();
    let t = std::time::Instant::now();
    env.run("lct-plan", &["create", "app", dependent.to_str().unwrap()]).ok();
    eprintln!("create the clients: {:?}", t.elapsed());
    // Names: a server's FQDN is its private address inside (the clients' hosts files).
    let private = node_address(&env, "gfs-1", "private_ipv4");
    let public = node_address(&env, "gfs-1", "public_ipv4");
    let resolved = env.ssh("app-1", "getent hosts gfs-1.gfs.lct.internal").ok().stdout;
    assert_eq!(resolved.split_whitespace().next(), Some(private.as_str()), "{resolved}");
    // Split horizon: lct-dns answers the private address inside, the public one outside.
    let outside = format!("{}-outside", env.lab);
    assert_eq!(dig(&env.ns("app-1"), &dns.0, "gfs-1.gfs.lct.internal"), private);
    assert_eq!(dig(&outside, &dns.1, "gfs-1.gfs.lct.internal"), public);
    // The outside reaches neither glusterd nor a brick.
    assert!(!tcp_connects(&outside, &public, 24007), "the outside reaches glusterd");
    assert!(!tcp_connects(&outside, &public, 49152), "the outside reaches a brick");

    // A file one client writes, the other reads.
    env.ssh(
        "app-1",
        "mkdir -p /mnt/gv/data && for i in $(seq 1 40); do head -c 65536 /dev/urandom > /mnt/gv/data/f$i; done",
    )
    .ok();
    let before = checksums(&env, "app-1");
    assert_eq!(before.lines().count(), 40, "{before}");
    assert_eq!(checksums(&env, "app-2"), before, "app-2 reads other files than app-1 wrote");
    // Replicated: every brick holds every file.
    let on_brick = env.ssh("gfs-3", "ls /srv/gluster/brick/data/data | wc -l").ok().stdout;
    assert_eq!(on_brick.trim(), "40");

    // Scale up by a replica set: the new bricks added, the files spread over both sets.
    let t = std::time::Instant::now();
    env.run("lct-plan", &["scale", "gfs", "server", "6"]).ok();
    eprintln!("scale 3 -> 6: {:?}", t.elapsed());
    assert_eq!(bricks(&env), (1..=6).map(brick).collect::<Vec<_>>());
    assert_eq!(dig(&env.ns("app-1"), &dns.0, "gfs-4.gfs.lct.internal"), node_address(&env, "gfs-4", "private_ipv4"));
    let moved = env.ssh("gfs-4", "ls /srv/gluster/brick/data/data | wc -l").ok().stdout;
    assert!(moved.trim().parse::<u32>().unwrap() > 0, "the rebalance moved no file to the new set");
    assert_eq!(checksums(&env, "app-2"), before, "files changed by the scale up");

    // Scale down: the second set's files moved back before its servers go.
    let t = std::time::Instant::now();
    env.run("lct-plan", &["scale", "gfs", "server", "3"]).ok();
    eprintln!("scale 6 -> 3: {:?}", t.elapsed());
    let log = env.run("lct-plan", &["log", "gfs", "node-removing"]).ok().stdout;
    assert!(log.contains("gfs-1: node-removing: removed the bricks of gfs-4,gfs-5,gfs-6"), "{log}");
    assert_eq!(bricks(&env), [brick(1), brick(2), brick(3)]);
    assert_eq!(checksums(&env, "app-1"), before, "files lost by the scale down");
    let back = env.ssh("gfs-1", "ls /srv/gluster/brick/data/data | wc -l").ok().stdout;
    assert_eq!(back.trim(), "40");

    // A server deleted behind lct's back: its set's two other bricks keep serving. (A
    // shorter ping timeout than GlusterFS's 42 s, as a user would set it, keeps this quick.)
    env.ssh("gfs-1", "gluster volume set gv0 network.ping-timeout 5").ok();
    env.run("lct-api", &["delete", "gfs-2"]).ok();
    let t = std::time::Instant::now();
    env.ssh("app-2", "echo written-without-gfs-2 > /mnt/gv/data/after && sync").ok();
    eprintln!("a write after the loss: {:?}", t.elapsed());
    until("app-1 to read the file written after the loss", Duration::from_secs(60), || {
        env.ssh("app-1", "cat /mnt/gv/data/after").stdout.trim() == "written-without-gfs-2"
    });
    assert_eq!(
        checksums(&env, "app-1").lines().filter(|l| !l.ends_with("./after")).collect::<Vec<_>>().join("\n") + "\n",
        before
    );

    env.run("lct-plan", &["destroy", "app"]).ok();
    env.run("lct-plan", &["destroy", "gfs"]).ok();
    env.run("lct-plan", &["destroy", "dns"]).ok();
    assert!(env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().stdout.trim().is_empty());
    eprintln!("total: {:?}", started.elapsed());
}

/// A scale down that would take part of a replica set (its other bricks keep files whose
/// third copy would go unmoved) is refused before anything is removed; whole sets pass, and
/// the volume's last set never goes.
#[test]
fn a_scale_down_that_splits_a_replica_set_is_refused() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/lct-plan/plans/glusterfs/configure.py");
    let remove = |leaving: &str| {
        let program = format!(
            r#"
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("configure", {script:?})
c = importlib.util.module_from_spec(spec); spec.loader.exec_module(c)
calls = []
c.volume_exists = lambda v: True
c.bricks_of = lambda v: [f"gfs-{{n}}.gfs.lct.internal:/srv/gluster/brick/data" for n in range(1, 7)]
c.peers = lambda: {{}}
c.wait_task = lambda *a: None
def gluster(*args, check=True, xml=False):
    calls.append(list(args))
    class Out: returncode = 1; stdout = ""; stderr = ""
    return Out()
c.gluster = gluster
try:
    c.remove_bricks("gv0", json.loads(sys.argv[1]))
finally:
    print(json.dumps(calls))
"#,
            script = script.display().to_string(),
        );
        Command::new("python3").args(["-c", &program, leaving]).env("PYTHONDONTWRITEBYTECODE", "1").output().unwrap()
    };
    let fqdns = |ns: &[u32]| {
        serde_json::to_string(&ns.iter().map(|n| format!("gfs-{n}.gfs.lct.internal")).collect::<Vec<_>>()).unwrap()
    };
    let whole = remove(&fqdns(&[4, 5, 6]));
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));
    let calls: serde_json::Value = serde_json::from_slice(&whole.stdout).unwrap();
    let brick = |n: u32| format!("gfs-{n}.gfs.lct.internal:/srv/gluster/brick/data");
    assert!(calls.as_array().unwrap().iter().any(|c| c[1] == "remove-brick" && c[3] == brick(4) && c[6] == "start"));
    for (leaving, says) in [
        (fqdns(&[5, 6]), "part of the replica set"),
        (fqdns(&[3, 4, 5]), "part of the replica set"),
        (fqdns(&[1, 2, 3, 4, 5, 6]), "every brick of the volume would go"),
    ] {
        let out = remove(&leaving);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{leaving}: {stderr}");
        let calls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(calls, serde_json::json!([]), "{leaving}: gluster was asked to change something");
    }
}

/// An add-brick that another server's pre-validation refuses because it has not connected
/// the new peer yet (a probe reaches the other servers a moment after it returns) is asked
/// again, and goes through; any other refusal stops the hook at once, asking nothing more.
#[test]
fn an_add_brick_refused_until_every_server_connects_the_new_peer_is_asked_again() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/lct-plan/plans/glusterfs/configure.py");
    let add = |refusal: &str| {
        let program = format!(
            r#"
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("configure", {script:?})
c = importlib.util.module_from_spec(spec); spec.loader.exec_module(c)
c.time.sleep = lambda s: None
c.bricks_of = lambda v: [f"gfs-{{n}}.gfs.lct.internal:/srv/gluster/brick/data" for n in range(1, 4)]
c.wait_online = lambda v: None
c.wait_task = lambda *a: None
calls = []
def gluster(*args, check=True, xml=False):
    calls.append(list(args))
    refused = args[1] == "add-brick" and len([a for a in calls if a[1] == "add-brick"]) <= 2
    class Out:
        returncode = 1 if refused else 0
        stdout = ""
        stderr = sys.argv[1] if refused else ""
    return Out()
c.gluster = gluster
try:
    c.add_bricks("gv0", [f"gfs-{{n}}.gfs.lct.internal" for n in range(1, 7)])
finally:
    print(json.dumps(calls))
"#,
            script = script.display().to_string(),
        );
        Command::new("python3").args(["-c", &program, refusal]).env("PYTHONDONTWRITEBYTECODE", "1").output().unwrap()
    };
    let add_bricks = |out: &std::process::Output| {
        let calls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        calls.as_array().unwrap().iter().filter(|c| c[1] == "add-brick").count()
    };
    let transient = add("volume add-brick: failed: Pre Validation failed on gfs-2.gfs.lct.internal. \
         Host gfs-5.gfs.lct.internal not connected");
    let stderr = String::from_utf8_lossy(&transient.stderr);
    assert!(transient.status.success(), "{stderr}");
    assert_eq!(add_bricks(&transient), 3, "two refusals, then the set went in");
    assert!(stderr.contains("not connected; asking again"), "{stderr}");
    let lasting = add("volume add-brick: failed: Brick: gfs-4.gfs.lct.internal:/srv/gluster/brick/data not available");
    let stderr = String::from_utf8_lossy(&lasting.stderr);
    assert!(!lasting.status.success() && stderr.contains("not available"), "{stderr}");
    assert_eq!(add_bricks(&lasting), 1, "a lasting refusal is not asked again");
}

/// The volume's name reaches gluster's command lines and the clients' mount source: the
/// plan's pattern refuses anything but a label.
#[test]
fn a_hostile_volume_name_is_refused() {
    let env = Env::new();
    for name in ["gv0;reboot", "../x", "gv0 force", "-gv0", "Gv0"] {
        let out = env.run("lct-plan", &["validate", "package:glusterfs", "--set", &format!("volume={name}")]);
        assert_ne!(out.status, 0, "{name} passed");
        assert!(out.stderr.contains("volume"), "{name}: {}", out.stderr);
    }
    env.run("lct-plan", &["validate", "package:glusterfs", "--set", "volume=data-1"]).ok();
}
