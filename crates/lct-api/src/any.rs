//! A provider chosen at run time, and the one rule for which providers a command asks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use lct_core::record::{Cluster, Name, Node, NodeSpec, ProviderName, Volume};
use lct_core::state::ClusterStore;

use crate::disk_image::DiskCapture;
#[cfg(feature = "linode")]
use crate::linode::LinodeProvider;
use crate::local::LocalCloud;
use crate::provider::{CreateOrder, Provider, ProviderError, VolumeSpec};

/// The rule every tool that queries the inventory follows, also written in their `--help`.
pub const PROVIDERS_HELP: &str = "[default: LCT_PROVIDER, else where the selected clusters' records say their nodes are (lct-api create records it), else the providers that hold state: local when its lab has state, those a cluster record names; local when none does]";

/// Which providers to ask about the clusters `selected` (none: every cluster): the ones
/// given (a `--provider` flag), else `LCT_PROVIDER`, else, when every selected cluster has a
/// record, the providers those records name (where `lct-api create` found their nodes
/// live), else those that hold state: the local cloud when its state file exists, and every
/// other provider a cluster record names; the local cloud when none does.
pub fn providers_to_ask(
    given: &[ProviderName],
    clusters: &[Cluster],
    selected: &BTreeSet<Name>,
    state_dir: &Path,
) -> Result<Vec<ProviderName>, ProviderError> {
    if !given.is_empty() {
        let mut list = given.to_vec();
        list.sort();
        list.dedup();
        return Ok(list);
    }
    if let Ok(value) = std::env::var("LCT_PROVIDER")
        && !value.trim().is_empty()
    {
        let mut list = Vec::new();
        for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let name = <ProviderName as clap::ValueEnum>::from_str(word, true).map_err(|_| {
                ProviderError::Invalid(format!("LCT_PROVIDER: {word:?} is not a provider (local, linode)"))
            })?;
            if !list.contains(&name) {
                list.push(name);
            }
        }
        list.sort();
        return Ok(list);
    }
    let records: Vec<&Cluster> = clusters.iter().filter(|c| selected.contains(&c.name)).collect();
    let mut list: Vec<ProviderName> = Vec::new();
    if !selected.is_empty() && records.len() == selected.len() {
        list.extend(records.iter().flat_map(|c| c.providers()));
    } else {
        if LocalCloud::new(state_dir, None).has_state() {
            list.push(ProviderName::Local);
        }
        // The local cloud by its state alone: a record names it by default.
        list.extend(clusters.iter().flat_map(|c| c.providers()).filter(|p| *p != ProviderName::Local));
    }
    list.sort();
    list.dedup();
    if list.is_empty() {
        list.push(ProviderName::Local);
    }
    Ok(list)
}

/// Records that `provider` now holds nodes of `clusters` (after `lct-api create`), so that
/// queries by cluster find them without `--provider`: see
/// [`lct_core::state::ClusterStore::note_nodes_on`]. A record naming other providers keeps
/// them (`also_on`) unless they hold none of the cluster's nodes (asked here; one that
/// cannot be asked is taken to hold some).
pub async fn remember_provider(
    store: &ClusterStore,
    clusters: &BTreeSet<Name>,
    provider: ProviderName,
) -> Result<Vec<Cluster>, ProviderError> {
    let records = store.load()?;
    let mut elsewhere = BTreeSet::new();
    // Each other provider listed once; `None`: it could not be asked.
    let mut listed: BTreeMap<ProviderName, Option<Vec<Node>>> = BTreeMap::new();
    for record in records.iter().filter(|c| clusters.contains(&c.name) && !c.providers().contains(&provider)) {
        for other in record.providers() {
            if let std::collections::btree_map::Entry::Vacant(slot) = listed.entry(other) {
                slot.insert(match AnyProvider::from_env(other) {
                    Ok(p) => p.list().await.ok(),
                    Err(_) => None,
                });
            }
            let holds_some = listed[&other].as_ref().is_none_or(|nodes| nodes.iter().any(|n| n.cluster == record.name));
            if holds_some {
                elsewhere.insert(record.name.clone());
            }
        }
    }
    Ok(store.note_nodes_on(clusters, provider, &elsewhere)?)
}

/// The name `provider` gives an image a plan names portably: `debian-12` is Linode's
/// `linode/debian12`; others pass as written.
pub fn provider_image(provider: ProviderName, image: &str) -> String {
    match (provider, image) {
        (ProviderName::Linode, "debian-12") => "linode/debian12".to_string(),
        (_, image) => image.to_string(),
    }
}

/// Whether `provider` has regions to choose (the local cloud has one, `local`): a plan's
/// region is given to those only.
pub fn has_regions(provider: ProviderName) -> bool {
    provider == ProviderName::Linode
}

/// A provider chosen at run time.
pub enum AnyProvider {
    Local(LocalCloud),
    #[cfg(feature = "linode")]
    Linode(Box<LinodeProvider>),
}

impl AnyProvider {
    /// The provider of that name, configured from the environment.
    pub fn from_env(name: ProviderName) -> Result<AnyProvider, ProviderError> {
        match name {
            ProviderName::Local => Ok(AnyProvider::Local(LocalCloud::from_env())),
            #[cfg(feature = "linode")]
            ProviderName::Linode => Ok(AnyProvider::Linode(Box::new(LinodeProvider::from_env()?))),
            #[cfg(not(feature = "linode"))]
            ProviderName::Linode => Err(ProviderError::Unsupported(
                "this build of lct has no Linode provider (built without the `linode` feature, as the node-side programs are)".into(),
            )),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            AnyProvider::Local($p) => $e,
            #[cfg(feature = "linode")]
            AnyProvider::Linode($p) => $e,
        }
    };
}

impl Provider for AnyProvider {
    fn name(&self) -> ProviderName {
        dispatch!(self, p => p.name())
    }
    fn create_order(&self) -> CreateOrder {
        dispatch!(self, p => p.create_order())
    }
    fn ready_answers_ssh(&self) -> bool {
        dispatch!(self, p => p.ready_answers_ssh())
    }
    async fn provide_packages(&self, packages: &[String]) -> Result<(), ProviderError> {
        dispatch!(self, p => p.provide_packages(packages).await)
    }
    async fn prepare_image(&self, image: &str, disk_mib: Option<u64>) -> Result<(), ProviderError> {
        dispatch!(self, p => p.prepare_image(image, disk_mib).await)
    }
    async fn capture_disk(&self, name: &Name) -> Result<DiskCapture, ProviderError> {
        dispatch!(self, p => p.capture_disk(name).await)
    }
    async fn release_capture(&self, name: &Name) -> Result<(), ProviderError> {
        dispatch!(self, p => p.release_capture(name).await)
    }
    async fn list(&self) -> Result<Vec<Node>, ProviderError> {
        dispatch!(self, p => p.list().await)
    }
    async fn create(&self, spec: &NodeSpec) -> Result<Node, ProviderError> {
        dispatch!(self, p => p.create(spec).await)
    }
    async fn check_specs(&self, specs: &[NodeSpec]) -> Vec<Result<(), ProviderError>> {
        dispatch!(self, p => p.check_specs(specs).await)
    }
    async fn create_batch(&self, specs: &[NodeSpec]) -> Option<Vec<Result<Node, ProviderError>>> {
        dispatch!(self, p => p.create_batch(specs).await)
    }
    async fn wait_ready(&self, node: Node) -> Result<Node, ProviderError> {
        dispatch!(self, p => p.wait_ready(node).await)
    }
    async fn start(&self, name: &Name) -> Result<Node, ProviderError> {
        dispatch!(self, p => p.start(name).await)
    }
    async fn stop(&self, name: &Name) -> Result<Node, ProviderError> {
        dispatch!(self, p => p.stop(name).await)
    }
    async fn delete(&self, name: &Name) -> Result<bool, ProviderError> {
        dispatch!(self, p => p.delete(name).await)
    }
    async fn volumes(&self) -> Result<Vec<Volume>, ProviderError> {
        dispatch!(self, p => p.volumes().await)
    }
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Volume, ProviderError> {
        dispatch!(self, p => p.create_volume(spec).await)
    }
    async fn attach_volume(&self, label: &Name, node: &Name) -> Result<Volume, ProviderError> {
        dispatch!(self, p => p.attach_volume(label, node).await)
    }
    async fn detach_volume(&self, label: &Name) -> Result<Volume, ProviderError> {
        dispatch!(self, p => p.detach_volume(label).await)
    }
    async fn delete_volume(&self, label: &Name) -> Result<bool, ProviderError> {
        dispatch!(self, p => p.delete_volume(label).await)
    }
}
