//! Dynamic updates (RFC 2136) and zone transfers, both signed with TSIG (RFC 8945).
//!
//! The server side: an UPDATE signed with a configured key is checked (zone, prerequisites,
//! update section), applied to a copy of the zone, given a new SOA serial, written to the
//! state directory and swapped in whole. An AXFR signed with a configured key returns the
//! zone's full data — every view's records — which is what `lct-dns update` diffs against
//! (and what an lct-dns secondary will want: it makes its own views). Unsigned or wrongly
//! signed requests change nothing and see nothing.
//!
//! The client side: [`Client`] transfers a zone and sends the difference as UPDATE messages.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TSIG, TsigError, make_tsig_record};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordData, TSigResponseContext, TSigVerifier, TSigner};

use crate::service::Live;
use crate::tsig::{Key, now};
use crate::zone::{DnsRecord, RecordType, View, assign_views, fqdn, supported};

/// What the server makes of a message: `None` when it is an ordinary query (hickory's).
pub async fn handle(raw: &[u8], over_tcp: bool, live: &Live) -> Option<Vec<Vec<u8>>> {
    if raw.len() < 12 {
        return None;
    }
    let opcode = (raw[2] >> 3) & 0xf;
    let transfer = opcode == 0 && matches!(question_type(raw), Some(252 | 251));
    if opcode != 5 && !transfer {
        return None;
    }
    let Ok(request) = Message::from_vec(raw) else {
        return Some(vec![bare_error(raw, ResponseCode::FormErr)]);
    };
    let signed = match authenticate(raw, &request, live) {
        Ok(signed) => signed,
        Err(response) => return Some(vec![response]),
    };
    if transfer {
        if !over_tcp {
            return Some(vec![reply(&request, ResponseCode::Refused, Some(&signed))]);
        }
        return Some(transfer_messages(&request, &signed, live));
    }
    let code = apply_update(&request, live).await;
    Some(vec![reply(&request, code, Some(&signed))])
}

/// The question's type, read straight from the wire (only the first question).
fn question_type(raw: &[u8]) -> Option<u16> {
    if u16::from_be_bytes([raw[4], raw[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    loop {
        let len = *raw.get(at)? as usize;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
    Some(u16::from_be_bytes([*raw.get(at + 1)?, *raw.get(at + 2)?]))
}

/// A verified request: the key's signer and the request's MAC, to sign the answers with.
struct Signed {
    signer: TSigner,
    mac: Vec<u8>,
}

/// Checks the request's TSIG against the configured keys; the error is the response to send
/// (REFUSED unsigned, NOTAUTH with BADKEY, BADSIG or BADTIME).
fn authenticate(raw: &[u8], request: &Message, live: &Live) -> Result<Signed, Vec<u8>> {
    let Some(tsig) = request.signature() else {
        tracing::info!("refused an unsigned {:?}", request.op_code);
        return Err(reply(request, ResponseCode::Refused, None));
    };
    let served = live.current();
    let time = now();
    let Some(key) = served.settings.keys.get(&tsig.name) else {
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
        Ok((mac, _, _)) => Ok(Signed { signer, mac }),
    }
}

/// A response carrying the request's question, signed when the request was.
fn reply(request: &Message, code: ResponseCode, signed: Option<&Signed>) -> Vec<u8> {
    match signed {
        Some(s) => reply_tsig(
            request,
            code,
            TSigResponseContext::new(request.id, now(), s.signer.clone(), s.mac.clone(), None),
        ),
        None => response(request, code).to_vec().unwrap_or_else(|_| bare_error_id(request.id, code)),
    }
}

fn reply_tsig(request: &Message, code: ResponseCode, context: TSigResponseContext) -> Vec<u8> {
    let mut message = response(request, code);
    let Ok(bytes) = message.to_vec() else { return bare_error_id(request.id, code) };
    match context.sign(&bytes) {
        Ok(tsig) => {
            message.set_signature(tsig);
            message.to_vec().unwrap_or(bytes)
        }
        Err(_) => bytes,
    }
}

fn response(request: &Message, code: ResponseCode) -> Message {
    let mut message = Message::new(request.id, MessageType::Response, request.op_code);
    message.metadata.response_code = code;
    message.add_queries(request.queries.iter().cloned());
    message
}

/// An error for a message too broken to parse: its id and opcode, no sections.
fn bare_error(raw: &[u8], code: ResponseCode) -> Vec<u8> {
    let mut out = bare_error_id(u16::from_be_bytes([raw[0], raw[1]]), code);
    out[2] |= raw[2] & 0x78; // the opcode
    out
}

fn bare_error_id(id: u16, code: ResponseCode) -> Vec<u8> {
    let mut out = vec![0u8; 12];
    out[0..2].copy_from_slice(&id.to_be_bytes());
    out[2] = 0x80;
    out[3] = (u16::from(code) & 0xf) as u8;
    out
}

/// The zone an update or transfer names, if the server has it.
fn zone_of_request(request: &Message, records: &[DnsRecord]) -> Result<String, ResponseCode> {
    let [zone] = request.queries.as_slice() else { return Err(ResponseCode::FormErr) };
    let name = zone.name().to_lowercase().to_string();
    if records.iter().any(|r| r.zone == name && r.rtype == RecordType::SOA) {
        Ok(name)
    } else {
        Err(ResponseCode::NotAuth)
    }
}

/// Applies an UPDATE: the whole message or nothing.
async fn apply_update(request: &Message, live: &Live) -> ResponseCode {
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
    let changed = match changes(&served.records, &zone, request) {
        Ok(Some(records)) => records,
        Ok(None) => return ResponseCode::NoError,
        Err(code) => return code,
    };
    let settings = served.settings.clone();
    let built = tokio::task::spawn_blocking(move || {
        let served = crate::service::Served::build(changed, settings)?;
        served.persist()?;
        anyhow::Ok(served)
    })
    .await;
    match built {
        Ok(Ok(served)) => {
            let serial = serial_of(&served.records, &zone).unwrap_or_default();
            live.swap(served);
            tracing::info!("zone {zone} updated, serial {serial}");
            ResponseCode::NoError
        }
        Ok(Err(e)) => {
            tracing::error!("zone {zone}: update refused, nothing changed: {e:#}");
            ResponseCode::ServFail
        }
        Err(e) => {
            tracing::error!("zone {zone}: update failed: {e}");
            ResponseCode::ServFail
        }
    }
}

/// A record's identity for comparisons: name and data in lower case, addresses in their
/// canonical form.
fn normal(name: &str, rtype: RecordType, data: &str) -> (String, RecordType, String) {
    let data = match rtype {
        RecordType::A | RecordType::AAAA => data.parse::<IpAddr>().map_or(data.to_string(), |a| a.to_string()),
        _ => data.to_ascii_lowercase(),
    };
    (name.to_ascii_lowercase(), rtype, data)
}

/// A wire record as a `dns-record` of `zone` (its view assigned later).
fn from_wire(zone: &str, record: &Record) -> Option<DnsRecord> {
    let rtype = supported(record.record_type())?;
    let data = match &record.data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        other => other.to_string().to_ascii_lowercase(),
    };
    let (name, rtype, data) = normal(&record.name.to_string(), rtype, &data);
    Some(DnsRecord { zone: zone.to_string(), name, rtype, ttl: record.ttl, data, view: View::Both })
}

/// A `dns-record` on the wire.
pub fn to_wire(record: &DnsRecord) -> Result<Record, String> {
    let name = Name::from_ascii(&record.name).map_err(|e| format!("{}: {e}", record.name))?;
    let data = RData::try_from_str(record.rtype, &record.data)
        .map_err(|e| format!("{} {:?} {:?}: {e}", record.name, record.rtype, record.data))?;
    Ok(Record::from_rdata(name, record.ttl, data))
}

/// The SOA serial of `zone` among `records`.
pub fn serial_of(records: &[DnsRecord], zone: &str) -> Option<u32> {
    records.iter().find(|r| r.zone == zone && r.rtype == RecordType::SOA).and_then(|r| soa_serial(&r.data))
}

pub fn soa_serial(data: &str) -> Option<u32> {
    data.split_whitespace().nth(2)?.parse().ok()
}

/// The records after `request`'s prerequisites and updates (RFC 2136 sections 3.2 to 3.4),
/// `None` if nothing changes, or the response code that refuses it.
fn changes(records: &[DnsRecord], zone: &str, request: &Message) -> Result<Option<Vec<DnsRecord>>, ResponseCode> {
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
            }
            DNSClass::ANY if u.ttl != 0 || !u.data.is_update() => return Err(ResponseCode::FormErr),
            DNSClass::ANY => {}
            DNSClass::NONE if u.ttl != 0 || t == RecordType::ANY => return Err(ResponseCode::FormErr),
            DNSClass::NONE => {}
            _ => return Err(ResponseCode::FormErr),
        }
    }

    // The update itself, on a copy keyed by each record's identity.
    let mut zone_records: std::collections::BTreeMap<(String, RecordType, String), DnsRecord> =
        mine.iter().map(|r| (normal(&r.name, r.rtype, &r.data), (*r).clone())).collect();
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
    let mut zone_records: Vec<DnsRecord> = zone_records.into_values().collect();
    // A new serial (RFC 1982 arithmetic wraps; 0 is skipped as some tools treat it as unset).
    for r in zone_records.iter_mut().filter(|r| r.rtype == RecordType::SOA) {
        let mut fields: Vec<String> = r.data.split_whitespace().map(str::to_string).collect();
        let serial = fields.get(2).and_then(|s| s.parse::<u32>().ok()).ok_or(ResponseCode::ServFail)?;
        let next = match serial.wrapping_add(1) {
            0 => 1,
            n => n,
        };
        fields[2] = next.to_string();
        r.data = fields.join(" ");
    }
    let mut out: Vec<DnsRecord> = records.iter().filter(|r| r.zone != zone).cloned().collect();
    out.extend(assign_views(zone_records));
    Ok(Some(out))
}

fn normal_with_ttl(r: &DnsRecord) -> (String, RecordType, String, u32) {
    let (n, t, d) = normal(&r.name, r.rtype, &r.data);
    (n, t, d, r.ttl)
}

/// An AXFR of the zone's full data: SOA, every record of every view once, SOA; in messages
/// of at most ~16 KiB, each signed, chained as RFC 8945 section 5.3.1 says.
fn transfer_messages(request: &Message, signed: &Signed, live: &Live) -> Vec<Vec<u8>> {
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

/// Talks to an lct-dns server (or any server that takes signed transfers and updates).
pub struct Client {
    pub server: SocketAddr,
    pub key: Key,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{server}: {error}")]
    Io { server: SocketAddr, error: std::io::Error },
    #[error("{server}: {message}")]
    Protocol { server: SocketAddr, message: String },
    #[error("{server}: zone {zone}: {code}")]
    Refused { server: SocketAddr, zone: String, code: String },
}

impl Client {
    fn io(&self) -> impl Fn(std::io::Error) -> ClientError + '_ {
        |source| ClientError::Io { server: self.server, error: source }
    }

    fn protocol(&self, message: impl std::fmt::Display) -> ClientError {
        ClientError::Protocol { server: self.server, message: message.to_string() }
    }

    fn connect(&self) -> Result<TcpStream, ClientError> {
        let stream = TcpStream::connect_timeout(&self.server, self.timeout).map_err(self.io())?;
        stream.set_read_timeout(Some(self.timeout)).map_err(self.io())?;
        stream.set_write_timeout(Some(self.timeout)).map_err(self.io())?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn send(&self, stream: &mut TcpStream, message: &Message) -> Result<(), ClientError> {
        let bytes = message.to_vec().map_err(|e| self.protocol(e))?;
        let len = u16::try_from(bytes.len()).map_err(|_| self.protocol("message over 64 KiB"))?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).map_err(self.io())
    }

    /// Signs `request` with the key, sends it on a new connection, and returns the connection
    /// and the verifier of the answers.
    fn send_signed(&self, request: &mut Message) -> Result<(TcpStream, TSigVerifier), ClientError> {
        let verifier = request
            .finalize(&self.key.signer(), now())
            .map_err(|e| self.protocol(e))?
            .ok_or_else(|| self.protocol("no TSIG verifier"))?;
        let mut stream = self.connect()?;
        self.send(&mut stream, request)?;
        Ok((stream, verifier))
    }

    fn receive(&self, stream: &mut TcpStream) -> Result<Vec<u8>, ClientError> {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).map_err(self.io())?;
        let mut bytes = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut bytes).map_err(self.io())?;
        Ok(bytes)
    }

    fn check(&self, zone: &str, response: &Message) -> Result<(), ClientError> {
        let code = response.response_code;
        if code != ResponseCode::NoError {
            let tsig_error = response.signature().and_then(|s| s.data.error);
            if code == ResponseCode::NotAuth && tsig_error.is_none() {
                return Err(ClientError::Refused {
                    server: self.server,
                    zone: zone.into(),
                    code: "not served there (its zones come from its records file: add the zone there and reload)"
                        .into(),
                });
            }
            let tsig_error = tsig_error.map(|e| format!(" ({e:?})"));
            return Err(ClientError::Refused {
                server: self.server,
                zone: zone.into(),
                code: format!("{code}{}", tsig_error.unwrap_or_default()),
            });
        }
        Ok(())
    }

    /// The zone's full data, by a signed AXFR whose every message is verified.
    pub fn transfer(&self, zone: &str) -> Result<Vec<DnsRecord>, ClientError> {
        let zone = fqdn(&zone.to_ascii_lowercase());
        let name = Name::from_ascii(&zone).map_err(|e| self.protocol(e))?;
        let mut request = Message::query();
        request.metadata.id = rand_id();
        request.add_query(Query::query(name, RecordType::AXFR));
        let (mut stream, mut verifier) = self.send_signed(&mut request)?;
        let mut out = Vec::new();
        let mut soas = 0;
        while soas < 2 {
            let bytes = self.receive(&mut stream)?;
            let message = Message::from_vec(&bytes).map_err(|e| self.protocol(e))?;
            self.check(&zone, &message)?;
            verifier.verify(&bytes).map_err(|e| self.protocol(format!("transfer of {zone}: {e}")))?;
            if message.answers.is_empty() {
                return Err(self.protocol(format!("transfer of {zone}: an empty message")));
            }
            for r in &message.answers {
                if r.record_type() == RecordType::SOA {
                    soas += 1;
                    if soas == 2 {
                        break;
                    }
                    if out.iter().any(|x: &DnsRecord| x.rtype == RecordType::SOA) {
                        continue;
                    }
                }
                if let Some(r) = from_wire(&zone, r) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Sends one signed UPDATE of `zone`: `deletes` (each record by its data) then `adds`.
    pub fn update(&self, zone: &str, deletes: &[DnsRecord], adds: &[DnsRecord]) -> Result<(), ClientError> {
        let zone = fqdn(&zone.to_ascii_lowercase());
        let name = Name::from_ascii(&zone).map_err(|e| self.protocol(e))?;
        let mut request = Message::new(rand_id(), MessageType::Query, OpCode::Update);
        request.add_query(Query::query(name, RecordType::SOA));
        for r in deletes {
            let mut w = to_wire(r).map_err(|e| self.protocol(e))?;
            w.dns_class = DNSClass::NONE;
            w.ttl = 0;
            request.authorities.push(w);
        }
        for r in adds {
            request.authorities.push(to_wire(r).map_err(|e| self.protocol(e))?);
        }
        let (mut stream, mut verifier) = self.send_signed(&mut request)?;
        let bytes = self.receive(&mut stream)?;
        let message = Message::from_vec(&bytes).map_err(|e| self.protocol(e))?;
        self.check(&zone, &message)?;
        verifier.verify(&bytes).map_err(|e| self.protocol(format!("update of {zone}: {e}")))?;
        Ok(())
    }
}

fn rand_id() -> u16 {
    // Not a secret: TSIG protects the exchange; the id only pairs request and response.
    (now() as u16) ^ (std::process::id() as u16).rotate_left(7)
}

/// What `lct-dns update` sends for a zone: the records to delete and to add, SOA aside (the
/// server keeps the serial).
pub fn difference(current: &[DnsRecord], desired: &[DnsRecord]) -> (Vec<DnsRecord>, Vec<DnsRecord>) {
    type Key = (String, RecordType, String, u32);
    let counted = |r: &&DnsRecord| r.rtype != RecordType::SOA;
    let keys = |list: &[DnsRecord]| list.iter().filter(counted).map(normal_with_ttl).collect::<BTreeSet<Key>>();
    // Each record of `list` that `other` lacks, once.
    let missing_from = |list: &[DnsRecord], other: &BTreeSet<Key>| {
        let mut seen = BTreeSet::new();
        list.iter()
            .filter(counted)
            .filter(|r| {
                let key = normal_with_ttl(r);
                !other.contains(&key) && seen.insert(key)
            })
            .cloned()
            .collect()
    };
    (missing_from(current, &keys(desired)), missing_from(desired, &keys(current)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, rtype: RecordType, data: &str) -> DnsRecord {
        DnsRecord {
            zone: "lct.internal.".into(),
            name: name.into(),
            rtype,
            ttl: 300,
            data: data.into(),
            view: View::Both,
        }
    }

    fn zone() -> Vec<DnsRecord> {
        assign_views(vec![
            rec("lct.internal.", RecordType::SOA, "ns1.lct.internal. hostmaster.lct.internal. 7 3600 600 1209600 300"),
            rec("lct.internal.", RecordType::NS, "ns1.lct.internal."),
            rec("a.zk.lct.internal.", RecordType::A, "192.168.128.1"),
            rec("a.zk.lct.internal.", RecordType::A, "203.0.113.1"),
        ])
    }

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
        let out = changes(&records, "lct.internal.", &m).unwrap().unwrap();
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

    #[test]
    fn difference_ignores_the_serial() {
        let current = zone();
        let mut desired = zone();
        desired[0].data = desired[0].data.replace(" 7 ", " 99 ");
        desired.push(rec("b.zk.lct.internal.", RecordType::A, "192.168.128.2"));
        desired.retain(|r| r.data != "203.0.113.1");
        let (deletes, adds) = difference(&current, &desired);
        assert_eq!(deletes.len(), 1);
        assert_eq!(deletes[0].data, "203.0.113.1");
        assert_eq!(adds.len(), 1);
        assert_eq!(adds[0].name, "b.zk.lct.internal.");
    }
}

#[cfg(test)]
mod fuzz {
    //! Mutated signed UPDATEs and transfers thrown at the handler: it never panics, always
    //! answers, and changes nothing unless the message is the signed original.
    use std::sync::Arc;

    use super::*;
    use crate::service::{Served, Settings};
    use crate::tsig::Keys;

    fn live(key: &Key) -> Live {
        let records = assign_views(vec![
            DnsRecord {
                zone: "lct.internal.".into(),
                name: "lct.internal.".into(),
                rtype: RecordType::SOA,
                ttl: 300,
                data: "ns1.lct.internal. hostmaster.lct.internal. 7 3600 600 1209600 300".into(),
                view: View::Both,
            },
            DnsRecord {
                zone: "lct.internal.".into(),
                name: "lct.internal.".into(),
                rtype: RecordType::NS,
                ttl: 300,
                data: "ns1.lct.internal.".into(),
                view: View::Both,
            },
        ]);
        let state = std::env::temp_dir().join(format!("lct-dns-fuzz-{}", std::process::id())).join("zones.jsonl");
        let settings = Settings {
            prefixes: Vec::new(),
            modes: Default::default(),
            keys: Keys::new(vec![key.clone()]),
            state_file: state,
        };
        Live::new(Served::build(records, Arc::new(settings)).unwrap())
    }

    fn signed_update(key: &Key) -> Vec<u8> {
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Update);
        m.add_query(Query::query(Name::from_ascii("lct.internal.").unwrap(), RecordType::SOA));
        m.authorities.push(Record::from_rdata(
            Name::from_ascii("web-1.lct.internal.").unwrap(),
            300,
            RData::try_from_str(RecordType::A, "192.168.128.9").unwrap(),
        ));
        m.finalize(&key.signer(), now()).unwrap();
        m.to_vec().unwrap()
    }

    fn signed_transfer(key: &Key) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii("lct.internal.").unwrap(), RecordType::AXFR));
        m.finalize(&key.signer(), now()).unwrap();
        m.to_vec().unwrap()
    }

    #[tokio::test]
    async fn mutated_signed_messages_change_nothing_and_never_panic() {
        let key = Key::generate("fuzz-key").unwrap();
        let live = live(&key);
        let originals = [signed_update(&key), signed_transfer(&key)];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let serial = |live: &Live| super::serial_of(&live.current().records, "lct.internal.");
        for round in 0..3000 {
            let mut packet = originals[round % 2].clone();
            match next() % 4 {
                // Flip some bytes.
                0 | 1 => {
                    for _ in 0..1 + next() % 4 {
                        let at = (next() as usize) % packet.len();
                        packet[at] ^= 1 << (next() % 8);
                    }
                }
                // Cut it short.
                2 => packet.truncate(12 + (next() as usize) % (packet.len() - 12)),
                // Garbage after a real header.
                _ => {
                    packet.truncate(12);
                    packet.extend((0..next() % 200).map(|_| next() as u8));
                    packet[2] = 5 << 3; // UPDATE
                }
            }
            // Some bytes are outside the MAC (the message id: TSIG signs the original one, for
            // forwarders; the TSIG record's TTL: signed as 0): a copy that still verifies is
            // the authentic message, not a forgery.
            if key.signer().verify_message_byte(&packet, None, true).is_ok() {
                continue;
            }
            let answers = tokio::time::timeout(std::time::Duration::from_secs(2), handle(&packet, true, &live))
                .await
                .expect("answered in time");
            if let Some(answers) = answers {
                assert!(!answers.is_empty(), "round {round}: every message handled is answered");
            }
            assert_eq!(serial(&live), Some(7), "round {round}: a forged message changed the zone");
        }
        // The original, signed and intact, is applied.
        let answer = handle(&originals[0], true, &live).await.unwrap();
        assert_eq!(answer[0][3] & 0xf, 0, "NOERROR");
        assert_eq!(serial(&live), Some(8));
        let state = live.current().settings.state_file.clone();
        let _ = std::fs::remove_dir_all(state.parent().expect("a directory"));
    }
}
