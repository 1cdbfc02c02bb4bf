//! Signing the zones this server is primary for, when a zone version's tables are built
//! (never per query): a DNSKEY set at the apex, an NSEC chain over each view's names, and an
//! RRSIG for every authoritative set, in both views with the same key (a DS at the parent
//! covers both). Signatures are kept between versions, keyed by the exact set they sign:
//! a change re-signs only the sets it touches (the names changed, their NSEC neighbours,
//! the SOA), and a set the two views share is signed once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::denial::{canonical_cmp, records, zone_key, zone_names};
use crate::fast::{Answers, RrSet};
use crate::zonekeys::ZoneKey;

const RRSIG: u16 = 46;
const NSEC: u16 = 47;
const DNSKEY: u16 = 48;
const DS: u16 = 43;

/// Signature timers, as Knot's defaults: signatures valid for 14 days (`rrsig-lifetime`),
/// made again when less than a tenth of that and two hours are left (`rrsig-refresh`),
/// dated an hour back (clocks of validators a little behind).
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub lifetime: u32,
    pub refresh: u32,
    pub backdate: u32,
}

impl Default for Timers {
    fn default() -> Timers {
        let lifetime = 14 * 86_400;
        Timers { lifetime, refresh: lifetime / 10 + 7_200, backdate: 3_600 }
    }
}

/// A zone that cannot be signed (nothing is swapped in: the previous version serves on).
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("zone {zone}: {message}")]
    Zone { zone: String, message: String },
}

/// A signature made before, with the times it holds.
struct Cached {
    rdata: Vec<u8>,
    inception: u32,
    expiration: u32,
    /// The last signing pass that used it (the others are dropped after a pass).
    used: u64,
}

/// The zones signed here, their keys, and the signatures made so far.
#[derive(Default)]
pub struct Dnssec {
    keys: BTreeMap<String, ZoneKey>,
    pub timers: Timers,
    cache: Mutex<(u64, HashMap<Vec<u8>, Cached>)>,
    /// Signatures made since the start (a change should add only a few).
    made: AtomicU64,
}

impl Dnssec {
    /// Signs each zone of `keys` (fully qualified, lower case) with its key.
    pub fn new(keys: BTreeMap<String, ZoneKey>, timers: Timers) -> Dnssec {
        Dnssec { keys, timers, ..Default::default() }
    }

    pub fn is_signed(&self, zone: &str) -> bool {
        self.keys.contains_key(zone)
    }

    pub fn key(&self, zone: &str) -> Option<&ZoneKey> {
        self.keys.get(zone)
    }

    pub fn zones(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Signatures made since the start.
    pub fn signatures_made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// The earliest time a signature in use must be made again (Unix seconds), if any.
    pub fn next_refresh(&self) -> Option<u64> {
        let cache = self.cache.lock().expect("not poisoned");
        cache.1.values().map(|c| u64::from(c.expiration.saturating_sub(self.timers.refresh))).min()
    }

    /// Signs the zones of `answers` now.
    pub fn sign(&self, answers: &mut Answers) -> Result<(), SignError> {
        self.sign_at(answers, crate::tsig::now())
    }

    /// Signs the zones of `answers` as at `now` (Unix seconds).
    pub fn sign_at(&self, answers: &mut Answers, now: u64) -> Result<(), SignError> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let mut cache = self.cache.lock().expect("not poisoned");
        let (generation, cache) = &mut *cache;
        *generation += 1;
        for (zone, key) in &self.keys {
            let err = |message: String| SignError::Zone { zone: zone.clone(), message };
            // A clock before the key was made is a clock gone wrong: signatures dated by it
            // would be refused by every validator whose clock is right.
            if now + 86_400 < key.created {
                return Err(err(format!(
                    "the clock ({now}) is more than a day before the key was made ({}): not signing with a clock far off",
                    key.created
                )));
            }
            let now = u32::try_from(now).map_err(|_| err(format!("the clock ({now}) is past 2106")))?;
            let apex = crate::wire::wire_name(zone).ok_or_else(|| err("not a valid name".into()))?;
            let mut pass = Pass { key, apex: &apex, now, timers: self.timers, cache, generation: *generation, made: 0 };
            for internal in [true, false] {
                pass.sign_view(answers, internal).map_err(err)?;
            }
            self.made.fetch_add(pass.made, Ordering::Relaxed);
        }
        let current = *generation;
        cache.retain(|_, c| c.used == current);
        answers.attach_dnssec();
        Ok(())
    }
}

/// One zone signed in one signing pass.
struct Pass<'a> {
    key: &'a ZoneKey,
    apex: &'a [u8],
    now: u32,
    timers: Timers,
    cache: &'a mut HashMap<Vec<u8>, Cached>,
    generation: u64,
    made: u64,
}

impl Pass<'_> {
    fn sign_view(&mut self, answers: &mut Answers, internal: bool) -> Result<(), String> {
        let apex_key = zone_key(internal, self.apex);
        let Some(zone) = answers.zones.get(&apex_key) else { return Ok(()) };
        if zone.expired {
            return Ok(());
        }
        // NSEC records live as long as negative answers (RFC 9077): the SOA as they carry it.
        let nsec_ttl = zone.soa.get(4..8).map_or(0, |t| u32::from_be_bytes(t.try_into().expect("four bytes")));
        let apex_sets = answers.names.get_mut(&apex_key).ok_or("no records at the apex")?;
        let soa_ttl = apex_sets
            .iter()
            .find(|s| s.rtype == 6)
            .and_then(|s| records(&s.bytes).next().map(|(ttl, _)| ttl))
            .ok_or("no SOA")?;
        apex_sets.retain(|s| !matches!(s.rtype, RRSIG | NSEC | DNSKEY));
        apex_sets.push(set_of(DNSKEY, soa_ttl, [self.key.dnskey.as_slice()]));

        let mut names: Vec<Vec<u8>> = zone_names(answers, internal, self.apex).into_iter().cloned().collect();
        // Delegations: their NS sets and what is below them (glue) are not this zone's to
        // sign, nor in its NSEC chain.
        let cuts: HashSet<Vec<u8>> = names
            .iter()
            .filter(|k| k[1..] != *self.apex && answers.names[*k].iter().any(|s| s.rtype == 2))
            .cloned()
            .collect();
        if !cuts.is_empty() {
            names.retain(|k| !below_cut(k, self.apex, &cuts));
        }
        names.sort_by(|a, b| canonical_cmp(&a[1..], &b[1..]));
        for i in 0..names.len() {
            let next = &names[(i + 1) % names.len()][1..];
            let sets = answers.names.get_mut(&names[i]).expect("listed");
            sets.retain(|s| !matches!(s.rtype, RRSIG | NSEC));
            // At a cut, only the types the parent is authoritative for (RFC 4035 2.3): not
            // the glue's address types at the cut's own name.
            let cut = cuts.contains(&names[i]);
            let mut types: Vec<u16> =
                sets.iter().map(|s| s.rtype).filter(|t| !cut || matches!(*t, 2 | DS)).chain([RRSIG, NSEC]).collect();
            types.sort_unstable();
            types.dedup();
            let mut data = next.to_vec();
            type_bitmap(&types, &mut data);
            sets.push(set_of(NSEC, nsec_ttl, [data.as_slice()]));
        }
        for name in &names {
            let cut = cuts.contains(name);
            let sets = answers.names.get_mut(name).expect("listed");
            let mut sigs = Vec::new();
            for set in sets.iter().filter(|s| !cut || matches!(s.rtype, DS | NSEC)) {
                sigs.push(self.signature(&name[1..], set)?);
            }
            let ttl_of = |set: &RrSet| records(&set.bytes).next().map_or(0, |(ttl, _)| ttl);
            let mut rrsig = RrSet { rtype: RRSIG, ..Default::default() };
            for (set, sig) in sets.iter().filter(|s| !cut || matches!(s.rtype, DS | NSEC)).zip(&sigs) {
                push_record(&mut rrsig, RRSIG, ttl_of(set), sig);
            }
            sets.push(rrsig);
        }
        Ok(())
    }

    /// The RRSIG data for `set` at `owner`: the one made before if it signs the same set
    /// and is not due for refresh, else a new one.
    fn signature(&mut self, owner: &[u8], set: &RrSet) -> Result<Vec<u8>, String> {
        let mut id = Vec::with_capacity(owner.len() + 4 + set.bytes.len());
        id.extend_from_slice(owner);
        id.extend_from_slice(&set.rtype.to_be_bytes());
        id.extend_from_slice(&self.key.tag.to_be_bytes());
        id.extend_from_slice(&set.bytes);
        if let Some(cached) = self.cache.get_mut(&id)
            && cached.inception <= self.now
            && cached.expiration.saturating_sub(self.timers.refresh) > self.now
        {
            cached.used = self.generation;
            return Ok(cached.rdata.clone());
        }
        let ttl = records(&set.bytes).next().map_or(0, |(ttl, _)| ttl);
        let inception = self.now.saturating_sub(self.timers.backdate);
        let expiration = self.now.saturating_add(self.timers.lifetime);
        let mut rdata = Vec::with_capacity(128);
        rdata.extend_from_slice(&set.rtype.to_be_bytes());
        rdata.push(self.key.algorithm.number());
        rdata.push(label_count(owner));
        rdata.extend_from_slice(&ttl.to_be_bytes());
        rdata.extend_from_slice(&expiration.to_be_bytes());
        rdata.extend_from_slice(&inception.to_be_bytes());
        rdata.extend_from_slice(&self.key.tag.to_be_bytes());
        rdata.extend_from_slice(self.apex);
        // What is signed (RFC 4034 3.1.8.1): the RRSIG data without its signature, then the
        // set's records in canonical form and order, each with the original TTL.
        let mut datas: Vec<Vec<u8>> = records(&set.bytes).map(|(_, d)| canonical_rdata(set.rtype, d)).collect();
        datas.sort();
        datas.dedup();
        let mut tbs = rdata.clone();
        for d in &datas {
            tbs.extend_from_slice(owner);
            tbs.extend_from_slice(&set.rtype.to_be_bytes());
            tbs.extend_from_slice(&1u16.to_be_bytes());
            tbs.extend_from_slice(&ttl.to_be_bytes());
            tbs.extend_from_slice(&(d.len() as u16).to_be_bytes());
            tbs.extend_from_slice(d);
        }
        rdata.extend(self.key.sign(&tbs)?);
        self.made += 1;
        self.cache.insert(id, Cached { rdata: rdata.clone(), inception, expiration, used: self.generation });
        Ok(rdata)
    }
}

/// Whether a proper ancestor of the name in `key`, below `apex`, is a delegation.
fn below_cut(key: &[u8], apex: &[u8], cuts: &HashSet<Vec<u8>>) -> bool {
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
fn label_count(owner: &[u8]) -> u8 {
    let (mut at, mut n) = (0, 0u8);
    while owner[at] != 0 {
        n += 1;
        at += 1 + owner[at] as usize;
    }
    if owner.starts_with(&[1, b'*']) { n - 1 } else { n }
}

/// A record's data in canonical form (RFC 4034 6.2, as RFC 6840 5.1 reads it): the names
/// inside NS, CNAME, PTR, DNAME, SOA, MX and SRV data in lower case.
fn canonical_rdata(rtype: u16, data: &[u8]) -> Vec<u8> {
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
fn type_bitmap(types: &[u16], out: &mut Vec<u8>) {
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
fn set_of<'d>(rtype: u16, ttl: u32, datas: impl IntoIterator<Item = &'d [u8]>) -> RrSet {
    let mut set = RrSet { rtype, ..Default::default() };
    for d in datas {
        push_record(&mut set, rtype, ttl, d);
    }
    set
}

/// One more record in `set`, its owner a pointer to the question.
fn push_record(set: &mut RrSet, rtype: u16, ttl: u32, data: &[u8]) {
    set.bytes.extend_from_slice(&[0xc0, 0x0c]);
    set.bytes.extend_from_slice(&rtype.to_be_bytes());
    set.bytes.extend_from_slice(&1u16.to_be_bytes());
    set.bytes.extend_from_slice(&ttl.to_be_bytes());
    set.bytes.extend_from_slice(&(data.len() as u16).to_be_bytes());
    set.bytes.extend_from_slice(data);
    set.count += 1;
}

#[cfg(test)]
#[path = "sign_tests.rs"]
mod tests;
