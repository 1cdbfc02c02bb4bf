//! A secondary checks the signed zone it is given before serving it (as Knot's
//! `dnssec-validation: on` does): the DNSKEY set at the apex signed by a key in it, every
//! set it serves signed by a key of that set (signatures in their validity period, checked
//! with ring: RSA/SHA-256 and /SHA-512, ECDSA P-256 and P-384, Ed25519; no cryptography of
//! ours), and the NSEC chain closed. A version that fails is refused with an error naming
//! the zone, serial, owner, type and algorithm, and the previous version serves on.
//!
//! Records come as [`WireRecord`]s, as a transfer reads them: owners and the names inside
//! the data of the types lct-dns keeps already in lower case (their canonical form, RFC 4034
//! 6.2), DNSSEC types' data as sent (an NSEC's next name is signed as written, RFC 6840 5.1).

use std::collections::{HashMap, HashSet};

use crate::wire::{WireBatch, WireRecord};
use crate::zone::DnsRecord;

const NS: u16 = 2;
const SOA: u16 = 6;
const DS: u16 = 43;
const RRSIG: u16 = 46;
const NSEC: u16 = 47;
const DNSKEY: u16 = 48;

/// Keys tried per signature when several of the zone's share its key tag and algorithm.
const KEYS_PER_TAG: usize = 4;

/// Which sets of a version are checked.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every set, and the NSEC chain (a full transfer).
    Whole,
    /// The sets at these owners (wire form, lower case) and the apex's SOA and DNSKEY sets
    /// (an incremental transfer: the names its changes touched).
    Owners(HashSet<Vec<u8>>),
}

/// A version refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zone {zone} serial {serial}: {owner} {rtype}: {reason}")]
pub struct Refused {
    pub zone: String,
    pub serial: u32,
    /// The owner name of the set that failed, as text.
    pub owner: String,
    /// The set's type mnemonic (`TYPE65534` for one without a name here).
    pub rtype: String,
    pub reason: String,
}

/// What a check found in a version that passed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checked {
    /// The version has a DNSKEY set at its apex (is signed).
    pub signed: bool,
    /// Signatures verified.
    pub verified: usize,
}

/// An algorithm's mnemonic and number, as an error shows it (`ED448 (16)`).
pub fn algorithm_name(number: u8) -> String {
    let name = match number {
        1 => "RSAMD5",
        3 => "DSA",
        5 => "RSASHA1",
        6 => "DSA-NSEC3-SHA1",
        7 => "RSASHA1-NSEC3-SHA1",
        8 => "RSASHA256",
        10 => "RSASHA512",
        12 => "ECC-GOST",
        13 => "ECDSAP256SHA256",
        14 => "ECDSAP384SHA384",
        15 => "ED25519",
        16 => "ED448",
        17 => "SM2SM3",
        23 => "ECC-GOST12",
        _ => "an unknown algorithm",
    };
    format!("{name} ({number})")
}

/// Whether lct-dns can verify signatures of `algorithm`. SHA-1 (5, 7) is left out on
/// purpose: RFC 8624 says validators should no longer rely on it, and ring has no SHA-1 RSA
/// verification; Ed448 (16) is not in ring.
pub fn supported(algorithm: u8) -> bool {
    matches!(algorithm, 8 | 10 | 13 | 14 | 15)
}

fn type_name(rtype: u16) -> String {
    match crate::stats::QTYPES.iter().find(|(t, _)| *t == rtype) {
        Some((_, name)) => (*name).to_string(),
        None => format!("TYPE{rtype}"),
    }
}

/// A zone key of the version's DNSKEY set.
struct Key<'a> {
    tag: u16,
    algorithm: u8,
    public: &'a [u8],
}

/// Checks the version of `zone` (fully qualified) made of `records`, serial `serial`, as at
/// `now` (Unix seconds). `was_signed`: the version served now is signed (an unsigned one
/// then is refused: the parent's DS would make validating resolvers fail the zone).
pub fn check<'a>(
    zone: &str,
    serial: u32,
    records: impl IntoIterator<Item = WireRecord<'a>>,
    scope: &Scope,
    now: u64,
    was_signed: bool,
) -> Result<Checked, Refused> {
    let apex = crate::wire::wire_name(zone).unwrap_or_default();
    let refuse = |owner: &[u8], rtype: u16, reason: String| Refused {
        zone: zone.to_string(),
        serial,
        owner: crate::wire::wire_name_text(owner),
        rtype: type_name(rtype),
        reason,
    };
    // Sets by (owner, type) in the order met; signatures by (owner, type covered).
    let mut sets: HashMap<(&[u8], u16), Vec<WireRecord<'a>>> = HashMap::new();
    let mut order: Vec<(&[u8], u16)> = Vec::new();
    let mut sigs: HashMap<(&[u8], u16), Vec<&[u8]>> = HashMap::new();
    for r in records {
        if r.rtype == RRSIG {
            if r.rdata.len() < 18 {
                return Err(refuse(r.name, RRSIG, "an RRSIG shorter than its fixed fields".into()));
            }
            sigs.entry((r.name, u16::from_be_bytes([r.rdata[0], r.rdata[1]]))).or_default().push(r.rdata);
            continue;
        }
        let set = sets.entry((r.name, r.rtype)).or_default();
        if set.is_empty() {
            order.push((r.name, r.rtype));
        }
        set.push(r);
    }
    let Some(dnskeys) = sets.get(&(apex.as_slice(), DNSKEY)) else {
        if was_signed {
            return Err(refuse(
                &apex,
                DNSKEY,
                "no DNSKEY set: the version served now is signed, this one is not".into(),
            ));
        }
        if let Some((owner, _)) = sigs.keys().next() {
            return Err(refuse(owner, RRSIG, "signatures in a zone without a DNSKEY set at its apex".into()));
        }
        return Ok(Checked::default()); // an unsigned zone: nothing to check
    };
    let keys: Vec<Key> = dnskeys
        .iter()
        .filter(|k| k.rdata.len() > 4 && k.rdata[0] & 1 == 1 && k.rdata[2] == 3) // zone key, protocol 3
        .map(|k| Key {
            tag: hickory_proto::dnssec::rdata::DNSKEY::calculate_key_tag_internal(k.rdata),
            algorithm: k.rdata[3],
            public: &k.rdata[4..],
        })
        .collect();
    if !keys.iter().any(|k| supported(k.algorithm)) {
        let algorithms: Vec<String> = keys.iter().map(|k| algorithm_name(k.algorithm)).collect();
        return Err(refuse(
            &apex,
            DNSKEY,
            format!("no key of an algorithm this server can verify (the zone's: {})", algorithms.join(", ")),
        ));
    }

    // Delegations: their NS sets and what lies below them (glue) are not signed here.
    let cuts: HashSet<&[u8]> =
        sets.keys().filter(|(owner, t)| *t == NS && *owner != apex.as_slice()).map(|(owner, _)| *owner).collect();
    let below_cut = |owner: &[u8]| ancestors(owner, &apex).any(|a| cuts.contains(a));

    let mut checked = Checked { signed: true, verified: 0 };
    let in_scope = |owner: &[u8], rtype: u16| match scope {
        Scope::Whole => true,
        Scope::Owners(owners) => owners.contains(owner) || (owner == apex.as_slice() && matches!(rtype, SOA | DNSKEY)),
    };
    for &(owner, rtype) in &order {
        if !in_scope(owner, rtype) || below_cut(owner) || (cuts.contains(owner) && !matches!(rtype, DS | NSEC)) {
            continue;
        }
        let set = &sets[&(owner, rtype)];
        let signatures = sigs.get(&(owner, rtype)).map(Vec::as_slice).unwrap_or_default();
        checked.verified += verify_set(owner, rtype, set, signatures, &keys, &apex, now)
            .map_err(|reason| refuse(owner, rtype, reason))?;
    }
    if matches!(scope, Scope::Whole) {
        check_chain(&sets, &order, &apex, &below_cut).map_err(|(owner, reason)| refuse(&owner, NSEC, reason))?;
    }
    Ok(checked)
}

/// `records` as a transfer reads them off the wire (an incremental transfer's version is
/// kept as `dns-record`s): packed into messages and read back by the transfer's reader, so
/// both are checked on the same bytes.
pub(crate) fn batch_of<'r>(records: impl Iterator<Item = &'r DnsRecord>) -> Result<WireBatch, String> {
    use hickory_proto::op::{Message, MessageType, OpCode};
    let mut batch = WireBatch::default();
    let mut message = Message::new(0, MessageType::Response, OpCode::Query);
    let mut flush = |message: &mut Message| -> Result<(), String> {
        let bytes = message.to_vec().map_err(|e| e.to_string())?;
        crate::wire::read_all_answers(&bytes, &mut batch).map_err(str::to_string)?;
        *message = Message::new(0, MessageType::Response, OpCode::Query);
        Ok(())
    };
    for r in records {
        message.add_answer(crate::wire::to_wire(r)?);
        // Well under a message's 64 KiB (a record's data is at most a few hundred bytes here).
        if message.answers.len() >= 100 {
            flush(&mut message)?;
        }
    }
    flush(&mut message)?;
    Ok(batch)
}

/// The ancestors of `owner` below `apex`, nearest first (`owner` itself left out).
fn ancestors<'n>(owner: &'n [u8], apex: &'n [u8]) -> impl Iterator<Item = &'n [u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= owner.len() || owner[at] == 0 {
            return None;
        }
        at += 1 + owner[at] as usize;
        let rest = owner.get(at..)?;
        (rest.len() > apex.len()).then_some(rest)
    })
}

/// Checks `set`'s signatures: at least one verifies with a key of the zone, and none of an
/// algorithm this server knows is bad or out of its validity period. The number verified.
fn verify_set(
    owner: &[u8],
    rtype: u16,
    set: &[WireRecord],
    signatures: &[&[u8]],
    keys: &[Key],
    apex: &[u8],
    now: u64,
) -> Result<usize, String> {
    if signatures.is_empty() {
        return Err("no RRSIG".into());
    }
    // Serial number arithmetic (RFC 4034 3.1.5): the times wrap every 136 years.
    let now = now as u32;
    let mut verified = 0;
    let mut unknown: Vec<u8> = Vec::new();
    for sig in signatures {
        let algorithm = sig[2];
        let field = |i: usize| u32::from_be_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
        let (original_ttl, expiration, inception) = (field(4), field(8), field(12));
        let tag = u16::from_be_bytes([sig[16], sig[17]]);
        let signer_len = name_len(&sig[18..]).ok_or("an RRSIG whose signer name is malformed")?;
        let signer = &sig[18..18 + signer_len];
        let named = format!("the RRSIG by key {tag}, {}", algorithm_name(algorithm));
        if !signer.eq_ignore_ascii_case(apex) {
            return Err(format!("{named} names signer {}, not the zone", crate::wire::wire_name_text(signer)));
        }
        if (expiration.wrapping_sub(now) as i32) < 0 {
            return Err(format!("{named} expired at {expiration} (now {now})"));
        }
        if (now.wrapping_sub(inception) as i32) < 0 {
            return Err(format!("{named} is valid only from {inception} (now {now})"));
        }
        if !supported(algorithm) {
            unknown.push(algorithm);
            continue;
        }
        let candidates: Vec<&Key> = keys.iter().filter(|k| k.tag == tag && k.algorithm == algorithm).collect();
        if candidates.is_empty() {
            return Err(format!("{named}: no such key in the zone's DNSKEY set"));
        }
        let signed = signed_data(owner, rtype, set, &sig[..18 + signer_len], original_ttl, sig[3]);
        let signature = &sig[18 + signer_len..];
        // Keys sharing a tag (the signer cannot tell them apart): one of them must verify;
        // at most a few tried (many keys of one tag is the KeyTrap attack, CVE-2023-50387).
        if !candidates.iter().take(KEYS_PER_TAG).any(|k| verify(k, &signed, signature)) {
            return Err(format!("{named} does not verify: a bad signature"));
        }
        verified += 1;
    }
    if verified == 0 {
        unknown.sort_unstable();
        unknown.dedup();
        let names: Vec<String> = unknown.into_iter().map(algorithm_name).collect();
        return Err(format!(
            "signed only with {}, an algorithm this server cannot verify (it can: RSASHA256 (8), RSASHA512 (10), ECDSAP256SHA256 (13), ECDSAP384SHA384 (14), ED25519 (15))",
            names.join(", ")
        ));
    }
    Ok(verified)
}

/// The length of the uncompressed wire name at the start of `data`, if there is one.
fn name_len(data: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let len = *data.get(at)? as usize;
        if len > 63 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            return (at <= 255).then_some(at);
        }
    }
}

/// What an RRSIG signs (RFC 4034 3.1.8.1): its data without the signature (the signer's
/// name in lower case), then the set's records in canonical order, each with the original
/// TTL. `labels`: the RRSIG's label count (fewer than the owner's: a wildcard's expansion).
fn signed_data(owner: &[u8], rtype: u16, set: &[WireRecord], head: &[u8], ttl: u32, labels: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + set.iter().map(|r| owner.len() + 10 + r.rdata.len()).sum::<usize>());
    out.extend_from_slice(&head[..18]);
    out.extend(head[18..].iter().map(u8::to_ascii_lowercase));
    let owner = wildcard_owner(owner, labels);
    let mut datas: Vec<&[u8]> = set.iter().map(|r| r.rdata).collect();
    datas.sort_unstable();
    datas.dedup();
    for d in datas {
        out.extend_from_slice(&owner);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(d.len() as u16).to_be_bytes());
        out.extend_from_slice(d);
    }
    out
}

/// `owner` as signed by an RRSIG of `labels` labels: itself, or `*.` and its last `labels`.
fn wildcard_owner(owner: &[u8], labels: u8) -> Vec<u8> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at < owner.len() && owner[at] != 0 {
        starts.push(at);
        at += 1 + owner[at] as usize;
    }
    let labels = labels as usize;
    if labels >= starts.len() {
        return owner.to_vec();
    }
    let mut out = vec![1, b'*'];
    out.extend_from_slice(&owner[starts[starts.len() - labels]..]);
    out
}

/// Whether `signature` over `data` verifies with `key` (ring).
fn verify(key: &Key, data: &[u8], signature: &[u8]) -> bool {
    use ring::signature as sig;
    let point = |len: usize| (key.public.len() == len).then(|| [&[4u8][..], key.public].concat());
    match key.algorithm {
        13 => point(64).is_some_and(|p| {
            sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, p).verify(data, signature).is_ok()
        }),
        14 => point(96).is_some_and(|p| {
            sig::UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, p).verify(data, signature).is_ok()
        }),
        15 => sig::UnparsedPublicKey::new(&sig::ED25519, key.public).verify(data, signature).is_ok(),
        8 | 10 => {
            // RFC 3110 2: the exponent's length (one byte, or zero and two), exponent, modulus.
            let Some((&first, rest)) = key.public.split_first() else { return false };
            let (len, rest) = match first {
                0 if rest.len() >= 2 => (u16::from_be_bytes([rest[0], rest[1]]) as usize, &rest[2..]),
                0 => return false,
                n => (n as usize, rest),
            };
            if rest.len() <= len {
                return false;
            }
            let (e, n) = rest.split_at(len);
            let params = if key.algorithm == 8 {
                &sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
            } else {
                &sig::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY
            };
            sig::RsaPublicKeyComponents { n, e }.verify(params, data, signature).is_ok()
        }
        _ => false,
    }
}

/// The NSEC chain: every name the zone is authoritative for has an NSEC, and following
/// their next names from the apex visits each once and comes back to the apex. A zone
/// without NSEC records (NSEC3, which lct-dns does not serve) is not checked here.
fn check_chain<'a>(
    sets: &HashMap<(&'a [u8], u16), Vec<WireRecord<'a>>>,
    order: &[(&'a [u8], u16)],
    apex: &'a [u8],
    below_cut: &dyn Fn(&[u8]) -> bool,
) -> Result<(), (Vec<u8>, String)> {
    let mut next: HashMap<&'a [u8], Vec<u8>> = HashMap::new();
    for &(owner, rtype) in order {
        if rtype != NSEC {
            continue;
        }
        let data = sets[&(owner, rtype)][0].rdata;
        let len = name_len(data).ok_or((owner.to_vec(), "an NSEC whose next name is malformed".to_string()))?;
        next.insert(owner, data[..len].to_ascii_lowercase());
    }
    if next.is_empty() {
        return Ok(());
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

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
