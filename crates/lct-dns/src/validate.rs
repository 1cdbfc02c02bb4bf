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

/// Distinct signatures a set may carry (one per key of a rollover's few, and algorithms):
/// more is refused, as copies of one signature are counted once (each would cost a
/// verification).
pub const SIGNATURES_PER_SET: usize = 8;

/// Keys a zone's DNSKEY set may hold (a rollover of each of a KSK and a ZSK needs four).
pub const DNSKEY_SET_MAX: usize = 32;

/// The REVOKE flag of a DNSKEY (RFC 5011 3): such a key verifies nothing.
const REVOKE: u16 = 0x0080;

/// What a new version's DNSKEY set must be signed by (key continuity): a key of the
/// version accepted last, or one a configured DS names. Both empty: the zone's first
/// version, accepted on its own signatures (nothing to continue from).
#[derive(Debug, Clone, Default)]
pub struct Anchors {
    /// The DNSKEY records' data of the version served now (empty: none, or unsigned).
    pub keys: Vec<Vec<u8>>,
    /// DS records' data configured for the zone (`ds = [...]` in its `[[primary]]`).
    pub ds: Vec<Vec<u8>>,
}

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
    /// The whole DNSKEY data (what continuity and a DS are matched on).
    rdata: &'a [u8],
}

/// The zone's keys by (tag, algorithm): a signature's candidates without a scan.
type KeyIndex<'k, 'a> = HashMap<(u16, u8), Vec<&'k Key<'a>>>;

/// Checks the version of `zone` (fully qualified) made of `records`, serial `serial`, as at
/// `now` (Unix seconds). `was_signed`: the version served now is signed (an unsigned one
/// then is refused: the parent's DS would make validating resolvers fail the zone).
/// `anchors`: what the DNSKEY set must be signed by.
pub fn check<'a>(
    zone: &str,
    serial: u32,
    records: impl IntoIterator<Item = WireRecord<'a>>,
    scope: &Scope,
    now: u64,
    was_signed: bool,
    anchors: &Anchors,
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
    if dnskeys.len() > DNSKEY_SET_MAX {
        return Err(refuse(
            &apex,
            DNSKEY,
            format!("{} keys in the DNSKEY set, more than the {DNSKEY_SET_MAX} taken", dnskeys.len()),
        ));
    }
    // Zone keys of protocol 3 not revoked (a revoked key must not verify, RFC 5011 2.1).
    let flags = |d: &[u8]| u16::from_be_bytes([d[0], d[1]]);
    let keys: Vec<Key> = dnskeys
        .iter()
        .filter(|k| k.rdata.len() > 4 && k.rdata[0] & 1 == 1 && k.rdata[2] == 3 && flags(k.rdata) & REVOKE == 0)
        .map(|k| Key {
            tag: hickory_proto::dnssec::rdata::DNSKEY::calculate_key_tag_internal(k.rdata),
            algorithm: k.rdata[3],
            public: &k.rdata[4..],
            rdata: k.rdata,
        })
        .collect();
    let mut index: KeyIndex = HashMap::new();
    for key in &keys {
        index.entry((key.tag, key.algorithm)).or_default().push(key);
    }
    if !keys.iter().any(|k| supported(k.algorithm)) {
        let algorithms: Vec<String> = keys.iter().map(|k| algorithm_name(k.algorithm)).collect();
        let revoked = match dnskeys.iter().filter(|k| k.rdata.len() > 4 && flags(k.rdata) & REVOKE != 0).count() {
            0 => String::new(),
            n => format!("; {n} revoked, which verify nothing"),
        };
        return Err(refuse(
            &apex,
            DNSKEY,
            format!("no key of an algorithm this server can verify (the zone's: {}{revoked})", algorithms.join(", ")),
        ));
    }

    // Delegations: their NS sets and what lies below them (glue) are not signed here.
    let cuts: HashSet<&[u8]> =
        sets.keys().filter(|(owner, t)| *t == NS && *owner != apex.as_slice()).map(|(owner, _)| *owner).collect();
    let below_cut = |owner: &[u8]| ancestors(owner, &apex).any(|a| cuts.contains(a));

    // An incremental transfer's touched names: their NSEC's bitmap names what is there now
    // (a type added or removed without the NSEC following would go unseen otherwise).
    if let Scope::Owners(owners) = scope {
        let mut types_at: HashMap<&[u8], HashSet<u16>> = HashMap::new();
        for &(owner, rtype) in order.iter().filter(|(owner, _)| owners.contains(*owner)) {
            types_at.entry(owner).or_default().insert(rtype);
        }
        for (owner, present) in &types_at {
            if !present.contains(&NSEC) || below_cut(owner) {
                continue;
            }
            let data = sets[&(*owner, NSEC)][0].rdata;
            let listed = name_len(data).and_then(|len| type_bitmap(&data[len..]));
            let listed = listed.ok_or_else(|| refuse(owner, NSEC, "an NSEC that is malformed".into()))?;
            check_bitmap(&listed, present, cuts.contains(owner)).map_err(|why| refuse(owner, NSEC, why))?;
        }
    }
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
        checked.verified += verify_set(owner, rtype, set, signatures, &index, &apex, now)
            .map_err(|reason| refuse(owner, rtype, reason))?;
    }
    if !anchors.keys.is_empty() || !anchors.ds.is_empty() {
        let signatures = sigs.get(&(apex.as_slice(), DNSKEY)).map(Vec::as_slice).unwrap_or_default();
        continuity(&apex, &sets[&(apex.as_slice(), DNSKEY)], signatures, &index, anchors)
            .map_err(|reason| refuse(&apex, DNSKEY, reason))?;
    }
    if matches!(scope, Scope::Whole) {
        let at_cut = |owner: &[u8]| cuts.contains(owner);
        check_chain(&sets, &order, &apex, &below_cut, &at_cut)
            .map_err(|(owner, reason)| refuse(&owner, NSEC, reason))?;
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
/// Copies of one signature count once; more than [`SIGNATURES_PER_SET`] distinct ones are
/// refused; the set's canonical form is built once, not per signature.
fn verify_set(
    owner: &[u8],
    rtype: u16,
    set: &[WireRecord],
    signatures: &[&[u8]],
    keys: &KeyIndex,
    apex: &[u8],
    now: u64,
) -> Result<usize, String> {
    if signatures.is_empty() {
        return Err("no RRSIG".into());
    }
    // Hashed, not sorted: a million copies cost a million hashes, not n log n comparisons.
    let distinct: HashSet<&[u8]> = signatures.iter().copied().collect();
    let mut signatures: Vec<&[u8]> = distinct.into_iter().collect();
    signatures.sort_unstable(); // (a few: the order errors are found in does not vary)
    if signatures.len() > SIGNATURES_PER_SET {
        return Err(format!("{} RRSIGs, more than the {SIGNATURES_PER_SET} taken per set", signatures.len()));
    }
    // RFC 4035 5.3.1: in a zone (no wildcard expansion) the labels field is the owner's
    // label count, a leading `*` not counted.
    let labels = label_count(owner);
    // Serial number arithmetic (RFC 4034 3.1.5): the times wrap every 136 years.
    let now = now as u32;
    let mut verified = 0;
    let mut unknown: Vec<u8> = Vec::new();
    let mut canonical = Canonical::new(owner, rtype, set);
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
        if sig[3] != labels {
            return Err(format!("{named} has labels {}, but its owner has {labels}", sig[3]));
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
        let Some(candidates) = keys.get(&(tag, algorithm)) else {
            return Err(format!("{named}: no such key in the zone's DNSKEY set (or it is revoked)"));
        };
        let signed = canonical.signed_data(&sig[..18 + signer_len], original_ttl);
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

/// Key continuity: one signature over the new DNSKEY set verifies with a key of the last
/// accepted version, or one a configured DS names; else whoever holds the transfer key
/// could put in keys of their own and sign everything with them.
fn continuity(
    apex: &[u8],
    dnskeys: &[WireRecord],
    signatures: &[&[u8]],
    keys: &KeyIndex,
    anchors: &Anchors,
) -> Result<(), String> {
    let trusted = |key: &Key| {
        anchors.keys.iter().any(|k| k.as_slice() == key.rdata) || anchors.ds.iter().any(|ds| ds_matches(ds, apex, key))
    };
    let mut canonical = Canonical::new(apex, DNSKEY, dnskeys);
    let mut signatures = signatures.to_vec();
    signatures.sort_unstable();
    signatures.dedup();
    for sig in signatures.iter().take(SIGNATURES_PER_SET) {
        let tag = u16::from_be_bytes([sig[16], sig[17]]);
        let Some(signer_len) = name_len(&sig[18..]) else { continue };
        let Some(candidates) = keys.get(&(tag, sig[2])) else { continue };
        let field = |i: usize| u32::from_be_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
        let signed = canonical.signed_data(&sig[..18 + signer_len], field(4));
        let signature = &sig[18 + signer_len..];
        if candidates.iter().take(KEYS_PER_TAG).any(|k| trusted(k) && verify(k, &signed, signature)) {
            return Ok(());
        }
    }
    let what = match (anchors.keys.is_empty(), anchors.ds.is_empty()) {
        (false, true) => "a key of the version served now",
        (true, false) => "a key the configured DS names",
        _ => "a key of the version served now or the configured DS",
    };
    Err(format!("the DNSKEY set is not signed by {what}: a new set of keys is taken only from one that was trusted"))
}

/// Whether DS data `ds` (RFC 4034 5.1: tag, algorithm, digest type, digest) names `key`
/// of the zone at `apex` (SHA-256 and SHA-384 digests).
fn ds_matches(ds: &[u8], apex: &[u8], key: &Key) -> bool {
    use ring::digest;
    if ds.len() < 5 || u16::from_be_bytes([ds[0], ds[1]]) != key.tag || ds[2] != key.algorithm {
        return false;
    }
    let algorithm = match ds[3] {
        2 => &digest::SHA256,
        4 => &digest::SHA384,
        _ => return false,
    };
    let mut context = digest::Context::new(algorithm);
    context.update(&apex.to_ascii_lowercase());
    context.update(key.rdata);
    context.finish().as_ref() == &ds[4..]
}

/// DS data from its presentation form, `TAG ALGORITHM DIGEST-TYPE HEX` (RFC 4034 5.3; the
/// digest may be split by spaces); only digests this server computes (2: SHA-256, 4:
/// SHA-384), of their length.
pub fn parse_ds(text: &str) -> Result<Vec<u8>, String> {
    let mut fields = text.split_whitespace();
    let mut number = |what: &str, max: u32| -> Result<u32, String> {
        let field = fields.next().ok_or(format!("no {what}: want \"TAG ALGORITHM DIGEST-TYPE HEX\""))?;
        field.parse::<u32>().ok().filter(|n| *n <= max).ok_or(format!("{what} {field:?} is not a number up to {max}"))
    };
    let (tag, algorithm, digest_type) =
        (number("key tag", 65535)?, number("algorithm", 255)?, number("digest type", 255)?);
    let hex: String = fields.collect();
    let digest_len = match digest_type {
        2 => 32,
        4 => 48,
        n => return Err(format!("digest type {n}: this server checks 2 (SHA-256) and 4 (SHA-384)")),
    };
    if hex.len() != digest_len * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("the digest is not {digest_len} bytes of hexadecimal"));
    }
    let mut out = Vec::with_capacity(4 + digest_len);
    out.extend_from_slice(&(tag as u16).to_be_bytes());
    out.extend_from_slice(&[algorithm as u8, digest_type as u8]);
    for pair in hex.as_bytes().chunks(2) {
        let pair = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
        out.push(u8::from_str_radix(pair, 16).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// The number of labels of wire name `owner`, the root and a leading `*` not counted.
fn label_count(owner: &[u8]) -> u8 {
    let mut count = 0u8;
    let mut at = 0;
    while at < owner.len() && owner[at] != 0 {
        if !(at == 0 && owner[0] == 1 && owner.get(1) == Some(&b'*')) {
            count = count.saturating_add(1);
        }
        at += 1 + owner[at] as usize;
    }
    count
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
/// TTL. The set's part is built once per TTL (the signatures of a set nearly always share
/// it), not per signature.
struct Canonical<'s> {
    owner: &'s [u8],
    rtype: u16,
    /// The set's distinct data, in canonical order.
    datas: Vec<&'s [u8]>,
    /// The set's part for the last TTL asked.
    built: Option<(u32, Vec<u8>)>,
}

impl<'s> Canonical<'s> {
    fn new(owner: &'s [u8], rtype: u16, set: &'s [WireRecord]) -> Canonical<'s> {
        let mut datas: Vec<&[u8]> = set.iter().map(|r| r.rdata).collect();
        datas.sort_unstable();
        datas.dedup();
        Canonical { owner, rtype, datas, built: None }
    }

    /// The bytes signed by the RRSIG whose fields up to its signer's name are `head`.
    fn signed_data(&mut self, head: &[u8], ttl: u32) -> Vec<u8> {
        if self.built.as_ref().is_none_or(|(t, _)| *t != ttl) {
            let mut out = Vec::with_capacity(self.datas.iter().map(|d| self.owner.len() + 10 + d.len()).sum::<usize>());
            for d in &self.datas {
                out.extend_from_slice(self.owner);
                out.extend_from_slice(&self.rtype.to_be_bytes());
                out.extend_from_slice(&1u16.to_be_bytes());
                out.extend_from_slice(&ttl.to_be_bytes());
                out.extend_from_slice(&(d.len() as u16).to_be_bytes());
                out.extend_from_slice(d);
            }
            self.built = Some((ttl, out));
        }
        let body = self.built.as_ref().map_or(&[][..], |(_, b)| b.as_slice());
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(&head[..18]);
        out.extend(head[18..].iter().map(u8::to_ascii_lowercase));
        out.extend_from_slice(body);
        out
    }
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

#[path = "validate_nsec.rs"]
mod nsec;
use nsec::{check_bitmap, check_chain, type_bitmap};

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
