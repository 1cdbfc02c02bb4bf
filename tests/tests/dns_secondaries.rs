//! lct-dns as a primary of real secondaries: Knot (knotd) takes the internal view with its
//! key, BIND (named) the external view with its own; both follow a change through NOTIFY
//! and IXFR; unsigned, wrongly signed and misused requests are refused.

use std::process::Command;

use lct_tests::{Background, Env};

fn node(name: &str, private: &str, public: Option<&str>) -> String {
    let public = public.map_or(String::new(), |p| format!(r#","public_ipv4":["{p}"]"#));
    format!(
        r#"{{"kind":"node","v":1,"cluster":"zk","group":"zookeeper","name":"{name}","provider":"local","status":"running","private_ipv4":["{private}"]{public}}}"#
    ) + "\n"
}

/// The base64 secret of a key file (`secret "...";`).
fn secret(key_file: &std::path::Path) -> String {
    let text = std::fs::read_to_string(key_file).unwrap();
    text.lines().find_map(|l| l.trim().strip_prefix("secret \"")).unwrap().trim_end_matches("\";").to_string()
}

/// `+short` A answers for `name` from the server on `port`, sorted.
fn addresses(port: u16, name: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args(["+time=1", "+tries=1", "+short", "@127.0.0.1", "-p", &port.to_string(), name, "A"])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    v.sort();
    v
}

/// A named.conf in `bdir` for BIND on loopback `port` (no recursion, no IPv6): `options`
/// are added to its options block, `zones` follow it.
fn named_conf(bdir: &std::path::Path, port: u16, options: &str, zones: &str) {
    let b = bdir.display();
    let text = format!(
        "options {{\n    directory \"{b}\";\n    pid-file \"{b}/named.pid\";\n    listen-on port {port} {{ 127.0.0.1; }};\n    listen-on-v6 {{ none; }};\n    recursion no;\n{options}}};\n{zones}"
    );
    std::fs::write(bdir.join("named.conf"), text).unwrap();
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..150 {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("not within 15 s: {what}");
}

#[test]
fn knot_and_bind_transfer_the_view_their_key_selects_and_follow_changes() {
    for tool in ["knotd", "named"] {
        assert!(
            Command::new("sh").args(["-c", &format!("command -v {tool}")]).status().unwrap().success(),
            "{tool} is missing: scripts/setup installs it"
        );
    }
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    let nodes = node("zk-1", "192.168.128.1", Some("203.0.113.1")) + &node("zk-2", "192.168.128.2", None);
    let records = env
        .run_with_input("lct-dns", &["zone", "--domain", "lct.internal", "--serial", "10", "--no-reverse"], &nodes)
        .ok();
    std::fs::write(dir.join("zones.jsonl"), records.stdout).unwrap();
    for key in ["lct-update", "xfr-internal", "xfr-external"] {
        env.run("lct-dns", &["keygen", key, "--out", dir.join(format!("{key}.key")).to_str().unwrap()]).ok();
    }
    let (primary, knot, bind) = (lct_tests::free_port(), lct_tests::free_port(), lct_tests::free_port());
    std::fs::write(
        dir.join("lct-dns.toml"),
        format!(
            r#"records = "{d}/zones.jsonl"
listen = ["127.0.0.1:{primary}"]
internal = ["192.168.0.0/16"]
keys = ["lct-update.key"]
state = "{d}/dns-state"

[[secondary]]
key = "xfr-internal.key"
view = "internal"
notify = ["127.0.0.1:{knot}"]
allow = ["127.0.0.0/8"]

[[secondary]]
key = "xfr-external.key"
view = "external"
notify = ["127.0.0.1:{bind}"]
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(lct_tests::bin("lct-dns"));
    cmd.args(["-v", "serve", "--config", dir.join("lct-dns.toml").to_str().unwrap()]).env("LCT_STATE_DIR", &dir);
    let log = dir.join("lct-dns.log");
    let primary_server = Background::spawn_logged(cmd, &log);
    until("lct-dns answers", || !addresses(primary, "zk-1.zk.lct.internal").is_empty());

    // Knot: the internal view, refreshed by NOTIFY from lct-dns (signed with the same key).
    let kdir = dir.join("knot");
    std::fs::create_dir_all(&kdir).unwrap();
    std::fs::write(
        kdir.join("knot.conf"),
        format!(
            r#"server:
    listen: 127.0.0.1@{knot}
    rundir: {k}
log:
  - target: stderr
    any: info
database:
    storage: {k}
key:
  - id: xfr-internal
    algorithm: hmac-sha256
    secret: {secret}
remote:
  - id: primary
    address: 127.0.0.1@{primary}
    key: xfr-internal
acl:
  - id: from-primary
    address: 127.0.0.1
    key: xfr-internal
    action: notify
template:
  - id: default
    storage: {k}
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: lct.internal
    master: primary
    acl: from-primary
"#,
            k = kdir.display(),
            secret = secret(&dir.join("xfr-internal.key")),
        ),
    )
    .unwrap();
    let mut cmd = Command::new("knotd");
    cmd.args(["-c", kdir.join("knot.conf").to_str().unwrap()]);
    let _knot = Background::spawn(cmd);

    // BIND: the external view.
    let bdir = dir.join("bind");
    std::fs::create_dir_all(&bdir).unwrap();
    named_conf(
        &bdir,
        bind,
        r#"    notify no;
    dnssec-validation no;
"#,
        &format!(
            r#"key "xfr-external" {{ algorithm hmac-sha256; secret "{secret}"; }};
server 127.0.0.1 {{ keys {{ xfr-external; }}; }};
zone "lct.internal" {{
    type secondary;
    primaries port {primary} {{ 127.0.0.1 key xfr-external; }};
    file "{b}/lct.internal.db";
    allow-notify {{ key xfr-external; }};
}};
"#,
            secret = secret(&dir.join("xfr-external.key")),
            b = bdir.display(),
        ),
    );
    let mut cmd = Command::new("named");
    cmd.args(["-g", "-c", bdir.join("named.conf").to_str().unwrap()]);
    let _bind = Background::spawn(cmd);

    // Each serves its view, never the other's.
    until("Knot serves the zone", || !addresses(knot, "zk-1.zk.lct.internal").is_empty());
    until("BIND serves the zone", || !addresses(bind, "zk-1.zk.lct.internal").is_empty());
    assert_eq!(addresses(knot, "zk-1.zk.lct.internal"), ["192.168.128.1"]);
    assert_eq!(addresses(knot, "zk-2.zk.lct.internal"), ["192.168.128.2"]);
    assert_eq!(addresses(bind, "zk-1.zk.lct.internal"), ["203.0.113.1"]);
    assert!(addresses(bind, "zk-2.zk.lct.internal").is_empty(), "a private-only node outside");
    let bind_zone = std::fs::read(bdir.join("lct.internal.db")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&bind_zone).contains("192.168.128."), "private addresses in BIND's copy");

    // A change: NOTIFY, then each fetches it by IXFR (the journal holds serial 10 -> 11).
    let more = nodes + &node("zk-3", "192.168.128.3", Some("203.0.113.3"));
    let key = dir.join("lct-update.key");
    lct_dns_update(&env, primary, &key, &more);
    until("Knot follows", || addresses(knot, "zk-3.zk.lct.internal") == ["192.168.128.3"]);
    until("BIND follows", || addresses(bind, "zk-3.zk.lct.internal") == ["203.0.113.3"]);
    // Told by NOTIFY, fetched incrementally: one IXFR per view from serial 10.
    let said = std::fs::read_to_string(&log).unwrap();
    for view in ["internal", "external"] {
        assert!(said.contains(&format!("IXFR of 6 records (serial 11, {view} view)")), "{view}: {said}");
        assert!(said.contains("notified to 127.0.0.1"), "{said}");
    }

    // The primary restarts: its journal was kept, so the next change still goes by IXFR.
    drop(primary_server);
    let mut cmd = Command::new(lct_tests::bin("lct-dns"));
    cmd.args(["-v", "serve", "--config", dir.join("lct-dns.toml").to_str().unwrap()]).env("LCT_STATE_DIR", &dir);
    let restarted_log = dir.join("lct-dns-restarted.log");
    let _primary = Background::spawn_logged(cmd, &restarted_log);
    until("lct-dns answers again", || addresses(primary, "zk-3.zk.lct.internal") == ["203.0.113.3"]);
    let even_more = more.clone() + &node("zk-4", "192.168.128.4", Some("203.0.113.4"));
    lct_dns_update(&env, primary, &key, &even_more);
    until("Knot follows after the restart", || addresses(knot, "zk-4.zk.lct.internal") == ["192.168.128.4"]);
    until("BIND follows after the restart", || addresses(bind, "zk-4.zk.lct.internal") == ["203.0.113.4"]);
    let said = std::fs::read_to_string(&restarted_log).unwrap();
    // (The AXFR of every view is `lct-dns update`'s own, to diff.)
    let secondaries_axfr = said.lines().any(|l| l.contains("AXFR of") && !l.contains("every view"));
    assert!(!secondaries_axfr, "a secondary needed a full transfer after the restart: {said}");
    assert_eq!(said.matches("IXFR of").count(), 2, "{said}");

    // Refusals: unsigned, wrongly signed, a secondary's key updating.
    let axfr = |extra: &[&str]| {
        let out = Command::new("dig")
            .args(["+time=2", "+tries=1", "@127.0.0.1", "-p", &primary.to_string(), "lct.internal", "AXFR"])
            .args(extra)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(axfr(&[]).contains("Transfer failed"), "an unsigned AXFR");
    let wrong = format!("hmac-sha256:xfr-internal:{}", secret(&dir.join("xfr-external.key")));
    assert!(!axfr(&["-y", &wrong]).contains("192.168.128.1"), "a wrongly signed AXFR");
    let internal = format!("hmac-sha256:xfr-internal:{}", secret(&dir.join("xfr-internal.key")));
    let transfer = axfr(&["-y", &internal]);
    assert!(transfer.contains("192.168.128.3") && !transfer.contains("203.0.113."), "{transfer}");
    let update = Command::new("nsupdate")
        .args(["-k", dir.join("xfr-internal.key").to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(
                format!("server 127.0.0.1 {primary}\nzone lct.internal\nupdate add evil.lct.internal 300 A 192.0.2.1\nsend\n")
                    .as_bytes(),
            )?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        !update.status.success() && String::from_utf8_lossy(&update.stdout).contains("REFUSED")
            || String::from_utf8_lossy(&update.stderr).contains("REFUSED"),
        "{update:?}"
    );
    assert!(addresses(primary, "evil.lct.internal").is_empty());
    if std::env::var_os("LCT_SHOW_LOG").is_some() {
        eprintln!("{}", std::fs::read_to_string(&log).unwrap());
    }
}

/// The status dig reports for `name` at the server on `port` (NOERROR, SERVFAIL, ...).
fn status(port: u16, name: &str) -> String {
    let out = Command::new("dig")
        .args(["+time=1", "+tries=1", "@127.0.0.1", "-p", &port.to_string(), name, "A"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("no answer").to_string()
}

/// nsupdate with a `-y` key against a server on loopback.
fn nsupdate(port: u16, key: &str, zone: &str, line: &str) {
    use std::io::Write;
    let mut child = Command::new("nsupdate")
        .args(["-y", key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("server 127.0.0.1 {port}\nzone {zone}\n{line}\nsend\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "nsupdate: {out:?}");
}

#[test]
fn lct_dns_follows_knot_bind_and_lct_dns_primaries() {
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    for key in ["k-knot", "k-bind", "k-lct", "lct-update"] {
        env.run("lct-dns", &["keygen", key, "--out", dir.join(format!("{key}.key")).to_str().unwrap()]).ok();
    }
    let (knot, bind, primary, secondary) =
        (lct_tests::free_port(), lct_tests::free_port(), lct_tests::free_port(), lct_tests::free_port());

    // Knot, primary of knot.test: short timers, so that expiry shows within the test.
    let kdir = dir.join("knot");
    std::fs::create_dir_all(&kdir).unwrap();
    std::fs::write(
        kdir.join("knot.test.zone"),
        "$ORIGIN knot.test.\n$TTL 60\n@ SOA ns1.knot.test. hostmaster.knot.test. 1 2 1 6 60\n@ NS ns1.knot.test.\nns1 A 192.0.2.1\nwww A 192.0.2.10\n",
    )
    .unwrap();
    std::fs::write(
        kdir.join("knot.conf"),
        format!(
            r#"server:
    listen: 127.0.0.1@{knot}
    rundir: {k}
log:
  - target: stderr
    any: info
database:
    storage: {k}
key:
  - id: k-knot
    algorithm: hmac-sha256
    secret: {secret}
remote:
  - id: lct
    address: 127.0.0.1@{secondary}
    key: k-knot
acl:
  - id: lct
    address: 127.0.0.1
    key: k-knot
    action: [transfer, update]
zone:
  - domain: knot.test
    storage: {k}
    file: knot.test.zone
    notify: lct
    acl: lct
    zonefile-sync: -1
"#,
            k = kdir.display(),
            secret = secret(&dir.join("k-knot.key")),
        ),
    )
    .unwrap();
    let mut cmd = Command::new("knotd");
    cmd.args(["-c", kdir.join("knot.conf").to_str().unwrap()]);
    let knot_server = Background::spawn(cmd);

    // BIND, primary of bind.test, dynamic (its journal answers IXFR).
    let bdir = dir.join("bind");
    std::fs::create_dir_all(&bdir).unwrap();
    std::fs::write(
        bdir.join("bind.test.db"),
        "$ORIGIN bind.test.\n$TTL 60\n@ SOA ns1.bind.test. hostmaster.bind.test. 1 60 10 600 60\n@ NS ns1.bind.test.\nns1 A 192.0.2.2\nwww A 192.0.2.20\n",
    )
    .unwrap();
    named_conf(
        &bdir,
        bind,
        r#"    notify explicit;
    dnssec-validation no;
"#,
        &format!(
            r#"key "k-bind" {{ algorithm hmac-sha256; secret "{secret}"; }};
server 127.0.0.1 {{ keys {{ k-bind; }}; }};
zone "bind.test" {{
    type primary;
    file "{b}/bind.test.db";
    allow-transfer {{ key k-bind; }};
    allow-update {{ key k-bind; }};
    also-notify {{ 127.0.0.1 port {secondary}; }};
}};
"#,
            secret = secret(&dir.join("k-bind.key")),
            b = bdir.display(),
        ),
    );
    let mut cmd = Command::new("named");
    cmd.args(["-g", "-c", bdir.join("named.conf").to_str().unwrap()]);
    let _bind = Background::spawn(cmd);

    // lct-dns, primary of lct.internal, with the other lct-dns as its secondary.
    let nodes = node("zk-1", "192.168.128.1", Some("203.0.113.1"));
    let records = env
        .run_with_input("lct-dns", &["zone", "--domain", "lct.internal", "--serial", "10", "--no-reverse"], &nodes)
        .ok();
    std::fs::write(dir.join("zones.jsonl"), records.stdout).unwrap();
    std::fs::write(
        dir.join("primary.toml"),
        format!(
            r#"records = "{d}/zones.jsonl"
listen = ["127.0.0.1:{primary}"]
keys = ["lct-update.key"]
state = "{d}/primary-state"
[[secondary]]
key = "k-lct.key"
view = "internal"
notify = ["127.0.0.1:{secondary}"]
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(lct_tests::bin("lct-dns"));
    cmd.args(["-v", "serve", "--config", dir.join("primary.toml").to_str().unwrap()]).env("LCT_STATE_DIR", &dir);
    let primary_server = Background::spawn_logged(cmd, &dir.join("primary.log"));

    // The lct-dns secondary of all three, with its own (empty) records file.
    std::fs::write(dir.join("none.jsonl"), "").unwrap();
    std::fs::write(
        dir.join("secondary.toml"),
        format!(
            r#"records = "{d}/none.jsonl"
listen = ["127.0.0.1:{secondary}"]
internal = ["127.0.0.0/8"]
state = "{d}/secondary-state"
[[primary]]
zone = "knot.test"
address = "127.0.0.1:{knot}"
key = "k-knot.key"
[[primary]]
zone = "bind.test"
address = "127.0.0.1:{bind}"
key = "k-bind.key"
[[primary]]
zone = "lct.internal"
address = "127.0.0.1:{primary}"
key = "k-lct.key"
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    let start_secondary = |log: &str| {
        let mut cmd = Command::new(lct_tests::bin("lct-dns"));
        cmd.args(["-v", "serve", "--config", dir.join("secondary.toml").to_str().unwrap()]).env("LCT_STATE_DIR", &dir);
        Background::spawn_logged(cmd, &dir.join(log))
    };
    let secondary_server = start_secondary("secondary.log");

    until("knot.test transferred", || addresses(secondary, "www.knot.test") == ["192.0.2.10"]);
    until("bind.test transferred", || addresses(secondary, "www.bind.test") == ["192.0.2.20"]);
    until("lct.internal transferred", || addresses(secondary, "zk-1.zk.lct.internal") == ["192.168.128.1"]);
    assert_eq!(status(secondary, "nothing.knot.test"), "NXDOMAIN");

    // Changes at each primary reach the secondary through NOTIFY and IXFR.
    nsupdate(
        knot,
        &format!("hmac-sha256:k-knot:{}", secret(&dir.join("k-knot.key"))),
        "knot.test",
        "update add new.knot.test 60 A 192.0.2.11",
    );
    nsupdate(
        bind,
        &format!("hmac-sha256:k-bind:{}", secret(&dir.join("k-bind.key"))),
        "bind.test",
        "update add new.bind.test 60 A 192.0.2.21",
    );
    let more = nodes + &node("zk-2", "192.168.128.2", None);
    let key = dir.join("lct-update.key");
    lct_dns_update(&env, primary, &key, &more);
    until("Knot's change followed", || addresses(secondary, "new.knot.test") == ["192.0.2.11"]);
    until("BIND's change followed", || addresses(secondary, "new.bind.test") == ["192.0.2.21"]);
    until("lct-dns's change followed", || addresses(secondary, "zk-2.zk.lct.internal") == ["192.168.128.2"]);
    let said = std::fs::read_to_string(dir.join("secondary.log")).unwrap();
    assert!(said.contains("zone knot.test.: NOTIFY: refreshing"), "{said}");
    assert!(said.contains("zone bind.test.: NOTIFY: refreshing"), "{said}");
    assert!(!said.contains("IXFR failed"), "every change came by IXFR: {said}");
    for (zone, serial) in [("knot.test.", 2), ("bind.test.", 2), ("lct.internal.", 11)] {
        assert!(said.contains(&format!("zone {zone}: serial {serial} by IXFR (1 changes)")), "{zone}: {said}");
    }
    let primary_said = std::fs::read_to_string(dir.join("primary.log")).unwrap();
    assert!(primary_said.contains("IXFR of"), "{primary_said}");
    // The secondary takes no update.
    let refused = Command::new("sh")
        .args(["-c", &format!("printf 'server 127.0.0.1 {secondary}\\nzone lct.internal\\nupdate add x.lct.internal 60 A 192.0.2.9\\nsend\\n' | nsupdate -k {}", key.display())])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "an update at the secondary");

    // lct-dns's primary stops: after a restart the secondary serves its kept copy.
    drop(primary_server);
    drop(secondary_server);
    let _secondary_again = start_secondary("secondary2.log");
    until("the kept copy served", || addresses(secondary, "zk-2.zk.lct.internal") == ["192.168.128.2"]);

    // Knot stops: the copy is served until its expire (6 s after the last refresh), then
    // SERVFAIL.
    drop(knot_server);
    assert_eq!(addresses(secondary, "www.knot.test"), ["192.0.2.10"]);
    until("knot.test expired", || status(secondary, "www.knot.test") == "SERVFAIL");
    assert_eq!(status(secondary, "www.bind.test"), "NOERROR", "other zones serve on");
    if std::env::var_os("LCT_SHOW_LOG").is_some() {
        for log in ["secondary.log", "secondary2.log"] {
            eprintln!("{log}:\n{}", std::fs::read_to_string(dir.join(log)).unwrap());
        }
    }
}

#[test]
fn a_50000_record_zone_transfers_whole_to_bind_and_lct_dns_and_follows_by_ixfr() {
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    // 50,000 nodes with a private address each: 50,000 A records in the internal view.
    let nodes_of = |count: usize| -> String {
        (0..count)
            .map(|i| {
                format!(
                    r#"{{"kind":"node","v":1,"cluster":"c{}","group":"g","name":"n-{i}","provider":"local","status":"running","private_ipv4":["10.{}.{}.{}"]}}"#,
                    i % 10,
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                ) + "\n"
            })
            .collect()
    };
    let zone = |count: usize, serial: &str| {
        let out = env
            .run_with_input(
                "lct-dns",
                &["zone", "--domain", "lct.internal", "--serial", serial, "--no-reverse"],
                &nodes_of(count),
            )
            .ok();
        out.stdout
    };
    std::fs::write(dir.join("zones.jsonl"), zone(50_000, "10")).unwrap();
    for key in ["lct-update", "xfr-bind", "xfr-lct"] {
        env.run("lct-dns", &["keygen", key, "--out", dir.join(format!("{key}.key")).to_str().unwrap()]).ok();
    }
    let (primary, bind, secondary) = (lct_tests::free_port(), lct_tests::free_port(), lct_tests::free_port());
    std::fs::write(
        dir.join("primary.toml"),
        format!(
            r#"records = "{d}/zones.jsonl"
listen = ["127.0.0.1:{primary}"]
internal = ["10.0.0.0/8"]
keys = ["lct-update.key"]
state = "{d}/primary-state"
[[secondary]]
key = "xfr-bind.key"
view = "internal"
notify = ["127.0.0.1:{bind}"]
[[secondary]]
key = "xfr-lct.key"
view = "internal"
notify = ["127.0.0.1:{secondary}"]
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(lct_tests::bin("lct-dns"));
    cmd.args(["-v", "serve", "--config", dir.join("primary.toml").to_str().unwrap()]).env("LCT_STATE_DIR", &dir);
    let _primary = Background::spawn_logged(cmd, &dir.join("primary.log"));
    std::fs::write(dir.join("none.jsonl"), "").unwrap();
    std::fs::write(
        dir.join("secondary.toml"),
        format!(
            r#"records = "{d}/none.jsonl"
listen = ["127.0.0.1:{secondary}"]
internal = ["127.0.0.0/8"]
state = "{d}/secondary-state"
[[primary]]
zone = "lct.internal"
address = "127.0.0.1:{primary}"
key = "xfr-lct.key"
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    let bdir = dir.join("bind");
    std::fs::create_dir_all(&bdir).unwrap();
    named_conf(
        &bdir,
        bind,
        r#"    notify no;
    dnssec-validation no;
    allow-transfer { 127.0.0.1; };
    // A group name of 5,000 members is one RRset of 5,000 A records: BIND 9.18.28 and later
    // refuse more than 100 per RRset unless told (docs/dns.md).
    max-records-per-type 0;
"#,
        &format!(
            r#"key "xfr-bind" {{ algorithm hmac-sha256; secret "{secret}"; }};
server 127.0.0.1 {{ keys {{ xfr-bind; }}; }};
zone "lct.internal" {{
    type secondary;
    primaries port {primary} {{ 127.0.0.1 key xfr-bind; }};
    file "{b}/lct.internal.db";
}};
"#,
            secret = secret(&dir.join("xfr-bind.key")),
            b = bdir.display(),
        ),
    );
    // Wait for the primary, then start both secondaries.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while addresses(primary, "n-49999.c9.lct.internal").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the primary did not answer");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mut cmd = Command::new("named");
    cmd.args(["-g", "-c", bdir.join("named.conf").to_str().unwrap()]);
    let _bind = Background::spawn(cmd);
    let mut cmd = Command::new(lct_tests::bin("lct-dns"));
    cmd.args(["-v", "serve", "--config", dir.join("secondary.toml").to_str().unwrap()]).env("LCT_STATE_DIR", &dir);
    let _secondary = Background::spawn_logged(cmd, &dir.join("secondary.log"));
    // Whole: every A record (BIND's copy, counted by a transfer from it), and the last name.
    let until_long = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "not within 120 s: {what}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    until_long("BIND has it", &|| addresses(bind, "n-49999.c9.lct.internal") == ["10.0.195.79"]);
    until_long("lct-dns has it", &|| addresses(secondary, "n-49999.c9.lct.internal") == ["10.0.195.79"]);
    let count_a = |port: u16| {
        let out = Command::new("dig")
            .args(["+time=10", "+tries=1", "@127.0.0.1", "-p", &port.to_string(), "lct.internal", "AXFR"])
            .args(["-y", &format!("hmac-sha256:xfr-bind:{}", secret(&dir.join("xfr-bind.key")))])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("\tIN\tA\t")).count()
    };
    let at_primary = count_a(primary);
    assert!(at_primary >= 50_000, "{at_primary}");
    assert_eq!(count_a(bind), at_primary, "BIND's copy is whole");
    for i in [0, 12_345, 31_999, 49_999] {
        let name = format!("n-{i}.c{}.lct.internal", i % 10);
        assert_eq!(addresses(secondary, &name), [format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)], "{name}");
    }
    // 500 more nodes: both follow by IXFR.
    std::fs::write(dir.join("more.jsonl"), nodes_of(50_500)).unwrap();
    env.run_with_input(
        "lct-dns",
        &[
            "update",
            "--server",
            &format!("127.0.0.1:{primary}"),
            "--key-file",
            dir.join("lct-update.key").to_str().unwrap(),
            "--domain",
            "lct.internal",
            "--no-reverse",
            "--timeout",
            "60",
        ],
        &nodes_of(50_500),
    )
    .ok();
    until_long("BIND follows", &|| addresses(bind, "n-50499.c9.lct.internal") == ["10.0.197.67"]);
    until_long("lct-dns follows", &|| addresses(secondary, "n-50499.c9.lct.internal") == ["10.0.197.67"]);
    assert_eq!(count_a(bind), count_a(primary), "BIND's copy is whole after the change");
    let said = std::fs::read_to_string(dir.join("secondary.log")).unwrap();
    assert!(said.contains("by IXFR (1 changes)"), "{said}");
    let primary_said = std::fs::read_to_string(dir.join("primary.log")).unwrap();
    assert_eq!(primary_said.matches("IXFR of").count(), 2, "{primary_said}");
}

/// `lct-dns update` of lct.internal at the lct-dns primary on `port`: the zone made from
/// `nodes`, sent as signed updates.
fn lct_dns_update(env: &Env, port: u16, key: &std::path::Path, nodes: &str) {
    let server = format!("127.0.0.1:{port}");
    let args = ["update", "--server", &server, "--key-file", key.to_str().unwrap()];
    let args: Vec<&str> = args.into_iter().chain(["--domain", "lct.internal", "--no-reverse"]).collect();
    env.run_with_input("lct-dns", &args, nodes).ok();
}
