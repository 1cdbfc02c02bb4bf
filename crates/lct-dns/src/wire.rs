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
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        other => {
            let mut data = other.to_string();
            data.make_ascii_lowercase();
            data
        }
    };
    let mut name = record.name.to_string();
    name.make_ascii_lowercase();
    Some(DnsRecord { zone: zone.to_string(), name, rtype, ttl: record.ttl, data, view: View::Both })
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
