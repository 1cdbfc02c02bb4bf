//! The DNSSEC side of the answer tables, for a signed zone (one whose apex has a DNSKEY
//! set), whoever signed it (this server, or a primary whose zone this one follows): each
//! set's signatures beside it, so an answer with the DO bit copies them after the set; and
//! each zone's NSEC chain in canonical order (RFC 4034 section 6.1) with its signatures, so
//! NXDOMAIN and NODATA find their proofs with a binary search. Nothing is signed per query:
//! a flood of random names costs a search each.

use std::cmp::Ordering;

use crate::fast::{Answers, Denial, NsecEntry, RrSet, Zone, is_within, keyed};

const RRSIG: u16 = 46;
const NSEC: u16 = 47;
const DNSKEY: u16 = 48;

/// Where each label of a wire name starts, first to last (the root left out), and how many
/// there are: a name of 255 bytes has at most 127 labels.
fn label_starts(name: &[u8], starts: &mut [u8; 128]) -> usize {
    let (mut at, mut n) = (0usize, 0usize);
    while at < name.len() && name[at] != 0 && n < 128 {
        starts[n] = at as u8;
        n += 1;
        at += 1 + name[at] as usize;
    }
    n
}

/// The label of `name` that starts at `start`.
fn label_at(name: &[u8], start: u8) -> &[u8] {
    let start = start as usize;
    &name[start + 1..(start + 1 + name[start] as usize).min(name.len())]
}

/// RFC 4034's canonical order of two lower-case wire names: label by label from the root,
/// each compared as octets (a label that is a prefix of the other sorts first). No
/// allocation: sorting a zone's names compares them a few hundred thousand times.
pub fn canonical_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut sa, mut sb) = ([0u8; 128], [0u8; 128]);
    let (na, nb) = (label_starts(a, &mut sa), label_starts(b, &mut sb));
    for i in 1..=na.min(nb) {
        match label_at(a, sa[na - i]).cmp(label_at(b, sb[nb - i])) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    na.cmp(&nb)
}

/// Each record of a set, as (TTL, data); the set's bytes hold pointer, type, class, TTL,
/// length, data per record.
pub(crate) fn records(bytes: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        (at + 12 <= bytes.len()).then(|| {
            let ttl = u32::from_be_bytes(bytes[at + 6..at + 10].try_into().expect("four bytes"));
            let rdlen = u16::from_be_bytes([bytes[at + 10], bytes[at + 11]]) as usize;
            let data = &bytes[at + 12..at + 12 + rdlen];
            at += 12 + rdlen;
            (ttl, data)
        })
    })
}

/// The names of `apex`'s zone in a view that hold records (not those of a zone of its own
/// below it), as table keys.
pub(crate) fn zone_names<'a>(answers: &'a Answers, internal: bool, apex: &'a [u8]) -> Vec<&'a Vec<u8>> {
    let nested = answers.zones.keys().any(|k| k[0] == internal as u8 && k[1..] != *apex && is_within(&k[1..], apex));
    answers
        .names
        .iter()
        .filter(|(k, sets)| k[0] == internal as u8 && !sets.is_empty() && is_within(&k[1..], apex))
        .filter(|(k, _)| !nested || answers.enclosing_zone(k).is_some_and(|(_, offset)| k[1 + offset..] == *apex))
        .map(|(k, _)| k)
        .collect()
}

/// Whether a zone in a view is signed: its apex has a DNSKEY set.
fn is_signed(answers: &Answers, zone_key: &[u8]) -> bool {
    answers.names.get(zone_key).is_some_and(|sets| sets.iter().any(|s| s.rtype == DNSKEY))
}

impl Answers {
    /// Puts each signed zone's signatures beside their sets and builds its NSEC chain
    /// (again, if it was built before). Costs a look-up per zone when none is signed.
    pub fn attach_dnssec(&mut self) {
        let signed: Vec<Vec<u8>> =
            self.zones.iter().filter(|(k, z)| !z.expired && is_signed(self, k)).map(|(k, _)| k.clone()).collect();
        for zone_key in signed {
            let internal = zone_key[0] == 1;
            let apex = zone_key[1..].to_vec();
            let names: Vec<Vec<u8>> = zone_names(self, internal, &apex).into_iter().cloned().collect();
            let mut chain = Vec::new();
            let mut soa_sigs = Vec::new();
            for key in &names {
                let Some(sets) = self.names.get_mut(key).map(std::sync::Arc::make_mut) else { continue };
                attach_sets(sets);
                let owner = &key[1..];
                if owner == apex.as_slice()
                    && let Some(soa) = sets.iter().find(|s| s.rtype == 6)
                {
                    soa_sigs = records(&soa.sigs).map(|(ttl, data)| tail(RRSIG, ttl, data)).collect();
                }
                if let Some(nsec) = sets.iter().find(|s| s.rtype == NSEC) {
                    chain.push(nsec_entry(owner, nsec));
                }
            }
            chain.sort_by(|a, b| canonical_cmp(&a.owner, &b.owner));
            if let Some(zone) = self.zones.get_mut(&zone_key) {
                // Negative answers' SOA TTL is capped by its minimum: so are its signatures'.
                let ttl = zone.soa.get(4..8).map_or(0, |t| u32::from_be_bytes(t.try_into().expect("four bytes")));
                for sig in &mut soa_sigs {
                    sig[4..8].copy_from_slice(&ttl.to_be_bytes());
                }
                zone.denial = Some(Box::new(Denial { soa_sigs, chain }));
            }
        }
    }

    /// The proofs of a negative answer with the DO bit, into `out` after the SOA (whose
    /// owner is the pointer `soa_owner`): the SOA's signatures, then the NSEC records (and
    /// theirs) that cover or match the name in `key` and, for NXDOMAIN, the wildcard at its
    /// closest encloser. Returns how many records were written.
    pub(crate) fn denial_into(
        &self,
        zone: &Zone,
        key: &[u8],
        nxdomain: bool,
        soa_owner: u16,
        out: &mut Vec<u8>,
    ) -> u16 {
        let Some(denial) = zone.denial.as_deref() else { return 0 };
        let mut count = 0;
        for sig in &denial.soa_sigs {
            out.extend_from_slice(&soa_owner.to_be_bytes());
            out.extend_from_slice(sig);
            count += 1;
        }
        let name = &key[1..];
        let first = denial.covering(name);
        if let Some(entry) = first {
            out.extend_from_slice(&entry.bytes);
            count += entry.count;
        }
        if nxdomain {
            // The closest encloser: the longest ancestor that exists (empty non-terminals too).
            let mut probe = Vec::with_capacity(key.len() + 2);
            let mut at = 0;
            while name[at] != 0 {
                at += 1 + name[at] as usize;
                probe.clear();
                probe.push(key[0]);
                probe.extend_from_slice(&name[at..]);
                if self.names.contains_key(&probe) || self.zones.contains_key(&probe) {
                    break;
                }
            }
            let mut wildcard = vec![1, b'*'];
            wildcard.extend_from_slice(&name[at..]);
            if let Some(entry) = denial.covering(&wildcard)
                && !first.is_some_and(|f| std::ptr::eq(f, entry))
            {
                out.extend_from_slice(&entry.bytes);
                count += entry.count;
            }
        }
        count
    }
}

impl Denial {
    /// The NSEC record whose owner is `name`, else the one before it in canonical order
    /// (which covers it).
    fn covering(&self, name: &[u8]) -> Option<&NsecEntry> {
        match self.chain.binary_search_by(|e| canonical_cmp(&e.owner, name)) {
            Ok(i) => self.chain.get(i),
            Err(0) => self.chain.last(),
            Err(i) => self.chain.get(i - 1),
        }
    }
}

/// A name's signatures (its RRSIG set) beside the sets they cover.
fn attach_sets(sets: &mut [RrSet]) {
    for set in sets.iter_mut() {
        set.sigs.clear();
        set.sig_count = 0;
    }
    let Some(i) = sets.iter().position(|s| s.rtype == RRSIG) else { return };
    let sigs = std::mem::take(&mut sets[i].bytes);
    let mut at = 0;
    while at + 12 <= sigs.len() {
        let rdlen = u16::from_be_bytes([sigs[at + 10], sigs[at + 11]]) as usize;
        let record = &sigs[at..at + 12 + rdlen];
        let covered = record.get(12..14).map(|c| u16::from_be_bytes([c[0], c[1]]));
        if let Some(set) = sets.iter_mut().find(|s| Some(s.rtype) == covered && s.rtype != RRSIG) {
            set.sigs.extend_from_slice(record);
            set.sig_count += 1;
        }
        at += 12 + rdlen;
    }
    sets[i].bytes = sigs;
}

/// A name's NSEC record and its signatures, owners written out, as negative answers copy
/// them.
pub(crate) fn nsec_entry(owner: &[u8], nsec: &RrSet) -> NsecEntry {
    let mut bytes = Vec::with_capacity(nsec.bytes.len() + nsec.sigs.len() + 2 * owner.len() + 20);
    let mut count = 0;
    for (rtype, set) in [(NSEC, &nsec.bytes), (RRSIG, &nsec.sigs)] {
        for (ttl, data) in records(set) {
            bytes.extend_from_slice(owner);
            bytes.extend_from_slice(&tail(rtype, ttl, data));
            count += 1;
        }
    }
    NsecEntry { owner: owner.to_vec(), bytes, count }
}

/// Type, class IN, TTL, length and data.
pub(crate) fn tail(rtype: u16, ttl: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + data.len());
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// The table key of a zone's apex in a view (for the signer).
pub(crate) fn zone_key(internal: bool, apex: &[u8]) -> Vec<u8> {
    keyed(internal, apex)
}
