//! The UDP answer path: every ordinary query (one question, class IN, any type but the
//! transfers, with or without EDNS and its options) is answered from tables built once per
//! zone version, without parsing a full message or walking a zone: the records of each name
//! and type, ready to copy; which names exist (empty non-terminals too); each zone's negative
//! answer. Positive answers, NODATA and NXDOMAIN (with the SOA, RFC 2308), REFUSED outside
//! our zones, and truncation all cost a hash lookup or a few.
//!
//! Why not hickory's catalog for the rest: its in-memory zone answers a name it has no
//! records of by scanning every record key to tell NXDOMAIN from NODATA (an empty
//! non-terminal), about 1.5 ms a query with 10,000 names, so a random-subdomain flood took
//! the server down (docs/benchmarks.md). Updates, transfers, other classes and odd messages
//! still go to the runtime (the signed-request handler, then a full read), where their cost is bounded by
//! being rare or authenticated.

use std::collections::HashMap;

use crate::wire::wire_name;

/// Largest UDP answer whatever the client offers (the DNS flag day 2020 value): bigger
/// answers are truncated, so that none is fragmented.
pub const UDP_PAYLOAD_MAX: u16 = 1232;

/// foldhash, seeded per process from the system's random source (`keyed`): keys are short
/// (a view byte and a name) and a lookup hashes them a word at a time; the random seed means
/// a flood of names chosen to collide would have to guess it. (FNV, byte by byte, took a tenth of a big zone's build.)
type Table<V> = HashMap<Vec<u8>, V, crate::keyed::TableState>;

/// The records of one name and type, as answer records whose owner is a pointer to the
/// question (offset 12), and what goes with them in the additional section (the addresses
/// of NS and SRV targets we hold, owners written out).
#[derive(Default, Clone)]
pub(crate) struct RrSet {
    pub(crate) rtype: u16,
    pub(crate) count: u16,
    pub(crate) bytes: Vec<u8>,
    pub(crate) extra_count: u16,
    pub(crate) extra: Vec<u8>,
    /// Target names (NS, SRV) whose addresses go in the additional section.
    pub(crate) targets: Vec<Vec<u8>>,
    /// In a signed zone: the set's signatures (RRSIG records, owner a pointer to the
    /// question), copied after it when the query has the DO bit ([`crate::denial`]).
    pub(crate) sigs: Vec<u8>,
    pub(crate) sig_count: u16,
}

/// A zone as one view serves it: its SOA for negative answers (type, class, TTL, length and
/// data; the owner is a pointer into the question).
#[derive(Clone)]
pub(crate) struct Zone {
    pub(crate) soa: Vec<u8>,
    /// A secondary zone past its expire time: SERVFAIL for every name in it.
    pub(crate) expired: bool,
    /// A signed zone's proofs for negative answers ([`crate::denial`] makes them).
    pub(crate) denial: Option<Box<Denial>>,
}

/// What a signed zone answers negative queries with, in one view.
#[derive(Default, Clone)]
pub(crate) struct Denial {
    /// The SOA's signatures: type, class, TTL, length and data, the owner left for the
    /// answer to point at (as [`Zone::soa`]).
    pub(crate) soa_sigs: Vec<Vec<u8>>,
    /// The NSEC records in canonical order of their owners.
    pub(crate) chain: Vec<NsecEntry>,
}

/// An NSEC record and its signatures, owners written out, ready to copy.
#[derive(Clone, Default)]
pub(crate) struct NsecEntry {
    pub(crate) owner: Vec<u8>,
    pub(crate) bytes: Vec<u8>,
    pub(crate) count: u16,
}

/// The tables for both views. Keys start with the view (1 internal, 0 external) followed by
/// the lower-case wire name.
#[derive(Default)]
pub struct Answers {
    /// Each name's sets, shared between versions: a change makes a new version that holds
    /// the previous version's unchanged names ([`crate::patch`]), so an update copies a
    /// pointer per name, not its records.
    pub(crate) names: Table<std::sync::Arc<Vec<RrSet>>>,
    pub(crate) zones: Table<Zone>,
    /// The zone cuts (delegations) in each view ([`crate::referral`]).
    pub(crate) cuts: Table<()>,
    /// The names (keys) that are NS or SRV targets: their addresses are copied into other
    /// names' additional sections, so a change to them is not patched ([`crate::patch`]).
    pub(crate) targeted: Table<()>,
}

/// A set as [`Answers::dump`] lists it: key, type, count, bytes, extra count, extra bytes.
#[cfg(test)]
type DumpedSet = (Vec<u8>, u16, u16, Vec<u8>, u16, Vec<u8>);

#[cfg(test)]
impl Answers {
    /// Everything in the tables, sorted: for comparing two builds.
    fn dump(&self) -> Vec<DumpedSet> {
        let mut out: Vec<_> = self
            .names
            .iter()
            .flat_map(|(k, sets)| {
                sets.iter().map(|s| (k.clone(), s.rtype, s.count, s.bytes.clone(), s.extra_count, s.extra.clone()))
            })
            .chain(self.zones.iter().map(|(k, z)| (k.clone(), 6, 0, z.soa.clone(), 0, Vec::new())))
            .collect();
        out.sort();
        out
    }
}

/// What kind of answer was made, for rate limiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Answer,
    NoData,
    NxDomain,
    Refused,
}

/// An answer made by [`Answers::answer_into`].
#[derive(Debug, Clone)]
pub struct Outcome {
    pub class: Class,
    /// The question's type (for the statistics).
    pub qtype: u16,
    pub(crate) bucket: std::ops::Range<usize>,
    pub(crate) question_end: usize,
}

impl Outcome {
    /// The name the answer is counted under: the question's name and type for answers,
    /// the zone's apex for negative answers, nothing for refusals.
    pub fn bucket<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        &key[self.bucket.clone()]
    }

    /// Turns the answer in `out` into a truncated, empty one (RRL's "slip"): a real client
    /// retries over TCP, a spoofed victim gets no amplification.
    pub fn slip(&self, out: &mut Vec<u8>) {
        out.truncate(self.question_end);
        out[2] |= 0x02;
        out[6..12].fill(0);
    }
}

/// A table's key: the view byte, then the wire name.
pub(crate) fn keyed(internal: bool, wire: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(wire.len() + 1);
    key.push(internal as u8);
    key.extend_from_slice(wire);
    key
}

impl Answers {
    /// secondary stops answering for a zone it could not refresh within the SOA's expire).
    pub fn expire<'z>(&mut self, zones: impl Iterator<Item = &'z str>) {
        for zone in zones {
            let Some(apex) = wire_name(zone) else { continue };
            for internal in [true, false] {
                self.names.retain(|k, _| !(k[0] == internal as u8 && is_within(&k[1..], &apex)));
                self.forget_cuts(internal, &apex);
                self.zones.insert(keyed(internal, &apex), Zone { soa: Vec::new(), expired: true, denial: None });
            }
        }
    }

    /// Whether `zone` is served (and not expired) in a view: what a transfer of it needs.
    pub fn transferable(&self, zone: &str, internal: bool) -> bool {
        wire_name(zone).is_some_and(|apex| self.zones.get(&keyed(internal, &apex)).is_some_and(|z| !z.expired))
    }

    /// Every record of `zone` in a view, as a transfer sends them: the SOA first, then the
    /// rest, each handed to `each` as its owner (wire form) and the bytes after it (type,
    /// class, TTL, length, data); `each` returns false to stop. False when the zone is not
    /// [`transferable`](Answers::transferable) there or `each` stopped.
    pub fn each_transfer_record(&self, zone: &str, internal: bool, mut each: impl FnMut(&[u8], &[u8]) -> bool) -> bool {
        let Some(apex) = wire_name(zone) else { return false };
        let zone_key = keyed(internal, &apex);
        if self.zones.get(&zone_key).is_none_or(|z| z.expired) {
            return false;
        }
        // Names below the apex that belong to a zone of their own (served here too) are not
        // this zone's; the check is only paid when there is such a zone.
        let nested =
            self.zones.keys().any(|k| k[0] == internal as u8 && k[1..] != apex[..] && is_within(&k[1..], &apex));
        let records = set_records;
        let Some(soa) = self.names.get(&zone_key).and_then(|sets| sets.iter().find(|s| s.rtype == 6)) else {
            return false;
        };
        // One SOA, whatever the set held.
        if !records(soa).next().is_some_and(|r| each(&apex, r)) {
            return false;
        }
        for (key, sets) in &self.names {
            if key[0] != internal as u8 || !is_within(&key[1..], &apex) {
                continue;
            }
            if nested && self.enclosing_zone(key).is_none_or(|(_, offset)| key[1 + offset..] != apex[..]) {
                continue;
            }
            for set in sets.iter().filter(|s| !(s.rtype == 6 && key[..] == zone_key[..])) {
                for r in records(set) {
                    if !each(&key[1..], r) {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// The response to `query` if it is one the tables answer; `None` sends it to the
    /// runtime.
    pub fn answer(&self, query: &[u8], internal: bool, tcp: bool) -> Option<Vec<u8>> {
        let mut key = Vec::with_capacity(300);
        let mut out = Vec::with_capacity(512);
        self.answer_into(query, internal, tcp, &mut key, &mut out).map(|_| out)
    }

    /// [`Answers::answer`] into buffers the caller reuses; `None` when the runtime must
    /// answer. Over TCP an answer may take 64 KiB; over UDP what the client's EDNS allows up
    /// to [`UDP_PAYLOAD_MAX`], 512 bytes without EDNS. `key` is left holding what the
    /// answer is rate-limited by ([`Outcome::bucket`]).
    pub fn answer_into(
        &self,
        query: &[u8],
        internal: bool,
        tcp: bool,
        key: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Option<Outcome> {
        if query.len() < 17 {
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
        // The question name: plain labels only, lower-cased into the key after the view.
        let mut at = 12;
        key.clear();
        key.push(internal as u8);
        loop {
            let len = *query.get(at)? as usize;
            if len == 0 {
                key.push(0);
                at += 1;
                break;
            }
            if len > 63 || at + 1 + len > query.len() || key.len() + len + 1 > 256 {
                return None;
            }
            key.push(len as u8);
            key.extend(query[at + 1..at + 1 + len].iter().map(|b| b.to_ascii_lowercase()));
            at += 1 + len;
        }
        let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
        let qclass = u16::from_be_bytes([*query.get(at + 2)?, *query.get(at + 3)?]);
        let question_end = at + 4;
        // Transfers (signed, TCP), meta types and other classes: the runtime's.
        if qclass != 1 || matches!(qtype, 41 | 249 | 250 | 251 | 252) {
            return None;
        }
        let edns = if counts[3] == 1 { Some(edns_payload(query.get(question_end..)?)?) } else { None };
        // DNSSEC OK: signatures and proofs go with the answer (RFC 3225).
        let dnssec_ok = edns.is_some_and(|(_, ok)| ok);
        let edns = edns.map(|(payload, _)| payload);
        if edns.is_none() && question_end != query.len() {
            return None;
        }
        let limit = if tcp {
            u16::MAX as usize
        } else {
            edns.map_or(512, |payload| payload.clamp(512, UDP_PAYLOAD_MAX)) as usize
        };

        // A name at or below a delegation: a referral (but DS at the cut, the parent's).
        if let Some(cut) = self.cut_of(key)
            && !(cut == 0 && qtype == 43)
        {
            return Some(self.referral_answer(
                query,
                key,
                cut,
                qtype,
                question_end,
                edns.is_some(),
                dnssec_ok,
                limit,
                out,
            ));
        }

        // The answer: the name's records, else the zone's negative answer, else REFUSED.
        let sets = self.names.get(key.as_slice());
        let answer: Vec<&RrSet> = match (sets, qtype) {
            (Some(sets), 255) => sets.iter().collect(),
            (Some(sets), _) => sets.iter().filter(|s| s.rtype == qtype).collect(),
            (None, _) => Vec::new(),
        };
        // The zone: for negative answers, the closest enclosing apex we serve.
        let (rcode, soa) = if !answer.is_empty() {
            (0u16, None)
        } else {
            match self.enclosing_zone(key) {
                Some((zone, _)) if zone.expired => (2, None),
                Some((zone, offset)) => (if sets.is_some() { 0 } else { 3 }, Some((zone, offset))),
                None => (5, None),
            }
        };
        // What the answer is counted by, for rate limiting (as BIND's RRL): identical answers
        // by name and type; negative ones by zone, so that a flood of random names is one
        // bucket; refusals by client alone.
        let (class, bucket) = match (rcode, soa) {
            (0, None) => {
                key.extend_from_slice(&qtype.to_be_bytes());
                (Class::Answer, 1..key.len())
            }
            (0, Some((_, offset))) => (Class::NoData, 1 + offset..key.len()),
            (_, Some((_, offset))) => (Class::NxDomain, 1 + offset..key.len()),
            _ => (Class::Refused, 0..0),
        };

        out.clear();
        out.extend_from_slice(&query[0..2]); // id
        // QR; AA for our zones; RD and CD copied; RA off.
        let aa = if rcode == 5 || rcode == 2 { 0 } else { 0x0400 };
        out.extend_from_slice(&(0x8000 | aa | (flags & 0x0110) | rcode).to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&query[12..question_end]); // the question as asked (its case)
        let opt_len = if edns.is_some() { OPT_LEN } else { 0 };
        let (mut an, mut ns, mut ar) = (0u16, 0u16, 0u16);
        if let Some((zone, offset)) = soa {
            // The SOA's owner: the apex, a suffix of the question's name.
            let pointer = 0xc000 | (12 + offset) as u16;
            out.extend_from_slice(&pointer.to_be_bytes());
            out.extend_from_slice(&zone.soa);
            ns = 1;
            if dnssec_ok {
                ns += self.denial_into(zone, key, rcode == 3, pointer, out);
                if out.len() + opt_len > limit {
                    out.truncate(question_end);
                    out[2] |= 0x02;
                    ns = 0;
                }
            }
        } else {
            for set in &answer {
                out.extend_from_slice(&set.bytes);
                an += set.count;
                // Signatures, but not twice for ANY (the RRSIG set is among the sets).
                if dnssec_ok && qtype != 255 {
                    out.extend_from_slice(&set.sigs);
                    an += set.sig_count;
                }
            }
            if out.len() + opt_len > limit {
                // Too big for the client's buffer: truncated, empty, so it retries over TCP.
                out.truncate(question_end);
                out[2] |= 0x02;
                an = 0;
            } else {
                let before = out.len();
                for set in &answer {
                    out.extend_from_slice(&set.extra);
                    ar += set.extra_count;
                }
                if out.len() + opt_len > limit {
                    out.truncate(before); // additional data is optional (RFC 2181 9)
                    ar = 0;
                }
            }
        }
        if edns.is_some() {
            opt_into(dnssec_ok, out);
            ar += 1;
        }
        out[6..8].copy_from_slice(&an.to_be_bytes());
        out[8..10].copy_from_slice(&ns.to_be_bytes());
        out[10..12].copy_from_slice(&ar.to_be_bytes());
        Some(Outcome { class, qtype, bucket, question_end })
    }

    /// The zone this view serves that is the closest to the name in `key` (view byte, then
    /// the wire name), and the offset of its apex within the name.
    pub(crate) fn enclosing_zone(&self, key: &[u8]) -> Option<(&Zone, usize)> {
        let mut probe = Vec::with_capacity(key.len());
        let mut at = 1;
        loop {
            probe.clear();
            probe.push(key[0]);
            probe.extend_from_slice(&key[at..]);
            if let Some(zone) = self.zones.get(probe.as_slice()) {
                return Some((zone, at - 1));
            }
            if key[at] == 0 {
                return None;
            }
            at += 1 + key[at] as usize;
        }
    }
}
/// The length of our OPT record.
pub(crate) const OPT_LEN: usize = 11;

/// Our OPT: payload 1232, version 0, the DO bit echoed, no options (COOKIE and others the
/// client sent are ignored, as RFC 7873 lets a server that does not keep them).
pub(crate) fn opt_into(dnssec_ok: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0, 41]);
    out.extend_from_slice(&UDP_PAYLOAD_MAX.to_be_bytes());
    out.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
}

/// Each record of a set: its bytes after the pointer that stands for the owner.
fn set_records(set: &RrSet) -> impl Iterator<Item = &[u8]> {
    let bytes = &set.bytes;
    let mut at = 0;
    std::iter::from_fn(move || {
        (at < bytes.len()).then(|| {
            let rdlen = u16::from_be_bytes([bytes[at + 10], bytes[at + 11]]) as usize;
            let record = &bytes[at + 2..at + 12 + rdlen];
            at += 12 + rdlen;
            record
        })
    })
}

/// Whether wire name `name` is `apex` or below it (label by label).
pub(crate) fn is_within(name: &[u8], apex: &[u8]) -> bool {
    let mut at = 0;
    loop {
        if name[at..] == *apex {
            return true;
        }
        if name[at] == 0 {
            return false;
        }
        at += 1 + name[at] as usize;
    }
}

/// The client's UDP payload size and DO bit from an OPT record that ends the message: root
/// owner, type 41, version 0, options well formed (their content is not ours to read).
/// `None` (the runtime answers, with FORMERR or BADVERS) for anything else.
fn edns_payload(opt: &[u8]) -> Option<(u16, bool)> {
    if opt.len() < 11 || opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != 41 || opt[6] != 0 {
        return None;
    }
    let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
    let mut options = opt.get(11..)?;
    if options.len() != rdlen {
        return None;
    }
    while !options.is_empty() {
        let len = u16::from_be_bytes([*options.get(2)?, *options.get(3)?]) as usize;
        options = options.get(4 + len..)?;
    }
    Some((u16::from_be_bytes([opt[3], opt[4]]), opt[7] & 0x80 != 0))
}

#[cfg(test)]
#[path = "fast_tests.rs"]
mod tests;
