//! Signed requests: the server's entry for UPDATE, zone transfers, NOTIFY and signed
//! queries. A request is authenticated ([`crate::request`]), then handed to
//! [`crate::update`] (RFC 2136) or [`crate::transfer`] (AXFR, IXFR), or answered here;
//! answers are signed with the request's key. Unsigned or wrongly signed requests change
//! nothing and see nothing.

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::TSigResponseContext;

use crate::live::Live;
use crate::request::{Grant, Signed, authenticate, bare_error, counts_fit, reply, response, sign};
use crate::settings::TransferView;
use crate::transfer::Replies;
use crate::tsig::now;

/// What the server makes of a message: `None` when it is an ordinary query (hickory's).
pub async fn handle(raw: &[u8], over_tcp: bool, src: std::net::IpAddr, live: &Live) -> Option<Replies> {
    if raw.len() < 12 {
        return None;
    }
    let opcode = (raw[2] >> 3) & 0xf;
    let transfer = opcode == 0 && matches!(question_type(raw), Some(252 | 251));
    // A query with additional records may be signed (a secondary's SOA refresh is).
    let maybe_signed_query = opcode == 0 && !transfer && u16::from_be_bytes([raw[10], raw[11]]) > 0;
    let notify = opcode == 4;
    if opcode != 5 && !transfer && !maybe_signed_query && !notify {
        return None;
    }
    let Ok(request) = Message::from_vec(raw).map_err(drop).and_then(|m| counts_fit(raw).then_some(m).ok_or(())) else {
        return Some(Replies::Now(vec![bare_error(raw, ResponseCode::FormErr)]));
    };
    if maybe_signed_query && request.signature().is_none() {
        return None;
    }
    let signed = match authenticate(raw, &request, live) {
        Ok(signed) => signed,
        Err(response) => return Some(Replies::Now(vec![response])),
    };
    if maybe_signed_query {
        return Some(Replies::Now(vec![signed_query(&request, &signed, over_tcp, live)]));
    }
    // An update key given in [[update]] acts on its zones, from its prefixes only.
    if let Grant::Full = signed.grant {
        let zone = request.queries.first().map(|q| q.name().to_lowercase().to_string()).unwrap_or_default();
        let served = live.current();
        let scope = served.settings.update_scopes.iter().find(|s| &s.key == signed.signer.signer_name());
        if scope.is_some_and(|s| !s.permits(&zone, src)) {
            tracing::warn!("refused a request for zone {zone} from {src}: outside what its key may do");
            return Some(Replies::Now(vec![reply(&request, ResponseCode::Refused, Some(&signed))]));
        }
    }
    if notify {
        // From a primary, signed with the zone's key: refresh it now (RFC 1996).
        let zone = request.queries.first().map(|q| q.name().to_lowercase().to_string());
        return Some(Replies::Now(vec![match (&signed.grant, zone) {
            (Grant::Primary(zones), Some(zone)) if zones.contains(&zone) => {
                live.refresher(&zone).notify_one();
                crate::stats::event(crate::stats::Event::NotifyReceived);
                let mut answer = response(&request, ResponseCode::NoError);
                answer.metadata.authoritative = true;
                sign(
                    answer,
                    TSigResponseContext::new(request.id, now(), signed.signer.clone(), signed.mac.clone(), None),
                )
            }
            _ => {
                tracing::warn!("refused a NOTIFY from {src}: not a primary's key for that zone");
                crate::stats::event(crate::stats::Event::NotifyRefused);
                reply(&request, ResponseCode::NotAuth, Some(&signed))
            }
        }]));
    }
    if transfer {
        let allowed = match &signed.grant {
            Grant::Full => true,
            Grant::Secondary(s) => s.allows(src),
            Grant::Primary(_) => false,
        };
        if !over_tcp || !allowed {
            tracing::info!("refused a transfer from {src} (over UDP, or from outside the key's prefixes)");
            return Some(Replies::Now(vec![reply(&request, ResponseCode::Refused, Some(&signed))]));
        }
        return Some(crate::transfer::transfer_messages(&request, &signed, live));
    }
    if !matches!(signed.grant, Grant::Full) {
        tracing::warn!("refused an update signed by a secondary's or a primary's key (not an update key)");
        return Some(Replies::Now(vec![reply(&request, ResponseCode::Refused, Some(&signed))]));
    }
    let code = crate::update::apply_update(&request, live).await;
    Some(Replies::Now(vec![reply(&request, code, Some(&signed))]))
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

/// The answer to a signed query (a secondary's SOA refresh, most often), from the tables
/// the unsigned ones are answered from, in the key's view (a region's secondary: its
/// region's tables), signed.
fn signed_query(request: &Message, signed: &Signed, over_tcp: bool, live: &Live) -> Vec<u8> {
    let served = live.current();
    let mut query = Message::new(request.id, MessageType::Query, request.op_code);
    query.metadata.recursion_desired = request.metadata.recursion_desired;
    query.add_queries(request.queries.iter().cloned());
    if let Some(edns) = request.edns.clone() {
        query.set_edns(edns);
    }
    let internal = !matches!(&signed.grant, Grant::Secondary(s) if s.view == TransferView::External);
    // A region's secondary asks in its region's view (its SOA must be the one it transfers).
    let answers = match &signed.grant {
        Grant::Secondary(s) if s.region.is_some() => {
            served.settings.regions.views().iter().find(|v| Some(&v.network) == s.region.as_ref()).map(|v| &v.answers)
        }
        _ => Some(&*served.answers),
    };
    let context = || TSigResponseContext::new(request.id, now(), signed.signer.clone(), signed.mac.clone(), None);
    let answer = answers.zip(query.to_vec().ok()).and_then(|(answers, q)| answers.answer(&q, internal, over_tcp));
    match answer.and_then(|a| Message::from_vec(&a).ok()) {
        Some(message) => sign(message, context()),
        None => reply(request, ResponseCode::Refused, Some(signed)),
    }
}

#[cfg(test)]
mod fuzz {
    //! Mutated signed UPDATEs and transfers thrown at the handler: it never panics, always
    //! answers, and changes nothing unless the message is the signed original.
    use std::sync::Arc;

    use super::*;
    use crate::served::Served;
    use crate::settings::Settings;
    use crate::tsig::{Key, Keys};
    use crate::zone::{DnsRecord, RecordType, View, assign_views};
    use hickory_proto::op::{OpCode, Query};
    use hickory_proto::rr::{Name, RData, Record};

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
        let state = std::env::temp_dir()
            .join(format!("lct-dns-fuzz-{}", lct_core::random::hex(8).unwrap()))
            .join("zones.jsonl");
        let settings = Settings { keys: Keys::new(vec![key.clone()]), ..Settings::bare(state) };
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

    /// While a secondary's new tables serve and its records' text is still being made, the
    /// zone is not transferred onwards (SERVFAIL: ask again); then it is.
    #[test]
    fn a_settling_zone_is_not_transferred_onwards() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let key = Key::generate("xfr-key").unwrap();
        let live = runtime.block_on(async { live(&key) });
        let rcode = |live: &Live| {
            let request = signed_transfer(&key);
            let replies = runtime.block_on(async {
                handle(&request, true, std::net::Ipv4Addr::LOCALHOST.into(), live).await.unwrap().all().await
            });
            replies[0][3] & 0xf
        };
        assert_eq!(rcode(&live), 0);
        let current = live.current();
        let settling = |zone: Option<&str>| Served {
            records: Arc::clone(&current.records),
            answers: Arc::clone(&current.answers),
            settings: Arc::clone(&current.settings),
            settling: zone.map(String::from),
            zone_serials: Default::default(),
        };
        live.swap_tables(settling(Some("lct.internal.")));
        assert_eq!(rcode(&live), 2, "SERVFAIL");
        live.swap_tables(settling(None));
        assert_eq!(rcode(&live), 0);
    }

    #[test]
    fn mutated_signed_messages_change_nothing_and_never_panic() {
        use proptest::prelude::*;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let key = Key::generate("fuzz-key").unwrap();
        let live = runtime.block_on(async { live(&key) });
        let originals = [signed_update(&key), signed_transfer(&key)];
        let serial = |live: &Live| crate::wire::serial_of(&live.current().records, "lct.internal.");
        // Which original; then flip bits, cut it short, or put garbage after a real header.
        #[derive(Debug, Clone)]
        enum Mutation {
            Flip(Vec<(f64, u8)>),
            Cut(f64),
            Garbage(Vec<u8>),
        }
        let mutation = prop_oneof![
            2 => proptest::collection::vec((0.0..1.0f64, 0..8u8), 1..5).prop_map(Mutation::Flip),
            1 => (0.0..1.0f64).prop_map(Mutation::Cut),
            1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Mutation::Garbage),
        ];
        let config = proptest::test_runner::Config { cases: 3_000, failure_persistence: None, ..Default::default() };
        let handled = std::cell::Cell::new(0);
        proptest::test_runner::TestRunner::new(config)
            .run(&(0..2usize, mutation), |(which, mutation)| {
                let mut packet = originals[which].clone();
                match mutation {
                    Mutation::Flip(flips) => {
                        for (place, bit) in flips {
                            let at = ((place * packet.len() as f64) as usize).min(packet.len() - 1);
                            packet[at] ^= 1 << bit;
                        }
                    }
                    Mutation::Cut(place) => packet.truncate(12 + (place * (packet.len() - 12) as f64) as usize),
                    Mutation::Garbage(bytes) => {
                        packet.truncate(12);
                        packet.extend(bytes);
                        packet[2] = 5 << 3; // UPDATE
                    }
                }
                // Some bytes are outside the MAC (the message id: TSIG signs the original one,
                // for forwarders; the TSIG record's TTL: signed as 0): a copy that still
                // verifies is the authentic message, not a forgery.
                if counts_fit(&packet) && key.signer().verify_message_byte(&packet, None, true).is_ok() {
                    return Ok(());
                }
                let answers = runtime
                    .block_on(async {
                        tokio::time::timeout(std::time::Duration::from_secs(2), async {
                            match handle(&packet, true, std::net::Ipv4Addr::LOCALHOST.into(), &live).await {
                                Some(replies) => Some(replies.all().await),
                                None => None,
                            }
                        })
                        .await
                    })
                    .expect("answered in time");
                if let Some(answers) = answers {
                    handled.set(handled.get() + 1);
                    prop_assert!(!answers.is_empty(), "every message handled is answered");
                }
                prop_assert_eq!(serial(&live), Some(7), "a forged message changed the zone");
                Ok(())
            })
            .unwrap();
        assert!(handled.get() > 1_000, "only {} mutated messages reached the handler", handled.get());
        // The original, signed and intact, is applied.
        let answer = runtime.block_on(async {
            handle(&originals[0], true, std::net::Ipv4Addr::LOCALHOST.into(), &live).await.unwrap().all().await
        });
        assert_eq!(answer[0][3] & 0xf, 0, "NOERROR");
        assert_eq!(serial(&live), Some(8));
        let state = live.current().settings.state_file.clone();
        let _ = std::fs::remove_dir_all(state.parent().expect("a directory"));
    }
}
