//! Zone transfers (AXFR), the server side: the zone's full data (every view's records once,
//! which is what `lct-dns update` diffs against), in messages each signed and chained as
//! RFC 8945 section 5.3.1 says.

use std::collections::BTreeSet;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::TSigResponseContext;
use hickory_proto::rr::rdata::tsig::{TSIG, make_tsig_record};

use crate::service::Live;
use crate::signed::{Signed, reply, response, zone_of_request};
use crate::tsig::now;
use crate::wire::{normal, to_wire};
use crate::zone::RecordType;

/// An AXFR of the zone's full data: SOA, every record of every view once, SOA; in messages
/// of at most ~16 KiB, each signed, chained as RFC 8945 section 5.3.1 says.
pub(crate) fn transfer_messages(request: &Message, signed: &Signed, live: &Live) -> Vec<Vec<u8>> {
    let served = live.current();
    let zone = match zone_of_request(request, &served.records) {
        Ok(zone) => zone,
        Err(code) => return vec![reply(request, code, Some(signed))],
    };
    let mut seen = BTreeSet::new();
    let mut soa = None;
    let mut body = Vec::new();
    for r in served.records.iter().filter(|r| r.zone == zone) {
        if !seen.insert(normal(&r.name, r.rtype, &r.data)) {
            continue;
        }
        match to_wire(r) {
            Ok(w) if r.rtype == RecordType::SOA => soa = Some(w),
            Ok(w) => body.push(w),
            Err(e) => tracing::error!("zone {zone}: {e}"),
        }
    }
    let Some(soa) = soa else { return vec![reply(request, ResponseCode::ServFail, Some(signed))] };
    let mut all = Vec::with_capacity(body.len() + 2);
    all.push(soa.clone());
    all.extend(body);
    all.push(soa);
    tracing::info!("zone {zone}: transfer of {} records", all.len());
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
