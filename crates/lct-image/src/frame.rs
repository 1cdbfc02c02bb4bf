//! One extent's frame: the shared frame of zeros, and the check that a frame decompresses
//! to its extent's bytes (bounded by the extent's length, never by what the frame claims).

use std::path::Path;
use std::sync::OnceLock;

use crate::error::ImageError;
use crate::format::{EXTENT_SIZE, Extent, Index};

/// An image being read: its index, what it is called, and its extents' frames (an image
/// file, one in a repository, one by URL or on a pipe). A repository's add reads any of
/// them through this.
pub trait ReadFrames: Sync {
    fn index(&self) -> &Index;
    /// How it was named (for messages and reports).
    fn name(&self) -> &str;
    /// Extent `e`'s frame, as stored.
    fn frame(&self, e: &Extent) -> Result<Vec<u8>, ImageError>;
}

/// A frame of `len` zeros, made once per length (all extents but the last share one).
pub(crate) fn zero_frame(len: usize) -> Vec<u8> {
    static FULL: OnceLock<(Vec<u8>, [u8; 32])> = OnceLock::new();
    if len as u64 == EXTENT_SIZE {
        return FULL.get_or_init(|| zeros_frame_and_hash(len)).0.clone();
    }
    zeros_frame_and_hash(len).0
}

pub(crate) fn zero_hash(len: usize) -> [u8; 32] {
    static FULL: OnceLock<[u8; 32]> = OnceLock::new();
    if len as u64 == EXTENT_SIZE {
        return *FULL.get_or_init(|| *blake3::hash(&vec![0u8; len]).as_bytes());
    }
    *blake3::hash(&vec![0u8; len]).as_bytes()
}

fn zeros_frame_and_hash(len: usize) -> (Vec<u8>, [u8; 32]) {
    let zeros = vec![0u8; len];
    (zstd::bulk::compress(&zeros, 19).expect("zstd compresses zeros"), *blake3::hash(&zeros).as_bytes())
}

/// Checks that `frame` decompresses to extent `i`'s bytes; returns them.
pub fn check_frame(image: &Path, i: usize, e: &Extent, frame: &[u8]) -> Result<Vec<u8>, ImageError> {
    let damaged = |why: String| ImageError::Damaged {
        image: image.display().to_string(),
        index: i,
        offset: e.offset,
        end: e.offset + u64::from(e.len),
        why,
    };
    let data = zstd::bulk::decompress(frame, e.len as usize)
        .map_err(|err| damaged(format!("its frame does not decompress: {err}")))?;
    if data.len() != e.len as usize || *blake3::hash(&data).as_bytes() != e.hash {
        return Err(damaged("its BLAKE3 hash does not match the index".into()));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    //! Crafted frames: what a frame claims never sizes an allocation.

    use super::*;
    use crate::format::Kind;

    fn extent(len: u32) -> Extent {
        Extent { offset: 0, len, coffset: 0, csize: 0, kind: Kind::Data, hash: [0; 32] }
    }

    #[test]
    fn a_zstd_frame_claiming_a_huge_size_is_damaged_not_allocated() {
        // A frame header claiming 2^62 bytes of content (8-byte Frame_Content_Size), then a raw
        // block of 4 bytes: the decoder is bounded by the extent's length, not the claim.
        let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0xc0 | 0x20];
        frame.extend_from_slice(&(1u64 << 62).to_le_bytes());
        frame.extend_from_slice(&[0x21, 0x00, 0x00]); // last block, raw, 4 bytes
        frame.extend_from_slice(b"lct!");
        let error = check_frame(Path::new("crafted"), 0, &extent(4096), &frame).unwrap_err();
        assert!(matches!(error, ImageError::Damaged { .. }), "{error}");
        assert!(error.to_string().contains("does not decompress"), "{error}");
    }

    #[test]
    fn a_frame_decompressing_to_more_than_its_extent_is_damaged() {
        let frame = zstd::bulk::compress(&[7u8; 8192], 3).unwrap();
        let error = check_frame(Path::new("crafted"), 0, &extent(4096), &frame).unwrap_err();
        assert!(matches!(error, ImageError::Damaged { .. }), "{error}");
    }
}
