//! Running as a service: the configuration file, sockets (several UDP sockets per address
//! with SO_REUSEPORT, so every core serves), systemd's readiness protocol, and reloading on
//! SIGHUP without dropping a query.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use serde::Deserialize;

use crate::fast::Answers;
use crate::server::{Prefix, Views};
use crate::zone::DnsRecord;

/// `lct-dns serve --config FILE` (TOML):
///
/// ```toml
/// records = "/var/lib/lct/dns/zones.jsonl"   # dns-record records (lct-dns zone)
/// listen = ["192.168.128.53:53", "203.0.113.53:53"]
/// internal = ["192.168.128.0/17"]            # clients that see the internal view
/// udp_sockets = 2                            # per address; default: one per core
///
/// [modes]                                    # per zone: split (default), private, public
/// "lct.internal" = "split"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub records: PathBuf,
    pub listen: Vec<SocketAddr>,
    #[serde(default)]
    pub internal: Vec<String>,
    #[serde(default)]
    pub udp_sockets: Option<usize>,
    /// Per zone: split (default), private (inside only) or public (public answers to all).
    #[serde(default)]
    pub modes: std::collections::BTreeMap<String, crate::server::ZoneMode>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: shown.clone(), source })?;
        // toml's messages name the line and column, and the key.
        let config: Config =
            toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: shown.clone(), message: e.to_string() })?;
        if config.listen.is_empty() {
            return Err(ConfigError::Invalid { path: shown, message: "listen: give at least one address".into() });
        }
        config.prefixes().map_err(|message| ConfigError::Invalid { path: shown, message })?;
        Ok(config)
    }

    pub fn prefixes(&self) -> Result<Vec<Prefix>, String> {
        self.internal.iter().map(|p| p.parse::<Prefix>().map_err(|e| format!("internal: {e}"))).collect()
    }

    /// Reads the records and builds the views and the fast-path answers: everything a
    /// (re)load needs, checked before anything is swapped in.
    pub fn views(&self) -> anyhow::Result<Served> {
        let shown = self.records.display().to_string();
        let file = std::fs::File::open(&self.records).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
        let (records, _) = lct_core::stream::read_kind::<DnsRecord>(io::BufReader::new(file))
            .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
        let prefixes = self.prefixes().map_err(|e| anyhow::anyhow!(e))?;
        let views = Views::new(&records, prefixes, &self.modes)?;
        let answers = Answers::new(&records, &|zone| crate::server::mode_of(&self.modes, zone));
        Ok(Served { views, answers })
    }
}

/// What is being served: the views, and the fast path's answers made from the same records.
pub struct Served {
    pub views: Views,
    pub answers: Answers,
}

/// What is being served, swapped whole on reload: a query in flight keeps what it started
/// with, the next one gets the new zones.
#[derive(Clone)]
pub struct Live {
    served: Arc<RwLock<Arc<Served>>>,
    /// Bumped on every swap, so a hot loop can keep its `Arc` until it changes.
    generation: Arc<AtomicU64>,
}

impl Live {
    pub fn new(served: Served) -> Live {
        Live { served: Arc::new(RwLock::new(Arc::new(served))), generation: Arc::new(AtomicU64::new(0)) }
    }

    pub fn swap(&self, served: Served) {
        *self.served.write().expect("not poisoned") = Arc::new(served);
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn current(&self) -> Arc<Served> {
        self.served.read().expect("not poisoned").clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[async_trait::async_trait]
impl RequestHandler for Live {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response: R) -> ResponseInfo {
        let served = self.current();
        served.views.handle_request::<R, T>(request, response).await
    }
}

/// `count` UDP sockets bound to one address with SO_REUSEPORT: the kernel spreads queries
/// over them, and so over the runtime's threads.
pub fn udp_sockets(addr: SocketAddr, count: usize) -> io::Result<Vec<tokio::net::UdpSocket>> {
    (0..count.max(1))
        .map(|_| {
            let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
            let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
            s.set_reuse_port(true)?;
            if addr.is_ipv6() {
                s.set_only_v6(true)?;
            }
            s.set_nonblocking(true)?;
            s.bind(&addr.into())?;
            tokio::net::UdpSocket::from_std(s.into())
        })
        .collect()
}

/// Tells systemd (Type=notify) how the service is doing, if it is listening.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("NOTIFY_SOCKET: {e}");
            return;
        }
    };
    let path = path.to_string_lossy().into_owned();
    let result = match path.strip_prefix('@') {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        }
        None => socket.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = result {
        tracing::warn!("NOTIFY_SOCKET {path}: {e}");
    }
}
