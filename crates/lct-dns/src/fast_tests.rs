//! Tests of [`crate::fast`]: tables from the wire and from text, truncation, negative
//! answers, wildcard owners refused, unusual messages left to the slow path.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::*;
use crate::mode::ZoneMode;
use crate::tables::Builder;
use crate::zone::fixtures::{rec, zone};
use crate::zone::{DnsRecord, View};

fn query(name: &str, rtype: RecordType, payload: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(p) = payload {
        let mut e = Edns::new();
        e.set_max_payload(p);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn split(_: &str) -> ZoneMode {
    ZoneMode::Split
}

/// A zone with a name of 100 addresses: 1,600 bytes of answers and more.
fn big_zone() -> Vec<DnsRecord> {
    let mut records = zone();
    for i in 0..100 {
        records.push(rec("many.lct.internal.", RecordType::A, &format!("192.168.1.{i}")));
    }
    records
}

/// A zone read off a transfer's message builds the same tables as its text does.
#[test]
fn tables_from_the_wire_equal_tables_from_text() {
    let mut records = big_zone();
    records.push(rec("_zk._tcp.lct.internal.", RecordType::SRV, "0 10 2181 a.zk.lct.internal."));
    records.push(rec("zk.lct.internal.", RecordType::NS, "a.zk.lct.internal."));
    records.push(rec("a.zk.lct.internal.", RecordType::AAAA, "fd00::1"));
    // As a transfer sends them: the SOA first and last.
    let soa = records.iter().position(|r| r.rtype == RecordType::SOA).unwrap();
    records.swap(0, soa);
    let mut from_text = Builder::new(&split, 16);
    for r in &records {
        // (Off the wire every record is seen in both views; the mode decides.)
        from_text.add(&DnsRecord { view: View::Both, ..r.clone() }).unwrap();
    }
    let mut m = Message::new(1, MessageType::Response, OpCode::Query);
    for r in records.iter().chain(std::iter::once(&records[0])) {
        m.add_answer(crate::wire::to_wire(r).unwrap());
    }
    let bytes = m.to_vec().unwrap();
    let mut batch = crate::wire::WireBatch::default();
    assert!(crate::wire::read_answers(&bytes, &mut 0, &mut batch).unwrap().closed);
    let mut from_wire = Builder::new(&split, 16);
    for r in batch.iter() {
        from_wire.add_wire("lct.internal.", &r).unwrap();
    }
    let (text, wire) = (from_text.finish().dump(), from_wire.finish().dump());
    assert_eq!(text.len(), wire.len());
    assert!(text == wire, "the tables differ");
}

#[test]
fn answers_too_big_for_udp_are_truncated_and_whole_over_tcp() {
    let answers = Answers::new(&big_zone(), &split).unwrap();
    for payload in [None, Some(4096)] {
        let reply = answers.answer(&query("many.lct.internal.", RecordType::A, payload), true, false).unwrap();
        let m = Message::from_vec(&reply).unwrap();
        assert!(m.metadata.truncation, "{payload:?}");
        assert!(m.answers.is_empty());
        assert!(reply.len() <= 512);
        if payload.is_some() {
            // Our OPT offers 1232, whatever the client offered.
            assert_eq!(m.edns.as_ref().unwrap().max_payload(), UDP_PAYLOAD_MAX);
        }
    }
    let reply = answers.answer(&query("many.lct.internal.", RecordType::A, None), true, true).unwrap();
    let m = Message::from_vec(&reply).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
}

#[test]
fn negative_answers_carry_the_soa_capped_by_its_minimum() {
    let mut records = zone();
    records[0].ttl = 3600; // the SOA; its minimum is 300
    let answers = Answers::new(&records, &split).unwrap();
    let reply = answers.answer(&query("nope.lct.internal.", RecordType::A, None), true, false).unwrap();
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].name, Name::from_ascii("lct.internal.").unwrap());
    assert_eq!(m.authorities[0].ttl, 300);
    // NODATA: the name exists (and `zk.lct.internal.` between it and the apex).
    for name in ["a.zk.lct.internal.", "zk.lct.internal."] {
        let reply = answers.answer(&query(name, RecordType::MX, None), true, false).unwrap();
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.answers.is_empty() && m.authorities.len() == 1, "{name}");
    }
    // Outside our zones: refused, not authoritative.
    let reply = answers.answer(&query("example.com.", RecordType::A, None), true, false).unwrap();
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
}

/// A wildcard owner is refused, naming the record, from text and off the wire.
#[test]
fn wildcard_owners_are_refused_naming_the_record() {
    let mut records = zone();
    records.push(rec("*.x.lct.internal.", RecordType::A, "192.168.1.1"));
    let e = Answers::new(&records, &split).err().expect("refused").to_string();
    assert!(e.contains("*.x.lct.internal.") && e.contains("wildcard"), "{e}");
    let mut m = Message::new(1, MessageType::Response, OpCode::Query);
    for r in &records {
        m.add_answer(crate::wire::to_wire(r).unwrap());
    }
    let mut batch = crate::wire::WireBatch::default();
    crate::wire::read_answers(&m.to_vec().unwrap(), &mut 0, &mut batch).unwrap();
    let mut builder = Builder::new(&split, 16);
    let e = batch.iter().find_map(|r| builder.add_wire("lct.internal.", &r).err()).expect("refused").to_string();
    assert!(e.contains("*.x.lct.internal.") && e.contains("wildcard"), "{e}");
    // A `*` inside a label is a plain name.
    records.pop();
    records.push(rec("a*b.lct.internal.", RecordType::A, "192.168.1.1"));
    assert!(Answers::new(&records, &split).is_ok());
}

#[test]
fn unusual_messages_go_to_the_slow_path() {
    let answers = Answers::new(&zone(), &split).unwrap();
    assert!(answers.answer(&query("lct.internal.", RecordType::AXFR, None), true, false).is_none());
    assert!(answers.answer(&query("lct.internal.", RecordType::IXFR, None), true, false).is_none());
    // EDNS version 1: BADVERS is the runtime's to say.
    let mut packet = query("a.zk.lct.internal.", RecordType::A, Some(1232));
    let n = packet.len();
    packet[n - 5] = 1;
    assert!(answers.answer(&packet, true, false).is_none());
    // An OPT whose options run past its end.
    let mut packet = query("a.zk.lct.internal.", RecordType::A, Some(1232));
    let n = packet.len();
    packet[n - 1] = 4;
    packet.extend_from_slice(&[0, 10, 0, 9]);
    assert!(answers.answer(&packet, true, false).is_none());
    // A response, or a message cut short.
    let mut packet = query("a.zk.lct.internal.", RecordType::A, None);
    packet[2] |= 0x80;
    assert!(answers.answer(&packet, true, false).is_none());
    let packet = query("a.zk.lct.internal.", RecordType::A, None);
    assert!(answers.answer(&packet[..packet.len() - 1], true, false).is_none());
}
