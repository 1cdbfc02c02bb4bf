//! The local cloud end to end: real namespaces, veths, bridges and loop devices. Needs root.

use lct_tests::Env;

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn three_node_cluster_networks_exec_and_cleanup() {
    let env = Env::new();
    let created = env.run("lct-api", &["create", "--cluster", "demo", "--count", "3"]).ok();
    // Records come out as each node is ready, in any order.
    let sorted = |mut nodes: Vec<lct_core::Node>| {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes
    };
    let nodes = sorted(created.nodes());
    assert_eq!(nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["demo-1", "demo-2", "demo-3"]);
    assert!(nodes.iter().all(|n| n.status == lct_core::record::Status::Running));
    let private: Vec<String> = nodes.iter().map(|n| n.private_ipv4[0].to_string()).collect();
    let public: Vec<String> = nodes.iter().map(|n| n.public_ipv4[0].to_string()).collect();
    let public6: Vec<String> = nodes.iter().map(|n| n.public_ipv6[0].to_string()).collect();
    assert_eq!(private, ["192.168.128.1", "192.168.128.2", "192.168.128.3"]);
    assert_eq!(public, ["203.0.113.1", "203.0.113.2", "203.0.113.3"]);

    // Creating what exists is a no-op: same nodes, same addresses.
    let again = env.run("lct-api", &["create", "--cluster", "demo", "--count", "3"]).ok();
    assert_eq!(sorted(again.nodes()), nodes);

    // Every node reaches every other's private and public addresses.
    for from in ["demo-1", "demo-2", "demo-3"] {
        for to in private.iter().chain(&public) {
            assert!(env.pings(from, to), "{from} cannot reach {to}");
        }
    }
    // The outside reaches public addresses (v4 and v6) only.
    for to in public.iter().chain(&public6) {
        assert!(env.pings("outside", to), "outside cannot reach {to}");
    }
    for to in &private {
        assert!(!env.pings("outside", to), "outside reaches private {to}");
    }
    // The root namespace has no address and no route in the lab's ranges.
    let routes = std::process::Command::new("ip").args(["-j", "route", "show", "table", "all"]).output().unwrap();
    let addrs = std::process::Command::new("ip").args(["-j", "addr", "show"]).output().unwrap();
    for text in [String::from_utf8_lossy(&routes.stdout), String::from_utf8_lossy(&addrs.stdout)] {
        for range in ["192.168.128.", "192.168.129.", "203.0.113.", "198.51.100.", "2001:db8:"] {
            assert!(!text.contains(range), "the root namespace knows {range}: {text}");
        }
    }

    // Each node has its own /etc/hosts and resolv.conf (ip netns exec bind-mounts them).
    let hosts = env.in_ns("demo-2", &["cat", "/etc/hosts"]).ok();
    assert!(hosts.stdout.contains("192.168.128.2\tdemo-2"), "{}", hosts.stdout);
    let resolv = env.in_ns("demo-2", &["cat", "/etc/resolv.conf"]).ok();
    assert!(resolv.stdout.contains("nameserver 127.0.0.1"), "{}", resolv.stdout);

    // query | exec -- hostname: one line per node, each with its own name.
    let query = env.run("lct-inventory", &["query", "--cluster", "demo"]).ok();
    let exec = env.run_with_input("lct-inventory", &["exec", "--", "hostname"], &query.stdout).ok();
    let results = exec.json_lines();
    assert_eq!(results.len(), 3, "{}", exec.stdout);
    for (r, name) in results.iter().zip(["demo-1", "demo-2", "demo-3"]) {
        assert_eq!(r["kind"], "exec-result");
        assert_eq!(r["node"], name);
        assert_eq!(r["stdout"], format!("{name}\n"));
        assert_eq!(r["stderr"], "", "exec must not add noise of its own");
        assert_eq!(r["code"], 0);
    }
    // The node record is in the environment, and output is prefixed on a table.
    let table = env
        .run(
            "lct-inventory",
            &["exec", "-o", "table", "--cluster", "demo", "--", "sh", "-c", "echo $LCT_NODE_PRIVATE_IPV4"],
        )
        .ok();
    let mut lines: Vec<&str> = table.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["demo-1 | 192.168.128.1", "demo-2 | 192.168.128.2", "demo-3 | 192.168.128.3"]);
    // A failing node is named, the others still run, the exit status is 1.
    let failing =
        env.run("lct-inventory", &["exec", "--cluster", "demo", "--", "sh", "-c", "test $LCT_NODE_NAME != demo-2"]);
    assert_eq!(failing.status, 1);
    assert!(failing.stderr.contains("failed on 1 of 3 nodes: demo-2 (exit 1)"), "{}", failing.stderr);
    assert_eq!(failing.json_lines().len(), 3);
    let slow = env.run("lct-inventory", &["exec", "--cluster", "demo", "--timeout", "1", "--", "sleep", "30"]);
    assert_eq!(slow.status, 1);
    assert!(slow.stderr.contains("demo-1 (timed out)"), "{}", slow.stderr);

    // Stop takes a node off the networks; start brings it back.
    let stopped = env.run("lct-api", &["stop", "demo-3"]).ok();
    assert_eq!(stopped.nodes()[0].status, lct_core::record::Status::Offline);
    assert!(!env.pings("demo-1", "192.168.128.3"));
    let offline = env.run("lct-inventory", &["query", "--status", "offline"]).ok();
    assert_eq!(offline.nodes().len(), 1);
    env.run("lct-api", &["start", "demo-3"]).ok();
    assert!(env.pings("demo-1", "192.168.128.3"));

    // Delete (names from node records on stdin) cleans namespaces and /etc/netns.
    let one = env.run("lct-inventory", &["query", "--cluster", "demo"]).ok();
    let first = one.stdout.lines().next().unwrap().to_string();
    env.run_with_input("lct-api", &["delete"], &format!("{first}\n")).ok();
    assert!(!env.namespaces().contains(&env.ns("demo-1")));
    assert!(!std::path::Path::new("/etc/netns").join(env.ns("demo-1")).exists());
    assert_eq!(env.run("lct-api", &["list"]).ok().nodes().len(), 2);
    // The same record again: that node is gone, which is an error naming it (a stale record
    // or a typo is never "done"), unless missing nodes are fine.
    let again = env.run_with_input("lct-api", &["delete"], &format!("{first}\n"));
    assert_eq!(again.status, 1, "{}", again.stderr);
    assert!(again.stderr.contains("delete demo-1: no node named demo-1 on local"), "{}", again.stderr);
    env.run_with_input("lct-api", &["delete", "--missing-ok"], &format!("{first}\n")).ok();
    let start_missing = env.run("lct-api", &["start", "demo-1"]);
    assert_eq!(start_missing.status, 1, "{}", start_missing.stderr);
    assert!(start_missing.stderr.contains("start demo-1: no node named demo-1 on local"), "{}", start_missing.stderr);

    // Made again, demo-1 holds its old addresses on the same MACs: the outside and the other
    // nodes, whose neighbour entries still name the deleted node's MAC, reach it with their
    // first packet (a new random MAC left them sending into nothing for 8 s).
    let remade = env.run("lct-api", &["create", "--cluster", "demo", "--count", "3"]).ok();
    let demo1 = remade.nodes().into_iter().find(|n| n.name.as_str() == "demo-1").expect("demo-1 made again");
    assert_eq!(demo1.public_ipv4[0].to_string(), public[0]);
    assert_eq!(demo1.private_ipv4[0].to_string(), private[0]);
    assert!(env.pings("outside", &public[0]), "the outside's first ping to demo-1 made again was lost");
    assert!(env.pings("demo-2", &private[0]), "demo-2's first ping to demo-1 made again was lost");
    let links = env.in_ns("demo-1", &["ip", "-br", "link"]).ok().stdout;
    assert!(links.contains("02:1c:c0:a8:80:01") && links.contains("02:1d:cb:00:71:01"), "{links}");

    env.run("lct-api", &["lab", "down"]).ok();
    assert!(env.namespaces().is_empty(), "left behind: {:?}", env.namespaces());
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn volumes_are_loop_devices_with_stable_paths() {
    let env = Env::new();
    env.run("lct-api", &["create", "--cluster", "vol", "--count", "1"]).ok();
    let v = env.run("lct-api", &["volume", "create", "data-1", "--size", "16M", "--attach", "vol-1"]).ok();
    let v = &v.json_lines()[0];
    assert_eq!(v["kind"], "volume");
    assert_eq!(v["attached_to"], "vol-1");
    let path = v["path"].as_str().unwrap().to_string();
    let device = std::fs::canonicalize(&path).unwrap();
    assert!(device.to_string_lossy().starts_with("/dev/loop"), "{}", device.display());
    // Usable as a block device from inside the node.
    let size = env.in_ns("vol-1", &["blockdev", "--getsize64", &path]).ok();
    assert_eq!(size.stdout.trim(), (16 * 1024 * 1024).to_string());
    let node = env.run("lct-api", &["get", "vol-1"]).ok().nodes().remove(0);
    assert_eq!(node.volumes[0].path, path);

    // Detach and re-attach: the path stays the same.
    env.run("lct-api", &["volume", "detach", "data-1"]).ok();
    assert!(!std::path::Path::new(&path).exists());
    let again = env.run("lct-api", &["volume", "attach", "data-1", "vol-1"]).ok();
    assert_eq!(again.json_lines()[0]["path"], path.as_str());
    // Attaching elsewhere while attached is refused.
    env.run("lct-api", &["create", "--cluster", "vol", "--name", "vol-2"]).ok();
    let busy = env.run("lct-api", &["volume", "attach", "data-1", "vol-2"]);
    assert_eq!(busy.status, 1);
    assert!(busy.stderr.contains("detach it first"), "{}", busy.stderr);

    // Deleting the node detaches the volume; deleting the volume frees the loop device.
    env.run("lct-api", &["delete", "vol-1"]).ok();
    let list = env.run("lct-api", &["volume", "list"]).ok();
    assert!(list.json_lines()[0].get("attached_to").is_none(), "{}", list.stdout);
    let backing = env.state.path().join("local/volumes/data-1.img");
    env.run("lct-api", &["volume", "attach", "data-1", "vol-2"]).ok();
    env.run("lct-api", &["volume", "delete", "data-1"]).ok();
    assert!(!backing.exists());
    let loops = std::process::Command::new("losetup").args(["-j", backing.to_str().unwrap()]).output().unwrap();
    assert!(loops.stdout.is_empty(), "loop device left: {}", String::from_utf8_lossy(&loops.stdout));
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn a_crash_half_way_is_repaired_by_the_next_run() {
    let env = Env::new();
    env.run("lct-api", &["create", "--cluster", "crash", "--count", "1"]).ok();
    // Die right after the node was recorded, before its namespace exists.
    let mut cmd = env.command("lct-api", &["create", "--cluster", "crash", "--name", "crash-2"]);
    let died = cmd.env("LCT_LOCAL_CRASH_AFTER", "node-recorded").stdin(std::process::Stdio::null()).output().unwrap();
    assert!(!died.status.success());
    let listed = env.run("lct-api", &["list"]).ok().nodes();
    assert_eq!(listed[1].status, lct_core::record::Status::Provisioning);
    // Any next change finishes it.
    env.run("lct-api", &["create", "--cluster", "crash", "--name", "crash-3"]).ok();
    let listed = env.run("lct-api", &["list"]).ok().nodes();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|n| n.status == lct_core::record::Status::Running), "{listed:?}");
    assert!(env.pings("crash-2", "192.168.128.3"));

    // Damage from outside (a link and a whole namespace gone) is repaired by `lab repair`.
    std::process::Command::new("ip").args(["-n", &env.ns("crash-1"), "link", "delete", "eth0"]).status().unwrap();
    std::process::Command::new("ip").args(["netns", "delete", &env.ns("crash-3")]).status().unwrap();
    env.run("lct-api", &["lab", "repair"]).ok();
    assert!(env.pings("crash-1", "192.168.128.3"));
    assert!(env.pings("crash-3", "192.168.128.2"));

    // Lost state: `lab down` still removes every namespace this lab marked as its own.
    std::fs::remove_file(env.state.path().join("local/cloud.json")).unwrap();
    env.run("lct-api", &["lab", "down"]).ok();
    assert!(env.namespaces().is_empty(), "left behind: {:?}", env.namespaces());
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn many_nodes_in_one_create_are_recorded_at_once_and_made_side_by_side_crash_safe() {
    use lct_core::record::Status;
    let env = Env::new();
    // A create of five killed right after they were recorded (one batch, one save): all
    // five are there, provisioning, in order, none made yet.
    let mut cmd = env.command("lct-api", &["create", "--cluster", "b", "--count", "5"]);
    let died = cmd.env("LCT_LOCAL_CRASH_AFTER", "node-recorded").stdin(std::process::Stdio::null()).output().unwrap();
    assert!(!died.status.success());
    let listed = env.run("lct-api", &["list"]).ok().nodes();
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert!(listed.iter().all(|n| n.status == Status::Provisioning), "{listed:?}");
    assert!(!env.namespaces().contains(&env.ns("b-1")), "made before its record was saved");

    // Two creates of ten at once beside the five left: each run finishes what it finds and
    // makes its own; twenty-five nodes, each address once, every node reaching the others.
    let spawn = |cluster: &str| {
        env.command("lct-api", &["create", "--cluster", cluster, "--count", "10", "-o", "jsonl"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (x, y) = (spawn("x"), spawn("y"));
    for child in [x, y] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 10);
    }
    let listed = env.run("lct-api", &["list"]).ok().nodes();
    assert_eq!(listed.len(), 25, "{listed:?}");
    assert!(listed.iter().all(|n| n.status == Status::Running), "{listed:?}");
    let mut private: Vec<String> = listed.iter().map(|n| n.private_ipv4[0].to_string()).collect();
    private.sort();
    private.dedup();
    assert_eq!(private.len(), 25, "an address given twice: {listed:?}");
    // Addresses follow names within one create (x-1 before x-2 ...).
    let x: Vec<&lct_core::Node> = listed.iter().filter(|n| n.cluster.as_str() == "x").collect();
    let last_octet = |n: &lct_core::Node| n.private_ipv4[0].octets()[3];
    let mut by_name = x.clone();
    by_name.sort_by_key(|n| n.name.as_str()[2..].parse::<u32>().unwrap());
    assert!(by_name.windows(2).all(|w| last_octet(w[0]) < last_octet(w[1])), "{by_name:?}");
    let b1 = listed.iter().find(|n| n.name.as_str() == "b-1").unwrap().private_ipv4[0].to_string();
    for from in ["b-5", "x-10", "y-1"] {
        assert!(env.pings(from, &b1), "{from} cannot reach b-1");
    }
    env.run("lct-api", &["lab", "down"]).ok();
    assert!(env.namespaces().is_empty(), "left behind: {:?}", env.namespaces());
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn dependents_and_dependencies_widen_a_query() {
    let env = Env::new();
    let specs = [
        ("zk", "zookeeper", "zk-1"),
        ("hdfs", "namenode", "nn-1"),
        ("hdfs", "datanode", "dn-1"),
        ("web", "node", "web-1"),
    ]
    .iter()
    .map(|(c, g, n)| {
        format!("{{\"kind\":\"node-spec\",\"v\":1,\"cluster\":\"{c}\",\"group\":\"{g}\",\"name\":\"{n}\"}}\n")
    })
    .collect::<String>();
    env.run_with_input("lct-api", &["create"], &specs).ok();
    env.run("lct-inventory", &["clusters", "set", "hdfs", "--depends-on", "zk:zookeeper:2181/tcp"]).ok();
    let names = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["query"];
        full.extend_from_slice(args);
        env.run("lct-inventory", &full).ok().nodes().into_iter().map(|n| n.name.to_string()).collect()
    };
    assert_eq!(names(&["--cluster", "zk"]), ["zk-1"]);
    assert_eq!(names(&["--cluster", "zk", "--with-dependents"]), ["dn-1", "nn-1", "zk-1"]);
    assert_eq!(names(&["--cluster", "hdfs", "--with-dependencies"]), ["dn-1", "nn-1", "zk-1"]);
    assert_eq!(names(&["--cluster", "hdfs", "--group", "namenode"]), ["nn-1"]);
    assert_eq!(names(&[]).len(), 4);

    // By name or glob, like Ansible's --limit, composing with the other selectors.
    assert_eq!(names(&["zk-1"]), ["zk-1"]);
    assert_eq!(names(&["*-1"]), ["dn-1", "nn-1", "web-1", "zk-1"]);
    assert_eq!(names(&["?n-1,web-*"]), ["dn-1", "nn-1", "web-1"]);
    assert_eq!(names(&["*-1", "--cluster", "hdfs", "--group", "namenode"]), ["nn-1"]);
    let none = env.run("lct-inventory", &["query", "zk-9"]).ok();
    assert!(none.nodes().is_empty());
    assert!(none.stderr.contains("no selected node is named \"zk-9\""), "said at the default level: {}", none.stderr);
    let no_group = env.run("lct-inventory", &["query", "--group", "nosuch"]).ok();
    assert!(no_group.nodes().is_empty());
    assert!(no_group.stderr.contains("no node matches the selectors (asked local)"), "{}", no_group.stderr);
    // A command on one node by its name.
    let exec = env.run("lct-inventory", &["exec", "nn-1", "--", "hostname"]).ok();
    let results = exec.json_lines();
    assert_eq!(results.len(), 1, "{}", exec.stdout);
    assert_eq!(results[0]["stdout"], "nn-1\n");

    // Bad node specs: nothing is created.
    let bad = "{\"kind\":\"node-spec\",\"cluster\":\"x\",\"name\":\"x-1\"}\n{\"kind\":\"node-spec\",\"cluster\":\"x\",\"name\":\"X_2\"}\n";
    let out = env.run_with_input("lct-api", &["create"], bad);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("line 2: field name"), "{}", out.stderr);
    assert_eq!(names(&[]).len(), 4);
}
