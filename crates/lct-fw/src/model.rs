//! Firewall declarations: what a cluster admits, kept in its cluster record under
//! `firewall`, and the clusters that depend on it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use lct_core::record::{Cluster, Name, PortSpec};
use serde::{Deserialize, Serialize};

/// An address prefix, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn max_prefix(addr: &IpAddr) -> u8 {
        if addr.is_ipv4() { 32 } else { 128 }
    }

    /// The network mask as bytes (4 or 16).
    pub fn mask(&self) -> Vec<u8> {
        let len = if self.addr.is_ipv4() { 4 } else { 16 };
        (0..len)
            .map(|i| {
                let bits = (self.prefix as i32 - i * 8).clamp(0, 8);
                (0xffu16 << (8 - bits)) as u8
            })
            .collect()
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        let (a, b) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (a.octets().to_vec(), b.octets().to_vec()),
            (IpAddr::V6(a), IpAddr::V6(b)) => (a.octets().to_vec(), b.octets().to_vec()),
            _ => return false,
        };
        self.mask().iter().zip(a.iter().zip(&b)).all(|(m, (x, y))| x & m == y & m)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an address or prefix (e.g. 10.0.0.0/8)"))?;
        let max = Cidr::max_prefix(&addr);
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        let cidr = Cidr { addr, prefix };
        let masked: Vec<u8> = match addr {
            IpAddr::V4(a) => a.octets().iter().zip(cidr.mask()).map(|(b, m)| b & m).collect(),
            IpAddr::V6(a) => a.octets().iter().zip(cidr.mask()).map(|(b, m)| b & m).collect(),
        };
        let exact = match addr {
            IpAddr::V4(a) => a.octets().to_vec() == masked,
            IpAddr::V6(a) => a.octets().to_vec() == masked,
        };
        if !exact {
            return Err(format!("{s:?} has host bits set (did you mean the network address?)"));
        }
        Ok(cidr)
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What a host does with inbound traffic the declarations do not mention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Only the ports that some declaration names are guarded; everything else passes.
    #[default]
    ManagedPorts,
    /// Everything inbound is dropped but loopback, replies, ICMP, SSH from the admin CIDRs and
    /// what is declared.
    DefaultDeny,
}

/// One declaration: who may reach which ports on which groups of this cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// The cluster whose nodes may connect; absent with `from_cidrs` alone, or this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_cluster: Option<Name>,
    /// Only these groups of `from_cluster` (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_groups: Vec<Name>,
    /// Address prefixes that may connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_cidrs: Vec<Cidr>,
    /// The groups of this cluster it applies to (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_groups: Vec<Name>,
    pub ports: Vec<PortSpec>,
}

/// A cluster's firewall declarations (the `firewall` field of its cluster record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FirewallSpec {
    #[serde(default)]
    pub mode: Mode,
    /// Where SSH is always admitted from, whatever else is declared.
    #[serde(default)]
    pub admin_cidrs: Vec<Cidr>,
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
    #[serde(default)]
    pub allow: Vec<Allow>,
}

fn default_ssh_port() -> u16 {
    22
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cluster {cluster}: field firewall{path}: {message}")]
    Declaration { cluster: Name, path: String, message: String },
    #[error("cluster {cluster}: {message}")]
    Invalid { cluster: Name, message: String },
}

impl FirewallSpec {
    /// The declarations of a cluster record (defaults when it has none).
    pub fn of(cluster: &Cluster) -> Result<FirewallSpec, ModelError> {
        let Some(value) = cluster.extra.get("firewall") else {
            return Ok(FirewallSpec { ssh_port: 22, ..Default::default() });
        };
        let spec: FirewallSpec =
            lct_core::stream::from_str_with_path(&value.to_string()).map_err(|(field, message)| {
                ModelError::Declaration {
                    cluster: cluster.name.clone(),
                    path: field.map(|f| format!(".{f}")).unwrap_or_default(),
                    message,
                }
            })?;
        for (i, a) in spec.allow.iter().enumerate() {
            if a.ports.is_empty() {
                return Err(ModelError::Declaration {
                    cluster: cluster.name.clone(),
                    path: format!(".allow[{i}].ports"),
                    message: "name at least one port".into(),
                });
            }
        }
        if spec.ssh_port == 0 {
            return Err(ModelError::Declaration {
                cluster: cluster.name.clone(),
                path: ".ssh_port".into(),
                message: "must be 1 to 65535".into(),
            });
        }
        Ok(spec)
    }

    /// Stores the declarations in a cluster record.
    pub fn store(&self, cluster: &mut Cluster) {
        cluster.extra.insert("firewall".into(), serde_json::to_value(self).expect("serializes"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(&"10.1.2.3".parse().unwrap()));
        assert!(!c.contains(&"11.0.0.1".parse().unwrap()));
        assert_eq!("192.168.1.7".parse::<Cidr>().unwrap().to_string(), "192.168.1.7/32");
        assert_eq!("2001:db8::/32".parse::<Cidr>().unwrap().mask()[..5], [255, 255, 255, 255, 0]);
        assert_eq!("10.0.0.0/12".parse::<Cidr>().unwrap().mask(), [255, 240, 0, 0]);
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "x/8", "10.0.0.0/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn declarations_name_the_bad_field() {
        let cluster: Cluster = serde_json::from_str(
            r#"{"name":"zk","firewall":{"allow":[{"from_cluster":"hdfs","ports":["2181/tcp"]},{"from_cidrs":["10.0.0.1/8"],"ports":["80"]}]}}"#,
        )
        .unwrap();
        let err = FirewallSpec::of(&cluster).unwrap_err().to_string();
        assert!(
            err.contains("cluster zk: field firewall.allow[1].from_cidrs[0]: \"10.0.0.1/8\" has host bits set"),
            "{err}"
        );
        let cluster: Cluster = serde_json::from_str(r#"{"name":"zk","firewall":{"mode":"closed"}}"#).unwrap();
        let err = FirewallSpec::of(&cluster).unwrap_err().to_string();
        assert!(err.contains("field firewall.mode: unknown variant `closed`"), "{err}");
    }
}
