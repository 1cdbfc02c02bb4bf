//! The answer to one message off either socket that the UDP fast path did not take (or any
//! over TCP): the tables first, then the signed-request handler (updates, transfers, NOTIFY,
//! signed queries), then the rest read in full.

use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;

use crate::fast::{Answers, UDP_PAYLOAD_MAX};
use crate::live::Live;
use crate::request::bare_error;
use crate::transfer::Replies;

/// The answers to one message the UDP fast path did not take (or any over TCP): the tables
/// first, then updates, transfers, NOTIFY and signed queries ([`crate::signed`]), then the
/// rest read in full ([`plain_answer`]). `public`: it came to a public listen address (the
/// external view, whatever its source).
pub(crate) async fn answer(packet: Vec<u8>, src: SocketAddr, tcp: bool, public: bool, live: &Live) -> Replies {
    let served = live.current();
    let (answers, internal) = served.view(src.ip(), public);
    if tcp && let Some(reply) = answers.answer(&packet, internal, true) {
        return Replies::Now(vec![reply]);
    }
    if let Some(messages) = crate::signed::handle(&packet, tcp, src.ip(), live).await {
        return messages;
    }
    Replies::Now(plain_answer(&packet, internal, tcp, answers).into_iter().collect())
}

/// A query the tables did not take as it came (other classes, EDNS versions, several
/// questions, records where none belong, malformed): read in full, then answered from the
/// tables as a clean query (its question and EDNS), or refused, FORMERR, NOTIMP or BADVERS
/// as the message deserves. Responses and messages too short for a header get nothing.
pub(crate) fn plain_answer(packet: &[u8], internal: bool, tcp: bool, answers: &Answers) -> Option<Vec<u8>> {
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return None;
    }
    let Ok(request) = Message::from_vec(packet) else {
        return Some(bare_error(packet, ResponseCode::FormErr));
    };
    let respond = |code: ResponseCode| {
        let mut m = Message::new(request.id, MessageType::Response, request.op_code);
        m.metadata.response_code = code;
        m.metadata.recursion_desired = request.metadata.recursion_desired;
        m.add_queries(request.queries.iter().cloned());
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(UDP_PAYLOAD_MAX);
            m.set_edns(edns);
        }
        m.to_vec().ok()
    };
    if request.op_code != OpCode::Query {
        return respond(ResponseCode::NotImp);
    }
    let [question] = request.queries.as_slice() else { return respond(ResponseCode::FormErr) };
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return respond(ResponseCode::BADVERS);
    }
    if question.query_class() != DNSClass::IN {
        return respond(ResponseCode::Refused);
    }
    let mut clean = Message::new(request.id, MessageType::Query, OpCode::Query);
    clean.metadata.recursion_desired = request.metadata.recursion_desired;
    clean.metadata.checking_disabled = request.metadata.checking_disabled;
    clean.add_query(question.clone());
    if let Some(e) = &request.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(e.max_payload());
        // DNSSEC OK goes on with the question: signatures and proofs are asked for.
        edns.set_dnssec_ok(e.flags().dnssec_ok);
        clean.set_edns(edns);
    }
    answers.answer(&clean.to_vec().ok()?, internal, tcp).or_else(|| respond(ResponseCode::Refused))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    use super::plain_answer;
    use crate::fast::Answers;
    use crate::mode::ZoneMode;
    use crate::sign::{Dnssec, Timers};
    use crate::zonekeys::KeyAlgorithm;

    /// A query the fast path does not take (a record in its authority section) keeps its
    /// DO bit on the slow path: the answer is signed.
    #[test]
    fn the_slow_path_keeps_the_do_bit() {
        let dir = lct_core::fsutil::temp_dir("lct-dns-dispatch").unwrap();
        let key = crate::keyroll::load_or_create_csk(dir.path(), "lct.internal.", KeyAlgorithm::Ecdsa, 1_800_000_000)
            .unwrap();
        let dnssec = Dnssec::new(BTreeMap::from([("lct.internal.".to_string(), key)]), Timers::default());
        let mut answers = Answers::new(&crate::zone::fixtures::zone(), &|_: &str| ZoneMode::Split).unwrap();
        dnssec.sign_at(&mut answers, 1_800_000_000).unwrap();
        let name = Name::from_ascii("a.zk.lct.internal.").unwrap();
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(name.clone(), RecordType::A));
        m.authorities.push(Record::from_rdata(name, 60, RData::A("10.0.0.1".parse().unwrap())));
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(true);
        m.set_edns(e);
        let packet = m.to_vec().unwrap();
        assert!(answers.answer(&packet, true, false).is_none(), "the fast path takes it");
        let reply = Message::from_vec(&plain_answer(&packet, true, false, &answers).unwrap()).unwrap();
        assert!(reply.answers.iter().any(|r| r.record_type() == RecordType::RRSIG), "{reply:?}");
        assert!(reply.edns.as_ref().unwrap().flags().dnssec_ok);
    }
}
