//! The names records carry, each checked where it is made: host-name labels (node, group,
//! cluster and volume names) and domain names; and why a value was refused.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Why a name or address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("{0:?} is not a valid host name label: {1}")]
    Label(String, &'static str),
    #[error("{0:?} is not a valid domain name: {1}")]
    Domain(String, String),
    #[error("{0:?} is not a valid port spec (expected PORT[-PORT][/tcp|/udp], e.g. 2181/tcp): {1}")]
    Port(String, &'static str),
}

/// A name that is valid as a single DNS/host-name label (RFC 1123): 1 to 63 characters of
/// lower-case letters, digits and hyphens, not starting or ending with a hyphen.
///
/// Node, group and cluster names are all labels, because they become host names, DNS
/// labels, namespace names and firewall set names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(pub(super) String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn check_label(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("it is empty");
    }
    if s.len() > 63 {
        return Err("it is longer than 63 characters");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("it starts or ends with a hyphen");
    }
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("it has upper-case letters (use lower case)");
    }
    if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("only a-z, 0-9 and '-' are allowed");
    }
    Ok(())
}

impl TryFrom<String> for Name {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match check_label(&s) {
            Ok(()) => Ok(Name(s)),
            Err(why) => Err(InvalidValue::Label(s, why)),
        }
    }
}

impl FromStr for Name {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::try_from(s.to_string())
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// A fully qualified domain name without the trailing dot, e.g. `zk.example.internal`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

impl DomainName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DomainName {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let trimmed = s.strip_suffix('.').unwrap_or(&s);
        if trimmed.len() > 253 {
            return Err(InvalidValue::Domain(s, "it is longer than 253 characters".into()));
        }
        for label in trimmed.split('.') {
            if let Err(why) = check_label(label) {
                return Err(InvalidValue::Domain(s.clone(), format!("label {label:?}: {why}")));
            }
        }
        Ok(DomainName(trimmed.to_string()))
    }
}

impl FromStr for DomainName {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DomainName::try_from(s.to_string())
    }
}

impl From<DomainName> for String {
    fn from(n: DomainName) -> String {
        n.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const LABEL: &str = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";

impl JsonSchema for Name {
    fn schema_name() -> Cow<'static, str> {
        "label".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An RFC 1123 host-name label: lower-case letters, digits and hyphens, 1 to 63 characters, no hyphen at either end.",
            "type": "string",
            "pattern": format!("^{LABEL}$"),
        })
    }
}

impl JsonSchema for DomainName {
    fn schema_name() -> Cow<'static, str> {
        "domain".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A domain name of labels; a trailing dot is dropped.",
            "type": "string",
            "maxLength": 254,
            "pattern": format!("^({LABEL}\\.)*{LABEL}\\.?$"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!("zk-1".parse::<Name>().is_ok());
        assert!("a".parse::<Name>().is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"x".repeat(64)] {
            assert!(bad.parse::<Name>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn domains() {
        assert_eq!("zk.lct.internal.".parse::<DomainName>().unwrap().as_str(), "zk.lct.internal");
        assert!("zk..internal".parse::<DomainName>().is_err());
        assert!("zk_1.internal".parse::<DomainName>().is_err());
    }
}
