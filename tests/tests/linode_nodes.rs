//! Nodes on the Linode path against the API test double: pipes that act on each record's
//! provider, cloud firewalls that mirror lct's, lct's cloud-init and pinned host keys, DNS
//! sync, push-linode of an image, and the double's lab addresses. (lct-api's own requests:
//! linode.rs.)

use std::process::{Command, Stdio};

use lct_linode_double::{Config, Double};
use lct_tests::fixtures::linode::Api;
use lct_tests::fixtures::node;
use lct_tests::{Env, Run};

#[test]
fn pipes_act_on_each_records_provider_and_clusters_remember_where_their_nodes_are() {
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    let inventory = |args: &[&str]| api.run_tool("lct-inventory", args, "");
    let names = |nodes: Vec<lct_core::record::Node>| nodes.into_iter().map(|n| n.name.to_string()).collect::<Vec<_>>();
    // Made on Linode, as a new user would, then asked about with no -p: the cluster's record
    // says where its nodes are.
    api.run(&["-p", "linode", "create", "--cluster", "lz", "--count", "2"], "").ok();
    let records = inventory(&["clusters", "list", "-o", "jsonl"]).ok().json_lines();
    assert!(records.iter().any(|c| c["name"] == "lz" && c["provider"] == "linode"), "{records:?}");
    let found = inventory(&["query", "--cluster", "lz", "-o", "jsonl"]).ok();
    assert_eq!(names(found.nodes()), ["lz-1", "lz-2"], "{}", found.stderr);
    assert!(found.nodes().iter().all(|n| n.provider.as_str() == "linode"));
    // A cluster with no nodes says so at the default log level, and where lct looked.
    let nowhere = inventory(&["query", "--cluster", "nowhere", "-o", "jsonl"]).ok();
    assert!(nowhere.stdout.trim().is_empty());
    assert!(nowhere.stderr.contains("cluster nowhere: no nodes (asked linode)"), "{}", nowhere.stderr);
    let narrowed = inventory(&["query", "--cluster", "lz", "--status", "offline", "-o", "jsonl"]).ok();
    assert!(narrowed.stderr.contains("cluster lz: no nodes that match the other selectors"), "{}", narrowed.stderr);

    // Piped records go to the provider each names: stop, start and delete on Linode, with
    // no -p (they used to be looked up in the local cloud and, not found there, skipped).
    let piped = found.stdout.clone();
    let stopped = api.run(&["stop", "-o", "jsonl"], &piped).ok();
    assert_eq!(stopped.nodes().len(), 2, "{}", stopped.stdout);
    assert!(stopped.nodes().iter().all(|n| n.status.as_str() == "offline"), "{}", stopped.stdout);
    api.run(&["start", "-o", "jsonl"], &piped).ok();
    // A provider chosen explicitly that is not the records' is refused before anything.
    let mixed = api.run(&["-p", "local", "delete"], &piped);
    assert_eq!(mixed.status, 1, "{}", mixed.stderr);
    assert!(mixed.stderr.contains("node lz-1 is on linode"), "{}", mixed.stderr);
    assert_eq!(names(inventory(&["query", "--cluster", "lz", "-o", "jsonl"]).ok().nodes()), ["lz-1", "lz-2"]);
    api.run(&["delete"], &piped).ok();
    assert!(api.run(&["-p", "linode", "list", "-o", "jsonl"], "").ok().stdout.trim().is_empty(), "left on Linode");
    // Again: neither is there any more. Each is named, and the exit status says so.
    let gone = api.run(&["delete"], &piped);
    assert_eq!(gone.status, 1, "{}", gone.stderr);
    for n in ["lz-1", "lz-2"] {
        assert!(gone.stderr.contains(&format!("delete {n}: no node named {n} on linode")), "{}", gone.stderr);
    }
    let tolerated = api.run(&["delete", "--missing-ok"], &piped).ok();
    assert!(tolerated.stderr.contains("no such node on linode"), "{}", tolerated.stderr);
    let stop_missing = api.run(&["stop"], &piped);
    assert_eq!(stop_missing.status, 1, "{}", stop_missing.stderr);
}

#[test]
fn cloud_firewalls_mirror_each_groups_rules_and_members() {
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    api.run(&["-p", "linode", "create", "--cluster", "zk", "--count", "3"], "").ok();
    api.run(&["-p", "linode", "create", "--cluster", "hdfs", "--count", "2"], "").ok();
    env.run("lct-fw", &["declare", "zk", "--admin-cidr", "198.51.100.0/24", "--allow", "self->*:2888-3888/tcp"]).ok();
    env.run("lct-inventory", &["clusters", "set", "hdfs", "--depends-on", "zk:node:2181/tcp"]).ok();
    let fw = |input: &str, args: &[&str]| {
        let mut all = vec!["cloud-sync", "--cluster", "zk"];
        all.extend_from_slice(args);
        api.run_tool("lct-fw", &all, input)
    };
    let nodes = api.run(&["-p", "linode", "list"], "").ok().stdout;
    let ids = |cluster: &str| -> Vec<u64> {
        lct_tests::Run { status: 0, stdout: nodes.clone(), stderr: String::new() }
            .nodes()
            .into_iter()
            .filter(|n| n.cluster.as_str() == cluster)
            .map(|n| n.provider_id.parse().unwrap())
            .collect()
    };
    // A dry run: the plan, nothing made.
    let dry = fw(&nodes, &["--dry-run"]).ok();
    let plan = &dry.json_lines()[0];
    assert_eq!(plan["kind"], "fw-cloud-sync");
    assert_eq!(plan["created"], true);
    assert!(plan["planned_rules"]["inbound"].as_array().unwrap().len() >= 3);
    assert!(api.run(&["linode", "firewalls", "list"], "").ok().stdout.is_empty());
    // The real thing.
    let report = &fw(&nodes, &[]).ok().json_lines()[0];
    assert_eq!(report["firewall"], "lct-zk-node");
    let mut added: Vec<u64> = report["devices_added"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    added.sort();
    let mut zk = ids("zk");
    zk.sort();
    assert_eq!(added, zk, "the zk instances are its devices");
    let fid = report["firewall_id"].to_string();
    let rules = &api.run(&["linode", "firewall-rules", "get", &fid], "").ok().json_lines()[0];
    let inbound = rules["inbound"].as_array().unwrap();
    let rule_for = |ports: &str| inbound.iter().find(|r| r["ports"] == ports && r["action"] == "ACCEPT").cloned();
    assert_eq!(rule_for("22").unwrap()["addresses"]["ipv4"][0], "198.51.100.0/24", "SSH from the admin prefix");
    // Each peer by its private and its public address, as the host tables admit them.
    let peers = rule_for("2888-3888").expect("members on 2888-3888");
    assert_eq!(peers["addresses"]["ipv4"].as_array().unwrap().len(), 6);
    let client = rule_for("2181").expect("hdfs on 2181");
    assert_eq!(client["addresses"]["ipv4"].as_array().unwrap().len(), 4);
    assert_eq!(rules["inbound_policy"], "ACCEPT", "managed-ports: only the managed ports are closed to others");
    // Again: nothing to do.
    let again = &fw(&nodes, &[]).ok().json_lines()[0];
    assert_eq!((again["created"].as_bool(), again["rules_changed"].as_bool()), (Some(false), Some(false)));
    assert!(again["devices_added"].as_array().unwrap().is_empty());
    // hdfs-2 leaves: its address leaves the rule. zk-3 is left out of the input: its device goes.
    api.run(&["-p", "linode", "delete", "hdfs-2"], "").ok();
    let fewer: String = api
        .run(&["-p", "linode", "list"], "")
        .ok()
        .stdout
        .lines()
        .filter(|l| !l.contains("\"zk-3\""))
        .map(|l| format!("{l}\n"))
        .collect();
    let changed = &fw(&fewer, &[]).ok().json_lines()[0];
    assert_eq!(changed["rules_changed"], true);
    assert_eq!(changed["devices_removed"].as_array().unwrap().len(), 1);
    let rules = &api.run(&["linode", "firewall-rules", "get", &fid], "").ok().json_lines()[0];
    let client = rules["inbound"].as_array().unwrap().iter().find(|r| r["ports"] == "2181").cloned().unwrap();
    assert_eq!(client["addresses"]["ipv4"].as_array().unwrap().len(), 2);
    assert_eq!(api.run(&["linode", "firewall-devices", "list", &fid], "").ok().json_lines().len(), 2);
}

#[test]
fn linode_nodes_boot_with_lcts_cloud_init_and_a_pinned_host_key() {
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    let node =
        api.run(&["-p", "linode", "create", "--cluster", "web", "--name", "web-1", "-o", "jsonl"], "").ok().nodes();
    let instance = api.run(&["linode", "instances", "get", &node[0].provider_id], "").ok().json_lines();
    assert_eq!(instance[0]["has_user_data"], true, "{:?}", instance[0]);
    // The host key lct made is pinned under the node's name and public address before any
    // connection; lct's own key is an authorized key.
    let known = std::fs::read_to_string(env.state.path().join("ssh/known_hosts")).unwrap();
    let public = node[0].public_ipv4[0].to_string();
    let line = known.lines().find(|l| l.starts_with("web-1,")).unwrap_or_else(|| panic!("{known}"));
    assert!(line.split(' ').next().unwrap().split(',').any(|h| h == public), "{line}");
    assert!(line.contains(" ssh-ed25519 "), "{line}");
    assert!(env.state.path().join("ssh/id_ed25519").exists());
}

#[test]
fn dns_sync_makes_exactly_the_differing_records_and_leaves_others_alone() {
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    let json = |out: Run| out.ok().json_lines();
    let node = |name: &str, private: &str, public: Option<&str>| node("zk", "server", name, private, public);
    // The domain exists with a record of someone else's and one that already says what lct wants.
    let dom = &json(api.run(
        &[
            "linode",
            "domains",
            "create",
            "--data",
            r#"{"domain":"example.com","type":"master","soa_email":"ops@example.com"}"#,
        ],
        "",
    ))[0];
    let did = dom["id"].to_string();
    for data in [
        r#"{"type":"A","name":"www","target":"198.51.100.80","ttl_sec":3600}"#,
        r#"{"type":"A","name":"zk-1.zk","target":"203.0.113.1","ttl_sec":300}"#,
    ] {
        json(api.run(&["linode", "records", "create", &did, "--data", data], ""));
    }
    let records = || {
        let mut r: Vec<String> = json(api.run(&["linode", "records", "list", &did], ""))
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {}",
                    r["name"].as_str().unwrap(),
                    r["type"].as_str().unwrap(),
                    r["target"].as_str().unwrap(),
                    r["ttl_sec"]
                )
            })
            .collect();
        r.sort();
        r
    };
    let sync = |nodes: &str, extra: &[&str]| {
        let mut args = vec!["sync-linode", "--domain", "example.com", "--parent-domain", "example.com", "-o", "jsonl"];
        args.extend_from_slice(extra);
        let out = api.run_tool("lct-dns", &args, nodes).ok();
        let mut changes: Vec<String> = out
            .json_lines()
            .iter()
            .map(|c| {
                format!(
                    "{} {} {}",
                    c["action"].as_str().unwrap(),
                    c["name"].as_str().unwrap(),
                    c["target"].as_str().unwrap()
                )
            })
            .collect();
        changes.sort();
        changes
    };
    let nodes = node("zk-1", "192.168.128.1", Some("203.0.113.1"))
        + &node("zk-2", "192.168.128.2", Some("203.0.113.2"))
        + &node("zk-3", "192.168.128.3", None);
    // A dry run says what would change and changes nothing.
    let before = records();
    let planned = sync(&nodes, &["--dry-run"]);
    assert_eq!(records(), before);
    // The public addresses only: node names and the group's name; zk-1's record adopted.
    let done = sync(&nodes, &[]);
    assert_eq!(done, planned);
    assert_eq!(
        done,
        [
            "adopt zk-1.zk 203.0.113.1",
            "create server.zk 203.0.113.1",
            "create server.zk 203.0.113.2",
            "create zk-2.zk 203.0.113.2",
        ]
    );
    assert_eq!(
        records(),
        [
            "server.zk A 203.0.113.1 300",
            "server.zk A 203.0.113.2 300",
            "www A 198.51.100.80 3600",
            "zk-1.zk A 203.0.113.1 300",
            "zk-2.zk A 203.0.113.2 300",
        ]
    );
    // Again: nothing to do.
    assert!(sync(&nodes, &[]).is_empty());
    // zk-1 goes, zk-2's address changes: exactly those records change; www stays.
    let nodes = node("zk-2", "192.168.128.2", Some("203.0.113.22")) + &node("zk-3", "192.168.128.3", None);
    let done = sync(&nodes, &[]);
    assert_eq!(
        done,
        [
            "delete server.zk 203.0.113.2",
            "delete zk-1.zk 203.0.113.1",
            "update server.zk 203.0.113.22",
            "update zk-2.zk 203.0.113.22"
        ]
    );
    assert_eq!(records(), ["server.zk A 203.0.113.22 300", "www A 198.51.100.80 3600", "zk-2.zk A 203.0.113.22 300"]);
    assert!(sync(&nodes, &[]).is_empty());
}

#[test]
fn push_linode_streams_a_gzipd_disk_to_the_upload_url_with_bounded_memory() {
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    let dir = env.state.path();
    // A 160 MiB disk: compressible data in every extent, so that neither a whole extent
    // list nor the gzip'd disk (some 40 MiB) fits the memory bound below by accident.
    let raw = dir.join("disk.raw");
    lct_tests::pseudo_random_file(&raw, 160 << 20, 0x9e37_79b9_7f4a_7c15, 0x0f);
    let image = dir.join("disk.lcti");
    env.run("lct-image", &["create", raw.to_str().unwrap(), image.to_str().unwrap()]).ok();
    let mut push = api.tool(
        "/usr/bin/time",
        &[
            "-f",
            "peak %M",
            lct_tests::bin("lct-image").to_str().unwrap(),
            "push-linode",
            image.to_str().unwrap(),
            "--label",
            "lct-disk",
            "--region",
            "us-east",
            "--wait",
        ],
    );
    let out = push.stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["status"], "available");
    assert_eq!(made["label"], "lct-disk");
    let peak_kib: u64 = stderr.lines().find_map(|l| l.strip_prefix("peak ")).unwrap().trim().parse().unwrap();
    assert!(peak_kib < 96 * 1024, "peak RSS {peak_kib} KiB for a 160 MiB disk");
    assert!(!stderr.contains(&double.token()), "the token shows: {stderr}");

    // What arrived is the disk, gzip'd.
    let uploaded = double.upload(made["id"].as_str().unwrap()).expect("an upload");
    let mut gunzip = Command::new("gzip").args(["-dc"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = gunzip.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&uploaded).unwrap();
    });
    let disk = gunzip.wait_with_output().unwrap().stdout;
    writer.join().unwrap();
    assert!(disk == std::fs::read(&raw).unwrap(), "the uploaded disk differs");

    // Over Linode's 6 GB raw limit: refused before any request.
    let big = dir.join("big.raw");
    std::fs::File::create(&big).unwrap().set_len(6_500_000_000).unwrap();
    let big_image = dir.join("big.lcti");
    env.run("lct-image", &["create", big.to_str().unwrap(), big_image.to_str().unwrap()]).ok();
    let before = double.stats().requests;
    let out = api.run_tool(
        "lct-image",
        &["push-linode", big_image.to_str().unwrap(), "--label", "big", "--region", "us-east"],
        "",
    );
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("at most 6000000000 bytes"), "{}", out.stderr);
    assert_eq!(double.stats().requests, before, "a request was made");
    // A label Linode would refuse: named, no request.
    let out = api.run_tool(
        "lct-image",
        &["push-linode", image.to_str().unwrap(), "--label", "bad label", "--region", "us-east"],
        "",
    );
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("field label"), "{}", out.stderr);
    assert_eq!(double.stats().requests, before, "a request was made");
}

#[test]
#[ignore = "needs root: the Linode double backed by machine nodes, and an empty network namespace"]
fn lab_addresses_are_reached_from_the_lab_only_and_pipes_need_no_provider() {
    let env = Env::new();
    let (_double, settings) = env.linode_double_settings("backed");
    // The double says what points lct at its lab: its API, and the namespace its nodes'
    // (documentation) addresses are reached from.
    let outside = format!("{}-outside", env.lab);
    assert!(settings["LINODE_URL"].starts_with("http://127.0.0.1:"), "{settings:?}");
    assert_eq!(settings.get("LCT_LINODE_SSH_NETNS"), Some(&outside), "{settings:?}");
    // A controller that knows Linode only (a state of its own): the double's settings, with
    // the namespace given or not.
    let controller = env.state.path().join("controller");
    std::fs::create_dir_all(&controller).unwrap();
    let point = |cmd: &mut Command, netns: Option<&str>| {
        cmd.env("LCT_STATE_DIR", &controller)
            .env("LINODE_URL", &settings["LINODE_URL"])
            .env("LINODE_TOKEN", &settings["LINODE_TOKEN"])
            .env("LCT_LINODE_POLL", "0.05")
            .env("HOME", &controller)
            .env_remove("LCT_PROVIDER")
            .env_remove("LCT_LINODE_SSH_NETNS");
        if let Some(ns) = netns {
            cmd.env("LCT_LINODE_SSH_NETNS", ns);
        }
    };
    let run = |program: &str, args: &[&str], netns: Option<&str>, input: &str| {
        let mut cmd = env.command(program, args);
        point(&mut cmd, netns);
        lct_tests::run_command(cmd, input)
    };
    run("lct-api", &["-p", "linode", "create", "--cluster", "lz", "--count", "1"], None, "").ok();
    // Found by cluster with no -p: the cluster's record says Linode.
    let records = run("lct-inventory", &["query", "--cluster", "lz", "-o", "jsonl"], None, "").ok();
    let nodes = records.nodes();
    assert_eq!(nodes.len(), 1, "{}", records.stderr);
    let public = nodes[0].public_ipv4[0].to_string();
    assert!(lct_core::reach::documentation_block(public.parse().unwrap()).is_some(), "{public}");

    // Without the setting, from a namespace the test made with no route at all (so that even
    // without the check nothing could leave this machine): refused before any connection,
    // naming the setting, not a network error.
    let void = format!("{}-void", env.lab);
    assert!(Command::new("ip").args(["netns", "add", &void]).status().unwrap().success());
    let mut in_void = Command::new("ip");
    in_void
        .args(["netns", "exec", &void])
        .arg(lct_tests::bin("lct-inventory"))
        .args(["exec", "-o", "jsonl", "--", "hostname"]);
    point(&mut in_void, None);
    let refused = lct_tests::run_command(in_void, &records.stdout);
    assert_eq!(refused.status, 1, "{}\n{}", refused.stdout, refused.stderr);
    let result = &refused.json_lines()[0];
    let reason = result["reason"].as_str().unwrap_or_else(|| panic!("not refused: {result}"));
    assert!(reason.contains(&format!("refusing to connect to {public}")), "{reason}");
    assert!(reason.contains("LCT_LINODE_SSH_NETNS") && reason.contains("this machine's own"), "{reason}");
    assert!(!refused.stderr.contains("unreachable") && !reason.contains("unreachable"), "{reason}");
    // The same by cluster (no -p), the setting naming that empty namespace: refused, naming it.
    let wrong = run("lct-inventory", &["exec", "--cluster", "lz", "-o", "jsonl", "--", "hostname"], Some(&void), "");
    assert_eq!(wrong.status, 1, "{}", wrong.stderr);
    let reason = wrong.json_lines()[0]["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains(&format!("network namespace {void} has no route")), "{reason}");
    // A plan with hooks waits for its nodes' SSH: the refusal ends that wait at once, with
    // the reason, rather than after five minutes of retries.
    let plan = env.state.path().join("hooked.yaml");
    std::fs::write(
        &plan,
        "description: x\ngroups:\n  node: {count: 1}\nhooks:\n  created:\n    - {run: \"true\", on: [node]}\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let hooked = run("lct-plan", &["create", "ph", plan.to_str().unwrap(), "-p", "linode"], Some(&void), "");
    assert_ne!(hooked.status, 0, "{}", hooked.stderr);
    assert!(
        hooked.stderr.contains("refusing to connect") && hooked.stderr.contains("LCT_LINODE_SSH_NETNS"),
        "{}",
        hooked.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(120), "waited {:?}", started.elapsed());

    // With the double's setting: through a pipe, no -p, it works (once the machine's sshd is up).
    let piped = run("lct-inventory", &["query", "--cluster", "lz", "-o", "jsonl"], Some(&outside), "").ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let answered = loop {
        let out = run("lct-inventory", &["exec", "-o", "jsonl", "--", "hostname"], Some(&outside), &piped.stdout);
        if out.status == 0 || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(answered.status, 0, "{}\n{}", answered.stdout, answered.stderr);
    assert_eq!(answered.json_lines()[0]["stdout"].as_str().unwrap().trim(), "lz-1");
    // And deleted through a pipe with no -p: on Linode, so its machine goes.
    run("lct-api", &["delete"], None, &records.stdout).ok();
    let backing = env.run("lct-api", &["list", "-o", "jsonl"]).ok().nodes();
    assert!(!backing.iter().any(|n| n.name.as_str() == "lz-1"), "lz-1's backing machine left");
}
