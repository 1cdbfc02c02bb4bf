//! Ports and port ranges with their protocol (`2181/tcp`, `8000-8010/udp`, `22`), as
//! dependencies and firewall declarations name them.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::names::InvalidValue;

/// A port or port range with its protocol, written `2181/tcp`, `8000-8010/udp` or `22`
/// (TCP when no protocol is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortSpec {
    pub first: u16,
    pub last: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for PortSpec {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let bad = |why| InvalidValue::Port(s.clone(), why);
        let (ports, protocol) = match s.split_once('/') {
            None => (s.as_str(), Protocol::Tcp),
            Some((p, "tcp")) => (p, Protocol::Tcp),
            Some((p, "udp")) => (p, Protocol::Udp),
            Some(_) => return Err(bad("the protocol must be tcp or udp")),
        };
        let parse = |p: &str| p.parse::<u16>().ok().filter(|&n| n > 0);
        let (first, last) = match ports.split_once('-') {
            None => {
                let n = parse(ports).ok_or_else(|| bad("a port is a number from 1 to 65535"))?;
                (n, n)
            }
            Some((a, b)) => {
                let a = parse(a).ok_or_else(|| bad("a port is a number from 1 to 65535"))?;
                let b = parse(b).ok_or_else(|| bad("a port is a number from 1 to 65535"))?;
                if a > b {
                    return Err(bad("the range is reversed"));
                }
                (a, b)
            }
        };
        Ok(PortSpec { first, last, protocol })
    }
}

impl FromStr for PortSpec {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PortSpec::try_from(s.to_string())
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = self.protocol;
        if self.first == self.last {
            write!(f, "{}/{proto}", self.first)
        } else {
            write!(f, "{}-{}/{proto}", self.first, self.last)
        }
    }
}

impl From<PortSpec> for String {
    fn from(p: PortSpec) -> String {
        p.to_string()
    }
}

impl JsonSchema for PortSpec {
    fn schema_name() -> Cow<'static, str> {
        "port".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "PORT or FIRST-LAST, optionally /tcp or /udp (tcp when omitted).",
            "type": "string",
            "pattern": "^[0-9]{1,5}(-[0-9]{1,5})?(/(tcp|udp))?$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let p: PortSpec = "8000-8010/udp".parse().unwrap();
        assert_eq!((p.first, p.last, p.protocol), (8000, 8010, Protocol::Udp));
        assert_eq!("22".parse::<PortSpec>().unwrap().to_string(), "22/tcp");
        for bad in ["0", "70000", "10-5", "22/icmp", "x/tcp", ""] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad:?} accepted");
        }
    }
}
