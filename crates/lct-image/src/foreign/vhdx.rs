//! What a VHDX names besides its own file: a parent disk (a differencing disk: the
//! HasParent flag of its File Parameters, and the paths of its Parent Locator).
//!
//! Layout (MS-VHDX, little-endian, GUIDs in their mixed-endian byte order): region tables
//! at 192 KiB and 256 KiB (`regi`, entry count at 8, 32-byte entries from 16: GUID, file
//! offset u64, length u32); the metadata region's table (`metadata`, entry count u16 at 10,
//! 32-byte entries from 32: item GUID, offset u32 from the region's start, length u32).
//! Both region tables are read (whichever a reader trusts), every metadata entry is seen.

use super::{Format, Named, ReadAt, Refusal, le16, le32, le64, shown};

const REGION_TABLES: [u64; 2] = [192 << 10, 256 << 10];
const TABLE_SIZE: usize = 64 << 10;
/// MS-VHDX caps both tables' entry counts at 2047 (what fits in 64 KiB).
const MAX_ENTRIES: usize = 2047;
/// The metadata region: 8B7CA206-4790-4B9A-B8FE-575F050F886E.
const METADATA_REGION: [u8; 16] =
    [0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e];
/// File Parameters: CAA16737-FA36-4D43-B3B6-33F0AA44E76B (block size u32, flags u32).
const FILE_PARAMETERS: [u8; 16] =
    [0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b];
/// Parent Locator: A8D35F2D-B30B-454D-ABF7-D3D84834AB0C.
const PARENT_LOCATOR: [u8; 16] =
    [0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45, 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c];
/// File Parameters flag: this is a differencing disk.
const HAS_PARENT: u32 = 1 << 1;

fn uninspectable(field: &'static str, why: String) -> Refusal {
    Refusal::Uninspectable { format: Format::Vhdx, field, why }
}

pub(super) fn inspect(image: &dyn ReadAt) -> Result<(), Refusal> {
    let mut metadata_tables = 0;
    for table_at in REGION_TABLES {
        let table = image.read_at_most(table_at, TABLE_SIZE)?;
        if !table.starts_with(b"regi") {
            continue;
        }
        for entry in entries(&table, le32(&table, 8).map(|n| n as usize), 16, "region table")? {
            if entry[..16] == METADATA_REGION {
                let at = le64(entry, 16).expect("a whole entry");
                metadata(image, at)?;
                metadata_tables += 1;
            }
        }
    }
    if metadata_tables == 0 {
        return Err(uninspectable("region tables", "neither names a metadata region".into()));
    }
    Ok(())
}

/// The `count` 32-byte entries of a table, from byte `first`.
fn entries<'a>(
    table: &'a [u8],
    count: Option<usize>,
    first: usize,
    field: &'static str,
) -> Result<Vec<&'a [u8]>, Refusal> {
    let count = count.ok_or_else(|| uninspectable(field, "it is cut short before its entry count".into()))?;
    if count > MAX_ENTRIES {
        return Err(uninspectable(field, format!("{count} entries (at most {MAX_ENTRIES})")));
    }
    (0..count)
        .map(|i| {
            table
                .get(first + 32 * i..first + 32 * (i + 1))
                .ok_or_else(|| uninspectable(field, format!("it is cut short in entry {i} of {count}")))
        })
        .collect()
}

/// Refuses a metadata region that says the disk has a parent.
fn metadata(image: &dyn ReadAt, region_at: u64) -> Result<(), Refusal> {
    let table = image.read_at_most(region_at, TABLE_SIZE)?;
    if !table.starts_with(b"metadata") {
        return Err(uninspectable("metadata table", format!("no `metadata` signature at byte {region_at}")));
    }
    let mut has_parent = false;
    let mut locator = None;
    for entry in entries(&table, le16(&table, 10).map(usize::from), 32, "metadata table")? {
        let item_at = region_at
            .checked_add(u64::from(le32(entry, 16).expect("a whole entry")))
            .ok_or_else(|| uninspectable("metadata table", "an item's offset is past any file".into()))?;
        let len = le32(entry, 20).expect("a whole entry") as usize;
        if entry[..16] == FILE_PARAMETERS {
            let parameters = image.read_at_most(item_at, 8)?;
            let flags = le32(&parameters, 4)
                .ok_or_else(|| uninspectable("file parameters", format!("cut short at byte {item_at}")))?;
            has_parent |= flags & HAS_PARENT != 0;
        } else if entry[..16] == PARENT_LOCATOR {
            locator = Some(image.read_at_most(item_at, len.min(TABLE_SIZE))?);
        }
    }
    if has_parent || locator.is_some() {
        let name = locator.as_deref().and_then(parent_path).unwrap_or_default();
        return Err(Refusal::NamesAnotherFile {
            format: Format::Vhdx,
            named: Named { what: "a parent disk (a differencing disk's parent locator)".into(), name },
        });
    }
    Ok(())
}

/// The parent's path from a Parent Locator (a GUID, a reserved u16, a key-value count u16,
/// then 12-byte entries: key offset u32, value offset u32, key length u16, value length
/// u16, offsets from the locator's start, strings in UTF-16LE): the first of its path keys.
fn parent_path(locator: &[u8]) -> Option<String> {
    let count = usize::from(le16(locator, 18)?);
    let string = |at: u32, len: u16| -> Option<String> {
        let bytes = locator.get(at as usize..(at as usize).checked_add(usize::from(len))?)?;
        let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        Some(String::from_utf16_lossy(&units))
    };
    let pairs: Vec<(String, String)> = (0..count.min(MAX_ENTRIES))
        .map_while(|i| {
            let at = 20 + 12 * i;
            let key = string(le32(locator, at)?, le16(locator, at + 8)?)?;
            let value = string(le32(locator, at + 4)?, le16(locator, at + 10)?)?;
            Some((key, value))
        })
        .collect();
    ["relative_path", "absolute_win32_path", "volume_path", "parent_linkage"]
        .iter()
        .find_map(|key| pairs.iter().find(|(k, _)| k == key))
        .map(|(_, value)| shown(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::tests::refused;
    use super::*;

    const METADATA_AT: usize = 1 << 20;

    /// A VHDX's region tables and metadata: File Parameters with `flags`, and a Parent
    /// Locator of these key-value pairs if given.
    fn image(flags: u32, locator: Option<&[(&str, &str)]>) -> Vec<u8> {
        let mut b = vec![0u8; METADATA_AT + (128 << 10)];
        b[0..8].copy_from_slice(b"vhdxfile");
        for table in REGION_TABLES {
            let t = table as usize;
            b[t..t + 4].copy_from_slice(b"regi");
            b[t + 8..t + 12].copy_from_slice(&1u32.to_le_bytes());
            b[t + 16..t + 32].copy_from_slice(&METADATA_REGION);
            b[t + 32..t + 40].copy_from_slice(&(METADATA_AT as u64).to_le_bytes());
            b[t + 40..t + 44].copy_from_slice(&(1u32 << 20).to_le_bytes());
        }
        let m = METADATA_AT;
        b[m..m + 8].copy_from_slice(b"metadata");
        b[m + 10..m + 12].copy_from_slice(&(1 + u16::from(locator.is_some())).to_le_bytes());
        b[m + 32..m + 48].copy_from_slice(&FILE_PARAMETERS);
        b[m + 48..m + 52].copy_from_slice(&(64u32 << 10).to_le_bytes());
        b[m + 52..m + 56].copy_from_slice(&8u32.to_le_bytes());
        b[m + (64 << 10) + 4..m + (64 << 10) + 8].copy_from_slice(&flags.to_le_bytes());
        if let Some(pairs) = locator {
            let l = m + (96 << 10);
            b[m + 64..m + 80].copy_from_slice(&PARENT_LOCATOR);
            b[m + 80..m + 84].copy_from_slice(&(96u32 << 10).to_le_bytes());
            b[m + 84..m + 88].copy_from_slice(&(16u32 << 10).to_le_bytes());
            b[l + 18..l + 20].copy_from_slice(&(pairs.len() as u16).to_le_bytes());
            let mut strings = 20 + 12 * pairs.len();
            for (i, (key, value)) in pairs.iter().enumerate() {
                let e = l + 20 + 12 * i;
                for (j, text) in [key, value].into_iter().enumerate() {
                    let utf16: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
                    b[e + 4 * j..e + 4 * j + 4].copy_from_slice(&(strings as u32).to_le_bytes());
                    b[e + 8 + 2 * j..e + 10 + 2 * j].copy_from_slice(&(utf16.len() as u16).to_le_bytes());
                    b[l + strings..l + strings + utf16.len()].copy_from_slice(&utf16);
                    strings += utf16.len();
                }
            }
        }
        b
    }

    #[test]
    fn a_plain_disk_passes() {
        inspect(&image(0, None)).unwrap();
        inspect(&image(1, None)).unwrap(); // LeaveBlocksAllocated
    }

    #[test]
    fn a_differencing_disk_is_refused_with_its_parents_path() {
        let pairs = [("parent_linkage", "{83ef6ad1-0f1b-4a2e-9d9a-3a1c2f7f3b11}"), ("relative_path", r"..\base.vhdx")];
        let text = refused(&image(HAS_PARENT, Some(&pairs)), Format::Vhdx);
        assert!(text.contains(r#"parent locator) "..\\base.vhdx""#), "{text}");
        // The flag alone, or the locator alone.
        assert!(refused(&image(HAS_PARENT, None), Format::Vhdx).contains("(its name is not in the image)"));
        assert!(refused(&image(0, Some(&[("volume_path", "/v")])), Format::Vhdx).contains(r#""/v""#));
    }

    #[test]
    fn a_locator_with_wild_offsets_still_refuses() {
        let mut b = image(HAS_PARENT, Some(&[("relative_path", "x")]));
        let l = METADATA_AT + (96 << 10);
        b[l + 20..l + 24].copy_from_slice(&u32::MAX.to_le_bytes());
        b[l + 18..l + 20].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(refused(&b, Format::Vhdx).contains("a parent disk"));
    }

    #[test]
    fn the_second_region_table_is_read_too() {
        let mut b = image(0, None);
        // A second metadata region (through the second table only) that has a parent.
        let other = METADATA_AT + (32 << 10);
        let t = REGION_TABLES[1] as usize;
        b[t + 32..t + 40].copy_from_slice(&(other as u64).to_le_bytes());
        b.copy_within(METADATA_AT..METADATA_AT + 64, other);
        b[other + 48..other + 52].copy_from_slice(&(16u32 << 10).to_le_bytes());
        b[other + (16 << 10) + 4..other + (16 << 10) + 8].copy_from_slice(&HAS_PARENT.to_le_bytes());
        assert!(refused(&b, Format::Vhdx).contains("a parent disk"));
    }

    #[test]
    fn truncated_and_absurd_tables_are_named_errors() {
        let whole = image(0, None);
        for len in [8, 200 << 10, METADATA_AT + 4, METADATA_AT + 40] {
            assert!(refused(&whole[..len], Format::Vhdx).contains("cannot be inspected"), "{len}");
        }
        let mut b = whole.clone();
        for table in REGION_TABLES {
            b[table as usize + 8..table as usize + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        }
        assert!(refused(&b, Format::Vhdx).contains("entries (at most 2047)"));
        let mut b = whole.clone();
        b[METADATA_AT + 10..METADATA_AT + 12].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(refused(&b, Format::Vhdx).contains("metadata table"));
        let mut b = whole.clone();
        for table in REGION_TABLES {
            b[table as usize + 32..table as usize + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        }
        assert!(refused(&b, Format::Vhdx).contains("no `metadata` signature"));
        let mut b = whole.clone();
        b[METADATA_AT + 48..METADATA_AT + 52].copy_from_slice(&u32::MAX.to_le_bytes());
        let text = refused(&b, Format::Vhdx);
        assert!(text.contains("file parameters"), "{text}");
    }
}
