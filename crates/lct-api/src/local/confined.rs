//! Paths inside a machine's root that lct writes before the first boot, resolved without
//! following the root's symbolic links.
//!
//! A root from an lct image is someone else's tree: `/etc` linked to the host's `/etc`, or
//! `/etc/hostname` linked to `/etc/shadow`, would make lct (running as the host's root, the
//! machine not yet booted) write on the host. Every directory on the way must be a real
//! directory (a link is refused, naming it; a missing one is made); a file lct replaces may
//! be a link and is removed first, never followed. Nothing else writes in the tree while the
//! machine is stopped, so checking then writing is sound.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::images::io_at;
use crate::ProviderError;

/// The directory `rel` inside `root`: made where missing, refused where a link or not a
/// directory.
pub fn dir(root: &Path, rel: &str) -> Result<PathBuf, ProviderError> {
    let mut path = root.to_path_buf();
    for part in Path::new(rel.trim_start_matches('/')).components() {
        let Component::Normal(part) = part else {
            return Err(ProviderError::Invalid(format!("machine path {rel:?}: only plain names")));
        };
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(ProviderError::Invalid(format!(
                    "the machine's root has a symbolic link at /{}: lct writes first-boot files only \
                     through real directories (an image that links them elsewhere is refused)",
                    path.strip_prefix(root).unwrap_or(&path).display()
                )));
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(ProviderError::Invalid(format!(
                    "the machine's root has a file at /{}, where a directory belongs",
                    path.strip_prefix(root).unwrap_or(&path).display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&path).map_err(io_at(&path))?,
            Err(e) => return Err(io_at(&path)(e)),
        }
    }
    Ok(path)
}

/// The directories lct writes first-boot files into (or clears): an image whose tree links
/// any of them elsewhere is refused when it is prepared, before any node is made.
/// (The last three: a machine's native first boot, [`super::native_boot`].)
pub const FIRST_BOOT_DIRS: &[&str] = &[
    "etc/ssh",
    "root/.ssh",
    "var/lib/cloud/seed/nocloud",
    "var/lib/dbus",
    "etc/systemd/system/lct-cloud-init.service.d",
    "usr/local/lib/lct",
    "etc/systemd/system-generators",
];

/// Refuses a tree in which a directory on the way to any of `rels` is a link (or not a
/// directory); nothing is made or changed.
pub fn refuse_links(root: &Path, rels: &[&str]) -> Result<(), ProviderError> {
    for rel in rels {
        let mut path = root.to_path_buf();
        for part in Path::new(rel).components() {
            path.push(part);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) => {
                    let what = if meta.file_type().is_symlink() { "a symbolic link" } else { "a file" };
                    return Err(ProviderError::Invalid(format!(
                        "its tree has {what} at /{}, where lct writes a machine's first-boot files \
                         (an image that links them elsewhere is refused)",
                        path.strip_prefix(root).unwrap_or(&path).display()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
    }
    Ok(())
}

/// The file `rel` inside `root`, ready to be replaced: its directories checked by [`dir`],
/// a link in its place removed (a directory there is refused).
pub fn file(root: &Path, rel: &str) -> Result<PathBuf, ProviderError> {
    let rel = rel.trim_start_matches('/');
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    if name.is_empty() || name == "." || name == ".." {
        return Err(ProviderError::Invalid(format!("machine path {rel:?}: not a file name")));
    }
    let path = dir(root, parent)?.join(name);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::remove_file(&path).map_err(io_at(&path))?,
        Ok(meta) if meta.is_dir() => {
            return Err(ProviderError::Invalid(format!(
                "the machine's root has a directory at /{rel}, where a file belongs"
            )));
        }
        _ => {}
    }
    Ok(path)
}

/// Removes the entries of directory `rel` (inside `root`) whose names `which` picks: links
/// and files removed, directories removed whole (their links not followed).
pub fn clear(root: &Path, rel: &str, which: impl Fn(&str) -> bool) -> Result<(), ProviderError> {
    let dir = dir(root, rel)?;
    for entry in fs::read_dir(&dir).map_err(io_at(&dir))?.flatten() {
        let name = entry.file_name();
        if !which(&name.to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let removed = if is_dir { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        removed.map_err(io_at(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    #[test]
    fn links_in_an_image_never_lead_a_write_out_of_the_root() {
        let host = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(host.path().join("shadow"), "secret").unwrap();
        // A linked directory on the way is refused, naming it.
        symlink(host.path(), r.join("etc")).unwrap();
        let e = super::file(r, "/etc/hostname").unwrap_err().to_string();
        assert!(e.contains("symbolic link at /etc"), "{e}");
        // A linked file is removed, not followed.
        std::fs::remove_file(r.join("etc")).unwrap();
        std::fs::create_dir(r.join("etc")).unwrap();
        symlink(host.path().join("shadow"), r.join("etc/hostname")).unwrap();
        let path = super::file(r, "/etc/hostname").unwrap();
        assert_eq!(path, r.join("etc/hostname"));
        assert!(!path.exists() && std::fs::symlink_metadata(&path).is_err());
        assert_eq!(std::fs::read_to_string(host.path().join("shadow")).unwrap(), "secret");
        // Missing directories are made; `..` is no name.
        assert!(super::file(r, "/var/lib/cloud/seed/nocloud/meta-data").is_ok());
        assert!(r.join("var/lib/cloud/seed/nocloud").is_dir());
        assert!(super::dir(r, "etc/../..").is_err());
        // Clearing removes a linked directory's link, not what it points to.
        symlink(host.path(), r.join("var/lib/cloud/instance")).unwrap();
        super::clear(r, "var/lib/cloud", |n| n == "instance").unwrap();
        assert!(host.path().join("shadow").exists());
        assert!(std::fs::symlink_metadata(r.join("var/lib/cloud/instance")).is_err());
    }
}
