//! Running as a service: the configuration file, sockets (several UDP sockets per address
//! with SO_REUSEPORT, so every core serves), systemd's readiness protocol, and reloading on
//! SIGHUP without dropping a query.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::fast::Answers;
use crate::server::Prefix;
use crate::tsig::{Key, Keys};
use crate::zone::DnsRecord;
use lct_core::prefix::HostBits;

/// `lct-dns serve --config FILE` (TOML):
///
/// ```toml
/// records = "/etc/lct/zones.jsonl"           # dns-record records (lct-dns zone)
/// listen = ["192.168.128.53:53", "203.0.113.53:53"]
/// internal = ["192.168.128.0/17"]            # clients that see the internal view
/// udp_sockets = 2                            # per address; default: one per core
/// keys = ["lct-update.key"]                  # TSIG keys that may update and transfer
/// state = "/var/lib/lct/dns"                 # where updated zones are kept (zones-HASH.jsonl)
/// tcp_clients = 4096                         # TCP connections at once; when full the
///                                            # longest idle one is closed
///
/// [[update]]                                 # an update key limited to zones and prefixes
/// key = "web-update.key"
/// zones = ["web.lct.internal"]               # [every zone]
/// allow = ["192.168.128.0/24"]               # where its updates may come from [any]
///
/// [[secondary]]                              # a secondary server (BIND, Knot, lct-dns)
/// key = "xfr-external.key"                   # its TSIG key selects the view it transfers
/// view = "external"                          # internal or external
/// notify = ["198.51.100.53:53"]              # told of every change (signed NOTIFY)
/// allow = ["198.51.100.53/32"]               # where its requests may come from [any]
/// zones = ["lct.internal"]                   # which zones [all]
///
/// [[primary]]                                # a zone this server is a secondary for
/// zone = "example.internal"
/// address = "192.168.128.60:53"              # its primary (lct-dns, BIND, Knot)
/// key = "xfr-example.key"                    # TSIG: transfers, and NOTIFY from it
///
/// [rate_limit]                               # UDP answers to the outside (RRL)
/// responses_per_second = 20                  # per /24 (/56) and answer; 0: off
/// slip = 2                                   # every 2nd limited answer sent truncated
/// table_size = 65536                         # buckets, 24 bytes each
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
    pub modes: BTreeMap<String, crate::server::ZoneMode>,
    /// TSIG key files (`tsig-keygen`'s format). A relative path is looked up in systemd's
    /// `$CREDENTIALS_DIRECTORY` when set, else next to the configuration file.
    #[serde(default)]
    pub keys: Vec<PathBuf>,
    /// The state directory [default: $LCT_STATE_DIR/dns].
    #[serde(default)]
    pub state: Option<PathBuf>,
    /// Update keys limited to some zones and client prefixes (`keys` may update every zone
    /// from anywhere).
    #[serde(default, rename = "update")]
    pub updates: Vec<UpdateConfig>,
    /// Secondary servers: each key may transfer (AXFR, IXFR) one view of the zones, and
    /// nothing else; the addresses in `notify` hear of every change.
    #[serde(default, rename = "secondary")]
    pub secondaries: Vec<SecondaryConfig>,
    /// Zones this server is a secondary for, each from its primary.
    #[serde(default, rename = "primary")]
    pub primaries: Vec<PrimaryConfig>,
    /// Response rate limiting over UDP (on for the outside by default).
    #[serde(default)]
    pub rate_limit: crate::rrl::RateLimitSettings,
    /// TCP connections served at once [default: 4096]; when full, the connection idle the
    /// longest is closed for the new one (as Knot does), so idle clients cannot lock others out.
    #[serde(default)]
    pub tcp_clients: Option<usize>,
    /// Where relative key paths are resolved when no credentials directory is given.
    #[serde(skip)]
    pub base: Option<PathBuf>,
    /// The file this was read from, named in errors about its fields.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[[secondary]]` in the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecondaryConfig {
    pub key: PathBuf,
    pub view: TransferView,
    #[serde(default)]
    pub notify: Vec<SocketAddr>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub zones: Vec<String>,
}

/// `[[update]]` in the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    pub key: PathBuf,
    #[serde(default)]
    pub zones: Vec<String>,
    #[serde(default)]
    pub allow: Vec<String>,
}

/// What an update key may touch: zones (fully qualified; empty: all) from prefixes (empty:
/// anywhere).
#[derive(Debug, Clone)]
pub struct UpdateScope {
    pub key: hickory_proto::rr::Name,
    pub zones: Vec<String>,
    pub allow: Vec<Prefix>,
}

impl UpdateScope {
    pub fn permits(&self, zone: &str, ip: std::net::IpAddr) -> bool {
        (self.zones.is_empty() || self.zones.iter().any(|z| z == zone))
            && (self.allow.is_empty() || self.allow.iter().any(|p| p.contains(ip)))
    }
}

/// Prefixes from the configuration, `field` naming where they came from.
fn prefixes_of(list: &[String], field: &str) -> anyhow::Result<Vec<Prefix>> {
    list.iter().map(|p| Prefix::parse(p, HostBits::Clear).map_err(|e| anyhow::anyhow!("{field}: {e}"))).collect()
}

/// `[[primary]]` in the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PrimaryConfig {
    pub zone: String,
    pub address: SocketAddr,
    pub key: PathBuf,
}

/// A zone served as a secondary, as the server runs it.
#[derive(Debug, Clone)]
pub struct Primary {
    /// Fully qualified, lower case.
    pub zone: String,
    pub address: SocketAddr,
    pub key: Key,
}

/// Which view a secondary's key transfers.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransferView {
    Internal,
    External,
}

impl TransferView {
    pub fn view(self) -> crate::zone::View {
        match self {
            TransferView::Internal => crate::zone::View::Internal,
            TransferView::External => crate::zone::View::External,
        }
    }
}

/// A secondary as the server runs it: its key loaded, its prefixes parsed.
#[derive(Debug, Clone)]
pub struct Secondary {
    pub key: Key,
    pub view: TransferView,
    pub notify: Vec<SocketAddr>,
    pub allow: Vec<Prefix>,
    /// Fully qualified; empty: every zone.
    pub zones: Vec<String>,
}

impl Secondary {
    pub fn serves(&self, zone: &str) -> bool {
        self.zones.is_empty() || self.zones.iter().any(|z| z == zone)
    }

    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|p| p.contains(ip))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: {error}")]
    Io { path: String, error: io::Error },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: shown.clone(), error: source })?;
        // toml's messages name the line and column, and the key.
        let mut config: Config =
            toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: shown.clone(), message: e.to_string() })?;
        if config.listen.is_empty() {
            return Err(ConfigError::Invalid { path: shown, message: "listen: give at least one address".into() });
        }
        config.prefixes().map_err(|message| ConfigError::Invalid { path: shown.clone(), message })?;
        config.base = path.parent().map(Path::to_path_buf);
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    pub fn prefixes(&self) -> Result<Vec<Prefix>, String> {
        // Client selection: `192.168.128.7/17` means its network, as BIND's ACLs read it.
        self.internal.iter().map(|p| Prefix::parse(p, HostBits::Clear).map_err(|e| format!("internal: {e}"))).collect()
    }

    /// Where this server keeps its zones: in the state directory, under a name drawn from its
    /// records file, so that servers of different records files never share (or overwrite)
    /// each other's zones.
    pub fn state_file(&self) -> PathBuf {
        let dir = self.state.clone().unwrap_or_else(|| lct_core::state::state_dir().join("dns"));
        let records = std::fs::canonicalize(&self.records).unwrap_or_else(|_| self.records.clone());
        // FNV-1a: a stable name, not a secret.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in records.as_os_str().as_encoded_bytes() {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        dir.join(format!("zones-{h:016x}.jsonl"))
    }

    /// A key file: a relative path in systemd's credentials directory when there is one,
    /// else next to the configuration file.
    fn key_file(&self, p: &Path) -> anyhow::Result<Key> {
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        let path = match (p.is_relative(), &credentials, &self.base) {
            (true, Some(dir), _) => dir.join(p),
            (true, None, Some(base)) => base.join(p),
            _ => p.to_path_buf(),
        };
        Ok(Key::load(&path)?)
    }

    /// A field of this configuration as errors name it: with the file when there is one.
    fn field(&self, name: String) -> String {
        match &self.source {
            Some(path) => format!("{}: {name}", path.display()),
            None => name,
        }
    }

    /// The update keys (`keys` and `[[update]]`), each file read and checked.
    pub fn keys(&self) -> anyhow::Result<Keys> {
        let keys = self
            .keys
            .iter()
            .chain(self.updates.iter().map(|u| &u.key))
            .map(|p| self.key_file(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keys::new(keys))
    }

    /// The limits of `[[update]]` keys.
    pub fn update_scopes(&self) -> anyhow::Result<Vec<UpdateScope>> {
        self.updates
            .iter()
            .enumerate()
            .map(|(i, u)| {
                Ok(UpdateScope {
                    key: self.key_file(&u.key)?.name,
                    zones: u.zones.iter().map(|z| crate::zone::fqdn(&z.to_ascii_lowercase())).collect(),
                    allow: prefixes_of(&u.allow, &self.field(format!("update[{i}].allow")))?,
                })
            })
            .collect()
    }

    /// The zones served as a secondary, their keys read.
    pub fn primaries(&self) -> anyhow::Result<Vec<Primary>> {
        let mut out: Vec<Primary> = Vec::new();
        for (i, p) in self.primaries.iter().enumerate() {
            let zone = crate::zone::fqdn(&p.zone.to_ascii_lowercase());
            if out.iter().any(|o| o.zone == zone) {
                anyhow::bail!("{}: {zone} is given twice", self.field(format!("primary[{i}].zone")));
            }
            out.push(Primary { zone, address: p.address, key: self.key_file(&p.key)? });
        }
        Ok(out)
    }

    /// The secondaries, their keys read; a key may not be both an update key and a
    /// secondary's, nor two secondaries' (it would choose two views).
    pub fn secondaries(&self, keys: &Keys) -> anyhow::Result<Vec<Secondary>> {
        let mut out: Vec<Secondary> = Vec::new();
        for (i, s) in self.secondaries.iter().enumerate() {
            let key = self.key_file(&s.key)?;
            if keys.get(&key.name).is_some() || out.iter().any(|o| o.key.name == key.name) {
                anyhow::bail!(
                    "{}: key {} is already given another role",
                    self.field(format!("secondary[{i}].key")),
                    key.name
                );
            }
            let allow = prefixes_of(&s.allow, &self.field(format!("secondary[{i}].allow")))?;
            let zones = s.zones.iter().map(|z| crate::zone::fqdn(&z.to_ascii_lowercase())).collect();
            out.push(Secondary { key, view: s.view, notify: s.notify.clone(), allow, zones });
        }
        Ok(out)
    }

    /// Reads the records and builds what is served, checked before anything is swapped in.
    ///
    /// Zones come from the records file. A zone's data is what the server holds (`held`: the
    /// running zones on reload, the state directory at start) if its SOA serial is newer than
    /// the file's, else the file's, as Knot does with a zone file and its journal: updates
    /// (each raises the serial) survive a restart, and a records file made afresh (its serial
    /// is the time) replaces them.
    pub fn load_served(&self, held: Option<&[DnsRecord]>) -> anyhow::Result<Served> {
        let seed = read_records(&self.records)?;
        let from_state;
        let held = match held {
            Some(h) => h,
            None => {
                let file = self.state_file();
                from_state = if file.exists() { read_records(&file)? } else { Vec::new() };
                &from_state
            }
        };
        let primaries = self.primaries()?;
        let secondary_zones: Vec<String> = primaries.iter().map(|p| p.zone.clone()).collect();
        if let Some(zone) = seed.iter().map(|r| &r.zone).find(|z| secondary_zones.contains(z)) {
            anyhow::bail!("zone {zone} is in the records file and has a [[primary]]: it is one or the other");
        }
        for zone in self.modes.keys() {
            let zone = crate::zone::fqdn(&zone.to_ascii_lowercase());
            if !seed.iter().any(|r| r.zone == zone) && !secondary_zones.contains(&zone) {
                anyhow::bail!(
                    "{}: a mode is given for a zone that has no records",
                    self.field(format!("modes.\"{zone}\""))
                );
            }
        }
        let records = newest(seed, held, &secondary_zones);
        let settings = Settings {
            prefixes: self.prefixes().map_err(|e| anyhow::anyhow!(e))?,
            modes: self.modes.clone(),
            keys: self.keys()?,
            secondaries: Vec::new(),
            update_scopes: self.update_scopes()?,
            primaries,
            expired: Arc::default(),
            state_file: self.state_file(),
        };
        let settings = Settings { secondaries: self.secondaries(&settings.keys)?, ..settings };
        Served::build(records, Arc::new(settings))
    }
}

fn read_records(path: &Path) -> anyhow::Result<Vec<DnsRecord>> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let (records, _) = lct_core::stream::read_kind::<DnsRecord>(io::BufReader::new(file))
        .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    Ok(records)
}

/// Per zone of `seed`: its records, or `held`'s if their serial is newer (RFC 1982); and
/// the secondary zones `held` has (the last copy transferred).
fn newest(seed: Vec<DnsRecord>, held: &[DnsRecord], secondary_zones: &[String]) -> Vec<DnsRecord> {
    let serial = crate::wire::serial_of;
    let zones: std::collections::BTreeSet<String> = seed.iter().map(|r| r.zone.clone()).collect();
    let mut out = Vec::with_capacity(seed.len());
    for zone in &zones {
        let keep_held = match (serial(held, zone), serial(&seed, zone)) {
            (Some(h), Some(s)) if (h.wrapping_sub(s) as i32) > 0 => {
                tracing::info!("zone {zone}: serving serial {h} (updated) over the records file's {s}");
                true
            }
            _ => false,
        };
        let from = if keep_held { held } else { &seed };
        out.extend(from.iter().filter(|r| &r.zone == zone).cloned());
    }
    out.extend(held.iter().filter(|r| secondary_zones.contains(&r.zone)).cloned());
    out
}

/// What a running server needs besides the zones.
pub struct Settings {
    pub prefixes: Vec<Prefix>,
    pub modes: BTreeMap<String, crate::server::ZoneMode>,
    pub keys: Keys,
    pub secondaries: Vec<Secondary>,
    /// Limits of update keys given in `[[update]]`.
    pub update_scopes: Vec<UpdateScope>,
    /// Zones served as a secondary.
    pub primaries: Vec<Primary>,
    /// Secondary zones past their SOA expire time without a refresh: SERVFAIL.
    pub expired: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    pub state_file: PathBuf,
}

/// What is being served: the records and the answer tables made of them.
pub struct Served {
    /// Shared: a secondary serves a transferred zone's tables first and its records' text
    /// a moment later, without copying the other zones' records in between.
    pub records: Arc<Vec<DnsRecord>>,
    pub answers: Arc<Answers>,
    pub settings: Arc<Settings>,
    /// A zone whose new tables serve while its records' text is still being made (a
    /// secondary's full transfer): not transferred onwards until the text is in.
    pub settling: Option<String>,
}

impl Served {
    pub fn build(records: Vec<DnsRecord>, settings: Arc<Settings>) -> anyhow::Result<Served> {
        let answers = Served::answers(&records, &settings)?;
        Ok(Served { records: Arc::new(records), answers: Arc::new(answers), settings, settling: None })
    }

    /// [`Served::build`] and [`Served::persist`] at once, on two cores: the file's text is
    /// made while the tables are built, and written only once they are (a zone that cannot
    /// be served is not kept).
    pub fn build_and_persist(records: Vec<DnsRecord>, settings: Arc<Settings>) -> anyhow::Result<Served> {
        let (answers, text) = std::thread::scope(|scope| {
            let text = scope.spawn(|| records_text(&records));
            (Served::answers(&records, &settings), text.join().expect("writing JSON does not panic"))
        });
        let served = Served { records: Arc::new(records), answers: Arc::new(answers?), settings, settling: None };
        served.keep(&text?)?;
        Ok(served)
    }

    fn answers(records: &[DnsRecord], settings: &Settings) -> anyhow::Result<Answers> {
        let answers = Answers::new(records, &|zone| crate::server::mode_of(&settings.modes, zone))?;
        Ok(Served::with_expiry(answers, settings))
    }

    /// `answers` with the secondary zones whose copy expired marked (SERVFAIL).
    pub fn with_expiry(mut answers: Answers, settings: &Settings) -> Answers {
        answers.expire(settings.expired.lock().expect("not poisoned").iter().map(String::as_str));
        answers
    }

    /// Whether a client at `ip` sees the internal view.
    pub fn is_internal(&self, ip: std::net::IpAddr) -> bool {
        self.settings.prefixes.iter().any(|p| p.contains(ip))
    }

    /// Keeps the zones in the state directory (atomically: the old file or the new one).
    pub fn persist(&self) -> anyhow::Result<()> {
        self.keep(&records_text(&self.records)?)
    }

    fn keep(&self, text: &[u8]) -> anyhow::Result<()> {
        let path = &self.settings.state_file;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        }
        lct_core::fsutil::atomic_write(path, text, 0o640).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// Records as the state file holds them: JSON lines.
fn records_text(records: &[DnsRecord]) -> anyhow::Result<Vec<u8>> {
    let mut text = Vec::with_capacity(records.len() * 120);
    {
        let mut w = lct_core::stream::Writer::new(&mut text);
        for r in records {
            w.write(r)?;
        }
        w.flush()?;
    }
    Ok(text)
}

/// What is being served, swapped whole on reload or update: a query in flight keeps what it
/// started with, the next one gets the new zones.
#[derive(Clone)]
pub struct Live {
    served: Arc<RwLock<Arc<Served>>>,
    /// Recent changes per zone, for IXFR.
    journal: Arc<std::sync::Mutex<Journal>>,
    /// Per secondary zone: wakes its refresh (a NOTIFY came).
    refreshers: Arc<std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Notify>>>>,
    /// Bumped on every swap, so a hot loop can keep its `Arc` until it changes.
    generation: Arc<AtomicU64>,
    /// Held by whoever changes the zones (an update, a reload), so each starts from the last.
    changing: Arc<tokio::sync::Mutex<()>>,
}

impl Live {
    pub fn new(served: Served) -> Live {
        // The journal of the last run, for what it still leads to: IXFR across a restart.
        let journal = Journal::load(&journal_file(&served.settings.state_file), &served.records);
        Live {
            served: Arc::new(RwLock::new(Arc::new(served))),
            journal: Arc::new(std::sync::Mutex::new(journal)),
            refreshers: Arc::default(),
            generation: Arc::new(AtomicU64::new(0)),
            changing: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Serves `served` from now on; zones whose serial changed go in the journal, and their
    /// secondaries are notified.
    pub fn swap(&self, served: Served) {
        self.swap_known(served, None)
    }

    /// Serves `served`'s tables at once while its records are still the last swap's (a
    /// secondary's full transfer, its `settling` zone's text still being made): nothing is
    /// journaled, notified or kept; the [`Live::swap_known`] that brings the records does.
    pub fn swap_tables(&self, served: Served) {
        *self.served.write().expect("not poisoned") = Arc::new(served);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// [`Live::swap`] when the steps of the changed zone are known (the journal need not
    /// compare the whole zone).
    pub fn swap_known(&self, served: Served, known: Option<Known>) {
        let old = self.current();
        let changed = {
            let mut journal = self.journal.lock().expect("not poisoned");
            let changed = journal.record(&old.records, &served.records, known);
            if !changed.is_empty() {
                let path = journal_file(&served.settings.state_file);
                if let Err(e) = journal.save(&path) {
                    tracing::warn!(
                        "{}: the journal is not kept ({e}); after a restart, secondaries get AXFR",
                        path.display()
                    );
                }
            }
            changed
        };
        let served = Arc::new(served);
        *self.served.write().expect("not poisoned") = served.clone();
        self.generation.fetch_add(1, Ordering::Release);
        crate::notify::zones_changed(&served, &changed);
    }

    /// What wakes `zone`'s refresh.
    pub fn refresher(&self, zone: &str) -> Arc<tokio::sync::Notify> {
        self.refreshers.lock().expect("not poisoned").entry(zone.to_string()).or_default().clone()
    }

    /// The changes of `zone` from `serial` to the current one, oldest first, if the journal
    /// reaches back that far.
    pub fn changes_since(&self, zone: &str, serial: u32) -> Option<Vec<Change>> {
        self.journal.lock().expect("not poisoned").since(zone, serial)
    }

    pub fn current(&self) -> Arc<Served> {
        self.served.read().expect("not poisoned").clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The right to change the zones, one change at a time.
    pub async fn update_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changing.lock().await
    }
}

/// `count` UDP sockets bound to one address with SO_REUSEPORT: the kernel spreads queries
/// over them, and so over their threads. Blocking: each has a thread that waits in
/// `recvmmsg`.
pub fn udp_sockets(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    (0..count.max(1))
        .map(|_| {
            let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
            let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
            s.set_reuse_port(true)?;
            if addr.is_ipv6() {
                s.set_only_v6(true)?;
            }
            s.bind(&addr.into())?;
            Ok(s.into())
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

/// Where the journal is kept: beside the zones in the state directory.
fn journal_file(state_file: &Path) -> PathBuf {
    state_file.with_extension("journal.json")
}

/// One change of a zone: from one serial to the next, the records taken out and put in
/// (SOA aside).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Change {
    pub from: u32,
    pub to: u32,
    pub removed: Vec<DnsRecord>,
    pub added: Vec<DnsRecord>,
}

/// The last changes of each zone, kept in the state directory after every change (as
/// Knot's journal is), so an IXFR reaches across a restart.
#[derive(Default, serde::Serialize, Deserialize)]
pub struct Journal {
    zones: BTreeMap<String, std::collections::VecDeque<Change>>,
}

/// The steps a zone went through, as the code that changed it knows them.
#[derive(Debug, Clone)]
pub struct Known {
    pub zone: String,
    pub steps: Vec<Change>,
}

/// One zone's journal, oldest change first.
trait Trim {
    /// At most so many changes, and so many records in all (it is written after every
    /// change).
    fn trim(&mut self);
}

impl Trim for std::collections::VecDeque<Change> {
    fn trim(&mut self) {
        let size = |j: &std::collections::VecDeque<Change>| -> usize {
            j.iter().map(|c| c.removed.len() + c.added.len()).sum()
        };
        while self.len() > JOURNAL_CHANGES || (self.len() > 1 && size(self) > JOURNAL_RECORDS) {
            self.pop_front();
        }
    }
}

/// Changes kept per zone, and records (per change, and in all) beyond which a full transfer
/// is as good.
const JOURNAL_CHANGES: usize = 100;
const JOURNAL_RECORDS: usize = 100_000;

impl Journal {
    /// Notes how every zone whose serial differs between `old` and `new` changed; returns
    /// those zones. A zone whose steps are `known` (an update, an incremental transfer) is
    /// recorded as they say; the others are compared whole.
    pub fn record<'a>(&mut self, old: &'a [DnsRecord], new: &'a [DnsRecord], mut known: Option<Known>) -> Vec<String> {
        use crate::wire::serial_of;
        use crate::zone::RecordType;
        let zones: std::collections::BTreeSet<&str> = new.iter().map(|r| r.zone.as_str()).collect();
        let mut changed = Vec::new();
        for zone in zones {
            let (Some(from), Some(to)) = (serial_of(old, zone), serial_of(new, zone)) else { continue };
            if from == to {
                continue;
            }
            changed.push(zone.to_string());
            if let Some(Known { steps, .. }) = known.take_if(|k| k.zone == zone) {
                let journal = self.zones.entry(zone.to_string()).or_default();
                for step in steps {
                    if step.removed.len() + step.added.len() > JOURNAL_RECORDS {
                        journal.clear();
                        continue;
                    }
                    journal.push_back(step);
                }
                journal.trim();
                continue;
            }
            // By reference: a zone of 300,000 records is compared without copying it.
            let of = |records: &'a [DnsRecord]| {
                let mut set = std::collections::HashSet::with_capacity_and_hasher(
                    records.len(),
                    crate::keyed::TableState::default(),
                );
                set.extend(records.iter().filter(|r| r.zone == zone && r.rtype != RecordType::SOA));
                set
            };
            let (before, after) = (of(old), of(new));
            let removed: Vec<DnsRecord> = before.difference(&after).map(|r| (*r).clone()).collect();
            let added: Vec<DnsRecord> = after.difference(&before).map(|r| (*r).clone()).collect();
            let journal = self.zones.entry(zone.to_string()).or_default();
            if removed.len() + added.len() > JOURNAL_RECORDS {
                journal.clear(); // a change this big: a full transfer is no worse
                continue;
            }
            journal.push_back(Change { from, to, removed, added });
            journal.trim();
        }
        changed
    }

    /// The journal kept at `path`, each zone's chain only if it ends at the serial served
    /// now (a records file made afresh starts a new history); empty if there is none.
    pub fn load(path: &Path, records: &[DnsRecord]) -> Journal {
        let Some(mut journal) = std::fs::read(path).ok().and_then(|b| serde_json::from_slice::<Journal>(&b).ok())
        else {
            return Journal::default();
        };
        journal.zones.retain(|zone, changes| {
            let current = crate::wire::serial_of(records, zone);
            changes.back().is_some_and(|c| Some(c.to) == current)
                && changes.iter().zip(changes.iter().skip(1)).all(|(a, b)| a.to == b.from)
        });
        journal
    }

    /// Writes the journal to `path` (atomically: the old one or the new one).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        lct_core::fsutil::atomic_write(path, &serde_json::to_vec(self)?, 0o640)?;
        Ok(())
    }

    /// The chain of changes from `serial` to the zone's latest, if the journal holds it.
    pub fn since(&self, zone: &str, serial: u32) -> Option<Vec<Change>> {
        let journal = self.zones.get(zone)?;
        let start = journal.iter().position(|c| c.from == serial)?;
        let chain: Vec<Change> = journal.iter().skip(start).cloned().collect();
        chain.windows(2).all(|w| w[0].to == w[1].from).then_some(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::RecordType;
    use crate::zone::fixtures::{rec, zone};

    fn with_serial(records: &[DnsRecord], serial: u32) -> Vec<DnsRecord> {
        let mut out = records.to_vec();
        let soa = out.iter_mut().find(|r| r.rtype == RecordType::SOA).unwrap();
        soa.data = format!("ns1.lct.internal. hostmaster.lct.internal. {serial} 3600 600 1209600 300");
        out
    }

    #[test]
    fn the_journal_chains_changes_and_forgets_what_it_cannot_chain() {
        let mut journal = Journal::default();
        let v7 = zone();
        let mut v8 = with_serial(&v7, 8);
        v8.push(rec("b.zk.lct.internal.", RecordType::A, "192.168.128.2"));
        let mut v9 = with_serial(&v8, 9);
        v9.retain(|r| r.data != "203.0.113.1");
        assert_eq!(journal.record(&v7, &v8, None), ["lct.internal."]);
        assert_eq!(journal.record(&v8, &v9, None), ["lct.internal."]);
        assert!(journal.record(&v9, &v9, None).is_empty(), "same serial: no change");
        let chain = journal.since("lct.internal.", 7).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!((chain[0].from, chain[0].to, chain[1].from, chain[1].to), (7, 8, 8, 9));
        assert_eq!(chain[0].added.len(), 1);
        assert!(chain[0].removed.is_empty());
        assert_eq!(chain[1].removed[0].data, "203.0.113.1");
        assert_eq!(journal.since("lct.internal.", 8).unwrap().len(), 1);
        assert!(journal.since("lct.internal.", 6).is_none(), "before the journal: a full transfer");
        assert!(journal.since("other.", 7).is_none());
        // Kept and read back: the chain serves IXFR after a restart while it leads to the
        // serial served; a zone started afresh (another serial) drops it.
        let path = std::env::temp_dir().join(format!("lct-dns-journal-{}.json", lct_core::random::hex(8).unwrap()));
        journal.save(&path).unwrap();
        let back = Journal::load(&path, &v9);
        assert_eq!(back.since("lct.internal.", 7).unwrap().len(), 2);
        let afresh = Journal::load(&path, &with_serial(&v9, 1000));
        assert!(afresh.since("lct.internal.", 7).is_none());
        std::fs::remove_file(&path).unwrap();
    }
}
