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
use crate::zonekeys::{KeyAlgorithm, ZoneKey};

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

/// Versions signed one after the other (the NSEC chain spliced, signatures kept) equal
/// versions signed whole by a signer that starts afresh with the same keys: the same sets,
/// NSEC records and chain, the same RRSIGs but for their times and signature bytes, and
/// every signature verifies over the set it sits beside, made by exactly the keys the plan
/// says. Over seeded random sequences of names added and removed (one view or both, deep
/// names with empty non-terminals between, delegations with glue), each version a few
/// changes from the last; with one CSK, with a CSK rolling (every set signed twice, CDS and
/// CDNSKEY appearing midway), and with a KSK and a ZSK both rolling (the DNSKEY set signed
/// by two KSKs, the ZSK switched midway).
#[test]
fn versions_signed_one_from_another_equal_versions_signed_whole() {
    use crate::keyroll::{Policy, ZoneTtls, advance};
    use crate::keystate::{KeyRing, Role};
    use std::sync::Arc;
    let zone = "lct.internal.";
    let dir = lct_core::fsutil::temp_dir("lct-dns-sign").unwrap();
    let ttls = ZoneTtls { dnskey: 300, max: 300 };
    let rolling = |split: bool, roles: &[Role]| {
        let policy = Policy { split, propagation_delay: 10, ..Policy::default() };
        let mut file = advance(zone, KeyAlgorithm::Ecdsa, None, &policy, ttls, NOW).unwrap();
        file.requests.roll.extend_from_slice(roles);
        let file = advance(zone, KeyAlgorithm::Ecdsa, Some(file), &policy, ttls, NOW).unwrap();
        (Arc::new(KeyRing::from_file(file).unwrap()), policy)
    };
    let single = crate::keyroll::load_or_create_csk(dir.path(), zone, KeyAlgorithm::Ecdsa, NOW).unwrap();
    let cases = [
        ("one CSK", Arc::new(KeyRing::single(zone, single, String::new())), Policy::default()),
        {
            let (ring, policy) = rolling(false, &[Role::Csk]);
            ("a CSK rolling", ring, policy)
        },
        {
            let (ring, policy) = rolling(true, &[Role::Ksk, Role::Zsk]);
            ("a KSK and a ZSK rolling", ring, policy)
        },
    ];
    for (case, ring, policy) in &cases {
        let keyed = || {
            let rings = BTreeMap::from([(zone.to_string(), ring.clone())]);
            Dnssec::with_rings(rings, *policy, dir.path().to_path_buf(), Timers::default())
        };
        for seed in 1..=4u64 {
            // xorshift64*: a fixed seed per sequence, so a failure replays.
            let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut random = move |below: usize| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % below
            };
            let incremental = keyed();
            let mut records = nodes(40);
            let mut now = NOW;
            let mut signers_before = None;
            for step in 0..12 {
                for _ in 0..1 + random(3) {
                    let i = random(200);
                    let name = match random(4) {
                        0 => format!("x{i}.deep.c{}.lct.internal.", i % 3),
                        1 => format!("n-{i}.c{}.lct.internal.", i % 10),
                        2 => format!("sub{}.lct.internal.", i % 5),
                        _ => format!("m{i}.lct.internal."),
                    };
                    if records.iter().any(|r| r.name == name) && random(3) > 0 {
                        records.retain(|r| r.name != name);
                    } else if name.starts_with("sub") {
                        // A delegation, its glue below it (neither signed nor in the chain).
                        records.push(rec(&name, RecordType::NS, &format!("ns.{name}")));
                        records.push(rec(&format!("ns.{name}"), RecordType::A, "192.0.2.53"));
                    } else {
                        let view = [View::Internal, View::External, View::Both][random(3)];
                        records.push(DnsRecord { view, ..rec(&name, RecordType::A, &format!("10.1.{}.{}", step, i)) });
                    }
                }
                let soa = records.iter().position(|r| r.rtype == RecordType::SOA).unwrap();
                records[soa].data =
                    format!("ns1.lct.internal. hostmaster.lct.internal. {} 3600 600 1209600 300", 10 + step);
                now += 60;
                let before = incremental.signatures_made();
                let spliced = signed(&records, &incremental, now);
                let whole_signer = keyed();
                let whole = signed(&records, &whole_signer, now);
                let context = format!("{case}, seed {seed}, step {step}");
                assert_eq!(unsigned_dump(&spliced), unsigned_dump(&whole), "{context}: sets differ");
                assert_eq!(chains(&spliced), chains(&whole), "{context}: NSEC chains differ");
                let plan = ring.plan(now).unwrap();
                let verified = verify_all(&spliced, &plan);
                assert_eq!(verified, verify_all(&whole, &plan), "{context}");
                // Proportional: a few changes re-sign a few sets per signing key, not the
                // zone (unless the keys changed: then every set is signed by the new one).
                let tags = |keys: &[&ZoneKey]| keys.iter().map(|k| k.tag).collect::<Vec<_>>();
                let signers = (tags(&plan.zone_signers), tags(&plan.key_signers), tags(&plan.submitting));
                if signers_before.as_ref() == Some(&signers) {
                    let made = incremental.signatures_made() - before;
                    let bound = 40 * plan.zone_signers.len() as u64;
                    assert!(made <= bound, "{context}: {made} signatures made for at most 3 changes");
                }
                signers_before = Some(signers);
            }
        }
    }
}

/// Every set of the tables in order, the RRSIGs' times and signatures left out, and the
/// signatures kept beside each set the same way.
fn unsigned_dump(answers: &Answers) -> Vec<(Vec<u8>, u16, Vec<Vec<u8>>)> {
    let mut out = Vec::new();
    for (key, sets) in &answers.names {
        for set in sets.iter() {
            let mut records: Vec<Vec<u8>> = crate::denial::records(&set.bytes)
                .map(|(ttl, data)| [&ttl.to_be_bytes()[..], &timeless(set.rtype, data)].concat())
                .collect();
            records.extend(
                crate::denial::records(&set.sigs)
                    .map(|(ttl, data)| [&[0xff][..], &ttl.to_be_bytes()[..], &timeless(RRSIG, data)].concat()),
            );
            out.push((key.clone(), set.rtype, records));
        }
    }
    out.sort();
    out
}

/// An RRSIG's data without its expiration, inception and signature (which a signature
/// made at another time differs in); other data as it is.
fn timeless(rtype: u16, data: &[u8]) -> Vec<u8> {
    if rtype != RRSIG {
        return data.to_vec();
    }
    let signer_end = 18 + data[18..].iter().position(|&b| b == 0).unwrap() + 1;
    [&data[..8], &data[16..signer_end]].concat()
}

/// A signed view's proofs: its apex key, how many SOA signatures negative answers carry,
/// and the chain's owners in order, each with the count of records copied for it.
type ViewChain = (Vec<u8>, usize, Vec<(Vec<u8>, u16)>);

/// Each signed view's proofs ([`ViewChain`]), checked to be in canonical order.
fn chains(answers: &Answers) -> Vec<ViewChain> {
    let mut out: Vec<_> = answers
        .zones
        .iter()
        .filter_map(|(k, z)| z.denial.as_ref().map(|d| (k, d)))
        .map(|(k, d)| {
            let entries: Vec<_> = d.chain.iter().map(|e| (e.owner.clone(), e.count)).collect();
            for pair in d.chain.windows(2) {
                assert_eq!(canonical_cmp(&pair[0].owner, &pair[1].owner), std::cmp::Ordering::Less, "chain order");
            }
            (k.clone(), d.soa_sigs.len(), entries)
        })
        .collect();
    out.sort();
    out
}

/// Verifies every RRSIG beside a set (RFC 4034 3.1.8.1, ECDSA P-256) with the key of its
/// tag, and that a set signed is signed by exactly the keys `plan` gives it (the KSKs for
/// the apex's DNSKEY, CDS and CDNSKEY, the ZSKs for the rest); returns how many, panicking
/// at one that does not verify.
fn verify_all(answers: &Answers, plan: &crate::keystate::SigningPlan) -> usize {
    let mut verified = 0;
    for (key, sets) in &answers.names {
        let owner = &key[1..];
        let at_apex = owner == crate::wire::wire_name("lct.internal.").unwrap();
        for set in sets.iter().filter(|s| s.rtype != RRSIG) {
            let signers = match set.rtype {
                DNSKEY | CDS | CDNSKEY if at_apex => &plan.key_signers,
                _ => &plan.zone_signers,
            };
            let mut tags = Vec::new();
            for (_, sig) in crate::denial::records(&set.sigs) {
                let signer_end = 18 + sig[18..].iter().position(|&b| b == 0).unwrap() + 1;
                let (fields, signature) = sig.split_at(signer_end);
                let mut datas: Vec<Vec<u8>> =
                    crate::denial::records(&set.bytes).map(|(_, d)| canonical_rdata(set.rtype, d)).collect();
                datas.sort();
                datas.dedup();
                let mut tbs = fields.to_vec();
                for d in &datas {
                    tbs.extend_from_slice(owner);
                    tbs.extend_from_slice(&set.rtype.to_be_bytes());
                    tbs.extend_from_slice(&1u16.to_be_bytes());
                    tbs.extend_from_slice(&fields[4..8]);
                    tbs.extend_from_slice(&(d.len() as u16).to_be_bytes());
                    tbs.extend_from_slice(d);
                }
                assert_eq!(u16::from_be_bytes([fields[0], fields[1]]), set.rtype, "the type covered");
                let tag = u16::from_be_bytes([fields[16], fields[17]]);
                let verifies = signers.iter().filter(|k| k.tag == tag).any(|k| {
                    let public = [&[4u8][..], &k.dnskey[4..]].concat();
                    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, public)
                        .verify(&tbs, signature)
                        .is_ok()
                });
                assert!(verifies, "{key:?} type {}: a bad signature, or by a key not signing it ({tag})", set.rtype);
                tags.push(tag);
                verified += 1;
            }
            if !tags.is_empty() {
                let expected: Vec<u16> = signers.iter().map(|k| k.tag).collect();
                assert_eq!(tags, expected, "{key:?} type {}: signed by the plan's keys, once each", set.rtype);
            }
        }
    }
    assert!(verified > 0);
    verified
}

/// The signature cache is keyed by a hash of the set: an entry found under a set's hash that
/// signs other records (a collision, or a forged entry) is never served; the set is signed
/// anew and its signature verifies.
#[test]
fn a_cached_signature_of_other_records_is_never_served() {
    let (dnssec, _dir) = signer(KeyAlgorithm::Ecdsa);
    let records = nodes(30);
    signed(&records, &dnssec, NOW);
    let first = dnssec.signatures_made();
    let entries = {
        let mut memory = dnssec.memory.lock().unwrap();
        for cached in memory.signatures.values_mut() {
            // Every entry now claims other records (and other owners, or another key of the
            // same tag, for some of them).
            cached.set.push(0);
            match cached.rtype % 3 {
                0 => cached.owner.insert(0, 1),
                1 => cached.signer.push(0),
                _ => {}
            }
        }
        memory.signatures.len() as u64
    };
    let answers = signed(&records, &dnssec, NOW + 60);
    assert_eq!(dnssec.signatures_made() - first, entries, "every set signed anew");
    let ring = dnssec.ring("lct.internal.").unwrap();
    verify_all(&answers, &ring.plan(NOW + 60).unwrap());
}
