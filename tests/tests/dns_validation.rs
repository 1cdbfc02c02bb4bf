//! An lct-dns secondary validates each signed version it is given before serving it: Knot
//! signs knot.test with ECDSA P-256 and the secondary serves it (signed, `delv` fully
//! validates it against the secondary); then the primary's version is signed with Ed448
//! alone (Knot, `algorithm: ed448`), an algorithm lct-dns lacks: the secondary refuses it
//! with an error naming zone, serial, owner, type and algorithm, counts it, shows the
//! refused serial in its statistics, and serves the old version on, still validating; a
//! version signed with ECDSA keys the secondary never trusted is refused too (key
//! continuity); once the primary signs with its own ECDSA keys again, its next version is
//! followed.
//! Loopback only; no root needed.

use std::path::Path;
use std::time::Duration;

use lct_tests::Env;
use lct_tests::fixtures::dns::{self, Anchor};
use lct_tests::fixtures::until;

const WITHIN: Duration = Duration::from_secs(30);
const ZONE: &str = "knot.test";

/// A Knot primary of knot.test on loopback `port`, signing with `algorithm` (Knot's
/// name), its zone file at `serial`, notifying the secondary on `secondary`.
fn knot(dir: &Path, port: u16, secondary: u16, algorithm: &str, serial: u32) -> lct_tests::Background {
    // refresh 2 s, retry 1 s: the secondary asks again soon after a refusal.
    let zone = dns::knot_test_zone(dir, &format!("{serial} 2 1 600 60"));
    let zones = format!(
        "policy:\n  - id: signed\n    algorithm: {algorithm}\n{zone}    dnssec-signing: on\n    dnssec-policy: signed\n"
    );
    dns::knot(dir, port, &dir.join("../k-knot.key"), secondary, "transfer", &zones)
}

/// The SOA serial the server on `port` answers for knot.test.
fn serial(port: u16) -> Option<u32> {
    dns::serial(port, ZONE)
}

/// delv's whole output for `name` A at the server on `port`, `anchor` the trust anchor.
fn delv(port: u16, anchor: &Anchor, name: &str) -> String {
    dns::delv(port, "127.0.0.1", anchor, name, "A")
}

#[test]
fn a_secondary_refuses_a_version_signed_with_an_algorithm_it_lacks_and_serves_the_old_one() {
    dns::require(&["knotd", "delv", "dig"]);
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    dns::keygen(&env, &dir, &["k-knot"]);
    let (primary, secondary, stats) = (lct_tests::free_port(), lct_tests::free_port(), lct_tests::free_port());

    let first = knot(&dir.join("knot-ecdsa"), primary, secondary, "ecdsap256sha256", 1);
    let more = format!(
        "internal = [\"127.0.0.0/8\"]\n{}{}",
        dns::stats_section(stats),
        dns::primary_section(ZONE, primary, "k-knot.key")
    );
    dns::lct_dns_config(&dir, "secondary", None, secondary, &more);
    let _secondary = dns::lct_dns(&dir, "secondary.toml", "secondary.log");
    dns::until_answers(secondary, "www.knot.test", &["192.0.2.10"], WITHIN);
    let old = serial(secondary).unwrap();
    assert_eq!(Some(old), serial(primary), "the secondary serves Knot's signed version");

    // The trust anchor: the KSK the secondary serves (ECDSA P-256), as a parent's DS would.
    let anchor = Anchor::served_ksk(secondary, ZONE, &dir);
    let said = delv(secondary, &anchor, "www.knot.test");
    assert!(said.contains("; fully validated") && said.contains("192.0.2.10"), "{said}");
    assert_eq!(dns::stat(&env, stats, "lct_dns_validation_refused_total", &[]), 0);

    // The primary's next version: signed with Ed448 alone (a newer serial, new keys).
    drop(first);
    let second = knot(&dir.join("knot-ed448"), primary, secondary, "ed448", old + 100);
    until("Knot serves the Ed448 version", WITHIN, || serial(primary).is_some_and(|s| s > old));
    let new = serial(primary).unwrap();
    let keys = dns::dig(primary, &["+short", ZONE, "DNSKEY"]);
    assert!(keys.lines().all(|l| l.split_whitespace().nth(2) == Some("16")), "Knot signs with Ed448 alone: {keys}");

    until("the secondary refuses the Ed448 version", WITHIN, || {
        dns::stat(&env, stats, "lct_dns_validation_refused_total", &[]) >= 1
    });
    assert_eq!(dns::stat(&env, stats, "lct_dns_zone_refused_serial", &[("zone", "knot.test.")]), u64::from(new));
    let log = std::fs::read_to_string(dir.join("secondary.log")).unwrap();
    let line = log.lines().find(|l| l.contains("is refused, the previous one serves on") && l.contains("ERROR"));
    let line = line.unwrap_or_else(|| panic!("no refusal logged: {log}"));
    for part in [format!("zone knot.test. serial {new}"), "knot.test. DNSKEY".into(), "ED448 (16)".into()] {
        assert!(line.contains(&part), "{part:?} not in {line}");
    }

    // The old version serves on, signed, and still validates.
    assert_eq!(serial(secondary), Some(old));
    let said = delv(secondary, &anchor, "www.knot.test");
    assert!(said.contains("; fully validated") && said.contains("192.0.2.10"), "{said}");
    let said = delv(secondary, &anchor, "nothing.knot.test");
    assert!(said.contains("negative response, fully validated") && said.contains("NXDOMAIN"), "{said}");

    // A primary with keys of its own (ECDSA, a newer serial; as someone holding the transfer
    // key would send): every signature verifies, but its DNSKEY set is signed by no key the
    // secondary trusted: refused (key continuity), the old version serves on.
    drop(second);
    let fresh = knot(&dir.join("knot-fresh"), primary, secondary, "ecdsap256sha256", new + 100);
    until("Knot serves the version with new keys", WITHIN, || serial(primary).is_some_and(|s| s > new));
    let foreign = serial(primary).unwrap();
    until("the secondary refuses the version with new keys", WITHIN, || {
        dns::stat(&env, stats, "lct_dns_zone_refused_serial", &[("zone", "knot.test.")]) == u64::from(foreign)
    });
    let log = std::fs::read_to_string(dir.join("secondary.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains(&format!("serial {foreign}: knot.test. DNSKEY"))
            && l.contains("not signed by a key of the version served now")),
        "no continuity refusal logged: {log}"
    );
    assert_eq!(serial(secondary), Some(old));

    // The primary fixed (its own ECDSA keys again, a newer serial): followed, the refusal gone.
    drop(fresh);
    let _fixed = knot(&dir.join("knot-ecdsa"), primary, secondary, "ecdsap256sha256", foreign + 100);
    until("the secondary serves the fixed version", WITHIN, || serial(secondary).is_some_and(|s| s > foreign));
    assert_eq!(dns::stat(&env, stats, "lct_dns_zone_refused_serial", &[("zone", "knot.test.")]), 0);
    dns::until_answers(secondary, "www.knot.test", &["192.0.2.10"], WITHIN);
    if std::env::var_os("LCT_SHOW_LOG").is_some() {
        eprintln!("{log}");
    }
}
