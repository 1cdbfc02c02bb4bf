//! lct-api against the Linode API test double: bulk creates that survive faults and rate
//! limits without duplicates and stream each node, every fault knob, paging, filters, bad
//! input named by field, the other resources, and a token that never shows. (Nodes on the
//! Linode path and the tools around them: linode_nodes.rs.)

use std::process::{Command, Stdio};

use lct_linode_double::{Config, Double, FaultKind};
use lct_tests::fixtures::linode::{Api, fault, spec};
use lct_tests::{Env, Run};

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
    // Every spec is checked before any instance is asked for: one refused, none made (the
    // others are told why), nothing left half made.
    assert!(out.nodes().is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("not made: another node of this create was refused"), "{}", out.stderr);
    assert!(double.stats().created_labels.is_empty(), "{}", double.stats().to_json());
    let specs: String = (1..=6).map(|i| spec(&format!("web-{i}"), "")).collect();
    let out = api.run(&["-p", "linode", "create"], &specs).ok();
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
fn nodes_in_several_regions_get_private_addresses_that_overlap_as_linodes_do() {
    let env = Env::new();
    let double = Double::start(Config::fast());
    let api = Api { env: &env, double: &double };
    let specs: String = [("web-1", "us-east"), ("web-2", "eu-west"), ("web-3", "us-east"), ("web-4", "eu-west")]
        .iter()
        .map(|(name, region)| spec(name, &format!(r#","region":"{region}""#)))
        .collect();
    let mut nodes = api.run(&["-p", "linode", "create", "--parallel", "1"], &specs).ok().nodes();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let placed: Vec<(&str, &str, String)> =
        nodes.iter().map(|n| (n.name.as_str(), n.region.as_str(), n.private_ipv4[0].to_string())).collect();
    // Each region's private network is its own: the first node of each gets the same address.
    assert_eq!(
        placed,
        [
            ("web-1", "us-east", "192.168.128.1".to_string()),
            ("web-2", "eu-west", "192.168.128.1".to_string()),
            ("web-3", "us-east", "192.168.128.2".to_string()),
            ("web-4", "eu-west", "192.168.128.2".to_string()),
        ]
    );
    let public: std::collections::BTreeSet<String> = nodes.iter().map(|n| n.public_ipv4[0].to_string()).collect();
    assert_eq!(public.len(), 4, "public addresses are unique across regions");
}
