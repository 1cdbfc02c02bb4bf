//! Tests of [`crate::wire`]: records off the wire as hickory reads them, DNSSEC records
//! byte for byte, malformed messages, TSIG, names and addresses.

use super::*;
use crate::zone::fixtures::rec;
use hickory_proto::op::{Message, MessageType, OpCode, Query};

/// A transfer-like message (compressed by hickory) of every kind of record lct-dns
/// keeps, mixed case, odd labels, and a type it does not keep.
fn message(records: &[DnsRecord]) -> Vec<u8> {
    let mut m = Message::new(9, MessageType::Response, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii("lct.internal.").unwrap(), RecordType::AXFR));
    for r in records {
        m.add_answer(to_wire(r).unwrap());
        if r.rtype == RecordType::AAAA {
            // Labels with a space and a byte above ASCII (printed escaped).
            let labels: [&[u8]; 4] = [b"x y", b"\xff", b"lct", b"internal"];
            let name = Name::from_labels(labels).unwrap();
            m.add_answer(Record::from_rdata(name, 60, RData::A("10.1.2.3".parse().unwrap())));
        }
    }
    m.add_answer(Record::from_rdata(
        Name::from_ascii("t.lct.internal.").unwrap(),
        60,
        RData::try_from_str(RecordType::TXT, "hello").unwrap(),
    ));
    m.to_vec().unwrap()
}

fn records() -> Vec<DnsRecord> {
    let mut odd = rec("x.lct.internal.", RecordType::A, "10.0.0.9");
    odd.name = r"a\.b.x_y.lct.internal.".into();
    vec![
        rec("lct.internal.", RecordType::SOA, "ns1.lct.internal. hostmaster.lct.internal. 7 3600 600 1209600 300"),
        rec("lct.internal.", RecordType::NS, "NS1.lct.internal."),
        rec("Zk-1.ZK.lct.internal.", RecordType::A, "192.168.128.1"),
        rec("zk-1.zk.lct.internal.", RecordType::AAAA, "2001:db8::1"),
        rec("_zk._tcp.zk.lct.internal.", RecordType::SRV, "0 10 2181 zk-1.zk.lct.internal."),
        rec("1.128.168.192.in-addr.arpa.", RecordType::PTR, "zk-1.zk.lct.internal."),
        odd,
        rec("lct.internal.", RecordType::SOA, "ns1.lct.internal. hostmaster.lct.internal. 7 3600 600 1209600 300"),
    ]
}

#[test]
fn records_read_off_the_wire_read_as_hickory_parses_them() {
    let bytes = message(&records());
    let parsed = Message::from_vec(&bytes).unwrap();
    // hickory's reading, up to the closing SOA, the TXT left out.
    let want: Vec<DnsRecord> =
        parsed.answers[..parsed.answers.len() - 2].iter().filter_map(|r| from_wire("lct.internal.", r)).collect();
    let mut soas = 0;
    let mut batch = WireBatch::default();
    let answered = read_answers(&bytes, &mut soas, &mut batch).unwrap();
    assert!(answered.closed);
    let got: Vec<DnsRecord> = batch.iter().filter_map(|r| r.to_text("lct.internal.")).collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 8);
    assert!(got.iter().any(|r| r.name.contains('\\')), "escaped: {got:?}");
    assert_eq!(got[2].name, "zk-1.zk.lct.internal.", "lower case");
    // In a message of its own, the TXT is skipped and counted; the SOA count goes on.
    let mut soas = 1;
    let mut batch = WireBatch::default();
    let answered = read_answers(&message(&records()[2..4]), &mut soas, &mut batch).unwrap();
    assert_eq!((answered.skipped, answered.closed, batch.len()), (1, false, 3));
}

/// A signed zone's DNSSEC records come off the wire as they were (bytes and case), as
/// RFC 3597 text that reads back to the same bytes and goes on the wire again.
#[test]
fn dnssec_records_are_kept_byte_for_byte() {
    // An NSEC whose next name has upper case (signed as written, RFC 6840 5.1).
    let nsec: &[u8] = b"\x01B\x03lct\x08internal\x00\x00\x06\x40\x01\x00\x00\x00\x03";
    let record = Record::from_rdata(
        Name::from_ascii("a.lct.internal.").unwrap(),
        300,
        RData::Unknown { code: RecordType::NSEC, rdata: hickory_proto::rr::rdata::NULL::with(nsec.to_vec()) },
    );
    let mut m = Message::new(9, MessageType::Response, OpCode::Query);
    m.add_answer(to_wire(&records()[0]).unwrap());
    m.add_answer(record);
    let bytes = m.to_vec().unwrap();
    let mut batch = WireBatch::default();
    let answered = read_all_answers(&bytes, &mut batch).unwrap();
    assert_eq!((answered.skipped, batch.len()), (0, 2));
    let kept = batch.iter().nth(1).unwrap();
    assert_eq!((kept.rtype, kept.rdata), (47, nsec));
    let text = kept.to_text("lct.internal.").unwrap();
    assert_eq!(text.rtype, RecordType::NSEC);
    assert!(text.data.starts_with("\\# 24 0142"), "{}", text.data);
    assert_eq!(generic_bytes(&text.data).unwrap(), nsec);
    assert_eq!(generic_bytes(&text.data.to_ascii_uppercase()).unwrap(), nsec);
    let back = to_wire(&text).unwrap();
    assert_eq!(back.record_type(), RecordType::NSEC);
    // Not the generic form, or a length that lies: refused.
    for bad in ["\\# 3 0102", "\\# 2 01 0", "01 02", "\\# x 00"] {
        assert!(generic_bytes(bad).is_none(), "{bad}");
    }
    // The state file reads the type back; a records file's reader knows it is DNSSEC.
    let line = serde_json::to_string(&text).unwrap();
    let read: DnsRecord = serde_json::from_str(&line).unwrap();
    assert_eq!(read, text);
    assert!(crate::zone::is_dnssec(read.rtype) && supported(read.rtype).is_none());
}

#[test]
fn malformed_messages_are_refused() {
    let bytes = message(&records()[..3]);
    let mut batch = WireBatch::default();
    for cut in [5, 30, bytes.len() - 3] {
        assert!(read_answers(&bytes[..cut], &mut 0, &mut batch).is_err(), "cut at {cut}");
    }
    // A compression pointer that points forward (or at itself) could loop.
    let mut looped = bytes.clone();
    let at = 12 + 14 + 4; // the first answer's owner, after the question
    looped[at] = 0xc0;
    looped[at + 1] = at as u8;
    assert!(read_answers(&looped, &mut 0, &mut WireBatch::default()).is_err());
    // A record whose length does not fit its type.
    let mut short = message(&[rec("a.lct.internal.", RecordType::A, "10.0.0.1")]);
    let a_at = short.windows(4).position(|w| w == [10, 0, 0, 1]).unwrap();
    short[a_at - 1] = 3; // rdlength 4 -> 3
    assert!(read_answers(&short, &mut 0, &mut WireBatch::default()).is_err());
}

#[test]
fn a_tsig_read_off_the_wire_is_the_one_hickory_reads() {
    let key = crate::tsig::Key::generate("xfr").unwrap();
    let mut m = Message::new(9, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii("lct.internal.").unwrap(), RecordType::AXFR));
    m.finalize(&key.signer(), 1_700_000_000).unwrap();
    let bytes = m.to_vec().unwrap();
    let at = crate::chain::last_record_at(&bytes).unwrap();
    let seen = read_tsig(&bytes, at).unwrap();
    let tsig = Message::from_vec(&bytes).unwrap().signature().unwrap().clone();
    assert_eq!(seen.key, wire_name(&name_text(&tsig.name)).unwrap());
    assert_eq!(seen.time, tsig.data.time);
    assert_eq!(seen.fudge, tsig.data.fudge);
    assert_eq!(seen.mac, tsig.data.mac);
    assert_eq!(seen.original_id, tsig.data.oid);
    assert!(read_tsig(&bytes, 12).is_none(), "not a TSIG there");
}

#[test]
fn names_and_addresses_read_as_hickory_prints_them() {
    let labels: [&[&[u8]]; 5] = [
        &[b"zk-1", b"ZK", b"lct", b"internal"],
        &[b"_zk", b"_tcp", b"lct", b"internal"],
        &[b"a.b", b"example"],
        &[b"x y", b"\xff", b"example"],
        &[],
    ];
    for l in labels {
        let name = Name::from_labels(l.iter().copied()).unwrap();
        assert_eq!(name_text(&name), name.to_string().to_ascii_lowercase(), "{name:?}");
    }
    for a in ["0.0.0.0", "10.9.99.100", "255.255.255.255", "192.168.128.7"] {
        let ip: std::net::Ipv4Addr = a.parse().unwrap();
        assert_eq!(ipv4_text(ip), ip.to_string());
    }
}
