//! `dns-record` records and the wire: conversion both ways, the identity two records are
//! compared by, and SOA serials.

use std::net::IpAddr;

use hickory_proto::rr::{Name, RData, Record};

use crate::zone::{DnsRecord, RecordType, View, supported};

/// A record's identity for comparisons: name and data in lower case, addresses in their
/// canonical form.
pub(crate) fn normal(name: &str, rtype: RecordType, data: &str) -> (String, RecordType, String) {
    let data = match rtype {
        RecordType::A | RecordType::AAAA => data.parse::<IpAddr>().map_or(data.to_string(), |a| a.to_string()),
        _ => data.to_ascii_lowercase(),
    };
    (name.to_ascii_lowercase(), rtype, data)
}

/// A wire record as a `dns-record` of `zone` (its view assigned later).
pub(crate) fn from_wire(zone: &str, record: &Record) -> Option<DnsRecord> {
    let rtype = supported(record.record_type())?;
    // As `normal` has them (addresses print canonical), without parsing them back.
    let data = match &record.data {
        RData::A(a) => ipv4_text(a.0),
        RData::AAAA(a) => a.0.to_string(),
        other => {
            let mut data = other.to_string();
            data.make_ascii_lowercase();
            data
        }
    };
    Some(DnsRecord {
        zone: zone.to_string(),
        name: name_text(&record.name),
        rtype,
        ttl: record.ttl,
        data,
        view: View::Both,
    })
}

/// A name as text, lower case, fully qualified. Names of plain labels (letters, digits, `-`,
/// `_`: every name lct makes) are written straight from their labels; others go through
/// hickory's printing, which escapes what needs it. (A big transfer has hundreds of
/// thousands of names: hickory's printing was a fifth of reading one.)
pub(crate) fn name_text(name: &Name) -> String {
    let plain = name.iter().all(|l| l.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')));
    if !plain || name.is_root() {
        let mut text = name.to_string();
        text.make_ascii_lowercase();
        return text;
    }
    let mut text = String::with_capacity(name.len() + 1);
    for label in name.iter() {
        text.extend(label.iter().map(|b| b.to_ascii_lowercase() as char));
        text.push('.');
    }
    text
}

/// An IPv4 address as text, without the formatting machinery (hundreds of thousands of
/// them in a big transfer).
fn ipv4_text(a: std::net::Ipv4Addr) -> String {
    let mut text = String::with_capacity(15);
    for (i, octet) in a.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push((b'0' + octet / 100) as char);
        }
        if octet >= 10 {
            text.push((b'0' + octet / 10 % 10) as char);
        }
        text.push((b'0' + octet % 10) as char);
    }
    text
}

/// A `dns-record` on the wire.
pub fn to_wire(record: &DnsRecord) -> Result<Record, String> {
    let name = Name::from_ascii(&record.name).map_err(|e| format!("{}: {e}", record.name))?;
    let data = RData::try_from_str(record.rtype, &record.data)
        .map_err(|e| format!("{} {:?} {:?}: {e}", record.name, record.rtype, record.data))?;
    Ok(Record::from_rdata(name, record.ttl, data))
}

/// The SOA serial of `zone` among `records`.
pub fn serial_of(records: &[DnsRecord], zone: &str) -> Option<u32> {
    records.iter().find(|r| r.zone == zone && r.rtype == RecordType::SOA).and_then(|r| soa_serial(&r.data))
}

pub fn soa_serial(data: &str) -> Option<u32> {
    data.split_whitespace().nth(2)?.parse().ok()
}

pub(crate) fn normal_with_ttl(r: &DnsRecord) -> (String, RecordType, String, u32) {
    let (n, t, d) = normal(&r.name, r.rtype, &r.data);
    (n, t, d, r.ttl)
}

#[cfg(test)]
mod text_tests {
    use super::*;

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
}
