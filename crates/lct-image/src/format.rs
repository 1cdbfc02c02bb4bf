//! The lct image format: the disk in fixed-size extents, each an independent zstd frame
//! (so plain `zstd -d` restores the raw disk), then lct's index in a zstd skippable frame,
//! then a seek table in zstd's seekable format (its last bytes), so seekable readers find
//! every frame too. docs/image-format.md describes it byte by byte.

use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

/// The logical size of an extent (the last one may be shorter).
pub const EXTENT_SIZE: u64 = 4 << 20;

/// lct's index frame: a zstd skippable frame (magic 0x184D2A50 + 0xD).
pub const INDEX_MAGIC: u32 = 0x184D_2A5D;
/// zstd's seekable format: the seek table's skippable frame and its footer magic.
pub const SEEK_TABLE_MAGIC: u32 = 0x184D_2A5E;
pub const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// The index's first bytes.
pub const INDEX_HEADER: &[u8; 8] = b"LCTIMG1\0";
/// One extent's entry in the index: offset u64, length u32, compressed offset u64,
/// compressed size u32, kind u8, BLAKE3 hash 32 bytes; little-endian.
pub const ENTRY_SIZE: usize = 8 + 4 + 8 + 4 + 1 + 32;

// What a reader accepts: every size, count and offset an image declares is checked against
// these before it sizes an allocation or a loop, so a crafted image costs a reader at most
// about 150 MiB (a 4 TiB disk's index), never what it claims.

/// The largest extent an image may declare (lct writes 4 MiB): a restore holds a few of
/// them per core, compressed and not.
pub const MAX_EXTENT_SIZE: u64 = 16 << 20;
/// The smallest (a disk sector's multiple is not required, a sane minimum is).
pub const MIN_EXTENT_SIZE: u64 = 4 << 10;
/// The most extents an image may have: a 4 TiB disk in 4 MiB extents. Its index takes
/// 57 MiB on disk and about 64 MiB in memory.
pub const MAX_EXTENTS: u64 = 1 << 20;
/// The most a manifest (JSON: a label, a source name, numbers) may take.
pub const MAX_MANIFEST: u64 = 64 << 10;
/// The index frame's bytes besides the manifest and the entries: frame header, "LCTIMG1\0",
/// manifest length, extent count, root hash.
const INDEX_FIXED: u64 = 8 + 8 + 4 + 8 + 32;
/// The longest trailer (index frame and seek table) any image within the limits has.
pub const MAX_TRAILER: u64 =
    INDEX_FIXED + MAX_MANIFEST + MAX_EXTENTS * ENTRY_SIZE as u64 + seek_table_len(MAX_EXTENTS + 1);

/// The seek table's length (its frame header, entries, footer) for `frames` frames.
pub const fn seek_table_len(frames: u64) -> u64 {
    8 + frames * 8 + 9
}

/// The largest frame an extent of `extent_size` bytes can have: zstd's compress bound (what
/// incompressible data takes).
pub fn max_frame(extent_size: u64) -> u64 {
    zstd::zstd_safe::compress_bound(extent_size as usize) as u64
}

/// The seekable footer (an image's last 9 bytes), read and bounded: how many frames the seek
/// table lists and how long the table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub frames: u64,
    pub table_len: u64,
}

impl Footer {
    pub fn parse(footer: &[u8; 9], file_len: u64) -> Result<Footer, FormatError> {
        let truncated = |why: String| FormatError::Truncated(why);
        if u32::from_le_bytes(footer[5..9].try_into().expect("4")) != SEEKABLE_MAGIC {
            return Err(truncated("no seek table at its end".into()));
        }
        if footer[4] != 0 {
            return Err(truncated(format!(
                "a seek table with descriptor {:#04x}: lct writes 0 (no checksums)",
                footer[4]
            )));
        }
        let frames = u64::from(u32::from_le_bytes(footer[0..4].try_into().expect("4")));
        if frames == 0 {
            return Err(truncated("a seek table of no frames (an lct image has its index frame)".into()));
        }
        if frames > MAX_EXTENTS + 1 {
            return Err(FormatError::Limit(format!(
                "its seek table lists {frames} frames, over the limit of {} extents (MAX_EXTENTS, a 4 TiB disk)",
                MAX_EXTENTS
            )));
        }
        let table_len = seek_table_len(frames);
        if table_len > file_len {
            return Err(truncated(format!("its seek table ({table_len} bytes) is longer than the file ({file_len})")));
        }
        Ok(Footer { frames, table_len })
    }

    /// The longest index frame an image of this many frames can have.
    pub fn max_index_len(&self) -> u64 {
        INDEX_FIXED + MAX_MANIFEST + (self.frames - 1) * ENTRY_SIZE as u64
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an lct image, or a truncated one: {0}")]
    Truncated(String),
    #[error("the image's index is damaged: {0}")]
    Index(String),
    #[error("the image is beyond what lct-image reads: {0}")]
    Limit(String),
}

/// What an extent holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Data: its frame decompresses to the extent.
    Data,
    /// Only zeros: a tiny frame of zeros, and a target gets real zeros (a punched hole,
    /// BLKZEROOUT or written zeros), never stale data.
    Zero,
}

/// One extent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extent {
    /// Where it is on the disk, and how long.
    pub offset: u64,
    pub len: u32,
    /// Where its frame is in the image, and how long.
    pub coffset: u64,
    pub csize: u32,
    pub kind: Kind,
    /// BLAKE3 of its bytes on the disk.
    pub hash: [u8; 32],
}

/// What the image is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The disk's size in bytes.
    pub size: u64,
    pub extent_size: u64,
    #[serde(default)]
    pub label: String,
    /// Where it was made from.
    #[serde(default)]
    pub source: String,
    /// Seconds since 1970 (UTC).
    pub created: u64,
    /// The lct-image that made it.
    pub tool_version: String,
}

/// The index: the manifest, every extent, and the root hash over the entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub manifest: Manifest,
    pub extents: Vec<Extent>,
    pub root: [u8; 32],
}

impl Extent {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.coffset.to_le_bytes());
        out.extend_from_slice(&self.csize.to_le_bytes());
        out.push(match self.kind {
            Kind::Data => 0,
            Kind::Zero => 1,
        });
        out.extend_from_slice(&self.hash);
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Extent, FormatError> {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let kind = match b[24] {
            0 => Kind::Data,
            1 => Kind::Zero,
            k => return Err(FormatError::Index(format!("extent kind {k}"))),
        };
        Ok(Extent {
            offset: u64_at(0),
            len: u32_at(8),
            coffset: u64_at(12),
            csize: u32_at(20),
            kind,
            hash: b[25..57].try_into().expect("32 bytes"),
        })
    }
}

/// The root hash: BLAKE3 over every entry's bytes, in order.
pub fn root_hash(extents: &[Extent]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    let mut buf = Vec::with_capacity(ENTRY_SIZE);
    for e in extents {
        buf.clear();
        e.encode(&mut buf);
        hasher.update(&buf);
    }
    *hasher.finalize().as_bytes()
}

impl Index {
    /// The trailer written after the last extent's frame: the index frame, then the seek
    /// table (one entry per extent frame, and one for the index frame, decompressed size 0).
    pub fn trailer(&self) -> Vec<u8> {
        let manifest = serde_json::to_vec(&self.manifest).expect("a manifest serializes");
        let mut body = Vec::with_capacity(8 + 4 + manifest.len() + 8 + self.extents.len() * ENTRY_SIZE + 32);
        body.extend_from_slice(INDEX_HEADER);
        body.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
        body.extend_from_slice(&manifest);
        body.extend_from_slice(&(self.extents.len() as u64).to_le_bytes());
        for e in &self.extents {
            e.encode(&mut body);
        }
        body.extend_from_slice(&self.root);
        let mut out = Vec::with_capacity(body.len() + 8 + (self.extents.len() + 1) * 8 + 17);
        out.extend_from_slice(&INDEX_MAGIC.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        let index_frame = 8 + body.len() as u32;
        out.extend_from_slice(&body);
        // zstd's seekable format: entries of (compressed size, decompressed size), no checksums.
        let frames = self.extents.len() as u32 + 1;
        out.extend_from_slice(&SEEK_TABLE_MAGIC.to_le_bytes());
        out.extend_from_slice(&(frames * 8 + 9).to_le_bytes());
        for e in &self.extents {
            out.extend_from_slice(&e.csize.to_le_bytes());
            out.extend_from_slice(&e.len.to_le_bytes());
        }
        out.extend_from_slice(&index_frame.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&frames.to_le_bytes());
        out.push(0);
        out.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
        out
    }

    /// Reads the index from an image's end (and checks it: magics, sizes, the root hash, that
    /// the extents tile the disk and the frames tile the image). Every length is checked
    /// against the file's size and the limits above before anything is allocated for it.
    pub fn read<R: Read + Seek>(image: &mut R) -> Result<Index, FormatError> {
        let total = image.seek(SeekFrom::End(0))?;
        let truncated = |why: String| FormatError::Truncated(why);
        if total < 17 {
            return Err(truncated("shorter than a seek table".into()));
        }
        let mut footer = [0u8; 9];
        image.seek(SeekFrom::End(-9))?;
        image.read_exact(&mut footer)?;
        let Footer { frames, table_len } = Footer::parse(&footer, total)?;
        let mut table = vec![0u8; table_len as usize];
        image.seek(SeekFrom::Start(total - table_len))?;
        image.read_exact(&mut table)?;
        if u32::from_le_bytes(table[0..4].try_into().expect("4")) != SEEK_TABLE_MAGIC {
            return Err(truncated("the seek table's frame header is wrong".into()));
        }
        if u64::from(u32::from_le_bytes(table[4..8].try_into().expect("4"))) != table_len - 8 {
            return Err(truncated("the seek table's frame length does not match its footer".into()));
        }
        let entry = |i: u64| {
            let at = 8 + i as usize * 8;
            (
                u64::from(u32::from_le_bytes(table[at..at + 4].try_into().expect("4"))),
                u64::from(u32::from_le_bytes(table[at + 4..at + 8].try_into().expect("4"))),
            )
        };
        // (At most 2^20 sizes under 2^32 each: no overflow.)
        let frames_len: u64 = (0..frames).map(|i| entry(i).0).sum();
        if frames_len + table_len != total {
            return Err(truncated(format!(
                "its frames and tables make {} bytes, the file has {total}",
                frames_len + table_len
            )));
        }
        let bad = |why: String| FormatError::Index(why);
        let (index_len, index_content) = entry(frames - 1);
        let max_index = Footer { frames, table_len }.max_index_len();
        if index_len < INDEX_FIXED || index_len > max_index || index_content != 0 {
            return Err(bad(format!(
                "its index frame is {index_len} bytes (decompressed {index_content}); {} extents need {INDEX_FIXED}..={max_index}",
                frames - 1
            )));
        }
        let index_at = total - table_len - index_len;
        let mut frame = vec![0u8; index_len as usize];
        image.seek(SeekFrom::Start(index_at))?;
        image.read_exact(&mut frame)?;
        if u32::from_le_bytes(frame[0..4].try_into().expect("4")) != INDEX_MAGIC {
            return Err(bad("no index frame before the seek table".into()));
        }
        if u64::from(u32::from_le_bytes(frame[4..8].try_into().expect("4"))) != index_len - 8 {
            return Err(bad("the index frame's length does not match the seek table".into()));
        }
        let body = &frame[8..];
        if &body[..8] != INDEX_HEADER {
            return Err(bad("not an lct index".into()));
        }
        let mlen = u64::from(u32::from_le_bytes(body[8..12].try_into().expect("4")));
        let count = frames - 1;
        // The frame holds exactly the header, the manifest, the count, the entries, the root.
        if mlen > MAX_MANIFEST || INDEX_FIXED + mlen + count * ENTRY_SIZE as u64 != index_len {
            return Err(bad(format!(
                "a {mlen}-byte manifest and {count} entries do not make a {index_len}-byte index frame"
            )));
        }
        let (mlen, entries_len) = (mlen as usize, count as usize * ENTRY_SIZE);
        let manifest: Manifest =
            serde_json::from_slice(&body[12..12 + mlen]).map_err(|e| bad(format!("manifest: {e}")))?;
        let rest = &body[12 + mlen..];
        let declared = u64::from_le_bytes(rest[..8].try_into().expect("8"));
        if declared != count {
            return Err(bad(format!("{declared} extents, {frames} frames in the seek table")));
        }
        let extent_size = manifest.extent_size;
        if !(MIN_EXTENT_SIZE..=MAX_EXTENT_SIZE).contains(&extent_size) {
            return Err(FormatError::Limit(format!(
                "an extent size of {extent_size} bytes: lct-image reads {MIN_EXTENT_SIZE}..={MAX_EXTENT_SIZE} \
                 (MIN_EXTENT_SIZE..=MAX_EXTENT_SIZE)"
            )));
        }
        if manifest.size.div_ceil(extent_size) != count {
            return Err(bad(format!(
                "a {}-byte disk in {extent_size}-byte extents is {} extents, not {count}",
                manifest.size,
                manifest.size.div_ceil(extent_size)
            )));
        }
        let extents =
            rest[8..8 + entries_len].chunks_exact(ENTRY_SIZE).map(Extent::decode).collect::<Result<Vec<_>, _>>()?;
        let root: [u8; 32] = rest[8 + entries_len..].try_into().expect("32: the frame's length was checked");
        if root_hash(&extents) != root {
            return Err(bad("its root hash does not match its entries".into()));
        }
        // The extents tile the disk, the frames the image, as the seek table says; each
        // extent is the manifest's extent size (the last may be shorter) and its frame no
        // longer than that much data can compress to.
        let max_csize = max_frame(extent_size);
        let (mut offset, mut coffset) = (0u64, 0u64);
        for (i, e) in extents.iter().enumerate() {
            if e.offset != offset || e.coffset != coffset || (u64::from(e.csize), u64::from(e.len)) != entry(i as u64) {
                return Err(bad(format!("extent {i} is not where the seek table puts it")));
            }
            let want = extent_size.min(manifest.size - offset);
            if u64::from(e.len) != want {
                return Err(bad(format!("extent {i} is {} bytes long, not {want} (extent size {extent_size})", e.len)));
            }
            if e.csize == 0 || u64::from(e.csize) > max_csize {
                return Err(bad(format!(
                    "extent {i}'s frame is {} bytes: a {}-byte extent's is 1..={max_csize}",
                    e.csize, e.len
                )));
            }
            offset += u64::from(e.len);
            coffset += u64::from(e.csize);
        }
        if offset != manifest.size {
            return Err(bad(format!("the extents cover {offset} bytes, the disk has {}", manifest.size)));
        }
        Ok(Index { manifest, extents, root })
    }
}

impl Index {
    /// An index from a trailer alone (what a repository keeps of an image: the trailer its
    /// export would end with), checked as [`Index::read`] checks a whole image.
    pub fn from_trailer(trailer: &[u8]) -> Result<Index, FormatError> {
        let n = trailer.len();
        if n < 17 {
            return Err(FormatError::Truncated("shorter than a seek table".into()));
        }
        let footer = Footer::parse(trailer[n - 9..].try_into().expect("9"), n as u64)?;
        let table = &trailer[n - footer.table_len as usize..];
        let size = |i: usize| u64::from(u32::from_le_bytes(table[8 + i * 8..12 + i * 8].try_into().expect("4")));
        let frames = footer.frames as usize;
        // The trailer is the index frame and the table: nothing else, nothing of a frame.
        if footer.table_len + size(frames - 1) != n as u64 {
            return Err(FormatError::Truncated(format!(
                "a {n}-byte trailer, its index frame and seek table make {}",
                footer.table_len + size(frames - 1)
            )));
        }
        // The extents' frames come before the trailer in an image: their sizes from the table.
        let data: u64 = (0..frames - 1).map(size).sum();
        Index::read(&mut Padded { before: data, trailer, at: 0 })
    }
}

/// A trailer read as if the frames it describes came before it (they are never read).
struct Padded<'a> {
    before: u64,
    trailer: &'a [u8],
    at: u64,
}

impl Read for Padded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = self.at.checked_sub(self.before).ok_or_else(|| std::io::Error::other("reads a frame"))? as usize;
        let rest = self.trailer.get(start..).unwrap_or_default();
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n as u64;
        Ok(n)
    }
}

impl Seek for Padded<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let total = self.before + self.trailer.len() as u64;
        self.at = match pos {
            SeekFrom::Start(at) => at,
            SeekFrom::End(back) => total.checked_add_signed(back).ok_or_else(|| std::io::Error::other("before 0"))?,
            SeekFrom::Current(d) => self.at.checked_add_signed(d).ok_or_else(|| std::io::Error::other("before 0"))?,
        };
        Ok(self.at)
    }
}

pub fn hex(hash: &[u8]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    //! Crafted images: each claim that would size an allocation or a loop is refused by name
    //! before it does.

    use super::*;
    use std::io::Cursor;

    /// An image of `data` in extents of `extent_size` (as `create` lays it out), with the
    /// manifest and extents then changed by `craft` (the root hash and seek table follow).
    fn image(data: &[u8], extent_size: u64, craft: impl FnOnce(&mut Manifest, &mut Vec<Extent>)) -> Vec<u8> {
        let mut frames = Vec::new();
        let mut extents = Vec::new();
        for (i, chunk) in data.chunks(extent_size as usize).enumerate() {
            let frame = zstd::bulk::compress(chunk, 3).unwrap();
            extents.push(Extent {
                offset: i as u64 * extent_size,
                len: chunk.len() as u32,
                coffset: frames.len() as u64,
                csize: frame.len() as u32,
                kind: Kind::Data,
                hash: *blake3::hash(chunk).as_bytes(),
            });
            frames.extend_from_slice(&frame);
        }
        let mut manifest = Manifest {
            size: data.len() as u64,
            extent_size,
            label: "crafted".into(),
            source: "test".into(),
            created: 0,
            tool_version: "0".into(),
        };
        craft(&mut manifest, &mut extents);
        let root = root_hash(&extents);
        frames.extend_from_slice(&Index { manifest, extents, root }.trailer());
        frames
    }

    fn read(bytes: &[u8]) -> Result<Index, FormatError> {
        Index::read(&mut Cursor::new(bytes))
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn a_well_made_image_reads() {
        let bytes = image(&data(10_000), MIN_EXTENT_SIZE, |_, _| {});
        let index = read(&bytes).unwrap();
        assert_eq!(index.extents.len(), 3);
        assert_eq!(Index::from_trailer(&bytes[index.extents.iter().map(|e| e.csize as usize).sum()..]).unwrap(), index);
    }

    #[test]
    fn a_huge_extent_size_is_refused_by_name() {
        // One extent of 1 GiB claimed (its frame is a few bytes): a restore would allocate it.
        let bytes = image(&data(1000), MIN_EXTENT_SIZE, |m, e| {
            m.extent_size = 1 << 30;
            m.size = 1 << 30;
            e[0].len = 1 << 30;
        });
        let error = read(&bytes).unwrap_err();
        assert!(matches!(error, FormatError::Limit(_)), "{error}");
        assert!(error.to_string().contains("MAX_EXTENT_SIZE"), "{error}");
        let bytes = image(&data(1000), MIN_EXTENT_SIZE, |m, _| m.extent_size = 0);
        assert!(matches!(read(&bytes).unwrap_err(), FormatError::Limit(_)));
    }

    #[test]
    fn an_extent_longer_than_the_extent_size_is_refused() {
        // Two extents of 5000 and 3000 bytes in 4 KiB extents: the count is right (8000 bytes
        // are two extents), the first is not.
        let bytes = image(&data(8000), MIN_EXTENT_SIZE, |_, e| {
            e[0].len = 5000;
            e[1].len = 3000;
            e[1].offset = 5000;
        });
        let error = read(&bytes).unwrap_err().to_string();
        assert!(error.contains("extent 0 is 5000 bytes long, not 4096"), "{error}");
    }

    #[test]
    fn a_frame_larger_than_its_extent_can_compress_to_is_refused() {
        let bytes = image(&data(1000), MIN_EXTENT_SIZE, |_, e| e[0].csize = u32::MAX);
        // (The seek table agrees with the entry; the file is shorter than the claim.)
        let error = read(&bytes).unwrap_err().to_string();
        assert!(error.contains("bytes, the file has"), "{error}");
        let trailer = &bytes[bytes.len() - (INDEX_FIXED as usize + 200)..];
        let _ = Index::from_trailer(trailer).unwrap_err();
    }

    #[test]
    fn an_extent_count_that_asks_for_all_memory_is_refused_before_reading() {
        // The footer claims 2^32 - 1 frames (a 32 GiB seek table, a 228 GiB index).
        let mut bytes = image(&data(1000), MIN_EXTENT_SIZE, |_, _| {});
        let n = bytes.len();
        bytes[n - 9..n - 5].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = read(&bytes).unwrap_err();
        assert!(matches!(error, FormatError::Limit(_)), "{error}");
        assert!(error.to_string().contains("MAX_EXTENTS"), "{error}");
        assert!(matches!(Index::from_trailer(&bytes).unwrap_err(), FormatError::Limit(_)));
        // Within the limit but longer than the file: truncated, not read.
        bytes[n - 9..n - 5].copy_from_slice(&((MAX_EXTENTS + 1) as u32).to_le_bytes());
        assert!(read(&bytes).unwrap_err().to_string().contains("longer than the file"));
        // And the count in the index must be the seek table's (u64::MAX once overflowed).
        let mut bytes = image(&data(1000), MIN_EXTENT_SIZE, |_, _| {});
        let count_at = bytes.len() - seek_table_len(2) as usize - 32 - ENTRY_SIZE - 8;
        bytes[count_at..count_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let error = read(&bytes).unwrap_err().to_string();
        assert!(error.contains("extents, 2 frames"), "{error}");
    }

    #[test]
    fn an_index_frame_past_the_start_or_the_end_is_refused() {
        let bytes = image(&data(1000), MIN_EXTENT_SIZE, |_, _| {});
        let n = bytes.len();
        let table = seek_table_len(2) as usize;
        // The seek table's entry for the index frame: larger than the file, larger than the
        // limit for one extent, or too small to hold an index.
        for len in [u32::MAX, (n - table) as u32 + 1, 10] {
            let mut crafted = bytes.clone();
            crafted[n - 9 - 8..n - 9 - 4].copy_from_slice(&len.to_le_bytes());
            let error = read(&crafted).unwrap_err().to_string();
            assert!(error.contains("bytes"), "{len}: {error}");
        }
        // A manifest length past the frame's end.
        let mut crafted = bytes.clone();
        let header = crafted.windows(8).position(|w| w == INDEX_HEADER).unwrap();
        crafted[header + 8..header + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = read(&crafted).unwrap_err().to_string();
        assert!(error.contains("manifest and 1 entries do not make"), "{error}");
        let _ = n;
    }

    #[test]
    fn a_truncated_index_is_refused_wherever_it_is_cut() {
        let bytes = image(&data(10_000), MIN_EXTENT_SIZE, |_, _| {});
        let frames: usize = read(&bytes).unwrap().extents.iter().map(|e| e.csize as usize).sum();
        for cut in 1..bytes.len() {
            assert!(read(&bytes[..bytes.len() - cut]).is_err(), "cut {cut}");
            // A trailer is exactly the index frame and the seek table.
            assert_eq!(Index::from_trailer(&bytes[cut..]).is_ok(), cut == frames, "cut {cut}");
        }
    }
}
