//! Patched versions against versions built whole from the same records: random sequences
//! of adds, removes and changes, in each zone mode (both views, one, the other).

use std::collections::BTreeSet;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::Name;
use proptest::prelude::*;

use crate::fast::Answers;
use crate::journal::Change;
use crate::mode::ZoneMode;
use crate::zone::fixtures::rec;
use crate::zone::{DnsRecord, RecordType, assign_views};

const ZONE: &str = "lct.internal.";

/// Everything in the tables, each name's sets in their order (empty non-terminals too).
type Snapshot = Vec<(Vec<u8>, Vec<(u16, u16, Vec<u8>, u16, Vec<u8>, Vec<u8>, u16)>)>;

/// The names, the zones (key, SOA, expired), the cuts and the targeted names.
type Tables = (Snapshot, Vec<(Vec<u8>, Vec<u8>, bool)>, Vec<Vec<u8>>, Vec<Vec<u8>>);

fn snapshot(a: &Answers) -> Tables {
    let mut names: Snapshot = a
        .names
        .iter()
        .map(|(k, sets)| {
            let sets = sets
                .iter()
                .map(|s| {
                    assert!(s.targets.is_empty(), "targets are dropped once the extras are in");
                    (s.rtype, s.count, s.bytes.clone(), s.extra_count, s.extra.clone(), s.sigs.clone(), s.sig_count)
                })
                .collect();
            (k.clone(), sets)
        })
        .collect();
    names.sort();
    let mut zones: Vec<_> = a.zones.iter().map(|(k, z)| (k.clone(), z.soa.clone(), z.expired)).collect();
    zones.sort();
    let mut cuts: Vec<_> = a.cuts.keys().cloned().collect();
    cuts.sort();
    let mut targeted: Vec<_> = a.targeted.keys().cloned().collect();
    targeted.sort();
    (names, zones, cuts, targeted)
}

/// The names the random changes pick from: nodes, deeper names (empty non-terminals above
/// them), a delegation's target and an SRV's (changes to those are built whole).
fn pool() -> Vec<String> {
    let mut names: Vec<String> =
        (0..6).flat_map(|i| [format!("n-{i}.c1.{ZONE}"), format!("n-{i}.c2.{ZONE}")]).collect();
    names.extend(["x.n-3.c1", "y.x.n-3.c1", "a.b.c3", "b.c3", "c1", "ns1", "t.sub"].map(|n| format!("{n}.{ZONE}")));
    names
}

fn base() -> Vec<DnsRecord> {
    let mut records = vec![
        rec(ZONE, RecordType::SOA, "ns1.lct.internal. hostmaster.lct.internal. 1 3600 600 1209600 300"),
        rec(ZONE, RecordType::NS, "ns1.lct.internal."),
        rec("ns1.lct.internal.", RecordType::A, "192.168.128.53"),
        rec("_etcd._tcp.c1.lct.internal.", RecordType::SRV, "0 0 2379 n-0.c1.lct.internal."),
        rec("sub.lct.internal.", RecordType::NS, "ns.sub.lct.internal."),
        rec("ns.sub.lct.internal.", RecordType::A, "203.0.113.99"),
    ];
    for i in 0..6 {
        records.push(rec(&format!("n-{i}.c1.{ZONE}"), RecordType::A, &format!("192.168.128.{i}")));
        records.push(rec(&format!("n-{i}.c2.{ZONE}"), RecordType::A, &format!("203.0.113.{i}")));
    }
    assign_views(records)
}

/// One random step: (adds or removes or changes) the record of `pool()[name]` picked.
#[derive(Debug, Clone)]
enum Step {
    Add { name: usize, v6: bool, public: bool, host: u8 },
    Remove { pick: usize },
    Change { pick: usize, host: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..19usize, any::<bool>(), any::<bool>(), 1..250u8)
            .prop_map(|(name, v6, public, host)| Step::Add { name, v6, public, host }),
        2 => (0..1000usize).prop_map(|pick| Step::Remove { pick }),
        1 => (0..1000usize, 1..250u8).prop_map(|(pick, host)| Step::Change { pick, host }),
    ]
}

fn address(v6: bool, public: bool, host: u8) -> (RecordType, String) {
    match (v6, public) {
        (false, false) => (RecordType::A, format!("192.168.128.{host}")),
        (false, true) => (RecordType::A, format!("203.0.113.{host}")),
        (true, false) => (RecordType::AAAA, format!("fd00::{host}")),
        (true, true) => (RecordType::AAAA, format!("2001:db8::{host}")),
    }
}

/// The records after `step` (views assigned again, the serial bumped) and the change.
fn apply(records: &[DnsRecord], step: &Step, serial: u32) -> (Vec<DnsRecord>, Change) {
    let mut plain: Vec<DnsRecord> = records.iter().filter(|r| r.rtype != RecordType::SOA).cloned().collect();
    let addresses: Vec<usize> = (0..plain.len())
        .filter(|&i| {
            matches!(plain[i].rtype, RecordType::A | RecordType::AAAA) && plain[i].name != "ns.sub.lct.internal."
        })
        .collect();
    match *step {
        Step::Add { name, v6, public, host } => {
            let (rtype, data) = address(v6, public, host);
            plain.push(rec(&pool()[name], rtype, &data));
        }
        Step::Remove { pick } if !addresses.is_empty() => {
            plain.remove(addresses[pick % addresses.len()]);
        }
        Step::Change { pick, host } if !addresses.is_empty() => {
            let r = &mut plain[addresses[pick % addresses.len()]];
            let public = r.data.starts_with("203.") || r.data.starts_with("2001:");
            (r.rtype, r.data) = address(r.rtype == RecordType::AAAA, !public, host);
        }
        _ => {}
    }
    let soa = format!("ns1.lct.internal. hostmaster.lct.internal. {serial} 3600 600 1209600 300");
    let mut out = vec![rec(ZONE, RecordType::SOA, &soa)];
    out.extend(plain);
    let out = assign_views(out);
    let set =
        |r: &[DnsRecord]| -> BTreeSet<DnsRecord> { r.iter().filter(|r| r.rtype != RecordType::SOA).cloned().collect() };
    let (before, after) = (set(records), set(&out));
    let change = Change {
        from: serial - 1,
        to: serial,
        removed: before.difference(&after).cloned().collect(),
        added: after.difference(&before).cloned().collect(),
    };
    (out, change)
}

/// The answers both tables give to every pool name (and a few more), each type, each view.
fn same_answers(patched: &Answers, whole: &Answers) -> Result<(), TestCaseError> {
    let mut names = pool();
    names.extend(["n-3.c1", "c2", "c3", "nx", "q.t.sub", "_etcd._tcp.c1", "_tcp.c1"].map(|n| format!("{n}.{ZONE}")));
    names.push(ZONE.into());
    for name in &names {
        for rtype in
            [RecordType::A, RecordType::AAAA, RecordType::SRV, RecordType::NS, RecordType::SOA, RecordType::TXT]
        {
            let mut query = Message::query();
            query.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
            let query = query.to_vec().unwrap();
            for internal in [true, false] {
                prop_assert_eq!(
                    patched.answer(&query, internal, false),
                    whole.answer(&query, internal, false),
                    "{} {} internal {}",
                    name,
                    rtype,
                    internal
                );
            }
        }
    }
    Ok(())
}

#[test]
fn patched_versions_equal_versions_built_whole() {
    let config = proptest::test_runner::Config { cases: 48, failure_persistence: None, ..Default::default() };
    let patched_count = std::cell::Cell::new(0usize);
    let steps_count = std::cell::Cell::new(0usize);
    let modes = prop_oneof![Just(ZoneMode::Split), Just(ZoneMode::Private), Just(ZoneMode::Public)];
    proptest::test_runner::TestRunner::new(config)
        .run(&(modes, proptest::collection::vec(step(), 1..40)), |(mode, steps)| {
            let modes = move |_: &str| mode;
            let mut records = base();
            let mut previous = Answers::new(&records, &modes).unwrap();
            for (i, step) in steps.iter().enumerate() {
                let (next, change) = apply(&records, step, 2 + i as u32);
                let whole = Answers::new(&next, &modes).unwrap();
                steps_count.set(steps_count.get() + 1);
                let current = match Answers::patched(&previous, &next, ZONE, &change, &modes) {
                    Some(patched) => {
                        let patched = patched.unwrap();
                        patched_count.set(patched_count.get() + 1);
                        prop_assert_eq!(snapshot(&patched), snapshot(&whole), "after {:?} ({:?})", step, mode);
                        same_answers(&patched, &whole)?;
                        patched
                    }
                    None => whole,
                };
                previous = current;
                records = next;
            }
            Ok(())
        })
        .unwrap();
    // Most changes are to plain addresses: patched, not built whole.
    assert!(
        patched_count.get() * 2 > steps_count.get(),
        "{} of {} steps patched",
        patched_count.get(),
        steps_count.get()
    );
}

/// A version that shares the previous version's unchanged names holds the same sets, not
/// copies: what makes an update cost the names it touches.
#[test]
fn unchanged_names_are_shared_not_copied() {
    let modes = |_: &str| ZoneMode::Split;
    let records = base();
    let previous = Answers::new(&records, &modes).unwrap();
    let (next, change) = apply(&records, &Step::Add { name: 3, v6: false, public: false, host: 9 }, 2);
    let patched = Answers::patched(&previous, &next, ZONE, &change, &modes).expect("patched").unwrap();
    let key = |name: &str| crate::fast::keyed(true, &crate::wire::wire_name(name).unwrap());
    let same = |name: &str| std::sync::Arc::ptr_eq(&previous.names[&key(name)], &patched.names[&key(name)]);
    assert!(same("n-0.c2.lct.internal."), "an untouched name is shared");
    assert!(!same(&pool()[3]), "the touched name is new");
    assert!(!same(ZONE), "the apex (its SOA) is new");
}

/// Changes this module does not follow across names are left to the whole build.
#[test]
fn changes_reaching_other_names_are_built_whole() {
    let modes = |_: &str| ZoneMode::Split;
    let records = base();
    let previous = Answers::new(&records, &modes).unwrap();
    let refused = |name: &str, rtype: RecordType, data: &str| {
        let added = rec(name, rtype, data);
        let mut next = records.clone();
        next.push(added.clone());
        let change = Change { from: 1, to: 2, removed: vec![], added: vec![added] };
        Answers::patched(&previous, &next, ZONE, &change, &modes).is_none()
    };
    assert!(refused("n-0.c1.lct.internal.", RecordType::A, "192.168.128.77"), "an SRV's target");
    assert!(refused("ns1.lct.internal.", RecordType::A, "192.168.128.77"), "an NS's target");
    assert!(refused("q.sub.lct.internal.", RecordType::A, "192.168.128.77"), "below a delegation");
    assert!(refused("n-1.c1.lct.internal.", RecordType::NS, "ns1.lct.internal."), "a new delegation");
    assert!(!refused("n-1.c1.lct.internal.", RecordType::A, "192.168.128.77"), "a plain address is patched");
}

/// A signed zone's NSEC records and the SOA's signatures, per view.
type Denials = Vec<(Vec<u8>, Vec<Vec<u8>>, Vec<(Vec<u8>, Vec<u8>, u16)>)>;

fn denials(a: &Answers) -> Denials {
    let mut out: Denials = a
        .zones
        .iter()
        .filter_map(|(k, z)| {
            let d = z.denial.as_ref()?;
            Some((
                k.clone(),
                d.soa_sigs.clone(),
                d.chain.iter().map(|e| (e.owner.clone(), e.bytes.clone(), e.count)).collect(),
            ))
        })
        .collect();
    out.sort();
    out
}

/// As [`same_answers`], with the DO bit: RRSIGs beside the answers, NSEC proofs beside the
/// negative ones.
fn same_signed_answers(patched: &Answers, whole: &Answers) -> Result<(), TestCaseError> {
    let mut names = pool();
    names.extend(["n-3.c1", "c2", "c3", "nx", "q.t.sub", "zz", "a.n-0.c1"].map(|n| format!("{n}.{ZONE}")));
    names.push(ZONE.into());
    for name in &names {
        for rtype in [RecordType::A, RecordType::AAAA, RecordType::SOA, RecordType::DNSKEY, RecordType::NSEC] {
            let mut query = Message::query();
            query.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
            let mut edns = hickory_proto::op::Edns::new();
            edns.set_max_payload(4096);
            edns.set_dnssec_ok(true);
            query.set_edns(edns);
            let query = query.to_vec().unwrap();
            for internal in [true, false] {
                let (p, w) = (patched.answer(&query, internal, true), whole.answer(&query, internal, true));
                prop_assert_eq!(p, w, "{} {} internal {} (DO)", name, rtype, internal);
            }
        }
    }
    same_answers(patched, whole)
}

/// The zone's CSK kept in `dir` (made there the first time), of `algorithm`.
fn key_in(dir: &std::path::Path, algorithm: crate::zonekeys::KeyAlgorithm) -> crate::zonekeys::ZoneKey {
    crate::keyroll::load_or_create_csk(dir, ZONE, algorithm, T0).unwrap()
}

/// A signer of the zone with `key`.
fn signer(key: crate::zonekeys::ZoneKey) -> crate::sign::Dnssec {
    crate::sign::Dnssec::new(
        std::collections::BTreeMap::from([(ZONE.to_string(), key)]),
        crate::sign::Timers::default(),
    )
}

/// Puts `key` in place of the zone's keys (a rollover's step, as seen by the signer).
fn roll(dnssec: &crate::sign::Dnssec, key: crate::zonekeys::ZoneKey) {
    let ring = crate::keystate::KeyRing::single(ZONE, key, String::new());
    dnssec.rings.write().unwrap().insert(ZONE.to_string(), std::sync::Arc::new(ring));
}

const T0: u64 = 1_800_000_000;

/// Signed zones: each patched version, signed by a signer that keeps what it signed
/// before, equals the version built whole and signed by another with the same key at the
/// same time (tables with their NSEC and RRSIG sets, the NSEC chains, answers with and
/// without the DO bit), through random changes, clock steps that bring signatures to their
/// refresh, and a key rollover's step in the middle.
#[test]
fn patched_signed_versions_equal_versions_built_whole() {
    let dir = lct_core::fsutil::temp_dir("lct-dns-patch").unwrap();
    let alg = crate::zonekeys::KeyAlgorithm::Ed25519;
    // Two signers with the same keys (Ed25519: the same signature of the same data).
    let (first, second) = (dir.path().join("1"), dir.path().join("2"));
    key_in(&first, alg);
    key_in(&second, alg);
    let config = proptest::test_runner::Config { cases: 24, failure_persistence: None, ..Default::default() };
    let patched_count = std::cell::Cell::new(0usize);
    let steps_count = std::cell::Cell::new(0usize);
    let modes = prop_oneof![Just(ZoneMode::Split), Just(ZoneMode::Private), Just(ZoneMode::Public)];
    let clock = proptest::collection::vec(prop_oneof![4 => Just(600u64), 1 => Just(4 * 86_400u64)], 30);
    proptest::test_runner::TestRunner::new(config)
        .run(&(modes, proptest::collection::vec(step(), 1..30), 0..30usize, clock), |(mode, steps, roll_at, clock)| {
            let modes = move |_: &str| mode;
            let (by_parts, by_whole) = (signer(key_in(&first, alg)), signer(key_in(&first, alg)));
            let mut now = T0 + 60;
            let mut records = base();
            let mut previous = Answers::new(&records, &modes).unwrap();
            by_parts.sign_at(&mut previous, now).unwrap();
            by_whole.sign_at(&mut Answers::new(&records, &modes).unwrap(), now).unwrap();
            for (i, step) in steps.iter().enumerate() {
                if i == roll_at {
                    roll(&by_parts, key_in(&second, alg));
                    roll(&by_whole, key_in(&second, alg));
                }
                now += clock[i];
                let (next, change) = apply(&records, step, 2 + i as u32);
                let mut whole = Answers::new(&next, &modes).unwrap();
                by_whole.sign_at(&mut whole, now).unwrap();
                steps_count.set(steps_count.get() + 1);
                let current = match Answers::patched(&previous, &next, ZONE, &change, &modes) {
                    Some(patched) => {
                        let mut patched = patched.unwrap();
                        by_parts.sign_at(&mut patched, now).unwrap();
                        patched_count.set(patched_count.get() + 1);
                        // (Not printed: signed tables are pages of bytes; the answers below name the place.)
                        prop_assert!(snapshot(&patched) == snapshot(&whole), "tables after {:?} ({:?})", step, mode);
                        prop_assert!(denials(&patched) == denials(&whole), "NSEC chains after {:?} ({:?})", step, mode);
                        same_signed_answers(&patched, &whole)?;
                        patched
                    }
                    None => {
                        let mut again = Answers::new(&next, &modes).unwrap();
                        by_parts.sign_at(&mut again, now).unwrap();
                        again
                    }
                };
                // The signatures kept are seen as in use: the next refresh is the same.
                prop_assert_eq!(by_parts.next_refresh(), by_whole.next_refresh());
                previous = current;
                records = next;
            }
            Ok(())
        })
        .unwrap();
    assert!(
        patched_count.get() * 2 > steps_count.get(),
        "{} of {} steps patched",
        patched_count.get(),
        steps_count.get()
    );
}

/// A change to a signed zone keeps the names it does not touch as they were signed (the
/// same sets, shared) and makes only a few signatures: the touched name's sets, its NSEC
/// neighbours' NSEC, the apex's SOA and NSEC.
#[test]
fn a_signed_change_re_signs_only_what_it_touches() {
    let modes = |_: &str| ZoneMode::Split;
    let dir = lct_core::fsutil::temp_dir("lct-dns-patch").unwrap();
    let dnssec = signer(key_in(dir.path(), crate::zonekeys::KeyAlgorithm::Ecdsa));
    let records = base();
    let mut previous = Answers::new(&records, &modes).unwrap();
    dnssec.sign_at(&mut previous, T0 + 60).unwrap();
    let made = dnssec.signatures_made();
    let (next, change) = apply(&records, &Step::Add { name: 3, v6: false, public: false, host: 9 }, 2);
    let mut patched = Answers::patched(&previous, &next, ZONE, &change, &modes).expect("patched").unwrap();
    dnssec.sign_at(&mut patched, T0 + 120).unwrap();
    let key = |name: &str| crate::fast::keyed(true, &crate::wire::wire_name(name).unwrap());
    let same = |name: &str| std::sync::Arc::ptr_eq(&previous.names[&key(name)], &patched.names[&key(name)]);
    assert!(same("n-0.c2.lct.internal."), "an untouched name is kept as signed");
    assert!(!same(&pool()[3]), "the touched name is signed again");
    // A private address more at an existing name: its internal A set and the SOA (one
    // signature for both views' SOA); no NSEC changes.
    assert_eq!(dnssec.signatures_made() - made, 2, "signatures made for one address");
    // A new name (internal): its A set and NSEC, its predecessor's NSEC, the SOA.
    let made = dnssec.signatures_made();
    let (last, change) = apply(&next, &Step::Add { name: 12, v6: false, public: false, host: 9 }, 3);
    let mut again = Answers::patched(&patched, &last, ZONE, &change, &modes).expect("patched").unwrap();
    dnssec.sign_at(&mut again, T0 + 180).unwrap();
    assert_eq!(dnssec.signatures_made() - made, 4, "signatures made for a new name");
}
