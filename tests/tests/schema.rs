//! schemas/records.schema.json is what the types say, and what the tools print matches it.

use std::path::Path;

#[test]
fn the_records_schema_is_generated_from_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/records.schema.json");
    let generated = lct_tests::schema::text();
    if std::env::var_os("LCT_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(on_disk == generated, "{} is stale: run LCT_BLESS=1 cargo test -p lct-tests --test schema", path.display());
    let doc = lct_tests::schema::document();
    let kinds: Vec<&str> = doc["oneOf"].as_array().unwrap().iter().filter_map(|r| r["$ref"].as_str()).collect();
    for kind in [
        "node",
        "cluster",
        "node-spec",
        "volume",
        "lab",
        "exec-result",
        "host-entry",
        "hosts-apply",
        "hosts-push",
        "dns-record",
        "dns-update",
        "fw-ruleset",
        "fw-sync",
        "fw-cloud-sync",
    ] {
        assert!(kinds.contains(&format!("#/$defs/{kind}").as_str()), "{kind} is not in the schema");
    }
}

#[test]
fn the_plan_schema_is_generated_from_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/plan.schema.json");
    let mut generated = serde_json::to_string_pretty(&schemars::schema_for!(lct_plan::Plan)).unwrap();
    generated.push('\n');
    if std::env::var_os("LCT_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    assert!(
        std::fs::read_to_string(&path).unwrap_or_default() == generated,
        "{} is stale: run LCT_BLESS=1 cargo test -p lct-tests --test schema",
        path.display()
    );
    // Every packaged plan is valid against it, as an editor would check it.
    let validator = jsonschema::validator_for(&serde_json::from_str(&generated).unwrap()).unwrap();
    for package in lct_plan::PACKAGES {
        let name = package.name;
        let value: serde_json::Value = serde_norway::from_str(package.plan).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&value).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "package:{name}: {errors:?}");
    }
}

/// Every line a tool printed, checked against the schema; the first mismatch named.
fn assert_valid(validator: &jsonschema::Validator, tool: &str, output: &str) -> usize {
    let mut n = 0;
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{tool} printed a line the schema refuses: {line}\n{errors:?}");
        n += 1;
    }
    n
}

#[test]
fn what_the_tools_print_matches_the_schema() {
    let schema = lct_tests::schema::document();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    // And it refuses what the tools would refuse.
    assert!(!validator.is_valid(&serde_json::json!({"kind": "node", "cluster": "Zk", "group": "g", "name": "n",
                                                     "provider": "local", "status": "running"})));
    assert!(!validator.is_valid(&serde_json::json!({"kind": "dns-record", "zone": "a.", "name": "a.", "type": "MX",
                                                     "ttl": 1, "data": "x", "view": "both"})));

    let env = lct_tests::Env::new();
    let nodes = concat!(
        r#"{"kind":"node","v":1,"cluster":"zk","group":"server","name":"zk-1","provider":"local","status":"running","private_ipv4":["192.168.128.1"],"public_ipv4":["203.0.113.1"],"public_ipv6":["2001:db8::1"],"access":{"method":"netns","netns":"lct-zk-1"}}"#,
        "\n",
        r#"{"kind":"node","v":1,"cluster":"pg","group":"db","name":"pg-1","provider":"linode","status":"offline","private_ipv4":["192.168.128.2"],"access":{"method":"ssh","host":"203.0.113.2"},"volumes":[{"label":"data","size_mib":1024,"path":"/dev/x"}]}"#,
        "\n"
    );
    env.run("lct-inventory", &["clusters", "set", "zk", "--domain", "zk.lct.internal"]).ok();
    env.run("lct-inventory", &["clusters", "set", "pg", "--depends-on", "zk:server:2181/tcp"]).ok();
    env.run("lct-fw", &["declare", "zk", "--admin-cidr", "203.0.113.254/32", "--allow", "self->*:2888-3888/tcp"]).ok();
    let mut checked = 0;
    checked += assert_valid(&validator, "lct-inventory check", nodes);
    checked += assert_valid(
        &validator,
        "lct-inventory clusters list",
        &env.run("lct-inventory", &["clusters", "list", "-o", "jsonl"]).ok().stdout,
    );
    checked += assert_valid(
        &validator,
        "lct-hosts render",
        &env.run_with_input("lct-hosts", &["render", "--public"], nodes).ok().stdout,
    );
    let hosts = env.state.path().join("hosts");
    let apply = env.run_with_input("lct-hosts", &["apply", "--file", hosts.to_str().unwrap()], nodes).ok();
    checked += assert_valid(&validator, "lct-hosts apply", &apply.stdout);
    checked += assert_valid(
        &validator,
        "lct-dns zone",
        &env.run_with_input("lct-dns", &["zone", "--serial", "1"], nodes).ok().stdout,
    );
    checked += assert_valid(
        &validator,
        "lct-fw render",
        &env.run_with_input("lct-fw", &["render", "--force"], nodes).ok().stdout,
    );
    assert!(checked > 20, "only {checked} lines checked");
}
