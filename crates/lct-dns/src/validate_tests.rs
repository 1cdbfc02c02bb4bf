//! Tests of [`crate::validate`]: a zone lct-dns signed passes; each way of breaking it (a
//! flipped byte, a missing RRSIG, an expired one, an algorithm not known here, a broken
//! NSEC chain, the signatures dropped) is refused with an error naming what failed.

use std::collections::{BTreeMap, HashSet};

use super::*;
use crate::fast::Answers;
use crate::mode::ZoneMode;
use crate::sign::{Dnssec, Timers};
use crate::zone::fixtures::{rec, zone};
use crate::zone::{DnsRecord, RecordType, View};
use crate::zonekeys::KeyAlgorithm;

const NOW: u64 = 1_800_000_000;
const ZONE: &str = "lct.internal.";

/// A record as the transfer hands it over: owner, type, TTL, data.
type Owned = (Vec<u8>, u16, u32, Vec<u8>);

/// A zone of `n` nodes signed by lct-dns with `algorithm`, its internal view's records
/// as a full transfer sends them.
fn signed_zone(n: usize, algorithm: KeyAlgorithm) -> Vec<Owned> {
    let dir = lct_core::fsutil::temp_dir("lct-dns-validate").unwrap();
    let key = crate::keyroll::load_or_create_csk(dir.path(), ZONE, algorithm, NOW).unwrap();
    let dnssec = Dnssec::new(BTreeMap::from([(ZONE.to_string(), key)]), Timers::default());
    let mut records: Vec<DnsRecord> = zone();
    for i in 0..n {
        let name = format!("n-{i}.c{}.lct.internal.", i % 10);
        records.push(DnsRecord {
            view: View::Internal,
            ..rec(&name, RecordType::A, &format!("10.0.{}.{}", i / 250, i % 250))
        });
    }
    let mut answers = Answers::new(&records, &|_: &str| ZoneMode::Split).unwrap();
    dnssec.sign_at(&mut answers, NOW).unwrap();
    let mut out = Vec::new();
    assert!(answers.each_transfer_record(ZONE, true, |owner, rest| {
        let rtype = u16::from_be_bytes([rest[0], rest[1]]);
        let ttl = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        out.push((owner.to_vec(), rtype, ttl, rest[10..].to_vec()));
        true
    }));
    out
}

fn wire(records: &[Owned]) -> Vec<WireRecord<'_>> {
    records.iter().map(|(name, rtype, ttl, rdata)| WireRecord { name, rtype: *rtype, ttl: *ttl, rdata }).collect()
}

fn check_at(records: &[Owned], now: u64) -> Result<Checked, Refused> {
    check(ZONE, 7, wire(records), &Scope::Whole, now, true, &Anchors::default())
}

fn owner(name: &str) -> Vec<u8> {
    crate::wire::wire_name(name).unwrap()
}

/// The index of the RRSIG at `name` covering `covered`.
fn rrsig_of(records: &[Owned], name: &str, covered: u16) -> usize {
    let name = owner(name);
    records
        .iter()
        .position(|(o, t, _, d)| *o == name && *t == 46 && u16::from_be_bytes([d[0], d[1]]) == covered)
        .unwrap()
}

#[test]
fn a_zone_lct_dns_signed_passes_with_either_algorithm() {
    for algorithm in [KeyAlgorithm::Ecdsa, KeyAlgorithm::Ed25519] {
        let records = signed_zone(50, algorithm);
        let checked = check_at(&records, NOW).unwrap();
        assert!(checked.signed);
        // Every name's A (or apex) set, its NSEC, the DNSKEY set: each verified.
        assert!(checked.verified > 100, "{checked:?}");
        let touched = HashSet::from([owner("n-3.c3.lct.internal.")]);
        let some = check(ZONE, 7, wire(&records), &Scope::Owners(touched), NOW, true, &Anchors::default()).unwrap();
        assert!(some.verified < 10 && some.verified >= 4, "the touched name's sets, the SOA and DNSKEY: {some:?}");
    }
}

/// One byte flipped in a signature: refused, naming serial, owner, type and algorithm.
#[test]
fn a_flipped_signature_byte_is_refused_naming_the_set() {
    let mut records = signed_zone(20, KeyAlgorithm::Ecdsa);
    let at = rrsig_of(&records, "n-4.c4.lct.internal.", 1);
    let last = records[at].3.len() - 1;
    records[at].3[last] ^= 1;
    let err = check_at(&records, NOW).unwrap_err();
    assert_eq!((err.serial, err.owner.as_str(), err.rtype.as_str()), (7, "n-4.c4.lct.internal.", "A"));
    let text = err.to_string();
    assert!(text.contains("bad signature") && text.contains("ECDSAP256SHA256 (13)") && text.contains(ZONE), "{text}");
    // The signed data changed instead (an address rewritten): refused the same way.
    let mut records = signed_zone(20, KeyAlgorithm::Ed25519);
    let name = owner("n-5.c5.lct.internal.");
    let a = records.iter().position(|(o, t, _, _)| *o == name && *t == 1).unwrap();
    records[a].3 = vec![203, 0, 113, 66];
    let err = check_at(&records, NOW).unwrap_err().to_string();
    assert!(
        err.contains("n-5.c5.lct.internal. A") && err.contains("ED25519 (15)") && err.contains("bad signature"),
        "{err}"
    );
}

#[test]
fn a_missing_rrsig_an_expired_one_and_one_not_yet_valid_are_refused() {
    let mut records = signed_zone(20, KeyAlgorithm::Ecdsa);
    let gone = records.remove(rrsig_of(&records, "n-6.c6.lct.internal.", 1));
    let err = check_at(&records, NOW).unwrap_err().to_string();
    assert!(err.contains("n-6.c6.lct.internal. A: no RRSIG"), "{err}");
    records.push(gone);
    check_at(&records, NOW).unwrap();
    // Signatures live 14 days: a day past, every one has expired.
    let err = check_at(&records, NOW + 15 * 86_400).unwrap_err().to_string();
    assert!(err.contains("expired at"), "{err}");
    // A clock two hours before they were made (they are dated an hour back).
    let err = check_at(&records, NOW - 7_200).unwrap_err().to_string();
    assert!(err.contains("is valid only from"), "{err}");
}

/// A zone whose keys are all of an algorithm lct-dns lacks (Ed448, an unknown number), or a
/// set signed only with one: refused naming the algorithm, mnemonic and number.
#[test]
fn an_algorithm_this_server_lacks_is_refused_by_name_and_number() {
    for (number, shown) in [(16u8, "ED448 (16)"), (200, "an unknown algorithm (200)")] {
        let mut records = signed_zone(5, KeyAlgorithm::Ecdsa);
        for (_, rtype, _, data) in &mut records {
            match *rtype {
                48 => data[3] = number,
                46 => data[2] = number,
                _ => {}
            }
        }
        let err = check_at(&records, NOW).unwrap_err().to_string();
        assert!(err.contains("lct.internal. DNSKEY") && err.contains(shown), "{err}");
        assert!(err.contains("no key of an algorithm this server can verify"), "{err}");
    }
    let mut records = signed_zone(5, KeyAlgorithm::Ecdsa);
    let at = rrsig_of(&records, "n-1.c1.lct.internal.", 1);
    records[at].3[2] = 16;
    let err = check_at(&records, NOW).unwrap_err().to_string();
    assert!(err.contains("n-1.c1.lct.internal. A: signed only with ED448 (16)"), "{err}");
}

#[test]
fn a_broken_nsec_chain_is_refused() {
    let records = signed_zone(20, KeyAlgorithm::Ecdsa);
    let nsec = |name: &str| {
        let name = owner(name);
        records.iter().position(|(o, t, _, _)| *o == name && *t == 47).unwrap()
    };
    // A name left out of the chain (its NSEC and the NSEC's signature gone).
    let mut left_out = records.clone();
    left_out.remove(nsec("n-7.c7.lct.internal."));
    let err = check_at(&left_out, NOW).unwrap_err().to_string();
    assert!(err.contains("n-7.c7.lct.internal. NSEC: no NSEC at this name"), "{err}");
    // An NSEC that skips names, re-pointed (its signature would catch it: checked with the
    // chain alone, as a primary could sign a bad chain).
    let mut sets = HashMap::new();
    let wired = wire(&records);
    let mut order = Vec::new();
    for r in &wired {
        let set: &mut Vec<WireRecord> = sets.entry((r.name, r.rtype)).or_default();
        if set.is_empty() {
            order.push((r.name, r.rtype));
        }
        set.push(*r);
    }
    let apex = owner(ZONE);
    // Its next name the apex itself, its type bitmap kept.
    let data = sets[&(apex.as_slice(), 47)][0].rdata;
    let short = [apex.clone(), data[name_len(data).unwrap()..].to_vec()].concat();
    sets.get_mut(&(apex.as_slice(), 47)).unwrap()[0].rdata = &short;
    let (at, why) = check_chain(&sets, &order, &apex, &|_| false, &|_| false).unwrap_err();
    assert_eq!(at, apex);
    assert!(why.contains("comes back to the apex after 1 of its"), "{why}");
}

#[test]
fn signatures_dropped_from_a_signed_zone_are_refused_an_unsigned_zone_passes() {
    let records: Vec<Owned> =
        signed_zone(5, KeyAlgorithm::Ecdsa).into_iter().filter(|(_, t, _, _)| !(46..=48).contains(t)).collect();
    let err = check(ZONE, 8, wire(&records), &Scope::Whole, NOW, true, &Anchors::default()).unwrap_err().to_string();
    assert!(err.contains("serial 8") && err.contains("no DNSKEY set"), "{err}");
    assert_eq!(
        check(ZONE, 8, wire(&records), &Scope::Whole, NOW, false, &Anchors::default()).unwrap(),
        Checked::default()
    );
}

/// An incremental transfer's version is checked from its `dns-record`s, read back as the
/// wire reader reads them: the same verdicts as the transfer's bytes.
#[test]
fn records_kept_as_text_are_checked_on_the_same_bytes() {
    let records = signed_zone(20, KeyAlgorithm::Ecdsa);
    let texts: Vec<DnsRecord> = wire(&records).iter().filter_map(|r| r.to_text(ZONE)).collect();
    assert_eq!(texts.len(), records.len());
    let batch = batch_of(texts.iter()).unwrap();
    assert_eq!(batch.len(), records.len());
    let touched = Scope::Owners(HashSet::from([owner("n-2.c2.lct.internal.")]));
    check(ZONE, 7, batch.iter(), &Scope::Whole, NOW, true, &Anchors::default()).unwrap();
    check(ZONE, 7, batch.iter(), &touched, NOW, true, &Anchors::default()).unwrap();
    // A changed address at a touched name: refused; at a name the change did not touch: not
    // looked at (a full transfer looks at every name).
    let mut changed = texts.clone();
    let at = changed.iter().position(|r| r.name == "n-2.c2.lct.internal." && r.rtype == RecordType::A).unwrap();
    changed[at].data = "10.9.9.9".into();
    let batch = batch_of(changed.iter()).unwrap();
    let err = check(ZONE, 7, batch.iter(), &touched, NOW, true, &Anchors::default()).unwrap_err().to_string();
    assert!(err.contains("n-2.c2.lct.internal. A") && err.contains("bad signature"), "{err}");
    let elsewhere = Scope::Owners(HashSet::from([owner("n-3.c3.lct.internal.")]));
    check(ZONE, 7, batch.iter(), &elsewhere, NOW, true, &Anchors::default()).unwrap();
}

/// A 10,000-node zone (both algorithms): every set verified; the time it takes is printed
/// (`-- --nocapture`) for docs/benchmarks.md.
#[test]
fn a_ten_thousand_node_zone_validates_whole() {
    for algorithm in [KeyAlgorithm::Ecdsa, KeyAlgorithm::Ed25519] {
        let records = signed_zone(10_000, algorithm);
        let (started, cpu) = (std::time::Instant::now(), thread_cpu());
        let checked = check_at(&records, NOW).unwrap();
        let (took, cpu) = (started.elapsed(), thread_cpu() - cpu);
        // Each node's A set and NSEC, the apex's sets.
        assert!(checked.verified >= 20_000, "{checked:?}");
        eprintln!(
            "{algorithm:?}: {} records, {} signatures verified in {took:?}, {cpu:?} of CPU ({:.1} us each)",
            records.len(),
            checked.verified,
            cpu.as_secs_f64() * 1e6 / checked.verified as f64
        );
    }
}

/// This thread's CPU time (a shared machine's other work does not move it).
fn thread_cpu() -> std::time::Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to fill.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) }, 0);
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The DNSKEY records' data of `records` (what a secondary holds as the version served).
fn dnskeys_of(records: &[Owned]) -> Vec<Vec<u8>> {
    records.iter().filter(|(_, t, _, _)| *t == 48).map(|(_, _, _, d)| d.clone()).collect()
}

/// A million copies of one valid RRSIG cost one verification (copies count once); more
/// distinct signatures than [`SIGNATURES_PER_SET`] on a set, or a DNSKEY set past
/// [`DNSKEY_SET_MAX`], are refused by name before any is verified.
#[test]
fn copied_signatures_verify_once_and_too_many_are_refused() {
    let records = signed_zone(5, KeyAlgorithm::Ecdsa);
    let before = check_at(&records, NOW).unwrap().verified;
    let at = rrsig_of(&records, "n-1.c1.lct.internal.", 1);
    let mut copied = records.clone();
    copied.extend(std::iter::repeat_n(records[at].clone(), 100_000));
    assert_eq!(check_at(&copied, NOW).unwrap().verified, before, "the copies verified once");
    // Nine distinct signatures (expirations apart, so they differ): refused.
    let mut many = records.clone();
    for i in 0..SIGNATURES_PER_SET as u32 {
        let mut sig = records[at].clone();
        sig.3[8..12].copy_from_slice(&(NOW as u32 + 86_400 + i).to_be_bytes());
        many.push(sig);
    }
    let err = check_at(&many, NOW).unwrap_err().to_string();
    assert!(err.contains("n-1.c1.lct.internal. A: 9 RRSIGs, more than the 8"), "{err}");
    // 33 keys at the apex.
    let mut keys = records.clone();
    for i in 0..DNSKEY_SET_MAX as u8 {
        keys.push((owner(ZONE), 48, 300, vec![1, 0, 3, 15, i, 1, 2, 3]));
    }
    let err = check_at(&keys, NOW).unwrap_err().to_string();
    assert!(err.contains("DNSKEY: 33 keys in the DNSKEY set, more than the 32"), "{err}");
}

/// Key continuity: a version whose DNSKEY set is signed only by keys the secondary never
/// trusted (someone holding the transfer key signing a zone of their own) is refused; one
/// signed by a key of the version served now, or by a key a configured DS names, is taken;
/// the zone's first version (nothing to continue from) is taken on its own signatures.
#[test]
fn a_dnskey_set_signed_by_no_trusted_key_is_refused() {
    let served = signed_zone(5, KeyAlgorithm::Ecdsa);
    let foreign = signed_zone(5, KeyAlgorithm::Ecdsa);
    assert_ne!(dnskeys_of(&served), dnskeys_of(&foreign), "two keys");
    let from_served = Anchors { keys: dnskeys_of(&served), ds: Vec::new() };
    let with = |records: &[Owned], anchors: &Anchors| check(ZONE, 8, wire(records), &Scope::Whole, NOW, true, anchors);
    with(&served, &from_served).unwrap();
    let err = with(&foreign, &from_served).unwrap_err();
    assert_eq!((err.owner.as_str(), err.rtype.as_str()), (ZONE, "DNSKEY"));
    assert!(err.reason.contains("not signed by a key of the version served now"), "{err}");
    // An incremental transfer's narrow scope checks it too (the apex's DNSKEY set always).
    let narrow = Scope::Owners(HashSet::from([owner("n-1.c1.lct.internal.")]));
    assert!(check(ZONE, 8, wire(&foreign), &narrow, NOW, true, &from_served).is_err());
    // The first version: nothing to continue from.
    with(&foreign, &Anchors::default()).unwrap();
    // A DS naming the foreign key (a key rollover the parent already knows) lets it in.
    let key = &dnskeys_of(&foreign)[0];
    let tag = hickory_proto::dnssec::rdata::DNSKEY::calculate_key_tag_internal(key);
    let digest = ring::digest::digest(&ring::digest::SHA256, &[owner(ZONE), key.clone()].concat());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    let ds = parse_ds(&format!("{tag} 13 2 {hex}")).unwrap();
    with(&foreign, &Anchors { keys: dnskeys_of(&served), ds: vec![ds.clone()] }).unwrap();
    let err = with(&served, &Anchors { keys: Vec::new(), ds: vec![ds] }).unwrap_err();
    assert!(err.reason.contains("a key the configured DS names"), "{err}");
}

#[test]
fn a_ds_is_read_from_its_presentation_form_or_refused_by_field() {
    let hex = "AB".repeat(32);
    let ds = parse_ds(&format!("60485 13 2 {} {}", &hex[..32], &hex[32..])).unwrap();
    assert_eq!(&ds[..4], &[0xec, 0x45, 13, 2]);
    assert_eq!(ds.len(), 36);
    for (bad, why) in [
        ("60485 13 2", "not 32 bytes"),
        ("60485 13 1 ABCD", "digest type 1"),
        ("70000 13 2 AB", "key tag \"70000\""),
        (&format!("1 13 2 {}", "G".repeat(64)), "hexadecimal"),
        ("", "no key tag"),
    ] {
        let e = parse_ds(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

/// A zone of one name, its apex, signed by hand with an Ed25519 key whose DNSKEY has
/// `flags`; `labels` overrides the RRSIG labels of the SOA's signature.
fn hand_signed(flags: u16, soa_labels: Option<u8>) -> Vec<Owned> {
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let key = Ed25519KeyPair::from_seed_unchecked(&lct_core::random::bytes::<32>().unwrap()).unwrap();
    let dnskey = [&flags.to_be_bytes()[..], &[3, 15], key.public_key().as_ref()].concat();
    let tag = hickory_proto::dnssec::rdata::DNSKEY::calculate_key_tag_internal(&dnskey);
    let apex = owner(ZONE);
    // The apex's types: SOA (6), RRSIG (46), NSEC (47), DNSKEY (48).
    let mut bitmap = vec![0u8, 7, 0, 0, 0, 0, 0, 0, 0];
    for t in [6u16, 46, 47, 48] {
        bitmap[2 + (t / 8) as usize] |= 0x80 >> (t % 8);
    }
    let soa = [&apex[..], &apex[..], &[0, 0, 0, 7, 0, 0, 14, 16, 0, 0, 2, 88, 0, 18, 117, 0, 0, 0, 1, 44]].concat();
    let sets: Vec<(u16, Vec<u8>)> = vec![(6, soa), (48, dnskey), (47, [apex.clone(), bitmap].concat())];
    let mut out = Vec::new();
    for (rtype, data) in sets {
        let labels = if rtype == 6 { soa_labels.unwrap_or(2) } else { 2 };
        let mut head = rtype.to_be_bytes().to_vec();
        head.extend_from_slice(&[15, labels]);
        head.extend_from_slice(&300u32.to_be_bytes());
        head.extend_from_slice(&(NOW as u32 + 86_400).to_be_bytes());
        head.extend_from_slice(&(NOW as u32 - 3_600).to_be_bytes());
        head.extend_from_slice(&tag.to_be_bytes());
        head.extend_from_slice(&apex);
        let record = WireRecord { name: &apex, rtype, ttl: 300, rdata: &data };
        // What the RRSIG signs, as a signer that takes `labels` at its word builds it.
        let signed_owner = if labels < 2 { [&[1, b'*'][..], &apex[4..]].concat() } else { apex.clone() };
        let set = [record];
        let signed = Canonical::new(&signed_owner, rtype, &set).signed_data(&head, 300);
        let sig = [head, key.sign(&signed).as_ref().to_vec()].concat();
        out.push((apex.clone(), rtype, 300, data.clone()));
        out.push((apex.clone(), 46, 300, sig));
    }
    out
}

/// A key with the REVOKE flag verifies nothing (RFC 5011): the zone it alone signs is
/// refused; the same key without the flag passes.
#[test]
fn a_revoked_key_verifies_nothing() {
    check_at(&hand_signed(0x0101, None), NOW).unwrap();
    let err = check_at(&hand_signed(0x0181, None), NOW).unwrap_err().to_string();
    assert!(err.contains("lct.internal. DNSKEY") && err.contains("1 revoked, which verify nothing"), "{err}");
}

/// An RRSIG whose labels field is fewer than its owner's (a wildcard expansion, which a
/// zone's own records never are) is refused, though it verifies over the `*` name it
/// claims: signed for `*.internal.`, it must not prove `lct.internal.`.
#[test]
fn an_rrsig_whose_labels_differ_from_its_owner_is_refused() {
    let err = check_at(&hand_signed(0x0101, Some(1)), NOW).unwrap_err().to_string();
    assert!(err.contains("lct.internal. SOA") && err.contains("has labels 1, but its owner has 2"), "{err}");
    let err = check_at(&hand_signed(0x0101, Some(3)), NOW).unwrap_err().to_string();
    assert!(err.contains("has labels 3"), "{err}");
}

/// A signed zone must have its NSEC chain (none at all was passed unchecked), and each
/// NSEC's bitmap must name the types at its owner: one that leaves out the A set at its
/// name, or names an AAAA it does not have, is refused (checked on the chain alone, as a
/// primary could sign such a bitmap).
#[test]
fn a_signed_zone_needs_nsec_with_true_type_bitmaps() {
    let records = signed_zone(5, KeyAlgorithm::Ecdsa);
    let no_nsec: Vec<Owned> = records
        .iter()
        .filter(|(_, t, _, d)| *t != 47 && !(*t == 46 && u16::from_be_bytes([d[0], d[1]]) == 47))
        .cloned()
        .collect();
    let err = check_at(&no_nsec, NOW).unwrap_err().to_string();
    assert!(err.contains("lct.internal. NSEC: a signed zone without NSEC records"), "{err}");

    let name = owner("n-2.c2.lct.internal.");
    let nsec = records.iter().position(|(o, t, _, _)| *o == name && *t == 47).unwrap();
    let next_len = name_len(&records[nsec].3).unwrap();
    let listed = type_bitmap(&records[nsec].3[next_len..]).unwrap();
    assert_eq!(listed, HashSet::from([1, 46, 47]), "A, RRSIG, NSEC at a node's name");
    // The bitmap rewritten: A left out; AAAA (28) named too.
    let bitmap = |types: &[u16]| {
        let mut bytes = vec![0u8; 6];
        for t in types {
            bytes[*t as usize / 8] |= 0x80 >> (t % 8);
        }
        [vec![0, 6], bytes].concat()
    };
    for (types, why) in [(&[46u16, 47][..], "leaves out A present"), (&[1, 28, 46, 47][..], "names AAAA")] {
        let mut changed = records.clone();
        changed[nsec].3 = [records[nsec].3[..next_len].to_vec(), bitmap(types)].concat();
        let wired = wire(&changed);
        let mut sets: HashMap<(&[u8], u16), Vec<WireRecord>> = HashMap::new();
        let mut order = Vec::new();
        for r in wired.iter().filter(|r| r.rtype != 46) {
            let set = sets.entry((r.name, r.rtype)).or_default();
            if set.is_empty() {
                order.push((r.name, r.rtype));
            }
            set.push(*r);
        }
        let (at, reason) = check_chain(&sets, &order, &owner(ZONE), &|_| false, &|_| false).unwrap_err();
        assert_eq!(at, name);
        assert!(reason.contains(why), "{reason}");
    }
    // An incremental transfer that adds an AAAA at a name, its NSEC left as it was: the
    // touched name's bitmap is checked too (before its signatures).
    let mut added = records.clone();
    added.push((name.clone(), 28, 300, vec![0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
    let touched = Scope::Owners(HashSet::from([name.clone()]));
    let err = check(ZONE, 8, wire(&added), &touched, NOW, true, &Anchors::default()).unwrap_err();
    assert_eq!((err.owner.as_str(), err.rtype.as_str()), ("n-2.c2.lct.internal.", "NSEC"));
    assert!(err.reason.contains("leaves out AAAA present"), "{err}");
    // Malformed: a window of length 0, windows out of order, bytes cut short.
    for bad in [&[0u8, 0][..], &[1, 1, 0x40, 0, 1, 0x40], &[0, 4, 0]] {
        assert!(type_bitmap(bad).is_none(), "{bad:?}");
    }
}
