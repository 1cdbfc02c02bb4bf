//! The UDP answer path. The common query — one question, class IN, type A or AAAA, for a
//! name that has those records — is answered from a table of precomputed answer records per
//! view, without parsing a full message or walking the zone. Everything else (other types,
//! names without such records, EDNS options, anything unusual) goes to hickory's catalog, so
//! the answers stay those of a complete authoritative server.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use crate::zone::{DnsRecord, RecordType, View};

/// Precomputed answer sections, keyed by [`key`]: the view, the type and the lower-case wire
/// name in one byte string, so a lookup borrows a reused buffer instead of allocating.
#[derive(Default)]
pub struct Answers {
    table: HashMap<Vec<u8>, Answer, BuildHasherDefault<Fnv>>,
}

/// FNV-1a: keys are short and come from our own zones' names; SipHash's flood resistance
/// buys nothing here and costs a third of a lookup.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// The table key: view (1 internal, 0 external), type (2 bytes), then the wire name.
fn key_into(buf: &mut Vec<u8>, internal: bool, qtype: u16) {
    buf.clear();
    buf.push(internal as u8);
    buf.extend_from_slice(&qtype.to_be_bytes());
}

struct Answer {
    count: u16,
    /// Answer records whose owner is a pointer to the question (offset 12).
    bytes: Vec<u8>,
}

/// Owner names in wire form, lower case: `3www7example3com0`.
fn wire_name(name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    Some(out)
}

impl Answers {
    /// From the records of both views; zones in `refused_outside` have no external answers,
    /// and `public_inside` zones answer inside as outside. (Only zones in split mode get
    /// here by default; see [`crate::server::Views`] for the modes.)
    pub fn new(records: &[DnsRecord], modes: &dyn Fn(&str) -> crate::server::ZoneMode) -> Answers {
        use crate::server::ZoneMode;
        let mut grouped: HashMap<Vec<u8>, (u16, Vec<&DnsRecord>)> = HashMap::new();
        for r in records {
            if !matches!(r.rtype, RecordType::A | RecordType::AAAA) {
                continue;
            }
            let rtype = u16::from(r.rtype);
            let Some(name) = wire_name(&r.name) else { continue };
            let mode = modes(&r.zone);
            for internal in [true, false] {
                let view = match (mode, internal) {
                    (ZoneMode::Split, true) | (ZoneMode::Private, true) => View::Internal,
                    (ZoneMode::Split, false) | (ZoneMode::Public, _) => View::External,
                    (ZoneMode::Private, false) => continue,
                };
                if r.view.includes(view) {
                    let mut key = Vec::with_capacity(name.len() + 3);
                    key_into(&mut key, internal, rtype);
                    key.extend_from_slice(&name);
                    grouped.entry(key).or_insert_with(|| (rtype, Vec::new())).1.push(r);
                }
            }
        }
        let mut table: HashMap<Vec<u8>, Answer, BuildHasherDefault<Fnv>> =
            HashMap::with_capacity_and_hasher(grouped.len(), Default::default());
        for (key, (rtype, list)) in grouped {
            let mut bytes = Vec::with_capacity(list.len() * 28);
            let mut count = 0u16;
            for r in list {
                let Ok(addr) = r.data.parse::<IpAddr>() else { continue };
                bytes.extend_from_slice(&[0xc0, 0x0c]);
                bytes.extend_from_slice(&rtype.to_be_bytes());
                bytes.extend_from_slice(&1u16.to_be_bytes());
                bytes.extend_from_slice(&r.ttl.to_be_bytes());
                match addr {
                    IpAddr::V4(a) => {
                        bytes.extend_from_slice(&4u16.to_be_bytes());
                        bytes.extend_from_slice(&a.octets());
                    }
                    IpAddr::V6(a) => {
                        bytes.extend_from_slice(&16u16.to_be_bytes());
                        bytes.extend_from_slice(&a.octets());
                    }
                }
                count += 1;
            }
            table.insert(key, Answer { count, bytes });
        }
        Answers { table }
    }

    /// The response to `query` if it is one the table answers; `None` sends it to hickory.
    pub fn answer(&self, query: &[u8], internal: bool) -> Option<Vec<u8>> {
        let mut key = Vec::with_capacity(64);
        let mut out = Vec::with_capacity(512);
        self.answer_into(query, internal, &mut key, &mut out).then_some(out)
    }

    /// [`Answers::answer`] into buffers the caller reuses; `false` when hickory must answer.
    pub fn answer_into(&self, query: &[u8], internal: bool, key: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
        self.try_answer(query, internal, key, out).is_some()
    }

    fn try_answer(&self, query: &[u8], internal: bool, key: &mut Vec<u8>, out: &mut Vec<u8>) -> Option<()> {
        if query.len() < 17 || query.len() > 512 {
            return None;
        }
        let flags = u16::from_be_bytes([query[2], query[3]]);
        // A query (QR=0), opcode QUERY, no TC; one question, nothing else but maybe an OPT.
        if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 || flags & 0x0200 != 0 {
            return None;
        }
        let counts = [
            u16::from_be_bytes([query[4], query[5]]),
            u16::from_be_bytes([query[6], query[7]]),
            u16::from_be_bytes([query[8], query[9]]),
            u16::from_be_bytes([query[10], query[11]]),
        ];
        if counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] > 1 {
            return None;
        }
        // The question name: plain labels only, lower-cased for the key (its type goes in
        // once read; the placeholder keeps the layout).
        let mut at = 12;
        key_into(key, internal, 0);
        loop {
            let len = *query.get(at)? as usize;
            if len == 0 {
                key.push(0);
                at += 1;
                break;
            }
            if len > 63 || at + 1 + len > query.len() || key.len() + len + 1 > 258 {
                return None;
            }
            key.push(len as u8);
            key.extend(query[at + 1..at + 1 + len].iter().map(|b| b.to_ascii_lowercase()));
            at += 1 + len;
        }
        let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
        let qclass = u16::from_be_bytes([*query.get(at + 2)?, *query.get(at + 3)?]);
        let question_end = at + 4;
        if qclass != 1 || !(qtype == 1 || qtype == 28) {
            return None;
        }
        key[1..3].copy_from_slice(&qtype.to_be_bytes());
        // An OPT record without options (EDNS0, version 0) is answered with one of ours.
        let edns = if counts[3] == 1 {
            let opt = query.get(question_end..)?;
            // root name, type 41, class = payload size, ttl = ext-rcode/version/flags, rdlen.
            if opt.len() != 11 || opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != 41 || opt[6] != 0 {
                return None;
            }
            if u16::from_be_bytes([opt[9], opt[10]]) != 0 {
                return None; // options (cookies, ...): hickory
            }
            Some(u16::from_be_bytes([opt[7], opt[8]]) & 0x8000) // DO bit
        } else if question_end != query.len() {
            return None;
        } else {
            None
        };
        let answer = self.table.get(key.as_slice())?;
        let limit = if edns.is_some() { 1232 } else { 512 };
        let size = question_end + answer.bytes.len() + if edns.is_some() { 11 } else { 0 };
        if size > limit {
            return None; // truncation is hickory's business
        }
        out.clear();
        out.extend_from_slice(&query[0..2]); // id
        // QR, AA, and RD copied; RA off; NOERROR.
        let rd = flags & 0x0100;
        out.extend_from_slice(&(0x8400 | rd).to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&answer.count.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&(if edns.is_some() { 1u16 } else { 0 }).to_be_bytes());
        out.extend_from_slice(&query[12..question_end]); // the question as asked (its case)
        out.extend_from_slice(&answer.bytes);
        if edns.is_some() {
            out.extend_from_slice(&[0, 0, 41]);
            out.extend_from_slice(&1232u16.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        Some(())
    }
}
