//! hickory's catalogs, one per view, and the tests that compare the fast path with them:
//! the reference for what lct-dns answers (tests only: serving goes through the fast path
//! alone; hickory's in-memory zone is quadratic in an RRset's size when loading, 27 s for a
//! 50,000-node zone with 5,000-member groups, and linear per query for names it does not
//! have; see docs/benchmarks.md).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name};
use hickory_proto::serialize::txt::Parser;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

use lct_core::prefix::Prefix;

use crate::mode::{ZoneMode, mode_of};
use crate::tables::ServeError;
use crate::zone::{DnsRecord, View, master_file};

/// Two catalogs of the same zones, as internal and external clients see them.
pub struct Views {
    internal: Catalog,
    external: Catalog,
    internal_prefixes: Vec<Prefix>,
}

impl Views {
    /// Builds both views from `dns-record`s, each zone in its mode (split unless `modes`
    /// says otherwise; reverse zones are private unless it does).
    pub fn new(
        records: &[DnsRecord],
        internal_prefixes: Vec<Prefix>,
        modes: &BTreeMap<String, ZoneMode>,
    ) -> Result<Views, ServeError> {
        // (Modes of zones that have no records are refused when the configuration is read:
        // a secondary zone not transferred yet has none and keeps its mode.)
        let zones: BTreeSet<&str> = records.iter().map(|r| r.zone.as_str()).collect();
        let mut internal = Catalog::new();
        let mut external = Catalog::new();
        for zone in zones {
            let mode = mode_of(modes, zone);
            // Which variant of the zone each view serves; none: refused there.
            let (inside, outside) = match mode {
                ZoneMode::Split => (Some(View::Internal), Some(View::External)),
                ZoneMode::Private => (Some(View::Internal), None),
                ZoneMode::Public => (Some(View::External), Some(View::External)),
            };
            for (variant, catalog) in [(inside, &mut internal), (outside, &mut external)] {
                let Some(view) = variant else { continue };
                let handler = load(records, zone, view)?;
                let origin = Name::from_ascii(zone).map_err(|e| ServeError::Zone {
                    zone: zone.into(),
                    view,
                    message: e.to_string(),
                })?;
                catalog.upsert(LowerName::new(&origin), vec![Arc::new(handler)]);
            }
        }
        Ok(Views { internal, external, internal_prefixes })
    }

    pub fn is_internal(&self, ip: IpAddr) -> bool {
        self.internal_prefixes.iter().any(|p| p.contains(ip))
    }
}

/// Goes through the master file, so what is served is exactly what `lct-dns zone` writes and
/// BIND and Knot load.
fn load(records: &[DnsRecord], zone: &str, view: View) -> Result<InMemoryZoneHandler, ServeError> {
    let err = |message: String| ServeError::Zone { zone: zone.into(), view, message };
    let text = master_file(records, zone, view);
    let origin = Name::from_ascii(zone).map_err(|e| err(e.to_string()))?;
    let (origin, rrsets) = Parser::new(text, None, Some(origin)).parse().map_err(|e| err(e.to_string()))?;
    InMemoryZoneHandler::new(origin, rrsets, ZoneType::Primary, AxfrPolicy::Deny).map_err(err)
}

#[async_trait::async_trait]
impl RequestHandler for Views {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response: R) -> ResponseInfo {
        let catalog = if self.is_internal(request.src().ip()) { &self.internal } else { &self.external };
        catalog.handle_request::<R, T>(request, response).await
    }
}

#[cfg(test)]
mod tests {
    //! The fast path against hickory's catalog: the same rcode, flags and records for every
    //! name (and names that do not exist) and type, from inside and outside, in every zone
    //! mode, with and without EDNS and its options.

    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    use hickory_proto::rr::{Name, RecordType};
    use std::sync::{Arc, Mutex};

    use hickory_proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
    use hickory_proto::rr::Record as HickoryRecord;
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
    use hickory_server::net::runtime::TokioTime;
    use hickory_server::net::xfer::Protocol;
    use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
    use hickory_server::zone_handler::MessageResponse;

    use super::Views;
    use crate::fast::Answers;
    use crate::mode::{ZoneMode, mode_of};
    use lct_core::prefix::Prefix;

    /// Catches hickory's encoded response, for the caller to send.
    #[derive(Clone)]
    struct Captured {
        tcp: bool,
        bytes: Arc<Mutex<Option<Vec<u8>>>>,
    }

    impl Captured {
        fn new(tcp: bool) -> Captured {
            Captured { tcp, bytes: Arc::new(Mutex::new(None)) }
        }

        fn take(&self) -> Option<Vec<u8>> {
            self.bytes.lock().expect("not poisoned").take()
        }
    }

    #[async_trait::async_trait]
    impl ResponseHandler for Captured {
        async fn send_response<'a>(
            &mut self,
            response: MessageResponse<
                '_,
                'a,
                impl Iterator<Item = &'a HickoryRecord> + Send + 'a,
                impl Iterator<Item = &'a HickoryRecord> + Send + 'a,
                impl Iterator<Item = &'a HickoryRecord> + Send + 'a,
                impl Iterator<Item = &'a HickoryRecord> + Send + 'a,
            >,
        ) -> Result<ResponseInfo, hickory_server::net::NetError> {
            // As hickory's own responders encode: within the size allowed (for UDP the client's
            // advertised size, 512 without EDNS), a bare SERVFAIL if it cannot be encoded.
            let max = if self.tcp {
                u16::MAX
            } else {
                response.edns().map_or(512, |e| e.max_payload().clamp(512, crate::fast::UDP_PAYLOAD_MAX))
            };
            let id = response.metadata().id;
            let mut bytes = Vec::with_capacity(512);
            let mut encoder = BinEncoder::new(&mut bytes);
            encoder.set_max_size(max);
            let info = match response.destructive_emit(&mut encoder) {
                Ok(info) => info,
                Err(error) => {
                    tracing::error!(%error, "error encoding a response");
                    bytes.clear();
                    let mut encoder = BinEncoder::new(&mut bytes);
                    let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                    metadata.response_code = ResponseCode::ServFail;
                    let header = Header { metadata, counts: HeaderCounts::default() };
                    header.emit(&mut encoder)?;
                    ResponseInfo::from(header)
                }
            };
            *self.bytes.lock().expect("not poisoned") = Some(bytes);
            Ok(info)
        }
    }

    use crate::zone::{DnsRecord, ZoneOptions, zone_records};

    fn records() -> Vec<DnsRecord> {
        let node = |cluster: &str, group: &str, name: &str, private: &str, public: &[&str], v6: &[&str]| {
            serde_json::from_value(serde_json::json!({
                "cluster": cluster, "group": group, "name": name, "provider": "local", "status": "running",
                "private_ipv4": [private], "public_ipv4": public, "public_ipv6": v6,
            }))
            .unwrap()
        };
        let nodes = vec![
            node("zk", "server", "zk-1", "192.168.128.1", &["203.0.113.1"], &["2001:db8::1"]),
            node("zk", "server", "zk-2", "192.168.128.2", &["203.0.113.2"], &[]),
            node("zk", "server", "zk-3", "192.168.128.3", &[], &[]),
            node("pg", "db", "pg-1", "192.168.129.1", &["203.0.113.11"], &[]),
        ];
        let clusters = vec![
            serde_json::from_str(r#"{"name":"zk","services":[{"name":"zookeeper","group":"server","port":2181}]}"#)
                .unwrap(),
        ];
        let options = ZoneOptions {
            domain: "lct.internal".parse().unwrap(),
            parent_domain: "lct.internal".parse().unwrap(),
            ttl: 300,
            serial: 7,
            name_servers: vec![("ns1.lct.internal".into(), vec!["192.168.128.53".parse().unwrap()])],
            hostmaster: "hostmaster.lct.internal".into(),
            reverse: true,
            region: None,
            mesh: Default::default(),
        };
        zone_records(&nodes, &clusters, &options).unwrap()
    }

    fn query(name: &str, rtype: RecordType, edns: Option<Vec<EdnsOption>>) -> Vec<u8> {
        let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        if let Some(options) = edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            for o in options {
                e.options_mut().insert(o);
            }
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    async fn hickory(views: &Views, packet: Vec<u8>, src: SocketAddr) -> Message {
        let request = Request::from_bytes(packet, src, Protocol::Udp).unwrap();
        let reply = Captured::new(false);
        views.handle_request::<_, TokioTime>(&request, reply.clone()).await;
        Message::from_vec(&reply.take().unwrap()).unwrap()
    }

    /// What a client reads of an answer: rcode, AA, TC, and the records (sorted, the SOA's
    /// TTL aside: RFC 2308 caps it by the minimum, hickory does not).
    /// Names compare without case (ours keep the question's, as BIND's do).
    fn seen(m: &Message, with_authority: bool) -> String {
        let mut answers: Vec<String> = m.answers.iter().map(|r| r.to_string().to_lowercase()).collect();
        answers.sort();
        let mut authority: Vec<String> = m
            .authorities
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .map(|r| format!("{} {}", r.name, r.data).to_lowercase())
            .collect();
        authority.sort();
        format!(
            "{:?} aa={} tc={} edns={}\nanswers {answers:#?}\nauthority {:#?}",
            m.metadata.response_code,
            m.metadata.authoritative,
            m.metadata.truncation,
            m.edns.is_some(),
            if with_authority { authority } else { Vec::new() },
        )
    }

    /// The additional section's records (hickory adds the addresses of the first SRV or NS
    /// target only; ours are those of every target in the zone: a superset).
    fn additional(m: &Message) -> std::collections::BTreeSet<String> {
        m.additionals.iter().map(|r| r.to_string().to_lowercase()).collect()
    }

    #[tokio::test]
    async fn every_name_and_type_answers_as_hickory_does() {
        let records = records();
        let mut names: Vec<String> = records.iter().map(|r| r.name.clone()).collect();
        names.extend(
            [
                "zk.lct.internal.",           // an empty non-terminal (its members exist)
                "_tcp.zk.lct.internal.",      // another
                "nope.lct.internal.",         // no such name
                "deep.zk-1.zk.lct.internal.", // below a name
                "ZK-1.Zk.LCT.internal.",      // case
                "example.com.",               // not our zone
                "128.168.192.in-addr.arpa.",  // reverse: empty non-terminal
                "9.9.168.192.in-addr.arpa.",  // reverse: no such name
            ]
            .map(String::from),
        );
        names.sort();
        names.dedup();
        let types = [
            RecordType::A,
            RecordType::AAAA,
            RecordType::NS,
            RecordType::SOA,
            RecordType::SRV,
            RecordType::PTR,
            RecordType::MX,
            RecordType::TXT,
            RecordType::CNAME,
        ];
        let cookie = EdnsOption::Unknown(u16::from(EdnsCode::Cookie), vec![1, 2, 3, 4, 5, 6, 7, 8]);
        let inside: SocketAddr = "192.168.128.9:5300".parse().unwrap();
        let outside: SocketAddr = "198.51.100.9:5300".parse().unwrap();
        let mut compared = 0;
        for modes in [
            BTreeMap::new(),
            BTreeMap::from([("lct.internal".to_string(), ZoneMode::Private)]),
            BTreeMap::from([("lct.internal".to_string(), ZoneMode::Public)]),
        ] {
            let prefixes = vec!["192.168.0.0/16".parse::<Prefix>().unwrap()];
            let views = Views::new(&records, prefixes, &modes).unwrap();
            let answers = Answers::new(&records, &|zone| mode_of(&modes, zone)).unwrap();
            for name in &names {
                for rtype in types {
                    for edns in [None, Some(vec![]), Some(vec![cookie.clone()])] {
                        for src in [inside, outside] {
                            let packet = query(name, rtype, edns.clone());
                            let theirs = hickory(&views, packet.clone(), src).await;
                            let ours = answers
                                .answer(&packet, views.is_internal(src.ip()), false)
                                .unwrap_or_else(|| panic!("{name} {rtype} left to the slow path"));
                            let ours = Message::from_vec(&ours).unwrap();
                            assert_eq!(ours.metadata.id, 4242);
                            assert_eq!(ours.queries, theirs.queries, "the question as asked");
                            assert_eq!(
                                seen(&ours, true),
                                seen(&theirs, true),
                                "{name} {rtype} from {src} ({modes:?}, edns {edns:?})"
                            );
                            assert!(
                                additional(&ours).is_superset(&additional(&theirs)),
                                "{name} {rtype}: {:?} vs {:?}",
                                additional(&ours),
                                additional(&theirs)
                            );
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert!(compared > 1000, "{compared}");
    }
}
