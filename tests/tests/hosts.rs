//! lct-hosts end to end: files on disk, and real resolvers (glibc's getent) inside local
//! nodes after a push.

use std::fs;
use std::os::unix::fs::MetadataExt;

use lct_tests::Env;

const NODE_A: &str = r#"{"kind":"node","v":1,"cluster":"a","group":"g","name":"a-1","provider":"local","status":"running","private_ipv4":["192.168.128.1"],"public_ipv4":["203.0.113.1"],"public_ipv6":["2001:db8::1"]}"#;

fn node_line(cluster: &str, name: &str, private: &str) -> String {
    NODE_A
        .replace("\"cluster\":\"a\"", &format!("\"cluster\":\"{cluster}\""))
        .replace("a-1", name)
        .replace("192.168.128.1", private)
}

#[test]
fn render_formats_and_passthrough() {
    let env = Env::new();
    env.run("lct-inventory", &["clusters", "set", "a", "--domain", "a.lct.internal"]).ok();
    let input = format!("{}\n{{\"kind\":\"other\",\"x\":1}}\n{NODE_A}\n", node_line("a", "a-2", "192.168.128.2"));
    let text = env.run_with_input("lct-hosts", &["render", "--format", "hosts"], &input).ok();
    assert_eq!(text.stdout, "192.168.128.1\ta-1.a.lct.internal a-1\n192.168.128.2\ta-2.a.lct.internal a-2\n");
    let public = env
        .run_with_input("lct-hosts", &["render", "--format", "hosts", "--public", "--alias", "a-1=leader"], &input)
        .ok();
    assert_eq!(
        public.stdout,
        "192.168.128.1\ta-1.a.lct.internal a-1 leader\n203.0.113.1\ta-1.public\n2001:db8::1\ta-1.public\n\
         192.168.128.2\ta-2.a.lct.internal a-2\n203.0.113.1\ta-2.public\n2001:db8::1\ta-2.public\n"
    );
    let records = env.run_with_input("lct-hosts", &["render"], &input).ok();
    let lines: Vec<&str> = records.stdout.lines().collect();
    // Every input line passes on unchanged and in order (node records too: the next tool in
    // the pipe needs them), then the entries.
    assert_eq!(lines[..3], input.lines().collect::<Vec<_>>()[..]);
    assert!(
        lines[3].starts_with("{\"kind\":\"host-entry\",\"v\":1,\"cluster\":\"a\",\"node\":\"a-1\""),
        "{}",
        lines[3]
    );
    assert_eq!(lines.len(), 5);
    // render | apply writes what apply alone writes.
    let via_render = env.state.path().join("via-render");
    let direct = env.state.path().join("direct");
    env.run_with_input("lct-hosts", &["apply", "--file", via_render.to_str().unwrap()], &records.stdout).ok();
    env.run_with_input("lct-hosts", &["apply", "--file", direct.to_str().unwrap()], &input).ok();
    assert_eq!(fs::read_to_string(&via_render).unwrap(), fs::read_to_string(&direct).unwrap());
    // ...and the node records still reach the next tool.
    let fw = env.run_with_input("lct-fw", &["render", "--node", "a-2"], &records.stdout).ok();
    assert!(fw.stdout.contains("\"kind\":\"fw-ruleset\""), "{}", fw.stdout);
    // Deterministic: the same membership in another order gives the same bytes.
    let reversed: String = input.lines().rev().map(|l| format!("{l}\n")).collect();
    let again = env.run_with_input("lct-hosts", &["render", "--format", "hosts"], &reversed).ok();
    assert_eq!(again.stdout, text.stdout);
}

#[test]
fn bad_input_leaves_the_file_untouched() {
    let env = Env::new();
    let file = env.state.path().join("hosts");
    fs::write(&file, "127.0.0.1 localhost\n").unwrap();
    let path = file.to_str().unwrap();
    let cases = [
        // the same name for two addresses
        (format!("{NODE_A}\n{}\n", node_line("b", "a-1", "192.168.128.9")), "is given to both"),
        // not an address
        (NODE_A.replace("192.168.128.1", "192.168.128.256"), "line 1: field private_ipv4[0]"),
        // not a host name
        (
            r#"{"kind":"host-entry","cluster":"a","node":"a-1","scope":"private","address":"192.168.128.1","names":["bad_name"]}"#.to_string(),
            "\"bad_name\" is not a valid host name",
        ),
        (
            r#"{"kind":"host-entry","cluster":"a","node":"a-1","scope":"private","address":"10.0.0.300","names":["x"]}"#.to_string(),
            "line 1: field address",
        ),
    ];
    for (input, expected) in cases {
        let out = env.run_with_input("lct-hosts", &["apply", "--file", path], &input);
        assert_eq!(out.status, 1, "{input}");
        assert!(out.stderr.contains(expected), "expected {expected:?} in {}", out.stderr);
        assert_eq!(fs::read_to_string(&file).unwrap(), "127.0.0.1 localhost\n");
    }
    let out = env.run_with_input("lct-hosts", &["apply", "--file", path, "--alias", "a-1=no_good"], NODE_A);
    assert_eq!(out.status, 2, "a bad alias is a usage error: {}", out.stderr);

    // Broken markers in the file: refused with the line, nothing written.
    fs::write(&file, "127.0.0.1 localhost\n# BEGIN lct-hosts cluster a\n1.2.3.4 x\n").unwrap();
    let out = env.run_with_input("lct-hosts", &["apply", "--file", path], NODE_A);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("line 2: the block of cluster a has no end line"), "{}", out.stderr);
    assert_eq!(fs::read_to_string(&file).unwrap(), "127.0.0.1 localhost\n# BEGIN lct-hosts cluster a\n1.2.3.4 x\n");
}

#[test]
fn apply_check_diff_remove_and_no_write_when_unchanged() {
    let env = Env::new();
    let file = env.state.path().join("hosts");
    let hand = "127.0.0.1\tlocalhost\n# kept as is\n10.0.0.1   by-hand   # spacing kept\n";
    fs::write(&file, hand).unwrap();
    let path = file.to_str().unwrap();

    let check = env.run_with_input("lct-hosts", &["apply", "--file", path, "--check", "--diff"], NODE_A);
    assert_eq!(check.status, 1, "a due change fails --check");
    assert!(check.stdout.contains("+192.168.128.1\ta-1.a.lct.internal a-1"), "{}", check.stdout);
    assert_eq!(fs::read_to_string(&file).unwrap(), hand);

    let applied = env.run_with_input("lct-hosts", &["apply", "--file", path], NODE_A).ok();
    let report = &applied.json_lines()[0];
    assert_eq!((report["kind"].as_str(), report["changed"].as_bool()), (Some("hosts-apply"), Some(true)));
    let written = fs::read_to_string(&file).unwrap();
    assert_eq!(
        written,
        format!(
            "{hand}# BEGIN lct-hosts cluster a\n192.168.128.1\ta-1.a.lct.internal a-1\n# END lct-hosts cluster a\n"
        )
    );

    let inode = fs::metadata(&file).unwrap().ino();
    let mtime = fs::metadata(&file).unwrap().mtime_nsec();
    let again = env.run_with_input("lct-hosts", &["apply", "--file", path], NODE_A).ok();
    assert_eq!(again.json_lines()[0]["changed"], false);
    assert_eq!((fs::metadata(&file).unwrap().ino(), fs::metadata(&file).unwrap().mtime_nsec()), (inode, mtime));
    env.run_with_input("lct-hosts", &["apply", "--file", path, "--check"], NODE_A).ok();

    env.run("lct-hosts", &["apply", "--file", path, "--remove", "a"]).ok();
    assert_eq!(fs::read_to_string(&file).unwrap(), hand);
}

#[test]
fn concurrent_applies_never_interleave() {
    let env = Env::new();
    let file = env.state.path().join("hosts");
    fs::write(&file, "127.0.0.1 localhost\n").unwrap();
    let path = file.to_str().unwrap().to_string();
    let children: Vec<_> = (1..=12)
        .map(|i| {
            let mut cmd = env.command("lct-hosts", &["apply", "--file", &path]);
            let mut child =
                cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap();
            let input = node_line(&format!("c{i}"), &format!("n-{i}"), &format!("192.168.128.{i}"));
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
            child
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let text = fs::read_to_string(&file).unwrap();
    for i in 1..=12 {
        assert!(
            text.contains(&format!("# BEGIN lct-hosts cluster c{i}\n192.168.128.{i}\tn-{i}.c{i}.lct.internal n-{i}\n")),
            "c{i} lost:\n{text}"
        );
    }
}

/// The names a node's resolver finds, through glibc's getent inside its namespace.
fn resolves(env: &Env, node: &str, name: &str) -> Option<String> {
    let out = env.in_ns(node, &["getent", "hosts", name]);
    (out.status == 0).then(|| out.stdout.split_whitespace().next().unwrap_or_default().to_string())
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn push_reaches_every_node_of_the_cluster_and_its_dependents() {
    let env = Env::new();
    env.run("lct-api", &["create", "--cluster", "zk", "--count", "3"]).ok();
    env.run("lct-api", &["create", "--cluster", "hdfs", "--count", "2"]).ok();
    env.run("lct-api", &["create", "--cluster", "web", "--count", "1"]).ok();
    env.run("lct-inventory", &["clusters", "set", "zk", "--domain", "zk.lct.internal"]).ok();
    env.run("lct-inventory", &["clusters", "set", "hdfs", "--depends-on", "zk:node:2181/tcp"]).ok();
    // An operator's own line on a node.
    let hosts_of = |node: &str| std::path::Path::new("/etc/netns").join(env.ns(node)).join("hosts");
    let mut hand = fs::read_to_string(hosts_of("zk-1")).unwrap();
    hand.push_str("10.20.30.40 added-by-hand\n");
    fs::write(hosts_of("zk-1"), &hand).unwrap();

    let out = env.run("lct-hosts", &["push"]).ok();
    let reports = out.json_lines();
    assert_eq!(reports.len(), 6);
    assert!(reports.iter().all(|r| r["kind"] == "hosts-push" && r["status"] == "changed"), "{}", out.stdout);

    let ip = |n: usize| format!("192.168.128.{n}");
    for node in ["zk-1", "zk-2", "zk-3"] {
        assert_eq!(resolves(&env, node, "zk-2.zk.lct.internal"), Some(ip(2)));
        assert_eq!(resolves(&env, node, "zk-3"), Some(ip(3)));
        assert_eq!(resolves(&env, node, "hdfs-1"), None, "zk does not depend on hdfs");
    }
    for node in ["hdfs-1", "hdfs-2"] {
        assert_eq!(resolves(&env, node, "zk-1.zk.lct.internal"), Some(ip(1)));
        assert_eq!(resolves(&env, node, "hdfs-2"), Some(ip(5)));
        assert_eq!(resolves(&env, node, "web-1"), None);
    }
    assert_eq!(resolves(&env, "web-1", "zk-1"), None);
    assert_eq!(resolves(&env, "web-1", "web-1"), Some(ip(6)));
    assert_eq!(resolves(&env, "zk-1", "added-by-hand"), Some("10.20.30.40".into()));

    // The node files were rewritten in place: bind mounts and open readers see the change.
    let inode = fs::metadata(hosts_of("hdfs-1")).unwrap().ino();

    // Unchanged membership: nothing written anywhere.
    let again = env.run("lct-hosts", &["push", "--cluster", "zk"]).ok();
    // zk's three nodes and its dependent's two, each reported.
    assert_eq!(again.json_lines().len(), 5, "{}", again.stdout);
    assert!(again.json_lines().iter().all(|r| r["status"] == "unchanged"), "{}", again.stdout);

    // zk-3 leaves: after a push of zk, its name resolves nowhere; hand-made lines stay.
    env.run("lct-api", &["delete", "zk-3"]).ok();
    let out = env.run("lct-hosts", &["push", "--cluster", "zk"]).ok();
    let changed: Vec<String> = out.json_lines().iter().map(|r| format!("{}={}", r["node"], r["status"])).collect();
    assert_eq!(
        changed,
        ["\"hdfs-1\"=\"changed\"", "\"hdfs-2\"=\"changed\"", "\"zk-1\"=\"changed\"", "\"zk-2\"=\"changed\""]
    );
    for node in ["zk-1", "zk-2", "hdfs-1", "hdfs-2", "web-1"] {
        assert_eq!(resolves(&env, node, "zk-3"), None, "{node} still resolves zk-3");
        assert_eq!(resolves(&env, node, "zk-3.zk.lct.internal"), None);
    }
    assert_eq!(resolves(&env, "zk-1", "added-by-hand"), Some("10.20.30.40".into()));
    assert_eq!(fs::metadata(hosts_of("hdfs-1")).unwrap().ino(), inode, "written in place");

    // A node whose file is broken fails alone; the others are updated; the exit names it.
    fs::write(hosts_of("zk-2"), "# BEGIN lct-hosts cluster zk\n").unwrap();
    env.run("lct-api", &["create", "--cluster", "zk", "--name", "zk-4"]).ok();
    let out = env.run("lct-hosts", &["push", "--cluster", "zk"]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("push failed on 1 of 5 nodes: zk-2"), "{}", out.stderr);
    assert!(out.stderr.contains("has no end line"), "{}", out.stderr);
    assert_eq!(resolves(&env, "hdfs-1", "zk-4"), Some(ip(3)), "the lowest free address is reused");

    // A mistyped cluster pushes nothing, and says so at the default log level.
    let typo = env.run("lct-hosts", &["push", "--cluster", "zkk"]).ok();
    assert!(typo.json_lines().is_empty(), "{}", typo.stdout);
    assert!(typo.stderr.contains("cluster zkk: no nodes and no cluster record"), "{}", typo.stderr);
}

/// Standard input from a file (`< file`) is read whole, in parallel; from a pipe, in chunks.
/// Both give the same output and the same errors, and a file read from an offset (a shell
/// that consumed part of it) is read from there.
#[test]
fn stdin_from_a_file_reads_as_from_a_pipe() {
    use std::io::{Seek, SeekFrom, Write};
    use std::process::Stdio;
    let env = Env::new();
    let lines: Vec<String> = (0..3000)
        .map(|i| node_line(&format!("c{}", i % 3), &format!("n-{i}"), &format!("10.0.{}.{}", i / 250, i % 250)))
        .collect();
    let input = format!("{}\n", lines.join("\n"));
    let path = env.state.path().join("nodes.jsonl");
    let from_file = |skip: u64| {
        let mut file = fs::File::open(&path).unwrap();
        file.seek(SeekFrom::Start(skip)).unwrap();
        let out = env.command("lct-hosts", &["render", "--format", "hosts"]).stdin(Stdio::from(file)).output().unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    fs::write(&path, &input).unwrap();
    let piped = env.run_with_input("lct-hosts", &["render", "--format", "hosts"], &input).ok();
    assert_eq!(piped.stdout.lines().count(), 3000);
    assert_eq!(from_file(0), (Some(0), piped.stdout.clone(), String::new()));
    // From the second line on: the first node is not there.
    let (code, text, _) = from_file(lines[0].len() as u64 + 1);
    assert_eq!((code, text.lines().count()), (Some(0), 2999));
    // (An entry is `ADDRESS\tNAME.CLUSTER.DOMAIN NAME`.)
    assert!(text.contains("10.0.0.1\tn-1.c1.lct.internal n-1\n"), "{text}");
    assert!(!text.contains("\tn-0.c0.lct.internal n-0\n"), "{text}");
    // The first bad line is named, the same way.
    let bad = input.replace("10.0.9.17\"", "10.0.9.317\"");
    fs::File::create(&path).unwrap().write_all(bad.as_bytes()).unwrap();
    let (code, _, stderr) = from_file(0);
    let piped = env.run_with_input("lct-hosts", &["render", "--format", "hosts"], &bad);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("line 2268: field private_ipv4[0]"), "{stderr}");
    assert_eq!(stderr, piped.stderr);
}
