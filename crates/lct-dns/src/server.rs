//! The authoritative server: hickory's catalog of in-memory zones, one per view, and a
//! request handler that picks the view by the client's address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name};
use hickory_proto::serialize::txt::Parser;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

use crate::zone::{DnsRecord, View, fqdn, master_file};

/// An address prefix (`192.168.128.0/17`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?} is not an address prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = if l.is_empty() {
            max
        } else {
            l.parse().ok().filter(|l| *l <= max).ok_or(format!("{s:?}: bad length"))?
        };
        Ok(Prefix { addr, len })
    }
}

impl Prefix {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = if self.len == 0 { 0 } else { u32::MAX << (32 - self.len) };
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = if self.len == 0 { 0 } else { u128::MAX << (128 - self.len) };
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("zone {zone} ({view:?} view): {message}")]
    Zone { zone: String, view: View, message: String },
}

/// Who a zone answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneMode {
    /// Private addresses inside, public ones outside (the default).
    Split,
    /// Inside only: clients outside the internal prefixes are refused.
    Private,
    /// The public answers, to everyone.
    Public,
}

impl std::str::FromStr for ZoneMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "split" => Ok(ZoneMode::Split),
            "private" => Ok(ZoneMode::Private),
            "public" => Ok(ZoneMode::Public),
            _ => Err(format!("{s:?} is not a zone mode (split, private, public)")),
        }
    }
}

/// A zone's mode: as given, else split (private for reverse zones).
pub fn mode_of(modes: &BTreeMap<String, ZoneMode>, zone: &str) -> ZoneMode {
    let default = if zone.ends_with(".in-addr.arpa.") { ZoneMode::Private } else { ZoneMode::Split };
    modes.iter().find(|(z, _)| fqdn(z) == zone).map_or(default, |(_, m)| *m)
}

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
        let zones: BTreeSet<&str> = records.iter().map(|r| r.zone.as_str()).collect();
        for zone in modes.keys() {
            if !zones.contains(fqdn(zone).as_str()) {
                return Err(ServeError::Zone {
                    zone: zone.clone(),
                    view: View::Both,
                    message: "a mode is given for a zone that has no records".into(),
                });
            }
        }
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
    use super::*;

    #[test]
    fn prefixes() {
        let p: Prefix = "192.168.128.0/17".parse().unwrap();
        assert!(p.contains("192.168.200.1".parse().unwrap()));
        assert!(!p.contains("192.168.1.1".parse().unwrap()));
        assert!(p.contains("::ffff:192.168.128.9".parse().unwrap()), "v4-mapped clients count");
        let p6: Prefix = "fd00::/8".parse().unwrap();
        assert!(p6.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
    }
}
