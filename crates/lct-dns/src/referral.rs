//! Delegations on the answer path (RFC 1034 section 4.3.2, RFC 4035 section 3.1.4): a name
//! at or below a zone cut (an NS set that is not a zone's apex) is the child's, so it is
//! answered with a referral: no AA, the cut's NS set in the authority section, the glue we
//! hold in the additional section and, with the DO bit, the proof of the cut's DS (the DS
//! set and its signatures, or the cut's NSEC and its signatures proving there is none).
//! Only a DS query at the cut itself is the parent's to answer, authoritatively.
//!
//! The cuts are found once per version when the tables are built; a query pays for them
//! only when its view has any, a look-up per label between its name and its zone's apex.

use crate::fast::{Answers, Class, OPT_LEN, Outcome, is_within, keyed, opt_into};

const NS: u16 = 2;
const DS: u16 = 43;
const NSEC: u16 = 47;

impl Answers {
    /// Finds every zone cut of the tables: a name with an NS set that is not the apex of a
    /// zone served here (a child zone served here answers for itself).
    pub(crate) fn find_cuts(&mut self) {
        self.cuts.clear();
        for (key, sets) in &self.names {
            if sets.iter().any(|s| s.rtype == NS) && !self.zones.contains_key(key) {
                self.cuts.insert(key.clone(), ());
            }
        }
    }

    /// Forgets the cuts of a zone in a view (a secondary zone expired).
    pub(crate) fn forget_cuts(&mut self, internal: bool, apex: &[u8]) {
        self.cuts.retain(|k, _| !(k[0] == internal as u8 && is_within(&k[1..], apex)));
    }

    /// If the name in `key` (view byte, wire name) is at or below a zone cut of the zone
    /// that holds it: the offset of the cut's name within the wire name.
    pub(crate) fn cut_of(&self, key: &[u8]) -> Option<usize> {
        if self.cuts.is_empty() {
            return None;
        }
        let mut probe = Vec::with_capacity(key.len());
        let mut at = 1;
        while key[at] != 0 {
            probe.clear();
            probe.push(key[0]);
            probe.extend_from_slice(&key[at..]);
            if self.zones.contains_key(probe.as_slice()) {
                return None; // the apex of the zone that holds the name: no cut above it counts
            }
            if self.cuts.contains_key(probe.as_slice()) {
                return Some(at - 1);
            }
            at += 1 + key[at] as usize;
        }
        None
    }

    /// The referral to the cut at `cut` (its offset in the question's name) into `out`,
    /// after the question: the NS set (and, with `dnssec_ok`, the DS proof) in authority,
    /// then the glue in additional while `limit` allows (`opt_len` kept for the OPT).
    /// Returns the authority and additional counts; an authority section past the limit
    /// leaves the answer empty and truncated.
    pub(crate) fn referral_into(
        &self,
        key: &[u8],
        cut: usize,
        dnssec_ok: bool,
        limit: usize,
        opt_len: usize,
        out: &mut Vec<u8>,
    ) -> (u16, u16) {
        let question_end = out.len();
        let Some(sets) = self.names.get(&keyed(key[0] == 1, &key[1 + cut..])) else { return (0, 0) };
        // The cut's name is a suffix of the question's: its records point at it.
        let pointer = (0xc000 | (12 + cut)) as u16;
        let mut ns = 0;
        let Some(ns_set) = sets.iter().find(|s| s.rtype == NS) else { return (0, 0) };
        ns += pointed(&ns_set.bytes, pointer, out);
        if dnssec_ok {
            // A signed DS set, else the NSEC that says there is none (unsigned zone: neither).
            let proof = sets.iter().find(|s| s.rtype == DS && s.sig_count > 0);
            let proof = proof.or_else(|| sets.iter().find(|s| s.rtype == NSEC && s.sig_count > 0));
            if let Some(set) = proof {
                ns += pointed(&set.bytes, pointer, out);
                ns += pointed(&set.sigs, pointer, out);
            }
        }
        if out.len() + opt_len > limit {
            out.truncate(question_end);
            out[2] |= 0x02;
            return (0, 0);
        }
        // Glue is not optional in a referral (RFC 9471): all of it, or truncated.
        out.extend_from_slice(&ns_set.extra);
        if out.len() + opt_len > limit {
            out.truncate(question_end);
            out[2] |= 0x02;
            return (0, 0);
        }
        (ns, ns_set.extra_count)
    }

    /// The whole referral response to `query` (whose question ends at `question_end`, its
    /// name in `key`) for the cut at `cut`: not authoritative, rate-limited by the cut's
    /// name.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn referral_answer(
        &self,
        query: &[u8],
        key: &[u8],
        cut: usize,
        qtype: u16,
        question_end: usize,
        edns: bool,
        dnssec_ok: bool,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let flags = u16::from_be_bytes([query[2], query[3]]);
        out.clear();
        out.extend_from_slice(&query[0..2]);
        // QR; no AA (the child's data); RD and CD copied; RA off; NOERROR.
        out.extend_from_slice(&(0x8000 | (flags & 0x0110)).to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&query[12..question_end]);
        let opt_len = if edns { OPT_LEN } else { 0 };
        let (ns, mut ar) = self.referral_into(key, cut, dnssec_ok, limit, opt_len, out);
        if edns {
            opt_into(dnssec_ok, out);
            ar += 1;
        }
        out[8..10].copy_from_slice(&ns.to_be_bytes());
        out[10..12].copy_from_slice(&ar.to_be_bytes());
        Outcome { class: Class::Answer, qtype, bucket: 1 + cut..key.len(), question_end }
    }
}

/// The records of a set (each owner a pointer to the question) into `out`, each owner
/// the pointer `pointer` instead; how many.
fn pointed(bytes: &[u8], pointer: u16, out: &mut Vec<u8>) -> u16 {
    let (mut at, mut n) = (0, 0u16);
    while at + 12 <= bytes.len() {
        let rdlen = u16::from_be_bytes([bytes[at + 10], bytes[at + 11]]) as usize;
        out.extend_from_slice(&pointer.to_be_bytes());
        out.extend_from_slice(&bytes[at + 2..at + 12 + rdlen]);
        at += 12 + rdlen;
        n += 1;
    }
    n
}

#[cfg(test)]
#[path = "referral_tests.rs"]
mod tests;
