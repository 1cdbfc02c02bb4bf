//! The sockets: UDP (batched receives and sends on threads of their own; the fast path first,
//! then updates and transfers, then hickory's catalog) and TCP (length-prefixed messages,
//! several per connection, idle connections closed).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::Record as HickoryRecord;
use hickory_server::proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::service::Live;

/// How long a TCP connection may sit idle (RFC 7766 suggests seconds, not minutes).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
const TCP_CONNECTIONS: usize = 512;

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
        let max = if self.tcp { u16::MAX } else { response.edns().map_or(512, |e| e.max_payload()) };
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

/// The answers to one message that is not for the fast path: updates and transfers are ours,
/// queries hickory's.
async fn answer(packet: Vec<u8>, src: SocketAddr, protocol: Protocol, live: &Live) -> Vec<Vec<u8>> {
    if let Some(messages) = crate::signed::handle(&packet, protocol == Protocol::Tcp, live).await {
        return messages;
    }
    let Ok(request) = Request::from_bytes(packet, src, protocol) else { return Vec::new() };
    let reply = Captured::new(protocol == Protocol::Tcp);
    live.current().views.handle_request::<_, TokioTime>(&request, reply.clone()).await;
    reply.take().into_iter().collect()
}

/// How many datagrams one system call receives or sends.
const BATCH: usize = 32;

/// Serves one UDP socket until the process ends, on a thread of its own: datagrams are
/// received and answered in batches (`recvmmsg`/`sendmmsg`, as NSD does), the common query
/// from the fast path's table without leaving the thread; everything else (other queries,
/// updates, transfers) goes to the runtime, which answers on the same socket.
pub fn udp_batch_loop(socket: std::net::UdpSocket, live: Live, runtime: tokio::runtime::Handle) {
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
            let internal = served.views.is_internal(src.ip());
            if served.answers.answer_into(packet, internal, &mut key, &mut replies[ready]) {
                reply_names[ready] = names[i];
                reply_name_lens[ready] = msgs[i].msg_hdr.msg_namelen;
                ready += 1;
                continue;
            }
            let (socket, live, packet) = (socket.clone(), live.clone(), packet.to_vec());
            runtime.spawn(async move {
                for message in answer(packet, src, Protocol::Udp, &live).await {
                    let _ = socket.send_to(&message, src);
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

/// Accepts TCP connections until the process ends.
pub async fn tcp_loop(listener: TcpListener, live: Live) {
    let slots = Arc::new(tokio::sync::Semaphore::new(TCP_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, src) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let live = live.clone();
        tokio::spawn(async move {
            let _ = connection(stream, src, &live).await;
            drop(permit);
        });
    }
}

async fn connection(mut stream: TcpStream, src: SocketAddr, live: &Live) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()), // idle, closed or broken
        }
        let mut packet = vec![0u8; u16::from_be_bytes(len) as usize];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        for message in answer(packet, src, Protocol::Tcp, live).await {
            let mut framed = Vec::with_capacity(message.len() + 2);
            framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
            framed.extend_from_slice(&message);
            tokio::time::timeout(TCP_IDLE, stream.write_all(&framed)).await.map_err(std::io::Error::other)??;
        }
    }
}
