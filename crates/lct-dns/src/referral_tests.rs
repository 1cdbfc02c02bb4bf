//! Tests of [`crate::referral`]: the four queries at and below a delegation of a signed
//! zone (review H4), DS at the cut, the cut's NSEC bitmap, an unsigned zone, a DS present.

use std::collections::BTreeMap;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::fast::Answers;
use crate::mode::ZoneMode;
use crate::sign::{Dnssec, Timers};
use crate::zone::fixtures::{rec, zone};
use crate::zone::{DnsRecord, View};
use crate::zonekeys::KeyAlgorithm;

const NOW: u64 = 1_800_000_000;

fn split(_: &str) -> ZoneMode {
    ZoneMode::Split
}

/// The fixture zone with `sub.lct.internal` delegated: its NS, glue below it and glue at
/// the cut's own name.
fn delegated() -> Vec<DnsRecord> {
    let mut records = zone();
    records.push(rec("sub.lct.internal.", RecordType::NS, "ns.sub.lct.internal."));
    records.push(rec("ns.sub.lct.internal.", RecordType::A, "10.0.0.53"));
    records.push(rec("sub.lct.internal.", RecordType::A, "10.0.0.54"));
    records
}

fn signed(records: &[DnsRecord]) -> (Answers, impl Sized + use<>) {
    let dir = lct_core::fsutil::temp_dir("lct-dns-referral").unwrap();
    let key = crate::keyroll::load_or_create_csk(dir.path(), "lct.internal.", KeyAlgorithm::Ecdsa, NOW).unwrap();
    let dnssec = Dnssec::new(BTreeMap::from([("lct.internal.".to_string(), key)]), Timers::default());
    let mut answers = Answers::new(records, &split).unwrap();
    dnssec.sign_at(&mut answers, NOW).unwrap();
    (answers, dir)
}

fn ask(answers: &Answers, name: &str, rtype: RecordType, dnssec_ok: bool) -> Message {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.set_dnssec_ok(dnssec_ok);
    m.set_edns(e);
    Message::from_vec(&answers.answer(&m.to_vec().unwrap(), false, false).unwrap()).unwrap()
}

fn types(records: &[Record]) -> Vec<RecordType> {
    records.iter().map(Record::record_type).collect()
}

fn cut() -> Name {
    Name::from_ascii("sub.lct.internal.").unwrap()
}

/// A referral: NOERROR, not authoritative, nothing in the answer section, the cut's NS
/// (and `proof`) in authority, owned by the cut, the glue in additional.
fn assert_referral(m: &Message, proof: &[RecordType], what: &str) {
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{what}: {m:?}");
    assert!(!m.metadata.authoritative, "{what}: AA set");
    assert!(m.answers.is_empty(), "{what}: answers {:?}", m.answers);
    let mut want = vec![RecordType::NS];
    want.extend_from_slice(proof);
    assert_eq!(types(&m.authorities), want, "{what}");
    assert!(m.authorities.iter().all(|r| r.name == cut()), "{what}: owners {:?}", m.authorities);
    let glue: Vec<String> = m.additionals.iter().map(|r| format!("{} {:?}", r.name, r.data)).collect();
    assert!(glue.iter().any(|g| g.contains("ns.sub.lct.internal.") && g.contains("10.0.0.53")), "{what}: {glue:?}");
}

#[test]
fn names_at_and_below_a_delegation_get_referrals_with_the_proof_of_no_ds() {
    let (answers, _dir) = signed(&delegated());
    let no_ds = [RecordType::NSEC, RecordType::RRSIG];
    // The four queries of the review: none answered with authority.
    for (name, rtype) in [
        ("sub.lct.internal.", RecordType::NS),
        ("ns.sub.lct.internal.", RecordType::A),
        ("sub.lct.internal.", RecordType::MX),
        ("x.sub.lct.internal.", RecordType::A),
        ("SUB.lct.internal.", RecordType::A),
    ] {
        let m = ask(&answers, name, rtype, true);
        assert_referral(&m, &no_ds, &format!("{name} {rtype}"));
        // The NSEC is the cut's, with NS but neither SOA nor the glue's A (RFC 4035 2.3).
        let nsec = m.authorities.iter().find(|r| r.record_type() == RecordType::NSEC).unwrap();
        let RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::NSEC(nsec)) = &nsec.data else { panic!() };
        let bits: Vec<RecordType> = nsec.type_bit_maps().collect();
        assert_eq!(bits, [RecordType::NS, RecordType::RRSIG, RecordType::NSEC], "{name}");
        // Without the DO bit: no proof.
        assert_referral(&ask(&answers, name, rtype, false), &[], &format!("{name} {rtype} without DO"));
    }
    // DS at the cut is the parent's: authoritative NODATA, proven by the cut's NSEC.
    let m = ask(&answers, "sub.lct.internal.", RecordType::DS, true);
    assert!(m.metadata.authoritative && m.answers.is_empty(), "{m:?}");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.authorities.iter().any(|r| r.record_type() == RecordType::NSEC && r.name == cut()), "{m:?}");
    // DS below the cut is the child's business: a referral.
    assert_referral(&ask(&answers, "x.sub.lct.internal.", RecordType::DS, true), &no_ds, "DS below");
    // Names beside the cut are answered as before.
    let m = ask(&answers, "a.zk.lct.internal.", RecordType::A, true);
    assert!(m.metadata.authoritative && types(&m.answers).contains(&RecordType::RRSIG), "{m:?}");
}

#[test]
fn a_signed_ds_at_the_cut_goes_with_the_referral() {
    let mut records = delegated();
    // A DS for the child (as a secondary's copy of a signed zone carries it).
    let ds = "\\# 36 30390d02".to_string() + &"ab".repeat(32);
    records.push(DnsRecord { view: View::Both, ..rec("sub.lct.internal.", RecordType::DS, &ds) });
    let (answers, _dir) = signed(&records);
    assert_referral(
        &ask(&answers, "www.sub.lct.internal.", RecordType::A, true),
        &[RecordType::DS, RecordType::RRSIG],
        "with a DS",
    );
    let m = ask(&answers, "sub.lct.internal.", RecordType::DS, true);
    assert!(m.metadata.authoritative, "{m:?}");
    assert_eq!(types(&m.answers), [RecordType::DS, RecordType::RRSIG]);
}

#[test]
fn an_unsigned_zone_refers_too() {
    let answers = Answers::new(&delegated(), &split).unwrap();
    for dnssec_ok in [false, true] {
        assert_referral(&ask(&answers, "deep.x.sub.lct.internal.", RecordType::AAAA, dnssec_ok), &[], "unsigned");
    }
    // A zone without cuts answers as ever.
    let plain = Answers::new(&zone(), &split).unwrap();
    assert!(plain.cuts.is_empty());
    let m = ask(&plain, "x.sub.lct.internal.", RecordType::A, false);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}
