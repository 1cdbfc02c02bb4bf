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
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::fast::ZoneBytes;

use crate::server::{ZoneMode, mode_of};
use crate::service::Live;
use crate::signed::{Grant, Signed, reply, response, zone_of_request};
use crate::tsig::now;
use crate::wire::{normal, serial_of, to_wire};
use crate::zone::{DnsRecord, RecordType, View};

/// The answer to an AXFR or IXFR: SOA, records, SOA (or the IXFR forms), in messages of at
/// most 250 records, each signed, chained as RFC 8945 section 5.3.1 says.
pub(crate) fn transfer_messages(request: &Message, signed: &Signed, live: &Live) -> Vec<Vec<u8>> {
    let started = std::time::Instant::now();
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
    let client_serial = ixfr_serial(request);
    let kind = if client_serial.is_some() { "IXFR" } else { "AXFR" };
    let shown = match view {
        None => "every",
        Some(View::Internal) => "internal",
        Some(_) => "external",
    };
    let changes = client_serial.map(|s| (s, live.changes_since(&zone, s)));
    let up_to_date = |s: u32| s == current || (s.wrapping_sub(current) as i32) > 0;
    // A secondary's full transfer: the view's records straight from the answer tables.
    if let Some(v) = view
        && !matches!(&changes, Some((s, changes)) if up_to_date(*s) || changes.is_some())
    {
        let Some(records) = served.answers.zone_transfer(&zone, v == View::Internal) else {
            return vec![reply(request, ResponseCode::ServFail, Some(signed))];
        };
        tracing::info!("zone {zone}: {kind} of {} records (serial {current}, {shown} view)", records.len() + 1);
        let messages = sign_chain(request, signed, wire_bodies(request, &records));
        tracing::debug!("zone {zone}: {} messages ready in {:?}", messages.len(), started.elapsed());
        return messages;
    }
    let mut all = vec![soa_wire.clone()];
    match changes {
        // Up to date (or ahead): the current SOA alone.
        Some((s, _)) if up_to_date(s) => {}
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
    tracing::info!("zone {zone}: {kind} of {} records (serial {current}, {shown} view)", all.len());
    let mut bodies = Vec::new();
    for (i, chunk) in all.chunks(250).enumerate() {
        let mut message = response(request, ResponseCode::NoError);
        message.metadata.authoritative = true;
        if i > 0 {
            message.queries.clear();
        }
        message.add_answers(chunk.iter().cloned());
        let Ok(bytes) = message.to_vec() else { return vec![reply(request, ResponseCode::ServFail, Some(signed))] };
        bodies.push(bytes);
    }
    sign_chain(request, signed, bodies)
}

/// Largest transfer message we write (the records of one RRset are never split across
/// messages by a limit smaller than a record: a record always fits one).
const MESSAGE_BYTES: usize = 16 * 1024;

/// A full transfer's messages, unsigned: the SOA, the records, the SOA again, packed up to
/// [`MESSAGE_BYTES`]; the question in the first message only (RFC 5936 section 2.2).
fn wire_bodies(request: &Message, records: &ZoneBytes) -> Vec<Vec<u8>> {
    let question = request.queries.first().map(|q| {
        let mut bytes = Vec::with_capacity(64);
        let mut encoder = BinEncoder::new(&mut bytes);
        let _ = q.emit(&mut encoder);
        bytes
    });
    let header = |count: u16, first: bool| {
        let mut out = Vec::with_capacity(MESSAGE_BYTES + 512);
        out.extend_from_slice(&request.id.to_be_bytes());
        out.extend_from_slice(&[0x84, 0x00]); // a response, authoritative, NOERROR
        let questions = u16::from(first && question.is_some());
        for n in [questions, count, 0, 0] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        if first && let Some(q) = &question {
            out.extend_from_slice(q);
        }
        out
    };
    // The SOA again at the end.
    let order = (0..records.len()).chain(std::iter::once(0));
    let mut bodies = Vec::new();
    let mut body = header(0, true);
    let mut count = 0u16;
    for i in order {
        let record = records.record(i);
        if count > 0 && (body.len() + record.len() > MESSAGE_BYTES || count == u16::MAX) {
            body[6..8].copy_from_slice(&count.to_be_bytes());
            bodies.push(std::mem::replace(&mut body, header(0, false)));
            count = 0;
        }
        body.extend_from_slice(record);
        count += 1;
    }
    body[6..8].copy_from_slice(&count.to_be_bytes());
    bodies.push(body);
    bodies
}

/// Signs a transfer's messages as RFC 8945 section 5.3.1 chains them: the first over the
/// request's MAC and the whole TSIG variables, each later one over the previous MAC, the
/// message and only the timers. Each body is a message without its TSIG, which is
/// appended (and counted in the additional section).
pub(crate) fn sign_chain(request: &Message, signed: &Signed, bodies: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut messages = Vec::with_capacity(bodies.len());
    let mut previous_mac = signed.mac.clone();
    let time = now();
    for (i, mut bytes) in bodies.into_iter().enumerate() {
        let tsig = if i == 0 {
            let context = TSigResponseContext::new(request.id, time, signed.signer.clone(), previous_mac.clone(), None);
            match context.sign(&bytes) {
                Ok(t) => t,
                Err(_) => return vec![reply(request, ResponseCode::ServFail, Some(signed))],
            }
        } else {
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
        let Ok(record) = tsig.to_bytes() else { return vec![reply(request, ResponseCode::ServFail, Some(signed))] };
        bytes.extend_from_slice(&record);
        let additional = u16::from_be_bytes([bytes[10], bytes[11]]) + 1;
        bytes[10..12].copy_from_slice(&additional.to_be_bytes());
        messages.push(bytes);
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
