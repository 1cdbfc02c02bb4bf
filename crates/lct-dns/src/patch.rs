//! A zone version's tables made from the previous version's by a change ([`Answers::patched`]):
//! the names the change touches (and the apex, whose SOA every change bumps) are built again
//! from their records; every other name's sets are the previous version's, shared (an
//! `Arc` each), so an update of a 10,000-name zone copies a pointer per name instead of
//! building the zone again. What the tables work out across names is kept right: a name
//! that loses its last record stays as an empty non-terminal while names exist below it, an
//! empty non-terminal with nothing left below it goes, a new name's missing ancestors come.
//! A change whose effects reach other names in ways not tracked here (NS or SRV sets, whose
//! additional sections hold other names' addresses; addresses that are such a target;
//! delegations) is refused (`None`), and the caller builds the version whole. A signed zone
//! is patched the same way, then signed ([`crate::sign`]): the shared names are the signed
//! ones (their NSEC and RRSIG sets in), which the signer keeps as they are unless their NSEC
//! changes (a touched name's neighbours) or their signatures are due; a name holding only
//! NSEC and RRSIG sets is an empty non-terminal here, as an empty one is unsigned.

use std::sync::Arc;

use crate::fast::{Answers, keyed};
use crate::journal::Change;
use crate::mode::ZoneMode;
use crate::tables::{Builder, ServeError, add_extras};
use crate::wire::{wire_name, wire_name_into};
use crate::zone::{DnsRecord, RecordType};

impl Answers {
    /// The tables after `change` to `zone`, whose records are now `records` (all zones'),
    /// from `previous` (the tables of the records before the change): `None` when the
    /// change is not one patched here (build the version whole), an error when a record
    /// of a touched name cannot be served.
    pub(crate) fn patched(
        previous: &Answers,
        records: &[DnsRecord],
        zone: &str,
        change: &Change,
        modes: &(dyn Fn(&str) -> ZoneMode + Sync),
    ) -> Option<Result<Answers, ServeError>> {
        let apex = wire_name(zone)?;
        // The touched names: the apex (its SOA's serial) and each changed record's owner.
        let mut touched: Vec<Vec<u8>> = vec![apex.clone()];
        for r in change.removed.iter().chain(&change.added) {
            // Addresses and PTRs only: NS and SRV sets carry other names' addresses.
            if r.zone != zone || !matches!(r.rtype, RecordType::A | RecordType::AAAA | RecordType::PTR) {
                return None;
            }
            let name = wire_name(&r.name)?;
            if !touched.contains(&name) {
                touched.push(name);
            }
        }
        for name in &touched {
            for internal in [true, false] {
                let key = keyed(internal, name);
                // Another set's additional section holds its addresses; or it is at or below
                // a delegation; or it is in a zone of its own (served here, below this one).
                if previous.targeted.contains_key(&key) || previous.cut_of(&key).is_some() {
                    return None;
                }
                if let Some((_, offset)) = previous.enclosing_zone(&key)
                    && key[1 + offset..] != apex[..]
                {
                    return None;
                }
            }
        }
        patch(previous, records, zone, &apex, &touched, modes).transpose()
    }
}

/// [`Answers::patched`] once the change is known to be one it handles.
fn patch(
    previous: &Answers,
    records: &[DnsRecord],
    zone: &str,
    apex: &[u8],
    touched: &[Vec<u8>],
    modes: &(dyn Fn(&str) -> ZoneMode + Sync),
) -> Result<Option<Answers>, ServeError> {
    // The touched names' records, in the order the whole build takes them (so their sets'
    // records are in the same order).
    let mut builder = Builder::new(modes, 16);
    let mut name = Vec::with_capacity(256);
    for r in records.iter().filter(|r| r.zone == zone) {
        name.clear();
        if wire_name_into(&r.name, &mut name) && touched.contains(&name) {
            builder.add(r)?;
        }
    }
    let (built, with_targets) = builder.into_parts();
    let mut answers = Answers {
        names: previous.names.clone(),
        zones: previous.zones.clone(),
        cuts: previous.cuts.clone(),
        targeted: previous.targeted.clone(),
    };
    // The zone's SOA in each view: a view the zone is served in keeps being served.
    for internal in [true, false] {
        let zone_key = keyed(internal, apex);
        match (built.zones.get(&zone_key), answers.zones.get_mut(&zone_key)) {
            (Some(new), Some(old)) => old.soa.clone_from(&new.soa),
            (None, None) => {}
            // The zone appears in or leaves a view: not a change patched here.
            _ => return Ok(None),
        }
    }
    // The touched names themselves: their new sets, or none (then they are taken out,
    // and put back empty below if names remain below them).
    let mut vanished = Vec::new();
    for name in touched {
        for internal in [true, false] {
            let key = keyed(internal, name);
            if !answers.zones.contains_key(&keyed(internal, apex)) {
                continue; // the zone is not served in this view: neither are its names
            }
            match built.names.get(&key) {
                Some(sets) if !sets.is_empty() => {
                    answers.names.insert(key, Arc::clone(sets));
                }
                _ => {
                    if answers.names.remove(&key).is_some() {
                        vanished.push(key);
                    }
                }
            }
        }
    }
    // New names' ancestors (the build made every one, down to the apex), where missing.
    for (key, sets) in &built.names {
        if sets.is_empty() && answers.zones.contains_key(&keyed(key[0] == 1, apex)) && !vanished.contains(key) {
            answers.names.entry(key.clone()).or_insert_with(|| Arc::clone(sets));
        }
    }
    if !vanished.is_empty() {
        forget_vanished(&mut answers, apex, vanished);
    }
    // The apex's NS set's additional section (its targets' addresses are not touched, or
    // the change would have been refused, but the set itself was built again).
    add_extras(&mut answers, &with_targets);
    Ok(Some(answers))
}

/// Names that lost their last record (keys): each stays, empty, while a name with records
/// exists below it; else it goes, and so do its empty ancestors with nothing left below.
fn forget_vanished(answers: &mut Answers, apex: &[u8], vanished: Vec<Vec<u8>>) {
    // The candidates: the vanished names and their ancestors below the apex that hold no
    // records (each once).
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for key in vanished {
        let mut at = 1;
        loop {
            let mut ancestor = vec![key[0]];
            ancestor.extend_from_slice(&key[at..]);
            if ancestor[1..] == *apex || key[at] == 0 {
                break;
            }
            // (A vanished name is out of the tables by now.)
            let empty = answers.names.get(&ancestor).is_none_or(|s| !holds_records(s));
            if !empty {
                break;
            }
            if !candidates.contains(&ancestor) {
                candidates.push(ancestor);
            }
            at += 1 + key[at] as usize;
        }
    }
    // One walk of the names with records: which candidates have one below them.
    let mut has_below = vec![false; candidates.len()];
    for (key, sets) in &answers.names {
        if !holds_records(sets) || candidates.contains(key) {
            continue;
        }
        for (candidate, below) in candidates.iter().zip(has_below.iter_mut()) {
            if !*below && is_below(key, candidate) {
                *below = true;
            }
        }
    }
    for (candidate, below) in candidates.into_iter().zip(has_below) {
        if below {
            // (A signed empty non-terminal stays as it was signed.)
            answers.names.entry(candidate).or_default();
        } else {
            answers.names.remove(&candidate);
        }
    }
}

/// Whether a name's sets hold records of its own (not only the signer's NSEC and RRSIG).
fn holds_records(sets: &[crate::fast::RrSet]) -> bool {
    sets.iter().any(|s| !matches!(s.rtype, 46 | 47))
}

/// Whether the name in `key` is strictly below the name in `ancestor` (keys of one view).
fn is_below(key: &[u8], ancestor: &[u8]) -> bool {
    if key[0] != ancestor[0] || key.len() <= ancestor.len() || !key.ends_with(&ancestor[1..]) {
        return false;
    }
    // At a label boundary.
    let mut at = 1;
    while key.len() - at > ancestor.len() - 1 {
        at += 1 + key[at] as usize;
    }
    key.len() - at == ancestor.len() - 1
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;
