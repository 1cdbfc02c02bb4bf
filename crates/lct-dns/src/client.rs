//! The client side: [`Client`] transfers a zone from a server (lct-dns, or any that takes
//! signed transfers and updates) and sends the [`difference`] as signed UPDATE messages;
//! what it did is a `dns-update` record ([`ZoneUpdate`]).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name};

use crate::chain::Chain;
use crate::journal::Change;
use crate::tsig::{Key, now};
use crate::wire::{WireBatch, from_wire, normal_with_ttl, read_all_answers, read_answers, to_wire};
use crate::zone::{DnsRecord, RecordType, fqdn};

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
    fn send_signed(&self, request: &mut Message) -> Result<(TcpStream, Chain), ClientError> {
        let signer = self.key.signer();
        let time = now();
        request.finalize(&signer, time).map_err(|e| self.protocol(e))?;
        let previous = request.signature().map(|s| s.data.mac.clone()).ok_or_else(|| self.protocol("not signed"))?;
        let mut stream = self.connect()?;
        self.send(&mut stream, request)?;
        Ok((stream, Chain::new(signer, previous, time)))
    }

    fn receive(&self, stream: &mut impl Read) -> Result<Vec<u8>, ClientError> {
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

    /// A query of `zone` (fully qualified, lower case) for `rtype`, and the zone's name so.
    fn question(&self, zone: &str, rtype: RecordType) -> Result<(String, Message), ClientError> {
        let zone = fqdn(&zone.to_ascii_lowercase());
        let name = Name::from_ascii(&zone).map_err(|e| self.protocol(e))?;
        let mut request = Message::new(rand_id().map_err(|e| self.protocol(e))?, MessageType::Query, OpCode::Query);
        request.add_query(Query::query(name, rtype));
        Ok((zone, request))
    }

    /// The next message of an answer, read, checked and its signature verified; `what`
    /// names the exchange in errors.
    fn receive_verified(
        &self,
        stream: &mut TcpStream,
        verifier: &mut Chain,
        zone: &str,
        what: &str,
    ) -> Result<Message, ClientError> {
        Ok(self.receive_verified_bytes(stream, verifier, zone, what)?.1)
    }

    /// [`Client::receive_verified`], the message's bytes beside it.
    fn receive_verified_bytes(
        &self,
        stream: &mut TcpStream,
        verifier: &mut Chain,
        zone: &str,
        what: &str,
    ) -> Result<(Vec<u8>, Message), ClientError> {
        let bytes = self.receive(stream)?;
        let message = Message::from_vec(&bytes).map_err(|e| self.protocol(e))?;
        self.check(zone, &message)?;
        verifier.verify(&bytes, &message).map_err(|e| self.protocol(format!("{what} of {zone}: {e}")))?;
        Ok((bytes, message))
    }

    /// The zone's full data, by a signed AXFR whose every message is verified.
    pub fn transfer(&self, zone: &str) -> Result<Vec<DnsRecord>, ClientError> {
        let mut out = Vec::new();
        let fqdn_zone = fqdn(&zone.to_ascii_lowercase());
        self.transfer_into(zone, |batch| out.extend(batch.texts(&fqdn_zone)))?;
        Ok(out)
    }

    /// [`Client::transfer`], each message's records handed to `take` as they arrive, on
    /// another thread: messages are read, verified and turned into records here while
    /// `take` works on the previous ones (a secondary builds its tables meanwhile), so a big
    /// zone takes the slower of the two, not their sum.
    pub fn transfer_into(&self, zone: &str, mut take: impl FnMut(WireBatch) + Send) -> Result<(), ClientError> {
        let (zone, mut request) = self.question(zone, RecordType::AXFR)?;
        let (stream, mut chain) = self.send_signed(&mut request)?;
        // Buffered: a big transfer is hundreds of messages, two reads each otherwise.
        let mut reader = std::io::BufReader::with_capacity(256 * 1024, stream);
        std::thread::scope(|scope| {
            let (batches, received) = std::sync::mpsc::sync_channel::<WireBatch>(64);
            scope.spawn(move || {
                for batch in received {
                    take(batch);
                }
            });
            // Each message is read off the wire as it is: no parsed message, no text (a big
            // zone's transfer spent most of its time in those).
            let mut soas = 0;
            let mut skipped = 0;
            loop {
                let bytes = self.receive(&mut reader)?;
                if bytes.len() < 12 || bytes[3] & 0x0f != 0 {
                    // Not an answer: let the full parser say what it is.
                    let message = Message::from_vec(&bytes).map_err(|e| self.protocol(e))?;
                    self.check(&zone, &message)?;
                }
                chain.verify_bytes(&bytes).map_err(|e| self.protocol(format!("transfer of {zone}: {e}")))?;
                let mut batch = WireBatch::default();
                let answered = read_answers(&bytes, &mut soas, &mut batch)
                    .map_err(|e| self.protocol(format!("transfer of {zone}: {e}")))?;
                if batch.is_empty() && !answered.closed && answered.skipped == 0 {
                    return Err(self.protocol(format!("transfer of {zone}: an empty message")));
                }
                skipped += answered.skipped;
                if (!batch.is_empty() && batches.send(batch).is_err()) || answered.closed {
                    break;
                }
            }
            if skipped > 0 {
                tracing::warn!("zone {zone}: {skipped} records of types lct-dns does not serve left out");
            }
            Ok(())
        })
    }

    /// The zone's SOA at the server, by a signed query over TCP (a secondary's refresh).
    pub fn soa(&self, zone: &str) -> Result<DnsRecord, ClientError> {
        let (zone, mut request) = self.question(zone, RecordType::SOA)?;
        let (mut stream, mut verifier) = self.send_signed(&mut request)?;
        let message = self.receive_verified(&mut stream, &mut verifier, &zone, "SOA")?;
        message
            .answers
            .iter()
            .find(|r| r.record_type() == RecordType::SOA)
            .and_then(|r| from_wire(&zone, r))
            .ok_or_else(|| self.protocol(format!("SOA of {zone}: not in the answer")))
    }

    /// The changes since `have` (our SOA) by a signed IXFR (RFC 1995): the server answers
    /// with the changes, the whole zone, or its SOA alone when nothing changed.
    pub fn ixfr(&self, zone: &str, have: &DnsRecord) -> Result<Ixfr, ClientError> {
        let (zone, mut request) = self.question(zone, RecordType::IXFR)?;
        request.authorities.push(to_wire(have).map_err(|e| self.protocol(e))?);
        let (mut stream, mut verifier) = self.send_signed(&mut request)?;
        // Read off the wire as they came (a signed zone's DNSSEC records keep their exact
        // bytes); the types lct-dns does not keep are left out, and counted.
        let mut records = Vec::new();
        let mut skipped = 0;
        loop {
            let (bytes, message) = self.receive_verified_bytes(&mut stream, &mut verifier, &zone, "IXFR")?;
            if message.answers.is_empty() {
                return Err(self.protocol(format!("IXFR of {zone}: an empty message")));
            }
            let mut batch = WireBatch::default();
            let answered =
                read_all_answers(&bytes, &mut batch).map_err(|e| self.protocol(format!("IXFR of {zone}: {e}")))?;
            if skipped == 0 && answered.skipped > 0 {
                tracing::warn!("zone {zone}: records of types lct-dns does not serve left out of an IXFR");
            }
            skipped += answered.skipped;
            records.extend(batch.texts(&zone));
            match parse_ixfr(&records) {
                Ok(Some(ixfr)) => return Ok(ixfr),
                Ok(None) => continue,
                Err(e) => return Err(self.protocol(format!("IXFR of {zone}: {e}"))),
            }
        }
    }

    /// Sends one signed UPDATE of `zone`: `deletes` (each record by its data) then `adds`.
    pub fn update(&self, zone: &str, deletes: &[DnsRecord], adds: &[DnsRecord]) -> Result<(), ClientError> {
        let (zone, mut request) = self.question(zone, RecordType::SOA)?;
        request.metadata.op_code = OpCode::Update;
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
        self.receive_verified(&mut stream, &mut verifier, &zone, "update")?;
        Ok(())
    }
}

/// What an IXFR brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ixfr {
    /// Nothing changed.
    UpToDate,
    /// The whole zone (SOA first), as a server sends when its journal does not reach back.
    Full(Vec<DnsRecord>),
    /// The new SOA and each change in order: the records taken out, then those put in.
    Incremental(DnsRecord, Vec<Change>),
}

/// The IXFR so far (its records as `dns-record`s of the zone, in order): `None` while
/// incomplete (more messages follow).
pub(crate) fn parse_ixfr(records: &[DnsRecord]) -> Result<Option<Ixfr>, String> {
    let serial = |r: &DnsRecord| (r.rtype == RecordType::SOA).then(|| crate::wire::soa_serial(&r.data)).flatten();
    let Some(first) = records.first() else { return Ok(None) };
    let new = serial(first).ok_or("the first record is not the SOA")?;
    let keep = |list: &[DnsRecord]| list.to_vec();
    if records.len() == 1 {
        return Ok(Some(Ixfr::UpToDate));
    }
    let last = records.last().and_then(serial);
    if serial(&records[1]).is_none() {
        // The whole zone: SOA, records, SOA.
        if records.len() >= 3 && last == Some(new) {
            return Ok(Some(Ixfr::Full(keep(&records[..records.len() - 1]))));
        }
        return Ok(None);
    }
    let soa = first.clone();
    let mut changes = Vec::new();
    let mut i = 1;
    loop {
        let Some(start) = records.get(i) else { return Ok(None) };
        let at = serial(start).ok_or("a change does not start with an SOA")?;
        if at == new && i == records.len() - 1 {
            return Ok(Some(Ixfr::Incremental(soa, changes)));
        }
        let removed_from = i + 1;
        i += 1;
        while records.get(i).is_some_and(|r| serial(r).is_none()) {
            i += 1;
        }
        let removed = &records[removed_from..i];
        let Some(to) = records.get(i).and_then(serial) else { return Ok(None) };
        let added_from = i + 1;
        i += 1;
        while records.get(i).is_some_and(|r| serial(r).is_none()) {
            i += 1;
        }
        changes.push(Change { from: at, to, removed: keep(removed), added: keep(&records[added_from..i]) });
    }
}

/// Whether the server at `server` answers a DNSKEY set for `zone` (an unsigned query over
/// UDP, its answer checked to be the answer to it): a zone served signed. An error when no
/// answer came within `timeout`.
pub fn serves_dnskey(server: SocketAddr, zone: &str, timeout: Duration) -> Result<bool, ClientError> {
    let protocol = |message: String| ClientError::Protocol { server, message };
    let io = |error| ClientError::Io { server, error };
    let name = Name::from_ascii(fqdn(&zone.to_ascii_lowercase())).map_err(|e| protocol(e.to_string()))?;
    let id = rand_id().map_err(|e| protocol(e.to_string()))?;
    let mut request = Message::new(id, MessageType::Query, OpCode::Query);
    request.add_query(Query::query(name.clone(), RecordType::DNSKEY));
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_max_payload(1232);
    request.set_edns(edns);
    let bytes = request.to_vec().map_err(|e| protocol(e.to_string()))?;
    let bind: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = std::net::UdpSocket::bind(bind).map_err(io)?;
    socket.connect(server).map_err(io)?;
    socket.set_read_timeout(Some(timeout)).map_err(io)?;
    socket.send(&bytes).map_err(io)?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket.recv(&mut buf).map_err(io)?;
        let Ok(answer) = Message::from_vec(&buf[..n]) else { continue };
        if answer.id != id || answer.queries.first().is_none_or(|q| q.name() != &name) {
            continue; // not the answer to this question
        }
        // A DNSKEY set, or one too big for the datagram: signed either way.
        let keys = answer.answers.iter().any(|r| r.record_type() == RecordType::DNSKEY);
        return Ok(keys || answer.metadata.truncation);
    }
}

/// A message id from the system's random source: an unsigned exchange (a secondary's SOA
/// check without a key) is only as hard to spoof as its id is to guess (RFC 5452).
pub(crate) fn rand_id() -> Result<u16, lct_core::random::RandomError> {
    lct_core::random::u16()
}

/// What `lct-dns update` sends for a zone: the records to delete and to add, SOA aside (the
/// server keeps the serial).
pub fn difference(current: &[DnsRecord], desired: &[DnsRecord]) -> (Vec<DnsRecord>, Vec<DnsRecord>) {
    type Key = (String, RecordType, String, u32);
    // The SOA's serial is the server's to keep, and a signed zone's DNSSEC records its
    // signer's: neither is compared.
    let counted = |r: &&DnsRecord| r.rtype != RecordType::SOA && !crate::zone::is_dnssec(r.rtype);
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

impl Client {
    /// `lct-dns update`: each zone of `desired` transferred from the server and compared
    /// with it, the difference sent (unless `dry_run`); a report per zone brought in line,
    /// and how many zones could not be (each logged).
    pub fn update_zones(&self, desired: &[DnsRecord], dry_run: bool) -> (Vec<ZoneUpdate>, usize) {
        let zones: BTreeSet<String> = desired.iter().map(|r| r.zone.clone()).collect();
        let mut reports = Vec::new();
        let mut failed = 0;
        for zone in zones {
            let current = match self.transfer(&zone) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("{e}");
                    failed += 1;
                    continue;
                }
            };
            let serial_of = |records: &[DnsRecord]| crate::wire::serial_of(records, &zone);
            let want: Vec<DnsRecord> = desired.iter().filter(|r| r.zone == zone).cloned().collect();
            let (deletes, adds) = difference(&current, &want);
            let serial_before = serial_of(&current);
            let mut serial_after = serial_before;
            let nothing_to_do = deletes.is_empty() && adds.is_empty();
            if !dry_run && !nothing_to_do {
                // One message per zone while it fits in 64 KiB; else in parts (each one
                // atomic on the server).
                let parts = (deletes.len() + adds.len()).div_ceil(1500).max(1);
                let (dchunk, achunk) = (deletes.len().div_ceil(parts).max(1), adds.len().div_ceil(parts).max(1));
                let mut result = Ok(());
                for i in 0..parts {
                    let d = deletes.chunks(dchunk).nth(i).unwrap_or(&[]);
                    let a = adds.chunks(achunk).nth(i).unwrap_or(&[]);
                    result = self.update(&zone, d, a);
                    if result.is_err() {
                        break;
                    }
                }
                if let Err(e) = result {
                    tracing::error!("{e}");
                    failed += 1;
                    continue;
                }
                serial_after = self.transfer(&zone).ok().and_then(|c| serial_of(&c));
            }
            reports.push(ZoneUpdate {
                zone,
                added: adds.len(),
                removed: deletes.len(),
                serial_before,
                serial_after,
                dry_run,
            });
        }
        (reports, failed)
    }
}

/// What `lct-dns update` did to one zone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ZoneUpdate {
    pub zone: String,
    pub added: usize,
    pub removed: usize,
    /// The serial before and after (equal when nothing changed).
    pub serial_before: Option<u32>,
    pub serial_after: Option<u32>,
    pub dry_run: bool,
}

impl lct_core::record::Record for ZoneUpdate {
    const KIND: &'static str = "dns-update";
    const VERSION: u32 = 1;
}

impl lct_core::table::Tabular for ZoneUpdate {
    const HEADERS: &'static [&'static str] = &["ZONE", "ADDED", "REMOVED", "SERIAL"];
    fn row(&self) -> Vec<String> {
        let serial = |s: Option<u32>| s.map_or("-".into(), |s| s.to_string());
        let after = if self.dry_run { "(dry run)".to_string() } else { serial(self.serial_after) };
        vec![
            self.zone.clone(),
            self.added.to_string(),
            self.removed.to_string(),
            format!("{} -> {after}", serial(self.serial_before)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::fixtures::{rec, zone};

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
