//! TCP: length-prefixed messages, several per connection; idle connections closed, and
//! the longest idle one when the table of connections is full.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::dispatch::answer;
use crate::live::Live;
use crate::transfer::Replies;

/// Accepts TCP connections until the process ends; when `connections` is full, the one idle
/// the longest makes room (as Knot does), so idle clients cannot lock the others out. On a
/// `public` listener every query gets the external view.
pub async fn tcp_loop(listener: TcpListener, public: bool, live: Live, connections: Connections) {
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
            crate::stats::event(crate::stats::Event::TcpRefused);
            continue; // every connection is mid-query: this one is closed
        };
        crate::stats::event(crate::stats::Event::TcpAccepted);
        let live = live.clone();
        tokio::spawn(async move {
            let _ = connection(stream, src, public, &live, &slot).await;
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
                crate::stats::event(crate::stats::Event::TcpEvicted);
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
        crate::stats::event(crate::stats::Event::TcpClosed);
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

async fn connection(
    mut stream: TcpStream,
    src: SocketAddr,
    public: bool,
    live: &Live,
    slot: &Slot,
) -> std::io::Result<()> {
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
        let internal = crate::stats::get().is_some() && live.current().view(src.ip(), public).1;
        match answer(packet, src, true, public, live).await {
            Replies::Now(messages) => {
                if let Some(first) = messages.first() {
                    crate::stats::response(internal, first);
                }
                for message in messages {
                    write(&mut stream, message).await?;
                }
            }
            Replies::Streamed(mut messages) => {
                let mut first = true;
                while let Some(message) = messages.recv().await {
                    if std::mem::take(&mut first) {
                        crate::stats::response(internal, &message);
                    }
                    write(&mut stream, message).await?;
                }
            }
        }
        slot.connections.set_idle(slot.id, true);
    }
}
