//! Selecting nodes: by cluster, group, tag, status and provider, widened to dependents or dependencies.

use std::collections::BTreeSet;

use lct_api::{AnyProvider, PROVIDERS_HELP, Provider, ProviderError, providers_to_ask};
use lct_core::record::{Cluster, Name, Node, ProviderName, Status};
use lct_core::state::{dependencies_of, dependents_of};

/// Which nodes a command is about. Empty lists select everything.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Selector {
    /// Nodes of this cluster (repeatable)
    #[arg(long = "cluster", short = 'c', value_name = "CLUSTER")]
    pub clusters: Vec<Name>,
    /// Nodes of this group (role) of the selected clusters (repeatable)
    #[arg(long = "group", short = 'g', value_name = "GROUP")]
    pub groups: Vec<Name>,
    /// Nodes carrying this tag (repeatable; any of them)
    #[arg(long = "tag", short = 't', value_name = "TAG")]
    pub tags: Vec<String>,
    /// Nodes in this status (repeatable)
    #[arg(long = "status", value_enum, value_name = "STATUS")]
    pub statuses: Vec<Status>,
    /// Nodes of this provider (repeatable)
    #[arg(long = "provider", short = 'p', value_enum, value_name = "PROVIDER", long_help = providers_long_help())]
    pub providers: Vec<ProviderName>,
    /// Add the nodes of clusters that depend on the selected clusters
    #[arg(long, requires = "clusters")]
    pub with_dependents: bool,
    /// Add the nodes of clusters the selected clusters depend on
    #[arg(long, requires = "clusters")]
    pub with_dependencies: bool,
}

impl Selector {
    /// True when no selector was given at all.
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
            && self.groups.is_empty()
            && self.tags.is_empty()
            && self.statuses.is_empty()
            && self.providers.is_empty()
    }

    /// The clusters a query is about: those selected, with their dependents or dependencies
    /// when asked for (none: every cluster).
    pub fn wanted_clusters(&self, clusters: &[Cluster]) -> BTreeSet<Name> {
        let mut wanted: BTreeSet<Name> = self.clusters.iter().cloned().collect();
        if self.with_dependents {
            wanted.extend(dependents_of(clusters, &wanted));
        }
        if self.with_dependencies {
            wanted.extend(dependencies_of(clusters, &self.clusters.iter().cloned().collect()));
        }
        wanted
    }

    /// The providers to ask (lct-api's rule: the flag, else `LCT_PROVIDER`, else where the
    /// selected clusters' records say their nodes are, else those that hold state).
    pub fn providers(&self, clusters: &[Cluster]) -> Result<Vec<ProviderName>, ProviderError> {
        providers_to_ask(&self.providers, clusters, &self.wanted_clusters(clusters), &lct_core::state::state_dir())
    }
}

/// `--provider`'s help: what it does and the default rule.
pub fn providers_long_help() -> String {
    format!("Nodes of this provider (repeatable) {PROVIDERS_HELP}")
}

/// Applies a selector to nodes, using the cluster records for dependencies.
///
/// `--group` narrows the selected clusters' own nodes only: the nodes of dependent or
/// dependency clusters are added whole, since what they use of each other is theirs.
/// Dependencies are followed one step, not transitively: a cluster that needs another
/// declares it.
pub fn select(nodes: Vec<Node>, clusters: &[Cluster], sel: &Selector) -> Vec<Node> {
    let base: BTreeSet<Name> = sel.clusters.iter().cloned().collect();
    let mut related = BTreeSet::new();
    if sel.with_dependents {
        related.extend(dependents_of(clusters, &base));
    }
    if sel.with_dependencies {
        related.extend(dependencies_of(clusters, &base));
    }
    let mut selected: Vec<Node> = nodes
        .into_iter()
        .filter(|n| {
            let in_base = base.is_empty() || base.contains(&n.cluster);
            let wanted =
                (in_base && (sel.groups.is_empty() || sel.groups.contains(&n.group))) || related.contains(&n.cluster);
            wanted
                && (sel.tags.is_empty() || n.tags.iter().any(|t| sel.tags.contains(t)))
                && (sel.statuses.is_empty() || sel.statuses.contains(&n.status))
                && (sel.providers.is_empty() || sel.providers.contains(&n.provider))
        })
        .collect();
    selected.sort_by(|a, b| (&a.cluster, &a.group, &a.name).cmp(&(&b.cluster, &b.group, &b.name)));
    selected
}

/// Asks the selected providers for their nodes and applies the selector. A cluster asked
/// for by name that has no node among them is said at the default log level (warn), with
/// where lct looked: an empty answer is never silent.
pub async fn query(sel: &Selector, clusters: &[Cluster]) -> Result<Vec<Node>, ProviderError> {
    let asked = sel.providers(clusters)?;
    let mut nodes = Vec::new();
    for name in &asked {
        nodes.extend(AnyProvider::from_env(*name)?.list().await?);
    }
    let selected = select(nodes, clusters, sel);
    for cluster in &sel.clusters {
        if !selected.iter().any(|n| &n.cluster == cluster) {
            tracing::warn!("{}", nothing_found(cluster, clusters, &asked, sel));
        }
    }
    Ok(selected)
}

/// What to say when cluster `name` has no selected node.
fn nothing_found(name: &Name, clusters: &[Cluster], asked: &[ProviderName], sel: &Selector) -> String {
    let asked = asked.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ");
    let narrowed = !(sel.groups.is_empty() && sel.tags.is_empty() && sel.statuses.is_empty());
    let what = if narrowed { "no nodes that match the other selectors" } else { "no nodes" };
    if clusters.iter().any(|c| &c.name == name) || !sel.providers.is_empty() {
        format!("cluster {name}: {what} (asked {asked})")
    } else {
        format!(
            "cluster {name}: {what} (asked {asked}), and no cluster record says where its nodes are: \
             --provider asks another (lct-api create records it for clusters it makes)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cluster: &str, group: &str, name: &str, tags: &[&str]) -> Node {
        serde_json::from_value(serde_json::json!({
            "cluster": cluster, "group": group, "name": name, "provider": "local",
            "status": "running", "tags": tags,
        }))
        .unwrap()
    }

    fn names(nodes: &[Node]) -> Vec<&str> {
        nodes.iter().map(|n| n.name.as_str()).collect()
    }

    #[test]
    fn selects_with_dependents_and_dependencies() {
        let nodes = vec![
            node("zk", "zookeeper", "zk-1", &[]),
            node("zk", "observer", "zk-9", &["slow"]),
            node("hdfs", "namenode", "nn-1", &["slow"]),
            node("hdfs", "datanode", "dn-1", &[]),
            node("web", "node", "web-1", &[]),
        ];
        let clusters: Vec<Cluster> = vec![
            serde_json::from_str(r#"{"name":"zk"}"#).unwrap(),
            serde_json::from_str(r#"{"name":"hdfs","depends_on":[{"cluster":"zk","groups":["zookeeper"]}]}"#).unwrap(),
        ];
        let sel = |f: &dyn Fn(&mut Selector)| {
            let mut s = Selector::default();
            f(&mut s);
            names(&select(nodes.clone(), &clusters, &s)).into_iter().map(String::from).collect::<Vec<_>>()
        };
        assert_eq!(sel(&|_| {}).len(), 5);
        assert_eq!(sel(&|s| s.clusters = vec!["zk".parse().unwrap()]), ["zk-9", "zk-1"]);
        assert_eq!(
            sel(&|s| {
                s.clusters = vec!["zk".parse().unwrap()];
                s.groups = vec!["zookeeper".parse().unwrap()];
                s.with_dependents = true;
            }),
            ["dn-1", "nn-1", "zk-1"]
        );
        assert_eq!(
            sel(&|s| {
                s.clusters = vec!["hdfs".parse().unwrap()];
                s.with_dependencies = true;
            }),
            ["dn-1", "nn-1", "zk-9", "zk-1"]
        );
        assert_eq!(sel(&|s| s.tags = vec!["slow".into()]), ["nn-1", "zk-9"]);
        assert!(sel(&|s| s.statuses = vec![Status::Offline]).is_empty());
    }
}
