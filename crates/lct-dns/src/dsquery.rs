//! Asking the parent zone's servers for a signed zone's DS set, as Knot's `parent` servers
//! are asked during a KSK submission: once every configured parent answers with the DS of
//! every key waiting for it, the submission is seen (what `lct-dns ds-seen` says by hand).
//!
//! Asked over TCP only: a UDP answer carries nothing but a 16-bit id against an off-path
//! forger, and a forged "the parent has it" retires the old KSK while the parent still
//! points at it (the zone bogus for every validator). A TCP answer needs the connection's
//! sequence numbers, which an off-path sender cannot see. And one look is not enough: the
//! DS must be at every parent at two looks apart ([`Sightings`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// How long one parent has to answer.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Whether every server in `parents` answers `zone`'s DS query with a set holding each of
/// `wanted` (DS data: key tag, algorithm, digest type, digest). An error names the parent
/// that did not answer, or answered with an error.
pub fn parents_have(parents: &[SocketAddr], zone: &str, wanted: &[Vec<u8>]) -> Result<bool, String> {
    if parents.is_empty() || wanted.is_empty() {
        return Ok(false);
    }
    for parent in parents {
        // The error may quote what the parent sent: its control characters escaped for the log.
        let have = ds_set(*parent, zone).map_err(|e| format!("parent {parent}: {}", crate::zonekeys::shown(&e)))?;
        if !wanted.iter().all(|w| have.contains(w)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The DS set of `zone` at the server `parent`, each record's data as the wire has it.
fn ds_set(parent: SocketAddr, zone: &str) -> Result<Vec<Vec<u8>>, String> {
    let name = Name::from_ascii(zone).map_err(|e| format!("{zone}: {e}"))?;
    let id = lct_core::random::u16().map_err(|e| e.to_string())?;
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(name.clone(), RecordType::DS));
    let bytes = query.to_vec().map_err(|e| e.to_string())?;
    // One deadline for the whole exchange: a parent that sends its answer a byte at a time
    // must not hold the timer (and the zone's updates behind it) for hours.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut stream = TcpStream::connect_timeout(&parent, TIMEOUT).map_err(|e| format!("no answer over TCP: {e}"))?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let mut framed = u16::try_from(bytes.len()).map_err(|_| "query too long".to_string())?.to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).map_err(|e| format!("no answer: {e}"))?;
    // One message, its length first (RFC 7766): at most 64 KiB read, whatever is sent.
    let mut length = [0u8; 2];
    read_by(&mut stream, &mut length, deadline).map_err(|e| format!("no answer: {e}"))?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(length))];
    read_by(&mut stream, &mut buf, deadline).map_err(|e| format!("no whole answer in {} s: {e}", TIMEOUT.as_secs()))?;
    let answer = Message::from_vec(&buf).map_err(|e| format!("not a DNS answer: {e}"))?;
    if answer.metadata.id != id
        || answer.metadata.message_type != MessageType::Response
        || answer.queries.first().map(|q| (q.name().to_lowercase(), q.query_type()))
            != Some((name.to_lowercase(), RecordType::DS))
    {
        return Err("answered another question".into());
    }
    if answer.metadata.response_code != ResponseCode::NoError {
        return Err(format!("answered {}", answer.metadata.response_code));
    }
    if answer.metadata.truncation {
        return Err("a truncated answer over TCP".into());
    }
    let mut out = Vec::new();
    for record in &answer.answers {
        if let RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::DS(ds)) = &record.data
            && record.name.to_lowercase() == name.to_lowercase()
        {
            let mut data = ds.key_tag().to_be_bytes().to_vec();
            data.push(u8::from(ds.algorithm()));
            data.push(u8::from(ds.digest_type()));
            data.extend_from_slice(ds.digest());
            out.push(data);
        }
    }
    Ok(out)
}
/// Fills `buf` from `stream` before `deadline`.
fn read_by(stream: &mut TcpStream, buf: &mut [u8], deadline: std::time::Instant) -> std::io::Result<()> {
    let mut at = 0;
    while at < buf.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[at..])? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => at += n,
        }
    }
    Ok(())
}

/// What the parent's servers said at the looks so far, per zone: a DS counts as seen only
/// when every parent had it at two looks at least `gap` seconds apart with no look between
/// that missed it (a parent changing its mind, or one answer that was not the parent's, is
/// not enough to retire a key on).
#[derive(Debug, Default)]
pub struct Sightings {
    /// Per zone the first of the looks in a row that found the DS at every parent.
    first: BTreeMap<String, u64>,
}

impl Sightings {
    /// Notes a look at `now` that found (`have`) or did not find the DS of `zone`; whether
    /// it is seen now.
    pub fn note(&mut self, zone: &str, now: u64, have: bool, gap: u64) -> bool {
        if !have {
            self.first.remove(zone);
            return false;
        }
        let first = *self.first.entry(zone.to_string()).or_insert(now);
        // A clock gone back is a look that proves nothing: start again from it.
        if now < first {
            self.first.insert(zone.to_string(), now);
            return false;
        }
        now - first >= gap.max(1)
    }

    /// Forgets `zone` (its submission is over).
    pub fn forget(&mut self, zone: &str) {
        self.first.remove(zone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::dnssec::rdata::{DNSSECRData, DS};
    use hickory_proto::dnssec::{Algorithm, DigestType};
    use hickory_proto::rr::Record;

    /// A DS query's answer holding `digests`.
    fn answer_to(query: &Message, digests: Vec<Vec<u8>>) -> Vec<u8> {
        let mut answer = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        answer.add_query(query.queries[0].clone());
        for d in digests {
            let ds = DS::new(7, Algorithm::ECDSAP256SHA256, DigestType::SHA256, d);
            let rdata = RData::DNSSEC(DNSSECRData::DS(ds));
            answer.add_answer(Record::from_rdata(query.queries[0].name().clone(), 60, rdata));
        }
        answer.to_vec().unwrap()
    }

    /// A parent on loopback that answers one DS query over TCP with `digests`.
    fn parent(digests: Vec<Vec<u8>>) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut length = [0u8; 2];
            stream.read_exact(&mut length).unwrap();
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(length))];
            stream.read_exact(&mut buf).unwrap();
            let answer = answer_to(&Message::from_vec(&buf).unwrap(), digests);
            stream.write_all(&(answer.len() as u16).to_be_bytes()).unwrap();
            stream.write_all(&answer).unwrap();
        });
        addr
    }

    fn ds(digest: u8) -> Vec<u8> {
        [vec![0, 7, 13, 2], vec![digest; 32]].concat()
    }

    /// Seen only when the parent's set holds every DS wanted; a parent that does not answer
    /// is an error naming it, not "seen".
    #[test]
    fn the_ds_is_seen_only_when_every_wanted_one_is_at_the_parent() {
        let zone = "lct.internal.";
        assert!(parents_have(&[parent(vec![vec![1; 32], vec![2; 32]])], zone, &[ds(1), ds(2)]).unwrap());
        assert!(!parents_have(&[parent(vec![vec![1; 32]])], zone, &[ds(1), ds(2)]).unwrap());
        assert!(!parents_have(&[parent(Vec::new())], zone, &[ds(1)]).unwrap());
        // Two parents: the one without the DS decides.
        assert!(!parents_have(&[parent(vec![vec![1; 32]]), parent(Vec::new())], zone, &[ds(1)]).unwrap());
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let err = parents_have(&[addr], zone, &[ds(1)]).unwrap_err();
        assert!(err.contains(&addr.to_string()) && err.contains("no answer"), "{err}");
    }

    /// The attack: a forger answers the DS query over UDP (as an off-path sender can, by
    /// guessing the id) with the new DS. The parent is asked over TCP only, so the forged
    /// datagram is never read and the DS is not seen.
    #[test]
    fn a_forged_udp_answer_does_not_make_the_ds_seen() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        let forger = std::thread::spawn(move || {
            udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut buf = [0u8; 512];
            // Answers whatever comes over UDP with the DS wanted.
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                let answer = answer_to(&Message::from_vec(&buf[..n]).unwrap(), vec![vec![1; 32]]);
                udp.send_to(&answer, from).unwrap();
                return true;
            }
            false
        });
        let got = parents_have(&[addr], "lct.internal.", &[ds(1)]);
        assert!(got.is_err(), "{got:?}");
        assert!(!forger.join().unwrap(), "the parent was asked over UDP");
    }

    /// A parent that sends its answer a byte at a time is cut off at the deadline, not
    /// waited on for hours.
    #[test]
    fn a_parent_answering_a_byte_at_a_time_is_cut_off() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = stream.write_all(&[0xff, 0xff]);
            for _ in 0..60 {
                std::thread::sleep(Duration::from_millis(300));
                if stream.write_all(&[0]).is_err() {
                    return;
                }
            }
        });
        let started = std::time::Instant::now();
        let err = parents_have(&[addr], "lct.internal.", &[ds(1)]).unwrap_err();
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(1), "{:?}", started.elapsed());
        assert!(err.contains("no whole answer"), "{err}");
    }

    /// Seen at two looks `gap` apart in a row: one look, a look too soon, or a miss between
    /// them is not seen; a clock gone back starts again.
    #[test]
    fn a_ds_is_seen_at_two_looks_apart_in_a_row() {
        let mut s = Sightings::default();
        let z = "lct.internal.";
        assert!(!s.note(z, 100, true, 60));
        assert!(!s.note(z, 130, true, 60));
        assert!(!s.note(z, 150, false, 60));
        assert!(!s.note(z, 200, true, 60));
        assert!(!s.note(z, 100, true, 60), "a clock gone back");
        assert!(!s.note(z, 159, true, 60));
        assert!(s.note(z, 160, true, 60));
        assert!(!s.note("other.internal.", 160, true, 60), "per zone");
        s.forget(z);
        assert!(!s.note(z, 1_000, true, 60));
    }
}
