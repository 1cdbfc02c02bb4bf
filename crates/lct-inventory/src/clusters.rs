//! `lct-inventory clusters`: cluster records kept in the state directory, set by flags or
//! from records piped in, and `--depends-on`'s grammar.

use std::io::BufRead;

use anyhow::{Context, bail};
use lct_core::record::{Cluster, Dependency, DomainName, Name, ProviderName};
use lct_core::state::ClusterStore;
use lct_core::stream;

#[derive(Debug, clap::Subcommand)]
pub enum ClustersCommand {
    /// List cluster records
    List,
    /// Add or change a cluster (flags), or set the cluster records piped in
    Set {
        /// The cluster to add or change
        name: Option<Name>,
        #[command(flatten)]
        flags: SetFlags,
    },
    /// Remove cluster records (the nodes stay)
    Remove {
        #[arg(required = true)]
        names: Vec<Name>,
    },
}

/// What `clusters set NAME` changes.
#[derive(Debug, Default, clap::Args)]
pub struct SetFlags {
    /// Its DNS domain, e.g. zk.lct.internal
    #[arg(long)]
    pub domain: Option<DomainName>,
    /// Its provider
    #[arg(long, value_enum)]
    pub provider: Option<ProviderName>,
    /// A cluster it uses: CLUSTER[:GROUP,GROUP[:PORT/PROTO,...]] (repeatable; replaces the list)
    #[arg(long = "depends-on", value_name = "DEPENDENCY", value_parser = parse_dependency)]
    pub depends_on: Vec<Dependency>,
    /// Remove all its dependencies
    #[arg(long, conflicts_with = "depends_on")]
    pub no_dependencies: bool,
}

impl SetFlags {
    /// Whether any flag was given.
    pub fn any(&self) -> bool {
        self.domain.is_some() || self.provider.is_some() || !self.depends_on.is_empty() || self.no_dependencies
    }
}

/// Adds cluster `name` or changes what the flags say; the record as stored.
pub fn set(store: &ClusterStore, name: &Name, flags: SetFlags) -> anyhow::Result<Cluster> {
    let mut cluster = store.get_or_new(name)?;
    if flags.domain.is_some() {
        cluster.domain = flags.domain;
    }
    if let Some(p) = flags.provider {
        cluster.provider = p;
    }
    if !flags.depends_on.is_empty() || flags.no_dependencies {
        cluster.depends_on = flags.depends_on;
    }
    store.set(vec![cluster.clone()])?;
    Ok(cluster)
}

/// Sets the cluster records read from `input` (any other kind is an error); those records
/// as stored.
pub fn set_piped(store: &ClusterStore, input: impl BufRead) -> anyhow::Result<Vec<Cluster>> {
    let (records, others) = stream::read_kind::<Cluster>(input).context("stdin")?;
    if let Some(other) = others.first() {
        bail!("stdin: line {}: kind {:?} is not a cluster record", other.number, other.kind);
    }
    let names: Vec<Name> = records.iter().map(|c| c.name.clone()).collect();
    let all = store.set(records)?;
    Ok(all.into_iter().filter(|c| names.contains(&c.name)).collect())
}

/// `zk`, `zk:zookeeper`, `zk:zookeeper,observer:2181/tcp,2888-3888/tcp`
pub fn parse_dependency(s: &str) -> Result<Dependency, String> {
    let mut parts = s.splitn(3, ':');
    let cluster = parts.next().unwrap_or_default().parse::<Name>().map_err(|e| e.to_string())?;
    let list = |p: Option<&str>| -> Vec<String> {
        p.map(|p| p.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default()
    };
    let groups = list(parts.next())
        .into_iter()
        .map(|g| g.parse::<Name>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let ports = list(parts.next())
        .into_iter()
        .map(|p| p.parse().map_err(|e: lct_core::record::InvalidValue| e.to_string()))
        .collect::<Result<_, _>>()?;
    Ok(Dependency { cluster, groups, ports })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_parse() {
        let d = parse_dependency("zk:zookeeper,observer:2181/tcp,2888-3888").unwrap();
        assert_eq!(d.cluster.as_str(), "zk");
        assert_eq!(d.groups.len(), 2);
        assert_eq!(d.ports[1].to_string(), "2888-3888/tcp");
        assert!(parse_dependency("zk::99999").is_err());
        assert!(parse_dependency("Zk").is_err());
        assert_eq!(parse_dependency("zk").unwrap().groups.len(), 0);
    }
}
