//! Images and targets however they are named: a file or block device, `REPO::NAME`, a URL,
//! or a node's volume (`volume:LABEL`, found through the providers: hence async). What the
//! subcommands do once their arguments are read.

use std::path::{Path, PathBuf};

use crate::create::CreateOptions;
use crate::error::ImageError;
use crate::node_repo::NodeRepo;
use crate::opened::Opened;
use crate::repo::{Added, Repo};
use crate::report::{Created, Report, Restored};
use crate::restore::RestoreOptions;
use crate::volume::volume_ref;

/// A progress callback: bytes done, and the total (0 while unknown).
pub type Hook<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Images `source` (a disk, a file of any format `create` reads, a URL, or a volume) into
/// `out`. `local_bin` is the lct-image to put on a node that holds the volume.
pub async fn create(
    source: &Path,
    out: &Path,
    options: CreateOptions,
    local_bin: PathBuf,
    progress: Hook<'_>,
) -> Result<Report<Created>, ImageError> {
    match volume_ref(source) {
        Some(label) => crate::volume::image_of(&label, out.to_path_buf(), options, local_bin).await,
        None => crate::source::create(source, out, &options, progress),
    }
}

/// Restores `image` (a file, `REPO::NAME`, a URL, `-`) onto `target` (a file, a block
/// device, a volume, or a node's device `node:NAME:/dev/DEVICE`).
pub async fn restore(
    image: &Path,
    target: &Path,
    options: RestoreOptions,
    local_bin: PathBuf,
    progress: Hook<'_>,
) -> Result<Report<Restored>, ImageError> {
    if let Some(node) = crate::node::node_ref(target) {
        let (name, device) = node?;
        let opened = Opened::open(image, options.allow_http)?;
        return crate::node::restore_onto(opened, &name, &device, options, local_bin).await;
    }
    match volume_ref(target) {
        Some(label) => {
            // From a repository on a node onto a volume on a node: node to node.
            if let Some(entry) = crate::node_repo::entry_name(image) {
                let (repo, name) = entry?;
                let repo = NodeRepo::open(&repo)?;
                if let Some((node, device)) = crate::volume::on_node_device(&label).await? {
                    return tokio::task::spawn_blocking(move || {
                        crate::repo_relay::restore(&repo, &name, &node, &device, &options)
                    })
                    .await
                    .map_err(|e| ImageError::Refused(e.to_string()))?;
                }
            }
            let opened = Opened::open(image, options.allow_http)?;
            crate::volume::restore_onto(opened, &label, options, local_bin).await
        }
        None => crate::restore::restore(image, target, &options, progress),
    }
}

/// Adds `source` to `repo` as `name`: an lct image (a file, `REPO::NAME`, a URL) as it is;
/// anything else (a disk, a volume) imaged first, into the repository's own tmp/ (same file
/// system, removed after).
pub async fn repo_add(
    repo: &Repo,
    source: &Path,
    name: &str,
    options: CreateOptions,
    local_bin: PathBuf,
    imaging: Hook<'_>,
    adding: Hook<'_>,
) -> Result<Added, ImageError> {
    let threads = crate::parallel::threads();
    let text = source.to_string_lossy();
    if crate::remote::is_url(&text) || crate::opened::repo_ref(source).is_some() || crate::opened::index(source).is_ok()
    {
        let image = Opened::open(source, options.allow_http)?;
        return repo.add(name, &image, threads, adding);
    }
    let tmp = repo.path().join("tmp");
    let tmp = lct_core::fsutil::temp_file_in(&tmp, "create.", ".lcti").map_err(crate::error::io_at(&tmp))?;
    let options = CreateOptions { allow_http: false, ..options };
    create(source, tmp.path(), options, local_bin, imaging).await?;
    repo.add(name, &Opened::open(tmp.path(), false)?, threads, adding)
}

/// Adds `source` to the repository on a node as `name`: an lct image streamed up as it is
/// (the node asks only for the extents it lacks); anything else imaged here first (into a
/// temporary file, removed after).
pub async fn node_repo_add(
    repo: &NodeRepo,
    source: &Path,
    name: &str,
    options: CreateOptions,
    local_bin: PathBuf,
) -> Result<Added, ImageError> {
    let text = source.to_string_lossy();
    let is_image = crate::remote::is_url(&text)
        || crate::opened::repo_ref(source).is_some()
        || crate::node_repo::entry_name(source).is_some()
        || crate::opened::index(source).is_ok();
    if is_image {
        let image = Opened::open(source, options.allow_http)?;
        return crate::repo_remote::add(repo, name, &image);
    }
    let tmp = lct_core::fsutil::temp_file_in(&std::env::temp_dir(), "lct-image-add.", ".lcti")
        .map_err(|e| ImageError::Refused(format!("a temporary file: {e}")))?;
    let options = CreateOptions { allow_http: false, ..options };
    create(source, tmp.path(), options, local_bin, &|_, _| {}).await?;
    crate::repo_remote::add(repo, name, &Opened::open(tmp.path(), false)?)
}
