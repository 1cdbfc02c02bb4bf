//! The sockets: UDP (the fast path first, then updates and transfers, then hickory's catalog)
//! and TCP (length-prefixed messages, several per connection, idle connections closed).

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
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::service::Live;

/// How long a TCP connection may sit idle (RFC 7766 suggests seconds, not minutes).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
const TCP_CONNECTIONS: usize = 512;

/// Catches hickory's encoded response, for the caller to send.
#[derive(Clone)]
struct Captured {
    max: u16,
    bytes: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Captured {
    fn new(max: u16) -> Captured {
        Captured { max, bytes: Arc::new(Mutex::new(None)) }
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
        let max = match self.max {
            u16::MAX => u16::MAX,
            _ => response.edns().map_or(512, |e| e.max_payload()),
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

/// The answers to one message that is not for the fast path: updates and transfers are ours,
/// queries hickory's.
async fn answer(packet: Vec<u8>, src: SocketAddr, protocol: Protocol, live: &Live) -> Vec<Vec<u8>> {
    if let Some(messages) = crate::update::handle(&packet, protocol == Protocol::Tcp, live).await {
        return messages;
    }
    let Ok(request) = Request::from_bytes(packet, src, protocol) else { return Vec::new() };
    let reply = Captured::new(if protocol == Protocol::Tcp { u16::MAX } else { 512 });
    live.current().views.handle_request::<_, TokioTime>(&request, reply.clone()).await;
    reply.take().into_iter().collect()
}

/// Serves one UDP socket until the process ends.
pub async fn udp_loop(socket: UdpSocket, live: Live) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65_535];
    let mut key = Vec::with_capacity(300);
    let mut out = Vec::with_capacity(1232);
    let mut generation = live.generation();
    let mut served = live.current();
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("udp receive: {e}");
                continue;
            }
        };
        let packet = &buf[..n];
        // A reload or update swaps the zones; pick them up before the next answer (read the
        // generation first, so a swap racing with this can only make us fetch once more).
        let now = live.generation();
        if now != generation {
            generation = now;
            served = live.current();
        }
        let internal = served.views.is_internal(src.ip());
        if served.answers.answer_into(packet, internal, &mut key, &mut out) {
            let _ = socket.send_to(&out, src).await;
            continue;
        }
        // Everything else in a task of its own, as hickory's own server does.
        let (socket, live, packet) = (socket.clone(), live.clone(), packet.to_vec());
        tokio::spawn(async move {
            for message in answer(packet, src, Protocol::Udp, &live).await {
                let _ = socket.send_to(&message, src).await;
            }
        });
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
