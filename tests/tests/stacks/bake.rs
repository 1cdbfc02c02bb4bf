//! Golden images on machine nodes (issue 22): `lct-plan bake` of ZooKeeper, reused when
//! nothing changed, a new entry sharing Debian's extents for a changed package list; a
//! cluster made from `image: baked` elects a leader without fetching a package; version
//! drift (a newer build in the mirror reaches apt-made nodes, never image-made ones); the
//! nodes from the image open nothing in the mirror; bad images refused before any node.
//!
//! The drift test changes the lab's mirror, so these tests use a mirror of their own: hard
//! links of the shared base root and mirror in a private `LCT_IMAGE_DIR` (a new .deb and a
//! new index are new files: the shared ones are never written).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lct_tests::{Background, Env, Run, image_dir};

/// A private image directory: the shared base root and mirror, hard-linked.
struct Images(tempfile::TempDir);

impl Images {
    fn new() -> Images {
        let dir = tempfile::tempdir_in("/var/tmp").expect("a directory beside the shared images");
        let shared = PathBuf::from(image_dir());
        for sub in ["debian-12", "mirror"] {
            if shared.join(sub).is_dir() {
                let ok = Command::new("cp").arg("-al").arg(shared.join(sub)).arg(dir.path()).status().unwrap();
                assert!(ok.success(), "hard links of {}", shared.join(sub).display());
            }
        }
        Images(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn mirror(&self) -> PathBuf {
        self.path().join("mirror")
    }
}

fn run(env: &Env, images: &Images, tool: &str, args: &[&str]) -> Run {
    let mut c = env.command(tool, args);
    c.env("LCT_IMAGE_DIR", images.path()).stdin(Stdio::null());
    Run::from(c.output().expect("spawn"))
}

/// The zookeeper plan with its servers made from the bake, and `packages` as given.
fn baked_plan(dir: &Path, packages: &str) -> String {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/lct-plan/plans/zookeeper");
    std::fs::create_dir_all(dir).unwrap();
    let text = std::fs::read_to_string(source.join("plan.yaml")).unwrap();
    let text = text.replace("    image: debian-12\n", "    image: baked\n").replace("packages: [zookeeperd]", packages);
    std::fs::write(dir.join("plan.yaml"), text).unwrap();
    std::fs::copy(source.join("configure.py"), dir.join("configure.py")).unwrap();
    dir.join("plan.yaml").display().to_string()
}

fn baked(run: &Run) -> serde_json::Value {
    run.json_lines().into_iter().find(|l| l["kind"] == "plan-baked").expect("a plan-baked record")
}

/// Every package on `node` with its version.
fn packages(env: &Env, node: &str) -> String {
    let out = env.ssh(node, "dpkg-query -W -f '${Package} ${Version}\\n' | sort");
    assert_eq!(out.status, 0, "{node}: {}", out.stderr);
    out.stdout
}

/// What the nodes open in the mirror while it runs, one path a line.
struct Watch {
    _watcher: Background,
    log: PathBuf,
}

impl Watch {
    fn mirror(images: &Images, log: PathBuf) -> Watch {
        let mut c = Command::new("inotifywait");
        c.args(["-m", "-r", "-q", "-e", "open", "--format", "%w%f", "-o"]).arg(&log).arg(images.mirror());
        let watcher = Background::spawn(c);
        // inotifywait is watching once it has set its watches: give it the moment it needs.
        std::thread::sleep(Duration::from_millis(500));
        Watch { _watcher: watcher, log }
    }

    /// Opens of the mirror's index and packages since the watch began (apt, dpkg inside
    /// machines: whatever is not the host's own indexing).
    fn opens(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(300));
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.ends_with("/Packages") || l.ends_with(".deb")).map(String::from).collect()
    }
}

/// A newer build of `package` in the mirror: its .deb unpacked, `Version` given `+lct1`,
/// packed again beside the original, and the index made again (replaced whole).
fn newer_build(images: &Images, package: &str) -> String {
    let mirror = images.mirror();
    let pool = mirror.join("pool");
    let deb = std::fs::read_dir(&pool)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{package}_")))
        .unwrap_or_else(|| panic!("{package} in the mirror"));
    let work = images.path().join("rebuild");
    let _ = std::fs::remove_dir_all(&work);
    assert!(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&work).status().unwrap().success());
    let control = work.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let old = text.lines().find_map(|l| l.strip_prefix("Version: ")).unwrap().to_string();
    let new = format!("{old}+lct1");
    std::fs::write(&control, text.replace(&format!("Version: {old}"), &format!("Version: {new}"))).unwrap();
    let out = pool.join(format!("{package}_{new}_all.deb"));
    let built = Command::new("dpkg-deb").args(["--root-owner-group", "-b"]).arg(&work).arg(&out).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    std::fs::remove_dir_all(&work).unwrap();
    let index = Command::new("dpkg-scanpackages")
        .args(["--multiversion", "pool", "/dev/null"])
        .current_dir(&mirror)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(index.status.success());
    let tmp = mirror.join("Packages.new");
    std::fs::write(&tmp, &index.stdout).unwrap();
    std::fs::rename(&tmp, mirror.join("Packages")).unwrap();
    new
}

fn version_of(list: &str, package: &str) -> String {
    list.lines()
        .find_map(|l| l.strip_prefix(&format!("{package} ")))
        .unwrap_or_else(|| panic!("{package} not installed"))
        .to_string()
}

/// `Mode: leader` / `follower` of every server of `nodes` once settled.
fn zk_modes(env: &Env, nodes: &[&str]) -> Vec<String> {
    let probe = "python3 -c \"import socket,sys; a=[l.split('=',1)[1].strip() for l in open('/etc/zookeeper/conf/zoo.cfg') if l.startswith('clientPortAddress=')][0]; s=socket.create_connection((a,2181),5); s.sendall(b'srvr'); print(s.makefile().read())\"";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let modes: Vec<String> = nodes
            .iter()
            .map(|n| env.ssh(n, probe).stdout.lines().find_map(|l| l.strip_prefix("Mode: ")).unwrap_or("").to_string())
            .collect();
        let leaders = modes.iter().filter(|m| *m == "leader").count();
        if leaders == 1 && modes.iter().filter(|m| *m == "follower").count() + 1 == nodes.len() {
            return modes;
        }
        assert!(Instant::now() < deadline, "no leader and followers: {modes:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
#[ignore = "needs root: machine nodes (namespaces, overlays, systemd-nspawn), ZooKeeper baked into an image"]
fn bake_reuse_nodes_from_the_image_version_drift_and_offline() {
    let env = Env::new();
    let images = Images::new();
    let plans = env.state.path().join("plans-here");
    let plan = baked_plan(&plans.join("zk"), "packages: [zookeeperd]");

    let started = Instant::now();
    let first = baked(&run(&env, &images, "lct-plan", &["bake", "zk", &plan]).ok());
    let bake_time = started.elapsed();
    let entry = first["entry"].as_str().unwrap().to_string();
    assert!(entry.starts_with("zk-") && entry.len() == "zk-".len() + 12, "{entry}");
    assert_eq!(first["reused"], false);
    let first_bytes = first["new_bytes"].as_u64().unwrap();
    assert!(first_bytes > 0);
    // The bake node is gone, and nothing of it is left in the state directory.
    let nodes = run(&env, &images, "lct-api", &["list", "-o", "jsonl"]).ok();
    assert!(nodes.json_lines().is_empty(), "{}", nodes.stdout);
    assert!(!env.state.path().join("plans/zk-bake").exists());

    // Nothing changed: the entry is reused, no node is made (no step past the lookup).
    let again = run(&env, &images, "lct-plan", &["bake", "zk", &plan]).ok();
    let record = baked(&again);
    assert_eq!((record["entry"].as_str(), record["reused"].as_bool()), (Some(entry.as_str()), Some(true)));
    assert!(!again.stderr.contains("making the bake node"), "{}", again.stderr);

    // A changed package list: a new entry, which stores far less than the first (Debian's
    // and Java's extents are there already). Measured: 0.35x (the capture copies files onto
    // a fresh template disk, and a changed file set moves some files to other extents).
    let more = baked_plan(&plans.join("zk2"), "packages: [zookeeperd, jq]");
    let second = baked(&run(&env, &images, "lct-plan", &["bake", "zk2", &more]).ok());
    assert_ne!(second["entry"], first["entry"]);
    let second_bytes = second["new_bytes"].as_u64().unwrap();
    assert!(second_bytes * 2 < first_bytes, "the second bake stored {second_bytes} bytes, the first {first_bytes}");

    // The cluster from the image: ZooKeeper elects a leader; the nodes open nothing in the
    // mirror (every package is on the image).
    // `create --bake` finds the bake made already: reused, no bake node.
    let watch = Watch::mirror(&images, env.state.path().join("opens-create.log"));
    let created = Instant::now();
    let out = run(&env, &images, "lct-plan", &["create", "zk", &plan, "--bake"]).ok();
    let create_time = created.elapsed();
    let line = out.stderr.lines().find(|l| l.contains(r#""kind":"plan-baked""#)).expect("a plan-baked line");
    let record: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!((record["entry"].as_str(), record["reused"].as_bool()), (Some(entry.as_str()), Some(true)));
    assert!(!out.stderr.contains("making the bake node"), "{}", out.stderr);
    let modes = zk_modes(&env, &["zk-1", "zk-2", "zk-3"]);
    assert_eq!(watch.opens(), Vec::<String>::new(), "nodes from the image read the mirror");
    drop(watch);
    let baked_list = packages(&env, "zk-1");
    assert!(baked_list.contains("zookeeperd "), "{baked_list}");
    for n in ["zk-2", "zk-3"] {
        assert_eq!(packages(&env, n), baked_list, "{n} differs from zk-1");
    }
    // Each node is itself: machine-id and host key differ.
    let id = |n: &str| env.ssh(n, "cat /etc/machine-id /etc/ssh/ssh_host_ed25519_key.pub").stdout;
    assert_ne!(id("zk-1"), id("zk-2"));

    // Version drift: a newer zookeeperd in the mirror. A scale from the image does not
    // see it: zk-4 has exactly the baked packages, and reads nothing in the mirror.
    let newer = newer_build(&images, "zookeeperd");
    let watch = Watch::mirror(&images, env.state.path().join("opens-scale.log"));
    run(&env, &images, "lct-plan", &["scale", "zk", "server", "4"]).ok();
    assert_eq!(watch.opens(), Vec::<String>::new(), "a node scaled from the image read the mirror");
    drop(watch);
    assert_eq!(packages(&env, "zk-4"), baked_list, "zk-4 drifted from the image");
    assert_ne!(version_of(&baked_list, "zookeeperd"), newer);

    // The same without the image: apt on the node takes the newer build, reading the mirror.
    let plain = plans.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let plain_plan = baked_plan(&plain, "packages: [zookeeperd]");
    let text = std::fs::read_to_string(&plain_plan).unwrap().replace("image: baked", "image: debian-12");
    std::fs::write(&plain_plan, text).unwrap();
    let watch = Watch::mirror(&images, env.state.path().join("opens-apt.log"));
    run(&env, &images, "lct-plan", &["create", "za", &plain_plan, "--set", "servers=1"]).ok();
    assert!(!watch.opens().is_empty(), "the apt path read nothing in the mirror (is the watch working?)");
    drop(watch);
    let drifted = packages(&env, "za-1");
    assert_eq!(version_of(&drifted, "zookeeperd"), newer, "the apt path did not take the newer build");
    eprintln!(
        "bake {:.1} s ({first_bytes} bytes new), a changed bake stored {second_bytes} bytes, 3 nodes from the \
         image in {:.1} s; modes {modes:?}",
        bake_time.as_secs_f64(),
        create_time.as_secs_f64()
    );
}

#[test]
#[ignore = "needs root: machine nodes (namespaces, overlays, systemd-nspawn)"]
fn create_bake_bakes_a_missing_image_then_makes_the_nodes_from_it() {
    let env = Env::new();
    let images = Images::new();
    let plan = env.state.path().join("plain.yaml");
    std::fs::write(&plan, "description: a plain baked Debian\ngroups:\n  node:\n    count: 1\n    image: baked\n")
        .unwrap();
    let started = Instant::now();
    let out = run(&env, &images, "lct-plan", &["create", "pl", plan.to_str().unwrap(), "--bake", "-o", "jsonl"]).ok();
    let line = out.stderr.lines().find(|l| l.contains(r#""kind":"plan-baked""#)).expect("a plan-baked line");
    let record: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(record["reused"], false, "no entry yet: baked");
    let nodes = out.json_lines();
    assert_eq!(nodes.len(), 1, "{}", out.stdout);
    // The node is the image's (the bake node's programs on it), booted without cloud-init.
    let on =
        env.ssh("pl-1", "hostname; command -v lct-fw; grep -c 'native first boot' /run/cloud-init/result.json").ok();
    assert_eq!(on.stdout, "pl-1\n/usr/local/bin/lct-fw\n1\n", "{}", on.stderr);
    // Generators that do nothing in a container are masked on the node, in its own layer;
    // the image has none of those masks (the bake node had them: GENERALIZE removed them).
    let dir = lct_api::local::GENERATORS_DIR;
    let masks =
        env.ssh("pl-1", &format!("cd /{dir} && readlink systemd-gpt-auto-generator systemd-debug-generator; ls")).ok();
    assert!(masks.stdout.starts_with("/dev/null\n/dev/null\n"), "{}", masks.stdout);
    let lower = std::fs::read_to_string(env.state.path().join("local/machines/pl-1/lower")).unwrap();
    let in_image = Path::new(lower.trim()).join(dir);
    assert!(Path::new(lower.trim()).join("etc/systemd").is_dir(), "the image's root is not at {lower}");
    for name in lct_api::local::CONTAINER_GENERATOR_MASKS {
        assert!(masks.stdout.lines().any(|l| l == name), "{name} not masked on the node: {}", masks.stdout);
        assert!(std::fs::symlink_metadata(in_image.join(name)).is_err(), "the image keeps lct's mask of {name}");
    }
    eprintln!("create --bake of a plain plan: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
#[ignore = "needs root: the local cloud's lab"]
fn bad_images_are_refused_before_any_node() {
    let env = Env::new();
    let images = Images::new();
    let dir = env.state.path().join("plans-here");
    let plan = baked_plan(&dir.join("zk"), "packages: [zookeeperd]");
    // `image: baked` with no bake.
    let out = run(&env, &images, "lct-plan", &["create", "zk", &plan]);
    assert_ne!(out.status, 0);
    assert!(out.stderr.contains("groups.server.image: baked, but cluster zk has no bake"), "{}", out.stderr);
    // A repository entry that is not there.
    let repo = env.state.path().join("repo");
    run(&env, &images, "lct-image", &["repo", "init", &repo.display().to_string()]).ok();
    let text = std::fs::read_to_string(&plan)
        .unwrap()
        .replace("image: baked", &format!("image: {}::zk-missing", repo.display()));
    std::fs::write(&plan, text).unwrap();
    let out = run(&env, &images, "lct-plan", &["create", "zk", &plan]);
    assert_ne!(out.status, 0);
    assert!(out.stderr.contains("groups.server.image") && out.stderr.contains("zk-missing"), "{}", out.stderr);
    // `create --bake` of a plan with no `image: baked` group.
    let out = run(&env, &images, "lct-plan", &["create", "zk", &plan, "--bake"]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("--bake: no group of") && out.stderr.contains("image: baked"), "{}", out.stderr);
    // Nothing was made, nothing written for the cluster.
    let nodes = run(&env, &images, "lct-api", &["list", "-o", "jsonl"]).ok();
    assert!(nodes.json_lines().is_empty(), "{}", nodes.stdout);
    assert!(!env.state.path().join("plans/zk").exists());
}
