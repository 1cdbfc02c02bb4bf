//! Linode nodes from lct images, against the Linode API double (issue 22): the Linode Image
//! push-linode made of an lct image is used when there is one; else the helper-disk way
//! (instance without booting, helper and target disks, a profile with the target at
//! /dev/sdb, a boot of it; the stream to the node; a failure deletes the half-made
//! instance); bad images refused before any instance; a capture's helper disk and profile.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lct_api::Provider;
use lct_api::disk_image::DiskCapture;
use lct_api::linode::{Defaults, LinodeProvider};
use lct_linode_double::{Config, Double};
use lct_tests::Env;
use lct_tests::fixtures::linode::{Api, spec};
use serde_json::{Value, json};

/// A small ext4 file system holding a marker file, imaged by lct-image (no root needed).
fn marker_image(env: &Env, api: &Api, mib: u64) -> PathBuf {
    let dir = env.state.path().join("fs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("marker"), "made from an lct image\n").unwrap();
    let raw = env.state.path().join("disk.raw");
    let status = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&dir)
        .arg(&raw)
        .arg(format!("{mib}M"))
        .output()
        .expect("mkfs.ext4");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let image = env.state.path().join("disk.lcti");
    let out = api.run_tool("lct-image", &["create", path(&raw), path(&image)], "").ok();
    drop(out);
    image
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn create_from(api: &Api, node: &str, image: &Path, extra: &str) -> lct_tests::Run {
    let spec = spec(node, &format!(r#","image":"{}"{extra}"#, path(image)));
    api.run(&["-p", "linode", "create"], &spec)
}

/// The logged requests' bodies of `METHOD` on paths ending with `tail`.
fn bodies(double: &Double, method: &str, tail: &str) -> Vec<Value> {
    double.stats().log.into_iter().filter(|(m, p, _)| m == method && p.ends_with(tail)).map(|(_, _, b)| b).collect()
}

#[test]
fn a_linode_image_pushed_from_the_lct_image_makes_the_node() {
    let (started, env) = (std::time::Instant::now(), Env::new());
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    let image = marker_image(&env, &api, 32);
    let pushed = api
        .run_tool(
            "lct-image",
            &["push-linode", path(&image), "--label", "zk-base", "--region", "us-east", "--wait"],
            "",
        )
        .ok();
    let pushed: Value = serde_json::from_str(pushed.stdout.trim()).expect("the Linode Image as JSON");
    let id = pushed["id"].as_str().expect("an id").to_string();
    assert!(pushed["description"].as_str().unwrap_or_default().starts_with("lct-image:"), "{pushed}");
    let out = create_from(&api, "zk-1", &image, "").ok();
    assert_eq!(out.nodes().len(), 1, "{}", out.stderr);
    let created = bodies(&double, "POST", "/linode/instances");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["image"], json!(id), "made from the Linode Image: {}", created[0]);
    assert!(double.stats().requests("/disks").is_empty(), "no helper disk: {:?}", double.stats().requests(""));
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn without_a_linode_image_the_node_is_made_through_a_helper_disk_and_a_failure_leaves_nothing() {
    let (started, env) = (std::time::Instant::now(), Env::new());
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    let image = marker_image(&env, &api, 48);
    // The double's addresses (documentation ones) are reached from nowhere, so the stream
    // onto /dev/sdb is refused before a connection: everything before it is recorded, and
    // the half-made instance must go.
    let out = create_from(&api, "zk-2", &image, "");
    assert_eq!(out.status, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("image {}", path(&image))) && out.stderr.contains("/dev/sdb"),
        "{}",
        out.stderr
    );
    let log: Vec<String> = double
        .stats()
        .requests("/linode/instances")
        .into_iter()
        .filter(|r| !r.starts_with("GET"))
        .map(|r| r.chars().map(|c| if c.is_ascii_digit() { 'N' } else { c }).collect::<String>())
        .map(|r| r.replace("NNNN", "N"))
        .collect();
    assert_eq!(
        log,
        [
            "POST /linode/instances",
            "POST /linode/instances/N/disks",
            "POST /linode/instances/N/disks",
            "POST /linode/instances/N/configs",
            "POST /linode/instances/N/boot",
            "DELETE /linode/instances/N",
        ],
        "{:?}",
        double.stats().requests("")
    );
    let instance = &bodies(&double, "POST", "/linode/instances")[0];
    assert!(instance.get("image").is_none() && instance["booted"] == json!(false), "{instance}");
    assert!(instance["metadata"]["user_data"].is_string(), "the first boot's data: {instance}");
    let disks = bodies(&double, "POST", "/disks");
    assert_eq!(disks[0]["label"], json!("lct-helper"));
    assert_eq!(disks[0]["image"], json!("linode/debian12"));
    assert!(disks[0]["authorized_keys"].as_array().is_some_and(|k| !k.is_empty()), "{}", disks[0]);
    let size = std::fs::metadata(env.state.path().join("disk.raw")).unwrap().len();
    assert_eq!(disks[1]["label"], json!("lct-root"));
    assert_eq!(disks[1]["filesystem"], json!("raw"));
    assert_eq!(disks[1]["size"], json!(size.div_ceil(1 << 20)), "the image's size");
    let profile = &bodies(&double, "POST", "/configs")[0];
    assert_eq!(profile["root_device"], json!("/dev/sda"));
    assert!(
        profile["devices"]["sda"]["disk_id"].is_u64() && profile["devices"]["sdb"]["disk_id"].is_u64(),
        "{profile}"
    );
    let boot = &bodies(&double, "POST", "/boot")[0];
    assert!(boot["config_id"].is_u64(), "the profile is booted: {boot}");
    let list = api.run(&["-p", "linode", "list"], "").ok();
    assert!(list.nodes().is_empty(), "nothing half-made stays: {}", list.stdout);
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn missing_corrupt_and_too_big_images_are_refused_before_any_instance() {
    let (started, env) = (std::time::Instant::now(), Env::new());
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    let missing = env.state.path().join("missing.lcti");
    let out = create_from(&api, "bad-1", &missing, "");
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("missing.lcti"), "{}", out.stderr);
    // A corrupt image: one byte of its first data frame changed.
    let image = marker_image(&env, &api, 16);
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[100] ^= 0x55;
    let corrupt = env.state.path().join("corrupt.lcti");
    std::fs::write(&corrupt, bytes).unwrap();
    let out = create_from(&api, "bad-2", &corrupt, "");
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("corrupt.lcti"), "{}", out.stderr);
    // A disk bigger than the type's (a nanode's 25600 MiB) beside the helper disk.
    let raw = env.state.path().join("big.raw");
    std::fs::File::create(&raw).unwrap().set_len(24 << 30).unwrap();
    let big = env.state.path().join("big.lcti");
    api.run_tool("lct-image", &["create", path(&raw), path(&big)], "").ok();
    let out = create_from(&api, "bad-3", &big, r#","type":"g6-nanode-1""#);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("g6-nanode-1") && out.stderr.contains("larger type"), "{}", out.stderr);
    let posts = bodies(&double, "POST", "/linode/instances");
    assert!(posts.is_empty(), "no instance made: {posts:?}");
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn a_capture_boots_a_helper_with_the_nodes_disk_at_sdb_and_release_puts_it_back() {
    let (started, env) = (std::time::Instant::now(), Env::new());
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    api.run(&["-p", "linode", "create"], &spec("cap-1", "")).ok();
    let retry = lct_api::linode::client::RetryPolicy {
        poll: Duration::from_millis(20),
        base: Duration::from_millis(40),
        ..Default::default()
    };
    let client = lct_api::linode::client::Client::new(
        double.url(),
        lct_api::linode::credentials::Token::new(double.token()),
        lct_api::linode::limits::Limiter::new(),
        retry,
    )
    .unwrap();
    let defaults = Defaults {
        region: "us-east".into(),
        instance_type: "g6-nanode-1".into(),
        image: "linode/debian12".into(),
        authorized_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk0c2V0dGVzdGtleWZvcmxjdGNhcHR1cmU test".into()],
    };
    let provider = LinodeProvider::new(lct_api::linode::api::Linode::new(client), defaults);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let name = "cap-1".parse().unwrap();
    let before = double.stats().log.len();
    let capture = runtime.block_on(provider.capture_disk(&name)).unwrap();
    assert_eq!(capture, DiskCapture::OnNode { device: "/dev/sdb".into() });
    let log = double.stats().log.split_off(before);
    let writes: Vec<&(String, String, Value)> = log.iter().filter(|(m, _, _)| m != "GET").collect();
    let steps: Vec<(&str, &str)> = writes
        .iter()
        .map(|(m, p, _)| (m.as_str(), p.rsplit('/').nth(if m == "PUT" { 1 } else { 0 }).unwrap_or_default()))
        .collect();
    // The image deploy used the whole disk: the root disk is shrunk to make room.
    assert_eq!(
        steps,
        [("POST", "shutdown"), ("POST", "resize"), ("POST", "disks"), ("PUT", "configs"), ("POST", "boot")],
        "{writes:?}"
    );
    let helper = &writes[2].2;
    assert_eq!(helper["label"], json!("lct-helper"));
    let profile = &writes[3].2;
    let root = profile["devices"]["sdb"]["disk_id"].as_u64().expect("the node's disk at sdb");
    assert!(profile["devices"]["sda"]["disk_id"].as_u64().is_some_and(|h| h != root), "{profile}");
    assert!(writes[4].2["config_id"].is_u64());
    let before = double.stats().log.len();
    runtime.block_on(provider.release_capture(&name)).unwrap();
    let log = double.stats().log.split_off(before);
    let writes: Vec<&(String, String, Value)> = log.iter().filter(|(m, _, _)| m != "GET").collect();
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert!(writes[0].1.ends_with("/shutdown"));
    assert_eq!(writes[1].0, "PUT");
    assert_eq!(writes[1].2["devices"]["sda"]["disk_id"], json!(root), "the node's own disk boots again");
    assert!(writes[1].2["devices"]["sdb"].is_null());
    assert_eq!(writes[2].0, "DELETE", "the helper disk goes");
    eprintln!("took {:?}", started.elapsed());
}
