//! An lct-image repository on a node's volume (`ssh://NODE/PATH`), on machine nodes: an
//! ext4 volume of another node added to it, listed, shown, verified, exported, and restored
//! onto a third node's volume node to node (e2fsck clean, files identical, the controller
//! carrying a small fraction of the image); hostile names, a node not in the inventory and
//! a corrupt extent on the node refused, naming what is wrong.

use std::process::Command;

use lct_tests::Env;

fn s(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_string()
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-ec", script]).output().unwrap();
    assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Unmounts on the way out, whatever happened.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The bytes lct-image says went through this machine to and from nodes.
fn traffic(stderr: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().find(|l| l.contains("bytes to and from nodes")).unwrap_or_else(|| panic!("{text}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[ignore = "needs root: machine nodes, loop devices, mkfs.ext4, mount and e2fsck"]
fn a_repository_on_a_nodes_volume_takes_images_and_restores_them_node_to_node() {
    let env = Env::new();
    let dir = env.state.path();
    env.run("lct-api", &["create", "--cluster", "nr", "--count", "3", "--image", "debian-12"]).ok();
    let nodes = env.run("lct-inventory", &["query", "--cluster", "nr", "-o", "jsonl"]).ok().json_lines();
    let names: Vec<String> = nodes.iter().map(|n| n["name"].as_str().unwrap().to_string()).collect();
    let (store, source, target) = (&names[0], &names[1], &names[2]);
    let volume = |label: &str, size: &str, node: &str| {
        let made =
            env.run("lct-api", &["volume", "create", label, "--size", size, "--attach", node, "-o", "jsonl"]).ok();
        made.json_lines()[0]["path"].as_str().unwrap().to_string()
    };
    let (store_dev, src_dev, dst_dev) =
        (volume("store", "256M", store), volume("src", "64M", source), volume("dst", "64M", target));
    // The store node's volume, ext4, mounted on it at /srv/images.
    sh(&format!("mkfs.ext4 -q -F {store_dev}"));
    let on = |node: &str, script: &str| {
        env.run("lct-inventory", &["exec", node, "-o", "jsonl", "--", "sh", "-ec", script]).ok().json_lines()[0]
            ["stdout"]
            .as_str()
            .unwrap()
            .to_string()
    };
    on(store, "mkdir -p /srv/images && mount /dev/disk/by-id/scsi-0Linode_Volume_store /srv/images");
    // Real files on the source node's volume; stale bytes on the target's.
    let mnt = dir.join("mnt");
    let _unmount = Unmount(mnt.clone());
    sh(&format!(
        "mkfs.ext4 -q -F {src_dev} && mkdir -p {m} && mount {src_dev} {m} && cp -r {root}/../crates {m}/ && head -c 8M /dev/urandom > {m}/random.bin && \
         (cd {m} && find . -type f -exec sha256sum {{}} + | sort -k2 > {d}/files.sha) && umount {m}",
        m = mnt.display(),
        d = dir.display(),
        root = env!("CARGO_MANIFEST_DIR")
    ));
    sh(&format!("tr '\\0' '\\132' < /dev/zero | head -c 64M > {dst_dev}"));

    let repo = format!("ssh://{store}/srv/images/repo");
    env.run("lct-image", &["repo", "init", &repo]).ok();
    let added = env.run("lct-image", &["repo", "add", &repo, "volume:src", "--name", "src", "-o", "jsonl"]).ok();
    let added = &added.json_lines()[0];
    assert_eq!(added["repo"], repo.as_str());
    assert!(added["new_extents"].as_u64().unwrap() > 0, "{added}");
    // The files are on the node's volume (ext4's lost+found beside the repository).
    assert!(on(store, "ls /srv/images/repo/images").contains("src"));
    // The same image again: the node holds every extent, none is sent.
    let again = env.run("lct-image", &["repo", "add", &repo, "volume:src", "--name", "src-2", "-o", "jsonl"]).ok();
    assert_eq!(again.json_lines()[0]["new_extents"], 0);

    let list = env.run("lct-image", &["repo", "list", &repo, "-o", "jsonl"]).ok().json_lines();
    let listed: Vec<&str> = list.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(listed, ["src", "src-2"]);
    let shown = env.run("lct-image", &["repo", "show", &repo, "src", "-o", "jsonl"]).ok().json_lines();
    let image_bytes = shown[0]["image_bytes"].as_u64().unwrap();
    assert_eq!(shown[0]["size"], 64 << 20);
    env.run("lct-image", &["repo", "verify", &repo, "src"]).ok();
    env.run("lct-image", &["repo", "rm", &repo, "src-2"]).ok();
    // src-2 was all src's extents: nothing to prune.
    let pruned = env.run("lct-image", &["repo", "prune", &repo, "-o", "jsonl"]).ok().json_lines();
    assert_eq!((pruned[0]["repo"].as_str(), pruned[0]["removed_extents"].as_u64()), (Some(repo.as_str()), Some(0)));
    let exported = dir.join("src.lcti");
    env.run("lct-image", &["repo", "export", &repo, "src", &s(&exported)]).ok();
    env.run("lct-image", &["verify", &s(&exported)]).ok();
    let info = env.run("lct-image", &["info", &s(&exported)]).ok();
    assert!(info.stdout.contains(shown[0]["root"].as_str().unwrap()), "{}", info.stdout);
    // Onto a file here, streamed from the node, and checked against the export.
    let here = dir.join("here.raw");
    env.run("lct-image", &["restore", &format!("{repo}::src"), &s(&here)]).ok();
    env.run("lct-image", &["verify", &s(&exported), &s(&here)]).ok();
    std::fs::remove_file(&here).unwrap();

    // Onto the third node's volume, from the store node to it directly: the first time with
    // lct-image put on that node (counted), then again with it there.
    let spec = format!("{repo}::src");
    let restore = || {
        let restored = env
            .command("lct-image", &["restore", &spec, "volume:dst", "-o", "jsonl"])
            .env("LCT_IMAGE_ON_NODE", "1")
            .output()
            .unwrap();
        assert!(restored.status.success(), "{}", String::from_utf8_lossy(&restored.stderr));
        traffic(&restored.stderr)
    };
    let first = restore();
    sh(&format!("tr '\\0' '\\132' < /dev/zero | head -c 64M > {dst_dev}"));
    let carried = restore();
    eprintln!(
        "controller traffic: {carried} bytes for an image of {image_bytes} bytes ({first} with lct-image installed)"
    );
    assert!(carried * 10 < image_bytes, "{carried} bytes through the controller for {image_bytes}");
    sh(&format!("e2fsck -fn {dst_dev} >/dev/null"));
    sh(&format!(
        "mount -o ro {dst_dev} {m} && (cd {m} && sha256sum -c --quiet {d}/files.sha) && umount {m}",
        m = mnt.display(),
        d = dir.display()
    ));
    env.run("lct-image", &["verify", &s(&exported), &dst_dev]).ok();
    // The one-time key is gone from both nodes.
    assert_eq!(on(store, "grep -c lct-relay ~/.ssh/authorized_keys || true").trim(), "0");
    assert_eq!(on(target, "ls -d /run/lct-relay.* 2>/dev/null | wc -l").trim(), "0");

    // Attacker's inputs: refused before anything runs on a node, and nothing runs.
    let refused = |args: &[&str], says: &str| {
        let out = env.command("lct-image", args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{args:?}: {stderr}");
    };
    let pwn = "/tmp/pwned-node-repo";
    let hostile_path = format!("ssh://{store}/srv/$(touch {pwn})");
    refused(&["repo", "list", &hostile_path], "not a repository on a node");
    refused(&["repo", "list", &format!("ssh://{store}/srv/images;touch {pwn}")], "not a repository on a node");
    refused(&["repo", "list", &format!("ssh://{store}/srv/'images'\ntouch {pwn}")], "not a repository on a node");
    refused(&["repo", "list", &format!("ssh://root@{store}/srv/images")], "not a repository on a node");
    refused(&["repo", "list", &format!("ssh://{store}/srv/../etc")], "not a repository on a node");
    refused(&["repo", "show", &repo, "../images/src"], "not an image name");
    refused(&["repo", "show", &repo, &format!("$(touch {pwn})")], "not an image name");
    refused(&["restore", &format!("{repo}::a;touch {pwn}"), &s(&dir.join("x.raw"))], "not an image name");
    refused(&["repo", "list", "ssh://no-such-node-9/srv/images"], "not in the inventory");
    assert!(!std::path::Path::new(pwn).exists());
    assert_eq!(on(store, &format!("ls {pwn} 2>/dev/null | wc -l")).trim(), "0");

    // A corrupt extent on the node: verify and restore fail, naming it.
    let extent = on(store, "find /srv/images/repo/extents -type f | sort | head -1");
    let extent = extent.trim();
    on(store, &format!("printf 'XXXX' | dd of={extent} bs=1 seek=40 conv=notrunc 2>/dev/null"));
    refused(&["repo", "verify", &repo, "src"], "damaged");
    let raw = dir.join("back.raw");
    let out = env.command("lct-image", &["restore", &spec, &s(&raw)]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("is damaged"), "{stderr}");
    on(store, "umount /srv/images");
}
