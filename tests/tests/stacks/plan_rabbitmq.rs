//! package:rabbitmq on machine nodes (Debian 12's rabbitmq-server from the lab's mirror): three
//! nodes form one cluster; a message published to a quorum queue survives a scale to four and
//! back to three (join_cluster, then shrink and forget_cluster_node) and the loss of a node
//! deleted behind lct's back (found by reconcile, forgotten), and is consumed after; the Erlang
//! cookie is the generated secret, 0400 rabbitmq, in no log; AMQP listens on private addresses
//! and localhost only, and the outside reaches none of the ports.

use std::time::{Duration, Instant};

use lct_tests::Env;

/// Python on a node: publishes to, or takes one message from, the queue `lct-test` (declared
/// without a type: the plan makes quorum the default) through AMQP at the node's own
/// private address, as the plan's user `lct`.
fn amqp(env: &Env, node: &str, password: &str, action: &str) -> String {
    let program = format!(
        r#"
import pika, socket
address = socket.gethostbyname(socket.getfqdn())
credentials = pika.PlainCredentials("lct", {password:?})
connection = pika.BlockingConnection(pika.ConnectionParameters(address, 5672, "/", credentials))
channel = connection.channel()
channel.queue_declare("lct-test", durable=True)
if {publish}:
    channel.confirm_delivery()
    channel.basic_publish("", "lct-test", b"kept across scale and loss", pika.BasicProperties(delivery_mode=2))
    print("published")
else:
    method, _, body = channel.basic_get("lct-test", auto_ack=True)
    print(body.decode() if body else "empty")
connection.close()
"#,
        publish = if action == "publish" { "True" } else { "False" },
    );
    // A queue electing its leader after a node loss refuses for a moment: asked again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = env.ssh(node, &format!("python3 - <<'EOF'\n{program}\nEOF"));
        if run.status == 0 || Instant::now() > deadline {
            return run.ok().stdout.trim().to_string();
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The cluster's disc nodes as `node` sees them (short names, sorted).
fn members(env: &Env, node: &str) -> Vec<String> {
    let status = env.ssh(node, "rabbitmqctl cluster_status --formatter json").ok().stdout;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}: {status}"));
    let mut names: Vec<String> = status["disk_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().trim_start_matches("rabbit@").split('.').next().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn timed(what: &str, env: &Env, args: &[&str]) -> lct_tests::Run {
    let started = Instant::now();
    let run = env.run("lct-plan", args).ok();
    eprintln!("rabbitmq {what}: {:.1?}", started.elapsed());
    run
}

#[test]
#[ignore = "needs root: machine nodes (namespaces, overlays, systemd-nspawn) with RabbitMQ"]
fn rabbitmq_keeps_a_quorum_queue_message_across_scale_and_node_loss() {
    let env = Env::new();
    let password = "test-only-amqp-password-7f3c";
    let file = env.state.path().join("amqp-password");
    std::fs::write(&file, password).unwrap();
    let set_file = format!("password={}", file.display());
    timed("create (3 nodes)", &env, &["create", "rmq", "package:rabbitmq", "--set-file", &set_file]);
    assert_eq!(members(&env, "rmq-3"), ["rmq-1", "rmq-2", "rmq-3"]);

    // The cookie: the generated secret, 0400 rabbitmq, the same on every node, in no log.
    let cookie =
        env.ssh("rmq-1", "stat -c '%a %U' /var/lib/rabbitmq/.erlang.cookie; cat /var/lib/rabbitmq/.erlang.cookie");
    let lines: Vec<&str> = cookie.stdout.lines().collect();
    assert_eq!(lines[0], "400 rabbitmq");
    let secret = lines[1].to_string();
    assert_eq!(secret.len(), 24);
    assert_eq!(env.ssh("rmq-2", "cat /var/lib/rabbitmq/.erlang.cookie").stdout, secret);
    let logs = env.state.path().join("plans/rmq/logs");
    for entry in std::fs::read_dir(&logs).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(&secret) && !text.contains(password), "a secret in a hook's log");
    }
    // No guest; AMQP on the private address and localhost only; the outside reaches nothing.
    assert!(!env.ssh("rmq-1", "rabbitmqctl list_users --silent").ok().stdout.contains("guest"));
    let own = env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().json_lines();
    let rmq1 = own.iter().find(|n| n["name"] == "rmq-1").unwrap();
    let (private, public) = (rmq1["private_ipv4"][0].as_str().unwrap(), rmq1["public_ipv4"][0].as_str().unwrap());
    let listening = env.in_ns("rmq-1", &["ss", "-Hltn", "sport", "=", ":5672"]).stdout;
    let mut addresses: Vec<&str> =
        listening.lines().filter_map(|l| l.split_whitespace().nth(3)).map(|a| a.rsplit_once(':').unwrap().0).collect();
    addresses.sort();
    assert_eq!(addresses, ["127.0.0.1", private], "{listening}");
    for port in ["5672", "4369", "25672"] {
        let reached = env.in_ns("outside", &["nc", "-z", "-w", "2", public, port]);
        assert_ne!(reached.status, 0, "the outside reaches {port}");
    }

    // Python's AMQP client on the nodes, from Debian through the lab's mirror.
    env.run("lct-api", &["lab", "packages", "add", "python3-pika"]).ok();
    for node in ["rmq-2", "rmq-3"] {
        env.ssh(node, "apt-get update -qq && apt-get install -y -qq python3-pika >/dev/null").ok();
    }
    assert_eq!(amqp(&env, "rmq-2", password, "publish"), "published");
    // Declared without a type: a quorum queue all the same (the vhost's default).
    let queues = env.ssh("rmq-1", "rabbitmqctl list_queues name type --silent").ok().stdout;
    assert!(queues.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["lct-test", "quorum"]), "{queues}");

    timed("scale 3 -> 4", &env, &["scale", "rmq", "node", "4"]);
    assert_eq!(members(&env, "rmq-1"), ["rmq-1", "rmq-2", "rmq-3", "rmq-4"]);
    let queue = env.ssh("rmq-4", "rabbitmq-queues quorum_status lct-test --formatter json").ok().stdout;
    assert!(queue.contains("rmq-4"), "the added node is not in the quorum queue: {queue}");
    timed("scale 4 -> 3", &env, &["scale", "rmq", "node", "3"]);
    assert_eq!(members(&env, "rmq-2"), ["rmq-1", "rmq-2", "rmq-3"]);

    // rmq-1 (the first member) deleted behind lct's back: reconcile finds it, it is forgotten.
    env.run("lct-api", &["delete", "rmq-1"]).ok();
    let started = Instant::now();
    env.run("lct-plan", &["reconcile"]).ok();
    eprintln!("rabbitmq reconcile after a node loss: {:.1?}", started.elapsed());
    assert_eq!(members(&env, "rmq-3"), ["rmq-2", "rmq-3"]);
    assert_eq!(amqp(&env, "rmq-3", password, "get"), "kept across scale and loss");

    env.run("lct-plan", &["destroy", "rmq"]).ok();
    assert!(env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().stdout.trim().is_empty());
}
