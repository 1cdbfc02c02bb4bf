//! Zone modes (who a zone answers), and, for the tests, hickory's catalog of in-memory
//! zones per view: the reference the fast path's answers are compared with. (Serving goes
//! through [`crate::fast`] alone: hickory's in-memory zone is quadratic in an RRset's size
//! when loading, 27 s for a 50,000-node zone with 5,000-member groups, and linear per query
//! for names it does not have; see docs/benchmarks.md.)

use std::collections::BTreeMap;

use crate::zone::{View, fqdn};
pub use lct_core::prefix::Prefix;

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

#[cfg(test)]
pub(crate) mod reference {
    //! hickory's catalogs, one per view: what the fast path is compared with.

    use std::collections::{BTreeMap, BTreeSet};
    use std::net::IpAddr;
    use std::sync::Arc;

    use hickory_proto::rr::{LowerName, Name};
    use hickory_proto::serialize::txt::Parser;
    use hickory_server::net::runtime::Time;
    use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
    use hickory_server::store::in_memory::InMemoryZoneHandler;
    use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

    use super::{Prefix, ServeError, ZoneMode, mode_of};
    use crate::zone::{DnsRecord, View, master_file};

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
            // (Modes of zones that have no records are refused when the configuration is read:
            // a secondary zone not transferred yet has none and keeps its mode.)
            let zones: BTreeSet<&str> = records.iter().map(|r| r.zone.as_str()).collect();
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
}
