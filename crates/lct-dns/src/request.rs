//! A signed request as the server sees it: authenticated with TSIG (RFC 8945) against the
//! configured keys, which say what it may do; the zone it names; and the responses to it,
//! signed with its key. Unsigned or wrongly signed requests are answered with the error
//! and nothing else.

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{TSigResponseContext, TSigner};

use crate::live::Live;
use crate::settings::{Primary, Secondary};
use crate::tsig::now;
use crate::zone::{DnsRecord, RecordType};

/// Whether the header's answer and authority counts add up within 16 bits. hickory's TSIG
/// check adds them as `u16` (a debug build panics on the overflow, found by the property test
/// in signed.rs; a release build wraps): a message claiming more records than that is
/// malformed.
pub(crate) fn counts_fit(raw: &[u8]) -> bool {
    let count = |i: usize| u32::from(u16::from_be_bytes([raw[i], raw[i + 1]]));
    raw.len() >= 12 && count(6) + count(8) <= u32::from(u16::MAX)
}

/// A verified request: the key's signer and the request's MAC, to sign the answers with,
/// and what the key may do.
pub(crate) struct Signed {
    pub(crate) signer: TSigner,
    pub(crate) mac: Vec<u8>,
    pub(crate) grant: Grant,
}

/// What a key may do.
pub(crate) enum Grant {
    /// An update key: update, and transfer every view's data (lct-dns's own clients).
    Full,
    /// A secondary's key: transfer its view, nothing else.
    Secondary(Box<Secondary>),
    /// A primary's key (of the zones we are a secondary for): NOTIFY, nothing else.
    Primary(Vec<String>),
}

/// Checks the request's TSIG against the configured keys; the error is the response to send
/// (REFUSED unsigned, NOTAUTH with BADKEY, BADSIG or BADTIME).
pub(crate) fn authenticate(raw: &[u8], request: &Message, live: &Live) -> Result<Signed, Vec<u8>> {
    let Some(tsig) = request.signature() else {
        tracing::info!("refused an unsigned {:?}", request.op_code);
        return Err(reply(request, ResponseCode::Refused, None));
    };
    let served = live.current();
    let time = now();
    let secondary = served.settings.secondaries.iter().find(|s| s.key.name == tsig.name);
    let primaries: Vec<&Primary> = served.settings.primaries.iter().filter(|p| p.key.name == tsig.name).collect();
    let (key, grant) = match (served.settings.keys.get(&tsig.name), secondary, primaries.first()) {
        (Some(key), _, _) => (Some(key), Grant::Full),
        (None, Some(s), _) => (Some(&s.key), Grant::Secondary(Box::new(s.clone()))),
        (None, None, Some(p)) => (Some(&p.key), Grant::Primary(primaries.iter().map(|p| p.zone.clone()).collect())),
        (None, None, None) => (None, Grant::Full),
    };
    let Some(key) = key else {
        tracing::warn!("refused a request signed with an unknown key {}", tsig.name);
        return Err(reply_tsig(
            request,
            ResponseCode::NotAuth,
            TSigResponseContext::unknown_key(request.id, time, tsig.name.clone()),
        ));
    };
    let signer = key.signer();
    match signer.verify_message_byte(raw, None, true) {
        Err(e) => {
            tracing::warn!("refused a request with a bad signature by key {}: {e}", tsig.name);
            Err(reply_tsig(
                request,
                ResponseCode::NotAuth,
                TSigResponseContext::bad_signature(request.id, time, signer),
            ))
        }
        Ok((mac, _, valid)) if !valid.contains(&time) => {
            tracing::warn!("refused a request signed by key {} at a time out of range", tsig.name);
            let context = TSigResponseContext::new(request.id, time, signer, mac, Some(TsigError::BadTime));
            Err(reply_tsig(request, ResponseCode::NotAuth, context))
        }
        Ok((mac, _, _)) => Ok(Signed { signer, mac, grant }),
    }
}

/// A response carrying the request's question, signed when the request was.
pub(crate) fn reply(request: &Message, code: ResponseCode, signed: Option<&Signed>) -> Vec<u8> {
    match signed {
        Some(s) => reply_tsig(
            request,
            code,
            TSigResponseContext::new(request.id, now(), s.signer.clone(), s.mac.clone(), None),
        ),
        None => response(request, code).to_vec().unwrap_or_else(|_| bare_error_id(request.id, code)),
    }
}

pub(crate) fn reply_tsig(request: &Message, code: ResponseCode, context: TSigResponseContext) -> Vec<u8> {
    let message = response(request, code);
    if message.to_vec().is_err() {
        return bare_error_id(request.id, code);
    }
    sign(message, context)
}

/// `message` on the wire with its TSIG record (unsigned if signing fails).
pub(crate) fn sign(mut message: Message, context: TSigResponseContext) -> Vec<u8> {
    let Ok(bytes) = message.to_vec() else { return bare_error_id(message.id, ResponseCode::ServFail) };
    match context.sign(&bytes) {
        Ok(tsig) => {
            message.set_signature(tsig);
            message.to_vec().unwrap_or(bytes)
        }
        Err(_) => bytes,
    }
}

pub(crate) fn response(request: &Message, code: ResponseCode) -> Message {
    let mut message = Message::new(request.id, MessageType::Response, request.op_code);
    message.metadata.response_code = code;
    message.add_queries(request.queries.iter().cloned());
    message
}

/// An error for a message too broken to parse: its id and opcode, no sections.
pub(crate) fn bare_error(raw: &[u8], code: ResponseCode) -> Vec<u8> {
    let mut out = bare_error_id(u16::from_be_bytes([raw[0], raw[1]]), code);
    out[2] |= raw[2] & 0x78; // the opcode
    out
}

pub(crate) fn bare_error_id(id: u16, code: ResponseCode) -> Vec<u8> {
    let mut out = vec![0u8; 12];
    out[0..2].copy_from_slice(&id.to_be_bytes());
    out[2] = 0x80;
    out[3] = (u16::from(code) & 0xf) as u8;
    out
}

/// The zone an update or transfer names, if the server has it.
pub(crate) fn zone_of_request(request: &Message, records: &[DnsRecord]) -> Result<String, ResponseCode> {
    let [zone] = request.queries.as_slice() else { return Err(ResponseCode::FormErr) };
    let name = zone.name().to_lowercase().to_string();
    if records.iter().any(|r| r.zone == name && r.rtype == RecordType::SOA) {
        Ok(name)
    } else {
        Err(ResponseCode::NotAuth)
    }
}
