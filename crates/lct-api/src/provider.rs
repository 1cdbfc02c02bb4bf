//! The interface every provider implements, and the errors it reports.

use std::future::Future;

use lct_core::record::{Name, Node, NodeSpec, ProviderName, Volume};

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
    #[error(transparent)]
    Random(#[from] lct_core::random::RandomError),
    /// The cloud's API refused or failed (the message names the request and field).
    #[error("{0}")]
    Api(String),
}

/// Where a node's disk is read when it is captured into an image (`lct-plan bake`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskCapture {
    /// A raw disk file on this machine (the local cloud builds it from the stopped machine),
    /// read by the caller, then given back with [`Provider::release_capture`].
    Here(std::path::PathBuf),
    /// A block device on the node, reached over the node's SSH (Linode: the node now runs
    /// from a small helper disk and the captured disk is attached at `device`).
    OnNode { device: String },
}

/// How a provider makes many nodes ([`crate::create::create_many`] follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOrder {
    /// One at a time, in the order given, so that addresses follow names (the local cloud:
    /// demo-1 gets .1); each then comes up beside the others.
    InOrder,
    /// Side by side, as many at once as the caller allows (Linode: its rate limits pace the
    /// requests inside the provider).
    Parallel,
}

/// What a new volume should be.
#[derive(Debug, Clone)]
pub struct VolumeSpec {
    pub label: Name,
    pub size_mib: u64,
    pub region: Option<String>,
}

/// A volume size as people write it: `512M`, `10G` (a bare number is GiB, as Linode's API
/// counts), `1T`; in MiB.
pub fn parse_size_mib(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 512M, 10G)"))?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "g" | "gb" | "gib" => 1024,
        "m" | "mb" | "mib" => 1,
        "t" | "tb" | "tib" => 1024 * 1024,
        _ => return Err(format!("unknown size unit {unit:?} (use M, G or T)")),
    };
    match n.checked_mul(factor) {
        Some(0) => Err("a volume needs at least 1 MiB".into()),
        Some(mib) => Ok(mib),
        None => Err(format!("{s:?} is too large")),
    }
}

/// The operations every provider offers. Creating is idempotent by node name (labels are
/// the idempotency key of a cluster's nodes); deleting what does not exist is not an error.
pub trait Provider: Send + Sync {
    fn name(&self) -> ProviderName;

    fn list(&self) -> impl Future<Output = Result<Vec<Node>, ProviderError>> + Send;

    /// Creates the node unless one of that name exists; returns it running, or booting
    /// where [`Provider::wait_ready`] has more to wait for.
    fn create(&self, spec: &NodeSpec) -> impl Future<Output = Result<Node, ProviderError>> + Send;

    /// Checks every spec of a create before any node of it is made (region, type, image
    /// against what the provider offers): one outcome per spec, in order. A create of many
    /// ([`crate::create::create_many`]) makes none when one is refused, so a plan spread over
    /// regions with one unknown region leaves nothing half made. Nothing to check by default.
    fn check_specs(&self, specs: &[NodeSpec]) -> impl Future<Output = Vec<Result<(), ProviderError>>> + Send {
        let all = specs.iter().map(|_| Ok(())).collect();
        async { all }
    }

    /// How this provider makes many nodes at once ([`crate::create::create_many`] follows it).
    fn create_order(&self) -> CreateOrder {
        CreateOrder::Parallel
    }

    /// Creates all of `specs` in one step, where the provider does that better than one by
    /// one: one outcome per spec, in order, each node as [`Provider::create`] returns it
    /// (waiting for it is still [`Provider::wait_ready`]). `None` where it does not (the
    /// default): [`crate::create::create_many`] then creates them one by one.
    fn create_batch(
        &self,
        specs: &[NodeSpec],
    ) -> impl Future<Output = Option<Vec<Result<Node, ProviderError>>>> + Send {
        let _ = specs;
        async { None }
    }

    /// Whether a node [`Provider::wait_ready`] returned already answers SSH with cloud-init
    /// finished (the local cloud waits for that; Linode's "running" comes before sshd).
    fn ready_answers_ssh(&self) -> bool {
        false
    }

    /// Makes Debian packages installable on this provider's machine nodes before they are
    /// made (the local cloud's machines have no route out: the packages go into the lab's
    /// mirror); nothing where nodes reach Debian themselves (Linode).
    fn provide_packages(&self, packages: &[String]) -> impl Future<Output = Result<(), ProviderError>> + Send {
        let _ = packages;
        async { Ok(()) }
    }

    /// Makes the image `image` ready to make nodes from, before any node is made: an lct
    /// image ([`crate::disk_image::LctImage`]) is found, checked whole (present, every
    /// extent's hash, this provider's architecture, fits a disk of `disk_mib` MiB where
    /// given) and prepared (the local cloud restores it once into its image directory);
    /// a clear error otherwise. Provider images need nothing.
    fn prepare_image(
        &self,
        image: &str,
        disk_mib: Option<u64>,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send {
        let _ = (image, disk_mib);
        async { Ok(()) }
    }

    /// Makes the node's disk readable for capture into an image (the node is stopped
    /// first): see [`DiskCapture`]. Generalizing the disk is the caller's work, done on the
    /// node before.
    fn capture_disk(&self, name: &Name) -> impl Future<Output = Result<DiskCapture, ProviderError>> + Send {
        let name = name.clone();
        async move { Err(ProviderError::Unsupported(format!("{name}: this provider cannot capture a node's disk"))) }
    }

    /// Ends a capture: removes what [`Provider::capture_disk`] made (a raw file, a helper disk).
    fn release_capture(&self, name: &Name) -> impl Future<Output = Result<(), ProviderError>> + Send {
        let _ = name;
        async { Ok(()) }
    }

    /// Waits until a node `create` or `start` returned is ready for work (a local machine:
    /// answering SSH with cloud-init finished) and returns it so.
    fn wait_ready(&self, node: Node) -> impl Future<Output = Result<Node, ProviderError>> + Send {
        async move { Ok(node) }
    }

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
