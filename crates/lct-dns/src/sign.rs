//! Signing the zones this server is primary for, when a zone version's tables are built
//! (never per query): a DNSKEY set at the apex, an NSEC chain over each view's names, and an
//! RRSIG for every authoritative set, in both views with the same keys (a DS at the parent
//! covers both). Which keys sign what at the moment of signing comes from the zone's key
//! ring ([`crate::keystate`]): during a rollover a set may carry two signatures.
//! Signatures are kept between versions, keyed by the exact set they sign:
//! a change re-signs only the sets it touches (the names changed, their NSEC neighbours,
//! the SOA), and a set the two views share is signed once. A name whose sets are the very
//! ones the last pass signed (the same `Arc`: a patched version shares them,
//! [`crate::patch`]), whose NSEC is unchanged and whose signatures are not due, is kept as
//! it is: a pointer compare instead of a hash and a compare of each of its sets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::denial::{canonical_cmp, nsec_entry, records, tail, zone_key, zone_names};
use crate::fast::{Answers, Denial, RrSet};
use crate::keyed::TableState;
use crate::keyroll::Policy;
use crate::keystate::{KeyRing, SigningPlan};
use crate::zonekeys::ZoneKey;

#[path = "sign_rdata.rs"]
mod rdata;
use rdata::{below_cut, canonical_rdata, label_count, nsec_set, push_record, set_of};

const RRSIG: u16 = 46;
const NSEC: u16 = 47;
const DNSKEY: u16 = 48;
const DS: u16 = 43;
const CDS: u16 = 59;
const CDNSKEY: u16 = 60;

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

/// A signature made before: what it signs and by which key (checked on a hit, as the
/// table is keyed by a hash of them) and the times it holds.
struct Cached {
    owner: Vec<u8>,
    rtype: u16,
    /// The signing key's DNSKEY data: two keys of a rollover may share a key tag, and one's
    /// signature must never be served as the other's.
    signer: Vec<u8>,
    set: Vec<u8>,
    rdata: Vec<u8>,
    inception: u32,
    expiration: u32,
    /// The last signing pass that used it (the others are dropped after a pass).
    used: u64,
}

/// What a signing pass leaves the next: the signatures made, and each view's NSEC chain.
#[derive(Default)]
struct Memory {
    generation: u64,
    /// By a keyed hash of (owner, type, key tag, the set's records): a look-up hashes the
    /// set where it lies instead of copying it into a key first (a zone has tens of
    /// thousands of sets, each looked up on every version).
    signatures: HashMap<u64, Cached, TableState>,
    hasher: TableState,
    /// Each signed zone's chain per view, by the apex's table key.
    chains: HashMap<Vec<u8>, Chain>,
}

/// A view's NSEC chain as the last pass left it: its owners (table keys) in canonical
/// order, and the same as a set. A version is spliced in (the names it adds merged in,
/// the names it lost taken out) instead of the zone being sorted again.
#[derive(Default)]
struct Chain {
    order: Vec<Vec<u8>>,
    members: HashSet<Vec<u8>, TableState>,
    /// Each name's sets as the last pass left them signed (table key to them).
    signed: HashMap<Vec<u8>, SignedName, TableState>,
    /// The zone signing keys' DNSKEY data the last pass signed with: other keys (a
    /// rollover's step) mean no name is kept as it was.
    signers: Vec<Vec<u8>>,
}

/// A name as a signing pass left it: its sets (shared with the version served), the
/// signatures in them (by their key in [`Memory::signatures`]), when the first of those is
/// due to be made again and the latest was dated from, and what its NSEC was made of
/// besides its sets' types (the next name, the TTL, whether it is a delegation) and its
/// entry in the proofs of negative answers.
struct SignedName {
    sets: Arc<Vec<RrSet>>,
    ids: Vec<u64>,
    due: u32,
    since: u32,
    next: Vec<u8>,
    nsec_ttl: u32,
    cut: bool,
    entry: crate::fast::NsecEntry,
}

impl Chain {
    /// Brings the chain to exactly `names` (table keys of one view, each once, in any
    /// order): a look-up per name, and a sort of the new ones only.
    fn update(&mut self, names: &[&Vec<u8>]) {
        let mut added: Vec<Vec<u8>> =
            names.iter().filter(|k| !self.members.contains(k.as_slice())).map(|k| (*k).clone()).collect();
        // Every name of the chain is either still there or gone: count before looking.
        if self.members.len() + added.len() > names.len() {
            let now: HashSet<&[u8], TableState> = names.iter().map(|k| k.as_slice()).collect();
            self.order.retain(|k| now.contains(k.as_slice()));
            self.members.retain(|k| now.contains(k.as_slice()));
        }
        if added.is_empty() {
            return;
        }
        added.sort_by(|a, b| canonical_cmp(&a[1..], &b[1..]));
        self.members.extend(added.iter().cloned());
        let old = std::mem::take(&mut self.order);
        self.order.reserve_exact(old.len() + added.len());
        let (mut old, mut added) = (old.into_iter().peekable(), added.into_iter().peekable());
        loop {
            let take_old = match (old.peek(), added.peek()) {
                (Some(o), Some(a)) => canonical_cmp(&o[1..], &a[1..]) == std::cmp::Ordering::Less,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_old { old.next() } else { added.next() };
            self.order.extend(next);
        }
    }
}

/// The zones signed here, their keys, and what the last signing pass left.
#[derive(Default)]
pub struct Dnssec {
    /// Per zone its keys; replaced at a key event ([`crate::keyevents`]).
    pub(crate) rings: RwLock<BTreeMap<String, Arc<KeyRing>>>,
    pub timers: Timers,
    pub policy: Policy,
    /// The state directory the key files are in (`None`: keys in memory only, tests).
    pub(crate) dir: Option<PathBuf>,
    /// The moment the last signing pass signed as at (a key event since means a new pass).
    pub(crate) signed_at: AtomicU64,
    /// The parent zone's servers, asked for the DS during a KSK submission.
    pub parents: Vec<std::net::SocketAddr>,
    /// What the parents said at the looks so far (a DS is seen at two looks apart).
    pub(crate) sightings: Mutex<crate::dsquery::Sightings>,
    /// What the last signing pass left: signatures and NSEC chains.
    memory: Mutex<Memory>,
    /// Signatures made since the start (a change should add only a few).
    made: AtomicU64,
}

impl Dnssec {
    /// Signs each zone of `keys` (fully qualified, lower case) with its one key, a CSK
    /// (tests: no key file, no rollover).
    pub fn new(keys: BTreeMap<String, ZoneKey>, timers: Timers) -> Dnssec {
        let rings =
            keys.into_iter().map(|(zone, key)| (zone.clone(), Arc::new(KeyRing::single(&zone, key, String::new()))));
        Dnssec { rings: RwLock::new(rings.collect()), timers, ..Default::default() }
    }

    /// Signs each zone of `rings` with its keys, kept under the state directory `dir`.
    pub fn with_rings(rings: BTreeMap<String, Arc<KeyRing>>, policy: Policy, dir: PathBuf, timers: Timers) -> Dnssec {
        Dnssec { rings: RwLock::new(rings), policy, dir: Some(dir), timers, ..Default::default() }
    }

    pub fn is_signed(&self, zone: &str) -> bool {
        self.rings.read().expect("not poisoned").contains_key(zone)
    }

    /// `zone`'s keys as they are now.
    pub fn ring(&self, zone: &str) -> Option<Arc<KeyRing>> {
        self.rings.read().expect("not poisoned").get(zone).cloned()
    }

    /// The zones signed here.
    pub fn zones(&self) -> Vec<String> {
        self.rings.read().expect("not poisoned").keys().cloned().collect()
    }

    /// Signatures made since the start.
    pub fn signatures_made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// The earliest time a signature in use must be made again (Unix seconds), if any.
    pub fn next_refresh(&self) -> Option<u64> {
        let memory = self.memory.lock().expect("not poisoned");
        memory.signatures.values().map(|c| u64::from(c.expiration.saturating_sub(self.timers.refresh))).min()
    }

    /// The expiry of the signatures in use whose owner `of` takes that expire first (Unix
    /// seconds), if any.
    pub(crate) fn signatures_expiring(&self, of: impl Fn(&[u8]) -> bool) -> Option<u64> {
        let memory = self.memory.lock().expect("not poisoned");
        memory.signatures.values().filter(|c| of(&c.owner)).map(|c| u64::from(c.expiration)).min()
    }

    /// Signs the zones of `answers` now.
    pub fn sign(&self, answers: &mut Answers) -> Result<(), SignError> {
        self.sign_at(answers, crate::tsig::now())
    }

    /// Signs the zones of `answers` as at `now` (Unix seconds).
    pub fn sign_at(&self, answers: &mut Answers, now: u64) -> Result<(), SignError> {
        let rings = self.rings.read().expect("not poisoned").clone();
        if rings.is_empty() {
            return Ok(());
        }
        let mut memory = self.memory.lock().expect("not poisoned");
        let Memory { generation, signatures, hasher, chains } = &mut *memory;
        *generation += 1;
        for (zone, ring) in &rings {
            let err = |message: String| SignError::Zone { zone: zone.clone(), message };
            // A clock before a key was made is a clock gone wrong: signatures dated by it
            // would be refused by every validator whose clock is right.
            if let Some(key) = ring.keys.iter().find(|k| now + 86_400 < k.key.created) {
                return Err(err(format!(
                    "the clock ({now}) is more than a day before the key was made ({}): not signing with a clock far off",
                    key.key.created
                )));
            }
            let plan = ring.plan(now).map_err(err)?;
            let now = u32::try_from(now).map_err(|_| err(format!("the clock ({now}) is past 2106")))?;
            let apex = crate::wire::wire_name(zone).ok_or_else(|| err("not a valid name".into()))?;
            let dnskey_ttl = self.policy.dnskey_ttl;
            let mut pass = Pass {
                plan: &plan,
                dnskey_ttl,
                apex: &apex,
                now,
                timers: self.timers,
                signatures: &mut *signatures,
                hasher,
                generation: *generation,
                made: 0,
            };
            for internal in [true, false] {
                let chain = chains.entry(zone_key(internal, &apex)).or_default();
                pass.sign_view(answers, internal, chain).map_err(err)?;
            }
            self.made.fetch_add(pass.made, Ordering::Relaxed);
        }
        let current = *generation;
        signatures.retain(|_, c| c.used == current);
        // Chains of views no longer served (a zone gone from a view) are not kept.
        chains.retain(|k, _| answers.zones.contains_key(k));
        self.signed_at.store(now, Ordering::Relaxed);
        Ok(())
    }
}

/// One zone signed in one signing pass.
struct Pass<'a> {
    plan: &'a SigningPlan<'a>,
    /// The DNSKEY, CDS and CDNSKEY sets' TTL (`None`: the SOA's).
    dnskey_ttl: Option<u32>,
    apex: &'a [u8],
    now: u32,
    timers: Timers,
    signatures: &'a mut HashMap<u64, Cached, TableState>,
    hasher: &'a TableState,
    generation: u64,
    made: u64,
}

impl Pass<'_> {
    /// Signs one view of the zone: the DNSKEY set at the apex, an NSEC set at every name
    /// (in the chain's order), an RRSIG set beside the sets, each signature also beside
    /// the set it covers, and the zone's proofs for negative answers ([`Denial`]), the
    /// chain already in order.
    fn sign_view(&mut self, answers: &mut Answers, internal: bool, chain: &mut Chain) -> Result<(), String> {
        let apex_key = zone_key(internal, self.apex);
        let Some(zone) = answers.zones.get(&apex_key) else { return Ok(()) };
        if zone.expired {
            return Ok(());
        }
        // NSEC records live as long as negative answers (RFC 9077): the SOA as they carry it.
        let nsec_ttl = zone.soa.get(4..8).map_or(0, |t| u32::from_be_bytes(t.try_into().expect("four bytes")));
        let apex_sets = answers.names.get_mut(&apex_key).map(Arc::make_mut).ok_or("no records at the apex")?;
        let soa_ttl = apex_sets
            .iter()
            .find(|s| s.rtype == 6)
            .and_then(|s| records(&s.bytes).next().map(|(ttl, _)| ttl))
            .ok_or("no SOA")?;
        apex_sets.retain(|s| !matches!(s.rtype, RRSIG | NSEC | DNSKEY | CDS | CDNSKEY));
        let key_ttl = self.dnskey_ttl.unwrap_or(soa_ttl);
        apex_sets.push(set_of(DNSKEY, key_ttl, self.plan.published.iter().map(|k| k.dnskey.as_slice())));
        // A KSK waiting for its DS: the parent is asked for it (RFC 7344, 8078).
        if !self.plan.submitting.is_empty() {
            let ds: Vec<Vec<u8>> = self.plan.submitting.iter().map(|k| k.ds_rdata(self.apex)).collect();
            apex_sets.push(set_of(CDS, key_ttl, ds.iter().map(Vec::as_slice)));
            apex_sets.push(set_of(CDNSKEY, key_ttl, self.plan.submitting.iter().map(|k| k.dnskey.as_slice())));
        }

        let mut names: Vec<&Vec<u8>> = zone_names(answers, internal, self.apex);
        // Delegations: their NS sets and what is below them (glue) are not this zone's to
        // sign, nor in its NSEC chain.
        let cuts: HashSet<Vec<u8>> = names
            .iter()
            .filter(|k| k[1..] != *self.apex && answers.names[k.as_slice()].iter().any(|s| s.rtype == 2))
            .map(|k| (*k).clone())
            .collect();
        if !cuts.is_empty() {
            names.retain(|k| !below_cut(k, self.apex, &cuts));
        }
        chain.update(&names);
        // A name is kept as signed only under the zone signing keys that signed it.
        let signers: Vec<Vec<u8>> = self.plan.zone_signers.iter().map(|k| k.dnskey.clone()).collect();
        let keep_signed = chain.signers == signers;
        if !keep_signed {
            chain.signed.clear();
            chain.signers = signers;
        }
        let names = &chain.order;
        let plan = self.plan;
        let mut entries = Vec::with_capacity(names.len());
        let mut types = Vec::with_capacity(8);
        for (i, name) in names.iter().enumerate() {
            let owner = &name[1..];
            let next = &names[(i + 1) % names.len()][1..];
            let cut = cuts.contains(name.as_slice());
            let at_apex = *owner == *self.apex;
            if keep_signed
                && !at_apex
                && let Some(kept) = self.kept(&chain.signed, answers, name, next, cut, nsec_ttl)
            {
                entries.push(kept);
                continue;
            }
            let sets = answers.names.get_mut(name).map(Arc::make_mut).expect("in the chain, so in the tables");
            sets.retain(|s| !matches!(s.rtype, RRSIG | NSEC));
            sets.push(nsec_set(sets, cut, next, nsec_ttl, &mut types));
            let mut signed = SignedName {
                sets: Arc::default(),
                ids: Vec::new(),
                due: u32::MAX,
                since: 0,
                next: next.to_vec(),
                nsec_ttl,
                cut,
                entry: crate::fast::NsecEntry::default(),
            };
            // Sized once: growing the set record by record was a tenth of a version's CPU.
            // (Both algorithms' signatures are 64 bytes; a longer one only grows the set.)
            let signature_len = 12 + 18 + self.apex.len() + 64;
            let per_set = plan.zone_signers.len().max(plan.key_signers.len());
            let mut rrsig = RrSet {
                rtype: RRSIG,
                bytes: Vec::with_capacity(sets.len() * per_set * signature_len),
                ..Default::default()
            };
            for set in sets.iter_mut() {
                set.sigs.clear();
                set.sig_count = 0;
                if cut && !matches!(set.rtype, DS | NSEC) {
                    continue;
                }
                // During a rollover a set carries one signature per signing key.
                let signers = match set.rtype {
                    DNSKEY | CDS | CDNSKEY if at_apex => &plan.key_signers,
                    _ => &plan.zone_signers,
                };
                let ttl = records(&set.bytes).next().map_or(0, |(ttl, _)| ttl);
                let at = rrsig.bytes.len();
                for key in signers {
                    let (id, data) = self.signature(owner, set, key)?;
                    push_record(&mut rrsig, RRSIG, ttl, data);
                    set.sig_count += 1;
                    let cached = &self.signatures[&id];
                    signed.due = signed.due.min(cached.expiration.saturating_sub(self.timers.refresh));
                    signed.since = signed.since.max(cached.inception);
                    signed.ids.push(id);
                }
                // Beside the set too, for answers with the DO bit ([`crate::denial`]).
                set.sigs.reserve_exact(rrsig.bytes.len() - at);
                set.sigs.extend_from_slice(&rrsig.bytes[at..]);
            }
            let nsec = sets.last().expect("just pushed");
            signed.entry = nsec_entry(owner, nsec);
            entries.push(signed.entry.clone());
            sets.push(rrsig);
            signed.sets = Arc::clone(&answers.names[name.as_slice()]);
            chain.signed.insert(name.clone(), signed);
        }
        // Names gone from the chain are not kept.
        if chain.signed.len() > names.len() {
            let Chain { signed, members, .. } = &mut *chain;
            signed.retain(|k, _| members.contains(k));
        }
        let apex_sets = &answers.names[&apex_key];
        let soa = apex_sets.iter().find(|s| s.rtype == 6).ok_or("no SOA")?;
        // Negative answers' SOA TTL is capped by its minimum: so are its signatures'.
        let soa_sigs = records(&soa.sigs).map(|(_, data)| tail(RRSIG, nsec_ttl, data)).collect();
        let zone = answers.zones.get_mut(&apex_key).expect("looked up above");
        zone.denial = Some(Box::new(Denial { soa_sigs, chain: entries }));
        Ok(())
    }

    /// `name`'s NSEC entry when its sets are the ones the last pass signed (the same
    /// `Arc`), its NSEC is the one it would get now (the same next name, TTL and delegation
    /// or not; its types are those of the same sets),
    /// and none of its signatures is due or dated after now: its signatures marked as used
    /// by this pass. `None`: it is to be signed again.
    fn kept(
        &mut self,
        signed: &HashMap<Vec<u8>, SignedName, TableState>,
        answers: &Answers,
        name: &[u8],
        next: &[u8],
        cut: bool,
        nsec_ttl: u32,
    ) -> Option<crate::fast::NsecEntry> {
        let kept = signed.get(name)?;
        let sets = answers.names.get(name)?;
        if !Arc::ptr_eq(sets, &kept.sets) || kept.due <= self.now || kept.since > self.now {
            return None;
        }
        if kept.next != next || kept.nsec_ttl != nsec_ttl || kept.cut != cut {
            return None;
        }
        // (The cleanup after the pass drops signatures not used by it.)
        if !kept.ids.iter().all(|id| self.signatures.contains_key(id)) {
            return None;
        }
        for id in &kept.ids {
            self.signatures.get_mut(id).expect("looked up").used = self.generation;
        }
        Some(kept.entry.clone())
    }

    /// The RRSIG data for `set` at `owner` (and its key in the table): the one made before
    /// if it signs the same set and is not due for refresh, else a new one.
    fn signature(&mut self, owner: &[u8], set: &RrSet, key: &ZoneKey) -> Result<(u64, &[u8]), String> {
        let id = {
            let mut h = self.hasher.build_hasher();
            h.write(owner);
            h.write_u16(set.rtype);
            h.write(&key.dnskey);
            h.write(&set.bytes);
            h.finish()
        };
        let fresh = |c: &Cached| {
            c.owner == owner
                && c.rtype == set.rtype
                && c.signer == key.dnskey
                && c.set == set.bytes
                && c.inception <= self.now
                && c.expiration.saturating_sub(self.timers.refresh) > self.now
        };
        if !self.signatures.get(&id).is_some_and(fresh) {
            let cached = self.make_signature(owner, set, key)?;
            self.signatures.insert(id, cached);
        }
        let cached = self.signatures.get_mut(&id).expect("there or just made");
        cached.used = self.generation;
        Ok((id, &cached.rdata))
    }

    /// A new signature of `set` at `owner`, valid from now (backdated) for the lifetime.
    fn make_signature(&mut self, owner: &[u8], set: &RrSet, key: &ZoneKey) -> Result<Cached, String> {
        let ttl = records(&set.bytes).next().map_or(0, |(ttl, _)| ttl);
        let inception = self.now.saturating_sub(self.timers.backdate);
        let expiration = self.now.saturating_add(self.timers.lifetime);
        let mut rdata = Vec::with_capacity(128);
        rdata.extend_from_slice(&set.rtype.to_be_bytes());
        rdata.push(key.algorithm.number());
        rdata.push(label_count(owner));
        rdata.extend_from_slice(&ttl.to_be_bytes());
        rdata.extend_from_slice(&expiration.to_be_bytes());
        rdata.extend_from_slice(&inception.to_be_bytes());
        rdata.extend_from_slice(&key.tag.to_be_bytes());
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
        rdata.extend(key.sign(&tbs)?);
        self.made += 1;
        Ok(Cached {
            owner: owner.to_vec(),
            rtype: set.rtype,
            signer: key.dnskey.clone(),
            set: set.bytes.clone(),
            rdata,
            inception,
            expiration,
            used: self.generation,
        })
    }
}

#[cfg(test)]
#[path = "sign_tests.rs"]
mod tests;
