//! lct-image against real tools: plain `zstd -d` restores the raw disk; a restore onto a
//! dirty target is byte-identical (zero extents made zero); a flipped byte anywhere is found
//! and named; a truncated image is a clear error; a restore stopped half-way is finished by
//! `--skip-matching`; on a loop device, an ext4 file system imaged and restored passes
//! `e2fsck -fn` with every file identical.

use std::process::Command;

use lct_tests::Env;

/// A path as the command line takes it.
fn s(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A sparse disk file: random data in some extents, explicit zeros in one, holes elsewhere,
/// and a short tail (its size is not a multiple of the extent size).
fn disk(path: &std::path::Path) -> Vec<u8> {
    use std::io::{Seek, SeekFrom, Write};
    const MIB: u64 = 1 << 20;
    let size = 21 * MIB + 12345;
    let mut f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Compressible, but not trivially: a few hundred distinct patterns.
                (seed % 251) as u8 & 0x3f
            })
            .collect()
    };
    for (at, len) in [(0, MIB), (5 * MIB, 3 * MIB + 7), (12 * MIB, MIB / 2), (21 * MIB, 12345)] {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&random(len as usize)).unwrap();
    }
    // Written zeros (not a hole): still a zero extent.
    f.seek(SeekFrom::Start(16 * MIB)).unwrap();
    f.write_all(&vec![0u8; 4 * MIB as usize]).unwrap();
    drop(f);
    std::fs::read(path).unwrap()
}

#[test]
fn images_round_trip_through_zstd_and_restore_and_damage_is_named() {
    let env = Env::new();
    let dir = env.state.path();
    let (raw, image) = (dir.join("disk.raw"), dir.join("disk.lcti"));
    let bytes = disk(&raw);
    let made = env.run("lct-image", &["create", raw.to_str().unwrap(), image.to_str().unwrap(), "-o", "jsonl"]).ok();
    let report = &made.json_lines()[0];
    assert_eq!(report["kind"], "image-created");
    assert_eq!(report["size"], bytes.len());
    assert_eq!(report["extents"], 6);
    assert_eq!(report["zero_extents"], 1, "{report}");
    assert!(!dir.join("disk.lcti.partial").exists());
    // Without a terminal, progress is JSON lines on stderr.
    let progress: serde_json::Value = serde_json::from_str(made.stderr.lines().next().unwrap()).unwrap();
    assert_eq!((progress["kind"].as_str(), progress["step"].as_str()), (Some("image-progress"), Some("imaging")));

    // Plain zstd restores the raw disk exactly (the index and seek table are skippable frames).
    let out = Command::new("zstd").args(["-dc", "-q", image.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == bytes, "zstd -d gave {} bytes, not the disk's {}", out.stdout.len(), bytes.len());

    // A restore onto a dirty target: byte-identical, stale bytes gone from zero extents.
    let target = dir.join("target.raw");
    std::fs::write(&target, vec![0xa5u8; bytes.len() + 4096]).unwrap();
    env.run("lct-image", &["restore", image.to_str().unwrap(), target.to_str().unwrap()]).ok();
    assert!(std::fs::read(&target).unwrap() == bytes, "the restored disk differs");
    env.run("lct-image", &["verify", image.to_str().unwrap(), target.to_str().unwrap()]).ok();

    // Stopped half-way (here: the target's second half spoiled), finished by --skip-matching,
    // which writes only what differs.
    let mut spoiled = bytes.clone();
    for b in &mut spoiled[bytes.len() / 2..] {
        *b = 0x5a;
    }
    std::fs::write(&target, &spoiled).unwrap();
    let differs = env.run("lct-image", &["verify", image.to_str().unwrap(), target.to_str().unwrap()]);
    assert_eq!(differs.status, 1);
    assert!(differs.stderr.contains("extent 2 (bytes 8388608..12582912) differs from the image"), "{}", differs.stderr);
    let resumed = env
        .run(
            "lct-image",
            &["restore", image.to_str().unwrap(), target.to_str().unwrap(), "--skip-matching", "-o", "jsonl"],
        )
        .ok();
    assert_eq!(resumed.json_lines()[0]["skipped"], 2, "{}", resumed.stdout);
    assert!(std::fs::read(&target).unwrap() == bytes);

    // A flipped byte in the second data frame: verify names the extent, restore refuses it.
    let index: Vec<serde_json::Value> = made.json_lines();
    assert_eq!(index[0]["data_extents"], 5);
    let mut damaged = std::fs::read(&image).unwrap();
    let info = env.run("lct-image", &["info", image.to_str().unwrap()]).ok().stdout;
    assert!(info.contains("\"size\": 22032441") && info.contains("6 extents (5 data, 1 zero)"), "{info}");
    // The first frame's size is in the seek table; flip a byte well inside the second frame.
    let seek_entries = damaged.len() - 9 - 7 * 8;
    let first = u32::from_le_bytes(damaged[seek_entries..seek_entries + 4].try_into().unwrap()) as usize;
    damaged[first + 40] ^= 0x01;
    let bad = dir.join("bad.lcti");
    std::fs::write(&bad, &damaged).unwrap();
    let out = env.run("lct-image", &["verify", bad.to_str().unwrap()]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("extent 1 (bytes 4194304..8388608) is damaged"), "{}", out.stderr);
    let out = env.run("lct-image", &["restore", bad.to_str().unwrap(), dir.join("t2").to_str().unwrap()]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("extent 1 (bytes 4194304..8388608) is damaged"), "{}", out.stderr);

    // Something else on `restore -`: named, no target made.
    let out = env.run_with_input("lct-image", &["restore", "-", dir.join("t4").to_str().unwrap()], "garbage\n");
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("not an image as lct-image send writes it"), "{}", out.stderr);
    assert!(!dir.join("t4").exists());

    // A truncated image is a clear error, never a short disk.
    let short = dir.join("short.lcti");
    std::fs::write(&short, &std::fs::read(&image).unwrap()[..1_000_000]).unwrap();
    let out = env.run("lct-image", &["restore", short.to_str().unwrap(), dir.join("t3").to_str().unwrap()]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("not an lct image, or a truncated one"), "{}", out.stderr);
    assert!(!dir.join("t3").exists(), "a truncated image made a target");
}

#[test]
#[ignore = "needs root: loop devices, mkfs.ext4, mount and e2fsck"]
fn an_ext4_file_system_imaged_and_restored_onto_a_dirty_loop_device_is_identical() {
    let env = Env::new();
    let dir = env.state.path();
    let sh = lct_tests::fixtures::host_sh;
    let d = dir.display();
    // A file system with real files (this tree's sources), on a loop device.
    let source =
        sh(&format!("truncate -s 96M {d}/src.img && mkfs.ext4 -q -F {d}/src.img && losetup --find --show {d}/src.img"));
    let target = sh(&format!("truncate -s 96M {d}/dst.img && losetup --find --show {d}/dst.img"));
    let _guard = LoopGuard(vec![source.clone(), target.clone()], dir.join("mnt"));
    sh(&format!(
        "mkdir -p {d}/mnt && mount {source} {d}/mnt && cp -r {root}/../crates {d}/mnt/ && \
         (cd {d}/mnt && find . -type f -exec sha256sum {{}} + | sort -k2 > {d}/files.sha) && umount {d}/mnt",
        root = env!("CARGO_MANIFEST_DIR")
    ));
    // The target is dirty: stale bytes everywhere.
    sh(&format!("tr '\\0' '\\132' < /dev/zero | head -c 96M > {target}"));
    // Mounted read-write, the source is refused.
    sh(&format!("mount {source} {d}/mnt"));
    let refused = env.run("lct-image", &["create", &source, dir.join("fs.lcti").to_str().unwrap()]);
    assert_eq!(refused.status, 1);
    assert!(refused.stderr.contains("is mounted read-write"), "{}", refused.stderr);
    sh(&format!("umount {d}/mnt"));
    env.run("lct-image", &["create", &source, dir.join("fs.lcti").to_str().unwrap()]).ok();
    env.run("lct-image", &["restore", dir.join("fs.lcti").to_str().unwrap(), &target]).ok();
    sh(&format!("e2fsck -fn {target} >/dev/null"));
    sh(&format!(
        "mount -o ro {target} {d}/mnt && (cd {d}/mnt && sha256sum -c --quiet {d}/files.sha) && umount {d}/mnt"
    ));
    assert_eq!(sh(&format!("cmp {source} {target} && echo same")), "same");
}

/// Detaches the loop devices and unmounts on the way out, whatever happened.
struct LoopGuard(Vec<String>, std::path::PathBuf);

impl Drop for LoopGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.1).status();
        for dev in &self.0 {
            let _ = Command::new("losetup").args(["-d", dev]).status();
        }
    }
}

/// The bytes of every stored extent in a repository.
fn stored_bytes(repo: &std::path::Path) -> u64 {
    let mut total = 0;
    for dir in std::fs::read_dir(repo.join("extents")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            total += f.unwrap().metadata().unwrap().len();
        }
    }
    total
}

#[test]
fn a_repository_stores_shared_extents_once_and_restores_what_it_holds() {
    let env = Env::new();
    let dir = env.state.path();
    let (raw, image, repo) = (dir.join("disk.raw"), dir.join("disk.lcti"), dir.join("repo"));
    let bytes = disk(&raw);
    env.run("lct-image", &["create", &s(&raw), &s(&image)]).ok();
    env.run("lct-image", &["repo", "init", &s(&repo)]).ok();
    let first = env.run("lct-image", &["repo", "add", &s(&repo), &s(&image), "--name", "base", "-o", "jsonl"]).ok();
    assert_eq!(first.json_lines()[0]["new_extents"], 5, "{}", first.stdout);
    let after_first = stored_bytes(&repo);

    // A second disk that differs in one extent, added straight from the disk file: only
    // that extent is stored.
    let mut changed = bytes.clone();
    changed[5 << 20..(5 << 20) + 4096].copy_from_slice(&[0x77u8; 4096]);
    let raw2 = dir.join("disk2.raw");
    std::fs::write(&raw2, &changed).unwrap();
    let second = env.run("lct-image", &["repo", "add", &s(&repo), &s(&raw2), "--name", "web-1", "-o", "jsonl"]).ok();
    let added = &second.json_lines()[0];
    assert_eq!((added["data_extents"].as_u64(), added["new_extents"].as_u64()), (Some(5), Some(1)), "{added}");
    let grown = stored_bytes(&repo) - after_first;
    assert_eq!(grown, added["new_bytes"].as_u64().unwrap(), "the store grew by the new extent only");
    assert!(grown < after_first, "one changed extent of five: {grown} bytes against {after_first}");
    assert!(std::fs::read_dir(repo.join("tmp")).unwrap().next().is_none(), "nothing left in tmp/");

    // A name is taken once; list shows both.
    let again = env.run("lct-image", &["repo", "add", &s(&repo), &s(&image), "--name", "base"]);
    assert_eq!(again.status, 1);
    assert!(again.stderr.contains("there is already an image base"), "{}", again.stderr);
    let list = env.run("lct-image", &["repo", "list", &s(&repo), "-o", "jsonl"]).ok().json_lines();
    let names: Vec<&str> = list.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["base", "web-1"]);

    // REPO::NAME restores (onto a dirty target) and verifies like an image file; an export
    // is a standalone image that plain zstd reads.
    let target = dir.join("target.raw");
    std::fs::write(&target, vec![0xa5u8; bytes.len()]).unwrap();
    let spec = format!("{}::web-1", s(&repo));
    env.run("lct-image", &["restore", &spec, &s(&target)]).ok();
    assert!(std::fs::read(&target).unwrap() == changed, "the restored disk differs");
    env.run("lct-image", &["verify", &spec, &s(&target)]).ok();
    let exported = dir.join("web-1.lcti");
    env.run("lct-image", &["repo", "export", &s(&repo), "web-1", &s(&exported)]).ok();
    let out = Command::new("zstd").args(["-dc", "-q", &s(&exported)]).output().unwrap();
    assert!(out.stdout == changed, "zstd -d of the export is not the disk");

    // rm, then prune: base's extents stay while web-1 uses them; the one only base had goes.
    env.run("lct-image", &["repo", "rm", &s(&repo), "base"]).ok();
    let pruned = env.run("lct-image", &["repo", "prune", &s(&repo), "-o", "jsonl"]).ok().json_lines();
    assert_eq!((pruned[0]["removed_extents"].as_u64(), pruned[0]["kept_extents"].as_u64()), (Some(1), Some(5)));
    env.run("lct-image", &["repo", "verify", &s(&repo)]).ok();

    // A damaged stored extent is named.
    let extent = std::fs::read_dir(repo.join("extents"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .next()
        .unwrap();
    let mut frame = std::fs::read(&extent).unwrap();
    let at = frame.len() / 2;
    frame[at] ^= 0x01;
    std::fs::write(&extent, &frame).unwrap();
    let out = env.run("lct-image", &["repo", "verify", &s(&repo)]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("::web-1: extent") && out.stderr.contains("is damaged"), "{}", out.stderr);
}

#[test]
fn two_writers_add_to_one_repository_at_once() {
    let env = Env::new();
    let dir = env.state.path();
    let repo = dir.join("repo");
    env.run("lct-image", &["repo", "init", &s(&repo)]).ok();
    // Two disks sharing most extents, added at the same time, several times over.
    let raw = dir.join("a.raw");
    let bytes = disk(&raw);
    let mut other = bytes.clone();
    other[..4096].copy_from_slice(&[1u8; 4096]);
    std::fs::write(dir.join("b.raw"), &other).unwrap();
    for round in 0..3 {
        let children: Vec<_> = ["a", "b"]
            .iter()
            .map(|d| {
                env.command(
                    "lct-image",
                    &["repo", "add", &s(&repo), &s(&dir.join(format!("{d}.raw"))), "--name", &format!("{d}-{round}")],
                )
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
    }
    env.run("lct-image", &["repo", "verify", &s(&repo)]).ok();
    let list = env.run("lct-image", &["repo", "list", &s(&repo), "-o", "jsonl"]).ok().json_lines();
    assert_eq!(list.len(), 6);
    // Six images, six distinct data extents (five shared, one of b's own).
    let count: usize = std::fs::read_dir(repo.join("extents"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(count, 6);
}

#[test]
fn images_by_url_are_read_with_range_requests_and_resumed_after_a_drop() {
    let env = Env::new();
    let dir = env.state.path();
    let served = dir.join("served");
    std::fs::create_dir(&served).unwrap();
    let bytes = disk(&dir.join("disk.raw"));
    env.run("lct-image", &["create", &s(&dir.join("disk.raw")), &s(&served.join("disk.lcti"))]).ok();
    let http = lct_tests::HttpFiles::serve(&served);
    let url = http.url("disk.lcti");
    let target = dir.join("target.raw");

    // Plain HTTP only when asked for.
    let out = env.run("lct-image", &["restore", &url, &s(&target)]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("use HTTPS, or --allow-http"), "{}", out.stderr);

    // The frames' stream is cut 1.5 MB in: the restore starts again at the frame it was in.
    http.cut_next_after(1_500_000);
    let out = env.run("lct-image", &["--allow-http", "restore", &url, &s(&target)]).ok();
    assert!(out.stderr.contains("reading again from byte"), "no resume seen: {}", out.stderr);
    assert!(std::fs::read(&target).unwrap() == bytes, "the restored disk differs");
    env.run("lct-image", &["--allow-http", "verify", &url, &s(&target)]).ok();
    let info = env.run("lct-image", &["--allow-http", "info", &url]).ok().stdout;
    assert!(info.contains("6 extents (5 data, 1 zero)"), "{info}");

    // A repository adds it by URL too; the same again under another name reads no frame.
    let repo = dir.join("repo");
    env.run("lct-image", &["repo", "init", &s(&repo)]).ok();
    env.run("lct-image", &["--allow-http", "repo", "add", &s(&repo), &url, "--name", "one"]).ok();
    let before = http.requests();
    let again =
        env.run("lct-image", &["--allow-http", "repo", "add", &s(&repo), &url, "--name", "two", "-o", "jsonl"]).ok();
    assert_eq!(again.json_lines()[0]["new_extents"], 0);
    assert_eq!(http.requests() - before, 4, "only the size and the trailer were asked for");

    // A missing image, a truncated one: clear errors, no target made.
    let out = env.run("lct-image", &["--allow-http", "restore", &http.url("nothing.lcti"), &s(&dir.join("t2"))]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("404"), "{}", out.stderr);
    let whole = std::fs::read(served.join("disk.lcti")).unwrap();
    std::fs::write(served.join("short.lcti"), &whole[..whole.len() - 100]).unwrap();
    let out = env.run("lct-image", &["--allow-http", "restore", &http.url("short.lcti"), &s(&dir.join("t3"))]);
    assert_eq!(out.status, 1);
    assert!(!dir.join("t3").exists());
}

#[test]
fn qcow2_and_compressed_raw_disks_become_lct_images() {
    let env = Env::new();
    let dir = env.state.path();
    let raw = dir.join("disk.raw");
    let bytes = disk(&raw);
    let served = dir.join("served");
    std::fs::create_dir(&served).unwrap();
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).output().unwrap();
        assert!(out.status.success(), "{program}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    run("qemu-img", &["convert", "-f", "raw", "-O", "qcow2", "-c", &s(&raw), &s(&served.join("disk.qcow2"))]);
    std::fs::write(served.join("disk.raw.gz"), run("gzip", &["-c", &s(&raw)])).unwrap();
    std::fs::write(served.join("disk.raw.xz"), run("xz", &["-T1", "-0", "-c", &s(&raw)])).unwrap();
    std::fs::write(served.join("disk.raw.zst"), run("zstd", &["-q", "-c", &s(&raw)])).unwrap();
    let http = lct_tests::HttpFiles::serve(&served);
    let sources = [
        s(&served.join("disk.qcow2")),
        http.url("disk.qcow2"),
        s(&served.join("disk.raw.xz")),
        http.url("disk.raw.gz"),
        http.url("disk.raw.zst"),
        http.url("disk.raw.xz"),
    ];
    // qcow2's disk is qemu-img's raw of it (its size rounded up to whole sectors).
    let qemu_raw = dir.join("qemu.raw");
    run("qemu-img", &["convert", "-f", "qcow2", "-O", "raw", &s(&served.join("disk.qcow2")), &s(&qemu_raw)]);
    let qemu_bytes = std::fs::read(&qemu_raw).unwrap();
    assert_eq!(&qemu_bytes[..bytes.len()], &bytes[..]);
    for (i, source) in sources.iter().enumerate() {
        let want = if source.ends_with("qcow2") { &qemu_bytes } else { &bytes };
        let image = dir.join(format!("{i}.lcti"));
        let made = env.run("lct-image", &["--allow-http", "create", source, &s(&image), "-o", "jsonl"]).ok();
        assert_eq!(made.json_lines()[0]["size"], want.len(), "{source}");
        let target = dir.join(format!("{i}.raw"));
        env.run("lct-image", &["restore", &s(&image), &s(&target)]).ok();
        assert!(std::fs::read(&target).unwrap() == *want, "{source}: the restored disk differs");
        assert!(
            !std::fs::read_dir(dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains(".source."))
        );
    }
    // A damaged stream is an error, never a short disk.
    let gz = std::fs::read(served.join("disk.raw.gz")).unwrap();
    std::fs::write(served.join("short.gz"), &gz[..gz.len() / 2]).unwrap();
    let out = env.run("lct-image", &["--allow-http", "create", &http.url("short.gz"), &s(&dir.join("short.lcti"))]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("gzip -d failed"), "{}", out.stderr);
    assert!(!dir.join("short.lcti").exists() && !dir.join("short.lcti.partial").exists());
}

#[test]
#[ignore = "needs root: machine nodes, loop devices, mkfs.ext4, mount and e2fsck"]
fn a_nodes_volume_goes_into_the_repository_and_onto_another_nodes_volume_over_ssh() {
    let env = Env::new();
    let dir = env.state.path();
    let sh = lct_tests::fixtures::host_sh;
    env.run("lct-api", &["create", "--cluster", "img", "--count", "2", "--image", "debian-12"]).ok();
    let nodes = env.run("lct-inventory", &["query", "--cluster", "img", "-o", "jsonl"]).ok().json_lines();
    let names: Vec<String> = nodes.iter().map(|n| n["name"].as_str().unwrap().to_string()).collect();
    let src =
        env.run("lct-api", &["volume", "create", "src", "--size", "64M", "--attach", &names[0], "-o", "jsonl"]).ok();
    let dst =
        env.run("lct-api", &["volume", "create", "dst", "--size", "64M", "--attach", &names[1], "-o", "jsonl"]).ok();
    let src_dev = src.json_lines()[0]["path"].as_str().unwrap().to_string();
    let dst_dev = dst.json_lines()[0]["path"].as_str().unwrap().to_string();
    // An ext4 file system with real files on the first node's volume; stale bytes on the other.
    let mnt = dir.join("mnt");
    let _guard = LoopGuard(Vec::new(), mnt.clone());
    sh(&format!(
        "mkfs.ext4 -q -F {src_dev} && mkdir -p {m} && mount {src_dev} {m} && cp -r {root}/../crates {m}/ && \
         (cd {m} && find . -type f -exec sha256sum {{}} + | sort -k2 > {d}/files.sha) && umount {m}",
        m = mnt.display(),
        d = dir.display(),
        root = env!("CARGO_MANIFEST_DIR")
    ));
    sh(&format!("tr '\\0' '\\132' < /dev/zero | head -c 64M > {dst_dev}"));

    // Into the repository (the local cloud's loop device, read here), then onto the other
    // node's volume over SSH, restored on that node by the lct-image put there.
    let repo = dir.join("repo");
    env.run("lct-image", &["repo", "init", &s(&repo)]).ok();
    env.run("lct-image", &["repo", "add", &s(&repo), "volume:src", "--name", "src"]).ok();
    let spec = format!("{}::src", s(&repo));
    let restored = env
        .command("lct-image", &["restore", &spec, "volume:dst", "-o", "jsonl"])
        .env("LCT_IMAGE_ON_NODE", "1")
        .output()
        .unwrap();
    assert!(restored.status.success(), "{}", String::from_utf8_lossy(&restored.stderr));
    let which = env
        .run(
            "lct-inventory",
            &["exec", "--cluster", "img", "-o", "jsonl", "--", "sh", "-c", "command -v lct-image || true"],
        )
        .ok();
    let on = |name: &str| which.json_lines().into_iter().find(|l| l["node"] == name).unwrap()["stdout"].to_string();
    assert!(on(&names[1]).contains("/usr/local/bin/lct-image"), "lct-image was not put on the node");
    sh(&format!("e2fsck -fn {dst_dev} >/dev/null"));
    sh(&format!(
        "mount -o ro {dst_dev} {m} && (cd {m} && sha256sum -c --quiet {d}/files.sha) && umount {m}",
        m = mnt.display(),
        d = dir.display()
    ));
    assert_eq!(sh(&format!("cmp {src_dev} {dst_dev} && echo same")), "same");

    // And imaged on its node, back over SSH: the same disk.
    let back = dir.join("back.lcti");
    let imaged =
        env.command("lct-image", &["create", "volume:dst", &s(&back)]).env("LCT_IMAGE_ON_NODE", "1").output().unwrap();
    assert!(imaged.status.success(), "{}", String::from_utf8_lossy(&imaged.stderr));
    env.run("lct-image", &["verify", &s(&back), &src_dev]).ok();
}

#[test]
fn a_create_stopped_half_way_goes_on_from_its_checkpoint() {
    let env = Env::new();
    let dir = env.state.path();
    // 160 MiB (40 extents) of data that compresses slowly enough to stop the create part-way.
    let raw = dir.join("disk.raw");
    lct_tests::pseudo_random_file(&raw, 160 << 20, 0x2545_f491_4f6c_dd1d, 0x1f);
    let image = dir.join("disk.lcti");
    let partial = dir.join("disk.lcti.partial");
    let checkpoint = dir.join("disk.lcti.partial.ckpt");
    // Level 12 is slow enough: the create is killed once its checkpoint vouches for 16
    // extents (it checkpoints every 16).
    let mut child = env
        .command("lct-image", &["create", &s(&raw), &s(&image), "--level", "12"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let header =
        || std::fs::read(&checkpoint).ok().and_then(|b| b.iter().position(|c| *c == b'\n').map(|n| b.len() - n - 1));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while header().is_none_or(|entries| entries < 57 * 16) {
        assert!(std::time::Instant::now() < deadline, "no checkpoint");
        assert!(child.try_wait().unwrap().is_none(), "the create ended before it could be stopped");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(partial.exists() && !image.exists());

    // Run again (at the same level): it goes on from the checkpoint, and the image is the
    // one a create from scratch makes.
    let resumed = env.run("lct-image", &["create", &s(&raw), &s(&image), "--level", "12", "-o", "jsonl"]).ok();
    assert!(resumed.stderr.contains("going on from extent"), "{}", resumed.stderr);
    assert!(!partial.exists() && !checkpoint.exists());
    let whole = dir.join("whole.lcti");
    let fresh = env.run("lct-image", &["create", &s(&raw), &s(&whole), "--level", "12", "-o", "jsonl"]).ok();
    assert_eq!(resumed.json_lines()[0]["root"], fresh.json_lines()[0]["root"], "resumed and fresh images differ");
    let restored = dir.join("back.raw");
    env.run("lct-image", &["restore", &s(&image), &s(&restored)]).ok();
    assert!(std::fs::read(&restored).unwrap() == std::fs::read(&raw).unwrap());

    // A checkpoint of something else (another source, level or size) is not gone on from:
    // the create starts afresh, and its image is right.
    std::fs::remove_file(&image).unwrap();
    std::fs::write(&checkpoint, b"{\"name\":\"other\"}\n").unwrap();
    std::fs::write(&partial, vec![0x5au8; 1 << 20]).unwrap();
    let again = env.run("lct-image", &["create", &s(&raw), &s(&image), "--level", "1"]).ok();
    assert!(!again.stderr.contains("going on from extent"), "{}", again.stderr);
    env.run("lct-image", &["verify", &s(&image), &s(&raw)]).ok();
}
