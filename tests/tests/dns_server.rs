//! lct-dns serve against real clients: dig and kdig on loopback, and on the local cloud.

use std::process::Command;

use lct_tests::{Background, Env};

const NODES: &str = concat!(
    r#"{"kind":"node","v":1,"cluster":"zk","group":"zookeeper","name":"zk-1","provider":"local","status":"running","private_ipv4":["192.168.128.1"],"public_ipv4":["203.0.113.1"],"public_ipv6":["2001:db8::1"]}"#,
    "\n",
    r#"{"kind":"node","v":1,"cluster":"zk","group":"zookeeper","name":"zk-2","provider":"local","status":"running","private_ipv4":["192.168.128.2"]}"#,
    "\n",
);

fn start(env: &Env, nodes: &str, listen: &[String], internal: &str, netns: Option<&str>) -> Background {
    let records = env.run_with_input("lct-dns", &["zone", "--domain", "lct.internal", "--serial", "9"], nodes).ok();
    let file = env.state.path().join("zones.jsonl");
    std::fs::write(&file, records.stdout).unwrap();
    let bin = lct_tests::bin("lct-dns");
    let mut args: Vec<String> =
        vec![bin.display().to_string(), "serve".into(), "--records".into(), file.display().to_string()];
    for l in listen {
        args.extend(["--listen".into(), l.clone()]);
    }
    args.extend(["--internal".into(), internal.into()]);
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(&args);
            c
        }
        None => {
            let mut c = Command::new(&args[0]);
            c.args(&args[1..]);
            c
        }
    };
    // Its zones are kept in the test's own state directory, never the machine's.
    cmd.env("LCT_STATE_DIR", env.state.path());
    Background::spawn(cmd)
}

/// dig's full answer (header, sections) for a query.
fn dig(ns: Option<&str>, args: &[&str]) -> String {
    let mut full: Vec<&str> = Vec::new();
    if let Some(ns) = ns {
        full.extend(["netns", "exec", ns, "dig"]);
    }
    full.extend(["+time=1", "+tries=1", "+norec"]);
    full.extend_from_slice(args);
    let out =
        if ns.is_some() { Command::new("ip").args(&full).output() } else { Command::new("dig").args(&full).output() };
    String::from_utf8_lossy(&out.unwrap().stdout).into_owned()
}

fn wait_until_answering(ns: Option<&str>, server: &str, port: &str) {
    let what = format!("lct-dns answers on {server}:{port}");
    lct_tests::fixtures::until(&what, std::time::Duration::from_secs(15), || {
        dig(ns, &[&format!("@{server}"), "-p", port, "lct.internal", "SOA"]).contains("status: NOERROR")
    });
}

#[test]
fn views_authority_and_refusals_on_loopback() {
    let env = Env::new();
    let port = lct_tests::free_port().to_string();
    let _server = start(&env, NODES, &[format!("127.0.0.1:{port}")], "127.0.0.2/32", None);
    wait_until_answering(None, "127.0.0.1", &port);
    let q = |src: &str, args: &[&str]| {
        let mut full = vec!["-b", src, "@127.0.0.1", "-p", port.as_str()];
        full.extend_from_slice(args);
        dig(None, &full)
    };
    let inside = q("127.0.0.2", &["zk-1.zk.lct.internal", "A"]);
    assert!(inside.contains("flags: qr aa"), "authoritative answer: {inside}");
    assert!(inside.contains("zk-1.zk.lct.internal.\t300\tIN\tA\t192.168.128.1"), "{inside}");
    let outside = q("127.0.0.1", &["zk-1.zk.lct.internal", "A"]);
    assert!(outside.contains("zk-1.zk.lct.internal.\t300\tIN\tA\t203.0.113.1"), "{outside}");
    // A name with no public address does not exist outside.
    assert!(q("127.0.0.1", &["zk-2.zk.lct.internal", "A"]).contains("status: NXDOMAIN"));
    assert!(q("127.0.0.2", &["zk-2.zk.lct.internal", "A"]).contains("192.168.128.2"));
    // NXDOMAIN carries the SOA.
    let nx = q("127.0.0.2", &["nothing.lct.internal", "A"]);
    assert!(nx.contains("status: NXDOMAIN") && nx.contains("IN\tSOA\tns1.lct.internal."), "{nx}");
    // Outside our zones: refused, never recursed.
    assert!(q("127.0.0.2", &["example.com", "A"]).contains("status: REFUSED"));
    // Reverse zones are internal.
    assert!(q("127.0.0.2", &["-x", "192.168.128.1"]).contains("PTR\tzk-1.zk.lct.internal."));
    assert!(q("127.0.0.1", &["-x", "192.168.128.1"]).contains("status: REFUSED"));
    // TCP, and Knot's client.
    assert!(q("127.0.0.2", &["+tcp", "zookeeper.zk.lct.internal", "A"]).contains("192.168.128.2"));
    let kdig = Command::new("kdig")
        .args(["-b", "127.0.0.1", "@127.0.0.1", "-p", &port, "+time=1", "+retry=0", "lct.internal", "NS"])
        .output()
        .unwrap();
    let kdig = String::from_utf8_lossy(&kdig.stdout);
    assert!(kdig.contains("status: NOERROR") && kdig.contains("Flags: qr aa"), "{kdig}");

    // No internal address in any section of any answer to an external client.
    for (name, rtype) in [
        ("zk-1.zk.lct.internal", "A"),
        ("zk-1.zk.lct.internal", "AAAA"),
        ("zk-1.zk.lct.internal", "ANY"),
        ("zookeeper.zk.lct.internal", "A"),
        ("zk-2.zk.lct.internal", "A"),
        ("lct.internal", "NS"),
        ("lct.internal", "SOA"),
        ("lct.internal", "ANY"),
        ("ns1.lct.internal", "A"),
        ("nothing.lct.internal", "A"),
        ("1.128.168.192.in-addr.arpa", "PTR"),
    ] {
        let answer = q("127.0.0.1", &[name, rtype]);
        assert!(!answer.contains("192.168."), "{name} {rtype} leaks a private address outside:\n{answer}");
    }
}

#[test]
#[ignore = "needs root: network namespaces (scripts/test runs it as root)"]
fn nodes_see_private_addresses_and_the_outside_public_ones() {
    let env = Env::new();
    env.run("lct-api", &["create", "--cluster", "zk", "--count", "3"]).ok();
    let nodes = env.run("lct-inventory", &["query"]).ok().stdout;
    // The server runs on zk-1, on its private and its public address.
    let ns = env.ns("zk-1");
    let _server =
        start(&env, &nodes, &["192.168.128.1:53".into(), "203.0.113.1:53".into()], "192.168.128.0/17", Some(&ns));
    let zk2 = env.ns("zk-2");
    let outside = env.ns("outside");
    wait_until_answering(Some(&zk2), "192.168.128.1", "53");
    let inside = dig(Some(&zk2), &["@192.168.128.1", "zk-3.zk.lct.internal", "A", "+short"]);
    assert_eq!(inside.trim(), "192.168.128.3");
    let public = dig(Some(&outside), &["@203.0.113.1", "zk-3.zk.lct.internal", "A", "+short"]);
    assert_eq!(public.trim(), "203.0.113.3");
    // The outside cannot reach the private address at all.
    let unreachable = dig(Some(&outside), &["@192.168.128.1", "zk-3.zk.lct.internal", "A"]);
    assert!(!unreachable.contains("192.168.128.3"), "{unreachable}");
}

/// A small deterministic generator: the same packets every run, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_and_mutated_packets_neither_crash_nor_hang_the_server() {
    let env = Env::new();
    let port = lct_tests::free_port().to_string();
    let mut server = start(&env, NODES, &[format!("127.0.0.1:{port}")], "127.0.0.2/32", None);
    wait_until_answering(None, "127.0.0.1", &port);
    // A real query, as dig sends it, to mutate.
    let mut query = vec![0x12, 0x34, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
    for label in ["zk-1", "zk", "lct", "internal"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("127.0.0.1:{port}");
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..4000 {
        let packet: Vec<u8> = if i % 2 == 0 {
            let len = (rng.next() % 600) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let mut p = query.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() as usize) % p.len();
                match rng.next() % 3 {
                    0 => p[at] = rng.next() as u8,
                    1 => p.truncate(at.max(1)),
                    _ => p.insert(at, rng.next() as u8),
                }
            }
            p
        };
        let _ = socket.send_to(&packet, &target);
    }
    // Still alive, still right.
    assert!(server.0.try_wait().unwrap().is_none(), "the server died");
    let answer = dig(None, &["-b", "127.0.0.2", "@127.0.0.1", "-p", &port, "zk-1.zk.lct.internal", "A", "+short"]);
    assert_eq!(answer.trim(), "192.168.128.1");
    // And over TCP, after garbage on a TCP connection.
    use std::io::Write;
    let mut tcp = std::net::TcpStream::connect(&target).unwrap();
    let _ = tcp.write_all(&[0xff, 0xff, 1, 2, 3]);
    drop(tcp);
    let answer =
        dig(None, &["+tcp", "-b", "127.0.0.2", "@127.0.0.1", "-p", &port, "zk-1.zk.lct.internal", "A", "+short"]);
    assert_eq!(answer.trim(), "192.168.128.1");
}

#[test]
fn zone_modes_private_and_public() {
    let env = Env::new();
    let records = env.run_with_input("lct-dns", &["zone", "--domain", "lct.internal", "--serial", "9"], NODES).ok();
    let file = env.state.path().join("zones.jsonl");
    std::fs::write(&file, records.stdout).unwrap();
    for mode in ["private", "public"] {
        let port = lct_tests::free_port().to_string();
        let mut cmd = Command::new(lct_tests::bin("lct-dns"));
        cmd.args(["serve", "--records", file.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")]).args([
            "--internal",
            "127.0.0.2/32",
            "--zone-mode",
            &format!("lct.internal={mode}"),
        ]);
        cmd.env("LCT_STATE_DIR", env.state.path());
        let _server = Background::spawn(cmd);
        let q = |src: &str| dig(None, &["-b", src, "@127.0.0.1", "-p", &port, "zk-1.zk.lct.internal", "A"]);
        lct_tests::fixtures::until("lct-dns answers", std::time::Duration::from_secs(15), || {
            q("127.0.0.2").contains("status:")
        });
        let (inside, outside) = (q("127.0.0.2"), q("127.0.0.1"));
        match mode {
            "private" => {
                assert!(inside.contains("IN\tA\t192.168.128.1"), "{inside}");
                assert!(outside.contains("status: REFUSED"), "private: refused outside: {outside}");
            }
            _ => {
                assert!(inside.contains("IN\tA\t203.0.113.1"), "public: the public answer inside too: {inside}");
                assert!(outside.contains("IN\tA\t203.0.113.1"), "{outside}");
            }
        }
    }
    let out = env.run(
        "lct-dns",
        &["serve", "--records", file.to_str().unwrap(), "--listen", "127.0.0.1:1", "--zone-mode", "x.test=open"],
    );
    assert_eq!(out.status, 2, "{}", out.stderr);
    let out = env.run(
        "lct-dns",
        &["serve", "--records", file.to_str().unwrap(), "--listen", "127.0.0.1:1", "--zone-mode", "other.test=private"],
    );
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("a mode is given for a zone that has no records"), "{}", out.stderr);
}

#[test]
fn the_fast_path_answers_like_the_full_server() {
    let env = Env::new();
    let port = lct_tests::free_port().to_string();
    let _server = start(&env, NODES, &[format!("127.0.0.1:{port}")], "127.0.0.2/32", None);
    wait_until_answering(None, "127.0.0.1", &port);
    // Plain queries, EDNS without options and with a cookie all take the fast path, and
    // the answers agree (names compare without case: the fast path echoes the question as
    // asked, as BIND does). lct-dns's unit tests compare it with hickory's catalog on every
    // name and type.
    let answer_section = |src: &str, extra: &[&str], name: &str, rtype: &str| {
        let mut args = vec!["-b", src, "@127.0.0.1", "-p", port.as_str(), "+noall", "+answer", "+comments"];
        args.extend_from_slice(extra);
        args.extend([name, rtype]);
        dig(None, &args)
    };
    for (src, expected) in [("127.0.0.2", "192.168.128.1"), ("127.0.0.1", "203.0.113.1")] {
        for extra in [&["+noedns"][..], &["+nocookie"][..], &["+cookie"][..]] {
            let out = answer_section(src, extra, "Zk-1.ZK.lct.internal", "A").to_lowercase();
            assert!(out.contains(&format!("zk-1.zk.lct.internal.\t300\tin\ta\t{expected}")), "{extra:?} {src}: {out}");
            assert!(out.contains("flags: qr aa") && out.contains("status: noerror"), "{extra:?} {src}: {out}");
        }
    }
    let v6 = answer_section("127.0.0.1", &["+nocookie"], "zk-1.zk.lct.internal", "AAAA");
    assert!(v6.contains("IN\tAAAA\t2001:db8::1"), "{v6}");
    // Negative answers: NXDOMAIN, NODATA, a private name outside.
    let nx = answer_section("127.0.0.2", &["+noedns"], "nothing.lct.internal", "A");
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    let nodata = answer_section("127.0.0.2", &["+noedns"], "zk-2.zk.lct.internal", "AAAA");
    assert!(nodata.contains("status: NOERROR") && !nodata.contains("IN\tAAAA"), "{nodata}");
    let outside_private = answer_section("127.0.0.1", &["+noedns"], "zk-2.zk.lct.internal", "A");
    assert!(outside_private.contains("status: NXDOMAIN"), "{outside_private}");
    // dnsperf-style: the same query many times, every answer right.
    for _ in 0..200 {
        assert_eq!(
            answer_section("127.0.0.2", &["+noedns", "+short"], "zookeeper.zk.lct.internal", "A").lines().count(),
            2
        );
    }
}

/// A query for `name` (type A, no EDNS) with id `id`.
fn raw_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// What a burst of queries got back, and in how many of the server's rate-limit seconds it
/// could have fallen.
struct Burst {
    /// The rcodes of the full answers.
    full: Vec<u8>,
    /// How many truncated (slipped) answers came back.
    truncated: usize,
    /// How many whole-second windows the queries can have met at the server: the time from
    /// the first query sent to the end of the replies, rounded up, plus one for the
    /// boundary (on a busy machine a burst of 400 queries may take more than a second).
    windows: usize,
}

impl Burst {
    /// Checks the burst against a limit of `rate` answers a second with slip 2, for `sent`
    /// queries, `earlier` of them counted in the same bucket just before: at least a
    /// window's worth and at most a window's worth per second it spanned went out whole;
    /// of the rest, every second one went out truncated. The test needs the burst to
    /// have been faster than the limit, or the limit would show nothing.
    fn limited_to(&self, rate: usize, sent: usize, earlier: usize) {
        let full = self.full.len();
        assert!(self.windows * rate < sent, "too slow to show a limit: {} windows for {sent} queries", self.windows);
        assert!(
            full >= rate - earlier && full <= self.windows * rate,
            "{full} full answers in {} windows",
            self.windows
        );
        let limited = sent - full;
        let (low, high) = ((limited / 2).saturating_sub(self.windows), limited / 2 + self.windows);
        assert!((low..=high).contains(&self.truncated), "{} truncated of {limited} limited", self.truncated);
    }
}

/// Sends `count` queries (type A) for `name_of(i)` from `source`, and returns what came back.
fn burst(source: &str, port: &str, count: u16, name_of: impl Fn(u16) -> String) -> Burst {
    let socket = std::net::UdpSocket::bind(format!("{source}:0")).unwrap();
    // Long enough for a server busy on a loaded machine; the burst ends after this silence.
    socket.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
    // Replies are read as they come, so that none is lost to a full socket buffer.
    let reader = socket.try_clone().unwrap();
    let replies = std::thread::spawn(move || {
        let (mut full, mut truncated) = (Vec::new(), 0);
        let mut buf = [0u8; 1500];
        while let Ok(n) = lct_tests::uninterrupted(|| reader.recv(&mut buf)) {
            assert!(n >= 12);
            if buf[2] & 0x02 != 0 {
                truncated += 1;
            } else {
                full.push(buf[3] & 0x0f);
            }
        }
        (full, truncated)
    });
    let started = std::time::Instant::now();
    for i in 0..count {
        socket.send_to(&raw_query(i, &name_of(i)), format!("127.0.0.1:{port}")).unwrap();
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    let (full, truncated) = replies.join().unwrap();
    let windows = started.elapsed().as_secs_f64().ceil() as usize + 1;
    Burst { full, truncated, windows }
}

/// Sends `count` queries for names that do not exist (a random-subdomain flood) from
/// `source`.
fn flood(source: &str, port: &str, count: u16) -> Burst {
    let burst = burst(source, port, count, |i| format!("r{i}x.lct.internal"));
    assert!(burst.full.iter().all(|rcode| *rcode == 3), "NXDOMAIN: {:?}", burst.full);
    burst
}

#[test]
fn a_random_subdomain_flood_from_outside_is_rate_limited_and_tcp_still_answers() {
    let env = Env::new();
    let port = lct_tests::free_port().to_string();
    // 127.0.0.1 is outside (only 127.0.0.2 is internal); the default limit is 20 a second.
    let _server = start(&env, NODES, &[format!("127.0.0.1:{port}")], "127.0.0.2/32", None);
    wait_until_answering(None, "127.0.0.1", &port);
    // All of one zone's NXDOMAINs share a bucket (not the SOA answers that showed the server
    // up): 20 a second, every second answer beyond that slips out truncated, the rest are
    // dropped.
    flood("127.0.0.1", &port, 400).limited_to(20, 400, 0);
    // Another network outside is served as usual meanwhile (its own buckets).
    let other = dig(None, &["-b", "127.0.1.1", "@127.0.0.1", "-p", &port, "r1x.lct.internal", "A"]);
    assert!(other.contains("status: NXDOMAIN") && other.contains("flags: qr aa"), "{other}");
    assert!(!other.contains(" tc"), "{other}");
    // A real client retries over TCP, which is not limited.
    let tcp = dig(None, &["+tcp", "@127.0.0.1", "-p", &port, "r1x.lct.internal", "A"]);
    assert!(tcp.contains("status: NXDOMAIN") && tcp.contains("IN\tSOA"), "{tcp}");
    // Internal clients are not limited.
    let internal = flood("127.0.0.2", &port, 400);
    assert_eq!((internal.full.len(), internal.truncated), (400, 0));
}

#[test]
fn alternating_answers_that_share_a_rate_limit_slot_are_still_limited() {
    // A table of one bucket: every tag shares it. Before the fix, a tag that found another's
    // tag in its slot restarted the count, so alternating two kinds of answer (an NXDOMAIN
    // and the apex's NODATA: two tags) was never limited; names that collide in the default
    // table could be computed from the unkeyed hash. Now they share the stricter count.
    let env = Env::new();
    let port = lct_tests::free_port().to_string();
    let records = env.run_with_input("lct-dns", &["zone", "--domain", "lct.internal", "--serial", "9"], NODES).ok();
    let file = env.state.path().join("zones.jsonl");
    std::fs::write(&file, records.stdout).unwrap();
    let config = env.state.path().join("dns.toml");
    std::fs::write(
        &config,
        format!(
            "records = \"{}\"\nlisten = [\"127.0.0.1:{port}\"]\ninternal = [\"127.0.0.2/32\"]\n\n[rate_limit]\ntable_size = 1\n",
            file.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(lct_tests::bin("lct-dns"));
    cmd.args(["serve", "--config", config.to_str().unwrap()]).env("LCT_STATE_DIR", env.state.path());
    let _server = Background::spawn(cmd);
    wait_until_answering(None, "127.0.0.1", &port);
    let alternate =
        |i: u16| if i.is_multiple_of(2) { format!("r{i}x.lct.internal") } else { "lct.internal".to_string() };
    let burst = burst("127.0.0.1", &port, 400, alternate);
    assert!(burst.full.contains(&3) && burst.full.contains(&0), "both kinds of answer were sent: {:?}", burst.full);
    // 20 a second for both together (the SOA answer that showed the server up shares the
    // one bucket too).
    burst.limited_to(20, 400, 1);
}

#[test]
fn idle_tcp_connections_do_not_lock_out_new_clients() {
    let env = Env::new();
    let port = lct_tests::free_port().to_string();
    let _server = start(&env, NODES, &[format!("127.0.0.1:{port}")], "127.0.0.2/32", None);
    wait_until_answering(None, "127.0.0.1", &port);
    // 3,000 idle connections (Knot holds as many, lct-dns used to fail at ~640), then
    // queries over TCP are answered at once.
    let target = format!("127.0.0.1:{port}");
    let idle: Vec<std::net::TcpStream> = (0..3000).map(|_| std::net::TcpStream::connect(&target).unwrap()).collect();
    let started = std::time::Instant::now();
    let answer = dig(None, &["+tcp", "-b", "127.0.0.2", "@127.0.0.1", "-p", &port, "zk-1.zk.lct.internal", "+short"]);
    assert_eq!(answer.trim(), "192.168.128.1");
    assert!(started.elapsed() < std::time::Duration::from_millis(900), "{:?}", started.elapsed());
    drop(idle);
}

#[test]
fn when_tcp_is_full_the_longest_idle_connection_makes_room() {
    let env = Env::new();
    let port = lct_tests::free_port().to_string();
    let records = env.run_with_input("lct-dns", &["zone", "--domain", "lct.internal", "--serial", "9"], NODES).ok();
    let file = env.state.path().join("zones.jsonl");
    std::fs::write(&file, records.stdout).unwrap();
    let mut cmd = Command::new(lct_tests::bin("lct-dns"));
    cmd.args(["serve", "--records", file.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .args(["--internal", "127.0.0.2/32", "--tcp-clients", "50"])
        .env("LCT_STATE_DIR", env.state.path());
    let _server = Background::spawn(cmd);
    wait_until_answering(None, "127.0.0.1", &port);
    let target = format!("127.0.0.1:{port}");
    let idle: Vec<std::net::TcpStream> = (0..120)
        .map(|_| {
            let c = std::net::TcpStream::connect(&target).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2)); // an order of idleness
            c
        })
        .collect();
    let answer = dig(None, &["+tcp", "-b", "127.0.0.2", "@127.0.0.1", "-p", &port, "zk-1.zk.lct.internal", "+short"]);
    assert_eq!(answer.trim(), "192.168.128.1");
    // The oldest were closed to make room; the newest are open.
    use std::io::Read;
    // A read that times out finds the connection open; end of file or a reset, closed.
    let closed = |c: &std::net::TcpStream| {
        let mut c = c.try_clone().unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
        match lct_tests::uninterrupted(|| c.read(&mut [0u8; 1])) {
            Ok(n) => n == 0,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    };
    assert!(closed(&idle[0]), "the oldest idle connection is still open");
    assert!(!closed(&idle[119]), "the newest connection was closed");
}
