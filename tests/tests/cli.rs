//! CLI conventions every binary follows, and bad input on the record stream. No root needed.

use lct_tests::Env;

const BINARIES: [&str; 8] =
    ["lct-api", "lct-inventory", "lct-hosts", "lct-dns", "lct-fw", "lct-image", "lct-plan", "lct-mesh"];

#[test]
fn every_binary_has_help_version_completions_and_man() {
    let env = Env::new();
    for bin in BINARIES {
        let help = env.run(bin, &["--help"]).ok();
        assert!(help.stdout.contains("Examples:"), "{bin} --help has no examples");
        assert!(help.stdout.contains("Exit status"), "{bin} --help does not document exit codes");
        let version = env.run(bin, &["--version"]).ok();
        assert!(version.stdout.starts_with(&format!("{bin} ")), "{bin} --version: {}", version.stdout);
        let usage = env.run(bin, &["--no-such-flag"]);
        assert_eq!(usage.status, 2, "{bin}: a usage error exits 2");
        for shell in ["bash", "zsh", "fish"] {
            let c = env.run(bin, &["completions", shell]).ok();
            assert!(c.stdout.contains(bin), "{bin} completions {shell}");
        }
        let man = env.run(bin, &["man"]).ok();
        assert!(man.stdout.contains(".TH"), "{bin} man is not roff");
    }
}

#[test]
fn man_dir_writes_a_page_per_subcommand() {
    let env = Env::new();
    let dir = env.state.path().join("man");
    env.run("lct-inventory", &["man", "--dir", dir.to_str().unwrap()]).ok();
    for page in ["lct-inventory.1", "lct-inventory-query.1", "lct-inventory-exec.1", "lct-inventory-clusters-set.1"] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".SH NAME"), "{page}");
    }
    // The synopsis shows what a user types.
    let set = std::fs::read_to_string(dir.join("lct-inventory-clusters-set.1")).unwrap();
    assert!(set.contains("lct\\-inventory clusters set"), "{set}");
}

#[test]
fn check_reports_every_bad_line_with_its_field() {
    let env = Env::new();
    let input = concat!(
        r#"{"kind":"node","v":1,"cluster":"a","group":"g","name":"a-1","provider":"local","status":"running","private_ipv4":["192.168.128.1"]}"#,
        "\n",
        r#"{"kind":"node","v":1,"cluster":"a","group":"g","name":"a-2","provider":"local","status":"running","private_ipv4":["192.168.128.300"]}"#,
        "\n",
        "this is not json\n",
        r#"{"kind":"node","v":9,"cluster":"a","group":"g","name":"a-3","provider":"local","status":"running"}"#,
        "\n",
        r#"{"kind":"node","v":1,"cluster":"a","group":"g","provider":"local","status":"running"}"#,
        "\n",
        r#"{"kind":"node","v":1,"cluster":"a","group":"g","name":"a-5","provider":"local","status":"sleeping"}"#,
        "\n",
        r#"{"kind":"cluster","v":1,"name":"b","depends_on":[{"cluster":"a","ports":["99999/tcp"]}]}"#,
        "\n",
        r#"{"kind":"something-else","anything":[1,2,3]}"#,
        "\n",
        r#"{"v":1,"name":"x"}"#,
        "\n",
    );
    let out = env.run_with_input("lct-inventory", &["check"], input);
    assert_eq!(out.status, 1, "{}", out.stderr);
    for expected in [
        "line 2: field private_ipv4[0]: invalid IPv4 address syntax",
        "line 3: not a JSON object",
        "line 4: field v: node records of version 9 are newer than this build reads",
        "line 5: field name: missing",
        "line 6: field status: unknown variant `sleeping`",
        "line 7: field depends_on[0].ports[0]:",
        "line 9: field kind: missing",
    ] {
        assert!(out.stderr.contains(expected), "missing {expected:?} in:\n{}", out.stderr);
    }
    assert!(!out.stderr.contains("line 1:") && !out.stderr.contains("line 8:"), "{}", out.stderr);

    let good = env.run_with_input("lct-inventory", &["check"], input.lines().next().unwrap());
    assert_eq!(good.status, 0, "{}", good.stderr);
    assert!(good.stderr.contains("1 node"), "{}", good.stderr);
}

#[test]
fn malformed_exec_input_runs_nothing() {
    let env = Env::new();
    let marker = env.state.path().join("ran");
    let good = r#"{"kind":"node","v":1,"cluster":"a","group":"g","name":"a-1","provider":"local","status":"running","access":{"method":"netns","netns":"nowhere"}}"#;
    let input = format!("{good}\n{}\n", good.replace("a-1", "A 1"));
    let touch = format!("touch {}", marker.display());
    let out = env.run_with_input("lct-inventory", &["exec", "--", "sh", "-c", &touch], &input);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("line 2: field name:"), "{}", out.stderr);
    assert!(!marker.exists(), "a command ran although the input was bad");
}

#[test]
fn clusters_are_kept_and_bad_ones_refused_whole() {
    let env = Env::new();
    env.run("lct-inventory", &["clusters", "set", "zk", "--domain", "zk.lct.internal"]).ok();
    env.run("lct-inventory", &["clusters", "set", "hdfs", "--depends-on", "zk:zookeeper:2181/tcp"]).ok();
    let list = env.run("lct-inventory", &["clusters", "list"]).ok();
    let records = list.json_lines();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["kind"], "cluster");
    assert_eq!(records[0]["name"], "hdfs");
    assert_eq!(records[0]["depends_on"][0]["ports"][0], "2181/tcp");
    assert_eq!(records[1]["domain"], "zk.lct.internal");

    let before = std::fs::read(env.state.path().join("clusters.jsonl")).unwrap();
    // One good record and one bad one: neither is applied.
    let input =
        "{\"kind\":\"cluster\",\"name\":\"kafka\"}\n{\"kind\":\"cluster\",\"name\":\"x\",\"domain\":\"bad..domain\"}\n";
    let out = env.run_with_input("lct-inventory", &["clusters", "set"], input);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("line 2: field domain"), "{}", out.stderr);
    assert_eq!(std::fs::read(env.state.path().join("clusters.jsonl")).unwrap(), before);

    let out = env.run("lct-inventory", &["clusters", "set", "loop", "--depends-on", "loop"]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("depends on itself"), "{}", out.stderr);

    let table = env.run("lct-inventory", &["clusters", "list", "-o", "table"]).ok();
    assert!(table.stdout.starts_with("NAME "), "{}", table.stdout);
    assert!(table.stdout.contains("zk:zookeeper[2181/tcp]"), "{}", table.stdout);
}

#[test]
fn exec_without_nodes_is_a_usage_error_on_a_terminal_only() {
    // Not on a terminal (here stdin is /dev/null): no records means nothing to do.
    let env = Env::new();
    let out = env.run("lct-inventory", &["exec", "--", "true"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let out = env.run("lct-inventory", &["exec", "--cluster", "x"]);
    assert_eq!(out.status, 2, "missing command is a usage error");
}

#[test]
fn exec_passes_unknown_kinds_through() {
    let env = Env::new();
    let input = "{\"kind\":\"host-entry\",\"name\":\"x\",  \"spacing\":\"kept\"}\n";
    let out = env.run_with_input("lct-inventory", &["exec", "--", "true"], input).ok();
    assert_eq!(out.stdout, input);
}

#[test]
fn schema_file_describes_the_records() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/records.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    let full_node: lct_core::Node = serde_json::from_value(serde_json::json!({
        "cluster": "a", "group": "g", "name": "a-1", "provider": "local", "provider_id": "1",
        "region": "local", "status": "running", "private_ipv4": ["192.168.128.1"],
        "public_ipv4": ["203.0.113.1"], "private_ipv6": [], "public_ipv6": ["2001:db8::1"],
        "tags": ["x"], "access": {"method": "netns", "netns": "lct-a-1"},
        "volumes": [{"label": "d", "size_mib": 1, "path": "/dev/x"}]
    }))
    .unwrap();
    let line: serde_json::Value = serde_json::from_str(&lct_core::stream::to_line(&full_node)).unwrap();
    for (def, value) in [("node", &line)] {
        let props = schema["$defs"][def]["properties"].as_object().unwrap_or_else(|| panic!("no $defs.{def}"));
        for key in value.as_object().unwrap().keys() {
            assert!(props.contains_key(key), "schema $defs.{def} lacks property {key}");
        }
        for key in props.keys() {
            assert!(value.get(key).is_some(), "schema $defs.{def} has {key}, which the record never has");
        }
    }
    let cluster: lct_core::Cluster =
        serde_json::from_str(r#"{"name":"b","domain":"b.x","provider":"local","depends_on":[{"cluster":"a","groups":["g"],"ports":["1/tcp"]}]}"#).unwrap();
    let line: serde_json::Value = serde_json::from_str(&lct_core::stream::to_line(&cluster)).unwrap();
    let props = schema["$defs"]["cluster"]["properties"].as_object().unwrap();
    for key in line.as_object().unwrap().keys() {
        assert!(props.contains_key(key), "schema $defs.cluster lacks property {key}");
    }
}

#[test]
fn every_inventory_query_picks_providers_by_one_rule() {
    // The flag, then LCT_PROVIDER, then the selected clusters' records, then the providers
    // that hold state. Asking Linode without
    // a token fails with that reason, which shows it was asked.
    let env = Env::new();
    let no_token = |cmd: &mut std::process::Command| {
        cmd.env_remove("LINODE_TOKEN").env_remove("LINODE_CLI_TOKEN").env("XDG_CONFIG_HOME", env.state.path());
    };
    let asks_linode = |args: &[&str], provider_env: Option<&str>| {
        let mut cmd = env.command(args[0], &args[1..]);
        no_token(&mut cmd);
        if let Some(p) = provider_env {
            cmd.env("LCT_PROVIDER", p);
        }
        let out = lct_tests::run_command(cmd, "");
        out.status != 0 && out.stderr.contains("no Linode API token")
    };
    let queries: [&[&str]; 3] =
        [&["lct-inventory", "query"], &["lct-hosts", "push", "--file", "/nonexistent/hosts"], &["lct-fw", "push"]];
    for q in queries {
        assert!(asks_linode(q, Some("linode")), "{q:?} ignores LCT_PROVIDER");
        // Nothing configured anywhere: the local cloud only.
        assert!(!asks_linode(q, None), "{q:?} asks Linode with nothing configured");
    }
    // A cluster record on Linode makes Linode a provider that holds state.
    env.run("lct-inventory", &["clusters", "set", "far", "--provider", "linode"]).ok();
    for q in queries {
        assert!(asks_linode(q, None), "{q:?} does not ask the provider a cluster record names");
    }
    // A query about clusters asks where their records say their nodes are: near's (local)
    // does not ask Linode (no token needed) and says it found nothing there; far's does; a
    // cluster without a record, every provider that holds state.
    env.run("lct-inventory", &["clusters", "set", "near", "--provider", "local"]).ok();
    assert!(!asks_linode(&["lct-inventory", "query", "--cluster", "near"], None));
    let near = env.run("lct-inventory", &["query", "--cluster", "near", "-o", "jsonl"]).ok();
    assert!(near.stderr.contains("cluster near: no nodes (asked local)"), "{}", near.stderr);
    assert!(asks_linode(&["lct-inventory", "query", "--cluster", "far"], None));
    assert!(asks_linode(&["lct-inventory", "query", "--cluster", "unknown"], None));
    // The flag wins over both.
    assert!(!asks_linode(&["lct-inventory", "query", "--provider", "local"], Some("linode")));
    let bad = env.command("lct-inventory", &["query"]);
    let mut bad = bad;
    bad.env("LCT_PROVIDER", "aws");
    let out = lct_tests::run_command(bad, "");
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("LCT_PROVIDER: \"aws\""), "{}", out.stderr);
    // And each says so in its help.
    for (bin, sub) in [("lct-inventory", "query"), ("lct-hosts", "push"), ("lct-fw", "push")] {
        let help = env.run(bin, &[sub, "--help"]).ok();
        assert!(help.stdout.contains("LCT_PROVIDER"), "{bin} {sub} --help: {}", help.stdout);
    }
}

#[test]
fn prefixes_are_strict_in_declarations() {
    // One prefix type (lct-core): a declaration with host bits set is refused, naming the
    // network that was probably meant.
    let env = Env::new();
    let out = env.run("lct-fw", &["declare", "zk", "--admin-cidr", "10.1.2.3/8"]);
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(out.stderr.contains("has host bits set (did you mean 10.0.0.0/8?)"), "{}", out.stderr);
    let out = env.run("lct-fw", &["declare", "zk", "--allow", "10.1.2.3/8->*:22/tcp"]);
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(out.stderr.contains("did you mean 10.0.0.0/8?"), "{}", out.stderr);
    env.run("lct-fw", &["declare", "zk", "--admin-cidr", "10.0.0.0/8", "--allow", "10.0.0.0/8->*:22/tcp"]).ok();
}

#[test]
fn what_a_tool_leaves_out_it_says_at_the_default_level() {
    let env = Env::new();
    // A mistyped cluster: nothing to push, and a word why (no -v needed).
    let out = env.run("lct-fw", &["push", "--cluster", "zk-typo"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(out.stderr.contains("cluster zk-typo: no nodes and no cluster record"), "{}", out.stderr);
    // A cluster whose name does not fit under a long parent domain: named in the parent,
    // and said once (not once per node).
    let parent = format!("{}.example", ["a".repeat(60), "b".repeat(60), "c".repeat(60), "d".repeat(54)].join("."));
    assert_eq!(parent.len(), 245);
    let node = |name: &str| {
        format!(
            "{{\"kind\":\"node\",\"v\":1,\"cluster\":\"long-cluster-name\",\"group\":\"g\",\"name\":\"{name}\",\"provider\":\"local\",\"status\":\"running\",\"private_ipv4\":[\"192.168.128.1\"]}}\n"
        )
    };
    let input = format!("{}{}", node("n-1"), node("n-2"));
    let out = env.run_with_input("lct-hosts", &["render", "--parent-domain", &parent], &input);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let said = out.stderr.matches("is longer than a domain name may be").count();
    assert_eq!(said, 1, "{}", out.stderr);
    assert!(out.stdout.contains(&format!("n-1.{parent}")), "{}", out.stdout);
}
