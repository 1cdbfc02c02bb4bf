//! Live updates of a running lct-dns: nsupdate (RFC 2136 signed with TSIG) and lct-dns update
//! from the inventory, signed zone transfers checked by kdig and dig, serials, persistence in
//! the state directory across a restart, and refusals that change nothing.

use std::io::Write;
use std::process::{Command, Stdio};

use lct_tests::{Background, Env};

fn node(name: &str, private: &str, public: Option<&str>) -> String {
    lct_tests::fixtures::node("zk", "zookeeper", name, private, public)
}

/// How long a server may take to start or reload on a busy machine.
const WITHIN: std::time::Duration = std::time::Duration::from_secs(15);

struct Server {
    port: String,
    records: std::path::PathBuf,
    key: std::path::PathBuf,
    state: std::path::PathBuf,
}

impl Server {
    /// A zone from `nodes`, a key, a state directory: what `serve` needs.
    fn prepare(env: &Env, nodes: &str, serial: u32) -> Server {
        let dir = env.state.path();
        let records = env
            .run_with_input("lct-dns", &["zone", "--domain", "lct.internal", "--serial", &serial.to_string()], nodes)
            .ok();
        std::fs::write(dir.join("zones.jsonl"), records.stdout).unwrap();
        env.run("lct-dns", &["keygen", "lct-update", "--out", dir.join("update.key").to_str().unwrap()]).ok();
        Server {
            port: lct_tests::free_port().to_string(),
            records: dir.join("zones.jsonl"),
            key: dir.join("update.key"),
            state: dir.join("dns-state"),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(lct_tests::bin("lct-dns"));
        cmd.args(["serve", "--records", self.records.to_str().unwrap(), "--internal", "127.0.0.2/32"])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--key-file", self.key.to_str().unwrap(), "--state", self.state.to_str().unwrap()]);
        cmd
    }

    fn start(&self) -> Background {
        let server = Background::spawn(self.command());
        self.until_answering();
        server
    }

    /// As [`Server::start`], what it logs going to `log`.
    fn start_logged(&self, log: &std::path::Path) -> Background {
        let server = Background::spawn_logged(self.command(), log);
        self.until_answering();
        server
    }

    /// The update log in the state directory (the updates since the zones were written
    /// whole), if there is one.
    fn update_log(&self) -> Option<std::path::PathBuf> {
        std::fs::read_dir(&self.state)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".updates.jsonl"))
    }

    /// Waits until the server answers (it started, or reloaded).
    fn until_answering(&self) {
        lct_tests::fixtures::until(&format!("lct-dns answers on port {}", self.port), WITHIN, || {
            self.dig("127.0.0.2", &["lct.internal", "SOA"]).contains("status: NOERROR")
        });
    }

    fn dig(&self, src: &str, args: &[&str]) -> String {
        let out = Command::new("dig")
            .args(["+time=1", "+tries=1", "-b", src, "@127.0.0.1", "-p", &self.port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn short(&self, src: &str, name: &str) -> String {
        self.dig(src, &["+short", name, "A"]).trim().to_string()
    }

    fn serial(&self) -> u32 {
        self.dig("127.0.0.2", &["+short", "lct.internal", "SOA"]).split_whitespace().nth(2).unwrap().parse().unwrap()
    }

    fn secret(&self) -> String {
        let text = std::fs::read_to_string(&self.key).unwrap();
        text.split('"').nth(3).unwrap().to_string()
    }

    /// nsupdate with `args` (-k FILE or -y ...), the commands, and its exit status and output.
    fn nsupdate(&self, args: &[&str], commands: &str) -> (bool, String) {
        let mut child = Command::new("nsupdate")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let script = format!("server 127.0.0.1 {}\nzone lct.internal\n{commands}\nsend\n", self.port);
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn nsupdate_with_the_key_adds_and_removes_a_node_and_wrong_keys_change_nothing() {
    let env = Env::new();
    let server = Server::prepare(&env, &node("zk-1", "192.168.128.1", Some("203.0.113.1")), 100);
    let _running = server.start();
    let key = server.key.to_str().unwrap();
    assert_eq!(server.serial(), 100);

    let (ok, err) = server.nsupdate(
        &["-k", key],
        "update add web-1.zk.lct.internal 300 A 192.168.128.9\nupdate add web-1.zk.lct.internal 300 A 203.0.113.9",
    );
    assert!(ok, "{err}");
    // Inside the private address, outside the public one: the view follows the address.
    assert_eq!(server.short("127.0.0.2", "web-1.zk.lct.internal"), "192.168.128.9");
    assert_eq!(server.short("127.0.0.1", "web-1.zk.lct.internal"), "203.0.113.9");
    assert_eq!(server.serial(), 101, "every change raises the serial");
    // An AAAA too, and the next query sees it (hickory's path, not only the fast one).
    let (ok, err) = server.nsupdate(&["-k", key], "update add web-1.zk.lct.internal 300 AAAA 2001:db8::9");
    assert!(ok, "{err}");
    assert!(server.dig("127.0.0.1", &["+short", "web-1.zk.lct.internal", "AAAA"]).contains("2001:db8::9"));

    // A wrong secret: BADSIG, nothing changes.
    let wrong = "hmac-sha256:lct-update:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";
    let (ok, err) = server.nsupdate(&["-y", wrong], "update delete web-1.zk.lct.internal A");
    assert!(!ok && err.contains("BADSIG"), "{err}");
    // An unknown key: BADKEY.
    let unknown = format!("hmac-sha256:other-key:{}", server.secret());
    let (ok, err) = server.nsupdate(&["-y", &unknown], "update delete web-1.zk.lct.internal A");
    assert!(!ok && err.contains("BADKEY"), "{err}");
    // Unsigned: REFUSED.
    let (ok, err) = server.nsupdate(&[], "update delete web-1.zk.lct.internal A");
    assert!(!ok && err.contains("REFUSED"), "{err}");
    // A name outside the zone: NOTZONE, and the good half of the message is not applied.
    let (ok, err) = server
        .nsupdate(&["-k", key], "update delete web-1.zk.lct.internal A\nupdate add x.example.org 300 A 192.168.128.10");
    assert!(!ok && err.contains("NOTZONE"), "{err}");
    assert_eq!(server.short("127.0.0.2", "web-1.zk.lct.internal"), "192.168.128.9");
    assert_eq!(server.serial(), 102);

    // The key removes it: NXDOMAIN inside and out.
    let (ok, err) = server.nsupdate(&["-k", key], "update delete web-1.zk.lct.internal");
    assert!(ok, "{err}");
    for src in ["127.0.0.2", "127.0.0.1"] {
        assert!(server.dig(src, &["web-1.zk.lct.internal", "A"]).contains("status: NXDOMAIN"));
    }
    assert_eq!(server.serial(), 103);
}

#[test]
fn lct_dns_update_follows_the_inventory_and_survives_a_restart() {
    let env = Env::new();
    let one = node("zk-1", "192.168.128.1", Some("203.0.113.1"));
    let server = Server::prepare(&env, &one, 7);
    let running = server.start();
    let key = server.key.to_str().unwrap();
    let port = format!("127.0.0.1:{}", server.port);
    let update = |nodes: &str, extra: &[&str]| {
        let mut args = vec!["update", "--server", &port, "--key-file", key, "--domain", "lct.internal"];
        args.extend_from_slice(extra);
        env.run_with_input("lct-dns", &args, nodes)
    };

    // Two nodes join.
    let three =
        format!("{one}{}{}", node("zk-2", "192.168.128.2", Some("203.0.113.2")), node("zk-3", "192.168.128.3", None));
    let dry = update(&three, &["--dry-run"]).ok();
    assert_eq!(dry.json_lines()[0]["dry_run"], true);
    assert!(server.dig("127.0.0.2", &["zk-2.zk.lct.internal", "A"]).contains("NXDOMAIN"), "a dry run sends nothing");
    let forward = |run: &lct_tests::Run| {
        run.json_lines().into_iter().find(|r| r["zone"] == "lct.internal.").expect("a report on the forward zone")
    };
    let out = update(&three, &[]).ok();
    let report = &forward(&out);
    assert_eq!(report["kind"], "dns-update");
    let reverse = out.json_lines().into_iter().find(|r| r["zone"] == "168.192.in-addr.arpa.").unwrap();
    assert_eq!(reverse["added"], 2, "two PTR records: {reverse}");
    // zk-2: A inside and outside; zk-3: A inside; the group name gains those three too.
    assert_eq!(report["added"], 6, "{report}");
    assert_eq!(report["removed"], 0);
    assert_eq!((report["serial_before"].as_u64(), report["serial_after"].as_u64()), (Some(7), Some(8)));
    assert_eq!(server.short("127.0.0.2", "zk-2.zk.lct.internal"), "192.168.128.2");
    assert_eq!(server.short("127.0.0.1", "zk-2.zk.lct.internal"), "203.0.113.2");
    assert!(server.dig("127.0.0.1", &["zk-3.zk.lct.internal", "A"]).contains("NXDOMAIN"), "no public address");
    // The reverse zone learned zk-2's PTR.
    let ptr = server.dig("127.0.0.2", &["+short", "-x", "192.168.128.2"]);
    assert_eq!(ptr.trim(), "zk-2.zk.lct.internal.");

    // Again: nothing to do, no new serial.
    let again = update(&three, &[]).ok();
    // One report per zone, as before (the forward zone and the reverse one), each empty.
    assert_eq!(again.json_lines().len(), out.json_lines().len(), "{}", again.stdout);
    assert!(again.json_lines().iter().all(|r| r["added"] == 0 && r["removed"] == 0), "{}", again.stdout);
    assert_eq!(server.serial(), 8);

    // zk-1 leaves.
    let two = three.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>();
    let out = update(&two, &[]).ok();
    assert!(forward(&out)["removed"].as_u64().unwrap() >= 2);
    assert!(server.dig("127.0.0.2", &["zk-1.zk.lct.internal", "A"]).contains("NXDOMAIN"));
    assert_eq!(server.serial(), 9);
    let kept = std::fs::read_dir(&server.state).unwrap().filter_map(|e| e.ok()).any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with("zones-") && name.ends_with(".jsonl")
    });
    assert!(kept, "kept in the state directory");

    // A restart serves the same data and serial (the records file is older).
    drop(running);
    let running = server.start();
    assert_eq!(server.serial(), 9);
    assert_eq!(server.short("127.0.0.2", "zk-2.zk.lct.internal"), "192.168.128.2");
    assert!(server.dig("127.0.0.2", &["zk-1.zk.lct.internal", "A"]).contains("NXDOMAIN"));

    // A records file made afresh with a newer serial replaces the updates on reload.
    let records = env.run_with_input("lct-dns", &["zone", "--domain", "lct.internal", "--serial", "50"], &one).ok();
    std::fs::write(&server.records, records.stdout).unwrap();
    Command::new("kill").args(["-HUP", &running.0.id().to_string()]).status().unwrap();
    let serial = lct_tests::fixtures::settle(WITHIN, || server.serial(), |serial| *serial == 50);
    assert_eq!(serial, 50);
    assert_eq!(server.short("127.0.0.2", "zk-1.zk.lct.internal"), "192.168.128.1");

    // A bad key file is named with its line; a wrong key is refused with the server's reason.
    let bad = env.state.path().join("bad.key");
    std::fs::write(&bad, "key \"k\" {\n  algorithm hmac-md5;\n  secret \"eA==\";\n};\n").unwrap();
    let out = env.run_with_input(
        "lct-dns",
        &["update", "--server", &port, "--key-file", bad.to_str().unwrap(), "--domain", "lct.internal"],
        &one,
    );
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("bad.key: line 2: algorithm \"hmac-md5\" is not supported"), "{}", out.stderr);
    env.run("lct-dns", &["keygen", "lct-update", "--out", bad.to_str().unwrap()]).ok();
    let out = env.run_with_input(
        "lct-dns",
        &["update", "--server", &port, "--key-file", bad.to_str().unwrap(), "--domain", "lct.internal"],
        &three,
    );
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("BadSig"), "{}", out.stderr);
    assert_eq!(server.serial(), 50, "nothing changed");
}

/// Each update is appended to a log and synced, not the zones rewritten: a crash in the
/// middle of an append (the log cut in its last line) restarts on the version before it,
/// says which line was torn, and takes updates again; a clean stop folds the log into the
/// state file.
#[test]
fn a_crash_in_the_middle_of_an_update_serves_the_version_before_it() {
    let env = Env::new();
    let server = Server::prepare(&env, &node("zk-1", "192.168.128.1", None), 7);
    let running = server.start();
    let key = server.key.to_str().unwrap();
    for (i, name) in ["x1", "x2"].iter().enumerate() {
        let add = format!("update add {name}.zk.lct.internal 300 A 192.168.128.{}", 11 + i);
        let (ok, err) = server.nsupdate(&["-k", key], &add);
        assert!(ok, "{err}");
    }
    assert_eq!(server.serial(), 9);
    let log = server.update_log().expect("the updates are in the log");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 2, "one line per update: {text}");
    drop(running); // SIGKILL: no clean stop
    // The second append cut short, as a crash in the middle of its write leaves it.
    let whole = text.len();
    let first = text.find('\n').unwrap() + 1;
    std::fs::write(&log, &text.as_bytes()[..whole - 20]).unwrap();

    let said = env.state.path().join("restart.log");
    let running = server.start_logged(&said);
    assert_eq!(server.serial(), 8, "the version before the torn update");
    assert_eq!(server.short("127.0.0.2", "x1.zk.lct.internal"), "192.168.128.11");
    assert!(server.dig("127.0.0.2", &["x2.zk.lct.internal", "A"]).contains("NXDOMAIN"));
    let said_text = std::fs::read_to_string(&said).unwrap();
    assert!(
        said_text.contains(&format!("line 2 (byte {first}): cut short"))
            && said_text.contains("the version before it serves"),
        "the torn line reported: {said_text}"
    );
    // The start wrote the zones whole: the log is gone, and updates go on from serial 8.
    assert!(server.update_log().is_none(), "folded at start");
    let (ok, err) = server.nsupdate(&["-k", key], "update add x3.zk.lct.internal 300 A 192.168.128.13");
    assert!(ok, "{err}");
    assert_eq!(server.serial(), 9);
    assert!(server.update_log().is_some());
    // A clean stop (SIGTERM) folds the log into the state file.
    Command::new("kill").args(["-TERM", &running.0.id().to_string()]).status().unwrap();
    let mut running = running;
    running.wait();
    assert!(server.update_log().is_none(), "folded at a clean stop");
    let _running = server.start();
    assert_eq!(server.serial(), 9);
    assert_eq!(server.short("127.0.0.2", "x3.zk.lct.internal"), "192.168.128.13");
    assert!(server.dig("127.0.0.2", &["x2.zk.lct.internal", "A"]).contains("NXDOMAIN"));
}

#[test]
fn signed_transfers_verify_with_kdig_and_dig_and_unsigned_ones_are_refused() {
    let env = Env::new();
    // Enough records for several messages: the MACs chain across them (RFC 8945 5.3.1).
    let nodes: String = (1..=300)
        .map(|i| node(&format!("n-{i}"), &format!("192.168.{}.{}", 128 + i / 250, i % 250 + 1), None))
        .collect();
    let server = Server::prepare(&env, &nodes, 3);
    let _running = server.start();
    let key = format!("hmac-sha256:lct-update:{}", server.secret());
    for client in ["kdig", "dig"] {
        let out = Command::new(client)
            .args(["-y", &key, "@127.0.0.1", "-p", &server.port, "lct.internal", "AXFR"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // SOA twice, NS, glue, 300 node names, 300 group addresses.
        let records = text.lines().filter(|l| l.contains("\tIN\t") && !l.starts_with(';')).count();
        assert_eq!(records, 2 + 1 + 1 + 600, "{client}: {text}");
        assert!(!text.contains("failed") && !text.contains("TSIG error"), "{client}: {text}");
        assert!(text.contains("messages") || client == "dig", "{client}: {text}");
    }
    let unsigned = server.dig("127.0.0.1", &["lct.internal", "AXFR"]);
    assert!(unsigned.contains("Transfer failed") || unsigned.contains("REFUSED"), "{unsigned}");
}

/// A query for `name` A with id `id`, as a stub resolver sends it.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
fn updates_drop_no_query() {
    let env = Env::new();
    let one = node("zk-1", "192.168.128.1", Some("203.0.113.1"));
    let server = Server::prepare(&env, &one, 1);
    let _running = server.start();
    let port: u16 = server.port.parse().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
            socket.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
            let (mut asked, mut lost) = (0u32, 0u32);
            let mut buf = [0u8; 512];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = asked as u16;
                socket.send_to(&query(id, "zk-1.zk.lct.internal"), ("127.0.0.1", port)).unwrap();
                asked += 1;
                // The answer to this query: NOERROR with one answer.
                match lct_tests::uninterrupted(|| socket.recv(&mut buf)) {
                    Ok(n) if n > 12 && buf[..2] == id.to_be_bytes() && buf[3] & 0xf == 0 && buf[7] == 1 => {}
                    _ => lost += 1,
                }
            }
            (asked, lost)
        })
    };
    let key = server.key.to_str().unwrap();
    let address = format!("127.0.0.1:{}", server.port);
    for round in 0..6 {
        // Membership changes: 100 nodes come and go.
        let many: String = if round % 2 == 0 {
            (1..=100).map(|i| node(&format!("n-{i}"), &format!("192.168.129.{i}"), None)).collect()
        } else {
            String::new()
        };
        let args = ["update", "--server", &address, "--key-file", key, "--domain", "lct.internal"];
        env.run_with_input("lct-dns", &args, &format!("{one}{many}")).ok();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (asked, lost) = asker.join().unwrap();
    assert!(asked > 100, "asked {asked}");
    assert_eq!(lost, 0, "{lost} of {asked} queries went unanswered or wrong during updates");
    assert_eq!(server.serial(), 7, "six updates");
}

#[test]
fn update_keys_limited_to_zones_and_prefixes() {
    let env = Env::new();
    let server = Server::prepare(&env, &node("zk-1", "192.168.128.1", Some("203.0.113.1")), 100);
    let dir = env.state.path();
    for key in ["scoped-zone", "scoped-net"] {
        env.run("lct-dns", &["keygen", key, "--out", dir.join(format!("{key}.key")).to_str().unwrap()]).ok();
    }
    std::fs::write(
        dir.join("lct-dns.toml"),
        format!(
            r#"records = "{records}"
listen = ["127.0.0.1:{port}"]
internal = ["127.0.0.2/32"]
state = "{state}"
[[update]]
key = "scoped-zone.key"
zones = ["other.test"]
[[update]]
key = "scoped-net.key"
allow = ["127.0.0.2/32"]
"#,
            records = server.records.display(),
            port = server.port,
            state = server.state.display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(lct_tests::bin("lct-dns"));
    cmd.args(["serve", "--config", dir.join("lct-dns.toml").to_str().unwrap()]);
    let _running = Background::spawn(cmd);
    server.until_answering();
    let add = "update add web-1.zk.lct.internal 300 A 192.168.128.9";
    // A key for another zone: refused here.
    let zone_key = dir.join("scoped-zone.key");
    let (ok, err) = server.nsupdate(&["-k", zone_key.to_str().unwrap()], add);
    assert!(!ok && err.contains("REFUSED"), "{err}");
    // A key for one prefix: refused from elsewhere, taken from there.
    let net_key = dir.join("scoped-net.key");
    let (ok, err) = server.nsupdate(&["-k", net_key.to_str().unwrap()], &format!("local 127.0.0.1\n{add}"));
    assert!(!ok && err.contains("REFUSED"), "{err}");
    assert_eq!(server.serial(), 100, "nothing changed");
    let (ok, err) = server.nsupdate(&["-k", net_key.to_str().unwrap()], &format!("local 127.0.0.2\n{add}"));
    assert!(ok, "{err}");
    assert_eq!(server.short("127.0.0.2", "web-1.zk.lct.internal"), "192.168.128.9");
}
