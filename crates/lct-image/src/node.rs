//! Images onto a block device of a node (`node:NAME:/dev/DEVICE`): how a Linode node is made
//! from an lct image through a helper disk (lct-api runs `lct-image restore IMAGE
//! node:NAME:/dev/sdb`). The node is found through the providers, its SSH waited for (its
//! host key pinned, as every connection of lct's), then the image is streamed to it as to a
//! volume on a node ([`crate::volume`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lct_api::Provider;
use lct_core::record::Node;

use crate::error::ImageError;
use crate::opened::Opened;
use crate::report::{Report, Restored};
use crate::restore::RestoreOptions;

/// How long a node that was just booted has to answer SSH.
const SSH_WAIT: Duration = Duration::from_secs(300);

fn refused(message: String) -> ImageError {
    ImageError::Refused(message)
}

/// `node:NAME:DEVICE` as (NAME, DEVICE), if `spec` says so. The device is a plain path
/// under /dev (letters, digits, `/`, `-`, `_`; no `..`): it goes into a command on the node.
pub fn node_ref(spec: &Path) -> Option<Result<(String, String), ImageError>> {
    let rest = spec.to_str()?.strip_prefix("node:")?;
    let Some((name, device)) = rest.split_once(':') else {
        return Some(Err(refused(format!("{rest:?}: a node's device is node:NAME:/dev/DEVICE"))));
    };
    let plain = device.strip_prefix("/dev/").is_some_and(|d| {
        !d.is_empty()
            && d.len() <= 200
            && !d.split('/').any(|part| part.is_empty() || part == "..")
            && d.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
    });
    if !plain {
        return Some(Err(refused(format!("node:{name}:{device}: the device must be a plain path under /dev"))));
    }
    if name.parse::<lct_core::record::Name>().is_err() {
        return Some(Err(refused(format!("node:{name}:{device}: {name:?} is not a node name"))));
    }
    Some(Ok((name.to_string(), device.to_string())))
}

/// Finds node `name` among the providers lct uses (`LCT_PROVIDER`, else those with state).
async fn locate(name: &str) -> Result<Node, ImageError> {
    for provider in crate::volume::providers()? {
        let nodes = provider.list().await.map_err(|e| refused(e.to_string()))?;
        if let Some(node) = nodes.into_iter().find(|n| n.name.as_str() == name) {
            return Ok(node);
        }
    }
    Err(refused(format!("node {name}: no such node (lct-api list shows them)")))
}

/// Waits until the node answers SSH: a node that was just booted takes a while. A refusal
/// before any connection (an address out of reach) is not waited for.
async fn wait_ssh(node: &Node) -> Result<(), ImageError> {
    use lct_inventory::exec::{ExecOptions, Outcome, exec};
    let options = ExecOptions {
        timeout: Some(Duration::from_secs(60)),
        ssh_options: vec!["ConnectTimeout=5".into()],
        ..ExecOptions::default()
    };
    let deadline = Instant::now() + SSH_WAIT;
    let argv = vec!["true".to_string()];
    loop {
        let results = exec(vec![node.clone()], argv.clone(), &options, None).await;
        let Some(r) = results.into_iter().next() else { return Err(refused(format!("node {}: no answer", node.name))) };
        if r.outcome.success() {
            return Ok(());
        }
        if matches!(r.outcome, Outcome::NotStarted { .. }) || Instant::now() > deadline {
            return Err(refused(format!("node {}: SSH: {}", node.name, r.outcome.describe())));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Restores `opened` onto `device` of node `name`.
pub async fn restore_onto(
    opened: Opened,
    name: &str,
    device: &str,
    options: RestoreOptions,
    local_bin: PathBuf,
) -> Result<Report<Restored>, ImageError> {
    let node = locate(name).await?;
    wait_ssh(&node).await?;
    crate::volume::restore_on_node(node, device.to_string(), opened, options, local_bin).await
}

#[cfg(test)]
mod tests {
    use super::node_ref;
    use std::path::Path;

    #[test]
    fn a_nodes_device_is_a_plain_path_under_dev() {
        let ok = node_ref(Path::new("node:zk-1:/dev/sdb")).unwrap().unwrap();
        assert_eq!(ok, ("zk-1".to_string(), "/dev/sdb".to_string()));
        assert!(node_ref(Path::new("/dev/sdb")).is_none());
        for bad in [
            "node:zk-1:/dev/sdb; rm -rf /",
            "node:zk-1:/dev/../etc/passwd",
            "node:zk-1:/etc/passwd",
            "node:zk-1:/dev/",
            "node:zk-1:/dev/sd$(id)",
            "node:zk 1:/dev/sdb",
            "node:zk-1",
        ] {
            assert!(node_ref(Path::new(bad)).unwrap().is_err(), "{bad}");
        }
    }
}
