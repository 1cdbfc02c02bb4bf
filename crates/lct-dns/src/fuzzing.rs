//! The readers of messages from the network, each taking any bytes, for lct's fuzz harness
//! (crates/lct-fuzz). Not an API: what they return only tells one outcome from another.

use std::sync::OnceLock;

use crate::fast::Answers;
use crate::mode::ZoneMode;
use crate::wire::{WireBatch, read_answers, read_tsig};
use crate::zone::{DnsRecord, RecordType, View};

/// The zone the readers are tried against (what the seeds ask about).
pub const ZONE: &str = "lct.internal.";

fn split(_: &str) -> ZoneMode {
    ZoneMode::Split
}

/// A message of a zone transfer as the client reads it: the answers into a batch, the batch
/// as text and into the fast path's tables (what a secondary does), and the TSIG at its end.
/// Returns the records taken, or what was malformed.
pub fn transfer_message(message: &[u8]) -> Result<usize, &'static str> {
    if let Some(at) = crate::chain::last_record_at(message) {
        std::hint::black_box(read_tsig(message, at));
    }
    let mut batch = WireBatch::default();
    let mut soas = 0;
    let answered = read_answers(message, &mut soas, &mut batch)?;
    let mut builder = crate::tables::Builder::new(&split, batch.len());
    for record in batch.iter() {
        std::hint::black_box(record.to_text(ZONE));
        // Records out of the zone are refused by the builder: an outcome, not a failure.
        let _ = builder.add_wire(ZONE, &record);
    }
    std::hint::black_box(builder.finish());
    Ok(batch.len() + answered.skipped)
}

/// A query as the server reads it: the fast path's parser (both views, UDP and TCP), then
/// the full parse of what it leaves to the runtime. Returns the answers' total length.
pub fn query(packet: &[u8]) -> usize {
    let answers = tables();
    let (mut key, mut out) = (Vec::new(), Vec::new());
    let mut total = 0;
    for internal in [true, false] {
        for tcp in [false, true] {
            if answers.answer_into(packet, internal, tcp, &mut key, &mut out).is_some() {
                total += out.len();
            }
            total += crate::dispatch::plain_answer(packet, internal, tcp, answers).map_or(0, |a| a.len());
        }
    }
    total
}

/// A small zone with every kind of record the fast path answers.
fn tables() -> &'static Answers {
    static TABLES: OnceLock<Answers> = OnceLock::new();
    TABLES.get_or_init(|| {
        let rec = |name: &str, rtype: RecordType, data: &str| DnsRecord {
            zone: ZONE.into(),
            name: name.into(),
            rtype,
            ttl: 300,
            data: data.into(),
            view: View::Both,
        };
        let records = crate::zone::assign_views(vec![
            rec(ZONE, RecordType::SOA, "ns1.lct.internal. hostmaster.lct.internal. 7 3600 600 1209600 300"),
            rec(ZONE, RecordType::NS, "ns1.lct.internal."),
            rec("ns1.lct.internal.", RecordType::A, "192.168.128.53"),
            rec("a.zk.lct.internal.", RecordType::A, "192.168.128.1"),
            rec("a.zk.lct.internal.", RecordType::A, "203.0.113.1"),
            rec("a.zk.lct.internal.", RecordType::AAAA, "fd00::1"),
            rec("_zk._tcp.lct.internal.", RecordType::SRV, "0 10 2181 a.zk.lct.internal."),
        ]);
        Answers::new(&records, &split).expect("the fuzzing zone builds")
    })
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};

    #[test]
    fn the_readers_answer_what_they_should() {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii("a.zk.lct.internal.").unwrap(), RecordType::A));
        assert!(super::query(&m.to_vec().unwrap()) > 0);
        assert_eq!(super::query(b"\x00"), 0);
        assert_eq!(super::transfer_message(b"short"), Err("a message shorter than its header"));
    }
}
