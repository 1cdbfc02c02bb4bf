//! package:redis-sentinel on machine nodes: a primary, replicas and a Sentinel on each node;
//! a scale 3 -> 4 -> 3 the replicas and Sentinels follow; the primary's node deleted behind
//! lct's back: Sentinel promotes a replica, a client that asks Sentinel for the primary keeps
//! writing, and `lct-plan reconcile` makes a replacement that joins as a replica with the
//! data written before. The password never on a command line, in a log or in the status;
//! Redis and Sentinel listen on the private address and localhost only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lct_tests::Env;
use lct_tests::fixtures::settle;

/// The password as the node's own Redis configuration has it, in redis-cli's environment
/// (never on its command line): a generated password is letters and digits.
const AUTH: &str =
    r#"REDISCLI_AUTH="$(awk '$1=="requirepass" {gsub(/"/, "", $2); print $2; exit}' /etc/redis/redis.conf)""#;

/// redis-cli on `node` against `address:port` with the password; its output, trimmed.
fn cli(env: &Env, node: &str, address: &str, port: u16, args: &str) -> String {
    let command = format!("{AUTH} redis-cli --no-auth-warning -h {address} -p {port} {args}");
    env.ssh(node, &command).stdout.trim().to_string()
}

/// `INFO replication` of the Redis on `node`, by field.
fn replication(env: &Env, node: &str) -> BTreeMap<String, String> {
    cli(env, node, "127.0.0.1", 6379, "INFO replication")
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What the Sentinel on `node` knows of the primary `redis` (the cluster's name), by field (`ip`, `num-slaves`,
/// `num-other-sentinels`, ...).
fn sentinel_master(env: &Env, node: &str) -> BTreeMap<String, String> {
    let out = cli(env, node, "127.0.0.1", 26379, "SENTINEL master redis");
    let lines: Vec<&str> = out.lines().collect();
    lines.chunks(2).filter(|p| p.len() == 2).map(|p| (p[0].to_string(), p[1].to_string())).collect()
}

/// The primary the Sentinel at `sentinel` names, asked from `node`.
fn asked_master(env: &Env, node: &str, sentinel: &str) -> String {
    cli(env, node, sentinel, 26379, "SENTINEL get-master-addr-by-name redis").lines().next().unwrap_or("").to_string()
}

/// The addresses TCP `port` listens on in `node`'s namespace.
fn listening(env: &Env, node: &str, port: u16) -> Vec<String> {
    let out = env.in_ns(node, &["ss", "-Hltn", "sport", "=", &format!(":{port}")]);
    let mut addresses: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|local| local.rsplit_once(':'))
        .map(|(address, _)| address.to_string())
        .collect();
    addresses.sort();
    addresses
}

/// Whether a TCP connection from namespace `ns` to `address:port` is accepted.
fn tcp_connects(ns: &str, address: &str, port: u16) -> bool {
    std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nc", "-z", "-w", "2", address, &port.to_string()])
        .status()
        .unwrap()
        .success()
}

/// The Redis on `node` replicates from `master` with its link up.
fn replicates_from(env: &Env, node: &str, master: &str) -> bool {
    let r = replication(env, node);
    r.get("role").map(String::as_str) == Some("slave")
        && r.get("master_host").map(String::as_str) == Some(master)
        && r.get("master_link_status").map(String::as_str) == Some("up")
}

/// Every Sentinel of `nodes` names `master`, with the others as replicas and Sentinels.
fn sentinels_agree(env: &Env, nodes: &[&str], master: &str) -> Vec<(String, String, String)> {
    let want = (master.to_string(), (nodes.len() - 1).to_string(), (nodes.len() - 1).to_string());
    settle(
        Duration::from_secs(30),
        || {
            nodes
                .iter()
                .map(|n| {
                    let m = sentinel_master(env, n);
                    let field = |k: &str| m.get(k).cloned().unwrap_or_default();
                    (field("ip"), field("num-slaves"), field("num-other-sentinels"))
                })
                .collect::<Vec<_>>()
        },
        |views| views.iter().all(|v| *v == want),
    )
}

#[test]
#[ignore = "needs root: machine nodes (namespaces, overlays, systemd-nspawn) with Redis and Sentinel"]
fn redis_sentinel_scales_fails_over_and_replaces_the_lost_primary() {
    let env = Env::new();
    let timed = |args: &[&str]| {
        let start = Instant::now();
        env.run("lct-plan", args).ok();
        eprintln!("lct-plan {}: {:.1} s", args.join(" "), start.elapsed().as_secs_f64());
    };
    timed(&["create", "redis", "package:redis-sentinel"]);
    let ip: BTreeMap<&str, String> =
        ["redis-1", "redis-2", "redis-3"].iter().map(|n| (*n, env.node_address(n, "private_ipv4"))).collect();
    // The first node is the primary, the others replicate from it; every Sentinel knows them all.
    let primary = replication(&env, "redis-1");
    assert_eq!((primary["role"].as_str(), primary["connected_slaves"].as_str()), ("master", "2"), "{primary:?}");
    for node in ["redis-2", "redis-3"] {
        assert!(replicates_from(&env, node, &ip["redis-1"]), "{node}: {:?}", replication(&env, node));
    }
    let views = sentinels_agree(&env, &["redis-1", "redis-2", "redis-3"], &ip["redis-1"]);
    assert!(views.iter().all(|v| *v == (ip["redis-1"].clone(), "2".into(), "2".into())), "{views:?}");

    // The password: generated, required by Redis and Sentinel, in 0640 files of redis only,
    // never on a command line, in the status or a log.
    let state = std::fs::read_to_string(env.state.path().join("plans/redis/cluster.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let password = state["parameters"]["password"].as_str().unwrap().to_string();
    assert_eq!(password.len(), 24);
    for port in [6379, 26379] {
        let refused = env.ssh("redis-2", &format!("redis-cli -h {} -p {port} PING", ip["redis-1"])).stdout;
        assert!(refused.contains("NOAUTH"), "port {port} answers without the password: {refused}");
    }
    let modes = env.ssh("redis-1", "stat -c '%a %U %G' /etc/redis/redis.conf /etc/redis/sentinel.conf").stdout;
    assert_eq!(modes, "640 redis redis\n640 redis redis\n");
    let processes = env.ssh("redis-1", "ps -eo args").stdout;
    assert!(processes.contains("redis-sentinel") && !processes.contains(&password), "{processes}");
    let dir = env.state.path().join("plans/redis");
    let mut files: Vec<std::path::PathBuf> =
        std::fs::read_dir(dir.join("events")).unwrap().map(|e| e.unwrap().path()).collect();
    files.extend(std::fs::read_dir(dir.join("logs")).unwrap().map(|e| e.unwrap().path()));
    for f in files {
        assert!(!std::fs::read_to_string(&f).unwrap().contains(&password), "the password in {}", f.display());
    }
    let status = env.run("lct-plan", &["status", "redis"]).ok().stdout;
    assert!(!status.contains(&password), "{status}");
    assert!(status.contains("master_name = redis"), "{status}");
    assert!(
        status.contains(
            "sentinels = redis-1.redis.lct.internal:26379,redis-2.redis.lct.internal:26379,redis-3.redis.lct.internal:26379"
        ),
        "{status}"
    );
    // Both listen on the private address and localhost only; the outside reaches neither.
    let outside = format!("{}-outside", env.lab);
    for port in [6379, 26379] {
        let mut want = vec!["127.0.0.1".to_string(), ip["redis-2"].clone()];
        want.sort();
        assert_eq!(listening(&env, "redis-2", port), want, "port {port}");
        assert!(
            !tcp_connects(&outside, &env.node_address("redis-2", "public_ipv4"), port),
            "the outside reaches {port}"
        );
    }

    // A dependent reaches both ports and reads both offers; a cluster that does not depend
    // on redis reaches neither.
    let client = |depends: &str| {
        format!(
            "description: a client\nparameters:\n  marker: {{type: string, description: a file}}\ngroups:\n  \
             node: {{count: 1, image: lct/netns}}\n{depends}hooks:\n  created:\n    - action: firewall\n    - run: \
             'echo \"$LCT_OFFER_REDIS_SENTINELS $LCT_OFFER_REDIS_MASTER_NAME\" > \"$LCT_PARAM_MARKER\"'\n"
        )
    };
    let uses = "depends_on:\n  redis:\n    cluster: redis\n    services: [redis.redis, redis.sentinel]\n    \
                uses: [sentinels, master_name]\n";
    for (name, text) in [("app", client(uses)), ("other", client(""))] {
        let file = env.state.path().join(format!("{name}.yaml"));
        std::fs::write(&file, text).unwrap();
        let marker = format!("marker={}", env.state.path().join(format!("{name}.offers")).display());
        env.run("lct-plan", &["create", name, file.to_str().unwrap(), "--set", &marker]).ok();
    }
    let offers = std::fs::read_to_string(env.state.path().join("app.offers")).unwrap();
    assert_eq!(
        offers,
        "redis-1.redis.lct.internal:26379,redis-2.redis.lct.internal:26379,redis-3.redis.lct.internal:26379 redis\n"
    );
    for port in [6379, 26379] {
        assert!(tcp_connects(&env.ns("app-1"), &ip["redis-3"], port), "the dependent does not reach {port}");
        assert!(!tcp_connects(&env.ns("other-1"), &ip["redis-3"], port), "a cluster not depending reaches {port}");
    }
    env.run("lct-plan", &["destroy", "app"]).ok();
    env.run("lct-plan", &["destroy", "other"]).ok();

    // A key written on the primary reaches the replicas.
    assert_eq!(cli(&env, "redis-1", "127.0.0.1", 6379, "SET before written"), "OK");
    let on_replica =
        settle(Duration::from_secs(10), || cli(&env, "redis-3", "127.0.0.1", 6379, "GET before"), |v| v == "written");
    assert_eq!(on_replica, "written");

    // Scale 3 -> 4 -> 3: the new node replicates with the data; the Sentinels follow both ways.
    timed(&["scale", "redis", "redis", "4"]);
    assert!(replicates_from(&env, "redis-4", &ip["redis-1"]), "{:?}", replication(&env, "redis-4"));
    assert_eq!(cli(&env, "redis-4", "127.0.0.1", 6379, "GET before"), "written");
    let four = ["redis-1", "redis-2", "redis-3", "redis-4"];
    let views = sentinels_agree(&env, &four, &ip["redis-1"]);
    assert!(views.iter().all(|v| *v == (ip["redis-1"].clone(), "3".into(), "3".into())), "{views:?}");
    timed(&["scale", "redis", "redis", "3"]);
    let three = ["redis-1", "redis-2", "redis-3"];
    let views = sentinels_agree(&env, &three, &ip["redis-1"]);
    assert!(
        views.iter().all(|v| *v == (ip["redis-1"].clone(), "2".into(), "2".into())),
        "the removed node is remembered: {views:?}"
    );

    // The primary's node goes behind lct's back. A client on redis-2 asks its Sentinel for
    // the primary and writes there: within moments the Sentinels promote a replica, and the
    // client's writes succeed on it.
    env.run("lct-api", &["delete", "redis-1"]).ok();
    let lost = Instant::now();
    let (mut written, mut promoted) = (0, String::new());
    while written < 3 {
        assert!(lost.elapsed() < Duration::from_secs(90), "no write succeeded after the primary was lost");
        let master = asked_master(&env, "redis-2", &ip["redis-2"]);
        if master != ip["redis-1"] && !master.is_empty() {
            let answer = cli(&env, "redis-2", &master, 6379, &format!("SET after {written}"));
            if answer == "OK" {
                if written == 0 {
                    eprintln!(
                        "failover: the first write on the new primary {:.1} s after the loss",
                        lost.elapsed().as_secs_f64()
                    );
                }
                written += 1;
                promoted = master;
                continue;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(promoted == ip["redis-2"] || promoted == ip["redis-3"], "promoted {promoted}");
    assert_eq!(cli(&env, "redis-2", &promoted, 6379, "GET before"), "written", "the promoted replica lost the key");

    // Reconcile finds the loss and makes redis-1 again: it joins as a replica of the new
    // primary, with the key written before the loss and those written after.
    let start = Instant::now();
    let found = env.run("lct-plan", &["reconcile", "redis"]).ok().json_lines();
    eprintln!("lct-plan reconcile (replacing redis-1): {:.1} s", start.elapsed().as_secs_f64());
    assert_eq!(
        (found[0]["removed"].clone(), found[0]["added"].clone()),
        (serde_json::json!(["redis-1"]), serde_json::json!(["redis-1"]))
    );
    assert!(found[0]["short"].as_array().unwrap().is_empty(), "{:?}", found[0]);
    assert!(replicates_from(&env, "redis-1", &promoted), "{:?}", replication(&env, "redis-1"));
    assert_eq!(cli(&env, "redis-1", "127.0.0.1", 6379, "GET before"), "written");
    assert_eq!(cli(&env, "redis-1", "127.0.0.1", 6379, "GET after"), "2");
    let views = sentinels_agree(&env, &three, &promoted);
    assert!(views.iter().all(|v| *v == (promoted.clone(), "2".into(), "2".into())), "{views:?}");

    env.run("lct-plan", &["destroy", "redis"]).ok();
    assert!(env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().stdout.trim().is_empty());
}

/// A password set by the operator (`--set-file password=...`) reaches redis.conf and
/// sentinel.conf as one quoted value: quotes, backslashes, a newline and a directive after
/// it (`replicaof`, `sentinel notification-script`) stay inside it, as \xHH escapes that
/// Redis's parser reads back to the same bytes.
#[test]
fn a_hostile_password_stays_one_quoted_value_in_both_configurations() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/lct-plan/plans/redis-sentinel/configure.py");
    let hostile = "p\"w\\ \nreplicaof 10.9.9.9 6379\nsentinel notification-script x /tmp/x.sh\té";
    let program = format!(
        r#"
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("configure", {script:?})
configure = importlib.util.module_from_spec(spec); spec.loader.exec_module(configure)
password = sys.stdin.read()
print(json.dumps([configure.redis_config("192.168.128.2", password, "192.168.128.1"),
                  configure.sentinel_config("192.168.128.2", password, "redis", "192.168.128.1", 2)]))
"#,
        script = script.display().to_string()
    );
    let mut python = std::process::Command::new("python3");
    python.args(["-c", &program]);
    let out = lct_tests::run_command(python, hostile);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let configs: Vec<String> = serde_json::from_str(&out.stdout).unwrap();
    for config in &configs {
        let lines: Vec<&str> = config.lines().collect();
        assert!(
            !lines.iter().any(|l| l.starts_with("replicaof 10.9.9.9") || l.contains("notification-script")),
            "{config}"
        );
        let secrets: Vec<&str> = lines
            .iter()
            .filter(|l| l.starts_with("requirepass ") || l.starts_with("masterauth ") || l.contains("-pass "))
            .copied()
            .collect();
        assert!(!secrets.is_empty(), "{config}");
        for line in secrets {
            let value = line.rsplit_once(' ').unwrap().1;
            let inner = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or_else(|| panic!("{line}"));
            // Redis's sdssplitargs: \xHH is one byte; nothing else but letters and digits.
            let (mut bytes, mut rest) = (Vec::new(), inner.as_bytes());
            while let Some((&c, tail)) = rest.split_first() {
                if c == b'\\' {
                    assert_eq!(tail[0], b'x', "{line}");
                    bytes.push(u8::from_str_radix(std::str::from_utf8(&tail[1..3]).unwrap(), 16).unwrap());
                    rest = &tail[3..];
                } else {
                    assert!(c.is_ascii_alphanumeric(), "{line}");
                    bytes.push(c);
                    rest = tail;
                }
            }
            assert_eq!(String::from_utf8(bytes).unwrap(), hostile, "{line}");
        }
    }
}
