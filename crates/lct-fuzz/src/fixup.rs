//! Fix-ups that let mutations reach past an image's checksums. A mutated index entry fails
//! the root hash (and the seek table's copy of the sizes) before any check of the entry
//! itself runs; blind mutation never gets past a BLAKE3 hash. So, as fuzzers of formats with
//! checksums do, some targets recompute them after mutating: the root hash over the
//! entries, the seek table's sizes from the entries and, optionally, the entries' offsets so
//! that they tile. What is then read is everything else the mutation made.

/// What to make agree again.
#[derive(Debug, Clone, Copy)]
pub struct Fix {
    /// Rewrite each entry's disk and image offsets as the running sums of the lengths.
    pub tiling: bool,
}

const ENTRY: usize = lct_image::format::ENTRY_SIZE;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Fixes up the trailer at the end of `bytes` (an image, or a trailer alone) where its
/// structure can be found; leaves it as it is where it cannot.
pub fn trailer(bytes: &mut [u8], fix: Fix) {
    let _ = try_trailer(bytes, fix);
}

fn try_trailer(t: &mut [u8], fix: Fix) -> Option<()> {
    let n = t.len();
    let frames = u32_at(t, n.checked_sub(9)?)? as usize;
    let table_at = n.checked_sub(8usize.checked_add(frames.checked_mul(8)?)?.checked_add(9)?)?;
    if frames == 0 {
        return None;
    }
    let index_len = u32_at(t, table_at + 8 + (frames - 1) * 8)? as usize;
    let body = table_at.checked_sub(index_len)? + 8;
    let mlen = u32_at(t, body + 8)? as usize;
    let count_at = (body + 12).checked_add(mlen)?;
    let count = u64_at(t, count_at)?;
    let entries_at = count_at + 8;
    let room = table_at.checked_sub(entries_at)?.checked_sub(32)? / ENTRY;
    let count = usize::try_from(count).ok()?.min(room);
    let entries_end = entries_at + count * ENTRY;
    if fix.tiling {
        let (mut offset, mut coffset) = (0u64, 0u64);
        for e in t[entries_at..entries_end].chunks_exact_mut(ENTRY) {
            e[0..8].copy_from_slice(&offset.to_le_bytes());
            e[12..20].copy_from_slice(&coffset.to_le_bytes());
            offset = offset.wrapping_add(u64::from(u32_at(e, 8)?));
            coffset = coffset.wrapping_add(u64::from(u32_at(e, 20)?));
        }
    }
    let root = *blake3::hash(&t[entries_at..entries_end]).as_bytes();
    t[entries_end..entries_end + 32].copy_from_slice(&root);
    // The seek table's sizes, from the entries.
    for i in 0..count.min(frames - 1) {
        let (len, csize) = (u32_at(t, entries_at + i * ENTRY + 8)?, u32_at(t, entries_at + i * ENTRY + 20)?);
        let at = table_at + 8 + i * 8;
        t[at..at + 4].copy_from_slice(&csize.to_le_bytes());
        t[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
    }
    Some(())
}

/// Fixes up the trailer of a stream as `lct-image send` writes it (its length after the magic).
pub fn stream(bytes: &mut [u8], fix: Fix) {
    let Some(len) = u64_at(bytes, 8) else { return };
    let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(16)) else { return };
    if let Some(t) = bytes.get_mut(16..end) {
        trailer(t, fix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A seed with an entry changed and fixed up reads past the root hash (to the check of
    /// the entry itself).
    #[test]
    fn a_changed_entry_fixed_up_reaches_the_entry_checks() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/corpus/image-trailer/seed-small");
        let mut t = std::fs::read(corpus).unwrap();
        lct_image::format::Index::from_trailer(&t).unwrap();
        // The only entry's length (before the root hash and a seek table of two frames): 5 MiB.
        let at = t.len() - (8 + 2 * 8 + 9) - 32 - ENTRY + 8;
        t[at..at + 4].copy_from_slice(&(5u32 << 20).to_le_bytes());
        let error = lct_image::format::Index::from_trailer(&t).unwrap_err().to_string();
        assert!(error.contains("root hash"), "{error}");
        trailer(&mut t, Fix { tiling: false });
        let error = lct_image::format::Index::from_trailer(&t).unwrap_err().to_string();
        assert!(error.contains("extent 0 is 5242880 bytes long"), "{error}");
    }
}
