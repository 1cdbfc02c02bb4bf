//! An image repository: a directory (on any disk, or a mounted block volume) holding many
//! images, each extent stored once whatever the number of images that have it.
//!
//! ```text
//! REPO/lct-image-repo        what this directory is ("lct-image repository 1")
//! REPO/lock                  flock: shared by add, export, restore and verify; exclusive by prune
//! REPO/extents/ab/abcd...    one extent's zstd frame, named by the BLAKE3 of its bytes
//! REPO/images/NAME           an image: the trailer its export ends with (index and seek table)
//! REPO/tmp/                  files on their way in
//! ```
//!
//! Content addressing makes the store grow with unique data only: a second image that
//! shares most extents with the first costs little more than its changed extents. An add
//! writes the new extents under temporary names, syncs the file system, renames them into
//! place, syncs again, and only then links the image's record in (without replacing one of
//! the same name): a crash leaves no half-visible image, and two writers adding the same
//! extent rename identical bytes over each other. Zero extents are stored as nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use lct_core::record::Record;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::disk::partial_path;
use crate::error::{ImageError, io_at};
use crate::format::{Extent, Index, Kind, MAX_TRAILER, Manifest, hex, root_hash};
use crate::frame::{ReadFrames, check_frame, zero_frame};
use crate::parallel::ordered;

const MARKER: &str = "lct-image repository 1\n";

/// A repository, opened.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
}

/// An image in a repository, as `list` and `show` report it (`image-entry`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Entry {
    pub repo: String,
    pub name: String,
    pub size: u64,
    pub label: String,
    pub source: String,
    pub created: u64,
    pub extents: usize,
    pub data_extents: usize,
    /// The image's compressed bytes (what an export of it takes).
    pub image_bytes: u64,
    pub root: String,
}

/// What an add did (`image-added`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Added {
    pub repo: String,
    pub name: String,
    pub size: u64,
    pub data_extents: usize,
    /// Data extents the repository did not hold yet, and their compressed bytes.
    pub new_extents: usize,
    pub new_bytes: u64,
}

/// What a prune removed (`image-pruned`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Pruned {
    pub repo: String,
    pub removed_extents: usize,
    pub removed_bytes: u64,
    pub kept_extents: usize,
}

impl Record for Entry {
    const KIND: &'static str = "image-entry";
    const VERSION: u32 = 1;
}

impl Record for Added {
    const KIND: &'static str = "image-added";
    const VERSION: u32 = 1;
}

impl Record for Pruned {
    const KIND: &'static str = "image-pruned";
    const VERSION: u32 = 1;
}

impl Added {
    /// The line a terminal shows.
    pub fn summary(&self) -> String {
        format!(
            "{}::{}: {} data extents, {} new ({})",
            self.repo,
            self.name,
            self.data_extents,
            self.new_extents,
            mib(self.new_bytes)
        )
    }
}

impl Pruned {
    /// The line a terminal shows (`dry_run`: what a prune would remove).
    pub fn summary(&self, dry_run: bool) -> String {
        format!(
            "{}: {} {} extents ({}), kept {}",
            self.repo,
            if dry_run { "would remove" } else { "removed" },
            self.removed_extents,
            mib(self.removed_bytes),
            self.kept_extents
        )
    }
}

/// The images of a repository as a terminal shows them.
pub fn table(entries: &[Entry]) -> String {
    let mut text =
        format!("{:<24} {:>12} {:>12} {:>8}  {:<16} LABEL\n", "NAME", "SIZE", "STORED", "EXTENTS", "CREATED");
    for e in entries {
        text.push_str(&format!(
            "{:<24} {:>12} {:>12} {:>8}  {:<16}  {}\n",
            e.name,
            mib(e.size),
            mib(e.image_bytes),
            e.data_extents,
            utc(e.created),
            e.label
        ));
    }
    text
}

/// Seconds since 1970 as `YYYY-MM-DD HH:MM` (UTC), for tables.
fn utc(seconds: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    lct_api::linode::api::api_time(at)[..16].replacen('T', " ", 1)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// A repository's file, read only up to `limit` bytes: longer is an error naming it (what
/// a file holds is not trusted to be what its name says).
fn read_at_most(file: File, limit: u64, path: &Path) -> Result<Vec<u8>, ImageError> {
    let mut bytes = Vec::new();
    io::Read::take(file, limit + 1).read_to_end(&mut bytes).map_err(io_at(path))?;
    if bytes.len() as u64 > limit {
        return Err(refused(format!("{}: longer than the {limit} bytes it may have", path.display())));
    }
    Ok(bytes)
}

fn refused(message: String) -> ImageError {
    ImageError::Refused(message)
}

/// A name an image may have in a repository: a file name, nothing that climbs out.
pub(crate) fn check_name(name: &str) -> Result<(), ImageError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+'));
    if ok {
        Ok(())
    } else {
        Err(refused(format!("{name:?}: not an image name (letters, digits, - _ . @ +; not starting with a dot)")))
    }
}

impl Repo {
    /// Makes a repository in `dir` (which may exist, empty or already a repository).
    pub fn init(dir: &Path) -> Result<Repo, ImageError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let marker = dir.join("lct-image-repo");
        if !marker.exists() {
            let busy = fs::read_dir(dir).map_err(io_at(dir))?.next().is_some();
            if busy {
                return Err(refused(format!("{}: not empty, and not an image repository", dir.display())));
            }
        }
        for sub in ["extents", "images", "tmp"] {
            fs::create_dir_all(dir.join(sub)).map_err(io_at(dir))?;
        }
        if !marker.exists() {
            lct_core::fsutil::atomic_write(&marker, MARKER.as_bytes(), 0o644).map_err(io_at(&marker))?;
        }
        Repo::open(dir)
    }

    /// Opens the repository in `dir`.
    pub fn open(dir: &Path) -> Result<Repo, ImageError> {
        let marker = dir.join("lct-image-repo");
        match File::open(&marker) {
            Ok(file) => match read_at_most(file, 256, &marker) {
                Ok(text) if text == MARKER.as_bytes() => Ok(Repo { root: dir.to_path_buf() }),
                _ => Err(refused(format!("{}: a repository of another version", dir.display()))),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(refused(format!(
                "{}: not an image repository (lct-image repo init {} makes one)",
                dir.display(),
                dir.display()
            ))),
            Err(e) => Err(io_at(&marker)(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The repository's lock: shared by writers of new things (adds) and readers, exclusive
    /// by what deletes extents (prune), so an add never counts on an extent being pruned.
    pub(crate) fn lock(&self, exclusive: bool) -> Result<File, ImageError> {
        let path = self.root.join("lock");
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io_at(&path))?;
        if exclusive { file.lock() } else { file.lock_shared() }.map_err(io_at(&path))?;
        Ok(file)
    }

    /// Whether the repository has the extent of this hash.
    pub(crate) fn holds(&self, hash: &[u8; 32]) -> bool {
        self.extent_path(hash).exists()
    }

    fn extent_path(&self, hash: &[u8; 32]) -> PathBuf {
        let name = hex(hash);
        self.root.join("extents").join(&name[..2]).join(name)
    }

    fn image_path(&self, name: &str) -> PathBuf {
        self.root.join("images").join(name)
    }

    /// Syncs the file system the repository is on.
    fn sync(&self) -> Result<(), ImageError> {
        let dir = File::open(&self.root).map_err(io_at(&self.root))?;
        // SAFETY: syncfs(2) on a descriptor we own; no memory is passed.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(io_at(&self.root)(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Adds an image (a file, another repository's, one by URL) as `name`: its new extents
    /// checked (each frame decompresses to its hash) and stored, then the image made
    /// visible at once. Extents the repository holds are not read.
    pub fn add(
        &self,
        name: &str,
        opened: &dyn ReadFrames,
        threads: usize,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Added, ImageError> {
        check_name(name)?;
        let _shared = self.lock(false)?;
        if self.image_path(name).exists() {
            return Err(refused(format!("{}: there is already an image {name} (rm it first)", self.root.display())));
        }
        let index = opened.index();
        let image = Path::new(opened.name());
        let size = index.manifest.size;
        let tmp = self.root.join("tmp");
        let (mut new_extents, mut new_bytes) = (0usize, 0u64);
        // Extents whose frames were written under temporary names: renamed after a sync.
        let mut staged: Vec<(tempfile::TempPath, PathBuf)> = Vec::new();
        ordered(
            threads,
            threads * 2 + 2,
            |i| {
                let e = index.extents.get(i)?;
                // Zero extents, and extents the repository holds, are not read at all.
                if e.kind == Kind::Zero || self.extent_path(&e.hash).exists() {
                    return Some(Ok(None));
                }
                Some(opened.frame(e).map(Some))
            },
            |i, frame: Option<Vec<u8>>| {
                let Some(frame) = frame else { return Ok(None) };
                let e = &index.extents[i];
                check_frame(image, i, e, &frame)?;
                Ok(Some(frame))
            },
            |i, frame| {
                let e = &index.extents[i];
                if let Some(frame) = frame {
                    let mut file = lct_core::fsutil::temp_file_in(&tmp, "extent.", "").map_err(io_at(&tmp))?;
                    file.write_all(&frame).map_err(io_at(&tmp))?;
                    new_extents += 1;
                    new_bytes += frame.len() as u64;
                    staged.push((file.into_temp_path(), self.extent_path(&e.hash)));
                }
                progress(e.offset + u64::from(e.len), size);
                Ok(())
            },
        )?;
        // Durable before visible: the frames, then their names, then the image.
        self.sync()?;
        for (file, path) in staged {
            let dir = path.parent().expect("extents/ab");
            fs::create_dir_all(dir).map_err(io_at(dir))?;
            file.persist(&path).map_err(|e| io_at(&path)(e.error))?;
        }
        self.sync()?;
        let stored = self.as_stored(index);
        self.link_image(name, &stored.trailer())?;
        let data_extents = index.extents.iter().filter(|e| e.kind == Kind::Data).count();
        Ok(Added {
            repo: self.root.display().to_string(),
            name: name.to_string(),
            size,
            data_extents,
            new_extents,
            new_bytes,
        })
    }

    /// The index as an export lays the image out (the same frames, one after another).
    fn as_stored(&self, index: &Index) -> Index {
        let mut coffset = 0;
        let extents: Vec<Extent> = index
            .extents
            .iter()
            .map(|e| {
                let csize = match e.kind {
                    Kind::Data => e.csize,
                    Kind::Zero => zero_frame(e.len as usize).len() as u32,
                };
                let stored = Extent { coffset, csize, ..e.clone() };
                coffset += u64::from(csize);
                stored
            })
            .collect();
        let root = root_hash(&extents);
        Index { manifest: index.manifest.clone(), extents, root }
    }

    /// Makes image `name` visible with `trailer`, never over one of the same name.
    fn link_image(&self, name: &str, trailer: &[u8]) -> Result<(), ImageError> {
        let tmp = self.root.join("tmp");
        let mut file = lct_core::fsutil::temp_file_in(&tmp, "image.", "").map_err(io_at(&tmp))?;
        file.write_all(trailer).map_err(io_at(&tmp))?;
        file.as_file().sync_all().map_err(io_at(&tmp))?;
        let path = self.image_path(name);
        // A hard link fails if the name exists: two writers of one name, one wins.
        fs::hard_link(file.path(), &path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                refused(format!("{}: there is already an image {name}", self.root.display()))
            }
            _ => io_at(&path)(e),
        })?;
        let images = self.root.join("images");
        File::open(&images).and_then(|d| d.sync_all()).map_err(io_at(&images))
    }

    /// Image `name`'s index (as its export lays it out).
    pub fn index(&self, name: &str) -> Result<Index, ImageError> {
        check_name(name)?;
        let path = self.image_path(name);
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => refused(format!("{}: no image {name}", self.root.display())),
            _ => io_at(&path)(e),
        })?;
        let trailer = read_at_most(file, MAX_TRAILER, &path)?;
        Index::from_trailer(&trailer).map_err(|error| ImageError::Format { path: path.display().to_string(), error })
    }

    /// Extent `e`'s frame (a zero extent's is made, not stored).
    pub fn frame(&self, e: &Extent) -> Result<Vec<u8>, ImageError> {
        if e.kind == Kind::Zero {
            return Ok(zero_frame(e.len as usize));
        }
        let path = self.extent_path(&e.hash);
        let frame = read_at_most(File::open(&path).map_err(io_at(&path))?, u64::from(e.csize), &path)?;
        if frame.len() != e.csize as usize {
            return Err(refused(format!(
                "{}: the stored frame has {} bytes, the index says {}",
                path.display(),
                frame.len(),
                e.csize
            )));
        }
        Ok(frame)
    }

    /// Every image, by name.
    pub fn list(&self) -> Result<Vec<Entry>, ImageError> {
        let images = self.root.join("images");
        let mut names: Vec<String> = fs::read_dir(&images)
            .map_err(io_at(&images))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| check_name(n).is_ok())
            .collect();
        names.sort();
        names.iter().map(|n| self.show(n)).collect()
    }

    /// One image's entry.
    pub fn show(&self, name: &str) -> Result<Entry, ImageError> {
        let index = self.index(name)?;
        let Manifest { size, label, source, created, .. } = index.manifest.clone();
        Ok(Entry {
            repo: self.root.display().to_string(),
            name: name.to_string(),
            size,
            label,
            source,
            created,
            extents: index.extents.len(),
            data_extents: index.extents.iter().filter(|e| e.kind == Kind::Data).count(),
            image_bytes: index.extents.iter().map(|e| u64::from(e.csize)).sum(),
            root: hex(&index.root),
        })
    }

    /// Removes image `name` (its extents stay until `prune`).
    pub fn remove(&self, name: &str) -> Result<(), ImageError> {
        self.index(name)?;
        let path = self.image_path(name);
        fs::remove_file(&path).map_err(io_at(&path))?;
        let images = self.root.join("images");
        File::open(&images).and_then(|d| d.sync_all()).map_err(io_at(&images))
    }

    /// Removes the extents no image uses (and what a crash left in tmp/), under the
    /// exclusive lock; `dry_run` only counts them.
    pub fn prune(&self, dry_run: bool) -> Result<Pruned, ImageError> {
        let _exclusive = self.lock(true)?;
        let mut used = std::collections::HashSet::new();
        for entry in self.list()? {
            for e in self.index(&entry.name)?.extents {
                if e.kind == Kind::Data {
                    used.insert(hex(&e.hash));
                }
            }
        }
        let (mut removed_extents, mut removed_bytes, mut kept_extents) = (0, 0, 0);
        let extents = self.root.join("extents");
        for dir in fs::read_dir(&extents).map_err(io_at(&extents))? {
            let dir = dir.map_err(io_at(&extents))?.path();
            for file in fs::read_dir(&dir).map_err(io_at(&dir))? {
                let file = file.map_err(io_at(&dir))?;
                let name = file.file_name().to_string_lossy().to_string();
                if used.contains(&name) {
                    kept_extents += 1;
                    continue;
                }
                removed_extents += 1;
                removed_bytes += file.metadata().map_err(io_at(&dir))?.len();
                if !dry_run {
                    fs::remove_file(file.path()).map_err(io_at(&file.path()))?;
                }
            }
        }
        if !dry_run {
            let tmp = self.root.join("tmp");
            for file in fs::read_dir(&tmp).map_err(io_at(&tmp))?.flatten() {
                let _ = fs::remove_file(file.path());
            }
        }
        Ok(Pruned { repo: self.root.display().to_string(), removed_extents, removed_bytes, kept_extents })
    }

    /// Writes image `name` out as a standalone image file (`OUT.partial`, synced, renamed).
    pub fn export(&self, name: &str, out: &Path, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<(), ImageError> {
        let _shared = self.lock(false)?;
        let index = self.index(name)?;
        let partial = partial_path(out);
        let file = File::create(&partial).map_err(io_at(&partial))?;
        let mut writer = io::BufWriter::with_capacity(1 << 20, file);
        for e in &index.extents {
            let frame = self.frame(e)?;
            writer.write_all(&frame).map_err(io_at(&partial))?;
            progress(e.offset + u64::from(e.len), index.manifest.size);
        }
        writer.write_all(&index.trailer()).map_err(io_at(&partial))?;
        let file = writer.into_inner().map_err(|e| io_at(&partial)(e.into_error()))?;
        file.sync_all().map_err(io_at(&partial))?;
        fs::rename(&partial, out).map_err(io_at(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(951_825_600), "2000-02-29 12:00");
        assert_eq!(utc(1_795_834_919), "2026-11-28 03:01");
    }

    /// A repository's files are read only up to what they may hold: an image record longer
    /// than any trailer (a sparse 1 TiB file), an extent file longer than its frame, a marker
    /// of a gigabyte are refused by name, not read whole.
    #[test]
    fn oversized_repository_files_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(dir.path()).unwrap();
        let record = File::create(repo.image_path("huge")).unwrap();
        record.set_len(1 << 40).unwrap();
        let error = repo.index("huge").unwrap_err().to_string();
        assert!(error.contains("longer than the") && error.contains("images/huge"), "{error}");

        let hash = [7u8; 32];
        let path = repo.extent_path(&hash);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        File::create(&path).unwrap().set_len(1 << 40).unwrap();
        let e = Extent { offset: 0, len: 4096, coffset: 0, csize: 100, kind: Kind::Data, hash };
        let error = repo.frame(&e).unwrap_err().to_string();
        assert!(error.contains("longer than the 100 bytes"), "{error}");
        File::create(&path).unwrap().set_len(99).unwrap();
        let error = repo.frame(&e).unwrap_err().to_string();
        assert!(error.contains("the stored frame has 99 bytes, the index says 100"), "{error}");

        File::create(dir.path().join("lct-image-repo")).unwrap().set_len(1 << 30).unwrap();
        let error = Repo::open(dir.path()).unwrap_err().to_string();
        assert!(error.contains("a repository of another version"), "{error}");
    }
}
