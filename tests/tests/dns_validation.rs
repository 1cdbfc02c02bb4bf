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
use std::process::Command;
use std::time::Duration;

use lct_tests::Env;
use lct_tests::fixtures::dns::{self, secret};
use lct_tests::fixtures::until;

const WITHIN: Duration = Duration::from_secs(30);
const ZONE: &str = "knot.test";

/// A Knot primary of knot.test on loopback `port`, signing with `algorithm` (Knot's
/// name), its zone file at `serial`, notifying the secondary on `secondary`.
fn knot(dir: &Path, port: u16, secondary: u16, algorithm: &str, serial: u32) -> lct_tests::Background {
    std::fs::create_dir_all(dir).unwrap();
    // refresh 2 s, retry 1 s: the secondary asks again soon after a refusal.
    std::fs::write(
        dir.join("knot.test.zone"),
        format!(
            "$ORIGIN knot.test.\n$TTL 60\n@ SOA ns1.knot.test. hostmaster.knot.test. {serial} 2 1 600 60\n@ NS ns1.knot.test.\nns1 A 192.0.2.1\nwww A 192.0.2.10\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("knot.conf"),
        format!(
            r#"server:
    listen: 127.0.0.1@{port}
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
    action: transfer
policy:
  - id: signed
    algorithm: {algorithm}
zone:
  - domain: knot.test
    storage: {k}
    file: knot.test.zone
    notify: lct
    acl: lct
    zonefile-sync: -1
    dnssec-signing: on
    dnssec-policy: signed
"#,
            k = dir.display(),
            secret = secret(&dir.join("../k-knot.key")),
        ),
    )
    .unwrap();
    dns::knotd(&dir.join("knot.conf"))
}

/// The SOA serial the server on `port` answers for knot.test.
fn serial(port: u16) -> Option<u32> {
    dns::dig(port, &["+short", ZONE, "SOA"]).split_whitespace().nth(2).and_then(|s| s.parse().ok())
}

/// delv's whole output for `name` A at the server on `port`, `anchor` the trust anchor.
fn delv(port: u16, anchor: &Path, name: &str) -> String {
    let out = Command::new("delv")
        .args(["@127.0.0.1", "-p", &port.to_string(), "-a", anchor.to_str().unwrap()])
        .args(["+root=knot.test", "+tcp", name, "A"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn a_secondary_refuses_a_version_signed_with_an_algorithm_it_lacks_and_serves_the_old_one() {
    dns::require(&["knotd", "delv", "dig"]);
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    dns::keygen(&env, &dir, &["k-knot"]);
    let (primary, secondary, stats) = (lct_tests::free_port(), lct_tests::free_port(), lct_tests::free_port());

    let first = knot(&dir.join("knot-ecdsa"), primary, secondary, "ecdsap256sha256", 1);
    std::fs::write(dir.join("none.jsonl"), "").unwrap();
    std::fs::write(
        dir.join("secondary.toml"),
        format!(
            r#"records = "{d}/none.jsonl"
listen = ["127.0.0.1:{secondary}"]
internal = ["127.0.0.0/8"]
state = "{d}/secondary-state"
[stats]
listen = "127.0.0.1:{stats}"
[[primary]]
zone = "knot.test"
address = "127.0.0.1:{primary}"
key = "k-knot.key"
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    let _secondary = dns::lct_dns(&dir, "secondary.toml", "secondary.log");
    dns::until_answers(secondary, "www.knot.test", &["192.0.2.10"], WITHIN);
    let old = serial(secondary).unwrap();
    assert_eq!(Some(old), serial(primary), "the secondary serves Knot's signed version");

    // The trust anchor: the KSK the secondary serves (ECDSA P-256), as a parent's DS would.
    let keys = dns::dig(secondary, &["+short", ZONE, "DNSKEY"]);
    let ksk: Vec<&str> = keys.lines().find(|l| l.starts_with("257 ")).unwrap_or_default().split_whitespace().collect();
    assert!(ksk.len() >= 4 && ksk[2] == "13", "no ECDSA KSK served: {keys}");
    let anchor = dir.join("anchor.conf");
    let text = format!("trust-anchors {{ knot.test. static-key 257 3 13 \"{}\"; }};\n", ksk[3..].concat());
    std::fs::write(&anchor, text).unwrap();
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
