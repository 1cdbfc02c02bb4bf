//! Firewall declarations: what a cluster admits, kept in its cluster record under
//! `firewall`, and the clusters that depend on it.

use lct_core::prefix::Prefix;
use lct_core::record::{Cluster, Name, PortSpec};
use serde::{Deserialize, Serialize};

/// What a host does with inbound traffic the declarations do not mention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
    pub from_cidrs: Vec<Prefix>,
    /// The groups of this cluster it applies to (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_groups: Vec<Name>,
    pub ports: Vec<PortSpec>,
}

/// A cluster's firewall declarations (the `firewall` field of its cluster record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallSpec {
    #[serde(default)]
    pub mode: Mode,
    /// Where SSH is always admitted from, whatever else is declared.
    #[serde(default)]
    pub admin_cidrs: Vec<Prefix>,
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
    #[serde(default)]
    pub allow: Vec<Allow>,
}

fn default_ssh_port() -> u16 {
    22
}

impl Default for FirewallSpec {
    /// What a cluster record without `firewall` declares: SSH on 22, nothing else.
    fn default() -> Self {
        FirewallSpec { mode: Mode::default(), admin_cidrs: Vec::new(), ssh_port: default_ssh_port(), allow: Vec::new() }
    }
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

    /// `lct-fw declare`: what is given replaces what the cluster record declared (`None`:
    /// drops all its declarations); the result is checked as a read would check it.
    pub fn declare(cluster: &mut Cluster, declared: Option<Declared>) -> Result<(), ModelError> {
        let Some(declared) = declared else {
            cluster.extra.remove("firewall");
            return Ok(());
        };
        let mut spec = FirewallSpec::of(cluster)?;
        if let Some(mode) = declared.mode {
            spec.mode = mode;
        }
        if !declared.admin_cidrs.is_empty() {
            spec.admin_cidrs = declared.admin_cidrs;
        }
        if let Some(port) = declared.ssh_port {
            spec.ssh_port = port;
        }
        if !declared.allow.is_empty() {
            spec.allow = declared.allow;
        }
        spec.store(cluster);
        FirewallSpec::of(cluster).map(|_| ())
    }
}

/// The declarations a `lct-fw declare` gives: each one given replaces the cluster's.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    pub mode: Option<Mode>,
    pub admin_cidrs: Vec<Prefix>,
    pub ssh_port: Option<u16>,
    pub allow: Vec<Allow>,
}

/// `FROM->TO:PORTS`, as `lct-fw declare --allow` takes it: FROM is `self`,
/// `CLUSTER[:GROUP+GROUP]` or prefixes, comma-separated; TO is `*` or `GROUP+GROUP`.
impl std::str::FromStr for Allow {
    type Err = String;

    fn from_str(s: &str) -> Result<Allow, String> {
        let (from, rest) = s.split_once("->").ok_or("expected FROM->TO:PORTS")?;
        let (to, ports) = rest.split_once(':').ok_or("expected FROM->TO:PORTS")?;
        let mut allow =
            Allow { from_cluster: None, from_groups: vec![], from_cidrs: vec![], to_groups: vec![], ports: vec![] };
        for part in from.split(',').filter(|p| !p.is_empty()) {
            if part.contains('/') || part.parse::<std::net::IpAddr>().is_ok() {
                allow.from_cidrs.push(part.parse().map_err(|e: lct_core::prefix::PrefixError| e.to_string())?);
            } else if part == "self" {
            } else {
                let (cluster, groups) = part.split_once(':').unwrap_or((part, ""));
                allow.from_cluster = Some(cluster.parse().map_err(|e: lct_core::record::InvalidValue| e.to_string())?);
                allow.from_groups = names(groups)?;
            }
        }
        if to != "*" {
            allow.to_groups = names(to)?;
        }
        allow.ports =
            ports.split(',').map(|p| p.parse::<PortSpec>().map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
        if allow.ports.is_empty() {
            return Err("name at least one port".into());
        }
        Ok(allow)
    }
}

fn names(list: &str) -> Result<Vec<Name>, String> {
    list.split('+')
        .filter(|g| !g.is_empty())
        .map(|g| g.parse().map_err(|e: lct_core::record::InvalidValue| e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_specs() {
        let a: Allow = "hdfs:namenode+journal->zookeeper:2181/tcp".parse().unwrap();
        assert_eq!(a.from_cluster.unwrap().as_str(), "hdfs");
        assert_eq!(a.from_groups.len(), 2);
        assert_eq!(a.to_groups[0].as_str(), "zookeeper");
        let a: Allow = "203.0.113.0/24,2001:db8::/32->*:80/tcp,443".parse().unwrap();
        assert_eq!((a.from_cidrs.len(), a.to_groups.len(), a.ports.len()), (2, 0, 2));
        let a: Allow = "self->*:9000-9010/udp".parse().unwrap();
        assert!(a.from_cluster.is_none() && a.from_cidrs.is_empty());
        for bad in ["x", "a->b", "10.0.0.1/8->*:80", "a->b:0", "A->*:80"] {
            assert!(bad.parse::<Allow>().is_err(), "{bad}");
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
