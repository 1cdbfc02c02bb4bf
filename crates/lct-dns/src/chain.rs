//! The TSIG chain of an answer in several messages (a transfer), as the client checks it:
//! each message's MAC covers the previous one (RFC 8945 section 5.3.1).

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, TSigner};

use crate::wire::{TsigSeen, name_text, read_tsig, wire_name};

/// The TSIG chain of an answer in several messages (RFC 8945 section 5.3.1): each message's
/// MAC covers the previous MAC, the message and the timers. The first is checked by
/// hickory; the rest here, over the bytes, with the TSIG taken from the message already
/// read (hickory's verifier parses every message twice more, a third of a big transfer's
/// time).
pub(crate) struct Chain {
    signer: TSigner,
    /// The key's and the algorithm's names in wire form, lower case (as read off messages).
    key: Vec<u8>,
    algorithm: Vec<u8>,
    previous: Vec<u8>,
    remote_time: u64,
    request_time: u64,
}

impl Chain {
    pub(crate) fn new(signer: TSigner, previous: Vec<u8>, request_time: u64) -> Chain {
        let wire = |name: &Name| wire_name(&name_text(name)).unwrap_or_default();
        let key = wire(signer.signer_name());
        let algorithm = wire(&signer.algorithm().to_name());
        Chain { signer, key, algorithm, previous, remote_time: 0, request_time }
    }

    /// Checks the next message of the answer, given parsed.
    pub(crate) fn verify(&mut self, bytes: &[u8], message: &Message) -> Result<(), String> {
        let seen = message.signature().map(|tsig| TsigSeen {
            key: wire_name(&name_text(&tsig.name)).unwrap_or_default(),
            algorithm: wire_name(&name_text(&tsig.data.algorithm.to_name())).unwrap_or_default(),
            time: tsig.data.time,
            fudge: tsig.data.fudge,
            mac: tsig.data.mac.clone(),
            original_id: tsig.data.oid,
        });
        self.verify_seen(bytes, seen)
    }

    /// Checks the next message of the answer, its TSIG read off the bytes.
    pub(crate) fn verify_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        let seen = if self.remote_time == 0 {
            None // hickory reads the first one
        } else {
            let at = last_record_at(bytes).ok_or("a malformed message")?;
            Some(read_tsig(bytes, at).ok_or("a message without TSIG")?)
        };
        self.verify_seen(bytes, seen)
    }

    fn verify_seen(&mut self, bytes: &[u8], seen: Option<TsigSeen>) -> Result<(), String> {
        let (mac, time, fudge) = if self.remote_time == 0 {
            let (mac, time, range) =
                self.signer.verify_message_byte(bytes, Some(&self.previous), true).map_err(|e| e.to_string())?;
            (mac, time, (range.end - range.start) / 2)
        } else {
            let tsig = seen.ok_or("a message without TSIG")?;
            if tsig.key != self.key || tsig.algorithm != self.algorithm {
                return Err("signed with another key".into());
            }
            // The first MAC was checked full length; a later one as short is truncated.
            if tsig.mac.len() < self.previous.len() {
                return Err("a truncated MAC".into());
            }
            let start = last_record_at(bytes).ok_or("a malformed message")?;
            let mut tbv = Vec::with_capacity(bytes.len() + self.previous.len() + 10);
            tbv.extend_from_slice(&(self.previous.len() as u16).to_be_bytes());
            tbv.extend_from_slice(&self.previous);
            let header = tbv.len();
            tbv.extend_from_slice(&bytes[..start]);
            // The message as it was signed: its original id, the TSIG not counted.
            tbv[header..header + 2].copy_from_slice(&tsig.original_id.to_be_bytes());
            let additional = u16::from_be_bytes([tbv[header + 10], tbv[header + 11]]) - 1;
            tbv[header + 10..header + 12].copy_from_slice(&additional.to_be_bytes());
            tbv.extend_from_slice(&((tsig.time >> 32) as u16).to_be_bytes());
            tbv.extend_from_slice(&(tsig.time as u32).to_be_bytes());
            tbv.extend_from_slice(&tsig.fudge.to_be_bytes());
            self.signer.verify(&tbv, &tsig.mac).map_err(|e| e.to_string())?;
            (tsig.mac, tsig.time, tsig.fudge as u64)
        };
        if time < self.remote_time || self.request_time.abs_diff(time) > fudge {
            return Err("tsig validation error: outdated response".into());
        }
        self.previous = mac;
        self.remote_time = time;
        Ok(())
    }
}

/// Where a message's last record (the TSIG) starts: the sections walked without reading
/// any record's data.
pub(crate) fn last_record_at(bytes: &[u8]) -> Option<usize> {
    let count = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]) as usize;
    if bytes.len() < 12 {
        return None;
    }
    let (questions, records) = (count(4), count(6) + count(8) + count(10));
    let skip_name = |mut at: usize| -> Option<usize> {
        loop {
            let len = *bytes.get(at)? as usize;
            match len {
                0 => return Some(at + 1),
                l if l & 0xc0 == 0xc0 => return Some(at + 2),
                l if l < 64 => at += 1 + l,
                _ => return None,
            }
        }
    };
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(at)? + 4;
    }
    for _ in 0..records.checked_sub(1)? {
        at = skip_name(at)? + 10;
        let rdlen = u16::from_be_bytes([*bytes.get(at - 2)?, *bytes.get(at - 1)?]) as usize;
        at += rdlen;
    }
    (at < bytes.len()).then_some(at)
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::RecordType;

    use super::*;
    use crate::tsig::{Key, now};
    use crate::zone::fixtures::rec;

    /// A transfer's messages as the server signs them, checked by the client's chain: all
    /// pass in order; a changed byte, a message left out or another key's signature fail.
    #[test]
    fn the_tsig_chain_catches_changed_missing_and_foreign_messages() {
        use crate::request::{Grant, Signed};
        let key = Key::generate("xfr").unwrap();
        let mut request = Message::new(7, MessageType::Query, OpCode::Query);
        request.add_query(Query::query(Name::from_ascii("lct.internal.").unwrap(), RecordType::AXFR));
        let time = now();
        request.finalize(&key.signer(), time).unwrap();
        let mac = request.signature().unwrap().data.mac.clone();
        let signed = Signed { signer: key.signer(), mac: mac.clone(), grant: Grant::Full };
        let bodies: Vec<Vec<u8>> = (0..4)
            .map(|i| {
                let mut m = crate::request::response(&request, ResponseCode::NoError);
                if i > 0 {
                    m.queries.clear();
                }
                m.add_answer(
                    crate::wire::to_wire(&rec(&format!("n{i}.lct.internal."), RecordType::A, "10.0.0.1")).unwrap(),
                );
                m.to_vec().unwrap()
            })
            .collect();
        let messages = crate::transfer::sign_chain(&request, &signed, bodies);
        let chain = |signer: TSigner| Chain::new(signer, mac.clone(), time);
        let check = |chain: &mut Chain, bytes: &[u8]| chain.verify(bytes, &Message::from_vec(bytes).unwrap());
        let mut good = chain(key.signer());
        for m in &messages {
            check(&mut good, m).unwrap();
        }
        let mut changed = messages[2].clone();
        let at = changed.len() - 78; // the answer's address, just before the TSIG (76 bytes)
        changed[at] ^= 1;
        let answers = |b: &[u8]| Message::from_vec(b).unwrap().answers;
        assert_ne!(answers(&changed), answers(&messages[2]), "the address changed");
        let mut chain2 = chain(key.signer());
        check(&mut chain2, &messages[0]).unwrap();
        check(&mut chain2, &messages[1]).unwrap();
        assert!(check(&mut chain2, &changed).is_err(), "a changed byte");
        let mut skipped = chain(key.signer());
        check(&mut skipped, &messages[0]).unwrap();
        assert!(check(&mut skipped, &messages[2]).is_err(), "a message left out");
        let other = Key::generate("xfr").unwrap();
        let mut foreign = chain(other.signer());
        assert!(check(&mut foreign, &messages[0]).is_err(), "another key");
    }
}
