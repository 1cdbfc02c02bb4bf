//! schemas/records.schema.json is what the types say, and what the tools print matches it.

use std::collections::BTreeSet;
use std::path::Path;

use lct_linode_double::{Config, Double};

#[test]
fn the_records_schema_is_generated_from_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/records.schema.json");
    let generated = lct_tests::schema::text();
    // The kinds come from the code: lct_core::record::KINDS, which every record written must
    // be on (a compile error otherwise). The document must describe exactly those.
    let listed: BTreeSet<String> = lct_core::record::KINDS.iter().map(|k| k.to_string()).collect();
    let described: BTreeSet<String> = lct_tests::schema::kinds(&lct_tests::schema::document()).into_iter().collect();
    let missing: Vec<_> = listed.difference(&described).collect();
    let unlisted: Vec<_> = described.difference(&listed).collect();
    assert!(
        missing.is_empty() && unlisted.is_empty(),
        "kinds without a schema (add their type to tests/src/schema.rs): {missing:?}; \
         kinds in the schema but not in lct_core::record::KINDS: {unlisted:?}"
    );
    // Blessing rewrites the file; the file is then checked like any other: what follows reads
    // it back from disk, so a bless that wrote something else (or nothing) still fails.
    if std::env::var_os("LCT_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(on_disk == generated, "{} is stale: run LCT_BLESS=1 cargo test -p lct-tests --test schema", path.display());
    let file: serde_json::Value = serde_json::from_str(&on_disk).unwrap();
    let in_file: BTreeSet<String> = lct_tests::schema::kinds(&file).into_iter().collect();
    assert_eq!(in_file, listed, "{} describes other kinds than the code", path.display());
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
    // Node and volume records as lct-api prints them (against the Linode API double: no
    // root, no lab), and fed to the other tools as they would be.
    let double = Double::start(Config::fast());
    let linode = |args: &[&str], input: &str| {
        let mut command = env.command("lct-api", args);
        command
            .env("LINODE_URL", double.url())
            .env("LINODE_TOKEN", double.token())
            .env("LCT_LINODE_POLL", "0.02")
            .env_remove("LINODE_CLI_TOKEN")
            .env("HOME", env.state.path());
        lct_tests::run_command(command, input).ok().stdout
    };
    let specs = concat!(
        r#"{"kind":"node-spec","cluster":"zk","group":"server","name":"zk-1"}"#,
        "\n",
        r#"{"kind":"node-spec","cluster":"pg","group":"db","name":"pg-1"}"#,
        "\n"
    );
    let nodes = linode(&["-p", "linode", "create", "-o", "jsonl"], specs);
    let volume = linode(&["-p", "linode", "volume", "create", "data-1", "--size", "10G", "-o", "jsonl"], "");
    env.run("lct-inventory", &["clusters", "set", "zk", "--domain", "zk.lct.internal"]).ok();
    env.run("lct-inventory", &["clusters", "set", "pg", "--depends-on", "zk:server:2181/tcp"]).ok();
    env.run("lct-fw", &["declare", "zk", "--admin-cidr", "203.0.113.254/32", "--allow", "self->*:2888-3888/tcp"]).ok();
    let mut checked = 0;
    assert_eq!(nodes.lines().count(), 2, "{nodes}");
    checked += assert_kind(&validator, "lct-api create", &nodes, "node");
    checked += assert_kind(&validator, "lct-api volume create", &volume, "volume");
    checked += assert_valid(
        &validator,
        "lct-inventory clusters list",
        &env.run("lct-inventory", &["clusters", "list", "-o", "jsonl"]).ok().stdout,
    );
    checked += assert_valid(
        &validator,
        "lct-hosts render",
        &env.run_with_input("lct-hosts", &["render", "--public"], &nodes).ok().stdout,
    );
    let hosts = env.state.path().join("hosts");
    let apply = env.run_with_input("lct-hosts", &["apply", "--file", hosts.to_str().unwrap()], &nodes).ok();
    checked += assert_valid(&validator, "lct-hosts apply", &apply.stdout);
    checked += assert_valid(
        &validator,
        "lct-dns zone",
        &env.run_with_input("lct-dns", &["zone", "--serial", "1"], &nodes).ok().stdout,
    );
    checked += assert_valid(
        &validator,
        "lct-fw render",
        &env.run_with_input("lct-fw", &["render", "--force"], &nodes).ok().stdout,
    );
    checked += image_records(&validator, &env);
    assert!(checked > 30, "only {checked} lines checked");
}

/// Lines a tool printed, each valid and of `kind`, at least one.
fn assert_kind(validator: &jsonschema::Validator, tool: &str, output: &str, kind: &str) -> usize {
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["kind"], kind, "{tool}: {line}");
    }
    let n = assert_valid(validator, tool, output);
    assert!(n > 0, "{tool} printed no {kind} line");
    n
}

/// lct-image's records, as it prints them: create (and its progress on stderr), verify,
/// restore, and a repository's add, list and prune.
fn image_records(validator: &jsonschema::Validator, env: &lct_tests::Env) -> usize {
    let dir = env.state.path();
    let disk = dir.join("disk.raw");
    lct_tests::pseudo_random_file(&disk, 9 << 20, 7, 0x0f);
    let (image, copy, repo) = (dir.join("disk.lcti"), dir.join("copy.raw"), dir.join("repo"));
    let [disk, image, copy, repo] = [&disk, &image, &copy, &repo].map(|p| p.to_str().unwrap());
    let run = |args: &[&str]| env.run("lct-image", &[&["-o", "jsonl"], args].concat()).ok();
    let created = run(&["create", disk, image]);
    let mut checked = assert_kind(validator, "lct-image create", &created.stdout, "image-created");
    // Not a terminal: progress goes to stderr as lines, the first one at once.
    let progress: String = created.stderr.lines().filter(|l| l.starts_with('{')).map(|l| format!("{l}\n")).collect();
    checked += assert_kind(validator, "lct-image create (stderr)", &progress, "image-progress");
    checked += assert_kind(validator, "lct-image verify", &run(&["verify", image]).stdout, "image-verified");
    checked += assert_kind(validator, "lct-image restore", &run(&["restore", image, copy]).stdout, "image-restored");
    run(&["repo", "init", repo]);
    let added = run(&["repo", "add", repo, image, "--name", "a"]).stdout;
    checked += assert_kind(validator, "lct-image repo add", &added, "image-added");
    checked += assert_kind(validator, "lct-image repo list", &run(&["repo", "list", repo]).stdout, "image-entry");
    checked += assert_kind(validator, "lct-image repo prune", &run(&["repo", "prune", repo]).stdout, "image-pruned");
    checked
}

/// The source of every tool, without its unit tests: `(file, text)`.
fn shipped_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                // Unit tests sit at a file's end, after `#[cfg(test)]`.
                let shipped = text.split("\n#[cfg(test)]").next().unwrap_or_default().to_string();
                out.push((path.display().to_string(), shipped));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates"), &mut out);
    out
}

/// Each `json!(...)` in `text`, whole (to its balancing parenthesis).
fn json_macros(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for (start, _) in text.match_indices("json!(") {
        let mut depth = 0;
        for (i, c) in text[start..].char_indices() {
            match c {
                '(' | '{' | '[' => depth += 1,
                ')' | '}' | ']' => depth -= 1,
                _ => {}
            }
            if depth == 0 && i > 5 {
                found.push(&text[start..start + i + 1]);
                break;
            }
        }
    }
    found
}

/// What records.md says: no line is built by hand. A `"kind"` key in a `json!`, in a
/// format string, or inserted into a map, outside lct_core::stream, is a record written
/// around its type (and around KINDS and the schema); `with_kind` (Linode's own JSON, passed
/// on) is the one exception.
#[test]
fn no_line_is_built_by_hand() {
    let sources = shipped_sources();
    assert!(sources.len() > 50, "only {} files read", sources.len());
    let mut found = Vec::new();
    // lct_core::stream is where lines are written (and read: a record's prefix).
    for (file, text) in sources.iter().filter(|(f, _)| !f.contains("lct-core/src/stream/")) {
        for json in json_macros(text).into_iter().filter(|j| j.contains("\"kind\"")) {
            found.push(format!("{file}: {json}"));
        }
        for line in text.lines() {
            if line.contains("{{\"kind\"") || line.contains("{{\\\"kind\\\"") || line.contains(".insert(\"kind\"") {
                found.push(format!("{file}: {}", line.trim()));
            }
        }
    }
    let with_kind = |f: &&String| f.contains("lct-api/src/linode/mod.rs: map.insert(\"kind\"");
    let by_hand: Vec<&String> = found.iter().filter(|f| !with_kind(f)).collect();
    assert!(by_hand.is_empty(), "lines built by hand (make them records): {by_hand:#?}");
    assert_eq!(found.len(), 1, "with_kind is no longer where it was: {found:#?}");
    // And the check sees one when there is one.
    let planted = "let line = json!({\n    \"kind\": \"x\", \"v\": 1,\n});";
    assert_eq!(json_macros(planted).len(), 1);
    assert!(json_macros(planted)[0].contains("\"kind\""));
}
