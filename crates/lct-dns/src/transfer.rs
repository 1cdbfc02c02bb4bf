//! Zone transfers, the server side: AXFR, and IXFR (RFC 1995) from the journal of recent
//! changes (a full transfer when it does not reach back), in messages each signed and
//! chained as RFC 8945 section 5.3.1 says. What a transfer holds depends on the key: an
//! update key gets the zone's full data (every view's records once, which is what `lct-dns
//! update` diffs against); a secondary's key gets its view only, as the zone's mode serves
//! it there, so a standard secondary never serves both views merged. A region's secondary
//! (`region` on its `[[secondary]]`) gets that region's view, whole each time (a region's
//! view is read from its file and has no journal; RFC 1995 lets an IXFR be answered so).

use std::collections::BTreeSet;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TSIG, make_tsig_record};
use hickory_proto::rr::{RData, Record, TSigResponseContext};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::fast::Answers;
use crate::live::Live;
use crate::mode::{ZoneMode, mode_of};
use crate::regions::RegionViews;
use crate::request::{Grant, Signed, reply, response, zone_of_request};
use crate::stats::Event;
use crate::tsig::now;
use crate::wire::{normal, serial_of, to_wire};
use crate::zone::{DnsRecord, RecordType, View};

/// The answer to an AXFR or IXFR: SOA, records, SOA (or the IXFR forms), in messages of at
/// most 250 records, each signed, chained as RFC 8945 section 5.3.1 says.
pub(crate) fn transfer_messages(request: &Message, signed: &Signed, live: &Live) -> Replies {
    Replies::Now(match transfer(request, signed, live) {
        Ok(stream) => return stream,
        Err(messages) => messages,
    })
}

/// Messages to send: made already, or arriving as they are made (a big transfer's first
/// message goes out while the rest are packed and signed).
pub enum Replies {
    Now(Vec<Vec<u8>>),
    Streamed(tokio::sync::mpsc::Receiver<Vec<u8>>),
}

impl Replies {
    /// Every message, once made.
    pub async fn all(self) -> Vec<Vec<u8>> {
        match self {
            Replies::Now(messages) => messages,
            Replies::Streamed(mut received) => {
                let mut messages = Vec::new();
                while let Some(m) = received.recv().await {
                    messages.push(m);
                }
                messages
            }
        }
    }
}

/// [`transfer_messages`]: `Err` holds every message at once.
fn transfer(request: &Message, signed: &Signed, live: &Live) -> Result<Replies, Vec<Vec<u8>>> {
    let served = live.current();
    let zone = match zone_of_request(request, &served.records) {
        Ok(zone) => zone,
        Err(code) => return Err(vec![reply(request, code, Some(signed))]),
    };
    if served.settling.as_deref() == Some(zone.as_str()) {
        // Its new copy serves, its records' text is a moment away: ask again then.
        return Err(vec![reply(request, ResponseCode::ServFail, Some(signed))]);
    }
    // A region's secondary: that region's tables, never this server's own records.
    if let Grant::Secondary(s) = &signed.grant
        && let Some(network) = &s.region
    {
        if !s.serves(&zone) {
            return Err(vec![reply(request, ResponseCode::NotAuth, Some(signed))]);
        }
        let regions = Arc::clone(&served.settings.regions);
        let Some(index) = regions.views().iter().position(|v| &v.network == network) else {
            // Checked at start and reload: only a configuration swapped under it gets here.
            return Err(vec![reply(request, ResponseCode::Refused, Some(signed))]);
        };
        let internal = mode_of(&served.settings.modes, &zone) != ZoneMode::Public;
        if !regions.views()[index].answers.transferable(&zone, internal) {
            return Err(vec![reply(request, ResponseCode::NotAuth, Some(signed))]);
        }
        let kind = if ixfr_serial(request).is_some() { "IXFR" } else { "AXFR" };
        crate::stats::event(if ixfr_serial(request).is_some() { Event::IxfrOut } else { Event::AxfrOut });
        tracing::info!("zone {zone}: {kind} of region {network}'s view (whole)");
        return Ok(stream_tables(request, signed, zone, Tables::Region(regions, index), internal, kind));
    }
    // Which records the key sees: all, or its view of the zone as the zone's mode has it.
    let view = match &signed.grant {
        Grant::Full => None,
        Grant::Primary(_) => return Err(vec![reply(request, ResponseCode::Refused, Some(signed))]),
        Grant::Secondary(s) if !s.serves(&zone) => {
            return Err(vec![reply(request, ResponseCode::NotAuth, Some(signed))]);
        }
        Grant::Secondary(s) => match (mode_of(&served.settings.modes, &zone), s.view.view()) {
            (ZoneMode::Private, View::External) => {
                return Err(vec![reply(request, ResponseCode::NotAuth, Some(signed))]);
            }
            (ZoneMode::Public, _) => Some(View::External),
            (_, v) => Some(v),
        },
    };
    let visible = |r: &&DnsRecord| r.zone == zone && view.is_none_or(|v| r.view.includes(v));
    let servfail = || Err(vec![reply(request, ResponseCode::ServFail, Some(signed))]);
    let Some(soa) = served.records.iter().filter(visible).find(|r| r.rtype == RecordType::SOA) else {
        return servfail();
    };
    let Ok(soa_wire) = to_wire(soa) else { return servfail() };
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
    crate::stats::event(if client_serial.is_some() { Event::IxfrOut } else { Event::AxfrOut });
    let shown = match view {
        None => "every",
        Some(View::Internal) => "internal",
        Some(_) => "external",
    };
    let changes = client_serial.map(|s| (s, live.changes_since(&zone, s)));
    let up_to_date = |s: u32| s == current || (s.wrapping_sub(current) as i32) > 0;
    // A secondary's full transfer: the view's records straight from the answer tables. A
    // signed zone's journal holds its records, not its signatures and NSEC chain: its
    // IXFR is answered with the whole zone (RFC 1995 allows it).
    let dnssec = served.settings.dnssec.is_signed(&zone);
    if let Some(v) = view
        && !matches!(&changes, Some((s, _)) if up_to_date(*s))
        && (dnssec || !matches!(&changes, Some((_, Some(_)))))
    {
        let internal = v == View::Internal;
        if !served.answers.transferable(&zone, internal) {
            return servfail();
        }
        tracing::info!("zone {zone}: {kind} (serial {current}, {shown} view)");
        let tables = Tables::Main(Arc::clone(&served.answers));
        return Ok(stream_tables(request, signed, zone, tables, internal, kind));
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
        let Ok(bytes) = message.to_vec() else { return servfail() };
        bodies.push(bytes);
    }
    Err(sign_chain(request, signed, bodies))
}

/// The answer tables a full transfer is read from: this server's own, or a region's view.
enum Tables {
    Main(Arc<Answers>),
    Region(Arc<RegionViews>, usize),
}

impl Tables {
    fn answers(&self) -> &Answers {
        match self {
            Tables::Main(answers) => answers,
            Tables::Region(regions, index) => &regions.views()[*index].answers,
        }
    }
}

/// A full transfer of `zone`'s view (`internal` or not) straight from `tables`: packed,
/// signed and sent a message at a time, on a thread of its own.
fn stream_tables(
    request: &Message,
    signed: &Signed,
    zone: String,
    tables: Tables,
    internal: bool,
    kind: &'static str,
) -> Replies {
    let started = std::time::Instant::now();
    let (sender, messages) = tokio::sync::mpsc::channel(16);
    let mut signer = ChainSigner::new(request.id, signed);
    let mut packer = Packer::new(request);
    tokio::task::spawn_blocking(move || {
        let (mut sent, mut records) = (0usize, 0usize);
        let mut send = |body: Vec<u8>| {
            sent += 1;
            signer.sign(body).is_some_and(|m| sender.blocking_send(m).is_ok())
        };
        let mut soa = Vec::new();
        let all = tables.answers().each_transfer_record(&zone, internal, |owner, rest| {
            if soa.is_empty() {
                soa = [owner, rest].concat();
            }
            records += 1;
            packer.push(owner, rest).is_none_or(&mut send)
        });
        // The SOA again at the end.
        if all && packer.push(&soa, &[]).is_none_or(&mut send) && send(packer.finish()) {
            tracing::debug!("zone {zone}: {} records in {sent} messages sent in {:?}", records + 1, started.elapsed());
        } else {
            tracing::info!("zone {zone}: the {kind} stopped after {sent} messages (the client left)");
        }
    });
    Replies::Streamed(messages)
}

/// Largest transfer message we write (the records of one RRset are never split across
/// messages by a limit smaller than a record: a record always fits one).
const MESSAGE_BYTES: usize = 16 * 1024;

/// Packs a full transfer's records into messages of up to [`MESSAGE_BYTES`]; the question
/// in the first message only (RFC 5936 section 2.2).
struct Packer {
    id: u16,
    question: Option<Vec<u8>>,
    body: Vec<u8>,
    count: u16,
}

impl Packer {
    fn new(request: &Message) -> Packer {
        let question = request.queries.first().map(|q| {
            let mut bytes = Vec::with_capacity(64);
            let mut encoder = BinEncoder::new(&mut bytes);
            let _ = q.emit(&mut encoder);
            bytes
        });
        let mut packer = Packer { id: request.id, question, body: Vec::new(), count: 0 };
        packer.body = packer.header();
        packer
    }

    /// A message's header (a response, authoritative, NOERROR) and, in the first, the question.
    fn header(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MESSAGE_BYTES + 512);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&[0x84, 0x00]);
        let question = self.question.take();
        for n in [u16::from(question.is_some()), 0, 0, 0] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend(question.unwrap_or_default());
        out
    }

    /// Adds a record (its owner, then the rest); a message that it does not fit in comes
    /// back, full, and the record starts the next.
    fn push(&mut self, owner: &[u8], rest: &[u8]) -> Option<Vec<u8>> {
        let size = owner.len() + rest.len();
        let full = (self.count > 0 && (self.body.len() + size > MESSAGE_BYTES || self.count == u16::MAX)).then(|| {
            self.body[6..8].copy_from_slice(&self.count.to_be_bytes());
            self.count = 0;
            let next = self.header();
            std::mem::replace(&mut self.body, next)
        });
        self.body.extend_from_slice(owner);
        self.body.extend_from_slice(rest);
        self.count += 1;
        full
    }

    /// The last message.
    fn finish(mut self) -> Vec<u8> {
        self.body[6..8].copy_from_slice(&self.count.to_be_bytes());
        self.body
    }
}

/// Signs a transfer's messages as RFC 8945 section 5.3.1 chains them: the first over the
/// request's MAC and the whole TSIG variables, each later one over the previous MAC, the
/// message and only the timers. Each body is a message without its TSIG, which is
/// appended (and counted in the additional section).
pub(crate) fn sign_chain(request: &Message, signed: &Signed, bodies: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut signer = ChainSigner::new(request.id, signed);
    let mut messages = Vec::with_capacity(bodies.len());
    for body in bodies {
        match signer.sign(body) {
            Some(m) => messages.push(m),
            None => return vec![reply(request, ResponseCode::ServFail, Some(signed))],
        }
    }
    messages
}

/// Signs the messages of one answer in order, each over the previous one's MAC.
struct ChainSigner {
    id: u16,
    signer: hickory_proto::rr::TSigner,
    previous_mac: Vec<u8>,
    time: u64,
    first: bool,
}

impl ChainSigner {
    fn new(id: u16, signed: &Signed) -> ChainSigner {
        ChainSigner { id, signer: signed.signer.clone(), previous_mac: signed.mac.clone(), time: now(), first: true }
    }

    /// `bytes` (a message without its TSIG) with its TSIG appended and counted.
    fn sign(&mut self, mut bytes: Vec<u8>) -> Option<Vec<u8>> {
        let (time, signer) = (self.time, &self.signer);
        let tsig = if std::mem::take(&mut self.first) {
            let context = TSigResponseContext::new(self.id, time, signer.clone(), self.previous_mac.clone(), None);
            context.sign(&bytes).ok()?
        } else {
            let mut tbs = Vec::with_capacity(bytes.len() + self.previous_mac.len() + 10);
            tbs.extend_from_slice(&(self.previous_mac.len() as u16).to_be_bytes());
            tbs.extend_from_slice(&self.previous_mac);
            tbs.extend_from_slice(&bytes);
            tbs.extend_from_slice(&((time >> 32) as u16).to_be_bytes());
            tbs.extend_from_slice(&(time as u32).to_be_bytes());
            tbs.extend_from_slice(&signer.fudge().to_be_bytes());
            let mac = signer.sign(&tbs).ok()?;
            let rdata = TSIG::new(signer.algorithm().clone(), time, signer.fudge(), mac, self.id, None, Vec::new());
            Box::new(make_tsig_record(signer.signer_name().clone(), rdata))
        };
        self.previous_mac = tsig.data.mac.clone();
        bytes.extend_from_slice(&tsig.to_bytes().ok()?);
        let additional = u16::from_be_bytes([bytes[10], bytes[11]]) + 1;
        bytes[10..12].copy_from_slice(&additional.to_be_bytes());
        Some(bytes)
    }
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
