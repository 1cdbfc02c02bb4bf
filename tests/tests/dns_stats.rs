//! lct-dns's statistics: /metrics scraped while queries flow (counts move as the queries
//! say), `lct-dns stats`, and the listener against a hostile client (huge headers,
//! slowloris, many connections) and a public address. Loopback only.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use lct_tests::fixtures::dns::{keygen, lct_dns, secret, zone_file};
use lct_tests::{Background, Env};

const NODES: &str = concat!(
    r#"{"kind":"node","v":1,"cluster":"zk","group":"zookeeper","name":"zk-1","provider":"local","status":"running","private_ipv4":["192.168.128.1"],"public_ipv4":["203.0.113.1"]}"#,
    "\n",
);

struct Server {
    _server: Background,
    dns: u16,
    stats: u16,
}

/// lct-dns on loopback: 127.0.0.2 inside, everyone else outside (RRL 5/s, slip 2), a key
/// that may transfer, statistics on.
fn start(env: &Env, dir: &Path) -> Server {
    start_with(env, dir, "")
}

/// [`start`], `stats` added to the `[stats]` section.
fn start_with(env: &Env, dir: &Path, stats_extra: &str) -> Server {
    zone_file(env, dir, NODES, "9");
    keygen(env, dir, &["xfr"]);
    let (dns, stats) = (lct_tests::free_port(), lct_tests::free_port());
    let config = format!(
        "records = \"{}/zones.jsonl\"\nlisten = [\"127.0.0.1:{dns}\"]\ninternal = [\"127.0.0.2/32\"]\n\
         udp_sockets = 2\nkeys = [\"xfr.key\"]\nstate = \"{}/state\"\n\
         [rate_limit]\nresponses_per_second = 5\nslip = 2\n[stats]\nlisten = \"127.0.0.1:{stats}\"\n{stats_extra}",
        dir.display(),
        dir.display()
    );
    std::fs::write(dir.join("lct-dns.toml"), config).unwrap();
    let server = lct_dns(dir, "lct-dns.toml", "lct-dns.log");
    lct_tests::fixtures::until("lct-dns answers", Duration::from_secs(15), || {
        lct_tests::fixtures::dns::status(dns, "zk-1.zk.lct.internal") == "NOERROR"
    });
    Server { _server: server, dns, stats }
}

/// A raw HTTP exchange with the statistics listener: what came back before it closed.
fn http(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A connection to the listener from loopback address `source` (127.0.0.x).
fn connect_from(source: &str, port: u16) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let from: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into())?;
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socket.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

/// [`http`] from loopback address `source`.
fn http_from(source: &str, port: u16, request: &[u8]) -> String {
    let Ok(mut s) = connect_from(source, port) else { return String::new() };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(request).is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn metrics(port: u16) -> String {
    let text = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    text
}

/// A sample's value in /metrics text (0 when absent: Prometheus leaves out what never
/// happened).
fn value(text: &str, sample: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0)
}

fn queries(text: &str, view: &str, qtype: &str, rcode: &str) -> u64 {
    value(text, &format!("lct_dns_queries_total{{qtype=\"{qtype}\",rcode=\"{rcode}\",view=\"{view}\"}}"))
}

/// A query for `name` of type `qtype` (no EDNS) with id `id`.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// Sends `count` queries from `source` and waits for the answers to stop: how many came.
fn send(source: &str, port: u16, count: u16, name_of: impl Fn(u16) -> (String, u16)) -> usize {
    let socket = UdpSocket::bind(format!("{source}:0")).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let reader = socket.try_clone().unwrap();
    let answers = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        std::iter::from_fn(|| lct_tests::uninterrupted(|| reader.recv(&mut buf)).ok()).count()
    });
    for i in 0..count {
        let (name, qtype) = name_of(i);
        socket.send_to(&query(i, &name, qtype), ("127.0.0.1", port)).unwrap();
        if i % 16 == 15 {
            std::thread::sleep(Duration::from_micros(500)); // no losses to a full buffer
        }
    }
    answers.join().unwrap()
}

#[test]
fn metrics_scraped_under_load_count_queries_rrl_tcp_and_transfers() {
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    let server = start(&env, &dir);
    let before = metrics(server.stats);
    assert!(before.contains("# TYPE lct_dns_queries_total counter\n"), "{before}");
    assert_eq!(value(&before, "lct_dns_zone_serial{role=\"primary\",zone=\"lct.internal.\"}"), 9, "{before}");

    // Load: inside, 600 A, 300 AAAA (NODATA: none published) and 300 NXDOMAIN, while
    // another thread scrapes /metrics all along; each scrape must be whole.
    let done = std::sync::atomic::AtomicBool::new(false);
    let scrapes = std::thread::scope(|s| {
        let scraper = s.spawn(|| {
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                assert!(metrics(server.stats).contains("# TYPE lct_dns_uptime_seconds gauge\n"));
                n += 1;
            }
            n
        });
        let got = send("127.0.0.2", server.dns, 1200, |i| match i % 4 {
            0 | 1 => ("zk-1.zk.lct.internal".into(), 1),
            2 => ("zk-1.zk.lct.internal".into(), 28),
            _ => (format!("nx{i}.lct.internal"), 1),
        });
        assert_eq!(got, 1200, "inside, nothing is rate limited");
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        scraper.join().unwrap()
    });
    assert!(scrapes >= 1);
    let after = metrics(server.stats);
    let delta = |view, qtype, rcode| queries(&after, view, qtype, rcode) - queries(&before, view, qtype, rcode);
    assert_eq!(delta("internal", "A", "NOERROR"), 600, "{after}");
    assert_eq!(delta("internal", "AAAA", "NOERROR"), 300, "{after}");
    assert_eq!(delta("internal", "A", "NXDOMAIN"), 300, "{after}");

    // Outside: a random-subdomain flood faster than 5 answers a second is limited; every
    // limited answer is dropped or slipped, and counted so.
    let answered = send("127.0.0.1", server.dns, 400, |i| (format!("r{i}.lct.internal"), 1));
    let flood = metrics(server.stats);
    let (dropped, slipped) = (value(&flood, "lct_dns_rrl_dropped_total"), value(&flood, "lct_dns_rrl_slipped_total"));
    let nx = queries(&flood, "external", "A", "NXDOMAIN") - queries(&after, "external", "A", "NXDOMAIN");
    assert_eq!(nx, 400, "every query answered by the tables is counted, limited or not");
    assert!(dropped >= 150 && slipped >= 150, "dropped {dropped}, slipped {slipped}: {flood}");
    assert_eq!(answered as u64, 400 - dropped, "what was not dropped came back (slipped ones truncated)");

    // TCP and a transfer (signed AXFR with kdig), then `lct-dns stats` sees them.
    let key = format!("hmac-sha256:xfr:{}", secret(&dir.join("xfr.key")));
    let axfr = std::process::Command::new("kdig")
        .args(["-y", &key, "@127.0.0.1", "-p", &server.dns.to_string(), "+time=2", "lct.internal", "AXFR"])
        .output()
        .unwrap();
    let axfr = String::from_utf8_lossy(&axfr.stdout);
    assert!(axfr.contains("zk-1.zk.lct.internal."), "{axfr}");
    let stats = env.run("lct-dns", &["-o", "jsonl", "stats", "--server", &format!("127.0.0.1:{}", server.stats)]).ok();
    let lines: Vec<serde_json::Value> = stats.json_lines();
    assert!(lines.iter().all(|l| l["kind"] == "dns-stat"));
    let stat = |metric: &str, label: Option<(&str, &str)>| -> u64 {
        lines
            .iter()
            .find(|l| l["metric"] == metric && label.is_none_or(|(k, v)| l["labels"][k] == v))
            .and_then(|l| l["value"].as_u64())
            .unwrap_or_else(|| panic!("{metric} {label:?} not in {lines:?}"))
    };
    assert_eq!(stat("lct_dns_transfers_out_total", Some(("type", "AXFR"))), 1);
    assert_eq!(stat("lct_dns_queries_total", Some(("qtype", "AXFR"))), 1);
    assert!(stat("lct_dns_tcp_accepted_total", None) >= 1);
    assert_eq!(stat("lct_dns_rrl_dropped_total", None), dropped);
    assert_eq!(stat("lct_dns_zone_serial", Some(("zone", "lct.internal."))), 9);
}

#[test]
fn the_statistics_listener_withstands_huge_headers_slowloris_and_many_connections() {
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    let server = start(&env, &dir);

    // Headers past 8 KiB: 431, closed, nothing else read.
    let huge = format!("GET /metrics HTTP/1.1\r\nX-Filler: {}\r\n\r\n", "a".repeat(20_000));
    let mut s = TcpStream::connect(("127.0.0.1", server.stats)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(huge.as_bytes()); // the server may close before it is all sent
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    // Other methods and paths.
    assert!(http(server.stats, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
    assert!(http(server.stats, b"GET /etc/passwd HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    assert!(http(server.stats, b"GET /metrics\r\n\r\n").starts_with("HTTP/1.1 400 "));

    // Slowloris: a byte every 300 ms is cut off after the head deadline (500 ms);
    // meanwhile scrapes and queries are answered at once.
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", server.stats)).unwrap();
        let started = Instant::now();
        for b in b"GET /metrics HTTP/1.1\r\nX-Slow: ".iter().chain([b'a'; 100].iter()) {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
            if started.elapsed() > Duration::from_secs(12) {
                break;
            }
        }
        started.elapsed()
    });
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    metrics(server.stats);
    assert!(t.elapsed() < Duration::from_secs(2), "a scrape waited {:?} behind a slow client", t.elapsed());
    let cut = slow.join().unwrap();
    assert!(cut < Duration::from_secs(8), "the slow client was served {cut:?}");

    // Many connections: 100 held open from one address. The listener serves 2 of them and closes the rest
    // at once (never a queue); DNS answers all along; once the deadline has cut the idle
    // ones, scrapes work again.
    let held: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(("127.0.0.1", server.stats)).unwrap()).collect();
    assert_eq!(lct_tests::fixtures::dns::status(server.dns, "zk-1.zk.lct.internal"), "NOERROR");
    let t = Instant::now();
    let refused = http(server.stats, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(refused.is_empty() && t.elapsed() < Duration::from_secs(2), "{refused:?} after {:?}", t.elapsed());
    lct_tests::fixtures::until("scrapes after the idle connections are cut", Duration::from_secs(10), || {
        http(server.stats, b"GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 ")
    });
    drop(held);
    assert!(value(&metrics(server.stats), "lct_dns_scrapes_refused_total") >= 84);
}

#[test]
fn statistics_on_a_public_or_wildcard_address_are_refused() {
    let env = Env::new();
    let dir = env.state.path();
    zone_file(&env, dir, NODES, "9");
    let records = dir.join("zones.jsonl");
    let run = env.run(
        "lct-dns",
        &["serve", "--records", records.to_str().unwrap(), "--listen", "127.0.0.1:1", "--stats", "0.0.0.0:9153"],
    );
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("stats.listen: 0.0.0.0:9153") && run.stderr.contains("allow_public"), "{}", run.stderr);
    let config = dir.join("public.toml");
    std::fs::write(
        &config,
        format!(
            "records = \"{}\"\nlisten = [\"127.0.0.1:1\"]\n[stats]\nlisten = \"203.0.113.9:9153\"\n",
            records.display()
        ),
    )
    .unwrap();
    let run = env.run("lct-dns", &["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(run.stderr.contains("public.toml: stats.listen: 203.0.113.9:9153"), "{}", run.stderr);
}

/// One address that keeps 16 idle connections open, renewing them as they are cut, starves
/// no one else: scrapes from another address are answered all along (review M6). With
/// `stats.allow`, an address outside it is closed before a byte is read.
#[test]
fn scrapes_are_answered_while_an_address_keeps_renewing_idle_connections() {
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    let server = start_with(&env, &dir, "allow = [\"127.0.0.0/30\"]\n");
    let port = server.stats;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            let mut opened = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Keep 16 open from 127.0.0.1: those the server closed are opened again.
                held.retain(|s| {
                    // Still open: nothing to read yet (closed: end of file or an error).
                    s.set_nonblocking(true).unwrap();
                    matches!(s.peek(&mut [0u8; 1]), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                while held.len() < 16 {
                    held.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
                    opened += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            opened
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    for i in 0..20 {
        let t = Instant::now();
        let answer = http_from("127.0.0.2", port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 200 "), "scrape {i} during the attack: {answer:?}");
        assert!(t.elapsed() < Duration::from_secs(1), "scrape {i} took {:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(150));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = attacker.join().unwrap();
    assert!(opened > 50 && started.elapsed() > Duration::from_secs(3), "the attack renewed {opened} connections");
    // Outside `stats.allow`: closed with nothing said.
    assert_eq!(http_from("127.0.0.9", port, b"GET /metrics HTTP/1.1\r\n\r\n"), "");
    assert!(http_from("127.0.0.3", port, b"GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
}
