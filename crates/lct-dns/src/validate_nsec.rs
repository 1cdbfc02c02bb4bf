//! The NSEC part of a secondary's check ([`super`]): the chain closed over every name the
//! zone is authoritative for, and each NSEC's type bitmap naming exactly the types there.

use std::collections::{HashMap, HashSet};

use super::*;

/// The NSEC chain: every name the zone is authoritative for has an NSEC, and following
/// their next names from the apex visits each once and comes back to the apex; each NSEC's
/// type bitmap names exactly the types at its owner (and RRSIG, NSEC). A signed zone
/// without NSEC records (NSEC3, which lct-dns does not serve) is refused: its denials could
/// not be proven.
pub(super) fn check_chain<'a>(
    sets: &HashMap<(&'a [u8], u16), Vec<WireRecord<'a>>>,
    order: &[(&'a [u8], u16)],
    apex: &'a [u8],
    below_cut: &dyn Fn(&[u8]) -> bool,
    at_cut: &dyn Fn(&[u8]) -> bool,
) -> Result<(), (Vec<u8>, String)> {
    let mut next: HashMap<&'a [u8], Vec<u8>> = HashMap::new();
    let mut types_at: HashMap<&'a [u8], HashSet<u16>> = HashMap::new();
    for &(owner, rtype) in order {
        types_at.entry(owner).or_default().insert(rtype);
    }
    for &(owner, rtype) in order {
        if rtype != NSEC {
            continue;
        }
        let data = sets[&(owner, rtype)][0].rdata;
        let len = name_len(data).ok_or((owner.to_vec(), "an NSEC whose next name is malformed".to_string()))?;
        next.insert(owner, data[..len].to_ascii_lowercase());
        let listed =
            type_bitmap(&data[len..]).ok_or((owner.to_vec(), "an NSEC whose type bitmap is malformed".into()))?;
        check_bitmap(&listed, &types_at[owner], at_cut(owner)).map_err(|why| (owner.to_vec(), why))?;
    }
    if next.is_empty() {
        return Err((
            apex.to_vec(),
            "a signed zone without NSEC records (NSEC3 is not served here): its denials cannot be proven".into(),
        ));
    }
    for &(owner, _) in order {
        if !below_cut(owner) && !next.contains_key(owner) {
            return Err((owner.to_vec(), "no NSEC at this name of the zone: the chain leaves it out".into()));
        }
    }
    let mut at: &[u8] = apex;
    for step in 1..=next.len() {
        let Some(to) = next.get(at) else {
            return Err((at.to_vec(), "the NSEC chain comes to this name, which has no NSEC".into()));
        };
        if to.as_slice() == apex && step < next.len() {
            return Err((
                at.to_vec(),
                format!("the NSEC chain comes back to the apex after {step} of its {} names", next.len()),
            ));
        }
        at = to;
    }
    if at != apex {
        return Err((at.to_vec(), "the NSEC chain does not come back to the apex".into()));
    }
    Ok(())
}

/// The types an NSEC type bitmap (RFC 4034 4.1.2) names, or `None` if it is malformed
/// (windows out of order, a length of 0 or past 32, bytes left over).
pub(super) fn type_bitmap(mut data: &[u8]) -> Option<HashSet<u16>> {
    let mut types = HashSet::new();
    let mut last_window: Option<u8> = None;
    while !data.is_empty() {
        let (&window, &len) = (data.first()?, data.get(1)?);
        if last_window.is_some_and(|w| w >= window) || !(1..=32).contains(&len) {
            return None;
        }
        last_window = Some(window);
        let bits = data.get(2..2 + len as usize)?;
        for (i, byte) in bits.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    types.insert(u16::from(window) << 8 | (i as u16 * 8 + bit));
                }
            }
        }
        data = &data[2 + len as usize..];
    }
    Some(types)
}

/// The types a zone here can hold at a name (lct-dns keeps these from a transfer, leaves
/// others out): an NSEC naming one of them absent at its owner denies nothing truly.
pub(super) const KEPT_TYPES: [u16; 12] = [1, 2, 6, 12, 28, 33, DS, RRSIG, NSEC, DNSKEY, 59, 60];

/// Checks an NSEC's `listed` types against the types `present` at its owner: each present
/// one listed (else the NSEC denies data the zone has), RRSIG and NSEC listed, and each
/// listed type lct-dns keeps present (else it claims data a NODATA answer denies); at a
/// delegation only its NS and DS count.
pub(super) fn check_bitmap(listed: &HashSet<u16>, present: &HashSet<u16>, at_cut: bool) -> Result<(), String> {
    let counts = |t: u16| !at_cut || matches!(t, NS | DS | NSEC);
    let names = |types: Vec<u16>| types.into_iter().map(type_name).collect::<Vec<_>>().join(", ");
    let mut missing: Vec<u16> =
        present.iter().copied().chain([RRSIG, NSEC]).filter(|t| counts(*t) && !listed.contains(t)).collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        missing.dedup();
        return Err(format!("the NSEC's type bitmap leaves out {} present at this name", names(missing)));
    }
    let mut extra: Vec<u16> = listed
        .iter()
        .copied()
        .filter(|t| KEPT_TYPES.contains(t) && !matches!(*t, RRSIG | NSEC) && counts(*t) && !present.contains(t))
        .collect();
    if !extra.is_empty() {
        extra.sort_unstable();
        return Err(format!("the NSEC's type bitmap names {}, which this name does not have", names(extra)));
    }
    Ok(())
}
