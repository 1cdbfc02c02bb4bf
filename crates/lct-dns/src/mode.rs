//! Zone modes: who a zone answers (split-horizon, inside only, or the public answers to
//! everyone).

use std::collections::BTreeMap;

use crate::zone::fqdn;

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
