//! The local cloud's regions: each a private network of its own whose range overlaps the
//! others', one public network for all; plans that spread a group over regions. Needs root.

use std::net::UdpSocket;
use std::time::Duration;

use lct_tests::Env;

/// A UDP socket bound inside `node`'s namespace (it stays in that namespace's stack).
fn socket_in(env: &Env, node: &str) -> UdpSocket {
    let socket = lct_core::state::in_netns(&env.ns(node), || UdpSocket::bind("0.0.0.0:4789")).unwrap().unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    socket
}

/// What `socket` received within its timeout (the texts of the datagrams).
fn received(socket: &UdpSocket) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn three_regions_keep_their_overlapping_private_networks_apart_and_share_the_public_one() {
    let env = Env::new();
    let create = |cluster: &str, region: &str, names: &[&str]| {
        let mut args = vec!["create", "--cluster", cluster, "--region", region, "--name"];
        args.extend_from_slice(names);
        env.run("lct-api", &args).ok().nodes()
    };
    create("ra", "a", &["a-1", "a-2"]);
    create("rb", "b", &["b-1", "b-2", "b-3"]);
    create("rc", "c", &["c-1"]);
    let nodes = env.run("lct-api", &["list", "-o", "jsonl"]).ok().nodes();
    let private = |name: &str| nodes.iter().find(|n| n.name == *name).unwrap().private_ipv4[0].to_string();
    let public = |name: &str| nodes.iter().find(|n| n.name == *name).unwrap().public_ipv4[0].to_string();
    // Each region hands out the same range from its start: the ranges overlap.
    let seen: Vec<(String, String, String)> =
        nodes.iter().map(|n| (n.name.to_string(), n.region.clone(), n.private_ipv4[0].to_string())).collect();
    let expected = [
        ("a-1", "a", "192.168.128.1"),
        ("a-2", "a", "192.168.128.2"),
        ("b-1", "b", "192.168.128.1"),
        ("b-2", "b", "192.168.128.2"),
        ("b-3", "b", "192.168.128.3"),
        ("c-1", "c", "192.168.128.1"),
    ];
    let expected: Vec<(String, String, String)> =
        expected.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    assert_eq!(seen, expected);
    // Public addresses are the lab's, one each.
    let publics: std::collections::BTreeSet<String> = nodes.iter().map(|n| n.public_ipv4[0].to_string()).collect();
    assert_eq!(publics.len(), 6);

    let regions = env.run("lct-api", &["lab", "regions", "-o", "jsonl"]).ok().json_lines();
    let listed: Vec<(String, u64)> =
        regions.iter().map(|r| (r["region"].as_str().unwrap().to_string(), r["nodes"].as_u64().unwrap())).collect();
    let want: Vec<(String, u64)> = [("a", 2), ("b", 3), ("c", 1), ("local", 0)].map(|(r, n)| (r.into(), n)).into();
    assert_eq!(listed, want);

    // Within a region, private addresses reach each other.
    assert!(env.pings("a-1", &private("a-2")));
    assert!(env.pings("b-3", &private("b-1")));

    // Across regions they do not: packets are not delivered, and an address both regions
    // hand out reaches the asker's own region's node only.
    let (a1, b1, b3, c1) =
        (socket_in(&env, "a-1"), socket_in(&env, "b-1"), socket_in(&env, "b-3"), socket_in(&env, "c-1"));
    let sender = socket_in(&env, "a-2");
    for (to, text) in [("192.168.128.3", "to-b3-private"), ("192.168.128.1", "to-.1-private")] {
        sender.send_to(text.as_bytes(), (to, 4789)).ok();
    }
    assert_eq!(received(&a1), ["to-.1-private"], "a-2's packet to .1 must reach a-1, its region's");
    assert!(received(&b1).is_empty(), "a packet from region a reached b-1's private address");
    assert!(received(&b3).is_empty(), "a packet from region a reached b-3's private address");
    assert!(!env.pings("a-1", &private("b-3")), "a-1 reaches 192.168.128.3, which only region b has");

    // Public addresses of every region reach each other, and the outside reaches them all.
    for (to, socket) in [("b-3", &b3), ("c-1", &c1), ("a-1", &a1)] {
        sender.send_to(format!("to-{to}-public").as_bytes(), (public(to).as_str(), 4789)).unwrap();
        assert_eq!(received(socket), [format!("to-{to}-public")]);
    }
    for name in ["a-1", "b-2", "c-1"] {
        assert!(env.pings("outside", &public(name)), "outside cannot reach {name}");
        assert!(!env.pings("outside", &private(name)), "outside reaches a private address");
    }

    // A region's name is checked before anything is recorded or made.
    for bad in ["Bad", "x;reboot", "abcdefghijklm", "a--b", "../lab"] {
        let refused = env.run("lct-api", &["create", "--cluster", "rx", "--name", "x-1", "--region", bad]);
        assert_ne!(refused.status, 0, "{bad}");
        assert!(refused.stderr.contains("field region: region "), "{bad}: {}", refused.stderr);
    }
    assert_eq!(env.run("lct-api", &["list", "-o", "jsonl"]).ok().nodes().len(), 6);
    // A node asked for again in another region is refused, not moved.
    let moved = env.run("lct-api", &["create", "--cluster", "ra", "--name", "a-1", "--region", "b"]);
    assert!(moved.stderr.contains("exists in region a, not b"), "{}", moved.stderr);
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn a_plan_spreads_a_group_over_its_regions_and_scales_without_moving_a_node() {
    let env = Env::new();
    let plan = env.state.path().join("spread.yaml");
    std::fs::write(
        &plan,
        "description: spread\ngroups:\n  server: {count: 4, image: lct/netns, regions: [a, b, c]}\n  \
         pinned: {count: 2, image: lct/netns, regions: [b, c], per_region: 1, hostname: \"{{ cluster }}-pinned-{{ index }}\"}\n",
    )
    .unwrap();
    let made = env.run("lct-plan", &["create", "sp", plan.to_str().unwrap(), "-o", "jsonl"]).ok().nodes();
    let placed = |nodes: &[lct_core::Node]| -> Vec<(String, String, String)> {
        let mut v: Vec<_> =
            nodes.iter().map(|n| (n.name.to_string(), n.region.clone(), n.private_ipv4[0].to_string())).collect();
        v.sort();
        v
    };
    let expected = |rows: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
        rows.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect()
    };
    // Round-robin for server; one per region, in order, for pinned; addresses per region
    // (groups are made in name order: pinned first).
    assert_eq!(
        placed(&made),
        expected(&[
            ("sp-1", "a", "192.168.128.1"),
            ("sp-2", "b", "192.168.128.2"),
            ("sp-3", "c", "192.168.128.2"),
            ("sp-4", "a", "192.168.128.2"),
            ("sp-pinned-1", "b", "192.168.128.1"),
            ("sp-pinned-2", "c", "192.168.128.1"),
        ])
    );
    // Scaling up places the new node by its index; no node moves.
    env.run("lct-plan", &["scale", "sp", "server", "5"]).ok();
    let nodes = env.run("lct-api", &["list", "-o", "jsonl"]).ok().nodes();
    let five = placed(&nodes);
    assert!(five.contains(&("sp-5".into(), "b".into(), "192.168.128.3".into())), "{five:?}");
    assert!(five.contains(&("sp-1".into(), "a".into(), "192.168.128.1".into())), "{five:?}");
    // per_region bounds the count: a scale past it is refused, naming the field, nothing made.
    let over = env.run("lct-plan", &["scale", "sp", "pinned", "3"]);
    assert_ne!(over.status, 0);
    assert!(over.stderr.contains("groups.pinned.count: 3 nodes, over per_region 1"), "{}", over.stderr);
    assert_eq!(env.run("lct-api", &["list", "-o", "jsonl"]).ok().nodes().len(), 7);
    env.run("lct-plan", &["destroy", "sp"]).ok();
}

#[test]
#[ignore = "needs root: network namespaces and a machine node (scripts/test runs it as root)"]
fn a_machine_node_is_on_its_regions_private_network_only() {
    let env = Env::new();
    env.run("lct-api", &["create", "--cluster", "ra", "--name", "a-1", "a-2", "--region", "a"]).ok();
    env.run("lct-api", &["create", "--cluster", "rb", "--name", "b-1", "--region", "b"]).ok();
    let machine = env
        .run("lct-api", &["create", "--cluster", "rb", "--name", "b-m", "--region", "b", "--image", "debian-12"])
        .ok()
        .nodes();
    assert_eq!((machine[0].region.as_str(), machine[0].private_ipv4[0].to_string()), ("b", "192.168.128.2".into()));
    // From the machine itself (over SSH): its region's node privately, region a's node at its
    // public address.
    let (b1, a1) = (socket_in(&env, "b-1"), socket_in(&env, "a-1"));
    let public_a1 = env.node_address("a-1", "public_ipv4");
    env.ssh("b-m", &format!("echo private > /dev/udp/192.168.128.1/4789; echo public > /dev/udp/{public_a1}/4789"))
        .ok();
    assert_eq!(received(&b1), ["private\n"], "the machine's packet to b-1's private address");
    assert_eq!(received(&a1), ["public\n"], "the machine's packet to a-1's public address");
    // A UDP listener on a-2 (192.168.128.2 in region a) hears nothing the machine sends to
    // that address: it stays in region b (the machine's own).
    let a2 = socket_in(&env, "a-2");
    env.ssh("b-m", "echo leak > /dev/udp/192.168.128.2/4789; echo leak > /dev/udp/192.168.128.3/4789").ok();
    assert!(received(&a2).is_empty(), "a packet from region b's machine reached region a");
    // And region a's nodes do not reach the machine privately.
    let sender = a1;
    let b_m = lct_core::state::in_netns(&env.ns("b-m"), || UdpSocket::bind("192.168.128.2:4790")).unwrap().unwrap();
    b_m.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    sender.send_to(b"cross", ("192.168.128.2", 4790)).ok();
    assert!(received(&b_m).is_empty(), "region a reached the machine's private address");
}
