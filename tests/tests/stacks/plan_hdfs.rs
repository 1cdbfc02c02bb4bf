//! package:hdfs-ha's install path on machine nodes, without Apache's 920 MB release: the test
//! makes a stand-in release (Hadoop's layout; its `bin/hdfs`, tests/tests/stacks/plan_hdfs/hdfs,
//! formats, bootstraps, asks ZooKeeper and listens as the plan's configuration says), serves
//! it from the lab's outside namespace (what the nodes reach of the "internet"), and creates
//! the plan with `hadoop_url` and `hadoop_sha256`: download, pin check, unpack, Java from
//! Debian, configuration, units and the start order all run; a DataNode added by `scale`
//! gets the same. The hook's fetch and unpack refuse a wrong pin and hostile archives (no root).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lct_tests::fixtures::until;
use lct_tests::{Background, Env};

const HADOOP_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/lct-plan/plans/hdfs-ha/hadoop.py");
const STAND_IN: &str = include_str!("plan_hdfs/hdfs");

/// A release with Hadoop's layout, `TOP/bin/hdfs` the stand-in, as `DIR/release.tar.gz`;
/// returns its SHA-256.
fn stand_in_release(dir: &Path, top: &str) -> String {
    let root = dir.join("tree").join(top);
    for sub in ["bin", "sbin", "etc/hadoop", "libexec", "share/hadoop/hdfs"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("bin/hdfs"), STAND_IN).unwrap();
    std::fs::write(root.join("libexec/hadoop-config.sh"), "# stand-in\n").unwrap();
    std::fs::write(root.join("etc/hadoop/hadoop-env.sh"), "# stand-in\n").unwrap();
    std::fs::write(root.join("share/hadoop/hdfs/README.txt"), "A stand-in for lct's tests.\n").unwrap();
    let status = Command::new("chmod").args(["0755", root.join("bin/hdfs").to_str().unwrap()]).status().unwrap();
    assert!(status.success());
    let tarball = dir.join("release.tar.gz");
    let status = Command::new("tar")
        .args(["-czf", tarball.to_str().unwrap(), "-C", dir.join("tree").to_str().unwrap(), top])
        .status()
        .unwrap();
    assert!(status.success());
    sha256(&tarball)
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// The addresses `node` listens on at `port` (ss in its namespace), once `expected` is one
/// of them or after two minutes.
fn listening(env: &Env, node: &str, port: u16, expected: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        let out = env.in_ns(node, &["ss", "-Hltn", "sport", "=", &format!(":{port}")]).stdout;
        seen = out
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .map(|a| a.rsplit_once(':').unwrap().0.to_string())
            .collect();
        if seen.iter().any(|a| a == expected) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    seen
}

fn private_ip(env: &Env, node: &str) -> String {
    let nodes = env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().json_lines();
    let n = nodes.iter().find(|n| n["name"] == node).unwrap_or_else(|| panic!("no node {node}"));
    n["private_ipv4"][0].as_str().unwrap().to_string()
}

#[test]
#[ignore = "needs root: machine nodes (namespaces, overlays, systemd-nspawn) with ZooKeeper"]
fn hdfs_ha_installs_a_pinned_stand_in_release_from_a_mirror_and_starts_every_role() {
    let env = Env::new();
    env.run("lct-plan", &["create", "zk", "package:zookeeper", "--set", "servers=1"]).ok();
    let dir = tempfile::tempdir().unwrap();
    let pin = stand_in_release(dir.path(), "hadoop-3.4.0-standin");
    // The mirror: a file server in the outside namespace (the lab exists now), at the address
    // nodes reach over their public interface.
    let outside = env.ns("outside");
    let _mirror = Background::spawn({
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &outside, "python3", "-m", "http.server", "8080", "--bind", "203.0.113.254"])
            .args(["--directory", dir.path().to_str().unwrap()]);
        c
    });
    until("the mirror answers", Duration::from_secs(30), || {
        env.in_ns("outside", &["nc", "-z", "-w", "1", "203.0.113.254", "8080"]).status == 0
    });
    let url = "http://203.0.113.254:8080/release.tar.gz";
    let (url, pin) = (format!("hadoop_url={url}"), format!("hadoop_sha256={pin}"));
    let started = std::time::Instant::now();
    env.run("lct-plan", &["create", "hdfs", "package:hdfs-ha", "--set", "datanodes=1", "--set", &url, "--set", &pin])
        .ok();
    eprintln!("hdfs-ha create (6 nodes, stand-in release): {:.1?}", started.elapsed());

    // Every role runs the release from the mirror, with the configuration the plan wrote.
    let nodes = [("hdfs-jn-1", "journalnode"), ("hdfs-nn-1", "namenode"), ("hdfs-nn-1", "zkfc")];
    let nodes = nodes.into_iter().chain([("hdfs-nn-2", "namenode"), ("hdfs-nn-2", "zkfc"), ("hdfs-dn-1", "datanode")]);
    for (node, role) in nodes {
        let active = env.ssh(node, &format!("systemctl is-active lct-hdfs-{role}")).stdout;
        assert_eq!(active.trim(), "active", "{node}: lct-hdfs-{role}");
    }
    let release = env.ssh("hdfs-dn-1", "readlink /opt/hadoop; ls /var/cache/lct-hadoop").ok().stdout;
    let pin = pin.trim_start_matches("hadoop_sha256=");
    assert_eq!(release, format!("/opt/hadoop-3.4.0-standin\n{pin}.tar.gz\n"));
    // Formatted once on the first NameNode, the standby bootstrapped from it over HTTP, ZKFC
    // formatted against ZooKeeper's offered `connect`.
    let version = |node: &str| env.ssh(node, "cat /var/lib/hadoop/name/current/VERSION").ok().stdout;
    let first = version("hdfs-nn-1");
    assert!(first.starts_with("clusterID=CID-") && first.contains("formattedOn=hdfs-nn-1"), "{first}");
    assert_eq!(version("hdfs-nn-2"), first, "the standby is not bootstrapped from the first NameNode");
    let zk = env.ssh("hdfs-nn-1", "cat /var/lib/hadoop/zkfc-formatted").ok().stdout;
    assert!(zk.contains("Mode: standalone"), "{zk}");
    // Each daemon listens on its node's private address only (after reaching whom it needs:
    // a NameNode its JournalNodes, a DataNode both NameNodes).
    for (node, port) in [("hdfs-jn-2", 8485), ("hdfs-jn-3", 8480), ("hdfs-nn-1", 8020), ("hdfs-nn-2", 9870)]
        .into_iter()
        .chain([("hdfs-nn-2", 8019), ("hdfs-dn-1", 9866), ("hdfs-dn-1", 9867)])
    {
        let own = private_ip(&env, node);
        assert_eq!(listening(&env, node, port, &own), [own], "{node}:{port}");
    }
    let log = env.ssh("hdfs-nn-2", "journalctl -u lct-hdfs-namenode -o cat").stdout;
    assert!(log.contains("JournalNodes answer: hdfs-jn-1.hdfs.lct.internal:8485;"), "{log}");

    // A DataNode added by scale installs the same release and joins.
    let started = std::time::Instant::now();
    env.run("lct-plan", &["scale", "hdfs", "datanode", "2"]).ok();
    eprintln!("hdfs-ha scale datanode 1 -> 2: {:.1?}", started.elapsed());
    let own = private_ip(&env, "hdfs-dn-2");
    assert_eq!(listening(&env, "hdfs-dn-2", 9866, &own), [own]);
    let site = env.ssh("hdfs-nn-1", "cat /etc/hadoop/hdfs-site.xml").ok().stdout;
    assert!(site.contains("<name>dfs.replication</name><value>2</value>"), "{site}");
    let members = env.ssh("hdfs-nn-2", "cat /etc/hadoop/lct-inventory.json").ok().stdout;
    assert!(members.contains("hdfs-dn-2.hdfs.lct.internal"), "{members}");

    // Removed again: the others' configuration follows (replication back to 1).
    let started = std::time::Instant::now();
    env.run("lct-plan", &["scale", "hdfs", "datanode", "1"]).ok();
    eprintln!("hdfs-ha scale datanode 2 -> 1: {:.1?}", started.elapsed());
    let site = env.ssh("hdfs-nn-1", "cat /etc/hadoop/hdfs-site.xml").ok().stdout;
    assert!(site.contains("<name>dfs.replication</name><value>1</value>"), "{site}");
    let members = env.ssh("hdfs-nn-2", "cat /etc/hadoop/lct-inventory.json").ok().stdout;
    assert!(members.contains("hdfs-dn-1.") && !members.contains("hdfs-dn-2"), "{members}");
    for cluster in ["hdfs", "zk"] {
        env.run("lct-plan", &["destroy", cluster]).ok();
    }
    assert!(env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().stdout.trim().is_empty());
}

/// Runs `program` (Python) with the plan's hook imported as `hadoop`, `env` added.
fn with_hook_env(program: &str, env: &[(&str, &str)]) -> std::process::Output {
    let full = format!(
        "import importlib.util\nspec = importlib.util.spec_from_file_location('hadoop', {HADOOP_PY:?})\n\
         hadoop = importlib.util.module_from_spec(spec); spec.loader.exec_module(hadoop)\n{program}"
    );
    Command::new("python3").args(["-c", &full]).envs(env.iter().copied()).output().unwrap()
}

fn with_hook(program: &str) -> std::process::Output {
    with_hook_env(program, &[])
}

/// The hook's fetch keeps only the pinned release, named by its pin; its unpack refuses an
/// archive reaching outside its one top directory (parent paths, absolute paths, links out,
/// devices, two tops) and unpacks nothing of it; its source check refuses a URL that is not
/// http(s) or file, and a pin that is not 64 hexadecimal digits.
#[test]
fn the_hdfs_hook_keeps_only_the_pinned_release_and_refuses_hostile_archives() {
    let dir = tempfile::tempdir().unwrap();
    let pin = stand_in_release(dir.path(), "hadoop-x");
    let d = dir.path().display().to_string();
    let ok = with_hook(&format!(
        "t = hadoop.fetch('file://{d}/release.tar.gz', {pin:?}, '{d}/cache')\nprint(t)\nprint(hadoop.unpack(t, '{d}/opt'))"
    ));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), format!("{d}/cache/{pin}.tar.gz\nhadoop-x\n"));
    assert!(dir.path().join("opt/hadoop-x/bin/hdfs").exists());

    let wrong = "f".repeat(64);
    let refused = with_hook(&format!("hadoop.fetch('file://{d}/release.tar.gz', {wrong:?}, '{d}/cache2')"));
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(&format!("not the pinned {wrong}: nothing was unpacked"))
    );
    assert_eq!(std::fs::read_dir(dir.path().join("cache2")).unwrap().count(), 0, "a refused download is kept");

    // Hostile archives, made by Python's tarfile: each refused, nothing unpacked.
    let hostile = [
        ("parent", "add('top/ok', b'x'); add('top/../../escaped', b'x')"),
        ("absolute", "add('/tmp/lct-absolute', b'x')"),
        ("link-out", "add('top/ok', b'x'); link('top/etc', '../../../etc')"),
        ("abs-link", "add('top/ok', b'x'); link('top/passwd', '/etc/passwd')"),
        ("device", "add('top/ok', b'x'); dev('top/null')"),
        ("two-tops", "add('top/ok', b'x'); add('other/ok', b'x')"),
        ("dot-top", "add('./top/ok', b'x')"),
    ];
    for (name, members) in hostile {
        let program = format!(
            "import io, tarfile\nt = tarfile.open('{d}/{name}.tar.gz', 'w:gz')\n\
             def add(n, b):\n    i = tarfile.TarInfo(n); i.size = len(b); t.addfile(i, io.BytesIO(b))\n\
             def link(n, to):\n    i = tarfile.TarInfo(n); i.type = tarfile.SYMTYPE; i.linkname = to; t.addfile(i)\n\
             def dev(n):\n    i = tarfile.TarInfo(n); i.type = tarfile.CHRTYPE; i.devmajor = 1; i.devminor = 3; t.addfile(i)\n\
             {members}\nt.close()\nhadoop.unpack('{d}/{name}.tar.gz', '{d}/{name}')"
        );
        let out = with_hook(&program);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: unpacked");
        assert!(err.contains("nothing was unpacked"), "{name}: {err}");
        assert!(!dir.path().join(name).exists(), "{name}: something was unpacked");
    }
    assert!(!Path::new("/tmp/lct-absolute").exists());

    for (env, why) in [
        (vec![("LCT_PARAM_HADOOP_URL", "ftp://mirror/h.tgz"), ("LCT_PARAM_HADOOP_SHA256", pin.as_str())], "hadoop_url"),
        (
            vec![("LCT_PARAM_HADOOP_URL", "http://mirror/h.tgz; rm -rf /"), ("LCT_PARAM_HADOOP_SHA256", pin.as_str())],
            "hadoop_url",
        ),
        (vec![("LCT_PARAM_HADOOP_URL", "http://mirror/h.tgz"), ("LCT_PARAM_HADOOP_SHA256", "abc")], "SHA-256"),
        (vec![("LCT_PARAM_HADOOP_SHA256", pin.as_str())], "without hadoop_url"),
    ] {
        let out = with_hook_env("hadoop.source()", &env);
        assert!(!out.status.success(), "{env:?} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{env:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
