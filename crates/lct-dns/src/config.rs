//! The configuration file of `lct-dns serve --config` (TOML), and what is served made of it:
//! the records file, the zones held in the state directory, and the settings (keys read,
//! prefixes parsed), all checked before anything is swapped in.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lct_core::prefix::{HostBits, Prefix};
use serde::Deserialize;

use crate::served::Served;
use crate::settings::{Primary, Secondary, Settings, TransferView, UpdateScope};
use crate::tsig::{Key, Keys};
use crate::zone::DnsRecord;

/// `lct-dns serve --config FILE` (TOML):
///
/// ```toml
/// records = "/etc/lct/zones.jsonl"           # dns-record records (lct-dns zone)
/// listen = ["192.168.128.53:53", "203.0.113.53:53"]
/// internal = ["192.168.128.0/17"]            # clients that see the internal view
/// public = ["203.0.113.53:53"]               # listen addresses on the public side:
///                                            # the external view, whatever the source
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
/// [[secondary]]                              # a secondary of one region's view
/// key = "xfr-local-b.key"                    # this key transfers region local:b's view only
/// view = "internal"                          # (a region's view is an inside view)
/// region = "local:b"                         # one of the [[region]] networks
///
/// [[region]]                                 # a view keyed by the asker's region
/// network = "local:b"                        # PROVIDER:REGION (lct-dns zone --region)
/// records = "/etc/lct/zones-local-b.jsonl"   # the zones as that region sees them
/// clients = ["100.64.0.7/32"]                # its askers: its members' mesh addresses
///
/// [[primary]]                                # a zone this server is a secondary for
/// zone = "example.internal"
/// address = "192.168.128.60:53"              # its primary (lct-dns, BIND, Knot)
/// key = "xfr-example.key"                    # TSIG: transfers, and NOTIFY from it
/// dnssec_validation = "on"                   # a signed copy is checked before it serves [on]
/// ds = ["12345 13 2 3F1A…"]                  # its DS: a key change must be signed by one [none]
///
/// [rate_limit]                               # UDP answers to the outside (RRL)
/// responses_per_second = 20                  # per /24 (/56) and answer; 0: off
/// slip = 2                                   # every 2nd limited answer sent truncated
/// table_size = 65536                         # buckets, 24 bytes each
///
/// [modes]                                    # per zone: split (default), private, public
/// "lct.internal" = "split"
///
/// [stats]                                    # the statistics listener (off without it)
/// listen = "127.0.0.1:9153"                  # GET /metrics (Prometheus), GET /stats (JSON)
/// allow_public = false                       # true: a public or wildcard address too
/// allow = ["10.0.0.0/8"]                     # only these clients [any that reach it]
///
/// [dnssec]                                   # zones signed here: on (ECDSA P-256),
/// "lct.internal" = "on"                      # ed25519, off [off]
///
/// [dnssec_timers]                            # seconds [Knot's defaults]
/// signature_lifetime = 1209600               # 14 days
///
/// [dnssec_policy]                            # keys; seconds [Knot's defaults]
/// split = true                               # KSK and ZSK; false: one CSK
/// zsk_lifetime = 2592000                     # 30 days; 0: only by `lct-dns roll`
/// ksk_lifetime = 0                           # manual (the parent takes part)
/// propagation_delay = 3600
/// dnskey_ttl = 3600                          # [the SOA's TTL]
/// parent_ds_ttl = 86400                      # the parent's DS TTL
/// parent = ["198.51.100.1:53"]               # asked for the new DS [none: ds-seen]
/// parent_check_interval = 3600
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub records: PathBuf,
    pub listen: Vec<SocketAddr>,
    #[serde(default)]
    pub internal: Vec<String>,
    /// Listen addresses on the public side (each one of `listen`): every client there gets
    /// the external view, whatever its source address says (a forged private or mesh
    /// source gets nothing more than the outside does).
    #[serde(default)]
    pub public: Vec<SocketAddr>,
    /// Views keyed by the asker's region: a client in a region's `clients` (its members'
    /// mesh addresses) is answered from that region's records, as the internal view.
    #[serde(default, rename = "region")]
    pub regions: Vec<crate::regions::RegionConfig>,
    #[serde(default)]
    pub udp_sockets: Option<usize>,
    /// Per zone: split (default), private (inside only) or public (public answers to all).
    #[serde(default)]
    pub modes: BTreeMap<String, crate::mode::ZoneMode>,
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
    /// The statistics listener (`[stats]`): off when not given.
    #[serde(default)]
    pub stats: Option<crate::scrape::StatsConfig>,
    /// Per zone of the records file: signed with DNSSEC here (on: ECDSA P-256; ed25519;
    /// off, the default).
    #[serde(default)]
    pub dnssec: BTreeMap<String, DnssecChoice>,
    /// Signature timers (tests make them short).
    #[serde(default)]
    pub dnssec_timers: DnssecTimers,
    /// Key policy: roles, lifetimes, the waits of a rollover.
    #[serde(default)]
    pub dnssec_policy: DnssecPolicy,
    /// Where relative key paths are resolved when no credentials directory is given.
    #[serde(skip)]
    pub base: Option<PathBuf>,
    /// The file this was read from, named in errors about its fields.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// A zone's `dnssec` setting.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DnssecChoice {
    /// ECDSA P-256 with SHA-256 (algorithm 13).
    On,
    /// Ed25519 (algorithm 15).
    Ed25519,
    Off,
}

/// `[dnssec_timers]`: seconds; unset, Knot's defaults.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DnssecTimers {
    pub signature_lifetime: Option<u32>,
    /// Made again this long before they expire [a tenth of the lifetime and two hours].
    pub signature_refresh: Option<u32>,
}

/// `[dnssec_policy]`: seconds; unset, Knot's defaults ([`crate::keyroll::Policy`]).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DnssecPolicy {
    /// A KSK and a ZSK (Knot's default), or one CSK; for a zone's first keys only.
    pub split: Option<bool>,
    pub zsk_lifetime: Option<u64>,
    pub ksk_lifetime: Option<u64>,
    pub propagation_delay: Option<u64>,
    pub dnskey_ttl: Option<u32>,
    pub parent_ds_ttl: Option<u64>,
    /// The parent zone's servers, asked for the DS during a KSK submission (every one must
    /// have it); none: the operator says so with `lct-dns ds-seen`.
    #[serde(default)]
    pub parent: Vec<SocketAddr>,
    pub parent_check_interval: Option<u64>,
}

/// The longest signature lifetime taken: 90 days. Validators compare signature times in
/// serial arithmetic (RFC 4034 3.1.5), so an expiration 2^31 s or more ahead reads as past;
/// and a signature that lives long is a stolen one that does too.
pub const SIGNATURE_LIFETIME_MAX: u32 = 90 * 86_400;

impl DnssecTimers {
    /// Each timer within its bounds, an error naming the field otherwise.
    pub fn check(&self) -> Result<(), String> {
        if let Some(lifetime) = self.signature_lifetime
            && lifetime > SIGNATURE_LIFETIME_MAX
        {
            return Err(format!(
                "dnssec_timers.signature_lifetime: {lifetime} s is more than 90 days ({SIGNATURE_LIFETIME_MAX} s)"
            ));
        }
        if let Some(refresh) = self.signature_refresh
            && refresh >= SIGNATURE_LIFETIME_MAX
        {
            return Err(format!(
                "dnssec_timers.signature_refresh: {refresh} s is not shorter than the longest lifetime (90 days)"
            ));
        }
        Ok(())
    }
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
    /// `PROVIDER:REGION`: the key transfers that `[[region]]`'s view instead of this
    /// server's own (a secondary serving that region's askers).
    #[serde(default)]
    pub region: Option<String>,
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
    /// Whether each transferred version of a signed zone is validated before it serves
    /// ([`crate::validate`]) [on].
    #[serde(default)]
    pub dnssec_validation: OnOff,
    /// The zone's DS records (`"TAG ALGORITHM DIGEST-TYPE HEX"`, as a parent serves them):
    /// a new DNSKEY set signed by a key one names is taken, as one signed by a key of the
    /// copy served now is [none: the first copy is taken on its own signatures].
    #[serde(default)]
    pub ds: Vec<String>,
}

/// A setting that is on or off (`"on"`, `"off"`, as Knot writes them).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnOff {
    #[default]
    On,
    Off,
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
        config.check_regions().map_err(|message| ConfigError::Invalid { path: shown.clone(), message })?;
        if let Some(stats) = &config.stats {
            stats.check().map_err(|message| ConfigError::Invalid { path: shown.clone(), message })?;
        }
        config.dnssec_timers.check().map_err(|message| ConfigError::Invalid { path: shown.clone(), message })?;
        config.base = path.parent().map(Path::to_path_buf);
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    pub fn prefixes(&self) -> Result<Vec<Prefix>, String> {
        // Client selection: `192.168.128.7/17` means its network, as BIND's ACLs read it.
        self.internal.iter().map(|p| Prefix::parse(p, HostBits::Clear).map_err(|e| format!("internal: {e}"))).collect()
    }

    /// `public` names listen addresses; each region's network and clients parse.
    pub fn check_regions(&self) -> Result<(), String> {
        if let Some(a) = self.public.iter().find(|a| !self.listen.contains(a)) {
            return Err(format!("public: {a} is not one of the listen addresses"));
        }
        // A wildcard socket takes the public side's queries too, where a forged mesh source
        // would be given its region's view: regions are served on named addresses only.
        let wildcard = self.listen.iter().find(|a| a.ip().is_unspecified() && !self.public.contains(a));
        if let (Some(a), false) = (wildcard, self.regions.is_empty()) {
            return Err(format!(
                "listen: {a} is a wildcard address, which the public side reaches too: with [[region]], \
                 listen on the private and mesh addresses by name (or name {a} in `public`)"
            ));
        }
        for (i, r) in self.regions.iter().enumerate() {
            r.network.parse::<lct_core::record::PrivateNetwork>().map_err(|e| format!("region[{i}].network: {e}"))?;
            prefixes_of(&r.clients, &format!("region[{i}].clients")).map_err(|e| e.to_string())?;
        }
        // A region's secondary takes that region's view, which is an inside one; a region
        // this server does not serve would leave it nothing to transfer (a typo, or a view
        // dropped without its secondary: both refused at start and reload).
        for (i, s) in self.secondaries.iter().enumerate() {
            let Some(network) = &s.region else { continue };
            if s.view != TransferView::Internal {
                return Err(format!("secondary[{i}].view: a region's secondary takes its internal view, not external"));
            }
            if !self.regions.iter().any(|r| &r.network == network) {
                return Err(format!("secondary[{i}].region: {network} is not one of the [[region]] networks"));
            }
        }
        Ok(())
    }

    /// A configuration reloaded while `running`'s sockets serve on: their listen and public
    /// addresses are what is bound (they change only on restart), checked again with the new
    /// regions (a reload cannot give a wildcard socket regions' views).
    pub fn for_reload(mut self, running: &Config) -> Result<Config, String> {
        if (&self.listen, &self.public) != (&running.listen, &running.public) {
            tracing::warn!("reload: listen and public change only on restart");
        }
        (self.listen, self.public) = (running.listen.clone(), running.public.clone());
        self.check_regions()?;
        Ok(self)
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
            let validate = p.dnssec_validation == OnOff::On;
            let ds = p.ds.iter().enumerate().map(|(j, text)| {
                crate::validate::parse_ds(text)
                    .map_err(|e| anyhow::anyhow!("{}: {text:?}: {e}", self.field(format!("primary[{i}].ds[{j}]"))))
            });
            let ds = ds.collect::<anyhow::Result<Vec<_>>>()?;
            out.push(Primary { zone, address: p.address, key: self.key_file(&p.key)?, validate, ds });
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
            let region = s.region.clone();
            out.push(Secondary { key, view: s.view, notify: s.notify.clone(), allow, zones, region });
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
        let seed = crate::zone::read_records(&self.records)?;
        // DNSSEC records come from a signer (this server's, or a primary's by transfer),
        // never from the records file: a signature written there would be stale at once.
        if let Some(r) = seed.iter().find(|r| crate::zone::is_dnssec(r.rtype)) {
            anyhow::bail!(
                "{}: {} {} in zone {}: DNSSEC records are made by the signer (`dnssec` in the configuration), not kept in the records file",
                self.records.display(),
                r.name,
                r.rtype,
                r.zone
            );
        }
        let from_state;
        let held = match held {
            Some(h) => h,
            None => {
                let file = self.state_file();
                from_state =
                    if file.exists() { with_update_log(&file, crate::zone::read_records(&file)?)? } else { Vec::new() };
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
        let dnssec = self.dnssec(&records, &secondary_zones)?;
        // Keys stepped at this start or reload: a new serial, so secondaries take them.
        let records = crate::keyserial::with_key_serials(&dnssec, records, crate::tsig::now())?;
        let field = |name: String| self.field(name);
        let regions =
            crate::regions::load(&self.regions, &self.modes, &records, &dnssec.zones(), &secondary_zones, &field)?;
        let settings = Settings {
            regions: Arc::new(regions),
            prefixes: self.prefixes().map_err(|e| anyhow::anyhow!(e))?,
            modes: self.modes.clone(),
            keys: self.keys()?,
            secondaries: Vec::new(),
            update_scopes: self.update_scopes()?,
            primaries,
            expired: Arc::default(),
            state_file: self.state_file(),
            dnssec: Arc::new(dnssec),
        };
        let settings = Settings { secondaries: self.secondaries(&settings.keys)?, ..settings };
        Served::build(records, Arc::new(settings))
    }
}

/// The state file's `records` with the updates logged since it was written whole
/// ([`crate::updatelog`]); a line torn by a crash is reported and the version before it held.
fn with_update_log(state_file: &Path, mut records: Vec<DnsRecord>) -> anyhow::Result<Vec<DnsRecord>> {
    let log = crate::updatelog::update_log_file(state_file);
    let done = crate::updatelog::replay(&log, &mut records)?;
    if done.applied > 0 {
        tracing::info!("{}: {} updates replayed onto {}", log.display(), done.applied, state_file.display());
    }
    if !done.gaps.is_empty() {
        // Kept aside before the fold at start removes the log: what was lost can be read.
        let kept = state_file.with_extension("updates-unapplied.jsonl");
        let copied = match std::fs::copy(&log, &kept) {
            Ok(_) => format!("the log is kept as {}", kept.display()),
            Err(e) => format!("the log could not be kept as {}: {e}", kept.display()),
        };
        tracing::error!(
            "{} acknowledged updates cannot be applied (the version they follow is not in the state file; {copied}): {}",
            done.gaps.len(),
            done.gaps.join("; ")
        );
    }
    if let Some(torn) = done.torn {
        tracing::warn!(
            "{torn}: an update cut short by a crash (never answered NOERROR) is dropped; the version before it serves"
        );
    }
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
        // A zone served as primary holds no DNSSEC records of its own (a copy held from
        // when it was a secondary does): its signer, if any, makes them.
        out.extend(from.iter().filter(|r| &r.zone == zone && !crate::zone::is_dnssec(r.rtype)).cloned());
    }
    out.extend(held.iter().filter(|r| secondary_zones.contains(&r.zone)).cloned());
    out
}

#[path = "config_dnssec.rs"]
mod dnssec;

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
