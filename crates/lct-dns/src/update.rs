//! Dynamic updates (RFC 2136), the server side: an authenticated UPDATE is checked (zone,
//! prerequisites, update section), applied to a copy of the zone, given a new SOA serial,
//! appended to the state directory's update log and swapped in; the whole message or
//! nothing.

use std::collections::BTreeSet;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordData};

use crate::journal::{Change, Known};
use crate::live::Live;
use crate::request::zone_of_request;
use crate::served::Served;
use crate::updatelog::{FOLD_BYTES, append, fold, update_log_file};
use crate::wire::{from_wire, normal, serial_of};
use crate::zone::{DnsRecord, RecordType, assign_views, supported};

/// Applies an UPDATE: the whole message or nothing.
pub(crate) async fn apply_update(request: &Message, live: &Live) -> ResponseCode {
    let [question] = request.queries.as_slice() else { return ResponseCode::FormErr };
    if question.query_type() != RecordType::SOA {
        return ResponseCode::FormErr;
    }
    // One update at a time: each starts from what the previous one left.
    let _turn = live.update_lock().await;
    let served = live.current();
    let zone = match zone_of_request(request, &served.records) {
        Ok(zone) => zone,
        Err(code) => return code,
    };
    if served.settings.primaries.iter().any(|p| p.zone == zone) {
        tracing::warn!("zone {zone}: refused an update: this server is its secondary (update the primary)");
        return ResponseCode::NotAuth;
    }
    let (changed, step) = match changes(&served.records, &zone, request) {
        Ok(Some(changed)) => changed,
        Ok(None) => return ResponseCode::NoError,
        Err(code) => return code,
    };
    // The log's lines follow the state file's version: if the version served is not there
    // yet (a fold at start or reload failed), it is written now, or the update refused.
    if !live.log_base_kept() {
        let current = served.clone();
        match tokio::task::spawn_blocking(move || fold(&current)).await {
            Ok(Ok(())) => {
                live.set_log_base_kept(true);
                tracing::info!("the zones served are written to the state file; updates are taken again");
            }
            Ok(Err(e)) => {
                tracing::error!("zone {zone}: update refused: the zones served cannot be written first: {e:#}");
                return ResponseCode::ServFail;
            }
            Err(e) => {
                tracing::error!("zone {zone}: update refused: writing the zones served: {e}");
                return ResponseCode::ServFail;
            }
        }
    }
    let settings = served.settings.clone();
    // The previous version's tables: the new version shares what the change leaves alone.
    let previous = std::sync::Arc::clone(&served.answers);
    // The previous version is let go of here: the swap hands it to a thread of its own to
    // free ([`Live::swap_known`]), not to this update or an answering thread.
    drop(served);
    let started = std::time::Instant::now();
    let log = update_log_file(&settings.state_file);
    let kept = (zone.clone(), step.clone());
    // Built (and signed), then the change appended to the log and synced: a zone that
    // cannot be served is not kept; one not kept is not served.
    let built = tokio::task::spawn_blocking(move || {
        let served = Served::patched(&previous, changed, &kept.0, &kept.1, settings)?;
        drop(previous);
        let size = append(&log, &kept.0, &kept.1)?;
        Ok::<_, anyhow::Error>((served, size))
    })
    .await;
    match built {
        Ok(Ok((served, log_size))) => {
            let serial = serial_of(&served.records, &zone).unwrap_or_default();
            let swapped = live.swap_known(served, Some(Known { zone: zone.clone(), steps: vec![step] }));
            // (Built, signed if it is, kept and swapped in: what scripts/bench/dns-signed-update
            // reads; "answered" adds the IXFR journal's write, before the NOERROR goes out.)
            tracing::info!(
                "zone {zone} updated, serial {serial}, served in {:.1} ms (answered in {:.1} ms)",
                (swapped - started).as_secs_f64() * 1e3,
                started.elapsed().as_secs_f64() * 1e3
            );
            if log_size > FOLD_BYTES {
                // Still this update's turn: no other appends while the log is folded.
                let current = live.current();
                match tokio::task::spawn_blocking(move || fold(&current)).await {
                    Ok(Ok(())) => tracing::info!("the update log was folded into the state file"),
                    Ok(Err(e)) => tracing::warn!("folding the update log (it is kept, and grows): {e:#}"),
                    Err(e) => tracing::warn!("folding the update log: {e}"),
                }
            }
            ResponseCode::NoError
        }
        Ok(Err(e)) => {
            // A line left in the log would be replayed at restart: a fold must remove it
            // before another update is taken.
            if matches!(e.downcast_ref(), Some(crate::updatelog::LogError::NotCutBack { .. })) {
                live.set_log_base_kept(false);
            }
            tracing::error!("zone {zone}: update refused, nothing changed: {e:#}");
            ResponseCode::ServFail
        }
        Err(e) => {
            tracing::error!("zone {zone}: update failed: {e}");
            ResponseCode::ServFail
        }
    }
}

/// The records after `request`'s prerequisites and updates (RFC 2136 sections 3.2 to 3.4)
/// and the step the zone took, `None` if nothing changes, or the response code that
/// refuses it.
fn changes(
    records: &[DnsRecord],
    zone: &str,
    request: &Message,
) -> Result<Option<(Vec<DnsRecord>, Change)>, ResponseCode> {
    let zone_name = Name::from_ascii(zone).map_err(|_| ResponseCode::ServFail)?;
    let in_zone = |r: &Record| zone_name.zone_of(&r.name);
    let mine: Vec<&DnsRecord> = records.iter().filter(|r| r.zone == zone).collect();
    let exists =
        |name: &str, t: Option<RecordType>| mine.iter().any(|r| r.name == name && t.is_none_or(|t| r.rtype == t));
    let lower = |n: &Name| n.to_lowercase().to_string();

    // Prerequisites (the answer section).
    let mut required: BTreeSet<(String, RecordType, String)> = BTreeSet::new();
    let mut required_sets: BTreeSet<(String, RecordType)> = BTreeSet::new();
    for p in &request.answers {
        if !in_zone(p) {
            return Err(ResponseCode::NotZone);
        }
        let name = lower(&p.name);
        let t = p.record_type();
        let empty = p.data.is_update();
        match p.dns_class {
            DNSClass::ANY | DNSClass::NONE if p.ttl != 0 || !empty => return Err(ResponseCode::FormErr),
            DNSClass::ANY if t == RecordType::ANY => {
                if !exists(&name, None) {
                    return Err(ResponseCode::NXDomain);
                }
            }
            DNSClass::ANY => {
                if !supported(t).is_some_and(|t| exists(&name, Some(t))) {
                    return Err(ResponseCode::NXRRSet);
                }
            }
            DNSClass::NONE if t == RecordType::ANY => {
                if exists(&name, None) {
                    return Err(ResponseCode::YXDomain);
                }
            }
            DNSClass::NONE => {
                if supported(t).is_some_and(|t| exists(&name, Some(t))) {
                    return Err(ResponseCode::YXRRSet);
                }
            }
            DNSClass::IN if p.ttl == 0 => {
                let r = from_wire(zone, p).ok_or(ResponseCode::NXRRSet)?;
                required_sets.insert((r.name.clone(), r.rtype));
                required.insert((r.name, r.rtype, r.data));
            }
            _ => return Err(ResponseCode::FormErr),
        }
    }
    // Value-dependent prerequisites: each named RRset must be exactly what was given.
    for (name, t) in &required_sets {
        let have: BTreeSet<(String, RecordType, String)> = mine
            .iter()
            .filter(|r| &r.name == name && r.rtype == *t)
            .map(|r| normal(&r.name, r.rtype, &r.data))
            .collect();
        let want: BTreeSet<_> = required.iter().filter(|(n, rt, _)| n == name && rt == t).cloned().collect();
        if have != want {
            return Err(ResponseCode::NXRRSet);
        }
    }

    // Prescan of the update section (3.4.1; on the wire, the authority section): everything is
    // checked before anything is done.
    for u in &request.authorities {
        if !in_zone(u) {
            return Err(ResponseCode::NotZone);
        }
        let t = u.record_type();
        if matches!(t, RecordType::AXFR | RecordType::IXFR | RecordType::OPT) {
            return Err(ResponseCode::FormErr);
        }
        match u.dns_class {
            DNSClass::IN => {
                if t == RecordType::ANY || u.data.is_update() {
                    return Err(ResponseCode::FormErr);
                }
                if supported(t).is_none() {
                    tracing::info!("update refused: {t} records are not served");
                    return Err(ResponseCode::Refused);
                }
                if let Err(e) = crate::wire::check_owner(&lower(&u.name)) {
                    tracing::info!("update refused: {}: {e}", lower(&u.name));
                    return Err(ResponseCode::Refused);
                }
            }
            DNSClass::ANY if u.ttl != 0 || !u.data.is_update() => return Err(ResponseCode::FormErr),
            DNSClass::ANY => {}
            DNSClass::NONE if u.ttl != 0 || t == RecordType::ANY => return Err(ResponseCode::FormErr),
            DNSClass::NONE => {}
            _ => return Err(ResponseCode::FormErr),
        }
    }

    // The update itself, on a copy of the records of the names it names (keyed by each
    // record's identity): a big zone is not copied for a change of one name.
    let touched_names: BTreeSet<String> = request.authorities.iter().map(|u| lower(&u.name)).collect();
    let touched = |r: &DnsRecord| {
        if r.name.bytes().any(|b| b.is_ascii_uppercase()) {
            touched_names.contains(&r.name.to_ascii_lowercase())
        } else {
            touched_names.contains(r.name.as_str())
        }
    };
    let mut zone_records: std::collections::BTreeMap<(String, RecordType, String), DnsRecord> =
        mine.iter().filter(|r| touched(r)).map(|r| (normal(&r.name, r.rtype, &r.data), (*r).clone())).collect();
    let mut changed = false;
    for u in &request.authorities {
        let name = lower(&u.name);
        let apex = name == zone;
        let t = u.record_type();
        match u.dns_class {
            DNSClass::IN => {
                let r = from_wire(zone, u).expect("prescanned");
                if r.rtype == RecordType::SOA {
                    continue; // the serial is ours to keep
                }
                let key = normal(&r.name, r.rtype, &r.data);
                if zone_records.get(&key).is_none_or(|x| x.ttl != r.ttl) {
                    changed = true;
                    zone_records.insert(key, r);
                }
            }
            DNSClass::ANY => {
                let keep_at_apex = |x: &DnsRecord| apex && matches!(x.rtype, RecordType::SOA | RecordType::NS);
                let t = if t == RecordType::ANY { None } else { supported(t) };
                let before = zone_records.len();
                zone_records.retain(|(n, rt, _), x| *n != name || t.is_some_and(|t| t != *rt) || keep_at_apex(x));
                changed |= zone_records.len() != before;
            }
            DNSClass::NONE => {
                let Some(r) = from_wire(zone, u) else { continue };
                if r.rtype == RecordType::SOA {
                    continue;
                }
                if apex && r.rtype == RecordType::NS {
                    let nameservers =
                        zone_records.values().filter(|x| x.name == zone && x.rtype == RecordType::NS).count();
                    if nameservers <= 1 {
                        continue; // never the last name server
                    }
                }
                changed |= zone_records.remove(&normal(&r.name, r.rtype, &r.data)).is_some();
            }
            _ => unreachable!("prescanned"),
        }
    }
    if !changed {
        return Ok(None);
    }
    // Views are assigned again to the touched names' records and to the SRV records that
    // point at them (an SRV's view follows its target's addresses), with the addresses of
    // those SRVs' other targets to go by.
    let target = |r: &DnsRecord| r.data.rsplit(' ').next().unwrap_or_default().to_ascii_lowercase();
    let reviewed = |r: &DnsRecord| {
        r.zone == zone
            && r.rtype != RecordType::SOA
            && (touched(r) || (r.rtype == RecordType::SRV && touched_names.contains(&target(r))))
    };
    let before: Vec<&DnsRecord> = mine.iter().copied().filter(|r| reviewed(r)).collect();
    let mut again: Vec<DnsRecord> = zone_records.into_values().filter(|r| r.rtype != RecordType::SOA).collect();
    again.extend(before.iter().filter(|r| !touched(r)).map(|r| (*r).clone()));
    let targets: BTreeSet<String> = again
        .iter()
        .filter(|r| r.rtype == RecordType::SRV)
        .map(target)
        .filter(|t| !touched_names.contains(t))
        .collect();
    let context = mine.iter().filter(|r| {
        matches!(r.rtype, RecordType::A | RecordType::AAAA) && targets.contains(&r.name.to_ascii_lowercase())
    });
    again.extend(context.map(|r| (*r).clone()));
    let after: Vec<DnsRecord> =
        assign_views(again).into_iter().filter(|r| touched(r) || r.rtype == RecordType::SRV).collect();

    let mut out: Vec<DnsRecord> = Vec::with_capacity(records.len() + after.len());
    out.extend(records.iter().filter(|r| !reviewed(r)).cloned());
    // A new serial (RFC 1982 arithmetic wraps; 0 is skipped as some tools treat it as unset).
    let mut serials = None;
    for r in out.iter_mut().filter(|r| r.zone == zone && r.rtype == RecordType::SOA) {
        let mut fields: Vec<String> = r.data.split_whitespace().map(str::to_string).collect();
        let serial = fields.get(2).and_then(|s| s.parse::<u32>().ok()).ok_or(ResponseCode::ServFail)?;
        let next = match serial.wrapping_add(1) {
            0 => 1,
            n => n,
        };
        fields[2] = next.to_string();
        r.data = fields.join(" ");
        serials = Some((serial, next));
    }
    let (from, to) = serials.ok_or(ResponseCode::ServFail)?;
    let old: std::collections::HashSet<&DnsRecord> = before.iter().copied().collect();
    let new: std::collections::HashSet<&DnsRecord> = after.iter().collect();
    let step = Change {
        from,
        to,
        removed: before.iter().filter(|r| !new.contains(*r)).map(|r| (*r).clone()).collect(),
        added: after.iter().filter(|r| !old.contains(r)).cloned().collect(),
    };
    out.extend(after);
    Ok(Some((out, step)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::View;
    use crate::zone::fixtures::zone;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::RData;

    fn update(adds: &[(&str, RecordType, &str)], deletes: &[(&str, RecordType, &str)]) -> Message {
        let mut m = Message::new(1, MessageType::Query, OpCode::Update);
        m.add_query(Query::query(Name::from_ascii("lct.internal.").unwrap(), RecordType::SOA));
        for (name, t, data) in deletes {
            let mut r = Record::from_rdata(Name::from_ascii(name).unwrap(), 0, RData::try_from_str(*t, data).unwrap());
            r.dns_class = DNSClass::NONE;
            m.authorities.push(r);
        }
        for (name, t, data) in adds {
            m.authorities.push(Record::from_rdata(
                Name::from_ascii(name).unwrap(),
                300,
                RData::try_from_str(*t, data).unwrap(),
            ));
        }
        m
    }

    #[test]
    fn updates_add_delete_bump_the_serial_and_assign_views() {
        let records = zone();
        let m = update(
            &[("B.zk.lct.internal.", RecordType::A, "192.168.128.2")],
            &[("a.zk.lct.internal.", RecordType::A, "203.0.113.1")],
        );
        let (out, _) = changes(&records, "lct.internal.", &m).unwrap().unwrap();
        let b = out.iter().find(|r| r.name == "b.zk.lct.internal.").expect("added, lower case");
        assert_eq!(b.view, View::Internal);
        assert!(!out.iter().any(|r| r.data == "203.0.113.1"));
        let a = out.iter().find(|r| r.name == "a.zk.lct.internal.").unwrap();
        assert_eq!(a.view, View::Internal);
        assert_eq!(serial_of(&out, "lct.internal."), Some(8));
        // The same again changes nothing: no new serial.
        let m = update(&[("a.zk.lct.internal.", RecordType::A, "192.168.128.1")], &[]);
        assert!(changes(&records, "lct.internal.", &m).unwrap().is_none());
        // Out of zone: NOTZONE, nothing applied.
        let m = update(&[("x.example.", RecordType::A, "192.168.128.3")], &[]);
        assert_eq!(changes(&records, "lct.internal.", &m).unwrap_err(), ResponseCode::NotZone);
        // Unsupported types are refused.
        let m = update(&[("t.lct.internal.", RecordType::TXT, "hello")], &[]);
        assert_eq!(changes(&records, "lct.internal.", &m).unwrap_err(), ResponseCode::Refused);
        // The last name server stays.
        let m = update(&[], &[("lct.internal.", RecordType::NS, "ns1.lct.internal.")]);
        assert!(changes(&records, "lct.internal.", &m).unwrap().is_none());
    }

    /// Only the touched names (and SRVs pointing at them) are viewed again: the result must
    /// be what viewing the whole zone gives, and the step exactly the difference.
    #[test]
    fn updates_touch_only_their_names_yet_match_the_whole_zone() {
        use std::collections::BTreeSet;
        let mut records = zone();
        records.extend(assign_views(vec![
            DnsRecord {
                zone: "lct.internal.".into(),
                name: "_zk._tcp.zk.lct.internal.".into(),
                rtype: RecordType::SRV,
                ttl: 300,
                data: "0 0 2181 c.zk.lct.internal.".into(),
                view: View::Both,
            },
            DnsRecord {
                zone: "lct.internal.".into(),
                name: "c.zk.lct.internal.".into(),
                rtype: RecordType::A,
                ttl: 300,
                data: "192.168.128.3".into(),
                view: View::Both,
            },
        ]));
        type Records<'a> = &'a [(&'a str, RecordType, &'a str)];
        let steps: [(Records, Records); 3] = [
            // c gets a public address: the SRV pointing at it changes views.
            (&[("c.zk.lct.internal.", RecordType::A, "203.0.113.3")], &[]),
            // a loses its private one: its public address serves both views now.
            (&[], &[("a.zk.lct.internal.", RecordType::A, "192.168.128.1")]),
            // A new SRV to a name with only a public address.
            (&[("_x._tcp.zk.lct.internal.", RecordType::SRV, "0 0 1 a.zk.lct.internal.")], &[]),
        ];
        let srv = records.iter().find(|r| r.name == "_zk._tcp.zk.lct.internal.").unwrap();
        assert_eq!(srv.view, View::Internal, "its target has a private address only");
        for (adds, deletes) in steps {
            let (out, step) = changes(&records, "lct.internal.", &update(adds, deletes)).unwrap().unwrap();
            let set = |r: &[DnsRecord]| -> BTreeSet<DnsRecord> { r.iter().cloned().collect() };
            assert_eq!(set(&assign_views(out.clone())), set(&out), "views as the whole zone has them");
            let no_soa = |r: &[DnsRecord]| -> BTreeSet<DnsRecord> {
                r.iter().filter(|r| r.rtype != RecordType::SOA).cloned().collect()
            };
            let mut replayed = no_soa(&records);
            for r in &step.removed {
                assert!(replayed.remove(r), "removed {r:?} was there");
            }
            for r in &step.added {
                assert!(replayed.insert(r.clone()), "added {r:?} was not there");
            }
            assert_eq!(replayed, no_soa(&out), "the step is the difference");
            assert_eq!((step.from + 1, step.to), (serial_of(&records, "lct.internal.").unwrap() + 1, step.from + 1));
            records = out;
        }
        let srv = records.iter().find(|r| r.name == "_zk._tcp.zk.lct.internal.").unwrap();
        assert_eq!(srv.view, View::Both, "the SRV follows its target's addresses (both now)");
    }

    #[test]
    fn prerequisites() {
        let records = zone();
        let mut m = update(&[("c.zk.lct.internal.", RecordType::A, "192.168.128.3")], &[]);
        // "c must not exist": fine; then "a must not exist": YXDOMAIN.
        m.answers.push(Record::update0(Name::from_ascii("c.zk.lct.internal.").unwrap(), 0, RecordType::ANY));
        m.answers[0].dns_class = DNSClass::NONE;
        assert!(changes(&records, "lct.internal.", &m).unwrap().is_some());
        m.answers[0].name = Name::from_ascii("a.zk.lct.internal.").unwrap();
        assert_eq!(changes(&records, "lct.internal.", &m).unwrap_err(), ResponseCode::YXDomain);
    }

    /// The served version differs from the state file (a newer records file at start) and
    /// writing it failed: an update is refused (SERVFAIL, no log line) rather than appended
    /// from a serial a restart cannot reach; once the write works, the update lands and the
    /// state file plus the log replay to exactly the version served.
    #[test]
    fn an_update_waits_for_the_served_version_to_reach_the_state_file() {
        use crate::settings::Settings;
        let dir = lct_core::fsutil::temp_dir("lct-dns-update-base").unwrap();
        let state_file = dir.path().join("zones.jsonl");
        // A directory where the state file goes: writing it whole fails, as on a full disk.
        std::fs::create_dir_all(state_file.join("in-the-way")).unwrap();
        let settings = Settings::bare(state_file.clone());
        let mut served = zone();
        let soa = served.iter_mut().find(|r| r.rtype == RecordType::SOA).unwrap();
        soa.data = soa.data.replace(" 7 ", " 10 ");
        let live = Live::new(Served::build(served, std::sync::Arc::new(settings)).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let add = |name: &str| update(&[(name, RecordType::A, "192.168.128.2")], &[]);
        let serial = |live: &Live| serial_of(&live.current().records, "lct.internal.");
        let log = update_log_file(&state_file);

        assert_eq!(runtime.block_on(apply_update(&add("b.zk.lct.internal."), &live)), ResponseCode::ServFail);
        assert_eq!(serial(&live), Some(10), "nothing changed");
        assert!(!log.exists(), "no line appended from a version the disk does not have");
        assert!(!live.log_base_kept());

        // The disk holds the older version (serial 7); the write works again.
        std::fs::remove_dir_all(&state_file).unwrap();
        let old = Served::build(zone(), live.current().settings.clone()).unwrap();
        old.persist().unwrap();
        assert_eq!(runtime.block_on(apply_update(&add("c.zk.lct.internal."), &live)), ResponseCode::NoError);
        assert_eq!(serial(&live), Some(11));
        assert!(live.log_base_kept());
        let text = std::fs::read(&state_file).unwrap();
        let (mut back, _) = lct_core::stream::read_kind::<DnsRecord>(&text[..]).unwrap();
        let done = crate::updatelog::replay(&log, &mut back).unwrap();
        assert_eq!((done.applied, done.gaps.len()), (1, 0));
        let mut want = live.current().records.to_vec();
        want.sort();
        back.sort();
        assert_eq!(back, want, "state file and log are the version served");
    }
}
