//! lct-dns as a secondary of Knot, BIND and another lct-dns: each zone transferred with its
//! own key, changes followed through NOTIFY and IXFR, the copy kept across a restart and
//! expired when its primary is gone; no update taken. (lct-dns as a primary:
//! dns_secondaries.rs.)

use std::time::Duration;

use lct_tests::Env;
use lct_tests::fixtures::dns::{self, addresses, secret, status};
use lct_tests::fixtures::{node, until};

const WITHIN: Duration = Duration::from_secs(15);

#[test]
fn lct_dns_follows_knot_bind_and_lct_dns_primaries() {
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    dns::keygen(&env, &dir, &["k-knot", "k-bind", "k-lct", "lct-update"]);
    let (knot, bind, primary, secondary) =
        (lct_tests::free_port(), lct_tests::free_port(), lct_tests::free_port(), lct_tests::free_port());
    let (primary_stats, secondary_stats) = (lct_tests::free_port(), lct_tests::free_port());

    // Knot, primary of knot.test: short timers, so that expiry shows within the test.
    let kdir = dir.join("knot");
    let zones = dns::knot_test_zone(&kdir, "1 2 1 6 60");
    let knot_server = dns::knot(&kdir, knot, &dir.join("k-knot.key"), secondary, "[transfer, update]", &zones);

    // BIND, primary of bind.test, dynamic (its journal answers IXFR).
    let bdir = dir.join("bind");
    std::fs::create_dir_all(&bdir).unwrap();
    std::fs::write(
        bdir.join("bind.test.db"),
        "$ORIGIN bind.test.\n$TTL 60\n@ SOA ns1.bind.test. hostmaster.bind.test. 1 60 10 600 60\n@ NS ns1.bind.test.\nns1 A 192.0.2.2\nwww A 192.0.2.20\n",
    )
    .unwrap();
    dns::named_conf(
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
    let _bind = dns::named(&bdir);

    // lct-dns, primary of lct.internal, with the other lct-dns as its secondary.
    let nodes = node("zk", "zookeeper", "zk-1", "192.168.128.1", Some("203.0.113.1"));
    dns::zone_file(&env, &dir, &nodes, "10");
    let more = format!(
        "keys = [\"lct-update.key\"]\n{}{}",
        dns::stats_section(primary_stats),
        dns::secondary_section("k-lct.key", "internal", secondary)
    );
    dns::lct_dns_config(&dir, "primary", Some("zones.jsonl"), primary, &more);
    let primary_server = dns::lct_dns(&dir, "primary.toml", "primary.log");

    // The lct-dns secondary of all three, with its own (empty) records file.
    let more = format!(
        "internal = [\"127.0.0.0/8\"]\n{}{}{}{}",
        dns::stats_section(secondary_stats),
        dns::primary_section("knot.test", knot, "k-knot.key"),
        dns::primary_section("bind.test", bind, "k-bind.key"),
        dns::primary_section("lct.internal", primary, "k-lct.key")
    );
    dns::lct_dns_config(&dir, "secondary", None, secondary, &more);
    let secondary_server = dns::lct_dns(&dir, "secondary.toml", "secondary.log");

    dns::until_answers(secondary, "www.knot.test", &["192.0.2.10"], WITHIN);
    dns::until_answers(secondary, "www.bind.test", &["192.0.2.20"], WITHIN);
    dns::until_answers(secondary, "zk-1.zk.lct.internal", &["192.168.128.1"], WITHIN);
    assert_eq!(status(secondary, "nothing.knot.test"), "NXDOMAIN");

    // Changes at each primary reach the secondary through NOTIFY and IXFR.
    for (port, zone, line) in [
        (knot, "knot", "update add new.knot.test 60 A 192.0.2.11"),
        (bind, "bind", "update add new.bind.test 60 A 192.0.2.21"),
    ] {
        let key = format!("hmac-sha256:k-{zone}:{}", secret(&dir.join(format!("k-{zone}.key"))));
        let update = dns::nsupdate(port, &["-y", &key], &format!("{zone}.test"), line);
        assert!(update.status.success(), "nsupdate at {zone}: {update:?}");
    }
    let more = nodes + &node("zk", "zookeeper", "zk-2", "192.168.128.2", None);
    let key = dir.join("lct-update.key");
    dns::lct_dns_update(&env, primary, &key, &more);
    dns::until_answers(secondary, "new.knot.test", &["192.0.2.11"], WITHIN);
    dns::until_answers(secondary, "new.bind.test", &["192.0.2.21"], WITHIN);
    dns::until_answers(secondary, "zk-2.zk.lct.internal", &["192.168.128.2"], WITHIN);
    let said = std::fs::read_to_string(dir.join("secondary.log")).unwrap();
    assert!(said.contains("zone knot.test.: NOTIFY: refreshing"), "{said}");
    assert!(said.contains("zone bind.test.: NOTIFY: refreshing"), "{said}");
    assert!(!said.contains("IXFR failed"), "every change came by IXFR: {said}");
    for (zone, serial) in [("knot.test.", 2), ("bind.test.", 2), ("lct.internal.", 11)] {
        assert!(said.contains(&format!("zone {zone}: serial {serial} by IXFR (1 changes)")), "{zone}: {said}");
    }
    let primary_said = std::fs::read_to_string(dir.join("primary.log")).unwrap();
    assert!(primary_said.contains("IXFR of"), "{primary_said}");
    // The statistics say so too: NOTIFYs out and in, transfers out and in, the serials.
    let stat = |port, metric, labels: &[(&str, &str)]| dns::stat(&env, port, metric, labels);
    until("the primary counts its NOTIFY answered", WITHIN, || {
        stat(primary_stats, "lct_dns_notify_sent_total", &[]) >= 1
    });
    assert!(stat(primary_stats, "lct_dns_transfers_out_total", &[("type", "AXFR")]) >= 1);
    assert!(stat(primary_stats, "lct_dns_transfers_out_total", &[("type", "IXFR")]) >= 1);
    assert_eq!(stat(primary_stats, "lct_dns_zone_serial", &[("zone", "lct.internal."), ("role", "primary")]), 11);
    assert!(stat(secondary_stats, "lct_dns_notify_received_total", &[]) >= 3);
    assert!(stat(secondary_stats, "lct_dns_transfers_in_total", &[("type", "AXFR")]) >= 3);
    assert!(stat(secondary_stats, "lct_dns_transfers_in_total", &[("type", "IXFR")]) >= 3);
    for (zone, serial) in [("knot.test.", 2), ("bind.test.", 2), ("lct.internal.", 11)] {
        assert_eq!(stat(secondary_stats, "lct_dns_zone_serial", &[("zone", zone), ("role", "secondary")]), serial);
    }
    // The secondary takes no update: unsigned, it is refused (REFUSED, not a timeout);
    // signed with the primary's update key, which the secondary does not hold, the key is
    // named unknown (BADKEY); nothing changes.
    let add = "update add x.lct.internal 60 A 192.0.2.9";
    for (key_args, error) in
        [(vec![], "update failed: REFUSED"), (vec!["-k", key.to_str().unwrap()], "NOTAUTH(BADKEY)")]
    {
        let refused = dns::nsupdate(secondary, &key_args, "lct.internal", add);
        let said = dns::said(&refused);
        assert!(!refused.status.success() && said.contains(error), "an update at the secondary: {refused:?}");
    }
    assert_eq!(status(secondary, "x.lct.internal"), "NXDOMAIN");

    // lct-dns's primary stops: after a restart the secondary serves its kept copy.
    drop(primary_server);
    drop(secondary_server);
    let _secondary_again = dns::lct_dns(&dir, "secondary.toml", "secondary2.log");
    dns::until_answers(secondary, "zk-2.zk.lct.internal", &["192.168.128.2"], WITHIN);

    // Knot stops: the copy is served until its expire (6 s after the last refresh), then
    // SERVFAIL.
    drop(knot_server);
    assert_eq!(addresses(secondary, "www.knot.test"), ["192.0.2.10"]);
    until("knot.test expired", WITHIN, || status(secondary, "www.knot.test") == "SERVFAIL");
    assert_eq!(status(secondary, "www.bind.test"), "NOERROR", "other zones serve on");
    assert_eq!(dns::stat(&env, secondary_stats, "lct_dns_zone_expired", &[("zone", "knot.test.")]), 1);
    assert_eq!(dns::stat(&env, secondary_stats, "lct_dns_zone_expired", &[("zone", "bind.test.")]), 0);
    if std::env::var_os("LCT_SHOW_LOG").is_some() {
        for log in ["secondary.log", "secondary2.log"] {
            eprintln!("{log}:\n{}", std::fs::read_to_string(dir.join(log)).unwrap());
        }
    }
}
