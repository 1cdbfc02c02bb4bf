//! Selecting nodes: by name or glob (like Ansible's `--limit`), cluster, group, tag, status
//! and provider, widened to dependents or dependencies.

use std::collections::BTreeSet;

use lct_api::{AnyProvider, PROVIDERS_HELP, Provider, ProviderError, providers_to_ask};
use lct_core::record::{Cluster, Name, Node, ProviderName, Status};
use lct_core::state::{dependencies_of, dependents_of};

/// Which nodes a command is about. Empty lists select everything.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Selector {
    /// Nodes by name or glob: `zk-1`, 'zk-*', 'pg-[12]', or several at once ('zk-*,pg-1');
    /// with other selectors, the nodes that match both
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
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
        self.names.is_empty()
            && self.clusters.is_empty()
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

    /// The name patterns, each comma-separated list split.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.names.iter().flat_map(|n| n.split(',')).map(str::trim).filter(|p| !p.is_empty())
    }

    /// Whether `name` is selected by the name patterns (every name when there are none).
    pub fn names_match(&self, name: &str) -> bool {
        self.names.is_empty() || self.patterns().any(|p| glob(p, name))
    }
}

/// Shell-style matching of a whole name: `*` any run of characters, `?` one, `[abc]`,
/// `[a-c]` and `[!a]` one of a set (or not).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative, with one remembered star: linear in practice, no recursion to blow up.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => {
                pi += 1;
                ni += 1;
                continue;
            }
            Some('[') => match class(&p[pi..], n[ni]) {
                Some((true, len)) => {
                    pi += len;
                    ni += 1;
                    continue;
                }
                None if n[ni] == '[' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            },
            Some(c) if *c == n[ni] => {
                pi += 1;
                ni += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A `[...]` class at the start of `p`: whether `c` is in it, and the class's length.
/// None when the bracket is not closed (then it is matched as a plain `[`).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let end = p.iter().skip(2).position(|x| *x == ']').map(|i| i + 2)?;
    let (negated, body) = match p[1] {
        '!' | '^' => (true, &p[2..end]),
        _ => (false, &p[1..end]),
    };
    let mut found = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            found |= body[i] <= c && c <= body[i + 2];
            i += 3;
        } else {
            found |= body[i] == c;
            i += 1;
        }
    }
    Some((found != negated, end + 1))
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
                && sel.names_match(n.name.as_str())
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
    let asked_names = asked.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ");
    for pattern in sel.patterns() {
        if !selected.iter().any(|n| glob(pattern, n.name.as_str())) {
            tracing::warn!("no selected node is named {pattern:?} (asked {asked_names})");
        }
    }
    // Narrowed by group, tag or status alone: an empty answer is said too.
    if selected.is_empty() && sel.clusters.is_empty() && sel.names.is_empty() && !sel.is_empty() {
        tracing::warn!("no node matches the selectors (asked {asked_names})");
    }
    Ok(selected)
}

/// Says (warn) each cluster named in `named` that has no node in `nodes` and no cluster
/// record: likely mistyped, so what a push does for it is nothing, and the user is told.
/// For commands that ask for every node (a push needs dependents' too) and pick clusters
/// after; [`query`] says the same of the clusters its selector names.
pub fn say_unknown_clusters<'a>(named: impl IntoIterator<Item = &'a Name>, nodes: &[Node], clusters: &[Cluster]) {
    for c in named {
        if !nodes.iter().any(|n| &n.cluster == c) && !clusters.iter().any(|r| &r.name == c) {
            tracing::warn!("cluster {c}: no nodes and no cluster record; nothing to push for it");
        }
    }
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
        assert_eq!(sel(&|s| s.names = vec!["zk-*".into()]), ["zk-9", "zk-1"]);
        assert_eq!(sel(&|s| s.names = vec!["zk-1,web-1".into(), "dn-?".into()]), ["dn-1", "web-1", "zk-1"]);
        assert_eq!(
            sel(&|s| {
                s.names = vec!["*-1".into()];
                s.clusters = vec!["zk".parse().unwrap(), "hdfs".parse().unwrap()];
            }),
            ["dn-1", "nn-1", "zk-1"]
        );
        assert!(sel(&|s| s.names = vec!["zk".into()]).is_empty());
    }

    #[test]
    fn globs_match_whole_names() {
        for (pattern, name, matches) in [
            ("zk-*", "zk-1", true),
            ("zk-*", "zk-", true),
            ("zk-*", "pg-1", false),
            ("zk", "zk-1", false),
            ("*-1", "zk-1", true),
            ("*-1", "zk-10", false),
            ("z?-1", "zk-1", true),
            ("zk-[12]", "zk-2", true),
            ("zk-[12]", "zk-3", false),
            ("zk-[1-3]", "zk-3", true),
            ("zk-[!1-3]", "zk-3", false),
            ("zk-[!1-3]", "zk-4", true),
            ("zk-[1", "zk-[1", true),
            ("*a*b*c", "xaxbxc", true),
            ("*a*b*c", "xaxbxcx", false),
            ("**", "", true),
        ] {
            assert_eq!(glob(pattern, name), matches, "{pattern} {name}");
        }
    }
}
