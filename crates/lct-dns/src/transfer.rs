//! Zone transfers, the server side: AXFR, and IXFR (RFC 1995) from the journal of recent
//! changes (a full transfer when it does not reach back), in messages each signed and
//! chained as RFC 8945 section 5.3.1 says. What a transfer holds depends on the key: an
//! update key gets the zone's full data (every view's records once, which is what `lct-dns
//! update` diffs against); a secondary's key gets its view only, as the zone's mode serves
//! it there, so a standard secondary never serves both views merged.

use std::collections::BTreeSet;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TSIG, make_tsig_record};
use hickory_proto::rr::{RData, Record, TSigResponseContext};

use crate::server::{ZoneMode, mode_of};
use crate::service::Live;
use crate::signed::{Grant, Signed, reply, response, zone_of_request};
use crate::tsig::now;
use crate::wire::{normal, serial_of, to_wire};
use crate::zone::{DnsRecord, RecordType, View};

/// The answer to an AXFR or IXFR: SOA, records, SOA (or the IXFR forms), in messages of at
/// most 250 records, each signed, chained as RFC 8945 section 5.3.1 says.
pub(crate) fn transfer_messages(request: &Message, signed: &Signed, live: &Live) -> Vec<Vec<u8>> {
    let served = live.current();
    let zone = match zone_of_request(request, &served.records) {
        Ok(zone) => zone,
        Err(code) => return vec![reply(request, code, Some(signed))],
    };
    // Which records the key sees: all, or its view of the zone as the zone's mode has it.
    let view = match &signed.grant {
        Grant::Full => None,
        Grant::Primary(_) => return vec![reply(request, ResponseCode::Refused, Some(signed))],
        Grant::Secondary(s) if !s.serves(&zone) => return vec![reply(request, ResponseCode::NotAuth, Some(signed))],
        Grant::Secondary(s) => match (mode_of(&served.settings.modes, &zone), s.view.view()) {
            (ZoneMode::Private, View::External) => {
                return vec![reply(request, ResponseCode::NotAuth, Some(signed))];
            }
            (ZoneMode::Public, _) => Some(View::External),
            (_, v) => Some(v),
        },
    };
    let visible = |r: &&DnsRecord| r.zone == zone && view.is_none_or(|v| r.view.includes(v));
    let Some(soa) = served.records.iter().filter(visible).find(|r| r.rtype == RecordType::SOA) else {
        return vec![reply(request, ResponseCode::ServFail, Some(signed))];
    };
    let Ok(soa_wire) = to_wire(soa) else { return vec![reply(request, ResponseCode::ServFail, Some(signed))] };
    let current = serial_of(&served.records, &zone).unwrap_or_default();
    let wire_all = |records: &mut dyn Iterator<Item = &DnsRecord>| -> Vec<Record> {
        let mut seen = BTreeSet::new();
        records
            .filter(|r| r.rtype != RecordType::SOA && seen.insert(normal(&r.name, r.rtype, &r.data)))
            .filter_map(|r| to_wire(r).map_err(|e| tracing::error!("zone {zone}: {e}")).ok())
            .collect()
    };
    let mut all = vec![soa_wire.clone()];
    let client_serial = ixfr_serial(request);
    match client_serial.map(|s| (s, live.changes_since(&zone, s))) {
        // Up to date (or ahead): the current SOA alone.
        Some((s, _)) if s == current || (s.wrapping_sub(current) as i32) > 0 => {}
        // Incremental: for each change, the old SOA, what went, the new SOA, what came.
        Some((_, Some(changes))) => {
            for change in &changes {
                all.push(with_serial(&soa_wire, change.from));
                all.extend(wire_all(&mut change.removed.iter().filter(visible)));
                all.push(with_serial(&soa_wire, change.to));
                all.extend(wire_all(&mut change.added.iter().filter(visible)));
            }
            all.push(soa_wire);
        }
        // AXFR, or an IXFR the journal does not reach: everything.
        _ => {
            all.extend(wire_all(&mut served.records.iter().filter(visible)));
            all.push(soa_wire);
        }
    }
    let kind = if client_serial.is_some() { "IXFR" } else { "AXFR" };
    let shown = match view {
        None => "every",
        Some(View::Internal) => "internal",
        Some(_) => "external",
    };
    tracing::info!("zone {zone}: {kind} of {} records (serial {current}, {shown} view)", all.len());
    let mut messages = Vec::new();
    let mut previous_mac = signed.mac.clone();
    let time = now();
    for (i, chunk) in all.chunks(250).enumerate() {
        let mut message = response(request, ResponseCode::NoError);
        message.metadata.authoritative = true;
        if i > 0 {
            message.queries.clear();
        }
        message.add_answers(chunk.iter().cloned());
        let Ok(bytes) = message.to_vec() else { return vec![reply(request, ResponseCode::ServFail, Some(signed))] };
        let tsig = if i == 0 {
            let context = TSigResponseContext::new(request.id, time, signed.signer.clone(), previous_mac.clone(), None);
            match context.sign(&bytes) {
                Ok(t) => t,
                Err(_) => return vec![reply(request, ResponseCode::ServFail, Some(signed))],
            }
        } else {
            // Later messages: previous MAC, the message, and only the timers (5.3.1).
            let mut tbs = Vec::with_capacity(bytes.len() + previous_mac.len() + 10);
            tbs.extend_from_slice(&(previous_mac.len() as u16).to_be_bytes());
            tbs.extend_from_slice(&previous_mac);
            tbs.extend_from_slice(&bytes);
            tbs.extend_from_slice(&((time >> 32) as u16).to_be_bytes());
            tbs.extend_from_slice(&(time as u32).to_be_bytes());
            tbs.extend_from_slice(&signed.signer.fudge().to_be_bytes());
            let Ok(mac) = signed.signer.sign(&tbs) else {
                return vec![reply(request, ResponseCode::ServFail, Some(signed))];
            };
            let rdata = TSIG::new(
                signed.signer.algorithm().clone(),
                time,
                signed.signer.fudge(),
                mac,
                request.id,
                None,
                Vec::new(),
            );
            Box::new(make_tsig_record(signed.signer.signer_name().clone(), rdata))
        };
        previous_mac = tsig.data.mac.clone();
        message.set_signature(tsig);
        match message.to_vec() {
            Ok(b) => messages.push(b),
            Err(_) => return vec![reply(request, ResponseCode::ServFail, Some(signed))],
        }
    }
    messages
}

/// The serial an IXFR request says the client has (its authority section's SOA).
fn ixfr_serial(request: &Message) -> Option<u32> {
    if request.queries.first()?.query_type() != RecordType::IXFR {
        return None;
    }
    request.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

/// The SOA record with another serial (a journal's earlier versions differ only there).
fn with_serial(soa: &Record, serial: u32) -> Record {
    let mut r = soa.clone();
    if let RData::SOA(data) = &mut r.data {
        data.serial = serial;
    }
    r
}
