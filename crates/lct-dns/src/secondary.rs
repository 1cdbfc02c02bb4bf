//! Secondary zones: each `[[primary]]` zone is followed from its primary (lct-dns, BIND,
//! Knot) as RFC 1034 and 1996 say: its SOA is asked every `refresh` seconds (every `retry`
//! after a failure) and at once on a NOTIFY; a newer serial is fetched by IXFR (RFC 1995),
//! falling back to AXFR; every exchange signed with the zone's key. The copy is kept in the
//! state directory and served after a restart; while the primary is unreachable the last
//! good copy is served until `expire` seconds after the last successful refresh, then the
//! zone answers SERVFAIL until a refresh succeeds again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{Client, Ixfr};
use crate::journal::{Change, Known};
use crate::live::Live;
use crate::served::Served;
use crate::settings::Primary;
use crate::stats::Event;
use crate::tsig::now;
use crate::validate::{Anchors, Scope};
use crate::wire::WireBatch;
use crate::wire::{normal, serial_of};
use crate::zone::{DnsRecord, RecordType};

/// Before the first copy: retries 1, 2, 4... seconds apart, at most this.
const FIRST_RETRY_MAX: u64 = 60;

/// Follows every secondary zone, each in a task of its own.
pub fn follow_all(live: &Live) {
    for primary in live.current().settings.primaries.clone() {
        tokio::spawn(follow(live.clone(), primary));
    }
}

/// When the zone was last refreshed: a file beside the zones in the state directory.
fn refreshed_file(live: &Live, zone: &str) -> PathBuf {
    let state = live.current().settings.state_file.clone();
    state.with_file_name(format!(
        "{}-secondary-{}",
        state.file_stem().map_or("zones".into(), |s| s.to_string_lossy()),
        zone.trim_end_matches('.')
    ))
}

/// refresh, retry and expire of an SOA's data.
fn timers(soa: Option<&DnsRecord>) -> (u64, u64, u64) {
    let fields: Vec<u64> =
        soa.map(|s| s.data.split_whitespace().skip(3).filter_map(|f| f.parse().ok()).collect()).unwrap_or_default();
    match fields.as_slice() {
        [refresh, retry, expire, ..] => (*refresh, *retry, *expire),
        _ => (FIRST_RETRY_MAX, FIRST_RETRY_MAX, u64::MAX),
    }
}

fn soa_of(served: &Served, zone: &str) -> Option<DnsRecord> {
    served.records.iter().find(|r| r.zone == zone && r.rtype == RecordType::SOA).cloned()
}

async fn follow(live: Live, primary: Primary) {
    let zone = primary.zone.clone();
    let poke = live.refresher(&zone);
    let stamp = refreshed_file(&live, &zone);
    let mut refreshed: Option<u64> = std::fs::read_to_string(&stamp).ok().and_then(|t| t.trim().parse().ok());
    let mut first_retry = 1;
    loop {
        let ours = soa_of(&live.current(), &zone);
        let wait = match refresh(&live, &primary, ours.clone()).await {
            Ok(changed) => {
                // The primary's version serves (or ours is it): nothing refused stands.
                crate::stats::zone_refused(&zone, None);
                let t = now();
                refreshed = Some(t);
                let _ = lct_core::fsutil::atomic_write(&stamp, t.to_string().as_bytes(), 0o640);
                if let Some(what) = changed {
                    tracing::info!("zone {zone}: {what} from {}", primary.address);
                }
                if live.current().settings.expired.lock().expect("not poisoned").remove(&zone) {
                    tracing::info!("zone {zone}: served again");
                    rebuild(&live, &zone, None, None).await;
                }
                timers(soa_of(&live.current(), &zone).as_ref()).0
            }
            Err(e) => {
                if let Some(refused) = e.downcast_ref::<crate::validate::Refused>() {
                    // The primary's version is broken (or forged): loud, counted, kept out.
                    tracing::error!(
                        "{refused}: the version from {} is refused, the previous one serves on",
                        primary.address
                    );
                    crate::stats::event(Event::ValidationRefused);
                    crate::stats::zone_refused(&zone, Some(refused.serial));
                } else {
                    tracing::warn!("zone {zone}: refresh from {} failed: {e:#}", primary.address);
                }
                crate::stats::event(Event::TransferInFailed);
                if ours.is_none() {
                    // Nothing to serve yet: try again soon, backing off.
                    first_retry = (first_retry * 2).min(FIRST_RETRY_MAX);
                    first_retry / 2
                } else {
                    timers(ours.as_ref()).1
                }
            }
        };
        // The copy expires `expire` seconds after the last good refresh.
        let expire = timers(soa_of(&live.current(), &zone).as_ref()).2;
        let left = refreshed.map(|t| (t.saturating_add(expire)).saturating_sub(now()));
        if left == Some(0) && soa_of(&live.current(), &zone).is_some() {
            tracing::error!("zone {zone}: not refreshed for {expire} s (its SOA's expire): SERVFAIL until it is");
            live.current().settings.expired.lock().expect("not poisoned").insert(zone.clone());
            rebuild(&live, &zone, Some(Vec::new()), None).await;
        }
        let wait = left.filter(|l| *l > 0).map_or(wait, |l| wait.min(l)).max(1);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            _ = poke.notified() => tracing::info!("zone {zone}: NOTIFY: refreshing"),
        }
    }
}

/// One refresh: the primary's SOA, and if newer, its changes. `Some(what came)` when the
/// copy changed.
async fn refresh(live: &Live, primary: &Primary, ours: Option<DnsRecord>) -> anyhow::Result<Option<String>> {
    let client = Client { server: primary.address, key: primary.key.clone(), timeout: Duration::from_secs(10) };
    let zone = primary.zone.clone();
    let served = live.current();
    let generation = live.generation();
    let started = std::time::Instant::now();
    let validate = primary.validate;
    let ds = primary.ds.clone();
    let fetched = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Fetched>> {
        // A copy signed now stays signed: a version without its signatures is refused.
        let was_signed = served.records.iter().any(|r| r.zone == zone && r.rtype == RecordType::DNSKEY);
        // Key continuity: the next version's keys are signed by one of these.
        let keys = served.records.iter().filter(|r| r.zone == zone && r.rtype == RecordType::DNSKEY);
        let keys = crate::validate::batch_of(keys).map_err(|e| anyhow::anyhow!("zone {zone}: its DNSKEY set: {e}"))?;
        let anchors = Anchors { keys: keys.iter().map(|k| k.rdata.to_vec()).collect(), ds };
        let check = Check { validate, was_signed, anchors };
        // Nothing yet: straight to the transfer (its first record is the SOA).
        let Some(ours) = ours else { return Ok(Some(full_transfer(&client, &zone, &served, &check)?)) };
        let theirs = client.soa(&zone)?;
        let their_serial = crate::wire::soa_serial(&theirs.data).unwrap_or_default();
        let our_serial = crate::wire::soa_serial(&ours.data).unwrap_or_default();
        if (their_serial.wrapping_sub(our_serial) as i32) <= 0 {
            return Ok(None); // ours is current (or newer: a primary restored from backup waits)
        }
        match client.ixfr(&zone, &ours) {
            Ok(Ixfr::UpToDate) => Ok(None),
            Ok(Ixfr::Full(records)) => {
                check.records(&zone, &records, &Scope::Whole)?;
                Ok(Some(Fetched::Zone(records, "IXFR (the whole zone)".into(), None)))
            }
            Ok(Ixfr::Incremental(soa, changes)) => {
                let how = format!("IXFR ({} changes)", changes.len());
                // (The zone is copied only now: most refreshes find it current.)
                let current = served.records.iter().filter(|r| r.zone == zone).cloned().collect();
                let records = apply(current, soa, &changes);
                check.records(&zone, &records, &touched(&changes))?;
                Ok(Some(Fetched::Zone(records, how, Some(changes))))
            }
            Err(e) => {
                tracing::info!("zone {zone}: IXFR failed ({e}); full transfer");
                Ok(Some(full_transfer(&client, &zone, &served, &check)?))
            }
        }
    })
    .await??;
    let zone = &primary.zone;
    let (serial, how) = match fetched {
        None => return Ok(None),
        Some(Fetched::Zone(records, how, steps)) => {
            tracing::debug!("zone {zone}: {how} of {} records in {:?}", records.len(), started.elapsed());
            let serial = serial_of(&records, zone).unwrap_or_default();
            let known = steps.map(|steps| Known { zone: zone.clone(), steps });
            rebuild(live, zone, Some(records), known).await;
            (serial, how)
        }
        Some(Fetched::Built(answers, batches)) => {
            let turn = live.update_lock().await;
            let current = live.current();
            let serial = batches
                .first()
                .and_then(|b| b.iter().next())
                .and_then(|soa| soa.to_text(zone))
                .and_then(|soa| crate::wire::soa_serial(&soa.data))
                .unwrap_or_default();
            if live.generation() == generation {
                // The tables serve at once; the records' text follows (made meanwhile, on
                // another core, with the update lock held: no other change comes between).
                let settings = Arc::clone(&current.settings);
                live.swap_tables(Served {
                    records: Arc::clone(&current.records),
                    answers: Arc::new(answers),
                    settings: Arc::clone(&settings),
                    settling: Some(zone.clone()),
                    zone_serials: Default::default(),
                });
                tracing::debug!("zone {zone}: its tables serve {:?} after the refresh began", started.elapsed());
                let answers = Arc::clone(&live.current().answers);
                let at = zone.clone();
                let records =
                    tokio::task::spawn_blocking(move || with_transferred(&current.records, &at, &batches)).await?;
                install(
                    live,
                    Served {
                        records: Arc::new(records),
                        answers,
                        settings,
                        settling: None,
                        zone_serials: Default::default(),
                    },
                    None,
                );
                drop(turn);
            } else {
                // Another zone changed while this one arrived: built again on top of it.
                drop(turn);
                let records = batches.iter().flat_map(|b| b.texts(zone)).collect();
                rebuild(live, zone, Some(records), None).await;
            }
            (serial, "AXFR".to_string())
        }
    };
    tracing::debug!("zone {zone}: served {:?} after the refresh began", started.elapsed());
    crate::stats::event(if how.starts_with("IXFR") { Event::IxfrIn } else { Event::AxfrIn });
    Ok(Some(format!("serial {serial} by {how}")))
}

/// What a refresh brought: the zone's records (an IXFR), or, from a full transfer, what is
/// served with it, built while it arrived.
enum Fetched {
    Zone(Vec<DnsRecord>, String, Option<Vec<Change>>),
    /// The tables with the new copy, and the zone's records as they came off the wire.
    Built(crate::fast::Answers, Vec<WireBatch>),
}

/// An AXFR of `zone`, the answer tables built while it arrives: the other zones' records
/// first, then each message's records, straight off the wire, as the client hands them over.
/// The records' text (what the state file, the journal and updates read) is made later,
/// once the tables serve.
fn full_transfer(client: &Client, zone: &str, served: &Served, check: &Check) -> anyhow::Result<Fetched> {
    let settings = Arc::clone(&served.settings);
    let modes = |z: &str| crate::mode::mode_of(&settings.modes, z);
    let mut builder = crate::tables::Builder::new(&modes, served.records.len().max(1024));
    for r in served.records.iter().filter(|r| r.zone != zone) {
        builder.add(r)?;
    }
    let started = std::time::Instant::now();
    let mut refused = None;
    let mut batches: Vec<WireBatch> = Vec::new();
    client.transfer_into(zone, |batch: WireBatch| {
        for r in batch.iter() {
            if refused.is_none()
                && let Err(e) = builder.add_wire(zone, &r)
            {
                refused = Some(e);
            }
        }
        batches.push(batch);
    })?;
    if let Some(e) = refused {
        anyhow::bail!("zone {zone}: the copy is refused, the previous one serves on: {e}");
    }
    check.batches(zone, &batches)?;
    let received = started.elapsed();
    let answers = Served::with_expiry(builder.finish(), &settings);
    tracing::debug!(
        "zone {zone}: AXFR of {} records received and read in {received:?}, tables finished in {:?}",
        batches.iter().map(WireBatch::len).sum::<usize>(),
        started.elapsed() - received
    );
    Ok(Fetched::Built(answers, batches))
}

/// Whether and how a transferred version is validated before it serves.
#[derive(Debug, Clone)]
struct Check {
    /// `dnssec_validation` is on for the zone.
    validate: bool,
    /// The version served now is signed.
    was_signed: bool,
    /// What the new version's DNSKEY set must be signed by.
    anchors: Anchors,
}

impl Check {
    /// Validates a full transfer's records as they came off the wire.
    fn batches(&self, zone: &str, batches: &[WireBatch]) -> Result<(), crate::validate::Refused> {
        if !self.validate {
            return Ok(());
        }
        let serial = batches
            .first()
            .and_then(|b| b.iter().next())
            .filter(|soa| soa.rtype == 6)
            .and_then(|soa| soa.to_text(zone))
            .and_then(|soa| crate::wire::soa_serial(&soa.data))
            .unwrap_or_default();
        let started = std::time::Instant::now();
        let records = batches.iter().flat_map(WireBatch::iter);
        let checked =
            crate::validate::check(zone, serial, records, &Scope::Whole, now(), self.was_signed, &self.anchors)?;
        tracing::debug!(
            "zone {zone}: serial {serial} validated ({} signatures) in {:?}",
            checked.verified,
            started.elapsed()
        );
        Ok(())
    }

    /// Validates a version made of `records` (an IXFR's), the sets `scope` names.
    fn records(&self, zone: &str, records: &[DnsRecord], scope: &Scope) -> anyhow::Result<()> {
        if !self.validate {
            return Ok(());
        }
        let serial = serial_of(records, zone).unwrap_or_default();
        let wanted = |r: &&DnsRecord| match scope {
            Scope::Whole => true,
            Scope::Owners(owners) => {
                r.name == zone || crate::wire::wire_name(&r.name).is_some_and(|n| owners.contains(&n))
            }
        };
        let batch = crate::validate::batch_of(records.iter().filter(wanted))
            .map_err(|e| anyhow::anyhow!("zone {zone} serial {serial}: {e}"))?;
        crate::validate::check(zone, serial, batch.iter(), scope, now(), self.was_signed, &self.anchors)?;
        Ok(())
    }
}

/// The owners an incremental transfer's changes touched (wire form, lower case): their
/// sets are what it validates, with the apex's SOA and DNSKEY sets. A change to the keys
/// (DNSKEY, CDS, CDNSKEY) or to any NSEC reaches past the names it touches (a key removed
/// whose signatures remain elsewhere, a chain re-pointed): the whole version is validated.
fn touched(changes: &[Change]) -> Scope {
    let names = changes.iter().flat_map(|c| c.removed.iter().chain(&c.added));
    let wide = [RecordType::DNSKEY, RecordType::CDS, RecordType::CDNSKEY, RecordType::NSEC];
    if names.clone().any(|r| wide.contains(&r.rtype)) {
        return Scope::Whole;
    }
    Scope::Owners(names.filter_map(|r| crate::wire::wire_name(&r.name.to_ascii_lowercase())).collect())
}

/// Every zone's records but `zone`'s from `records`, then `zone`'s as `batches` have them.
fn with_transferred(records: &[DnsRecord], zone: &str, batches: &[WireBatch]) -> Vec<DnsRecord> {
    let mut all: Vec<DnsRecord> = Vec::with_capacity(records.len() + batches.iter().map(WireBatch::len).sum::<usize>());
    all.extend(records.iter().filter(|r| r.zone != zone).cloned());
    all.extend(batches.iter().flat_map(|b| b.texts(zone)));
    all
}

/// Serves `served` (the caller holds the update lock), then keeps it in the state
/// directory: a copy lost to a crash is transferred again.
fn install(live: &Live, served: Served, known: Option<Known>) {
    live.swap_known(served, known);
    let current = live.current();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = current.persist() {
            tracing::error!("keeping the zones: {e:#}");
        }
    });
}

/// The zone after an incremental transfer's changes, in order.
fn apply(mut records: Vec<DnsRecord>, soa: DnsRecord, changes: &[Change]) -> Vec<DnsRecord> {
    for Change { removed, added, .. } in changes {
        let gone: std::collections::HashSet<_> = removed.iter().map(|r| normal(&r.name, r.rtype, &r.data)).collect();
        // Only records whose name lost something are compared in full (a change touches few
        // names of a big zone).
        let names: std::collections::HashSet<String> = removed.iter().map(|r| r.name.to_ascii_lowercase()).collect();
        records.retain(|r| {
            r.rtype == RecordType::SOA
                || !names.contains(r.name.as_str()) // names come lower-cased off the wire
                || !gone.contains(&normal(&r.name, r.rtype, &r.data))
        });
        records.extend(added.iter().filter(|r| r.rtype != RecordType::SOA).cloned());
    }
    records.retain(|r| r.rtype != RecordType::SOA);
    records.insert(0, soa);
    records
}

/// Serves `zone` as `records` (`None`: as it is, the other zones kept; rebuilt so that an
/// expiry mark is read again), kept in the state directory first.
async fn rebuild(live: &Live, zone: &str, records: Option<Vec<DnsRecord>>, known: Option<Known>) {
    let _turn = live.update_lock().await;
    let served = live.current();
    let mut all: Vec<DnsRecord> =
        served.records.iter().filter(|r| records.is_none() || r.zone != zone).cloned().collect();
    all.extend(records.unwrap_or_default());
    let settings = Arc::clone(&served.settings);
    let built = tokio::task::spawn_blocking(move || Served::build(all, settings)).await;
    match built {
        Ok(Ok(served)) => install(live, served, known),
        Ok(Err(e)) => tracing::error!("zone {zone}: the copy is refused, the previous one serves on: {e:#}"),
        Err(e) => tracing::error!("zone {zone}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::rdata::NULL;
    use hickory_proto::rr::{Name, RData, Record};

    use super::*;
    use crate::client::{Ixfr, parse_ixfr};
    use crate::zone::fixtures::rec;

    fn soa(serial: u32) -> DnsRecord {
        rec(
            "lct.internal.",
            RecordType::SOA,
            &format!("ns1.lct.internal. hostmaster.lct.internal. {serial} 3600 600 1209600 300"),
        )
    }

    fn dnssec(name: &str, rtype: RecordType, bytes: &[u8]) -> Record {
        let data = RData::Unknown { code: rtype, rdata: NULL::with(bytes.to_vec()) };
        Record::from_rdata(Name::from_ascii(name).unwrap(), 300, data)
    }

    /// An IXFR from a signing primary (Knot, BIND) replaces a name's signatures and NSEC as it
    /// replaces its address: the old RRSIG goes, the new one comes, bytes as sent; the other
    /// names' signatures stay.
    #[test]
    fn an_incremental_transfer_applies_new_signatures() {
        let old_sig: Vec<u8> = [&[0, 1, 13, 3][..], &[0; 20], b"old-signature"].concat();
        let new_sig: Vec<u8> = [&[0, 1, 13, 3][..], &[0; 20], b"new-signature"].concat();
        let nsec: &[u8] = b"\x01b\x03lct\x08internal\x00\x00\x06\x40\x00\x00\x00\x00\x03";
        let wire = |r: &DnsRecord| crate::wire::to_wire(r).unwrap();
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_answer(wire(&soa(8)));
        m.add_answer(wire(&soa(7)));
        m.add_answer(wire(&rec("a.lct.internal.", RecordType::A, "10.0.0.1")));
        m.add_answer(dnssec("a.lct.internal.", RecordType::RRSIG, &old_sig));
        m.add_answer(wire(&soa(8)));
        m.add_answer(wire(&rec("a.lct.internal.", RecordType::A, "10.0.0.2")));
        m.add_answer(dnssec("a.lct.internal.", RecordType::RRSIG, &new_sig));
        m.add_answer(dnssec("a.lct.internal.", RecordType::NSEC, nsec));
        m.add_answer(wire(&soa(8)));
        let mut batch = WireBatch::default();
        crate::wire::read_all_answers(&m.to_vec().unwrap(), &mut batch).unwrap();
        let records: Vec<DnsRecord> = batch.texts("lct.internal.").collect();
        let Some(Ixfr::Incremental(new_soa, changes)) = parse_ixfr(&records).unwrap() else { panic!("{records:?}") };
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].removed.iter().filter(|r| r.rtype == RecordType::RRSIG).count(), 1);
        assert_eq!(changes[0].added.len(), 3, "{:?}", changes[0].added);

        let text = |rtype, bytes: &[u8]| DnsRecord {
            view: crate::zone::View::Both,
            ..rec("a.lct.internal.", rtype, &crate::wire::generic_text(bytes))
        };
        let other_sig = DnsRecord { name: "b.lct.internal.".into(), ..text(RecordType::RRSIG, &old_sig) };
        let current = vec![
            soa(7),
            rec("a.lct.internal.", RecordType::A, "10.0.0.1"),
            text(RecordType::RRSIG, &old_sig),
            other_sig.clone(),
        ];
        let after = apply(current, new_soa, &changes);
        assert!(after.contains(&text(RecordType::RRSIG, &new_sig)), "{after:?}");
        assert!(after.contains(&text(RecordType::NSEC, nsec)));
        assert!(!after.contains(&text(RecordType::RRSIG, &old_sig)), "the old signature stays: {after:?}");
        assert!(after.contains(&other_sig), "another name's signature went");
        assert_eq!(crate::wire::serial_of(&after, "lct.internal."), Some(8));
    }

    /// An IXFR that changes the keys or any NSEC is validated whole (a key removed whose
    /// signatures remain at names the change did not touch); one that changes addresses
    /// only, at the names it touched.
    #[test]
    fn a_change_to_the_keys_or_an_nsec_is_validated_whole() {
        let step = |rtype: RecordType| Change {
            from: 7,
            to: 8,
            removed: vec![rec("lct.internal.", rtype, "\\# 4 01020304")],
            added: vec![rec("a.lct.internal.", RecordType::A, "10.0.0.2")],
        };
        for rtype in [RecordType::DNSKEY, RecordType::CDS, RecordType::CDNSKEY, RecordType::NSEC] {
            assert!(matches!(touched(&[step(RecordType::A), step(rtype)]), Scope::Whole), "{rtype}");
        }
        let Scope::Owners(owners) = touched(&[step(RecordType::A)]) else { panic!("an address change is narrow") };
        assert_eq!(owners.len(), 2);
    }
}
