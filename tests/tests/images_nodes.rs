//! Machines from lct images on the local cloud (issue 22): a machine captured into a
//! repository, nodes made from `REPO::NAME` (each its own machine id, host key and name),
//! and images that must be refused before any node is made.

use std::path::{Path, PathBuf};
use std::process::Command;

use lct_tests::{Env, Run};

fn sh(program: &str, args: &[&str]) -> Run {
    Run::from(Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}")))
}

/// A small ext4 disk holding `files` (relative path, contents) and `links` (relative path,
/// target), added to `repo` as `name`.
fn crafted(env: &Env, repo: &Path, name: &str, files: &[(&str, &[u8])], links: &[(&str, &str)]) {
    let dir = env.state.path().join(format!("craft-{name}"));
    for (rel, bytes) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    for (rel, target) in links {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, &path).unwrap();
    }
    let disk = env.state.path().join(format!("{name}.raw"));
    sh("mkfs.ext4", &["-q", "-F", "-d", dir.to_str().unwrap(), disk.to_str().unwrap(), "16M"]).ok();
    env.run("lct-image", &["repo", "add", repo.to_str().unwrap(), disk.to_str().unwrap(), "--name", name]).ok();
}

/// Nothing of the lab was made: no node, no namespace.
fn nothing_made(env: &Env) {
    let listed = env.run("lct-api", &["list", "-o", "jsonl"]);
    assert!(listed.json_lines().is_empty(), "nodes made: {}", listed.stdout);
    assert!(env.namespaces().is_empty(), "namespaces made: {:?}", env.namespaces());
}

fn refused(env: &Env, image: &str, says: &str) {
    let out = env.run("lct-api", &["create", "--cluster", "bad", "--count", "1", "--image", image]);
    assert_ne!(out.status, 0, "{image}: {}", out.stdout);
    assert!(out.stderr.contains(says), "{image}: wanted {says:?} in: {}", out.stderr);
    nothing_made(env);
}

#[test]
#[ignore = "needs root: network namespaces, overlays, loop devices and systemd-nspawn"]
fn a_captured_machine_makes_nodes_each_its_own_machine() {
    let env = Env::new();
    let started = std::time::Instant::now();
    env.run("lct-api", &["lab", "packages", "add", "htop"]).ok();
    env.run("lct-api", &["create", "--cluster", "src", "--count", "1", "--image", "debian-12"]).ok();
    let marker = "lct-golden-marker";
    env.ssh(
        "src-1",
        &format!(
            "apt-get update -q >/dev/null && apt-get install -y -q htop >/dev/null && echo {marker} > /etc/lct-marker"
        ),
    )
    .ok();
    let disk = env.run("lct-api", &["lab", "capture", "src-1"]).ok().stdout.trim().to_string();
    assert!(sh("e2fsck", &["-fn", &disk]).status == 0, "the capture is a clean ext4 disk");
    let repo = env.state.path().join("repo");
    env.run("lct-image", &["repo", "init", repo.to_str().unwrap()]).ok();
    env.run("lct-image", &["repo", "add", repo.to_str().unwrap(), &disk, "--name", "golden"]).ok();
    env.run("lct-api", &["lab", "capture", "src-1", "--release"]).ok();
    assert!(!Path::new(&disk).exists(), "release removes the capture's disk");
    env.run("lct-api", &["delete", "src-1"]).ok();
    eprintln!("captured in {:.1} s", started.elapsed().as_secs_f64());

    let image = format!("{}::golden", repo.display());
    let t = std::time::Instant::now();
    let created = env.run("lct-api", &["create", "--cluster", "g", "--count", "2", "--image", &image, "-o", "jsonl"]);
    let nodes = created.ok().json_lines();
    eprintln!("2 nodes from the image in {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(nodes.len(), 2);
    let mut seen = Vec::new();
    for n in &nodes {
        let name = n["name"].as_str().unwrap();
        assert_eq!(n["status"], "running", "{n}");
        // The pinned host key lct made for this node answers (Env::ssh checks it strictly).
        let out = env
            .ssh(
                name,
                "cat /etc/lct-marker; dpkg-query -W -f='${Status}\\n' htop; hostname; cat /etc/machine-id; \
                 awk 1 /etc/ssh/ssh_host_ed25519_key.pub; ls /etc/ssh | grep -c ssh_host_; \
                 grep -c 'native first boot' /run/cloud-init/result.json; nft list table inet lct | grep -c 'root only'",
            )
            .ok();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.len(), 8, "{name}: {}", out.stdout);
        assert_eq!(lines[0], marker, "{name}: {}", out.stdout);
        assert_eq!(lines[1], "install ok installed", "{name}: {}", out.stdout);
        assert_eq!(lines[2], name);
        assert_eq!(lines[5], "2", "{name}: only lct's host key pair: {}", out.stdout);
        // No user-data: booted without cloud-init, the metadata service guarded all the same.
        assert_eq!(lines[6], "1", "{name}: a native first boot: {}", out.stdout);
        assert_eq!(lines[7], "2", "{name}: the metadata guard's v4 and v6 rules: {}", out.stdout);
        seen.push((lines[3].to_string(), lines[4].to_string()));
    }
    assert_ne!(seen[0].0, seen[1].0, "machine ids differ");
    assert_ne!(seen[0].1, seen[1].1, "host keys differ");
    // With user-data of its own, a machine from the same image boots with cloud-init.
    let user_data = env.state.path().join("user-data");
    std::fs::write(&user_data, "#!/bin/sh\necho ran > /etc/lct-user-data-ran\n").unwrap();
    let args = ["create", "--cluster", "u", "--count", "1", "--image", &image, "--user-data"];
    env.run("lct-api", &[&args[..], &[user_data.to_str().unwrap()]].concat()).ok();
    let out = env.ssh("u-1", "cat /etc/lct-user-data-ran; grep -c NoCloud /run/cloud-init/result.json").ok();
    assert_eq!(out.stdout, "ran\n1\n", "cloud-init ran the user-data");
    // One content, restored once: its directory is named by the image's root hash.
    let verified = env.run("lct-image", &["-o", "jsonl", "verify", &image]).ok().json_lines();
    let root = verified[0]["root"].as_str().unwrap().to_string();
    let golden = PathBuf::from(lct_tests::image_dir()).join("lct").join(&root);
    assert!(golden.join("root/etc/lct-marker").is_file() && golden.join("ready").is_file());
    // No loop device of the restore or the capture stays.
    let loops = sh("losetup", &["-a"]).stdout;
    assert!(!loops.contains(env.state.path().to_str().unwrap()) && !loops.contains(&root), "{loops}");
    env.run("lct-api", &["lab", "down"]).ok();
    let _ = std::fs::remove_dir_all(&golden);
}

#[test]
#[ignore = "needs root: loop devices and network namespaces"]
fn bad_images_are_refused_before_any_node_is_made() {
    let env = Env::new();
    let repo = env.state.path().join("repo");
    env.run("lct-image", &["repo", "init", repo.to_str().unwrap()]).ok();
    let r = repo.display();

    refused(&env, &format!("{r}::missing"), "no image missing");

    // Another architecture: dpkg says arm64 and /usr/bin/env is an aarch64 program.
    let mut aarch64 = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0".to_vec();
    aarch64.extend([183, 0, 1, 0, 0, 0]);
    crafted(&env, &repo, "arm", &[("var/lib/dpkg/arch", b"arm64\n"), ("usr/bin/env", &aarch64)], &[]);
    refused(&env, &format!("{r}::arm"), "made for arm64");

    // A corrupt extent in the repository (one of its own): named, nothing restored.
    let repo2 = env.state.path().join("repo2");
    env.run("lct-image", &["repo", "init", repo2.to_str().unwrap()]).ok();
    crafted(&env, &repo2, "corrupt", &[("var/lib/dpkg/arch", b"amd64\n"), ("etc/big", &[7u8; 300_000])], &[]);
    let extents: Vec<PathBuf> = walk(&repo2.join("extents"));
    assert!(!extents.is_empty());
    for e in &extents {
        let mut bytes = std::fs::read(e).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(e, bytes).unwrap();
    }
    refused(&env, &format!("{}::corrupt", repo2.display()), "extent");

    // The attacker's image: links out of the machine's root where lct writes first-boot
    // files. The host's files stay as they were.
    let host = env.state.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("ssh_host_rsa_key"), "host's own").unwrap();
    std::fs::write(host.join("hostname"), "host's own").unwrap();
    let env_bin = std::fs::read("/usr/bin/env").unwrap();
    let h = host.display().to_string();
    crafted(
        &env,
        &repo,
        "hostile",
        &[("var/lib/dpkg/arch", b"amd64\n"), ("usr/bin/env", &env_bin)],
        &[("etc/hostname", &format!("{h}/hostname")), ("etc/ssh", &h)],
    );
    refused(&env, &format!("{r}::hostile"), "symbolic link at /etc/ssh");
    assert_eq!(std::fs::read_to_string(host.join("ssh_host_rsa_key")).unwrap(), "host's own");
    assert_eq!(std::fs::read_to_string(host.join("hostname")).unwrap(), "host's own");
    assert_eq!(std::fs::read_dir(&host).unwrap().count(), 2, "nothing written into the host's directory");

    // Too small a disk: the image's disk (16 MiB) against a node's of 8 MiB, through the
    // provider (lct-plan passes a group's disk size).
    let cloud = lct_api::local::LocalCloud::new(env.state.path(), Some(env.lab.clone()));
    let arm = format!("{r}::arm");
    let e = lct_core::cli::block_on(async {
        use lct_api::Provider;
        Ok(cloud.prepare_image(&arm, Some(8)).await?)
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("16 MiB") && e.contains("8 MiB"), "{e}");
    nothing_made(&env);
    // Nothing of a refused image stays in the image directory.
    for name in ["arm", "hostile"] {
        let v = env.run("lct-image", &["-o", "jsonl", "verify", &format!("{r}::{name}")]).ok().json_lines();
        let dir = PathBuf::from(lct_tests::image_dir()).join("lct").join(v[0]["root"].as_str().unwrap());
        assert!(!dir.exists(), "{} stayed", dir.display());
    }
}

/// Where a `LocalCloud` of this process restores the content `image` names now (by its
/// root hash): this process's LCT_IMAGE_DIR, else the state directory's (Env gives its own
/// to the programs it runs, not to this process).
fn restored_dir(env: &Env, image: &str) -> PathBuf {
    let v = env.run("lct-image", &["-o", "jsonl", "verify", image]).ok().json_lines();
    let images = std::env::var_os("LCT_IMAGE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| env.state.path().join("local/images"));
    images.join("lct").join(v[0]["root"].as_str().unwrap())
}

#[test]
#[ignore = "needs root: loop devices"]
fn an_image_is_checked_once_and_a_name_whose_content_changed_is_restored_anew() {
    let env = Env::new();
    let repo = env.state.path().join("repo");
    let r = repo.display().to_string();
    let image = format!("{r}::one");
    let env_bin = std::fs::read("/usr/bin/env").unwrap();
    let debian = |version: &'static [u8]| -> Vec<(&'static str, Vec<u8>)> {
        vec![("var/lib/dpkg/arch", b"amd64\n".to_vec()), ("usr/bin/env", env_bin.clone()), ("etc/v", version.to_vec())]
    };
    let make = |files: Vec<(&'static str, Vec<u8>)>| {
        let _ = std::fs::remove_dir_all(&repo);
        let _ = std::fs::remove_dir_all(env.state.path().join("craft-one"));
        env.run("lct-image", &["repo", "init", &r]).ok();
        let files: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (*p, b.as_slice())).collect();
        crafted(&env, &repo, "one", &files, &[]);
    };
    let cloud = lct_api::local::LocalCloud::new(env.state.path(), Some(env.lab.clone()));
    let prepare = || {
        lct_core::cli::block_on(async {
            use lct_api::Provider;
            Ok(cloud.prepare_image(&image, None).await?)
        })
    };

    make(debian(b"1"));
    let first = restored_dir(&env, &image);
    prepare().unwrap();
    assert_eq!(std::fs::read(first.join("root/etc/v")).unwrap(), b"1");

    // The repository's copy damaged after the restore: the content the name stands for is
    // the restored root, checked when it was restored; it is used without reading the image
    // again (the damage is real: verify finds it).
    for e in walk(&repo.join("extents")) {
        let mut bytes = std::fs::read(&e).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&e, bytes).unwrap();
    }
    let v = env.run("lct-image", &["verify", &image]);
    assert_ne!(v.status, 0, "the damaged entry verifies: {}", v.stdout);
    prepare().expect("the restored root is used");

    // Another content under the same name: another root hash, checked and restored anew.
    make(debian(b"2"));
    let second = restored_dir(&env, &image);
    assert_ne!(first, second);
    assert!(!second.exists());
    prepare().unwrap();
    assert_eq!(std::fs::read(second.join("root/etc/v")).unwrap(), b"2");
    assert_eq!(std::fs::read(first.join("root/etc/v")).unwrap(), b"1", "the first content stays what it was");

    // And a new content that is damaged is refused (it was never checked), nothing restored.
    make(debian(b"3"));
    let third = restored_dir(&env, &image);
    for e in walk(&repo.join("extents")) {
        let mut bytes = std::fs::read(&e).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&e, bytes).unwrap();
    }
    let e = prepare().unwrap_err().to_string();
    assert!(e.contains("extent"), "{e}");
    assert!(!third.exists(), "{} restored", third.display());
    for dir in [first, second] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
