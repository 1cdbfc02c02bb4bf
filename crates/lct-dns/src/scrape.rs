//! The statistics listener: a small HTTP/1.1 responder, opt-in (`[stats]` in the
//! configuration, `--stats` on the command line), on a private address unless told
//! otherwise. `GET /metrics` gives Prometheus' text format, `GET /stats` the same samples as
//! `dns-stat` JSON lines (what `lct-dns stats` reads, [`fetch`]).
//!
//! Built to be scraped, not attacked, but safe when it is: one request per connection, its
//! head at most [`HEAD_MAX`] bytes and in within [`HEAD_DEADLINE`] (a scraper sends it at
//! once; an idle or trickling client is cut off), the whole exchange within [`DEADLINE`],
//! at most [`PER_SOURCE`] connections from one address and [`CLIENTS`] in all at once (more
//! are closed at once), only from `stats.allow`'s prefixes when it is given (checked before
//! any byte is read), and all of it on the runtime, apart from the threads that answer
//! queries. One address renewing idle connections holds two slots for half a second each:
//! scrapes from elsewhere go on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use lct_core::prefix::{HostBits, Prefix};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::live::Live;
use crate::metrics::{DnsStat, prometheus, samples};
use crate::stats::{Event, event};

/// The longest request head read (request line and headers).
pub const HEAD_MAX: usize = 8192;
/// How long a request may take, from connection to the last byte of the answer.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// Requests served at once.
pub const CLIENTS: usize = 16;
/// How long a client has to send its request's head.
pub const HEAD_DEADLINE: Duration = Duration::from_millis(500);
/// Connections served at once from one address.
pub const PER_SOURCE: usize = 2;

/// `[stats]` in the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// Where /metrics is served: a loopback or private address.
    pub listen: SocketAddr,
    /// Allow a public or wildcard address (the counters tell who asks what, and how much).
    #[serde(default)]
    pub allow_public: bool,
    /// Only clients in these prefixes are served (empty: any client that reaches it).
    #[serde(default)]
    pub allow: Vec<String>,
}

impl StatsConfig {
    /// The `allow` prefixes, read; an error names the one that is not a prefix.
    pub fn allowed(&self) -> Result<Vec<Prefix>, String> {
        let read =
            |(i, p): (usize, &String)| Prefix::parse(p, HostBits::Clear).map_err(|e| format!("stats.allow[{i}]: {e}"));
        self.allow.iter().enumerate().map(read).collect()
    }

    /// Refuses a public or wildcard address unless `allow_public` says so, and an `allow`
    /// entry that is not a prefix.
    pub fn check(&self) -> Result<(), String> {
        self.allowed()?;
        if self.allow_public || is_private(self.listen.ip()) {
            return Ok(());
        }
        Err(format!(
            "stats.listen: {} is not a loopback or private address (the statistics tell who asks \
             what); set stats.allow_public = true to serve them there",
            self.listen
        ))
    }
}

/// Loopback, RFC 1918, shared (RFC 6598), link-local and unique-local addresses; never the
/// wildcard.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
    }
}

/// Binds the listener (an error names the address) and serves it on the runtime from now
/// on; turns counting on.
pub async fn listen(config: &StatsConfig, live: Live) -> anyhow::Result<()> {
    config.check().map_err(|e| anyhow::anyhow!(e))?;
    crate::stats::enable();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding the statistics listener {}: {e}", config.listen))?;
    tracing::info!("statistics on http://{}/metrics", config.listen);
    let allow = config.allowed().map_err(|e| anyhow::anyhow!(e))?;
    tokio::spawn(serve(listener, live, allow));
    Ok(())
}

/// The connections open from each address.
type Sources = Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>;

/// One connection counted against its address while it lives.
struct SourceSlot {
    sources: Sources,
    ip: IpAddr,
}

impl SourceSlot {
    /// A slot for `ip`, unless it has [`PER_SOURCE`] open already.
    fn take(sources: &Sources, ip: IpAddr) -> Option<SourceSlot> {
        let mut open = sources.lock().expect("not poisoned");
        let n = open.entry(ip).or_insert(0);
        if *n >= PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(SourceSlot { sources: Arc::clone(sources), ip })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.sources.lock().expect("not poisoned");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip); // the map holds only addresses with connections open
            }
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, live: Live, allow: Vec<Prefix>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CLIENTS));
    let sources: Sources = Arc::default();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // Who may ask, before a byte is read; then one address's share, then everyone's.
        if !allow.is_empty() && !allow.iter().any(|p| p.contains(peer.ip())) {
            event(Event::ScrapeRefused);
            continue;
        }
        let Some(source) = SourceSlot::take(&sources, peer.ip()) else {
            event(Event::ScrapeRefused);
            continue; // closed at once: this address has PER_SOURCE requests being served
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            event(Event::ScrapeRefused);
            continue; // closed at once: CLIENTS requests are being served
        };
        let live = live.clone();
        tokio::spawn(async move {
            let held = Held { _permit: permit, _source: source };
            if tokio::time::timeout(DEADLINE, exchange(stream, &live, held)).await.is_err() {
                event(Event::ScrapeRefused);
            }
        });
    }
}

/// A connection's slots (its address's and everyone's), given back once its answer is
/// written: the lingering close after it holds neither.
struct Held {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _source: SourceSlot,
}

/// What reading a request's head came to.
enum Head {
    Complete(Vec<u8>),
    /// The client closed before the head was in.
    Closed,
    TooLong,
}

/// Reads a request's head, up to [`HEAD_MAX`] bytes.
async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<Head> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= HEAD_MAX {
            return Ok(Head::TooLong);
        }
        let n = stream.read(&mut buf[..(HEAD_MAX - head.len()).min(1024)]).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(Head::Complete(head))
}

/// One request and its answer.
async fn exchange(mut stream: tokio::net::TcpStream, live: &Live, held: Held) -> std::io::Result<()> {
    let head = match tokio::time::timeout(HEAD_DEADLINE, read_head(&mut stream)).await {
        Ok(Ok(Head::Complete(head))) => head,
        Ok(Ok(Head::Closed)) => return Ok(()),
        Ok(Ok(Head::TooLong)) => {
            event(Event::ScrapeRefused);
            return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", b"", held).await;
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            // Idle or trickling: cut off, its slot free for a scraper.
            event(Event::ScrapeRefused);
            return Ok(());
        }
    };
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    if !version.is_some_and(|v| v.starts_with(b"HTTP/1.")) || parts.next().is_some() {
        return respond(&mut stream, "400 Bad Request", "text/plain", b"", held).await;
    }
    if method != Some(b"GET") {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", b"", held).await;
    }
    let Some(stats) = crate::stats::get() else {
        return respond(&mut stream, "503 Service Unavailable", "text/plain", b"", held).await;
    };
    let made = samples(&stats.snapshot(), &live.current());
    match target {
        Some(b"/metrics") => {
            let text = prometheus(&made);
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", text.as_bytes(), held).await
        }
        Some(b"/stats") => {
            let mut body = Vec::with_capacity(made.len() * 100);
            let mut w = lct_core::stream::Writer::new(&mut body);
            for s in &made {
                w.write(s)?;
            }
            w.flush()?;
            drop(w);
            respond(&mut stream, "200 OK", "application/jsonl", &body, held).await
        }
        _ => respond(&mut stream, "404 Not Found", "text/plain", b"", held).await,
    }
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: &str,
    kind: &str,
    body: &[u8],
    held: Held,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await?;
    drop(held);
    // A lingering close: what the client still sends (a head past the limit) is read and
    // dropped for a moment, so that closing with it unread does not reset the connection
    // before the client has read the answer. Bounded in time and bytes.
    let mut sink = [0u8; 4096];
    let mut left = LINGER_BYTES;
    let linger = async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, linger).await;
    Ok(())
}

/// How long, and how many bytes, a closing connection's late input is read and dropped.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 << 10;

/// The largest answer [`fetch`] reads.
const ANSWER_MAX: u64 = 64 << 20;

/// Errors of [`fetch`], each naming the server.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("statistics at {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("statistics at {0}: {1}")]
    Answer(SocketAddr, String),
}

/// The samples of a running server, from its statistics listener (`GET /stats`).
pub fn fetch(server: SocketAddr, timeout: Duration) -> Result<Vec<DnsStat>, FetchError> {
    use std::io::{Read, Write};
    let io = |e| FetchError::Io(server, e);
    let mut stream = std::net::TcpStream::connect_timeout(&server, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream
        .write_all(format!("GET /stats HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(io)?;
    let mut answer = Vec::new();
    stream.take(ANSWER_MAX).read_to_end(&mut answer).map_err(io)?;
    let bad = |m: &str| FetchError::Answer(server, m.to_string());
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("not an HTTP answer"))?;
    let status = answer[..split].split(|b| *b == b'\r').next().unwrap_or_default();
    if !status.starts_with(b"HTTP/1.1 200 ") {
        return Err(bad(&format!("answered {:?}", String::from_utf8_lossy(status))));
    }
    let (stats, _) = lct_core::stream::read_kind::<DnsStat>(&answer[split + 4..]).map_err(|e| bad(&e.to_string()))?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_wildcard_addresses_are_refused_unless_allowed() {
        let config = |listen: &str, allow_public| StatsConfig {
            listen: listen.parse().unwrap(),
            allow_public,
            allow: Vec::new(),
        };
        for ok in
            ["127.0.0.1:9153", "10.1.2.3:9153", "192.168.128.53:9153", "100.64.0.1:1", "[::1]:9153", "[fd00::1]:1"]
        {
            assert_eq!(config(ok, false).check(), Ok(()), "{ok}");
        }
        for refused in ["0.0.0.0:9153", "[::]:9153", "203.0.113.53:9153", "[2001:db8::1]:9153", "100.128.0.1:1"] {
            let e = config(refused, false).check().unwrap_err();
            assert!(e.starts_with("stats.listen: ") && e.contains("allow_public"), "{e}");
            assert_eq!(config(refused, true).check(), Ok(()));
        }
        let mut allowing = config("127.0.0.1:9153", false);
        allowing.allow = vec!["10.0.0.0/8".into(), "fd00::/8".into()];
        assert_eq!(allowing.check(), Ok(()));
        allowing.allow.push("not a prefix".into());
        let e = allowing.check().unwrap_err();
        assert!(e.starts_with("stats.allow[2]: "), "{e}");
    }
}
