//! lct-dns signing a zone (DNSSEC), proven by the field's own tools on loopback: `delv` with
//! the zone's key as trust anchor validates names, NXDOMAIN and NODATA in both views; Knot
//! (internal view) and BIND (external view) take the signed zone by transfer and serve it
//! signed, BIND's copy passes `dnssec-verify` and Knot's `kzonecheck --dnssec on`; after a
//! change and after signatures come due (short timers) it all still validates; a bad key
//! file on reload is refused and the signed zone serves on.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lct_tests::Env;
use lct_tests::fixtures::dns::{self, Anchor, addresses, delv, secret, tool};
use lct_tests::fixtures::{node, until};

const WITHIN: Duration = Duration::from_secs(20);

fn zk(name: &str, private: &str, public: Option<&str>) -> String {
    node("zk", "zookeeper", name, private, public)
}

/// A trust anchor for lct.internal: the KSK the server on `port` serves.
fn anchor(port: u16, dir: &Path) -> Anchor {
    Anchor::served_ksk(port, "lct.internal", dir)
}

/// Asserts delv validates an answer, NXDOMAIN and NODATA in a view.
fn validates(port: u16, from: &str, anchor: &Anchor, name: &str, address: &str) {
    dns::validates(port, from, anchor, name, address, &format!("port {port}"));
}

#[test]
fn a_signed_zone_validates_in_both_views_and_on_knot_and_bind_secondaries() {
    dns::require(&["knotd", "named", "delv", "dnssec-verify", "kzonecheck"]);
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    let nodes = zk("zk-1", "192.168.128.1", Some("203.0.113.1")) + &zk("zk-2", "192.168.128.2", None);
    dns::zone_file(&env, &dir, &nodes, "10");
    dns::keygen(&env, &dir, &["lct-update", "xfr-internal", "xfr-external"]);
    let (primary, knot, bind) = (lct_tests::free_port(), lct_tests::free_port(), lct_tests::free_port());
    let config = |lifetime: &str| {
        let more = format!(
            "internal = [\"127.0.0.2/32\"]\nkeys = [\"lct-update.key\"]\n\n{}\n{}\n[dnssec]\n\"lct.internal\" = \"on\"\n\n[dnssec_timers]\nsignature_lifetime = {lifetime}\n",
            dns::secondary_section("xfr-internal.key", "internal", knot),
            dns::secondary_section("xfr-external.key", "external", bind)
        );
        dns::lct_dns_config(&dir, "lct-dns", Some("zones.jsonl"), primary, &more);
    };
    // Signatures valid for 40 s, made again 4 s before they expire.
    config("40");
    let server = dns::lct_dns(&dir, "lct-dns.toml", "lct-dns.log");
    until("lct-dns answers", WITHIN, || !addresses(primary, "zk-1.zk.lct.internal").is_empty());
    let key_file = dir.join("lct-dns-state/dnssec/lct.internal.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let anchor = anchor(primary, &dir);

    // Both views validate with the one key: answers, NXDOMAIN, NODATA.
    validates(primary, "127.0.0.2", &anchor, "zk-1.zk.lct.internal", "192.168.128.1");
    validates(primary, "127.0.0.1", &anchor, "zk-1.zk.lct.internal", "203.0.113.1");
    // An empty non-terminal: NODATA, proven.
    let said = delv(primary, "127.0.0.1", &anchor, "zk.lct.internal", "A");
    assert!(said.contains("negative response, fully validated"), "{said}");
    // The DS for the parent, as BIND computes it from the DNSKEY.
    let ds = env
        .run("lct-dns", &["-o", "table", "ds", "lct.internal", "--config", dir.join("lct-dns.toml").to_str().unwrap()]);
    let dnskey = dns::dig(primary, &["+noall", "+answer", "lct.internal", "DNSKEY"]);
    let from_bind = lct_tests::run_command(
        {
            let mut c = Command::new("dnssec-dsfromkey");
            c.args(["-2", "-f", "-", "lct.internal"]);
            c
        },
        &dnskey,
    );
    assert_eq!(ds.ok().stdout.trim(), from_bind.ok().stdout.trim());

    // Knot takes the internal view, BIND the external one; each keeps a text copy.
    let (kdir, bdir) = (dir.join("knot"), dir.join("bind"));
    let _servers = dns::knot_and_bind_secondaries(&dir, primary, (knot, bind), true, "zk-1.zk.lct.internal", WITHIN);
    // A secondary of a signed zone answers signed (delv asks them from 127.0.0.1).
    validates(knot, "127.0.0.1", &anchor, "zk-1.zk.lct.internal", "192.168.128.1");
    validates(bind, "127.0.0.1", &anchor, "zk-1.zk.lct.internal", "203.0.113.1");
    // Their copies pass the field's checkers.
    let verify = |serial: &str| {
        let bind_copy = bdir.join("lct.internal.db");
        let knot_copy = kdir.join("lct.internal.zone");
        for copy in [&bind_copy, &knot_copy] {
            until(&format!("{} at serial {serial}", copy.display()), WITHIN, || dns::copy_at_serial(copy, serial));
        }
        let (ok, said) = tool("dnssec-verify", &["-z", "-o", "lct.internal", bind_copy.to_str().unwrap()]);
        assert!(ok && said.contains("Zone fully signed"), "dnssec-verify of BIND's copy: {said}");
        let (ok, said) = tool("kzonecheck", &["--dnssec", "on", "-o", "lct.internal", knot_copy.to_str().unwrap()]);
        assert!(ok, "kzonecheck of Knot's copy: {said}");
    };
    verify("10");

    // A change: a node added; the secondaries follow, everything still validates.
    let more = nodes + &zk("zk-3", "192.168.128.3", Some("203.0.113.3"));
    dns::lct_dns_update(&env, primary, &dir.join("lct-update.key"), &more);
    dns::until_answers(knot, "zk-3.zk.lct.internal", &["192.168.128.3"], WITHIN);
    dns::until_answers(bind, "zk-3.zk.lct.internal", &["203.0.113.3"], WITHIN);
    validates(primary, "127.0.0.2", &anchor, "zk-3.zk.lct.internal", "192.168.128.3");
    validates(primary, "127.0.0.1", &anchor, "zk-3.zk.lct.internal", "203.0.113.3");
    validates(bind, "127.0.0.1", &anchor, "zk-3.zk.lct.internal", "203.0.113.3");
    verify("11");

    // Signatures come due (40 s lifetime): made again under a new serial, which the
    // secondaries fetch; all validates past the first signatures' expiry.
    let said = std::fs::read_to_string(dir.join("lct-dns.log")).unwrap();
    assert!(!said.contains("signatures refreshed"), "{said}");
    until("the signatures are refreshed", Duration::from_secs(60), || {
        std::fs::read_to_string(dir.join("lct-dns.log")).unwrap_or_default().contains("signatures refreshed")
    });
    verify("12");
    std::thread::sleep(Duration::from_secs(6));
    validates(primary, "127.0.0.2", &anchor, "zk-1.zk.lct.internal", "192.168.128.1");
    validates(bind, "127.0.0.1", &anchor, "zk-3.zk.lct.internal", "203.0.113.3");

    // A broken key file: the reload is refused, naming it, and the signed zone serves on.
    config("1209600");
    let good = std::fs::read(&key_file).unwrap();
    std::fs::write(&key_file, b"{\"zone\": \"lct.internal.\"}").unwrap();
    Command::new("kill").args(["-HUP", &server.0.id().to_string()]).status().unwrap();
    until("the reload is refused", WITHIN, || {
        std::fs::read_to_string(dir.join("lct-dns.log")).unwrap_or_default().contains("reload refused")
    });
    let said = std::fs::read_to_string(dir.join("lct-dns.log")).unwrap();
    assert!(said.contains(key_file.to_str().unwrap()), "the error does not name the key file: {said}");
    assert!(!said.contains("pkcs8\":"), "the key's secret in the log");
    validates(primary, "127.0.0.1", &anchor, "zk-1.zk.lct.internal", "203.0.113.1");
    std::fs::write(&key_file, good).unwrap();
    drop(server);
}

/// `sync-linode` refuses a zone lct-dns signs here (Linode's DNS Manager serves no DNSSEC),
/// before any request: exit 2 and why.
#[test]
fn sync_linode_refuses_a_zone_signed_here() {
    let env = Env::new();
    let keys = env.state.path().join("dns/dnssec");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("example.com.json"), "{}").unwrap();
    let mut command = env.command("lct-dns", &["sync-linode", "--domain", "example.com", "--dry-run"]);
    // (Refused before any request; were it not, the requests would go to a closed port.)
    command.env("LINODE_TOKEN", "not-used").env("LINODE_URL", "http://127.0.0.1:9");
    let run = lct_tests::run_command(command, "");
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("signed with DNSSEC") && run.stderr.contains("Linode"), "{}", run.stderr);
}

/// An lct-dns secondary of a signed zone keeps it signed through everything that builds
/// its tables again: its own zone updated, an IXFR of the signed zone, a reload (SIGHUP)
/// and a restart (its copy read back from the state file, then an IXFR on top of it).
/// `delv` validates against the secondary after each. Then a delegation: DS at the cut
/// validated (no DS, proven), names below it referred, at both servers.
#[test]
fn an_lct_dns_secondary_of_a_signed_zone_stays_signed() {
    dns::require(&["delv", "nsupdate"]);
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    let nodes = zk("zk-1", "192.168.128.1", Some("203.0.113.1"));
    dns::zone_file(&env, &dir, &nodes, "10");
    dns::keygen(&env, &dir, &["lct-update", "xfr-internal", "s-update"]);
    // The secondary's own zone, which it is primary for.
    let other =
        env.run_with_input("lct-dns", &["zone", "--domain", "other.internal", "--serial", "5", "--no-reverse"], &nodes);
    std::fs::write(dir.join("s-zones.jsonl"), other.ok().stdout).unwrap();
    let (primary, second) = (lct_tests::free_port(), lct_tests::free_port());
    let more = format!(
        "internal = [\"127.0.0.2/32\"]\nkeys = [\"lct-update.key\"]\n\n{}\n[dnssec]\n\"lct.internal\" = \"on\"\n",
        dns::secondary_section("xfr-internal.key", "internal", second)
    );
    dns::lct_dns_config(&dir, "p", Some("zones.jsonl"), primary, &more);
    let more = format!(
        "internal = [\"127.0.0.0/8\"]\nkeys = [\"s-update.key\"]\n\n{}",
        dns::primary_section("lct.internal", primary, "xfr-internal.key")
    );
    dns::lct_dns_config(&dir, "s", Some("s-zones.jsonl"), second, &more);
    let _primary = dns::lct_dns(&dir, "p.toml", "p.log");
    until("the primary answers", WITHIN, || !addresses(primary, "zk-1.zk.lct.internal").is_empty());
    let anchor = anchor(primary, &dir);
    // The DS as a `dns-ds` record of its own, the same as the master-file line.
    let config = dir.join("p.toml");
    let line = env.run("lct-dns", &["-o", "table", "ds", "lct.internal", "--config", config.to_str().unwrap()]).ok();
    let json = env.run("lct-dns", &["-o", "jsonl", "ds", "lct.internal", "--config", config.to_str().unwrap()]).ok();
    let ds = &json.json_lines()[0];
    assert_eq!(ds["kind"], "dns-ds", "{}", json.stdout);
    assert_eq!(ds["zone"], "lct.internal.");
    let fields: Vec<&str> = line.stdout.split_whitespace().collect();
    assert_eq!(fields[3..], [&ds["key_tag"].to_string(), "13", "2", ds["digest"].as_str().unwrap()]);
    let mut secondary = dns::lct_dns(&dir, "s.toml", "s.log");
    dns::until_answers(second, "zk-1.zk.lct.internal", &["192.168.128.1"], WITHIN);
    validates(second, "127.0.0.1", &anchor, "zk-1.zk.lct.internal", "192.168.128.1");

    // Its own zone updated: every table built again, the signed copy among them.
    let update = dns::nsupdate(
        second,
        &["-k", dir.join("s-update.key").to_str().unwrap()],
        "other.internal",
        "update add new.other.internal 300 A 192.0.2.7",
    );
    assert!(update.status.success(), "{update:?}");
    dns::until_answers(second, "new.other.internal", &["192.0.2.7"], WITHIN);
    validates(second, "127.0.0.1", &anchor, "zk-1.zk.lct.internal", "192.168.128.1");
    // A wildcard owner (not synthesised) is refused, and so is a DNSSEC record: only a
    // signer makes those.
    let ds = format!("update add sub.other.internal 300 DS 12345 13 2 {}", "AB".repeat(32));
    for line in ["update add *.x.other.internal 300 A 192.0.2.8", ds.as_str()] {
        let refused =
            dns::nsupdate(second, &["-k", dir.join("s-update.key").to_str().unwrap()], "other.internal", line);
        let said = String::from_utf8_lossy(&refused.stderr).into_owned();
        assert!(!refused.status.success() && said.contains("REFUSED"), "{line}: {refused:?}");
    }

    // A change at the primary: NOTIFY, then an IXFR whose changes carry new signatures
    // and NSEC records.
    let more = nodes.clone() + &zk("zk-2", "192.168.128.2", None);
    dns::lct_dns_update(&env, primary, &dir.join("lct-update.key"), &more);
    dns::until_answers(second, "zk-2.zk.lct.internal", &["192.168.128.2"], WITHIN);
    let log = ixfr_logged(&dir.join("s.log"));
    assert!(log.contains("by IXFR ("), "not an incremental transfer: {log}");
    validates(second, "127.0.0.1", &anchor, "zk-2.zk.lct.internal", "192.168.128.2");
    validates(second, "127.0.0.1", &anchor, "zk-1.zk.lct.internal", "192.168.128.1");

    // A reload.
    Command::new("kill").args(["-HUP", &secondary.0.id().to_string()]).status().unwrap();
    until("the secondary reloads", WITHIN, || {
        std::fs::read_to_string(dir.join("s.log")).unwrap_or_default().contains("reloaded")
    });
    validates(second, "127.0.0.1", &anchor, "zk-2.zk.lct.internal", "192.168.128.2");

    // A restart: the copy comes back from the state file (the primary's serial has not
    // moved: no transfer), then a change comes by IXFR on top of it.
    drop(secondary);
    secondary = dns::lct_dns(&dir, "s.toml", "s2.log");
    dns::until_answers(second, "zk-2.zk.lct.internal", &["192.168.128.2"], WITHIN);
    validates(second, "127.0.0.1", &anchor, "zk-2.zk.lct.internal", "192.168.128.2");
    let more = more + &zk("zk-3", "192.168.128.3", None);
    dns::lct_dns_update(&env, primary, &dir.join("lct-update.key"), &more);
    dns::until_answers(second, "zk-3.zk.lct.internal", &["192.168.128.3"], WITHIN);
    // The transfer is logged once the refresh returns, a moment after its tables serve.
    let log = ixfr_logged(&dir.join("s2.log"));
    assert!(log.contains("by IXFR (") && !log.contains("AXFR"), "not an incremental transfer: {log}");
    validates(second, "127.0.0.1", &anchor, "zk-3.zk.lct.internal", "192.168.128.3");
    validates(second, "127.0.0.1", &anchor, "zk-1.zk.lct.internal", "192.168.128.1");

    // A delegation added at the primary: its DS answered with authority (no DS, proven),
    // names below it referred, at the primary and at the secondary alike.
    let update = dns::nsupdate(
        primary,
        &["-k", dir.join("lct-update.key").to_str().unwrap()],
        "lct.internal",
        "update add sub.lct.internal 300 NS ns.sub.lct.internal\nupdate add ns.sub.lct.internal 300 A 198.51.100.53",
    );
    assert!(update.status.success(), "{update:?}");
    for port in [primary, second] {
        until("the delegation is served", WITHIN, || {
            dns::dig(port, &["+norec", "www.sub.lct.internal", "A"]).contains("ns.sub.lct.internal")
        });
        let said = delv(port, "127.0.0.1", &anchor, "sub.lct.internal", "DS");
        assert!(said.contains("negative response, fully validated"), "DS at the cut, port {port}: {said}");
        let referral = dns::dig(port, &["+norec", "+dnssec", "www.sub.lct.internal", "A"]);
        assert!(!referral.contains(" aa") && referral.contains("AUTHORITY: 3"), "{referral}");
        assert!(referral.contains("NSEC") && referral.contains("198.51.100.53"), "{referral}");
        // (delv asks its server as a resolver and does not follow a referral: dig shows
        // the referral, the proof in it is the cut's NSEC that delv validated above.)
    }
    drop(secondary);
}

/// `sync-linode` run where the key is not (the controller): a zone whose name server answers
/// a DNSKEY set is refused, and so is one whose `--config` signs it; an unsigned server's
/// zone passes the check (and the sync then fails only for want of a Linode token).
#[test]
fn sync_linode_refuses_a_zone_its_name_servers_serve_signed() {
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    let nodes = zk("zk-1", "192.168.128.1", Some("203.0.113.1"));
    dns::zone_file(&env, &dir, &nodes, "10");
    let (signed, plain) = (lct_tests::free_port(), lct_tests::free_port());
    let config = |name: &str, port: u16, dnssec: &str| {
        let more = format!("[dnssec]\n\"lct.internal\" = \"{dnssec}\"\n");
        dns::lct_dns_config(&dir, name, Some("zones.jsonl"), port, &more);
    };
    config("signed", signed, "on");
    config("plain", plain, "off");
    let _signed = dns::lct_dns(&dir, "signed.toml", "signed.log");
    let _plain = dns::lct_dns(&dir, "plain.toml", "plain.log");
    until("both answer", WITHIN, || {
        !addresses(signed, "zk-1.zk.lct.internal").is_empty() && !addresses(plain, "zk-1.zk.lct.internal").is_empty()
    });
    // (The controller's own state directory has no key: the old check alone would pass.)
    let controller = lct_core::fsutil::temp_dir("lct-dns-controller").unwrap();
    // No Linode token: a zone past the check fails at once for want of one.
    let sync = |extra: &[&str]| {
        let mut args = vec!["sync-linode", "--domain", "lct.internal", "--dry-run"];
        args.extend_from_slice(extra);
        let mut command = env.command("lct-dns", &args);
        command.env("LCT_STATE_DIR", controller.path()).env("HOME", controller.path());
        command.env_remove("LINODE_TOKEN").env("LINODE_URL", "http://127.0.0.1:9");
        lct_tests::run_command(command, &nodes)
    };
    let at = |port: u16| format!("127.0.0.1:{port}");
    let run = sync(&["--check-server", &at(plain), "--check-server", &at(signed)]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("signed with DNSSEC") && run.stderr.contains(&at(signed)), "{}", run.stderr);
    let run = sync(&["--config", dir.join("signed.toml").to_str().unwrap(), "--check-server", &at(plain)]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("[dnssec] in"), "{}", run.stderr);
    // Unsigned: past the check, failing only for want of a Linode token.
    let run = sync(&["--config", dir.join("plain.toml").to_str().unwrap(), "--check-server", &at(plain)]);
    assert!(run.status != 0 && !run.stderr.contains("signed with DNSSEC"), "{}", run.stderr);
    assert!(run.stderr.to_ascii_lowercase().contains("token"), "{}", run.stderr);
    // Nobody answering: an error, nothing done.
    let run = sync(&["--check-server", "127.0.0.1:9"]);
    assert!(run.status != 0 && run.stderr.contains("cannot tell whether it is signed"), "{}", run.stderr);
}

/// An lct-dns secondary of a zone Knot signs: Knot's signatures and NSEC chain served as
/// they came, and a change at Knot (an UPDATE, which Knot signs incrementally) arrives by an
/// incremental IXFR whose new signatures replace the old; `delv` validates throughout.
#[test]
fn an_lct_dns_secondary_of_a_zone_knot_signs_follows_its_signatures() {
    dns::require(&["knotd", "delv", "nsupdate"]);
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    dns::keygen(&env, &dir, &["xfr"]);
    let (knot, second) = (lct_tests::free_port(), lct_tests::free_port());
    let kdir = dir.join("knot");
    std::fs::create_dir_all(&kdir).unwrap();
    std::fs::write(
        kdir.join("lct.internal.zone"),
        "$ORIGIN lct.internal.\n$TTL 300\n@ SOA ns1.lct.internal. hostmaster.lct.internal. 10 3600 600 1209600 300\n\
         @ NS ns1.lct.internal.\nns1 A 127.0.0.1\nzk-1.zk A 192.168.128.1\n",
    )
    .unwrap();
    let zones = format!(
        r#"policy:
  - id: csk
    algorithm: ecdsap256sha256
    single-type-signing: on
template:
  - id: default
    storage: {k}
    zonefile-sync: -1
    journal-content: changes
zone:
  - domain: lct.internal
    file: {k}/lct.internal.zone
    dnssec-signing: on
    dnssec-policy: csk
    acl: peer
    notify: peer
"#,
        k = kdir.display(),
    );
    let _knot = dns::knot(&kdir, knot, &dir.join("xfr.key"), second, "[transfer, update]", &zones);
    until("Knot serves the signed zone", WITHIN, || {
        dns::dig(knot, &["+short", "lct.internal", "DNSKEY"]).contains("257 3 13")
    });
    let anchor = anchor(knot, &dir);
    dns::lct_dns_config(&dir, "s", None, second, &dns::primary_section("lct.internal", knot, "xfr.key"));
    let _secondary = dns::lct_dns(&dir, "s.toml", "s.log");
    dns::until_answers(second, "zk-1.zk.lct.internal", &["192.168.128.1"], WITHIN);
    validates(second, "127.0.0.1", &anchor, "zk-1.zk.lct.internal", "192.168.128.1");

    let key = format!("hmac-sha256:xfr:{}", secret(&dir.join("xfr.key")));
    let update =
        dns::nsupdate(knot, &["-y", &key], "lct.internal", "update add zk-2.zk.lct.internal 300 A 192.168.128.2");
    assert!(update.status.success(), "{update:?}");
    dns::until_answers(second, "zk-2.zk.lct.internal", &["192.168.128.2"], WITHIN);
    let log = std::fs::read_to_string(dir.join("s.log")).unwrap();
    assert!(log.contains("changes)"), "not an incremental transfer: {log}");
    validates(second, "127.0.0.1", &anchor, "zk-2.zk.lct.internal", "192.168.128.2");
    validates(second, "127.0.0.1", &anchor, "zk-1.zk.lct.internal", "192.168.128.1");
}

/// DNSSEC records in a records file are refused at start, naming the file and the record:
/// only a signer makes them.
#[test]
fn dnssec_records_in_a_records_file_are_refused() {
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    dns::zone_file(&env, &dir, &zk("zk-1", "192.168.128.1", None), "10");
    let ds = r#"{"kind":"dns-record","v":1,"zone":"lct.internal.","name":"sub.lct.internal.","type":"DS","ttl":300,"data":"\\# 4 00010d02","view":"both"}"#;
    let mut records = std::fs::read_to_string(dir.join("zones.jsonl")).unwrap();
    records.push_str(ds);
    records.push('\n');
    std::fs::write(dir.join("zones.jsonl"), records).unwrap();
    let port = lct_tests::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let records = dir.join("zones.jsonl");
    let run = env.run("lct-dns", &["serve", "--records", records.to_str().unwrap(), "--listen", &listen]);
    assert!(run.status != 0, "{}", run.stderr);
    assert!(run.stderr.contains("zones.jsonl") && run.stderr.contains("sub.lct.internal. DS"), "{}", run.stderr);
}

/// The secondary's log once it tells of an IXFR (a refresh is logged when it returns, a
/// moment after its tables serve: the new answer may come first); it fails if none comes.
fn ixfr_logged(path: &std::path::Path) -> String {
    let log = || std::fs::read_to_string(path).unwrap();
    until("the secondary logs an IXFR", WITHIN, || log().contains("by IXFR ("));
    log()
}
