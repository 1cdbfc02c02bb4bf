//! The sockets: UDP (batched receives and sends on threads of their own; the fast path first,
//! then updates, transfers and the rest) and TCP (length-prefixed messages, several per
//! connection, idle connections closed, the longest idle one when full).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::fast::{Answers, Class, UDP_PAYLOAD_MAX};
use crate::rrl::{RateLimit, Verdict};
use crate::service::Live;
use crate::transfer::Replies;

/// The answers to one message the UDP fast path did not take (or any over TCP): the tables
/// first, then updates, transfers, NOTIFY and signed queries ([`crate::signed`]), then the
/// rest read in full ([`plain_answer`]).
async fn answer(packet: Vec<u8>, src: SocketAddr, tcp: bool, live: &Live) -> Replies {
    let served = live.current();
    let internal = served.is_internal(src.ip());
    if tcp && let Some(reply) = served.answers.answer(&packet, internal, true) {
        return Replies::Now(vec![reply]);
    }
    if let Some(messages) = crate::signed::handle(&packet, tcp, src.ip(), live).await {
        return messages;
    }
    Replies::Now(plain_answer(&packet, internal, tcp, &served.answers).into_iter().collect())
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
        return Some(crate::signed::bare_error(packet, ResponseCode::FormErr));
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
        clean.set_edns(edns);
    }
    answers.answer(&clean.to_vec().ok()?, internal, tcp).or_else(|| respond(ResponseCode::Refused))
}

/// How many datagrams one system call receives or sends.
const BATCH: usize = 32;

/// Serves one UDP socket until the process ends, on a thread of its own: datagrams are
/// received and answered in batches (`recvmmsg`/`sendmmsg`, as NSD does), the common query
/// from the fast path's table without leaving the thread; everything else (other queries,
/// updates, transfers) goes to the runtime, which answers on the same socket.
pub fn udp_batch_loop(
    socket: std::net::UdpSocket,
    live: Live,
    rrl: Option<Arc<RateLimit>>,
    runtime: tokio::runtime::Handle,
) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let socket = Arc::new(socket);
    let mut bufs = vec![[0u8; 4096]; BATCH];
    // SAFETY: all-zero bytes are valid for these C structs.
    let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut iovecs: Vec<libc::iovec> = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH];
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut replies: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
    let mut reply_names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut reply_name_lens: Vec<libc::socklen_t> = vec![0; BATCH];
    let mut reply_iovecs: Vec<libc::iovec> = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH];
    let mut reply_msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut key = Vec::with_capacity(300);
    let mut generation = live.generation();
    let mut served = live.current();
    loop {
        for i in 0..BATCH {
            iovecs[i] = libc::iovec { iov_base: bufs[i].as_mut_ptr().cast(), iov_len: bufs[i].len() };
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            msgs[i].msg_len = 0;
        }
        // Blocks for the first datagram, then takes what is already there (MSG_WAITFORONE).
        // SAFETY: every pointer in `msgs` points into buffers that outlive the call.
        let n = unsafe {
            libc::recvmmsg(fd, msgs.as_mut_ptr(), BATCH as libc::c_uint, libc::MSG_WAITFORONE, std::ptr::null_mut())
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::debug!("udp receive: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
            continue;
        }
        // A reload or update swaps the zones; pick them up before this batch's answers.
        let now = live.generation();
        if now != generation {
            generation = now;
            served = live.current();
        }
        let mut ready = 0;
        for i in 0..n as usize {
            let packet = &bufs[i][..msgs[i].msg_len as usize];
            let Some(src) = socket_addr(&names[i]) else { continue };
            let internal = served.is_internal(src.ip());
            if let Some(outcome) = served.answers.answer_into(packet, internal, false, &mut key, &mut replies[ready]) {
                if let Some(rrl) = rrl.as_ref().filter(|r| !internal || r.limits_internal()) {
                    match rrl.check(src.ip(), outcome.class, outcome.bucket(&key)) {
                        Verdict::Send => {}
                        Verdict::Slip => outcome.slip(&mut replies[ready]),
                        Verdict::Drop => continue,
                    }
                }
                reply_names[ready] = names[i];
                reply_name_lens[ready] = msgs[i].msg_hdr.msg_namelen;
                ready += 1;
                continue;
            }
            // The rest (updates, refused transfers, other classes, malformed messages) is
            // limited as errors are, before it costs the runtime anything.
            if let Some(rrl) = rrl.as_ref().filter(|r| !internal || r.limits_internal())
                && rrl.check(src.ip(), Class::Refused, b"") != Verdict::Send
            {
                continue;
            }
            let (socket, live, packet) = (socket.clone(), live.clone(), packet.to_vec());
            runtime.spawn(async move {
                // (Over UDP nothing is streamed: transfers are refused there.)
                if let Replies::Now(messages) = answer(packet, src, false, &live).await {
                    for message in messages {
                        let _ = socket.send_to(&message, src);
                    }
                }
            });
        }
        let mut sent = 0;
        while sent < ready {
            for j in sent..ready {
                reply_iovecs[j] = libc::iovec { iov_base: replies[j].as_mut_ptr().cast(), iov_len: replies[j].len() };
                let hdr = &mut reply_msgs[j].msg_hdr;
                hdr.msg_name = (&mut reply_names[j] as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = reply_name_lens[j];
                hdr.msg_iov = &mut reply_iovecs[j];
                hdr.msg_iovlen = 1;
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
                hdr.msg_flags = 0;
            }
            // SAFETY: as above; the replies outlive the call.
            let n = unsafe { libc::sendmmsg(fd, reply_msgs[sent..].as_mut_ptr(), (ready - sent) as libc::c_uint, 0) };
            if n <= 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // A reply that cannot go (the client's address unreachable): skip it.
                tracing::debug!("udp send: {e}");
                sent += 1;
                continue;
            }
            sent += n as usize;
        }
    }
}

/// The sender's address from what `recvmmsg` filled in.
fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match name.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(name as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(name as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Accepts TCP connections until the process ends; when `connections` is full, the one idle
/// the longest makes room (as Knot does), so idle clients cannot lock the others out.
pub async fn tcp_loop(listener: TcpListener, live: Live, connections: Connections) {
    loop {
        let (stream, src) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to close.
                tracing::debug!("tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(slot) = connections.admit() else {
            continue; // every connection is mid-query: this one is closed
        };
        let live = live.clone();
        tokio::spawn(async move {
            let _ = connection(stream, src, &live, &slot).await;
        });
    }
}

/// TCP connections served at once by default.
pub const TCP_CLIENTS: usize = 4096;
/// How long a TCP connection may sit idle between messages (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// How long a message, once begun, may take to arrive, and an answer to leave.
const TCP_IO: Duration = Duration::from_secs(2);

/// The open TCP connections: which are idle since when, and how to close each.
#[derive(Clone)]
pub struct Connections {
    table: Arc<Mutex<ConnectionTable>>,
    limit: usize,
}

#[derive(Default)]
struct ConnectionTable {
    next: u64,
    open: std::collections::HashMap<u64, OpenConnection>,
}

struct OpenConnection {
    /// `None` while a message is being read or answered.
    idle_since: Option<std::time::Instant>,
    close: Arc<tokio::sync::Notify>,
}

/// A connection's place in the table, given up when dropped.
pub struct Slot {
    id: u64,
    close: Arc<tokio::sync::Notify>,
    connections: Connections,
}

impl Connections {
    pub fn new(limit: usize) -> Connections {
        Connections { table: Arc::default(), limit: limit.max(1) }
    }

    /// A place for a new connection: when full, the longest idle one is told to close and
    /// gives up its place; `None` when every connection is busy.
    pub fn admit(&self) -> Option<Slot> {
        let mut table = self.table.lock().expect("not poisoned");
        if table.open.len() >= self.limit {
            let oldest =
                table.open.iter().filter_map(|(id, c)| c.idle_since.map(|t| (t, *id))).min().map(|(_, id)| id)?;
            if let Some(c) = table.open.remove(&oldest) {
                c.close.notify_one();
            }
        }
        table.next += 1;
        let id = table.next;
        let close = Arc::new(tokio::sync::Notify::new());
        table.open.insert(id, OpenConnection { idle_since: Some(std::time::Instant::now()), close: close.clone() });
        Some(Slot { id, close, connections: self.clone() })
    }

    fn set_idle(&self, id: u64, idle: bool) {
        if let Some(c) = self.table.lock().expect("not poisoned").open.get_mut(&id) {
            c.idle_since = idle.then(std::time::Instant::now);
        }
    }

    /// Open connections now.
    pub fn len(&self) -> usize {
        self.table.lock().expect("not poisoned").open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.table.lock().expect("not poisoned").open.remove(&self.id);
    }
}

/// Raises the soft limit of open files towards `wanted` (up to the hard limit), as servers
/// that hold many connections do.
pub fn raise_file_limit(wanted: usize) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct given, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && (limit.rlim_cur as usize) < wanted {
            limit.rlim_cur = (wanted as libc::rlim_t).min(limit.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("could not raise the open files limit to {wanted}");
            }
        }
    }
}

async fn connection(mut stream: TcpStream, src: SocketAddr, live: &Live, slot: &Slot) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    loop {
        let mut len = [0u8; 2];
        tokio::select! {
            read = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)) => match read {
                Ok(Ok(_)) => {}
                _ => return Ok(()), // idle, closed or broken
            },
            _ = slot.close.notified() => return Ok(()), // room made for a new client
        }
        slot.connections.set_idle(slot.id, false);
        let mut packet = vec![0u8; u16::from_be_bytes(len) as usize];
        match tokio::time::timeout(TCP_IO, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let write = async |stream: &mut TcpStream, message: Vec<u8>| -> std::io::Result<()> {
            let mut framed = Vec::with_capacity(message.len() + 2);
            framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
            framed.extend_from_slice(&message);
            tokio::time::timeout(TCP_IO, stream.write_all(&framed)).await.map_err(std::io::Error::other)?
        };
        match answer(packet, src, true, live).await {
            Replies::Now(messages) => {
                for message in messages {
                    write(&mut stream, message).await?;
                }
            }
            Replies::Streamed(mut messages) => {
                while let Some(message) = messages.recv().await {
                    write(&mut stream, message).await?;
                }
            }
        }
        slot.connections.set_idle(slot.id, true);
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

    use crate::fast::Answers;
    use crate::server::reference::Views;
    use crate::server::{Prefix, ZoneMode, mode_of};

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
