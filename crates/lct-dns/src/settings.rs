//! What a running server needs besides its zones, as it runs it (the configuration read,
//! keys loaded, prefixes parsed): who is inside, each zone's mode, and what each key may do
//! (update keys and their limits, secondaries and their views, primaries of the zones
//! followed).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use lct_core::prefix::Prefix;
use serde::Deserialize;

use crate::mode::ZoneMode;
use crate::tsig::{Key, Keys};

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

/// A zone served as a secondary, as the server runs it.
#[derive(Debug, Clone)]
pub struct Primary {
    /// Fully qualified, lower case.
    pub zone: String,
    pub address: SocketAddr,
    pub key: Key,
    /// A signed copy is validated before it serves (`dnssec_validation`).
    pub validate: bool,
    /// DS records' data (`ds`): a DNSKEY set signed by a key one names is trusted, as one
    /// signed by a key of the copy served now is ([`crate::validate::Anchors`]).
    pub ds: Vec<Vec<u8>>,
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
    /// `PROVIDER:REGION`: its key transfers that region's view (`[[region]]`), never this
    /// server's own records.
    pub region: Option<String>,
}

impl Secondary {
    pub fn serves(&self, zone: &str) -> bool {
        self.zones.is_empty() || self.zones.iter().any(|z| z == zone)
    }

    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|p| p.contains(ip))
    }
}

/// What a running server needs besides the zones.
pub struct Settings {
    pub prefixes: Vec<Prefix>,
    pub modes: BTreeMap<String, ZoneMode>,
    pub keys: Keys,
    pub secondaries: Vec<Secondary>,
    /// Limits of update keys given in `[[update]]`.
    pub update_scopes: Vec<UpdateScope>,
    /// Zones served as a secondary.
    pub primaries: Vec<Primary>,
    /// Secondary zones past their SOA expire time without a refresh: SERVFAIL.
    pub expired: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    pub state_file: PathBuf,
    /// The zones signed here, their keys and signatures (kept across changes).
    pub dnssec: Arc<crate::sign::Dnssec>,
    /// Views keyed by the asker's region (`[[region]]`): read from their records files at
    /// start and reload, kept as they are across updates of the zones.
    pub regions: Arc<crate::regions::RegionViews>,
}

#[cfg(test)]
impl Settings {
    /// Settings with nothing configured but where the state file goes (tests of one part).
    pub(crate) fn bare(state_file: PathBuf) -> Settings {
        Settings {
            prefixes: Vec::new(),
            modes: Default::default(),
            keys: Keys::new(Vec::new()),
            secondaries: Vec::new(),
            update_scopes: Vec::new(),
            primaries: Vec::new(),
            expired: Default::default(),
            state_file,
            dnssec: Default::default(),
            regions: Default::default(),
        }
    }
}
