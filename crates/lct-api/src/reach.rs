//! How a node's volumes are reached: here (a device on this machine) or on the node, over
//! the access its record names (SSH). The provider the volume is on decides; callers ask,
//! they do not look at which provider that is.

use std::path::PathBuf;

use lct_core::record::{Access, Node, ProviderName, Volume};

use crate::local::volume_path_in_machine;
use crate::provider::ProviderError;

/// Where a volume's blocks are read and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeDevice {
    /// A device on this machine.
    Here(PathBuf),
    /// A device on the node it is attached to, at this path, reached over the node's SSH.
    OnNode(String),
}

/// Where `volume` (attached to `node`) is read and written. On the local cloud an attached
/// volume is a loop device on this machine, whatever node it is attached to; `on_node` asks
/// for the node's side instead where the node is reached by SSH (a machine node), as it is
/// elsewhere (Linode).
pub fn volume_device(volume: &Volume, node: &Node, on_node: bool) -> Result<VolumeDevice, ProviderError> {
    let label = &volume.label;
    let ssh = matches!(node.access, Some(Access::Ssh { .. }));
    match (volume.provider, &volume.path) {
        (ProviderName::Local, Some(_)) if on_node && ssh => {
            Ok(VolumeDevice::OnNode(volume_path_in_machine(label.as_str())))
        }
        (ProviderName::Local, Some(path)) => Ok(VolumeDevice::Here(PathBuf::from(path))),
        (ProviderName::Local, None) => {
            Err(ProviderError::Invalid(format!("volume {label}: attached without a device path")))
        }
        (ProviderName::Linode, path) if ssh => {
            Ok(VolumeDevice::OnNode(path.clone().unwrap_or_else(|| volume_path_in_machine(label.as_str()))))
        }
        (ProviderName::Linode, _) => {
            Err(ProviderError::Invalid(format!("volume {label}: node {} is not reached by SSH", node.name)))
        }
    }
}
