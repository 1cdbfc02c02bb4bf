//! Tests of [`crate::sign`]: what a change re-signs, a clock far off, answers with the DO
//! bit from the tables, the canonical order.

use std::collections::BTreeMap;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::*;
use crate::denial::canonical_cmp;
use crate::mode::ZoneMode;
use crate::zone::fixtures::{rec, zone};
use crate::zone::{DnsRecord, View};
use crate::zonekeys::KeyAlgorithm;

const NOW: u64 = 1_800_000_000;

fn split(_: &str) -> ZoneMode {
    ZoneMode::Split
}

fn signer(algorithm: KeyAlgorithm) -> (Dnssec, impl Sized) {
    let dir = lct_core::fsutil::temp_dir("lct-dns-sign").unwrap();
    let key = crate::keyroll::load_or_create_csk(dir.path(), "lct.internal.", algorithm, NOW).unwrap();
    (Dnssec::new(BTreeMap::from([("lct.internal.".to_string(), key)]), Timers::default()), dir)
}

/// `n` nodes, each with a private address (inside) and a public one (outside).
fn nodes(n: usize) -> Vec<DnsRecord> {
    let mut records = zone();
    for i in 0..n {
        let name = format!("n-{i}.c{}.lct.internal.", i % 10);
        records.push(DnsRecord {
            view: View::Internal,
            ..rec(&name, RecordType::A, &format!("10.0.{}.{}", i / 250, i % 250))
        });
        records.push(DnsRecord {
            view: View::External,
            ..rec(&name, RecordType::A, &format!("198.51.{}.{}", i / 250, i % 250))
        });
    }
    records
}

fn signed(records: &[DnsRecord], dnssec: &Dnssec, now: u64) -> Answers {
    let mut answers = Answers::new(records, &split).unwrap();
    dnssec.sign_at(&mut answers, now).unwrap();
    answers
}

fn query(name: &str, rtype: RecordType, dnssec_ok: bool) -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.set_dnssec_ok(dnssec_ok);
    m.set_edns(e);
    m.to_vec().unwrap()
}

/// A node added re-signs its own set, its NSEC and its neighbour's, and the SOA (whose
/// serial changed) in each view; nothing else.
#[test]
fn a_change_re_signs_only_what_it_touches() {
    let (dnssec, _dir) = signer(KeyAlgorithm::Ecdsa);
    let mut records = nodes(500);
    signed(&records, &dnssec, NOW);
    let first = dnssec.signatures_made();
    // An A set per name and view; the NSEC sets, alike in both views, signed once.
    assert!((1500..1600).contains(&first), "{first} signatures for 500 nodes in two views");
    // The same again, a moment later: nothing new.
    signed(&records, &dnssec, NOW + 60);
    assert_eq!(dnssec.signatures_made(), first);
    // The serial one up, as an update or a refresh does.
    let soa = records.iter().position(|r| r.rtype == RecordType::SOA).unwrap();
    records[soa].data = records[soa].data.replace(" 7 ", " 8 ");
    records.push(DnsRecord { view: View::Internal, ..rec("new.c1.lct.internal.", RecordType::A, "10.9.9.9") });
    records.push(DnsRecord { view: View::External, ..rec("new.c1.lct.internal.", RecordType::A, "198.51.99.9") });
    let started = std::time::Instant::now();
    let answers = signed(&records, &dnssec, NOW + 120);
    let made = dnssec.signatures_made() - first;
    // Per view: the new A, the new NSEC, the predecessor's NSEC, the SOA (shared: once).
    assert!((4..=8).contains(&made), "{made} signatures made for one node added ({:?})", started.elapsed());
    let reply = answers.answer(&query("new.c1.lct.internal.", RecordType::A, true), true, false).unwrap();
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.answers.len(), 2, "the A and its RRSIG: {m:?}");
    // Signatures past their refresh time are made again, all of them.
    signed(&records, &dnssec, NOW + u64::from(Timers::default().lifetime));
    assert!(dnssec.signatures_made() - first - made > 1000);
}

/// A clock more than a day before the key was made is refused, naming the zone.
#[test]
fn a_clock_far_off_is_refused() {
    let (dnssec, _dir) = signer(KeyAlgorithm::Ed25519);
    let mut answers = Answers::new(&nodes(3), &split).unwrap();
    let e = dnssec.sign_at(&mut answers, NOW - 3 * 86_400).unwrap_err().to_string();
    assert!(e.contains("lct.internal.") && e.contains("clock"), "{e}");
}

/// With the DO bit: signatures after the answer, SOA and NSEC proofs (signed) for
/// NXDOMAIN and NODATA; without it, none of them.
#[test]
fn answers_with_the_do_bit_carry_signatures_and_proofs() {
    let (dnssec, _dir) = signer(KeyAlgorithm::Ecdsa);
    let answers = signed(&nodes(20), &dnssec, NOW);
    let ask = |name: &str, rtype, dnssec_ok| {
        Message::from_vec(&answers.answer(&query(name, rtype, dnssec_ok), false, false).unwrap()).unwrap()
    };
    let types = |records: &[hickory_proto::rr::Record]| records.iter().map(|r| r.record_type()).collect::<Vec<_>>();
    let m = ask("n-1.c1.lct.internal.", RecordType::A, true);
    assert_eq!(types(&m.answers), [RecordType::A, RecordType::RRSIG]);
    assert!(m.edns.as_ref().unwrap().flags().dnssec_ok, "the DO bit echoed");
    let m = ask("n-1.c1.lct.internal.", RecordType::A, false);
    assert_eq!(types(&m.answers), [RecordType::A]);
    let m = ask("nope.lct.internal.", RecordType::A, true);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let t = types(&m.authorities);
    assert_eq!(t.iter().filter(|t| **t == RecordType::NSEC).count(), 2, "covering and wildcard: {t:?}");
    assert_eq!(t.iter().filter(|t| **t == RecordType::RRSIG).count(), 3, "{t:?}");
    let m = ask("n-1.c1.lct.internal.", RecordType::MX, true);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let nsec = m.authorities.iter().find(|r| r.record_type() == RecordType::NSEC).expect("an NSEC");
    assert_eq!(nsec.name, Name::from_ascii("n-1.c1.lct.internal.").unwrap(), "the name's own NSEC");
    let m = ask("nope.lct.internal.", RecordType::A, false);
    assert_eq!(types(&m.authorities), [RecordType::SOA]);
    // DNSKEY at the apex, signed.
    let m = ask("lct.internal.", RecordType::DNSKEY, true);
    assert_eq!(types(&m.answers), [RecordType::DNSKEY, RecordType::RRSIG]);
}

/// RFC 4034 section 6.1's example, shuffled, sorts back.
#[test]
fn names_sort_in_canonical_order() {
    let order = [
        "example.",
        "a.example.",
        "yljkjljk.a.example.",
        "Z.a.example.",
        "zABC.a.EXAMPLE.",
        "z.example.",
        "*.z.example.",
    ];
    let wire = |n: &str| crate::wire::wire_name(n).unwrap();
    let mut names: Vec<Vec<u8>> = order.iter().rev().map(|n| wire(n)).collect();
    names.sort_by(|a, b| canonical_cmp(a, b));
    let expected: Vec<Vec<u8>> = order.iter().map(|n| wire(n)).collect();
    // (wire_name lower-cases; the RFC's list is in that order once lower-cased, but for
    // "\001.z.example." and "\200.z.example.", which names here cannot hold.)
    assert_eq!(names, expected);
}

/// A CSK rollover by double signature: from the new key's publication every set carries
/// both keys' signatures and the DNSKEY set both keys; once it is ready the apex shows CDS
/// and CDNSKEY for it alone, signed by both.
#[test]
fn a_csk_rollover_signs_with_both_keys_and_shows_cds_when_ready() {
    use crate::keyroll::{Policy, ZoneTtls, advance};
    use crate::keystate::{KeyRing, Role};
    let policy = Policy { split: false, propagation_delay: 10, ..Policy::default() };
    let ttls = ZoneTtls { dnskey: 300, max: 300 };
    let zone = "lct.internal.";
    let mut file = advance(zone, KeyAlgorithm::Ecdsa, None, &policy, ttls, NOW).unwrap();
    file.requests.roll.push(Role::Csk);
    let file = advance(zone, KeyAlgorithm::Ecdsa, Some(file), &policy, ttls, NOW + 5).unwrap();
    let ring = std::sync::Arc::new(KeyRing::from_file(file).unwrap());
    let new_tag = ring.keys[1].key.tag;
    let dir = lct_core::fsutil::temp_dir("lct-dns-sign").unwrap();
    let rings = BTreeMap::from([(zone.to_string(), ring)]);
    let dnssec = Dnssec::with_rings(rings, policy, dir.path().to_path_buf(), Timers::default());
    let count = |answers: &Answers, name: &str, rtype: RecordType| {
        let m = Message::from_vec(&answers.answer(&query(name, rtype, true), false, false).unwrap()).unwrap();
        let of = |t| m.answers.iter().filter(|r| r.record_type() == t).count();
        (of(rtype), of(RecordType::RRSIG))
    };
    let published = signed(&nodes(5), &dnssec, NOW + 6);
    assert_eq!(count(&published, "n-1.c1.lct.internal.", RecordType::A), (1, 2), "double signature");
    assert_eq!(count(&published, "lct.internal.", RecordType::DNSKEY), (2, 2));
    assert_eq!(count(&published, "lct.internal.", RecordType::CDS), (0, 0), "not ready yet");
    let ready = signed(&nodes(5), &dnssec, NOW + 5 + 300 + 10);
    assert_eq!(count(&ready, "lct.internal.", RecordType::CDS), (1, 2));
    assert_eq!(count(&ready, "lct.internal.", RecordType::CDNSKEY), (1, 2));
    let m = Message::from_vec(&ready.answer(&query("lct.internal.", RecordType::CDS, true), false, false).unwrap())
        .unwrap();
    let cds = m.answers.iter().find(|r| r.record_type() == RecordType::CDS).unwrap();
    assert!(cds.data.to_string().starts_with(&format!("{new_tag} 13 2 ")), "{cds}");
}
