//! `dns-record` records and the wire: conversion both ways, names in wire form, the identity
//! two records are compared by, and SOA serials.

use std::net::IpAddr;

use hickory_proto::rr::{Name, RData, Record};

use crate::zone::{DnsRecord, RecordType, View, is_dnssec, kept, supported};

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

/// Records read straight off a message, one after another in one buffer: each is its owner
/// name (in wire form, lower case, uncompressed), type, TTL, data length and data (names
/// inside written out in full, lower case). A big transfer is read into these without a
/// parsed message or any text; [`WireRecord::to_text`] makes `dns-record`s when needed.
#[derive(Debug, Default, Clone)]
pub struct WireBatch {
    bytes: Vec<u8>,
    count: usize,
}

/// One record of a [`WireBatch`].
#[derive(Debug, Clone, Copy)]
pub struct WireRecord<'a> {
    pub name: &'a [u8],
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: &'a [u8],
}

impl WireBatch {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Its records as `dns-record`s of `zone` (types lct-dns does not keep left out).
    pub fn texts<'a>(&'a self, zone: &'a str) -> impl Iterator<Item = DnsRecord> + 'a {
        self.iter().filter_map(move |r| r.to_text(zone))
    }

    pub fn iter(&self) -> impl Iterator<Item = WireRecord<'_>> {
        let bytes = &self.bytes;
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= bytes.len() {
                return None;
            }
            let name_end = at + wire_name_len(&bytes[at..]);
            let fixed = &bytes[name_end..name_end + 8];
            let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
            let ttl = u32::from_be_bytes([fixed[2], fixed[3], fixed[4], fixed[5]]);
            let rdlen = u16::from_be_bytes([fixed[6], fixed[7]]) as usize;
            let record = WireRecord {
                name: &bytes[at..name_end],
                rtype,
                ttl,
                rdata: &bytes[name_end + 8..name_end + 8 + rdlen],
            };
            at = name_end + 8 + rdlen;
            Some(record)
        })
    }
}

/// The length of an uncompressed wire name at the start of `name` (this module wrote it).
fn wire_name_len(name: &[u8]) -> usize {
    let mut at = 0;
    while name[at] != 0 {
        at += 1 + name[at] as usize;
    }
    at + 1
}

/// Reads the name at `at` of `message` (following compression pointers, which must point
/// back) onto `out`, in lower case; returns where the name ends in place.
fn read_name(message: &[u8], mut at: usize, out: &mut Vec<u8>) -> Option<usize> {
    let start = out.len();
    let mut end = None;
    loop {
        let len = *message.get(at)? as usize;
        if len & 0xc0 == 0xc0 {
            let pointer = ((len & 0x3f) << 8) | *message.get(at + 1)? as usize;
            end.get_or_insert(at + 2);
            if pointer >= at {
                return None; // forward or self pointers could loop
            }
            at = pointer;
            continue;
        }
        if len > 63 {
            return None;
        }
        let label = message.get(at + 1..at + 1 + len)?;
        out.push(len as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
        if out.len() - start > 255 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            return Some(end.unwrap_or(at));
        }
    }
}

/// What [`read_answers`] found in a message.
#[derive(Debug, Default)]
pub(crate) struct Answered {
    /// Records of types lct-dns does not keep, left out.
    pub skipped: usize,
    /// The answer's closing SOA (the second SOA of a transfer) was seen: the records after
    /// it, and it, are not taken.
    pub closed: bool,
}

/// Appends the answer records of `message` (a transfer's) to `out`, until the closing SOA
/// (`soas` counts SOAs across the transfer's messages); an error names what is malformed.
pub(crate) fn read_answers(message: &[u8], soas: &mut u32, out: &mut WireBatch) -> Result<Answered, &'static str> {
    read_records(message, Some(soas), out)
}

/// Appends every answer record of `message` to `out`, SOAs and all (an IXFR's, whose
/// SOAs mark where each change starts).
pub(crate) fn read_all_answers(message: &[u8], out: &mut WireBatch) -> Result<Answered, &'static str> {
    read_records(message, None, out)
}

/// The DNSSEC types, as numbers, whose data is copied as it came: they hold no compressed
/// names (RFC 4034 forbids it), and the names they hold are kept in their case (an NSEC's
/// next name is signed as it is written, RFC 6840 section 5.1).
fn is_dnssec_number(rtype: u16) -> bool {
    matches!(rtype, 43 | 46 | 47 | 48 | 59 | 60)
}

/// [`read_answers`] (`soas` given: stops at the closing SOA) or [`read_all_answers`].
fn read_records(message: &[u8], mut soas: Option<&mut u32>, out: &mut WireBatch) -> Result<Answered, &'static str> {
    let count = |i: usize| u16::from_be_bytes([message[i], message[i + 1]]) as usize;
    if message.len() < 12 {
        return Err("a message shorter than its header");
    }
    let mut at = 12;
    let mut scratch = Vec::with_capacity(256);
    for _ in 0..count(4) {
        scratch.clear();
        at = read_name(message, at, &mut scratch).ok_or("a malformed question")? + 4;
    }
    let mut answered = Answered::default();
    for _ in 0..count(6) {
        let start = out.bytes.len();
        at = read_name(message, at, &mut out.bytes).ok_or("a malformed owner name")?;
        let fixed = message.get(at..at + 10).ok_or("a truncated record")?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let rdata_at = at + 10;
        let rdata_end = rdata_at + rdlen;
        let rdata = message.get(rdata_at..rdata_end).ok_or("a truncated record")?;
        at = rdata_end;
        if rtype == 6
            && let Some(soas) = soas.as_deref_mut()
        {
            *soas += 1;
            if *soas == 2 {
                out.bytes.truncate(start);
                answered.closed = true;
                return Ok(answered);
            }
        }
        out.bytes.extend_from_slice(&fixed[..2]);
        out.bytes.extend_from_slice(&fixed[4..8]);
        let length_at = out.bytes.len();
        out.bytes.extend_from_slice(&[0, 0]);
        let data_start = out.bytes.len();
        let names_end = |out: &mut Vec<u8>, from: usize, names: usize| -> Option<usize> {
            let mut at = from;
            for _ in 0..names {
                at = read_name(message, at, out)?;
            }
            Some(at)
        };
        let well_formed = match rtype {
            1 => rdlen == 4,
            28 => rdlen == 16,
            // NS, PTR: a name.
            2 | 12 => names_end(&mut out.bytes, rdata_at, 1) == Some(rdata_end),
            // SRV: priority, weight, port, target.
            33 => {
                out.bytes.extend_from_slice(rdata.get(..6).ok_or("a truncated SRV")?);
                names_end(&mut out.bytes, rdata_at + 6, 1) == Some(rdata_end)
            }
            // SOA: two names, five numbers.
            6 => match names_end(&mut out.bytes, rdata_at, 2) {
                Some(end) if end + 20 == rdata_end => {
                    out.bytes.extend_from_slice(&message[end..rdata_end]);
                    true
                }
                _ => false,
            },
            t if is_dnssec_number(t) => {
                out.bytes.extend_from_slice(rdata);
                rdlen > 0
            }
            _ => {
                out.bytes.truncate(start);
                answered.skipped += 1;
                continue;
            }
        };
        if !well_formed {
            return Err("a record whose data does not match its type");
        }
        if matches!(rtype, 1 | 28) {
            out.bytes.extend_from_slice(rdata);
        }
        let written = out.bytes.len() - data_start;
        let written = u16::try_from(written).map_err(|_| "record data over 64 KiB")?;
        out.bytes[length_at..length_at + 2].copy_from_slice(&written.to_be_bytes());
        out.count += 1;
    }
    Ok(answered)
}

/// The TSIG record of a message, as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TsigSeen {
    /// The key's name and the algorithm's, in wire form, lower case.
    pub key: Vec<u8>,
    pub algorithm: Vec<u8>,
    pub time: u64,
    pub fudge: u16,
    pub mac: Vec<u8>,
    pub original_id: u16,
}

/// Reads the TSIG record that starts at `at` (the message's last record).
pub(crate) fn read_tsig(message: &[u8], at: usize) -> Option<TsigSeen> {
    let mut key = Vec::new();
    let at = read_name(message, at, &mut key)?;
    let fixed = message.get(at..at + 10)?;
    if u16::from_be_bytes([fixed[0], fixed[1]]) != 250 {
        return None;
    }
    let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
    let end = at + 10 + rdlen;
    let mut algorithm = Vec::new();
    let at = read_name(message, at + 10, &mut algorithm)?;
    let rest = message.get(at..end)?;
    let number = |i: usize, n: usize| rest.get(i..i + n).map(|b| b.iter().fold(0u64, |v, &x| (v << 8) | x as u64));
    let time = number(0, 6)?;
    let fudge = number(6, 2)? as u16;
    let mac_len = number(8, 2)? as usize;
    let mac = rest.get(10..10 + mac_len)?.to_vec();
    let original_id = number(10 + mac_len, 2)? as u16;
    Some(TsigSeen { key, algorithm, time, fudge, mac, original_id })
}

/// A wire name (uncompressed) as text, as [`name_text`] writes names.
pub(crate) fn wire_name_text(wire: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut at = 0;
    while at < wire.len() && wire[at] != 0 {
        let len = wire[at] as usize;
        labels.push(&wire[at + 1..at + 1 + len]);
        at += 1 + len;
    }
    let plain = labels.iter().all(|l| l.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')));
    if !plain || labels.is_empty() {
        return Name::from_labels(labels).map_or_else(|_| ".".to_string(), |n| name_text(&n));
    }
    let mut text = String::with_capacity(wire.len());
    for label in labels {
        text.extend(label.iter().map(|&b| b as char));
        text.push('.');
    }
    text
}

impl WireRecord<'_> {
    /// As a `dns-record` of `zone`: the same text [`from_wire`] makes of the parsed record.
    pub fn to_text(&self, zone: &str) -> Option<DnsRecord> {
        let rtype = kept(RecordType::from(self.rtype))?;
        let d = self.rdata;
        let number = |i: usize| u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
        let data = match rtype {
            RecordType::A => ipv4_text(std::net::Ipv4Addr::new(d[0], d[1], d[2], d[3])),
            RecordType::AAAA => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(d).ok()?).to_string(),
            RecordType::NS | RecordType::PTR => wire_name_text(d),
            RecordType::SRV => {
                let field = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
                format!("{} {} {} {}", field(0), field(2), field(4), wire_name_text(&d[6..]))
            }
            RecordType::SOA => {
                let mname = wire_name_len(d);
                let rname = mname + wire_name_len(&d[mname..]);
                let n = rname;
                // As hickory prints an SOA: refresh, retry and expire are signed there.
                format!(
                    "{} {} {} {} {} {} {}",
                    wire_name_text(&d[..mname]),
                    wire_name_text(&d[mname..rname]),
                    number(n),
                    number(n + 4) as i32,
                    number(n + 8) as i32,
                    number(n + 12) as i32,
                    number(n + 16)
                )
            }
            t if is_dnssec(t) => generic_text(d),
            _ => return None,
        };
        Some(DnsRecord {
            zone: zone.to_string(),
            name: wire_name_text(self.name),
            rtype,
            ttl: self.ttl,
            data,
            view: View::Both,
        })
    }
}

/// A `dns-record` on the wire.
pub fn to_wire(record: &DnsRecord) -> Result<Record, String> {
    let name = Name::from_ascii(&record.name).map_err(|e| format!("{}: {e}", record.name))?;
    let bad = |e: &dyn std::fmt::Display| format!("{} {:?} {:?}: {e}", record.name, record.rtype, record.data);
    let data = if is_dnssec(record.rtype) {
        // The exact bytes, read by hickory's own decoder (which checks them).
        let bytes = generic_bytes(&record.data).ok_or_else(|| bad(&"not RFC 3597's generic form"))?;
        let length = u16::try_from(bytes.len()).map_err(|e| bad(&e))?;
        let mut decoder = hickory_proto::serialize::binary::BinDecoder::new(&bytes);
        RData::read(&mut decoder, record.rtype, hickory_proto::serialize::binary::Restrict::new(length))
            .map_err(|e| bad(&e))?
    } else {
        RData::try_from_str(record.rtype, &record.data).map_err(|e| bad(&e))?
    };
    Ok(Record::from_rdata(name, record.ttl, data))
}

/// Record data in RFC 3597's generic form: `\# LENGTH HEX` (hex in lower case).
pub(crate) fn generic_text(data: &[u8]) -> String {
    let mut text = String::with_capacity(8 + 2 * data.len());
    text.push_str("\\# ");
    text.push_str(&data.len().to_string());
    if !data.is_empty() {
        text.push(' ');
    }
    for b in data {
        text.push(char::from_digit(u32::from(b >> 4), 16).expect("a nibble"));
        text.push(char::from_digit(u32::from(b & 0xf), 16).expect("a nibble"));
    }
    text
}

/// The bytes of data in RFC 3597's generic form (the hex may be split by spaces); `None`
/// if it is not in that form or its length is not the one it says.
pub(crate) fn generic_bytes(text: &str) -> Option<Vec<u8>> {
    let mut words = text.split_ascii_whitespace();
    if words.next()? != "\\#" {
        return None;
    }
    let length: usize = words.next()?.parse().ok()?;
    let hex: Vec<u8> = words.flat_map(str::bytes).collect();
    if hex.len() != 2 * length || length > u16::MAX as usize {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    hex.chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
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

/// Why an owner name cannot be served, if it cannot: a `*` label. lct-dns does not
/// synthesise answers from wildcards (RFC 4592), and a wildcard served as a plain name
/// answers what lies below it wrongly (NXDOMAIN where it should match) and, signed, with a
/// denial whose proof says the wildcard exists (bogus).
pub(crate) fn check_owner(name: &str) -> Result<(), &'static str> {
    if name.contains('*') && name.split('.').any(|label| label == "*") {
        return Err(
            "a wildcard owner (`*`): lct-dns does not synthesise answers from wildcards; give each name its records",
        );
    }
    Ok(())
}

/// [`check_owner`] of a wire name.
pub(crate) fn check_wire_owner(name: &[u8]) -> Result<(), &'static str> {
    let mut at = 0;
    while at < name.len() && name[at] != 0 {
        if name[at] == 1 && name.get(at + 1) == Some(&b'*') {
            return check_owner("*");
        }
        at += 1 + name[at] as usize;
    }
    Ok(())
}

/// Owner names in wire form, lower case: `3www7example3com0`.
pub(crate) fn wire_name(name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len() + 2);
    wire_name_into(name, &mut out).then_some(out)
}

/// [`wire_name`] appended to `out`; false (and `out` partly written) if it is not a name.
pub(crate) fn wire_name_into(name: &str, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let name = name.trim_end_matches('.');
    if !name.is_empty() {
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return false;
            }
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    out.len() - start <= 255
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod text_tests;
