//! lct-dns as a primary of real secondaries: Knot (knotd) takes the internal view with its
//! key, BIND (named) the external view with its own; both follow a change through NOTIFY
//! and IXFR; unsigned, wrongly signed and misused requests are refused; a 50,000-record
//! zone transfers whole. (lct-dns as a secondary: dns_secondary_of.rs.)

use std::time::Duration;

use lct_tests::Env;
use lct_tests::fixtures::dns::{self, addresses, secret};
use lct_tests::fixtures::{node, until};

fn zk(name: &str, private: &str, public: Option<&str>) -> String {
    node("zk", "zookeeper", name, private, public)
}

const WITHIN: Duration = Duration::from_secs(15);

#[test]
fn knot_and_bind_transfer_the_view_their_key_selects_and_follow_changes() {
    dns::require(&["knotd", "named", "named-compilezone"]);
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    let nodes = zk("zk-1", "192.168.128.1", Some("203.0.113.1")) + &zk("zk-2", "192.168.128.2", None);
    dns::zone_file(&env, &dir, &nodes, "10");
    dns::keygen(&env, &dir, &["lct-update", "xfr-internal", "xfr-external"]);
    let (primary, knot, bind) = (lct_tests::free_port(), lct_tests::free_port(), lct_tests::free_port());
    let more = format!(
        "internal = [\"192.168.0.0/16\"]\nkeys = [\"lct-update.key\"]\n\n{}allow = [\"127.0.0.0/8\"]\n\n{}",
        dns::secondary_section("xfr-internal.key", "internal", knot),
        dns::secondary_section("xfr-external.key", "external", bind)
    );
    dns::lct_dns_config(&dir, "lct-dns", Some("zones.jsonl"), primary, &more);
    let primary_server = dns::lct_dns(&dir, "lct-dns.toml", "lct-dns.log");
    let log = dir.join("lct-dns.log");
    until("lct-dns answers", WITHIN, || !addresses(primary, "zk-1.zk.lct.internal").is_empty());

    // Knot: the internal view, refreshed by NOTIFY from lct-dns (signed with the same key);
    // BIND: the external view, its copy kept as text.
    let bdir = dir.join("bind");
    let _servers = dns::knot_and_bind_secondaries(&dir, primary, (knot, bind), false, "zk-1.zk.lct.internal", WITHIN);

    // Each serves its view, never the other's.
    assert_eq!(addresses(knot, "zk-1.zk.lct.internal"), ["192.168.128.1"]);
    assert_eq!(addresses(knot, "zk-2.zk.lct.internal"), ["192.168.128.2"]);
    assert_eq!(addresses(bind, "zk-1.zk.lct.internal"), ["203.0.113.1"]);
    assert!(addresses(bind, "zk-2.zk.lct.internal").is_empty(), "a private-only node outside");
    // BIND's copy on disk (text, see above; BIND writes it moments after the transfer):
    // the public address it serves, and no private one.
    let copy = bdir.join("lct.internal.db");
    let read = || std::fs::read_to_string(&copy).unwrap_or_default();
    let zone = lct_tests::fixtures::settle(WITHIN, read, |zone| zone.contains("203.0.113.1"));
    assert!(copy.exists(), "BIND wrote no copy");
    assert!(zone.contains("203.0.113.1"), "BIND's copy lacks what it serves: {zone}");
    assert!(!zone.contains("192.168.128."), "private addresses in BIND's copy: {zone}");

    // A change: NOTIFY, then each fetches it by IXFR (the journal holds serial 10 -> 11).
    let more = nodes + &zk("zk-3", "192.168.128.3", Some("203.0.113.3"));
    let key = dir.join("lct-update.key");
    dns::lct_dns_update(&env, primary, &key, &more);
    dns::until_answers(knot, "zk-3.zk.lct.internal", &["192.168.128.3"], WITHIN);
    dns::until_answers(bind, "zk-3.zk.lct.internal", &["203.0.113.3"], WITHIN);
    // Told by NOTIFY, fetched incrementally: one IXFR per view from serial 10.
    let said = std::fs::read_to_string(&log).unwrap();
    for view in ["internal", "external"] {
        assert!(said.contains(&format!("IXFR of 6 records (serial 11, {view} view)")), "{view}: {said}");
        assert!(said.contains("notified to 127.0.0.1"), "{said}");
    }

    // The primary restarts: its journal was kept, so the next change still goes by IXFR.
    drop(primary_server);
    let _primary = dns::lct_dns(&dir, "lct-dns.toml", "lct-dns-restarted.log");
    dns::until_answers(primary, "zk-3.zk.lct.internal", &["203.0.113.3"], WITHIN);
    let even_more = more.clone() + &zk("zk-4", "192.168.128.4", Some("203.0.113.4"));
    dns::lct_dns_update(&env, primary, &key, &even_more);
    dns::until_answers(knot, "zk-4.zk.lct.internal", &["192.168.128.4"], WITHIN);
    dns::until_answers(bind, "zk-4.zk.lct.internal", &["203.0.113.4"], WITHIN);
    let said = std::fs::read_to_string(dir.join("lct-dns-restarted.log")).unwrap();
    // (The AXFR of every view is `lct-dns update`'s own, to diff.)
    let secondaries_axfr = said.lines().any(|l| l.contains("AXFR of") && !l.contains("every view"));
    assert!(!secondaries_axfr, "a secondary needed a full transfer after the restart: {said}");
    assert_eq!(said.matches("IXFR of").count(), 2, "{said}");

    // Refusals: unsigned, wrongly signed (the TSIG check fails: dig cannot verify the
    // answer's signature, or is told the key is bad), a secondary's key updating.
    let axfr = |extra: &[&str]| dns::dig(primary, &[&["lct.internal", "AXFR"], extra].concat());
    let unsigned = axfr(&[]);
    assert!(unsigned.contains("Transfer failed") && !unsigned.contains("192.168.128.1"), "{unsigned}");
    let wrong = format!("hmac-sha256:xfr-internal:{}", secret(&dir.join("xfr-external.key")));
    let wrongly_signed = axfr(&["-y", &wrong]);
    assert!(!wrongly_signed.contains("192.168.128.1"), "a wrongly signed AXFR: {wrongly_signed}");
    assert!(
        ["tsig verify failure", "BADSIG", "NOTAUTH"].iter().any(|e| wrongly_signed.contains(e)),
        "a wrongly signed AXFR fails for another reason than its signature: {wrongly_signed}"
    );
    let internal = format!("hmac-sha256:xfr-internal:{}", secret(&dir.join("xfr-internal.key")));
    let transfer = axfr(&["-y", &internal]);
    assert!(transfer.contains("192.168.128.3") && !transfer.contains("203.0.113."), "{transfer}");
    let key_file = dir.join("xfr-internal.key");
    let update = dns::nsupdate(
        primary,
        &["-k", key_file.to_str().unwrap()],
        "lct.internal",
        "update add evil.lct.internal 300 A 192.0.2.1",
    );
    let said = dns::said(&update);
    assert!(!update.status.success() && said.contains("update failed: REFUSED"), "{update:?}");
    assert_eq!(dns::status(primary, "evil.lct.internal"), "NXDOMAIN");
    if std::env::var_os("LCT_SHOW_LOG").is_some() {
        eprintln!("{}", std::fs::read_to_string(&log).unwrap());
    }
}

#[test]
fn a_50000_record_zone_transfers_whole_to_bind_and_lct_dns_and_follows_by_ixfr() {
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    // 50,000 nodes with a private address each: 50,000 A records in the internal view.
    let nodes_of = |count: usize| -> String {
        let address = |i: usize| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        (0..count).map(|i| node(&format!("c{}", i % 10), "g", &format!("n-{i}"), &address(i), None)).collect()
    };
    dns::zone_file(&env, &dir, &nodes_of(50_000), "10");
    dns::keygen(&env, &dir, &["lct-update", "xfr-bind", "xfr-lct"]);
    let (primary, bind, secondary) = (lct_tests::free_port(), lct_tests::free_port(), lct_tests::free_port());
    let more = format!(
        "internal = [\"10.0.0.0/8\"]\nkeys = [\"lct-update.key\"]\n{}{}",
        dns::secondary_section("xfr-bind.key", "internal", bind),
        dns::secondary_section("xfr-lct.key", "internal", secondary)
    );
    dns::lct_dns_config(&dir, "primary", Some("zones.jsonl"), primary, &more);
    let _primary = dns::lct_dns(&dir, "primary.toml", "primary.log");
    let more =
        format!("internal = [\"127.0.0.0/8\"]\n{}", dns::primary_section("lct.internal", primary, "xfr-lct.key"));
    dns::lct_dns_config(&dir, "secondary", None, secondary, &more);
    let bdir = dir.join("bind");
    let options = r#"    allow-transfer { 127.0.0.1; };
    // A group name of 5,000 members is one RRset of 5,000 A records: BIND 9.18.28 and later
    // refuse more than 100 per RRset unless told (docs/dns.md).
    max-records-per-type 0;
"#;
    dns::named_secondary_conf(&bdir, bind, primary, &dir.join("xfr-bind.key"), options);
    // Wait for the primary, then start both secondaries.
    let long = Duration::from_secs(120);
    until("the primary answers", long, || !addresses(primary, "n-49999.c9.lct.internal").is_empty());
    let _bind = dns::named(&bdir);
    let _secondary = dns::lct_dns(&dir, "secondary.toml", "secondary.log");
    // Whole: every A record (BIND's copy, counted by a transfer from it), and the last name.
    dns::until_answers(bind, "n-49999.c9.lct.internal", &["10.0.195.79"], long);
    dns::until_answers(secondary, "n-49999.c9.lct.internal", &["10.0.195.79"], long);
    let key = format!("hmac-sha256:xfr-bind:{}", secret(&dir.join("xfr-bind.key")));
    let count_a = |port: u16| {
        let transfer = dns::dig(port, &["+time=10", "lct.internal", "AXFR", "-y", &key]);
        transfer.lines().filter(|l| l.contains("\tIN\tA\t")).count()
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
    dns::until_answers(bind, "n-50499.c9.lct.internal", &["10.0.197.67"], long);
    dns::until_answers(secondary, "n-50499.c9.lct.internal", &["10.0.197.67"], long);
    assert_eq!(count_a(bind), count_a(primary), "BIND's copy is whole after the change");
    let said = std::fs::read_to_string(dir.join("secondary.log")).unwrap();
    assert!(said.contains("by IXFR (1 changes)"), "{said}");
    let primary_said = std::fs::read_to_string(dir.join("primary.log")).unwrap();
    assert_eq!(primary_said.matches("IXFR of").count(), 2, "{primary_said}");
}
