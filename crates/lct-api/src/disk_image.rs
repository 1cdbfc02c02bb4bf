//! Nodes made from lct images (golden images): which image names are lct images, and the
//! one program that reads them.
//!
//! A node's `image` is a provider's own image (`debian-12`, `lct/netns`, `linode/debian12`,
//! `private/123`) or an lct image: `REPO::NAME` (an entry of an lct-image repository, the
//! repository a directory or `ssh://NODE/PATH`), a path to an image file (absolute, or
//! starting with `./`), or an `https://` URL. lct-api does not read the image format itself:
//! lct-image owns it and sits above lct-api, so the providers run the `lct-image` program
//! (beside this program, else on the PATH), with argument vectors, never a shell.

use std::path::{Path, PathBuf};

use crate::provider::ProviderError;

/// An lct image a node is made from, as the node's `image` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LctImage {
    /// `REPO::NAME`.
    Entry { repo: String, name: String },
    /// An image file.
    File(PathBuf),
    /// An image behind an `https://` URL.
    Url(String),
}

impl LctImage {
    /// `Some` when `image` names an lct image, `None` for a provider's own image name.
    pub fn parse(image: &str) -> Option<LctImage> {
        if let Some((repo, name)) = image.rsplit_once("::") {
            return Some(LctImage::Entry { repo: repo.to_string(), name: name.to_string() });
        }
        if image.starts_with("https://") || image.starts_with("http://") {
            return Some(LctImage::Url(image.to_string()));
        }
        if image.starts_with('/') || image.starts_with("./") || image.starts_with("../") {
            return Some(LctImage::File(PathBuf::from(image)));
        }
        None
    }

    /// The argument lct-image takes for it.
    pub fn argument(&self) -> String {
        match self {
            LctImage::Entry { repo, name } => format!("{repo}::{name}"),
            LctImage::File(path) => path.display().to_string(),
            LctImage::Url(url) => url.clone(),
        }
    }
}

/// The `lct-image` program: beside the running program (a build or an install puts them
/// together), else the first on the PATH.
pub fn lct_image_program() -> Result<PathBuf, ProviderError> {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join("lct-image")));
    if let Some(p) = beside.filter(|p| p.is_file()) {
        return Ok(p);
    }
    // Test binaries live in target/PROFILE/deps: the programs are one level up.
    let above =
        std::env::current_exe().ok().and_then(|exe| exe.parent().and_then(Path::parent).map(|d| d.join("lct-image")));
    if let Some(p) = above.filter(|p| p.is_file()) {
        return Ok(p);
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("lct-image")).find(|p| p.is_file()))
        .ok_or_else(|| {
            ProviderError::Unsupported(
                "a node from an lct image needs the lct-image program (beside lct-api or on the PATH)".into(),
            )
        })
}

/// Where a node's disk is read when it is captured (defined beside the trait that returns
/// it, so that this file and `provider` do not import each other).
pub use crate::provider::DiskCapture;

#[cfg(test)]
mod tests {
    use super::LctImage;

    #[test]
    fn lct_images_are_told_from_provider_images() {
        for provider in ["debian-12", "lct/netns", "linode/debian12", "private/123"] {
            assert_eq!(LctImage::parse(provider), None, "{provider}");
        }
        assert_eq!(
            LctImage::parse("/srv/repo::zookeeper-1a2b"),
            Some(LctImage::Entry { repo: "/srv/repo".into(), name: "zookeeper-1a2b".into() })
        );
        assert_eq!(
            LctImage::parse("ssh://store-1/srv/repo::zk"),
            Some(LctImage::Entry { repo: "ssh://store-1/srv/repo".into(), name: "zk".into() })
        );
        assert_eq!(LctImage::parse("./zk.lct"), Some(LctImage::File("./zk.lct".into())));
        assert_eq!(LctImage::parse("https://x.example/zk.lct"), Some(LctImage::Url("https://x.example/zk.lct".into())));
    }
}
