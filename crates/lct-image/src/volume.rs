//! Images onto and from the block volumes of nodes, on every provider. A volume is found by
//! its label among the providers lct uses (`LCT_PROVIDER`, else those with state). On the
//! local cloud an attached volume is a loop device on this machine: it is restored or
//! imaged here, whatever node (namespace or machine) it is attached to. Elsewhere (Linode)
//! it is restored on its node: lct-image is installed there (checked by SHA-256, as lct's
//! other node-side programs are), the image is streamed to it over SSH (`send`, into
//! `restore -`, every extent's hash checked on the node before it is written) and imaged
//! the other way (`create DEVICE -` there, the image back on the pipe).
//! `LCT_IMAGE_ON_NODE=1` takes that way on the local cloud too (machine nodes), which is
//! how it is tested here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use lct_api::{AnyProvider, Provider};
use lct_core::record::{Node, Volume};

use crate::create::CreateOptions;
use crate::error::ImageError;
use crate::node_pipe::on_node;
use crate::opened::Opened;
use crate::report::{Created, Report, Restored};
use crate::restore::RestoreOptions;

fn refused(message: String) -> ImageError {
    ImageError::Refused(message)
}

/// `volume:LABEL`, if `spec` says so.
pub fn volume_ref(spec: &Path) -> Option<String> {
    spec.to_str()?.strip_prefix("volume:").filter(|l| !l.is_empty()).map(String::from)
}

/// Where a volume is: its record and the node it is attached to.
pub struct Located {
    pub volume: Volume,
    pub node: Option<Node>,
}

/// The providers lct uses (`LCT_PROVIDER`, else those with state): with the cluster
/// records, a volume or node on Linode is found without LCT_PROVIDER when a cluster record
/// names Linode (as lct-inventory's queries do).
pub(crate) fn providers() -> Result<Vec<AnyProvider>, ImageError> {
    let state = lct_core::state::state_dir();
    let records =
        lct_core::state::ClusterStore::open().and_then(|store| store.load()).map_err(|e| refused(e.to_string()))?;
    let asked =
        lct_api::providers_to_ask(&[], &records, &Default::default(), &state).map_err(|e| refused(e.to_string()))?;
    asked.into_iter().map(|name| AnyProvider::from_env(name).map_err(|e| refused(e.to_string()))).collect()
}

/// Finds volume `label` among the providers lct uses.
pub async fn locate(label: &str) -> Result<Located, ImageError> {
    for provider in providers()? {
        let volumes = provider.volumes().await.map_err(|e| refused(e.to_string()))?;
        if let Some(volume) = volumes.into_iter().find(|v| v.label.as_str() == label) {
            let node = match &volume.attached_to {
                Some(n) => {
                    provider.list().await.map_err(|e| refused(e.to_string()))?.into_iter().find(|x| x.name == *n)
                }
                None => None,
            };
            return Ok(Located { volume, node });
        }
    }
    Err(refused(format!("volume {label}: no such volume (lct-api volume list shows them)")))
}

/// How a located volume is reached.
enum Reach {
    /// A device on this machine.
    Here(PathBuf),
    /// A device on a node, over its access method.
    Node(Box<Node>, String),
}

fn reach(located: &Located) -> Result<Reach, ImageError> {
    let label = &located.volume.label;
    let Some(node) = &located.node else {
        return Err(refused(format!(
            "volume {label} is not attached: attach it to a node first (lct-api volume attach)"
        )));
    };
    // LCT_IMAGE_ON_NODE=1: on the node even on the local cloud (a machine node), as on Linode.
    let on_node = std::env::var("LCT_IMAGE_ON_NODE").is_ok_and(|v| v == "1");
    match lct_api::reach::volume_device(&located.volume, node, on_node).map_err(|e| refused(e.to_string()))? {
        lct_api::reach::VolumeDevice::Here(path) => Ok(Reach::Here(path)),
        lct_api::reach::VolumeDevice::OnNode(path) => Ok(Reach::Node(Box::new(node.clone()), path)),
    }
}

/// Volume `label`'s device on the node it is attached to, when it is reached there (a
/// node's over SSH); `None` when it is a device on this machine.
pub async fn on_node_device(label: &str) -> Result<Option<(Node, String)>, ImageError> {
    match reach(&locate(label).await?)? {
        Reach::Here(_) => Ok(None),
        Reach::Node(node, device) => Ok(Some((*node, device))),
    }
}

/// Puts lct-image (this very program, `local_bin`) on the node, unless it has it.
async fn install_on(node: &Node, local_bin: &Path) -> Result<(), ImageError> {
    let bytes = std::fs::read(local_bin).map_err(crate::error::io_at(local_bin))?;
    let program = lct_inventory::install::Program::new("lct-image", bytes);
    let options = lct_inventory::exec::ExecOptions::default();
    for r in lct_inventory::install::install(std::slice::from_ref(node), &[program], &options).await {
        if !r.outcome.success() {
            return Err(refused(format!("node {}: installing lct-image: {}", r.node, r.stderr.trim())));
        }
    }
    Ok(())
}

/// Restores `opened` onto volume `label` wherever it is attached. `local_bin` is the
/// lct-image to put on a node that needs one.
pub async fn restore_onto(
    opened: Opened,
    label: &str,
    options: RestoreOptions,
    local_bin: PathBuf,
) -> Result<Report<Restored>, ImageError> {
    let located = locate(label).await?;
    match reach(&located)? {
        Reach::Here(path) => {
            tokio::task::spawn_blocking(move || crate::restore::restore_opened(&opened, &path, &options, &|_, _| {}))
                .await
                .map_err(|e| refused(e.to_string()))?
        }
        Reach::Node(node, device) => restore_on_node(*node, device, opened, options, local_bin).await,
    }
}

/// Restores `opened` onto `device` of `node`, over the node's access: lct-image put there,
/// the image streamed into its `restore -` (every extent's hash checked before it is written).
pub(crate) async fn restore_on_node(
    node: Node,
    device: String,
    opened: Opened,
    options: RestoreOptions,
    local_bin: PathBuf,
) -> Result<Report<Restored>, ImageError> {
    install_on(&node, &local_bin).await?;
    tokio::task::spawn_blocking(move || {
        let mut argv = vec!["lct-image", "-o", "jsonl", "restore", "-", &device];
        // What was asked of the restore holds on the node too.
        if options.skip_matching {
            argv.push("--skip-matching");
        }
        if options.force {
            argv.push("--force");
        }
        let mut command = on_node(&node, &argv)?;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| refused(format!("node {}: {e}", node.name)))?;
        let mut stdin = std::io::BufWriter::with_capacity(1 << 20, child.stdin.take().expect("piped"));
        let sent = opened.send(&mut stdin);
        drop(stdin);
        let out = child.wait_with_output().map_err(|e| refused(format!("node {}: {e}", node.name)))?;
        if !out.status.success() {
            return Err(refused(format!(
                "node {}: lct-image restore: {}",
                node.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        sent?;
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .map(|_| Report::of(Path::new(&opened.name), Some(Path::new(&device)), &opened.index, 0))
            .ok_or_else(|| refused(format!("node {}: lct-image restore said nothing", node.name)))
    })
    .await
    .map_err(|e| refused(e.to_string()))?
}

/// Images volume `label` into the image file `out`.
pub async fn image_of(
    label: &str,
    out: PathBuf,
    options: CreateOptions,
    local_bin: PathBuf,
) -> Result<Report<Created>, ImageError> {
    let located = locate(label).await?;
    let source = format!("volume:{label}");
    match reach(&located)? {
        Reach::Here(path) => tokio::task::spawn_blocking(move || {
            crate::create::create_from_file(&path, &source, &out, &options, &|_, _| {})
        })
        .await
        .map_err(|e| refused(e.to_string()))?,
        Reach::Node(node, device) => image_device_on(*node, device, out, options, local_bin).await,
    }
}

/// Images block device `device` of `node` into the image file `out` on this machine:
/// lct-image put on the node, `create DEVICE -` run there, the image back on the pipe and
/// checked whole before it takes its name (a volume; a node's own disk that `lct-plan
/// bake` captures on a helper disk).
pub async fn image_device_on(
    node: Node,
    device: String,
    out: PathBuf,
    options: CreateOptions,
    local_bin: PathBuf,
) -> Result<Report<Created>, ImageError> {
    install_on(&node, &local_bin).await?;
    tokio::task::spawn_blocking(move || {
        let partial = crate::disk::partial_path(&out);
        let file = std::fs::File::create(&partial).map_err(crate::error::io_at(&partial))?;
        let level = options.level.to_string();
        let mut argv = vec!["lct-image", "create", &device, "-", "--level", &level];
        if options.force {
            argv.push("--force");
        }
        let status = on_node(&node, &argv)?
            .stdin(Stdio::null())
            .stdout(file)
            .status()
            .map_err(|e| refused(format!("node {}: {e}", node.name)))?;
        if !status.success() {
            let _ = std::fs::remove_file(&partial);
            return Err(refused(format!("node {}: lct-image create {device} failed", node.name)));
        }
        // The image is checked whole before it takes the name.
        let checked = crate::restore::verify(&partial, None, crate::parallel::threads(), false, &|_, _| {});
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(crate::error::io_at(&partial))?;
        std::fs::rename(&partial, &out).map_err(crate::error::io_at(&out))?;
        let index = crate::opened::index(&out)?;
        let _ = std::io::stderr().flush();
        Ok(Report::of(&out, None, &index, 0))
    })
    .await
    .map_err(|e| refused(e.to_string()))?
}
