use std::future::Future;

use lct_core::record::{Name, Node, NodeSpec, ProviderName, Volume};

use crate::linode::LinodeProvider;
use crate::local::LocalCloud;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("no node named {0}")]
    NoSuchNode(Name),
    #[error("no volume labelled {0}")]
    NoSuchVolume(Name),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("the local cloud needs root (it creates network namespaces and loop devices)")]
    NotRoot,
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error("{command} failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error(transparent)]
    State(#[from] lct_core::state::StateError),
    /// The cloud's API refused or failed (the message names the request and field).
    #[error("{0}")]
    Api(String),
}

/// What a new volume should be.
#[derive(Debug, Clone)]
pub struct VolumeSpec {
    pub label: Name,
    pub size_mib: u64,
    pub region: Option<String>,
}

/// The operations every provider offers. Creating is idempotent by node name (labels are
/// the idempotency key of a cluster's nodes); deleting what does not exist is not an error.
pub trait Provider: Send + Sync {
    fn name(&self) -> ProviderName;

    fn list(&self) -> impl Future<Output = Result<Vec<Node>, ProviderError>> + Send;

    /// Creates the node unless one of that name exists; returns it running either way.
    fn create(&self, spec: &NodeSpec) -> impl Future<Output = Result<Node, ProviderError>> + Send;

    fn start(&self, name: &Name) -> impl Future<Output = Result<Node, ProviderError>> + Send;

    fn stop(&self, name: &Name) -> impl Future<Output = Result<Node, ProviderError>> + Send;

    /// Deletes the node; `false` if there was none.
    fn delete(&self, name: &Name) -> impl Future<Output = Result<bool, ProviderError>> + Send;

    fn volumes(&self) -> impl Future<Output = Result<Vec<Volume>, ProviderError>> + Send;

    fn create_volume(&self, spec: &VolumeSpec) -> impl Future<Output = Result<Volume, ProviderError>> + Send;

    fn attach_volume(&self, label: &Name, node: &Name) -> impl Future<Output = Result<Volume, ProviderError>> + Send;

    fn detach_volume(&self, label: &Name) -> impl Future<Output = Result<Volume, ProviderError>> + Send;

    /// Deletes the volume (detaching it first); `false` if there was none.
    fn delete_volume(&self, label: &Name) -> impl Future<Output = Result<bool, ProviderError>> + Send;
}

/// A provider chosen at run time.
pub enum AnyProvider {
    Local(LocalCloud),
    Linode(Box<LinodeProvider>),
}

impl AnyProvider {
    /// The provider of that name, configured from the environment.
    pub fn from_env(name: ProviderName) -> Result<AnyProvider, ProviderError> {
        match name {
            ProviderName::Local => Ok(AnyProvider::Local(LocalCloud::from_env())),
            ProviderName::Linode => Ok(AnyProvider::Linode(Box::new(LinodeProvider::from_env()?))),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            AnyProvider::Local($p) => $e,
            AnyProvider::Linode($p) => $e,
        }
    };
}

impl Provider for AnyProvider {
    fn name(&self) -> ProviderName {
        dispatch!(self, p => p.name())
    }
    async fn list(&self) -> Result<Vec<Node>, ProviderError> {
        dispatch!(self, p => p.list().await)
    }
    async fn create(&self, spec: &NodeSpec) -> Result<Node, ProviderError> {
        dispatch!(self, p => p.create(spec).await)
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
