//! lct-dns rolling a signed zone's keys (issue 27), proven by the field's own tools on
//! loopback with short timers (TTLs of 2 s, a propagation delay of 4 s: each step about 6 s): `delv` says "fully
//! validated" for a name, NXDOMAIN and NODATA in both views at each step of a ZSK rollover
//! (pre-publication) and of a KSK rollover (double signature; CDS and CDNSKEY shown while the
//! new DS is wanted, matching `lct-dns ds`; the old KSK kept until `lct-dns ds-seen`, or
//! until the parent, asked, has the new DS); BIND takes each version by transfer and its copy
//! passes `dnssec-verify` and `kzonecheck`.

use std::path::Path;
use std::time::Duration;

use lct_tests::Env;
use lct_tests::fixtures::dns::{self, Anchor, addresses, delv, secret, tool};
use lct_tests::fixtures::{node, until};

const WITHIN: Duration = Duration::from_secs(20);

fn zk(name: &str, private: &str, public: Option<&str>) -> String {
    node("zk", "zookeeper", name, private, public)
}

/// Asserts delv validates an answer, NXDOMAIN and NODATA in both views of the primary.
fn validates(port: u16, anchor: &Anchor, step: &str) {
    for (from, address) in [("127.0.0.2", "192.168.128.1"), ("127.0.0.1", "203.0.113.1")] {
        dns::validates(port, from, anchor, "zk-1.zk.lct.internal", address, step);
    }
}

/// The zone's DNSKEY records at the server: (flags, key tag) each, sorted.
/// Whether the DNSKEY set answered holds keys but not `tag`: an empty answer (dig timed out,
/// e.g. an answer the server's rate limiting dropped: the waits poll faster than its 20
/// answers a second) says nothing, and must not end a wait.
fn gone(keys: &[(u16, u16)], tag: u16) -> bool {
    !keys.is_empty() && keys.iter().all(|(_, t)| *t != tag)
}

fn dnskeys(port: u16) -> Vec<(u16, u16)> {
    let text = dns::dig(port, &["+noall", "+answer", "+multiline", "lct.internal", "DNSKEY"]);
    let mut keys: Vec<(u16, u16)> = text
        .lines()
        .filter_map(|l| {
            let tag = l.split("key id = ").nth(1)?.split_whitespace().next()?.parse().ok()?;
            Some((0, tag))
        })
        .collect();
    // Flags from the short form, in the same order as the multiline one.
    let short = dns::dig(port, &["+short", "lct.internal", "DNSKEY"]);
    for (key, line) in keys.iter_mut().zip(short.lines()) {
        key.0 = line.split_whitespace().next().unwrap_or("0").parse().unwrap_or(0);
    }
    keys.sort_unstable();
    keys
}

/// The key tags of the RRSIGs over `name` `rtype` at the server (asked from outside).
fn signers(port: u16, name: &str, rtype: &str) -> Vec<u16> {
    let text = dns::dig(port, &["+dnssec", "+noall", "+answer", name, rtype]);
    let mut tags: Vec<u16> = text
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some("RRSIG") && l.split_whitespace().nth(4) == Some(rtype))
        .filter_map(|l| l.split_whitespace().nth(10)?.parse().ok())
        .collect();
    tags.sort_unstable();
    tags
}

/// A trust anchor file for lct.internal holding `lines` (`static-key` or `static-ds` entries).
fn anchor_file(dir: &Path, name: &str, lines: &[String]) -> Anchor {
    Anchor::write(dir, name, "lct.internal", lines)
}

/// `lct-dns ds`'s lines as static-ds trust anchors, and the DS data (tag alg type digest).
fn ds_anchor(env: &Env, config: &Path) -> (Vec<String>, Vec<String>) {
    let ds = env.run("lct-dns", &["-o", "table", "ds", "lct.internal", "--config", config.to_str().unwrap()]).ok();
    let datas: Vec<String> =
        ds.stdout.lines().map(|l| l.split_whitespace().skip(3).collect::<Vec<_>>().join(" ")).collect();
    let anchors = datas
        .iter()
        .map(|d| {
            let f: Vec<&str> = d.split_whitespace().collect();
            format!("lct.internal. static-ds {} {} {} \"{}\";", f[0], f[1], f[2], f[3])
        })
        .collect();
    (anchors, datas)
}

/// `lct-dns keys` as (tag, role, state) rows.
fn keys(env: &Env, config: &Path) -> Vec<(u16, String, String)> {
    let run = env.run("lct-dns", &["-o", "jsonl", "keys", "lct.internal", "--config", config.to_str().unwrap()]).ok();
    run.json_lines()
        .iter()
        .map(|k| {
            (
                k["tag"].as_u64().unwrap() as u16,
                k["role"].as_str().unwrap().to_string(),
                k["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The SOA serial the server on `port` answers for lct.internal (empty when none).
fn serial(port: u16) -> String {
    dns::serial(port, "lct.internal").map_or(String::new(), |s| s.to_string())
}

#[test]
fn zsk_and_ksk_rollovers_validate_at_every_step_and_on_a_bind_secondary() {
    dns::require(&["named", "delv", "dnssec-verify", "kzonecheck"]);
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    let nodes = zk("zk-1", "192.168.128.1", Some("203.0.113.1")) + &zk("zk-2", "192.168.128.2", None);
    let records = env
        .run_with_input(
            "lct-dns",
            &[
                "zone",
                "--domain",
                "lct.internal",
                "--serial",
                "10",
                "--no-reverse",
                "--ttl",
                "2",
                "--ns",
                "ns1.lct.internal=203.0.113.53",
            ],
            &nodes,
        )
        .ok();
    std::fs::write(dir.join("zones.jsonl"), records.stdout).unwrap();
    dns::keygen(&env, &dir, &["xfr-external", "parent-update"]);
    let (primary, bind, stats) = (lct_tests::free_port(), lct_tests::free_port(), lct_tests::free_port());
    // The parent zone, internal., on BIND: asked for the DS during a KSK submission.
    let parent = lct_tests::free_port();
    let pdir = dir.join("parent");
    dns::named_conf(
        &pdir,
        parent,
        "    notify no;\n    dnssec-validation no;\n",
        &format!(
            r#"key "parent-update" {{ algorithm hmac-sha256; secret "{secret}"; }};
zone "internal" {{
    type primary;
    file "{p}/internal.db";
    allow-update {{ key parent-update; }};
}};
"#,
            secret = secret(&dir.join("parent-update.key")),
            p = pdir.display(),
        ),
    );
    std::fs::write(
        pdir.join("internal.db"),
        "$TTL 2\ninternal. IN SOA ns.internal. hostmaster.internal. 1 60 60 600 2\ninternal. IN NS ns.internal.\n\
         ns.internal. IN A 127.0.0.1\nlct.internal. IN NS ns1.lct.internal.\nns1.lct.internal. IN A 203.0.113.53\n",
    )
    .unwrap();
    let _parent = dns::named(&pdir);
    until("the parent answers", WITHIN, || !dns::dig(parent, &["+short", "internal", "SOA"]).trim().is_empty());
    let more = format!(
        r#"internal = ["127.0.0.2/32"]

{}
{}
[dnssec]
"lct.internal" = "on"

[dnssec_policy]
zsk_lifetime = 0
propagation_delay = 4
parent_ds_ttl = 2
parent = ["127.0.0.1:{parent}"]
parent_check_interval = 1
"#,
        dns::stats_section(stats),
        dns::secondary_section("xfr-external.key", "external", bind),
    );
    let config = dns::lct_dns_config(&dir, "lct-dns", Some("zones.jsonl"), primary, &more);
    let log = dir.join("lct-dns.log");
    let server = dns::lct_dns(&dir, "lct-dns.toml", "lct-dns.log");
    until("lct-dns answers", WITHIN, || !addresses(primary, "zk-1.zk.lct.internal").is_empty());
    let bdir = dir.join("bind");
    dns::named_secondary_conf(&bdir, bind, primary, &dir.join("xfr-external.key"), "");
    let _bind = dns::named(&bdir);
    // BIND's copy of the primary's current version passes both checkers.
    let verify = |step: &str| {
        let want = serial(primary);
        let copy = bdir.join("lct.internal.db");
        until(&format!("BIND's copy at serial {want} ({step})"), WITHIN, || {
            serial(bind) == want && dns::copy_at_serial(&copy, &want)
        });
        let (ok, said) = tool("dnssec-verify", &["-o", "lct.internal", copy.to_str().unwrap()]);
        assert!(ok && said.contains("Zone fully signed"), "dnssec-verify of BIND's copy, {step}: {said}");
        let (ok, said) = tool("kzonecheck", &["--dnssec", "on", "-o", "lct.internal", copy.to_str().unwrap()]);
        assert!(ok, "kzonecheck of BIND's copy, {step}: {said}");
    };

    // A new zone: a KSK and a ZSK (Knot's default policy), both active.
    let start = keys(&env, &config);
    let roles: Vec<(&str, &str)> = start.iter().map(|(_, r, s)| (r.as_str(), s.as_str())).collect();
    assert_eq!(roles, [("ksk", "active"), ("zsk", "active")], "{start:?}");
    let (ksk1, zsk1) = (start[0].0, start[1].0);
    let old_anchor = anchor_file(&dir, "old.conf", &[dns::ksk_line(primary, "lct.internal")]);
    validates(primary, &old_anchor, "before any rollover");
    assert_eq!(signers(primary, "zk-1.zk.lct.internal", "A"), [zsk1]);
    assert_eq!(signers(primary, "lct.internal", "DNSKEY"), [ksk1]);
    verify("before any rollover");
    assert_eq!(dns::stat(&env, stats, "lct_dns_zone_signed", &[("zone", "lct.internal.")]), 1);
    assert!(dns::stat(&env, stats, "lct_dns_zone_signatures_expire_seconds", &[("zone", "lct.internal.")]) > 86_400);

    // Bad requests: a zone not signed; a ZSK's DS wanted; nothing waits for the parent.
    let refused = |args: &[&str], why: &str| {
        let mut all = args.to_vec();
        all.extend(["--config", config.to_str().unwrap()]);
        let run = lct_tests::run_command(env.command("lct-dns", &all), "");
        assert_ne!(run.status, 0, "{args:?} was taken");
        assert!(run.stderr.contains(why), "{args:?}: {}", run.stderr);
    };
    refused(&["roll", "example.org", "zsk"], "not signed in this configuration");
    refused(&["ds-seen", "lct.internal"], "no key waits for its DS");

    // ZSK rollover by pre-publication: published first (the old one signs), then the new
    // one signs (the old one still published), then the old one goes.
    env.run("lct-dns", &["roll", "lct.internal", "zsk", "--config", config.to_str().unwrap()]).ok();
    until("the new ZSK is published", WITHIN, || dnskeys(primary).len() == 3);
    refused(&["roll", "lct.internal", "zsk"], "runs already");
    let zsk2 = keys(&env, &config).iter().find(|(t, r, _)| r == "zsk" && *t != zsk1).expect("a new ZSK").0;
    // (Each step lasts about 6 s: the checks below take well under that.)
    assert_eq!(signers(primary, "zk-1.zk.lct.internal", "A"), [zsk1], "the old ZSK signs while the new is published");
    validates(primary, &old_anchor, "ZSK published");
    let next = dns::stat(&env, stats, "lct_dns_zone_next_key_event_seconds", &[("zone", "lct.internal.")]);
    assert!((1..=6).contains(&next), "next key event in {next} s");
    until("the new ZSK signs", WITHIN, || signers(primary, "zk-1.zk.lct.internal", "A") == [zsk2]);
    assert_eq!(dnskeys(primary).len(), 3, "the old ZSK is still published while its signatures are cached");
    validates(primary, &old_anchor, "new ZSK active, old one still published");
    until("the old ZSK is removed", WITHIN, || gone(&dnskeys(primary), zsk1));
    let mut want = vec![(256, zsk2), (257, ksk1)];
    want.sort_unstable();
    assert_eq!(dnskeys(primary), want);
    validates(primary, &old_anchor, "after the ZSK rollover");
    verify("after the ZSK rollover");

    // KSK rollover by double signature: the new KSK signs the DNSKEY set beside the old
    // one; once caches have it, CDS and CDNSKEY ask the parent for its DS (`lct-dns ds`).
    env.run("lct-dns", &["roll", "lct.internal", "ksk", "--config", config.to_str().unwrap()]).ok();
    until("the new KSK signs the DNSKEY set", WITHIN, || signers(primary, "lct.internal", "DNSKEY").len() == 2);
    let ksk2 = keys(&env, &config).iter().find(|(t, r, _)| r == "ksk" && *t != ksk1).expect("a new KSK").0;
    validates(primary, &old_anchor, "KSK published, both sign the DNSKEY set");
    until("CDS shown", WITHIN, || !dns::dig(primary, &["+short", "lct.internal", "CDS"]).trim().is_empty());
    let cds = dns::dig(primary, &["+short", "lct.internal", "CDS"]);
    let (ds_anchors, ds_datas) = ds_anchor(&env, &config);
    assert_eq!(ds_datas.len(), 1, "{ds_datas:?}");
    let cds_fields: Vec<&str> = cds.split_whitespace().collect();
    assert_eq!(cds_fields[..3].join(" ") + " " + &cds_fields[3..].concat(), ds_datas[0], "CDS is `lct-dns ds`");
    assert!(ds_datas[0].starts_with(&format!("{ksk2} 13 2 ")), "the new KSK's DS: {ds_datas:?}");
    let cdnskey = dns::dig(primary, &["+short", "lct.internal", "CDNSKEY"]);
    assert!(cdnskey.starts_with("257 3 13 "), "{cdnskey}");
    let mut both = vec![ksk1, ksk2];
    both.sort_unstable();
    assert_eq!(signers(primary, "lct.internal", "CDS"), both, "CDS signed by both KSKs");
    // Validates both under the old anchor and under the DS to be submitted.
    let new_anchor = anchor_file(&dir, "new.conf", &ds_anchors);
    validates(primary, &old_anchor, "new KSK submitted (old anchor)");
    validates(primary, &new_anchor, "new KSK submitted (new DS)");
    verify("new KSK submitted");
    // The old KSK stays until the operator saw the new DS at the parent (which is asked,
    // and has not got it).
    std::thread::sleep(Duration::from_secs(4));
    assert!(dnskeys(primary).iter().any(|(_, t)| *t == ksk1), "the old KSK went before its DS was replaced");
    env.run("lct-dns", &["ds-seen", "lct.internal", "--config", config.to_str().unwrap()]).ok();
    until("the old KSK is removed", WITHIN, || gone(&dnskeys(primary), ksk1));
    assert!(dns::dig(primary, &["+short", "lct.internal", "CDS"]).trim().is_empty(), "CDS gone after submission");
    assert_eq!(signers(primary, "lct.internal", "DNSKEY"), [ksk2]);
    validates(primary, &new_anchor, "after the KSK rollover");
    let said = delv(primary, "127.0.0.1", &old_anchor, "zk-1.zk.lct.internal", "A");
    assert!(!said.contains("; fully validated"), "the old KSK still vouches for the zone: {said}");
    verify("after the KSK rollover");
    let mut now: Vec<(String, String)> = keys(&env, &config).into_iter().map(|(_, r, s)| (r, s)).collect();
    now.sort();
    assert_eq!(now, [("ksk".into(), "active".into()), ("zsk".into(), "active".into())]);

    // Another KSK rollover, its DS put at the parent: seen by asking the parent, no ds-seen.
    env.run("lct-dns", &["roll", "lct.internal", "ksk", "--config", config.to_str().unwrap()]).ok();
    until("CDS shown again", WITHIN, || !dns::dig(primary, &["+short", "lct.internal", "CDS"]).trim().is_empty());
    let ksk3 = keys(&env, &config).iter().find(|(t, r, _)| r == "ksk" && *t != ksk2).expect("a third KSK").0;
    let (third_anchors, third_datas) = ds_anchor(&env, &config);
    assert!(third_datas[0].starts_with(&format!("{ksk3} 13 2 ")), "{third_datas:?}");
    let key_arg = format!("hmac-sha256:parent-update:{}", secret(&dir.join("parent-update.key")));
    let put = dns::nsupdate(
        parent,
        &["-y", &key_arg],
        "internal",
        &format!("update add lct.internal. 2 IN DS {}", third_datas[0]),
    );
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    until("the parent's DS is seen and the old KSK removed", WITHIN, || gone(&dnskeys(primary), ksk2));
    assert!(std::fs::read_to_string(&log).unwrap().contains("the parent has the new DS"));
    let third_anchor = anchor_file(&dir, "third.conf", &third_anchors);
    validates(primary, &third_anchor, "after a KSK rollover seen at the parent");
    verify("after a KSK rollover seen at the parent");
    let new_anchor = third_anchor;
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(!said.contains("ERROR"), "{said}");

    // A key file broken by hand: `lct-dns roll` refuses, naming it; the server's key look
    // fails, naming it, and the signed zone serves on, validated.
    let key_file = dir.join("lct-dns-state/dnssec/lct.internal.json");
    let good = std::fs::read(&key_file).unwrap();
    std::fs::write(&key_file, b"{\"zone\": \"lct.internal.\", \"algorithm\": \"rsasha1\", \"keys\": []}").unwrap();
    refused(&["roll", "lct.internal", "zsk"], key_file.to_str().unwrap());
    until("the key look fails", WITHIN, || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("keys not taken further")
    });
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains(key_file.to_str().unwrap()), "the error does not name the key file: {said}");
    validates(primary, &new_anchor, "with a broken key file");
    std::fs::write(&key_file, good).unwrap();

    // A ZSK rollover asked while the server is down: the start publishes the new ZSK, so it
    // gives the zone a new serial and tells the secondary (before, the serial stayed and
    // BIND kept the old DNSKEY set until the next change).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let before = serial(primary);
    drop(server);
    env.run("lct-dns", &["roll", "lct.internal", "zsk", "--config", config.to_str().unwrap()]).ok();
    let server = dns::lct_dns(&dir, "lct-dns.toml", "lct-dns-restarted.log");
    until("lct-dns answers after the restart", WITHIN, || !addresses(primary, "zk-1.zk.lct.internal").is_empty());
    // At once (the new ZSK's next step, seconds later, would give a new serial anyway): the
    // first version served has the new DNSKEY set under a new serial.
    let (after, published) = (serial(primary), dnskeys(primary).len());
    assert_eq!(published, 3, "the new ZSK published beside the KSK and the old ZSK");
    assert_ne!(after, before, "the DNSKEY set changed at the start under serial {before}");
    let said = std::fs::read_to_string(dir.join("lct-dns-restarted.log")).unwrap();
    assert!(said.contains(&format!("its keys changed since serial {before} was served")), "{said}");
    verify("after a restart that published a new ZSK");
    let tags = |port| dnskeys(port).into_iter().map(|(_, tag)| tag).collect::<std::collections::BTreeSet<u16>>();
    assert_eq!(tags(bind), tags(primary), "BIND has the new DNSKEY set");
    validates(primary, &new_anchor, "after a restart that published a new ZSK");
    drop(server);
}
