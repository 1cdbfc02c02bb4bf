//! Building the fast path's answer tables ([`Answers`]) from records, or a record at a
//! time as a transfer arrives: each name's sets per type and view, the names that exist
//! between a name and its zone's apex, each zone's negative answer, and the addresses of NS
//! and SRV targets for the additional section.

use std::sync::Arc;

use hickory_proto::rr::RData;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use crate::fast::{Answers, RrSet, Zone, is_within, keyed};
use crate::mode::ZoneMode;
use crate::wire::{WireRecord, wire_name, wire_name_into};
use crate::zone::{DnsRecord, RecordType, View};

/// A record that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("zone {zone} ({view:?} view): {message}")]
    Zone { zone: String, view: View, message: String },
}

impl Answers {
    /// From the records of both views; zones in `refused_outside` have no external answers,
    /// and `public_inside` zones answer inside as outside. (Only zones in split mode get
    /// here by default; see [`ZoneMode`] for the others.)
    pub fn new(records: &[DnsRecord], modes: &(dyn Fn(&str) -> ZoneMode + Sync)) -> Result<Answers, ServeError> {
        let mut builder = Builder::new(modes, records.len());
        for r in records {
            builder.add(r)?;
        }
        Ok(builder.finish())
    }
}

/// Builds [`Answers`] a record at a time (a secondary feeds it while a transfer arrives).
pub struct Builder<'m> {
    answers: Answers,
    modes: &'m (dyn Fn(&str) -> ZoneMode + Sync),
    /// The zone's apex and mode, worked out once for each run of records of one zone.
    zone: Option<(String, Vec<u8>, ZoneMode)>,
    // Buffers reused for every record.
    name: Vec<u8>,
    rdata: Vec<u8>,
    probe: Vec<u8>,
    /// The sets of the name whose records are arriving (by view: internal first), joined
    /// to the tables when another name comes: a name's records come together in a
    /// transfer, so the tables are looked up once a name, not twice a record.
    pending_name: Vec<u8>,
    pending: [Vec<RrSet>; 2],
    /// Every record of the pending name so far is in both views: only the internal sets
    /// are built, and copied for the external view when the name is done.
    mirrored: bool,
    /// Keys of the names with NS or SRV sets (whose targets' addresses `finish` adds).
    with_targets: Vec<Vec<u8>>,
}

impl<'m> Builder<'m> {
    /// For about `records` records.
    pub fn new(modes: &'m (dyn Fn(&str) -> ZoneMode + Sync), records: usize) -> Builder<'m> {
        let mut answers = Answers::default();
        answers.names.reserve(records / 2);
        Builder {
            answers,
            modes,
            zone: None,
            name: Vec::with_capacity(256),
            rdata: Vec::with_capacity(64),
            probe: Vec::with_capacity(260),
            pending_name: Vec::with_capacity(256),
            pending: [Vec::new(), Vec::new()],
            mirrored: false,
            with_targets: Vec::new(),
        }
    }

    /// One more record; an error names a record that cannot be served.
    pub fn add(&mut self, r: &DnsRecord) -> Result<(), ServeError> {
        // A record that cannot be served is refused with its zone and name (nothing is
        // swapped in: the previous zones serve on).
        let bad = |message: &str| ServeError::Zone {
            zone: r.zone.clone(),
            view: r.view,
            message: format!("{} {} {:?}: {message}", r.name, r.rtype, r.data),
        };
        self.enter_zone(&r.zone).ok_or_else(|| bad("not a valid name"))?;
        crate::wire::check_owner(&r.name).map_err(bad)?;
        self.name.clear();
        if !wire_name_into(&r.name, &mut self.name) {
            return Err(bad("not a valid name"));
        }
        rdata_bytes(r, &mut self.rdata).ok_or_else(|| bad("data that cannot be read"))?;
        self.insert(r.view, u16::from(r.rtype), r.ttl, target_of(r));
        Ok(())
    }

    /// One more record of `zone`, read off the wire (a transfer's: both views).
    pub fn add_wire(&mut self, zone: &str, r: &WireRecord) -> Result<(), ServeError> {
        self.enter_zone(zone).ok_or_else(|| ServeError::Zone {
            zone: zone.to_string(),
            view: View::Both,
            message: "not a valid name".into(),
        })?;
        crate::wire::check_wire_owner(r.name).map_err(|e| ServeError::Zone {
            zone: zone.to_string(),
            view: View::Both,
            message: format!("{}: {e}", crate::wire::wire_name_text(r.name)),
        })?;
        self.name.clear();
        self.name.extend_from_slice(r.name);
        self.rdata.clear();
        self.rdata.extend_from_slice(r.rdata);
        let target = match r.rtype {
            2 => Some(r.rdata.to_vec()),
            33 => r.rdata.get(6..).map(<[u8]>::to_vec),
            _ => None,
        };
        self.insert(View::Both, r.rtype, r.ttl, target);
        Ok(())
    }

    /// Works out `zone`'s apex and mode when the zone changes from the last record's.
    fn enter_zone(&mut self, zone: &str) -> Option<()> {
        if self.zone.as_ref().is_none_or(|(z, ..)| *z != zone) {
            self.flush();
            let apex = wire_name(zone)?;
            self.zone = Some((zone.to_string(), apex, (self.modes)(zone)));
        }
        Some(())
    }

    /// The record in `self.name` and `self.rdata` joins its set in each view it is seen in.
    fn insert(&mut self, seen_in: View, rtype: u16, ttl: u32, target: Option<Vec<u8>>) {
        if self.pending_name != self.name {
            self.flush();
            self.pending_name.clear();
            self.pending_name.extend_from_slice(&self.name);
            self.mirrored = true;
        }
        let Builder { answers, name, rdata, zone, pending, mirrored, .. } = self;
        let (_, apex, mode) = zone.as_ref().expect("entered");
        let both = *mode == ZoneMode::Split && seen_in == View::Both;
        if *mirrored && !both {
            // This record is not in both views: the external sets go their own way now.
            pending[1] = pending[0].clone();
            *mirrored = false;
        }
        for internal in [true, false] {
            let view = match (mode, internal) {
                (ZoneMode::Split, true) | (ZoneMode::Private, true) => View::Internal,
                (ZoneMode::Split, false) | (ZoneMode::Public, _) => View::External,
                (ZoneMode::Private, false) => continue,
            };
            if !seen_in.includes(view) {
                continue;
            }
            if rtype == 6 && *name == *apex {
                // Negative answers last as long as the SOA's minimum allows (RFC 2308).
                let minimum = rdata
                    .get(rdata.len().saturating_sub(4)..)
                    .map_or(0, |m| u32::from_be_bytes(m.try_into().unwrap_or([0; 4])));
                let mut soa = Vec::with_capacity(rdata.len() + 10);
                rr_tail(rtype, ttl.min(minimum), rdata, &mut soa);
                answers.zones.insert(keyed(internal, apex), Zone { soa, expired: false, denial: None });
            }
            if !internal && both && *mirrored {
                continue; // the set is copied from the internal view's when the name is done
            }
            // The record joins its set (in the order given), owner a pointer to the
            // question.
            let sets = &mut pending[usize::from(!internal)];
            let set = match sets.iter().position(|s| s.rtype == rtype) {
                Some(i) => &mut sets[i],
                None => {
                    sets.push(RrSet { rtype, ..Default::default() });
                    sets.last_mut().expect("just pushed")
                }
            };
            set.bytes.extend_from_slice(&[0xc0, 0x0c]);
            rr_tail(rtype, ttl, rdata, &mut set.bytes);
            set.count = set.count.saturating_add(1);
            set.targets.extend(target.clone());
        }
    }

    /// Joins the pending name's sets to the tables: the name and every name between it and
    /// its zone's apex exist (empty non-terminals answer NODATA, not NXDOMAIN); sets of a
    /// name seen before are appended to its own.
    fn flush(&mut self) {
        if std::mem::take(&mut self.mirrored) && !self.pending[0].is_empty() {
            self.pending[1] = self.pending[0].clone();
        }
        let Builder { answers, probe, zone, pending, pending_name: name, with_targets, .. } = self;
        for (i, sets) in pending.iter_mut().enumerate() {
            if sets.is_empty() {
                continue;
            }
            let internal = i == 0;
            probe.clear();
            probe.push(internal as u8);
            probe.extend_from_slice(name);
            if sets.iter().any(|s| !s.targets.is_empty()) {
                with_targets.push(probe.clone());
            }
            // One look-up: the key is made for the table either way.
            match answers.names.entry(probe.clone()) {
                std::collections::hash_map::Entry::Occupied(mut entry) => {
                    let existing = Arc::make_mut(entry.get_mut());
                    for set in sets.drain(..) {
                        match existing.iter_mut().find(|s| s.rtype == set.rtype) {
                            Some(old) => {
                                old.bytes.extend_from_slice(&set.bytes);
                                old.count = old.count.saturating_add(set.count);
                                old.targets.extend(set.targets);
                            }
                            None => existing.push(set),
                        }
                    }
                    continue;
                }
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(Arc::new(std::mem::take(sets)));
                }
            }
            let Some((_, apex, _)) = zone.as_ref() else { continue };
            // Its ancestors down to the apex, until one that is there (so are its own).
            let mut at = 0;
            while name[at] != 0 && name[at..] != apex[..] {
                at += 1 + name[at] as usize;
                if name.len() - at < apex.len() {
                    break;
                }
                probe.clear();
                probe.push(internal as u8);
                probe.extend_from_slice(&name[at..]);
                if answers.names.contains_key(probe.as_slice()) {
                    break;
                }
                answers.names.insert(probe.clone(), Arc::default());
            }
        }
    }

    /// The tables of only the records added, as they stand (no zone-wide pass: names
    /// outside a served zone kept, no additional sections, cuts or signatures), and the
    /// keys of the names with NS or SRV sets: what [`crate::patch`] merges into a version.
    pub(crate) fn into_parts(mut self) -> (Answers, Vec<Vec<u8>>) {
        self.flush();
        let mut with_targets = std::mem::take(&mut self.with_targets);
        with_targets.sort_unstable();
        with_targets.dedup();
        (self.answers, with_targets)
    }

    /// The tables, once every record is in.
    pub fn finish(mut self) -> Answers {
        self.flush();
        let mut with_targets = std::mem::take(&mut self.with_targets);
        with_targets.sort_unstable();
        with_targets.dedup();
        let mut answers = self.answers;
        // Names of zones without an SOA in a view are not served there.
        let mut suffix = Vec::with_capacity(256);
        // The zone the last name was found in (view byte, apex): most names are in the same
        // zone as the one before, found by comparing bytes instead of looking up each suffix.
        let mut last_zone: Vec<u8> = Vec::new();
        answers.names.retain(|key, _| {
            if !last_zone.is_empty() && key[0] == last_zone[0] && key.ends_with(&last_zone[1..]) {
                // At a label boundary?
                let mut at = 1;
                while key.len() - at > last_zone.len() - 1 && key[at] != 0 {
                    at += 1 + key[at] as usize;
                }
                if key[at..] == last_zone[1..] {
                    return true;
                }
            }
            let mut at = 1;
            loop {
                suffix.clear();
                suffix.push(key[0]);
                suffix.extend_from_slice(&key[at..]);
                if answers.zones.contains_key(suffix.as_slice()) {
                    last_zone.clone_from(&suffix);
                    return true;
                }
                if key[at] == 0 {
                    return false;
                }
                at += 1 + key[at] as usize;
            }
        });
        add_extras(&mut answers, &with_targets);
        answers.find_cuts();
        // A signed zone (a transfer from a signing primary): signatures beside their sets.
        answers.attach_dnssec();
        answers
    }
}

/// The addresses of NS and SRV targets we hold, in the same view, into the additional
/// sections of the sets of the names in `with_targets` (keys, sorted, each once); the
/// targets are noted in [`Answers::targeted`] and dropped from the sets.
pub(crate) fn add_extras(answers: &mut Answers, with_targets: &[Vec<u8>]) {
    // Addresses of NS and SRV targets we hold, in the same view.
    let mut extras: Vec<(Vec<u8>, usize, u16, Vec<u8>)> = Vec::new();
    for key in with_targets {
        let Some(sets) = answers.names.get(key) else { continue }; // not in a served zone
        for (i, set) in sets.iter().enumerate() {
            if set.targets.is_empty() {
                continue;
            }
            let (mut count, mut bytes) = (0u16, Vec::new());
            // Only addresses from the owner's zone (what resolvers accept as glue).
            let Some((_, offset)) = answers.enclosing_zone(key) else { continue };
            let apex = &key[1 + offset..];
            for target in set.targets.iter().filter(|t| is_within(t, apex)) {
                let Some(target_sets) = answers.names.get(&keyed(key[0] == 1, target)) else { continue };
                for t in target_sets.iter().filter(|t| t.rtype == 1 || t.rtype == 28) {
                    // Each record of the set, its owner written out instead of the pointer.
                    let mut at = 0;
                    while at < t.bytes.len() {
                        let rdlen = u16::from_be_bytes([t.bytes[at + 10], t.bytes[at + 11]]) as usize;
                        bytes.extend_from_slice(target);
                        bytes.extend_from_slice(&t.bytes[at + 2..at + 12 + rdlen]);
                        at += 12 + rdlen;
                        count += 1;
                    }
                }
            }
            if count > 0 {
                extras.push((key.clone(), i, count, bytes));
            }
        }
    }
    for (key, i, count, bytes) in extras {
        if let Some(set) = answers.names.get_mut(&key).and_then(|s| Arc::make_mut(s).get_mut(i)) {
            set.extra_count = count;
            set.extra = bytes;
        }
    }
    for key in with_targets {
        for set in answers.names.get_mut(key).map(Arc::make_mut).into_iter().flatten() {
            for target in std::mem::take(&mut set.targets) {
                answers.targeted.insert(keyed(key[0] == 1, &target), ());
            }
        }
    }
}

/// The record's data on the wire, names uncompressed (they are copied into any message).
fn rdata_bytes(r: &DnsRecord, out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    // Addresses, most of any zone here, without the general parser.
    match r.rtype {
        RecordType::A => out.extend_from_slice(&r.data.parse::<std::net::Ipv4Addr>().ok()?.octets()),
        RecordType::AAAA => out.extend_from_slice(&r.data.parse::<std::net::Ipv6Addr>().ok()?.octets()),
        // A signed zone's DNSSEC records (a secondary's copy): the bytes as they came.
        t if crate::zone::is_dnssec(t) => out.extend_from_slice(&crate::wire::generic_bytes(&r.data)?),
        _ => {
            let rdata = RData::try_from_str(r.rtype, &r.data).ok()?;
            let mut encoder = BinEncoder::new(out);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            rdata.emit(&mut encoder).ok()?;
        }
    }
    Some(())
}

/// Type, class IN, TTL, length and data of a record.
fn rr_tail(rtype: u16, ttl: u32, rdata: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// The target name inside NS and SRV data, in wire form.
fn target_of(r: &DnsRecord) -> Option<Vec<u8>> {
    let name = match r.rtype {
        RecordType::NS => r.data.split_whitespace().next()?,
        RecordType::SRV => r.data.split_whitespace().nth(3)?,
        _ => return None,
    };
    wire_name(name)
}
