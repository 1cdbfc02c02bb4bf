//! A new SOA serial for a signed zone whose key sets changed outside the timer: a key step
//! taken at a start or a reload (one that came due while the server was down, an `lct-dns
//! roll` or `ds-seen` read with the new configuration) changes the DNSKEY, CDS and CDNSKEY
//! sets and who signs, but not the records; with the serial kept, secondaries would keep
//! the old keys until the next change. What was served last is kept beside the key file
//! (`dnssec/ZONE.served`: the serial and a digest of the key sets), so a start compares
//! against the version before it, not just against the records.

use std::path::{Path, PathBuf};

use crate::sign::Dnssec;
use crate::zone::{DnsRecord, RecordType};

/// Where the serial and key sets served last of `zone` are kept.
pub fn served_file(dir: &Path, zone: &str) -> PathBuf {
    dir.join("dnssec").join(format!("{}served", zone.to_ascii_lowercase()))
}

/// The digest of what `zone`'s keys put in a version signed at `now`: the DNSKEY set, the
/// keys whose DS is asked for (CDS, CDNSKEY) and the keys that sign (their RRSIGs).
pub fn key_sets_digest(dnssec: &Dnssec, zone: &str, now: u64) -> Option<String> {
    let ring = dnssec.ring(zone)?;
    let plan = ring.plan(now).ok()?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (part, keys) in [
        ("published", &plan.published),
        ("submitting", &plan.submitting),
        ("key", &plan.key_signers),
        ("zone", &plan.zone_signers),
    ] {
        ctx.update(part.as_bytes());
        for key in keys {
            ctx.update(&(key.dnskey.len() as u32).to_be_bytes());
            ctx.update(&key.dnskey);
        }
    }
    Some(data_encoding::HEXLOWER.encode(ctx.finish().as_ref()))
}

/// RFC 1982: whether serial `a` is newer than `b`.
fn newer(a: u32, b: u32) -> bool {
    a != b && (a.wrapping_sub(b) as i32) > 0
}

/// The serial and digest kept for `zone` (`None`: none kept, or not readable as such).
fn kept(dir: &Path, zone: &str) -> Option<(u32, String)> {
    use std::io::Read;
    let mut text = String::new();
    // A few dozen bytes: anything longer is not this file's.
    std::fs::File::open(served_file(dir, zone)).ok()?.take(256).read_to_string(&mut text).ok()?;
    let mut fields = text.split_whitespace();
    let serial = fields.next()?.parse().ok()?;
    let digest = fields.next()?;
    (digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())).then(|| (serial, digest.to_string()))
}

/// Notes that `zone` is served at `serial` with key sets `digest`.
fn keep(dir: &Path, zone: &str, serial: u32, digest: &str) -> std::io::Result<()> {
    lct_core::fsutil::atomic_write(&served_file(dir, zone), format!("{serial} {digest}\n").as_bytes(), 0o600)
}

/// `records` with a new SOA serial for each signed zone whose key sets at `now` are not
/// those served last (one past the newer of the kept serial and the records' own), and the
/// serial and key sets noted. A zone seen the first time is noted as it is.
pub fn with_key_serials(dnssec: &Dnssec, mut records: Vec<DnsRecord>, now: u64) -> anyhow::Result<Vec<DnsRecord>> {
    let Some(dir) = dnssec.dir.clone() else { return Ok(records) };
    for zone in dnssec.zones() {
        let (Some(digest), Some(serial)) =
            (key_sets_digest(dnssec, &zone, now), crate::wire::serial_of(&records, &zone))
        else {
            continue;
        };
        let next = match kept(&dir, &zone) {
            None => serial,
            Some((kept_serial, kept_digest)) => {
                let base = if newer(kept_serial, serial) { kept_serial } else { serial };
                match (kept_digest == digest, base.wrapping_add(1)) {
                    (true, _) => base,
                    (false, 0) => 1,
                    (false, n) => n,
                }
            }
        };
        if next != serial {
            tracing::info!("zone {zone}: its keys changed since serial {serial} was served; serial {next}");
            set_serial(&mut records, &zone, next);
        }
        keep(&dir, &zone, next, &digest).map_err(|e| anyhow::anyhow!("{}: {e}", served_file(&dir, &zone).display()))?;
    }
    Ok(records)
}

/// Notes the key sets of the signed zones as `records` serve them (after the timer made a
/// version at `now`), so the next start does not count them as a change.
pub fn note_served(dnssec: &Dnssec, records: &[DnsRecord], now: u64) {
    let Some(dir) = &dnssec.dir else { return };
    for zone in dnssec.zones() {
        if let (Some(digest), Some(serial)) =
            (key_sets_digest(dnssec, &zone, now), crate::wire::serial_of(records, &zone))
            && let Err(e) = keep(dir, &zone, serial, &digest)
        {
            tracing::warn!("{}: {e} (the next start gives the zone a new serial)", served_file(dir, &zone).display());
        }
    }
}

fn set_serial(records: &mut [DnsRecord], zone: &str, serial: u32) {
    for r in records.iter_mut().filter(|r| r.rtype == RecordType::SOA && r.zone == zone) {
        let mut fields: Vec<String> = r.data.split_whitespace().map(String::from).collect();
        if let Some(f) = fields.get_mut(2) {
            *f = serial.to_string();
        }
        r.data = fields.join(" ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyroll::{Policy, ZoneTtls};
    use crate::keystate::Role;
    use crate::zonekeys::KeyAlgorithm;
    use std::collections::BTreeMap;

    const ZONE: &str = "lct.internal.";
    const TTLS: ZoneTtls = ZoneTtls { dnskey: 300, max: 600 };

    fn records(serial: u32) -> Vec<DnsRecord> {
        let soa = format!("ns1.lct.internal. hostmaster.lct.internal. {serial} 3600 600 86400 300");
        vec![DnsRecord {
            zone: ZONE.into(),
            name: ZONE.into(),
            rtype: RecordType::SOA,
            ttl: 300,
            data: soa,
            view: crate::zone::View::Both,
        }]
    }

    /// What a start does: the key file taken to `now` (with `roll` asked), then signed.
    fn start(dir: &Path, now: u64, roll: Option<Role>) -> Dnssec {
        let policy = Policy::default();
        let ring = crate::keystate::update(dir, ZONE, KeyAlgorithm::Ecdsa, now, |file| {
            let mut file = file;
            if let (Some(f), Some(role)) = (file.as_mut(), roll) {
                f.requests.roll.push(role);
            }
            crate::keyroll::advance(ZONE, KeyAlgorithm::Ecdsa, file, &policy, TTLS, now)
        })
        .unwrap();
        Dnssec::with_rings(BTreeMap::from([(ZONE.to_string(), ring)]), policy, dir.to_path_buf(), Default::default())
    }

    /// A restart that takes a key step (a ZSK rollover asked while the server was down)
    /// gives the zone a new serial; one that changes nothing keeps it; a step the timer
    /// already served (noted) is not counted twice.
    #[test]
    fn a_start_that_changes_the_keys_gives_a_new_serial() {
        let dir = lct_core::fsutil::temp_dir("lct-dns-keyserial").unwrap();
        let serial = |r: &[DnsRecord]| crate::wire::serial_of(r, ZONE).unwrap();
        let dnssec = start(dir.path(), 1_000, None);
        assert_eq!(serial(&with_key_serials(&dnssec, records(7), 1_000).unwrap()), 7, "first start");
        let dnssec = start(dir.path(), 1_010, None);
        assert_eq!(serial(&with_key_serials(&dnssec, records(7), 1_010).unwrap()), 7, "nothing changed");
        // `lct-dns roll ZONE zsk` while down: the new ZSK is published at the start.
        let dnssec = start(dir.path(), 1_020, Some(Role::Zsk));
        let after = with_key_serials(&dnssec, records(7), 1_020).unwrap();
        assert_eq!(serial(&after), 8, "a new DNSKEY set, a new serial");
        // The held records keep 8 now: a restart right after changes nothing more.
        assert_eq!(serial(&with_key_serials(&dnssec, after.clone(), 1_021).unwrap()), 8);
        // A build that failed after the note (records still at 7): the kept serial is newer.
        assert_eq!(serial(&with_key_serials(&dnssec, records(7), 1_022).unwrap()), 8);
        // The timer made serial 9 at the next step and noted it: no change counted at start.
        let dnssec = start(dir.path(), 1_030 + 300 + 3_600, None);
        note_served(&dnssec, &records(9), 1_030 + 300 + 3_600);
        assert_eq!(serial(&with_key_serials(&dnssec, records(9), 1_030 + 300 + 3_600).unwrap()), 9);
        assert!(newer(0, u32::MAX) && !newer(u32::MAX, 0) && !newer(5, 5));
    }
}
