//! Resuming a create. Beside `OUT.partial`, `OUT.partial.ckpt` says what the partial file
//! durably holds: a header line (the source and the options, as JSON), then the index
//! entries of the extents written so far (57 bytes each), appended only after the partial
//! file is synced up to them. A create that finds a checkpoint of the same source (its
//! name, size and modification time) and options cuts the partial file to what the entries
//! cover and goes on from the next extent; any other checkpoint is started afresh.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::format::{ENTRY_SIZE, Extent};

/// What a checkpoint is of: a resume needs all of it to match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub name: String,
    pub size: u64,
    /// Nanoseconds since 1970 of the source's last change (0 for a block device, whose
    /// changes are the operator's to prevent: it is refused while mounted read-write).
    pub modified: u128,
    pub level: i32,
    pub extent_size: u64,
}

impl Source {
    pub fn of(file: &File, name: &str, size: u64, level: i32) -> io::Result<Source> {
        let meta = file.metadata()?;
        let modified = if meta.is_file() {
            meta.modified()?.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        } else {
            0
        };
        Ok(Source { name: name.to_string(), size, modified, level, extent_size: crate::format::EXTENT_SIZE })
    }
}

pub fn path_of(partial: &Path) -> PathBuf {
    let mut name = partial.file_name().unwrap_or_default().to_os_string();
    name.push(".ckpt");
    partial.with_file_name(name)
}

/// The extents a checkpoint of `source` vouches for, if there is one and the partial file
/// holds their frames.
pub fn resumable(partial: &Path, source: &Source) -> Option<Vec<Extent>> {
    // No more than the header and an entry per extent of the source: a checkpoint is not
    // read whole whatever its size.
    let extents = source.size.div_ceil(source.extent_size);
    let limit = crate::format::MAX_MANIFEST + extents * ENTRY_SIZE as u64;
    let mut bytes = Vec::new();
    File::open(path_of(partial)).ok()?.take(limit + 1).read_to_end(&mut bytes).ok()?;
    if bytes.len() as u64 > limit {
        return None;
    }
    let newline = bytes.iter().position(|b| *b == b'\n')?;
    let header: Source = serde_json::from_slice(&bytes[..newline]).ok()?;
    if header != *source {
        return None;
    }
    // A torn last entry (a crash while appending) is left out.
    let entries = &bytes[newline + 1..];
    let extents: Vec<Extent> = entries.chunks_exact(ENTRY_SIZE).map(Extent::decode).collect::<Result<_, _>>().ok()?;
    let covered: u64 = extents.iter().map(|e| u64::from(e.csize)).sum();
    let have = std::fs::metadata(partial).ok()?.len();
    (have >= covered && !extents.is_empty() && tiles(&extents, source)).then_some(extents)
}

/// Whether `extents` are what a create of `source` writes first: one after another from the
/// disk's start and the image's, each the extent size (the disk's last may be shorter), each
/// frame no longer than compression can make it. Anything else is not resumed from.
fn tiles(extents: &[Extent], source: &Source) -> bool {
    let max_frame = crate::format::max_frame(source.extent_size);
    let (mut offset, mut coffset) = (0u64, 0u64);
    for e in extents {
        let want = source.extent_size.min(source.size.saturating_sub(offset));
        if e.offset != offset || e.coffset != coffset || want == 0 || u64::from(e.len) != want {
            return false;
        }
        if e.csize == 0 || u64::from(e.csize) > max_frame {
            return false;
        }
        offset += u64::from(e.len);
        coffset += u64::from(e.csize);
    }
    true
}

/// A checkpoint being written.
pub struct Checkpoint {
    file: File,
    path: PathBuf,
}

impl Checkpoint {
    /// A new checkpoint of `source` (any old one replaced), or the one to go on with
    /// (`keep`: its entries stay).
    pub fn open(partial: &Path, source: &Source, keep: bool) -> io::Result<Checkpoint> {
        let path = path_of(partial);
        if keep {
            let mut file = OpenOptions::new().read(true).append(true).open(&path)?;
            // Whole entries only: a torn tail goes. (The header is the first line as written,
            // which `resumable` found.)
            let len = file.metadata()?.len();
            let mut first = Vec::new();
            (&mut file).take(crate::format::MAX_MANIFEST).read_to_end(&mut first)?;
            let header =
                first.iter().position(|b| *b == b'\n').ok_or_else(|| io::Error::other("no header"))? as u64 + 1;
            file.set_len(header + (len - header) / ENTRY_SIZE as u64 * ENTRY_SIZE as u64)?;
            return Ok(Checkpoint { file, path });
        }
        let mut file = File::create(&path)?;
        let mut header = serde_json::to_vec(source)?;
        header.push(b'\n');
        file.write_all(&header)?;
        file.sync_all()?;
        Ok(Checkpoint { file, path })
    }

    /// Vouches for `extents` (their frames are synced in the partial file already).
    pub fn append(&mut self, extents: &[Extent]) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(extents.len() * ENTRY_SIZE);
        for e in extents {
            e.encode(&mut bytes);
        }
        self.file.write_all(&bytes)?;
        self.file.sync_data()
    }

    /// The create is done: the checkpoint goes.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{EXTENT_SIZE, Kind};

    fn entry(i: u64, len: u32, csize: u32) -> Extent {
        Extent { offset: i * EXTENT_SIZE, len, coffset: i * 100, csize, kind: Kind::Data, hash: [0; 32] }
    }

    /// A checkpoint of the same source whose entries a create would not have written (a
    /// frame of 4 GiB, an extent of 0 bytes, a gap), or that is longer than its source
    /// allows, is not resumed from (nor read whole).
    #[test]
    fn a_crafted_checkpoint_is_not_resumed_from() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join("out.partial");
        std::fs::write(&partial, vec![0u8; 1000]).unwrap();
        let source =
            Source { name: "disk".into(), size: 3 * EXTENT_SIZE, modified: 1, level: 3, extent_size: EXTENT_SIZE };
        let write = |extents: &[Extent]| {
            let mut ckpt = Checkpoint::open(&partial, &source, false).unwrap();
            ckpt.append(extents).unwrap();
        };
        let full = EXTENT_SIZE as u32;
        write(&[entry(0, full, 100), entry(1, full, 100)]);
        assert_eq!(resumable(&partial, &source).unwrap().len(), 2);
        for crafted in [
            vec![entry(0, full, u32::MAX)],
            vec![entry(0, 0, 100)],
            vec![entry(0, full, 100), entry(2, full, 100)],
            vec![entry(0, full + 1, 100)],
        ] {
            write(&crafted);
            assert!(resumable(&partial, &source).is_none(), "{crafted:?}");
        }
        // Longer than a header and an entry per extent: not read.
        write(&[entry(0, full, 100)]);
        let file = OpenOptions::new().write(true).open(path_of(&partial)).unwrap();
        file.set_len(1 << 40).unwrap();
        assert!(resumable(&partial, &source).is_none());
    }
}
