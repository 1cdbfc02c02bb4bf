//! Asking the parent zone's servers for a signed zone's DS set, as Knot's `parent` servers
//! are asked during a KSK submission: once every configured parent answers with the DS of
//! every key waiting for it, the submission is seen (what `lct-dns ds-seen` says by hand).

use std::net::{SocketAddr, UdpSocket};
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
        let have = ds_set(*parent, zone).map_err(|e| format!("parent {parent}: {e}"))?;
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
    let local: SocketAddr = if parent.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("an address");
    let socket = UdpSocket::bind(local).map_err(|e| e.to_string())?;
    socket.connect(parent).map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    socket.send(&bytes).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).map_err(|e| format!("no answer: {e}"))?;
        // Only the answer to this question (a stray or forged datagram is skipped).
        let Ok(answer) = Message::from_vec(&buf[..n]) else { continue };
        if answer.metadata.id != id
            || answer.queries.first().map(|q| q.name().to_lowercase()) != Some(name.to_lowercase())
        {
            continue;
        }
        if answer.metadata.response_code != ResponseCode::NoError {
            return Err(format!("answered {}", answer.metadata.response_code));
        }
        if answer.metadata.truncation {
            return Err("the DS set does not fit in a UDP answer".into());
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
        return Ok(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::dnssec::rdata::{DNSSECRData, DS};
    use hickory_proto::dnssec::{Algorithm, DigestType};
    use hickory_proto::rr::Record;

    /// A parent on loopback that answers one DS query with `digests` (a stray answer of
    /// another id first, which must be skipped).
    fn parent(digests: Vec<Vec<u8>>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = socket.recv_from(&mut buf).unwrap();
            let query = Message::from_vec(&buf[..n]).unwrap();
            let mut stray = Message::new(query.metadata.id.wrapping_add(1), MessageType::Response, OpCode::Query);
            stray.add_query(query.queries[0].clone());
            socket.send_to(&stray.to_vec().unwrap(), from).unwrap();
            let mut answer = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
            answer.add_query(query.queries[0].clone());
            for d in digests {
                let ds = DS::new(7, Algorithm::ECDSAP256SHA256, DigestType::SHA256, d);
                let rdata = RData::DNSSEC(DNSSECRData::DS(ds));
                answer.add_answer(Record::from_rdata(query.queries[0].name().clone(), 60, rdata));
            }
            socket.send_to(&answer.to_vec().unwrap(), from).unwrap();
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
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let err = parents_have(&[addr], zone, &[ds(1)]).unwrap_err();
        assert!(err.contains(&addr.to_string()) && err.contains("no answer"), "{err}");
    }
}
