//! The wire pieces the signer makes: NSEC sets and their type bitmaps, RRSIG labels,
//! record data in canonical form, sets built from record data.

use std::collections::HashSet;

use super::{DS, NSEC, RRSIG};
use crate::fast::RrSet;

/// The NSEC set at a name of `sets` (their NSEC and RRSIG sets not counted) whose next
/// name is `next`. At a delegation (`cut`) only the NSEC (and a DS) are this zone's to
/// sign, and its NSEC lists only the types the parent is authoritative for (RFC 4035
/// 2.3): not the glue's address types at the cut's own name.
pub(super) fn nsec_set(sets: &[RrSet], cut: bool, next: &[u8], ttl: u32, types: &mut Vec<u16>) -> RrSet {
    types.clear();
    types.extend(
        sets.iter()
            .map(|s| s.rtype)
            .filter(|t| !matches!(*t, RRSIG | NSEC) && (!cut || matches!(*t, 2 | DS)))
            .chain([RRSIG, NSEC]),
    );
    types.sort_unstable();
    types.dedup();
    let mut data = Vec::with_capacity(next.len() + 12);
    data.extend_from_slice(next);
    type_bitmap(types, &mut data);
    set_of(NSEC, ttl, [data.as_slice()])
}

/// Whether a proper ancestor of the name in `key`, below `apex`, is a delegation.
pub(super) fn below_cut(key: &[u8], apex: &[u8], cuts: &HashSet<Vec<u8>>) -> bool {
    let name = &key[1..];
    let mut probe = Vec::with_capacity(key.len());
    let mut at = 1 + name[0] as usize;
    while name[at] != 0 && name[at..] != *apex {
        probe.clear();
        probe.push(key[0]);
        probe.extend_from_slice(&name[at..]);
        if cuts.contains(&probe) {
            return true;
        }
        at += 1 + name[at] as usize;
    }
    false
}

/// The RRSIG labels field: the owner's labels, a leading wildcard not counted.
pub(super) fn label_count(owner: &[u8]) -> u8 {
    let (mut at, mut n) = (0, 0u8);
    while owner[at] != 0 {
        n += 1;
        at += 1 + owner[at] as usize;
    }
    if owner.starts_with(&[1, b'*']) { n - 1 } else { n }
}

/// A record's data in canonical form (RFC 4034 6.2, as RFC 6840 5.1 reads it): the names
/// inside NS, CNAME, PTR, DNAME, SOA, MX and SRV data in lower case.
pub(super) fn canonical_rdata(rtype: u16, data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let lower = |out: &mut Vec<u8>, from: usize| -> usize {
        let mut at = from;
        while at < out.len() && out[at] != 0 {
            let end = (at + 1 + out[at] as usize).min(out.len());
            out[at + 1..end].make_ascii_lowercase();
            at = end;
        }
        at + 1
    };
    match rtype {
        2 | 5 | 12 | 39 => {
            lower(&mut out, 0);
        }
        6 => {
            let second = lower(&mut out, 0);
            lower(&mut out, second);
        }
        15 => {
            lower(&mut out, 2);
        }
        33 => {
            lower(&mut out, 6);
        }
        _ => {}
    }
    out
}

/// NSEC's type bitmap (RFC 4034 4.1.2) of sorted `types`, appended to `out`.
pub(super) fn type_bitmap(types: &[u16], out: &mut Vec<u8>) {
    let mut window = None;
    let mut bits = [0u8; 32];
    let mut len = 0;
    let flush = |out: &mut Vec<u8>, w: u8, bits: &[u8; 32], len: usize| {
        out.push(w);
        out.push(len as u8);
        out.extend_from_slice(&bits[..len]);
    };
    for &t in types {
        let (w, low) = ((t >> 8) as u8, (t & 0xff) as usize);
        if window != Some(w) {
            if let Some(prev) = window {
                flush(out, prev, &bits, len);
            }
            window = Some(w);
            bits = [0; 32];
            len = 0;
        }
        bits[low / 8] |= 0x80 >> (low % 8);
        len = len.max(low / 8 + 1);
    }
    if let Some(w) = window {
        flush(out, w, &bits, len);
    }
}

/// A set of `rtype` records with one TTL.
pub(super) fn set_of<'d>(rtype: u16, ttl: u32, datas: impl IntoIterator<Item = &'d [u8]>) -> RrSet {
    let datas = datas.into_iter();
    let mut set = RrSet { rtype, bytes: Vec::with_capacity(datas.size_hint().0 * 80), ..Default::default() };
    for d in datas {
        push_record(&mut set, rtype, ttl, d);
    }
    set
}

/// One more record in `set`, its owner a pointer to the question.
pub(super) fn push_record(set: &mut RrSet, rtype: u16, ttl: u32, data: &[u8]) {
    set.bytes.extend_from_slice(&[0xc0, 0x0c]);
    set.bytes.extend_from_slice(&rtype.to_be_bytes());
    set.bytes.extend_from_slice(&1u16.to_be_bytes());
    set.bytes.extend_from_slice(&ttl.to_be_bytes());
    set.bytes.extend_from_slice(&(data.len() as u16).to_be_bytes());
    set.bytes.extend_from_slice(data);
    set.count += 1;
}
