//! The one rule that names nodes: every tool that writes a node's fully qualified name
//! (hosts files, DNS zones, plans) takes it from here.
//!
//! A cluster's domain is the `domain` of its cluster record; a cluster without one lives
//! under the parent domain as `CLUSTER.PARENT` (`zk.lct.internal`). A node's FQDN is
//! `NODE.CLUSTERDOMAIN`, a group's name `GROUP.CLUSTERDOMAIN`. The parent domain is
//! `LCT_DOMAIN`, else `lct.internal`.

use std::collections::HashMap;

use crate::record::{Cluster, DomainName, Name};

/// The parent domain when `LCT_DOMAIN` names none.
pub const DEFAULT_PARENT_DOMAIN: &str = "lct.internal";

/// The parent of clusters without a domain of their own: `LCT_DOMAIN`, else `lct.internal`.
/// A bad `LCT_DOMAIN` is an error naming it, not silently replaced.
pub fn parent_domain() -> Result<DomainName, String> {
    match std::env::var("LCT_DOMAIN") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|e| format!("LCT_DOMAIN: {e}")),
        _ => Ok(DomainName::default_parent()),
    }
}

impl DomainName {
    /// `lct.internal`.
    pub fn default_parent() -> DomainName {
        DEFAULT_PARENT_DOMAIN.parse().expect("the default parent domain is valid")
    }

    /// Whether `name` (without a final dot) is this domain or below it.
    pub fn contains(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        name == self.as_str()
            || (name.len() > self.as_str().len()
                && name.ends_with(self.as_str())
                && name.as_bytes()[name.len() - self.as_str().len() - 1] == b'.')
    }
}

impl Cluster {
    /// This cluster's domain: its own, else `NAME.PARENT`.
    pub fn domain_under(&self, parent: &DomainName) -> DomainName {
        cluster_domain(&self.name, self.domain.as_ref(), parent)
    }
}

/// A cluster's domain from its name and declared domain.
pub fn cluster_domain(cluster: &Name, declared: Option<&DomainName>, parent: &DomainName) -> DomainName {
    match declared {
        Some(d) => d.clone(),
        // Two valid parts joined by a dot: a valid name unless too long, which the parse says.
        // lct-plan refuses such a cluster at create; one made otherwise is named in the parent
        // and said so, once per cluster and parent.
        None => format!("{cluster}.{parent}").parse().unwrap_or_else(|_| {
            warn_once(&format!(
                "cluster {cluster}: {cluster}.{parent} is longer than a domain name may be (253): its nodes are named in {parent} itself"
            ));
            parent.clone()
        }),
    }
}

/// A warning said once per process (naming runs per node; the reason is per cluster).
fn warn_once(message: &str) {
    static SAID: std::sync::Mutex<Option<std::collections::HashSet<String>>> = std::sync::Mutex::new(None);
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.get_or_insert_with(Default::default).insert(message.to_string()) {
        tracing::warn!("{message}");
    }
}

/// A node's fully qualified name (no final dot) in its cluster's domain.
pub fn node_fqdn(node: &Name, cluster_domain: &DomainName) -> String {
    format!("{node}.{cluster_domain}")
}

/// The domains of a set of clusters, for naming many nodes: clusters without a record get
/// the parent's default.
#[derive(Debug, Clone)]
pub struct Naming {
    parent: DomainName,
    declared: HashMap<Name, DomainName>,
}

impl Naming {
    pub fn new(clusters: &[Cluster], parent: DomainName) -> Naming {
        let declared = clusters.iter().filter_map(|c| Some((c.name.clone(), c.domain.clone()?))).collect();
        Naming { parent, declared }
    }

    pub fn parent(&self) -> &DomainName {
        &self.parent
    }

    /// The domain of the cluster named `cluster`.
    pub fn cluster_domain(&self, cluster: &Name) -> DomainName {
        cluster_domain(cluster, self.declared.get(cluster), &self.parent)
    }

    /// The FQDN of node `node` of cluster `cluster`.
    pub fn node_fqdn(&self, cluster: &Name, node: &Name) -> String {
        node_fqdn(node, &self.cluster_domain(cluster))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        s.parse().unwrap()
    }

    #[test]
    fn declared_domain_wins_else_cluster_under_parent() {
        let mut zk = Cluster::new(name("zk"));
        zk.domain = Some("zk.example.com".parse().unwrap());
        let naming = Naming::new(&[zk, Cluster::new(name("pg"))], "lct.internal".parse().unwrap());
        assert_eq!(naming.node_fqdn(&name("zk"), &name("zk-1")), "zk-1.zk.example.com");
        assert_eq!(naming.node_fqdn(&name("pg"), &name("pg-1")), "pg-1.pg.lct.internal");
        // A cluster with no record at all is named like one without a domain.
        assert_eq!(naming.node_fqdn(&name("hdfs"), &name("hdfs-1")), "hdfs-1.hdfs.lct.internal");
    }

    #[test]
    fn contains_is_by_label() {
        let d: DomainName = "lct.internal".parse().unwrap();
        assert!(d.contains("lct.internal"));
        assert!(d.contains("a.lct.internal."));
        assert!(!d.contains("xlct.internal"));
        assert!(!d.contains("internal"));
    }
}
