//! The saved state of a lab (`STATE_DIR/local/cloud.json`), written before every change is
//! made, and the lock that makes one change at a time.

use std::collections::BTreeSet;
use std::fs;

use lct_core::fsutil::{Lock, atomic_write_json};
use lct_core::record::{Name, Node, Status, Volume, VolumeAttachment};
use serde::{Deserialize, Serialize};

use super::LocalCloud;
use super::machine;
use crate::ProviderError;

/// The saved state of one lab.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct CloudState {
    pub(super) lab: String,
    /// True once the lab and outside namespaces are complete.
    pub(super) lab_ready: bool,
    pub(super) next_id: u64,
    pub(super) nodes: Vec<Node>,
    pub(super) volumes: Vec<Volume>,
    /// The nodes that are machines (image debian-12).
    #[serde(default)]
    pub(super) machines: BTreeSet<Name>,
}

impl LocalCloud {
    pub(super) fn load(&self) -> Result<CloudState, ProviderError> {
        let path = self.state_path();
        let mut state = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<CloudState>(&bytes)
                .map_err(|e| ProviderError::Invalid(format!("{}: corrupt local-cloud state: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CloudState { next_id: 1, ..Default::default() },
            Err(source) => {
                return Err(ProviderError::Io { what: path.display().to_string(), error: source });
            }
        };
        let wanted = self.lab.clone().unwrap_or_else(|| "lct".to_string());
        if state.lab.is_empty() {
            // No hyphen, so "LAB-" prefixes of two labs never overlap.
            if wanted.is_empty()
                || wanted.len() > 20
                || !wanted.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(ProviderError::Invalid(format!(
                    "LCT_LAB {wanted:?} must be 1 to 20 lower-case letters and digits"
                )));
            }
            state.lab = wanted;
        } else if self.lab.as_ref().is_some_and(|l| *l != state.lab) {
            return Err(ProviderError::Invalid(format!(
                "this state directory belongs to lab {:?}, not {wanted:?} (LCT_LAB)",
                state.lab
            )));
        }
        Ok(state)
    }

    pub(super) fn save(&self, state: &CloudState) -> Result<(), ProviderError> {
        fs::create_dir_all(&self.dir)
            .map_err(|source| ProviderError::Io { what: self.dir.display().to_string(), error: source })?;
        atomic_write_json(&self.state_path(), state)
            .map_err(|source| ProviderError::Io { what: self.state_path().display().to_string(), error: source })
    }

    /// Takes the lab's lock, loads the state and finishes whatever a dead run left half-done.
    pub(super) fn begin(&self) -> Result<(Lock, CloudState), ProviderError> {
        if !lct_core::privilege::is_root() {
            return Err(ProviderError::NotRoot);
        }
        let lock_path = self.dir.join("lock");
        let lock = Lock::acquire(&lock_path)
            .map_err(|source| ProviderError::Io { what: lock_path.display().to_string(), error: source })?;
        let mut state = self.load()?;
        self.repair(&mut state, false)?;
        Ok((lock, state))
    }

    pub(super) fn node_view(state: &CloudState, node: &Node) -> Node {
        let mut node = node.clone();
        node.volumes = state
            .volumes
            .iter()
            .filter(|v| v.attached_to.as_ref() == Some(&node.name))
            .map(|v| VolumeAttachment {
                label: v.label.clone(),
                size_mib: v.size_mib,
                // Inside a machine, the volume's path is where the machine sees it.
                path: if state.machines.contains(&node.name) {
                    machine::volume_path_in_machine(v.label.as_str())
                } else {
                    v.path.clone().unwrap_or_default()
                },
            })
            .collect();
        node
    }

    pub(super) fn find<'a>(state: &'a CloudState, name: &Name) -> Result<&'a Node, ProviderError> {
        state.nodes.iter().find(|n| &n.name == name).ok_or_else(|| ProviderError::NoSuchNode(name.clone()))
    }
}

pub(super) fn set_status(state: &mut CloudState, name: &Name, status: Status) {
    if let Some(n) = state.nodes.iter_mut().find(|n| &n.name == name) {
        n.status = status;
    }
}
