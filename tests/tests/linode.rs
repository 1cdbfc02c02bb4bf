//! lct-api against the Linode API test double: bulk creates that survive faults and rate
//! limits without duplicates, every fault knob, paging, filters, bad input named by field,
//! the other resources, and a token that never shows.

use std::process::{Command, Stdio};

use lct_linode_double::{Config, Double, Fault, FaultKind};
use lct_tests::{Env, Run};

struct Api<'a> {
    env: &'a Env,
    double: &'a Double,
}

impl Api<'_> {
    /// An lct program, pointed at the double.
    fn tool(&self, name: &str, args: &[&str]) -> Command {
        let mut c = self.env.command(name, args);
        c.env("LINODE_URL", self.double.url())
            .env("LINODE_TOKEN", self.double.token())
            .env("LCT_LINODE_POLL", "0.02")
            .env_remove("LINODE_CLI_TOKEN")
            .env("HOME", self.env.state.path());
        c
    }

    fn command(&self, args: &[&str]) -> Command {
        self.tool("lct-api", args)
    }

    fn run(&self, args: &[&str], input: &str) -> Run {
        self.run_tool("lct-api", args, input)
    }

    fn run_tool(&self, name: &str, args: &[&str], input: &str) -> Run {
        lct_tests::run_command(self.tool(name, args), input)
    }
}

fn spec(name: &str, extra: &str) -> String {
    format!(r#"{{"kind":"node-spec","cluster":"web","group":"app","name":"{name}"{extra}}}"#) + "\n"
}

fn fault(path: &str, method: &str, kind: FaultKind, count: u32, after: bool) -> Fault {
    Fault { method: Some(method.into()), path: path.into(), kind, count, after }
}

#[test]
fn bulk_create_prints_each_node_reports_failures_and_reruns_make_only_whats_missing() {
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    let mut specs: String = (1..=6).map(|i| spec(&format!("web-{i}"), "")).collect();
    specs.push_str(&spec("web-7", r#","region":"eu-nowhere""#));
    let out = api.run(&["-p", "linode", "create"], &specs);
    assert_eq!(out.status, 1, "one node failed: {}", out.stderr);
    assert!(out.stderr.contains("create web-7: field region: \"eu-nowhere\": no such region"), "{}", out.stderr);
    let nodes = out.nodes();
    assert_eq!(nodes.len(), 6);
    for n in &nodes {
        assert_eq!((n.cluster.as_str(), n.group.as_str()), ("web", "app"));
        assert_eq!(n.status.as_str(), "running");
        assert_eq!(n.private_ipv4.len(), 1, "a private address: {n:?}");
        assert!(n.private_ipv4[0].octets()[..2] == [192, 168]);
        assert_eq!(n.public_ipv4.len(), 1);
    }
    // Again, with one more: only that one is made.
    let specs: String = (1..=7).map(|i| spec(&format!("web-{i}"), "")).collect();
    let out = api.run(&["-p", "linode", "create"], &specs).ok();
    assert_eq!(out.nodes().len(), 7);
    let stats = double.stats();
    assert_eq!(stats.created_labels.values().sum::<u32>(), 7, "{}", stats.to_json());
    assert!(stats.duplicates().is_empty());
    // list shows them; the table on request.
    let list = api.run(&["-p", "linode", "list", "-o", "table"], "").ok();
    assert!(list.stdout.contains("web-7") && list.stdout.contains("running"), "{}", list.stdout);
}

#[test]
fn unknown_outcomes_are_looked_up_by_label_never_duplicated() {
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    // The create is carried out, then the answer is lost: 503, 408, a dropped connection.
    double.inject(fault("/linode/instances", "POST", FaultKind::Unavailable503, 1, true));
    double.inject(fault("/linode/instances", "POST", FaultKind::Timeout408, 1, true));
    double.inject(fault("/linode/instances", "POST", FaultKind::Drop, 1, true));
    // And once before: nothing was made, so it is made on the retry.
    double.inject(fault("/linode/instances", "POST", FaultKind::Unavailable503, 1, false));
    let specs: String = (1..=5).map(|i| spec(&format!("db-{i}"), "")).collect();
    let out = api.run(&["-p", "linode", "create", "--parallel", "1"], &specs).ok();
    assert_eq!(out.nodes().len(), 5);
    let stats = double.stats();
    assert_eq!(stats.faults_served, 4);
    assert!(stats.duplicates().is_empty(), "duplicates: {:?}", stats.duplicates());
    assert_eq!(stats.created_labels.values().sum::<u32>(), 5);
}

#[test]
fn rate_limits_are_kept_and_every_429_is_waited_out() {
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    double.set_limit("create_instance", 3, 2.0);
    let specs: String = (1..=7).map(|i| spec(&format!("rl-{i}"), "")).collect();
    let started = std::time::Instant::now();
    let out = api.run(&["-p", "linode", "create"], &specs).ok();
    assert_eq!(out.nodes().len(), 7);
    // 3 per 2 s: the seventh create cannot go before the third window.
    assert!(started.elapsed().as_secs_f64() >= 3.5, "{:?}", started.elapsed());
    // Lower than the documented 20 per 15 s, so the first burst meets 429s; none is early.
    assert_eq!(double.stats().early_after_429, 0, "{}", double.stats().to_json());
    // The limit learned from the headers of the first page keeps the other pages within it.
    double.seed_instances(2_400, "page-");
    double.set_limit("collection", 3, 2.0);
    let out = api.run(&["linode", "instances", "list", "--filter", r#"{"tags":"seeded"}"#], "").ok();
    assert_eq!(out.stdout.lines().count(), 2_400);
    // A fresh window, so the burst below cannot straddle the end of one.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // Five clients of one token at once, three requests per window: the server refuses some;
    // each waits as asked and gets through.
    let children: Vec<_> = (0..5)
        .map(|_| {
            api.command(&["linode", "regions", "list"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6);
    }
    let stats = double.stats();
    assert!(stats.throttled >= 1, "five clients, three requests per window: {}", stats.to_json());
    assert_eq!(stats.early_after_429, 0, "a request came before its Retry-After: {}", stats.to_json());
    assert!(stats.duplicates().is_empty());
}

#[test]
fn busy_html_and_unavailable_are_retried_maintenance_is_not() {
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    api.run(&["-p", "linode", "create", "--cluster", "ops", "--count", "1"], "").ok();
    double.inject(fault("/linode/instances/", "POST", FaultKind::Busy, 2, false));
    let out = api.run(&["-p", "linode", "stop", "ops-1"], "").ok();
    assert_eq!(out.nodes()[0].status.as_str(), "offline");
    double.inject(fault("/linode/instances", "GET", FaultKind::Html400, 2, false));
    double.inject(fault("/linode/instances", "GET", FaultKind::Unavailable503, 1, false));
    assert_eq!(api.run(&["-p", "linode", "list"], "").ok().nodes().len(), 1);
    double.inject(fault("/regions", "GET", FaultKind::Maintenance503, 1, false));
    let out = api.run(&["linode", "regions", "list"], "");
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("maintenance"), "{}", out.stderr);
    assert_eq!(double.stats().faults_served, 6);
}

#[test]
fn listing_ten_thousand_instances_takes_twenty_requests_and_filters_are_checked() {
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    double.seed_instances(10_000, "node-");
    let before = double.stats();
    let out = api.run(&["linode", "instances", "list"], "").ok();
    assert_eq!(out.stdout.lines().count(), 10_000);
    let after = double.stats();
    assert_eq!(after.requests - before.requests, 20, "ceil(10000/500) pages");
    let one = api.run(&["linode", "instances", "list", "--filter", r#"{"label":"node-4242"}"#], "").ok();
    assert_eq!(one.json_lines().len(), 1);
    assert_eq!(one.json_lines()[0]["kind"], "linode-instance");
    let bad = api.run(&["linode", "instances", "list", "--filter", r#"{"root_pass":"x"}"#], "");
    assert_eq!(bad.status, 1);
    assert!(bad.stderr.contains("field X-Filter: Cannot filter on root_pass"), "{}", bad.stderr);
    let usage = api.run(&["linode", "instances", "list", "--filter", "{oops"], "");
    assert_eq!(usage.status, 2, "{}", usage.stderr);
}

#[test]
fn bad_input_is_named_by_field_before_any_request() {
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    for (spec_line, message) in [
        (spec("ab", ""), "field name: \"ab\": must be 3 to 64 characters"),
        (spec("web-1", r#","region":"Mars""#), "field region: \"Mars\" is not a region id"),
        (spec("web-1", r#","type":"nano""#), "field type: \"nano\" is not a Linode type id"),
        (spec("web-1", r#","image":"debian""#), "field image: \"debian\" is not an image id"),
    ] {
        let out = api.run(&["-p", "linode", "create"], &spec_line);
        assert_eq!(out.status, 1);
        assert!(out.stderr.contains(message), "{message}: {}", out.stderr);
    }
    assert_eq!(double.stats().requests, 0, "nothing was sent");
    let out = api.run(&["-p", "linode", "volume", "create", "vol-1", "--size", "5G"], "");
    assert!(out.stderr.contains("field size: 5 GiB: volumes are 10 to 16384 GiB"), "{}", out.stderr);
    assert_eq!(double.stats().requests, 0, "nothing was sent");
    // The API's own field errors keep their field.
    let out = api.run(&["linode", "volumes", "create", "--data", r#"{"label":"vol-1","size":20}"#], "");
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("400 field region: region is required"), "{}", out.stderr);
    let out = api.run(
        &[
            "linode",
            "instances",
            "create",
            "--data",
            r#"{"label":"abc","region":"us-east","type":"g6-nanode-1","image":"linode/debian12","root_pass":"short"}"#,
        ],
        "",
    );
    assert!(out.stderr.contains("field root_pass: Password does not meet strength requirement."), "{}", out.stderr);
}

#[test]
fn volumes_disks_images_domains_firewalls_nodebalancers_and_events() {
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    let json = |out: Run| out.ok().json_lines();
    let node = &api.run(&["-p", "linode", "create", "--cluster", "st", "--count", "1"], "").ok().nodes()[0];
    let id = node.provider_id.clone();
    // Volumes through the provider: attached, with its stable path.
    let vol =
        &json(api.run(&["-p", "linode", "volume", "create", "data-1", "--size", "20G", "--attach", "st-1"], ""))[0];
    assert_eq!(vol["attached_to"], "st-1");
    assert_eq!(vol["path"], "/dev/disk/by-id/scsi-0Linode_Volume_data-1");
    let vol = &json(api.run(&["-p", "linode", "volume", "detach", "data-1"], ""))[0];
    assert!(vol.get("attached_to").is_none());
    api.run(&["-p", "linode", "volume", "delete", "data-1"], "").ok();
    assert!(json(api.run(&["-p", "linode", "volume", "list"], "")).is_empty());
    // A disk on an instance without an image: ready once listed (its GET 404s for a moment).
    let bare = &json(api.run(
        &[
            "linode",
            "instances",
            "create",
            "--data",
            r#"{"label":"bare-1","region":"us-east","type":"g6-standard-1"}"#,
            "--wait",
        ],
        "",
    ))[0];
    assert_eq!(bare["status"], "offline");
    let bid = bare["id"].to_string();
    let disk =
        &json(api.run(&["linode", "disks", "create", &bid, "--data", r#"{"label":"data","size":2048}"#, "--wait"], ""))
            [0];
    assert_eq!(disk["status"], "ready");
    // An image captured from it, and one uploaded.
    let img = &json(api.run(
        &[
            "linode",
            "images",
            "create",
            "--data",
            &format!(r#"{{"disk_id":{},"label":"golden"}}"#, disk["id"]),
            "--wait",
        ],
        "",
    ))[0];
    assert_eq!(img["status"], "available");
    let file = env.state.path().join("disk.img");
    std::fs::write(&file, vec![0u8; 1 << 20]).unwrap();
    assert!(Command::new("gzip").arg(&file).status().unwrap().success());
    let gz = env.state.path().join("disk.img.gz");
    let up = &json(api.run(
        &[
            "linode",
            "images",
            "upload",
            "--data",
            r#"{"label":"uploaded","region":"us-east"}"#,
            "--file",
            gz.to_str().unwrap(),
            "--wait",
        ],
        "",
    ))[0];
    assert_eq!(up["status"], "available");
    // Power actions with --wait; clone.
    let _ = json(api.run(&["linode", "instances", "shutdown", &id, "--wait"], ""));
    let cloned =
        &json(api.run(&["linode", "instances", "clone", &id, "--data", r#"{"label":"st-1-copy"}"#, "--wait"], ""))[0];
    assert_eq!(cloned["label"], "st-1-copy");
    // A private address for an instance without one.
    let ip = &json(api.run(&["linode", "ips", "create", &bid, "--data", r#"{"type":"ipv4","public":false}"#], ""))[0];
    assert!(ip["address"].as_str().unwrap().starts_with("192.168."));
    // Domains and records.
    let dom = &json(api.run(
        &[
            "linode",
            "domains",
            "create",
            "--data",
            r#"{"domain":"st.example","type":"master","soa_email":"ops@st.example"}"#,
        ],
        "",
    ))[0];
    let did = dom["id"].to_string();
    json(api.run(
        &["linode", "records", "create", &did, "--data", r#"{"type":"A","name":"www","target":"203.0.113.7"}"#],
        "",
    ));
    let bad =
        api.run(&["linode", "records", "create", &did, "--data", r#"{"type":"A","name":"www","target":"nope"}"#], "");
    assert!(bad.stderr.contains("field target"), "{}", bad.stderr);
    assert_eq!(json(api.run(&["linode", "records", "list", &did], "")).len(), 1);
    // Cloud Firewalls: rules and devices.
    let fw = &json(api.run(
        &[
            "linode",
            "firewalls",
            "create",
            "--data",
            r#"{"label":"st-fw","rules":{"inbound_policy":"DROP","outbound_policy":"ACCEPT"}}"#,
        ],
        "",
    ))[0];
    let fid = fw["id"].to_string();
    let rules = r#"{"inbound":[{"action":"ACCEPT","protocol":"TCP","ports":"22","addresses":{"ipv4":["192.168.128.0/17"]}}],"inbound_policy":"DROP","outbound_policy":"ACCEPT"}"#;
    let rules_file = env.state.path().join("rules.json");
    std::fs::write(&rules_file, rules).unwrap();
    let from_file = format!("@{}", rules_file.display());
    let set = &json(api.run(&["linode", "firewall-rules", "update", &fid, "--data", &from_file], ""))[0];
    assert_eq!(set["inbound"][0]["ports"], "22");
    json(api.run(
        &["linode", "firewall-devices", "create", &fid, "--data", &format!(r#"{{"type":"linode","id":{id}}}"#)],
        "",
    ));
    assert_eq!(json(api.run(&["linode", "firewall-devices", "list", &fid], "")).len(), 1);
    // NodeBalancers, configs, nodes.
    let nb =
        &json(api.run(&["linode", "nodebalancers", "create", "--data", r#"{"label":"st-nb","region":"us-east"}"#], ""))
            [0];
    let nid = nb["id"].to_string();
    let cfg = &json(
        api.run(&["linode", "nodebalancer-configs", "create", &nid, "--data", r#"{"port":80,"protocol":"tcp"}"#], ""),
    )[0];
    let cid = cfg["id"].to_string();
    let private = node.private_ipv4[0].to_string();
    json(api.run(
        &[
            "linode",
            "nodebalancer-nodes",
            "create",
            &nid,
            &cid,
            "--data",
            &format!(r#"{{"label":"st-1","address":"{private}:80"}}"#),
        ],
        "",
    ));
    assert_eq!(json(api.run(&["linode", "nodebalancer-nodes", "list", &nid, &cid], "")).len(), 1);
    // Tags, StackScripts, types, regions, events since a time.
    json(api.run(&["linode", "tags", "create", "--data", r#"{"label":"team-x"}"#], ""));
    assert!(json(api.run(&["linode", "tags", "list"], "")).iter().any(|t| t["label"] == "team-x"));
    json(api.run(
        &[
            "linode",
            "stackscripts",
            "create",
            "--data",
            r##"{"label":"st-init","script":"#!/bin/sh\necho hi\n","images":["linode/debian12"]}"##,
        ],
        "",
    ));
    assert!(json(api.run(&["linode", "types", "list"], "")).iter().any(|t| t["id"] == "g6-nanode-1"));
    let events = json(api.run(&["linode", "events", "list", "--since", "2000-01-01T00:00:00"], ""));
    assert!(events.iter().any(|e| e["action"] == "linode_shutdown"), "{events:?}");
    let none = json(api.run(&["linode", "events", "list", "--since", "2999-01-01T00:00:00"], ""));
    assert!(none.is_empty());
    // Delete: a node goes; a second delete finds nothing, a failure unless --missing-ok.
    api.run(&["-p", "linode", "delete", "st-1"], "").ok();
    let again = api.run(&["-p", "linode", "delete", "st-1"], "");
    assert_eq!(again.status, 1, "{}", again.stderr);
    assert!(again.stderr.contains("delete st-1: no node named st-1 on linode"), "{}", again.stderr);
    assert!(api.run(&["-p", "linode", "delete", "--missing-ok", "st-1"], "").ok().stderr.contains("no such node"));
}

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
fn the_token_never_shows_and_linode_cli_configuration_works() {
    let env = Env::new();
    let double = Double::start(Config { token: "s3cr3t-t0ken-value".into(), ..Config::fast() });
    let api = Api { env: &env, double: &double };
    let out = api.run(&["-vv", "linode", "regions", "list"], "").ok();
    assert!(!out.stderr.contains("s3cr3t") && !out.stdout.contains("s3cr3t"), "{}", out.stderr);
    assert!(out.stderr.contains("linode api"), "debug logging is on: {}", out.stderr);
    // A wrong token: the API's refusal, not the token.
    let out = api.command(&["-vv", "linode", "regions", "list"]).env("LINODE_TOKEN", "wr0ng-t0ken").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("401 Invalid Token") && !stderr.contains("wr0ng"), "{stderr}");
    // linode-cli's own configuration, when no variable is set.
    let config = env.state.path().join(".config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("linode-cli"), "[DEFAULT]\ndefault-user = ops\n\n[ops]\ntoken = s3cr3t-t0ken-value\n")
        .unwrap();
    let out = api
        .command(&["linode", "regions", "list"])
        .env_remove("LINODE_TOKEN")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // And none at all: a clear error.
    std::fs::remove_file(config.join("linode-cli")).unwrap();
    let out = api
        .command(&["linode", "regions", "list"])
        .env_remove("LINODE_TOKEN")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Linode API token"));
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
fn bulk_create_streams_each_node_as_it_is_ready() {
    // One create at a time: the first record must come out while later nodes are still to
    // be made (it used to come only after the last create had started).
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    let specs: String = (1..=4).map(|i| spec(&format!("web-{i}"), "")).collect();
    let mut child = api
        .command(&["-p", "linode", "create", "--parallel", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::{BufRead, Write};
    child.stdin.take().unwrap().write_all(specs.as_bytes()).unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first record").unwrap();
    let made_by_then = double.stats().created_labels.values().sum::<u32>();
    assert!(first.contains("\"web-1\""), "{first}");
    assert!(made_by_then < 4, "the first record came only after all {made_by_then} creates");
    assert_eq!(lines.count(), 3);
    assert!(child.wait().unwrap().success());
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
    let node = |name: &str, private: &str, public: Option<&str>| {
        let public = public.map_or(String::new(), |p| format!(r#","public_ipv4":["{p}"]"#));
        format!(
            r#"{{"kind":"node","v":1,"cluster":"zk","group":"server","name":"{name}","provider":"local","status":"running","private_ipv4":["{private}"]{public}}}"#
        ) + "\n"
    };
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
