//! Crafted streams and frames: what a sent image or a frame claims never sizes an allocation.

use super::*;

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

fn sent(bytes: Vec<u8>) -> Result<Opened, ImageError> {
    Opened::sent(Box::new(std::io::Cursor::new(bytes)), "crafted")
}

#[test]
fn a_stream_claiming_a_huge_trailer_is_refused_before_reading_it() {
    let mut bytes = SEND_MAGIC.to_vec();
    bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let error = sent(bytes).err().expect("refused").to_string();
    assert!(error.contains("MAX_TRAILER"), "{error}");
    // Within the limit, but the stream stops: what was sent is all that is read.
    let mut bytes = SEND_MAGIC.to_vec();
    bytes.extend_from_slice(&(crate::format::MAX_TRAILER).to_le_bytes());
    bytes.extend_from_slice(&[0; 100]);
    let error = sent(bytes).err().expect("refused").to_string();
    assert!(error.contains("the stream ended in its trailer (100 of"), "{error}");
}

#[test]
fn a_disk_larger_than_the_readers_take_is_refused_before_any_byte_is_written() {
    // A sparse file one byte over MAX_EXTENTS extents: its image could never be read back.
    let dir = lct_core::fsutil::temp_dir("lct-image-test-").unwrap();
    let disk = dir.path().join("huge.raw");
    File::create(&disk).unwrap().set_len(crate::format::MAX_EXTENTS * EXTENT_SIZE + 1).unwrap();
    let out = dir.path().join("huge.lct");
    let error = create(&disk, &out, &CreateOptions::default(), &|_, _| {}).unwrap_err();
    assert!(matches!(error, ImageError::Refused(_)), "{error}");
    assert!(error.to_string().contains("MAX_EXTENTS"), "{error}");
    assert!(!out.exists() && !partial_path(&out).exists(), "nothing written");
}
