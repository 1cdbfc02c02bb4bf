//! What a qcow2 header names besides its own file: a backing file (the header's
//! `backing_file_offset`/`backing_file_size`), and an external data file (incompatible
//! feature bit 2, its name in the "DATA" header extension).
//!
//! Layout (qemu's docs/interop/qcow2.txt, big-endian): version at 4, backing file offset
//! at 8 (u64) and size at 16 (u32), cluster bits at 20; from version 3, incompatible
//! features at 72 (u64) and the header's length at 100 (u32). Header extensions follow the
//! header (from byte 72 in version 2), each a type (u32), a length (u32) and data padded to
//! 8 bytes, up to a type 0 or the end of the first cluster.

use super::{Format, Named, ReadAt, Refusal, be32, be64, shown};

/// Incompatible feature bit 2: the guest data lives in an external data file.
const EXTERNAL_DATA_FILE: u64 = 1 << 2;
/// The header extension holding the external data file's name ("DATA").
const DATA_FILE_NAME: u32 = 0x4441_5441;
/// qemu's limit on a backing file's name (bytes).
const MAX_BACKING_NAME: u32 = 1023;

fn uninspectable(why: String) -> Refusal {
    Refusal::Uninspectable { format: Format::Qcow2, field: "header", why }
}

fn names(what: &str, name: String) -> Refusal {
    Refusal::NamesAnotherFile { format: Format::Qcow2, named: Named { what: what.into(), name } }
}

pub(super) fn inspect(image: &dyn ReadAt) -> Result<(), Refusal> {
    let head = image.read_at_most(0, 104)?;
    let short = |what: &str| uninspectable(format!("it ends at byte {} (before its {what})", head.len()));
    let u32_at = |at: usize, what: &str| be32(&head, at).ok_or_else(|| short(what));
    let u64_at = |at: usize, what: &str| be64(&head, at).ok_or_else(|| short(what));
    let version = u32_at(4, "version")?;
    if !(2..=3).contains(&version) {
        return Err(uninspectable(format!("version {version} (qcow2 has versions 2 and 3)")));
    }
    let backing_offset = u64_at(8, "backing file offset")?;
    let backing_size = u32_at(16, "backing file size")?;
    let cluster_bits = u32_at(20, "cluster bits")?;
    // qemu's range: 512 bytes to 2 MiB.
    if !(9..=21).contains(&cluster_bits) {
        return Err(uninspectable(format!("cluster bits {cluster_bits} (qcow2 allows 9 to 21)")));
    }
    let cluster = 1usize << cluster_bits;
    if backing_offset != 0 || backing_size != 0 {
        let name = if backing_size <= MAX_BACKING_NAME && backing_offset < cluster as u64 {
            shown(&image.read_at_most(backing_offset, backing_size as usize)?)
        } else {
            format!("of {backing_size} bytes at byte {backing_offset}, beyond what qcow2 allows")
        };
        return Err(names("a backing file", name));
    }
    let (incompatible, extensions_at) = if version == 3 {
        let length = u32_at(100, "header length")? as usize;
        if !(104..=cluster).contains(&length) {
            return Err(uninspectable(format!("header length {length} (104 to the cluster size, {cluster})")));
        }
        (u64_at(72, "incompatible features")?, length)
    } else {
        (0, 72)
    };
    let data_file = data_file_name(&image.read_at_most(0, cluster)?, extensions_at)?;
    if incompatible & EXTERNAL_DATA_FILE != 0 || data_file.is_some() {
        return Err(names("an external data file", data_file.unwrap_or_default()));
    }
    Ok(())
}

/// The external data file's name from the header extensions, if there is one.
fn data_file_name(first_cluster: &[u8], mut at: usize) -> Result<Option<String>, Refusal> {
    let mut name = None;
    while let (Some(kind), Some(len)) = (be32(first_cluster, at), be32(first_cluster, at + 4)) {
        if kind == 0 {
            break;
        }
        let start = at + 8;
        let end = start.checked_add(len as usize).filter(|&end| end <= first_cluster.len()).ok_or_else(|| {
            uninspectable(format!("header extension at byte {at} of {len} bytes runs past the first cluster"))
        })?;
        if kind == DATA_FILE_NAME {
            name = Some(shown(&first_cluster[start..end]));
        }
        at = start + (len as usize).next_multiple_of(8);
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::super::tests::refused;
    use super::*;

    /// A qcow2 header of `version` with 64 KiB clusters, its extensions, and a backing name
    /// at byte 512 if given.
    fn image(version: u32, incompatible: u64, extensions: &[(u32, &[u8])], backing: Option<&[u8]>) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[0..4].copy_from_slice(b"QFI\xfb");
        b[4..8].copy_from_slice(&version.to_be_bytes());
        b[20..24].copy_from_slice(&16u32.to_be_bytes());
        if let Some(name) = backing {
            b[8..16].copy_from_slice(&512u64.to_be_bytes());
            b[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
            b[512..512 + name.len()].copy_from_slice(name);
        }
        let mut at = if version == 3 {
            b[72..80].copy_from_slice(&incompatible.to_be_bytes());
            b[100..104].copy_from_slice(&104u32.to_be_bytes());
            104
        } else {
            72
        };
        for (kind, data) in extensions {
            b[at..at + 4].copy_from_slice(&kind.to_be_bytes());
            b[at + 4..at + 8].copy_from_slice(&(data.len() as u32).to_be_bytes());
            b[at + 8..at + 8 + data.len()].copy_from_slice(data);
            at += 8 + data.len().next_multiple_of(8);
        }
        b
    }

    #[test]
    fn a_plain_image_passes_in_both_versions() {
        let backing_format_only = 0xe279_2aca;
        for version in [2, 3] {
            inspect(&image(version, 0, &[(backing_format_only, b"raw")], None)).unwrap();
        }
    }

    #[test]
    fn a_backing_file_is_refused_by_name() {
        let text = refused(&image(3, 0, &[], Some(b"/root/secret")), Format::Qcow2);
        assert!(text.contains(r#"a backing file "/root/secret""#), "{text}");
        let text = refused(&image(2, 0, &[], Some(b"../x")), Format::Qcow2);
        assert!(text.contains(r#""../x""#), "{text}");
    }

    #[test]
    fn a_backing_file_beyond_the_limits_is_refused_without_reading_it() {
        let mut b = image(3, 0, &[], None);
        b[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        b[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        let text = refused(&b, Format::Qcow2);
        assert!(text.contains("beyond what qcow2 allows"), "{text}");
        // A size alone (offset 0) still names one.
        let mut b = image(3, 0, &[], None);
        b[16..20].copy_from_slice(&4u32.to_be_bytes());
        assert!(refused(&b, Format::Qcow2).contains("a backing file"));
    }

    #[test]
    fn an_external_data_file_is_refused_by_bit_or_by_extension() {
        let text = refused(&image(3, EXTERNAL_DATA_FILE, &[(DATA_FILE_NAME, b"/srv/data")], None), Format::Qcow2);
        assert!(text.contains(r#"an external data file "/srv/data""#), "{text}");
        let text = refused(&image(3, EXTERNAL_DATA_FILE, &[], None), Format::Qcow2);
        assert!(text.contains("an external data file (its name is not in the image)"), "{text}");
        let text = refused(&image(3, 0, &[(DATA_FILE_NAME, b"d")], None), Format::Qcow2);
        assert!(text.contains(r#"an external data file "d""#), "{text}");
    }

    #[test]
    fn truncated_and_absurd_headers_are_named_errors() {
        let whole = image(3, 0, &[], None);
        for len in [0, 3, 7, 20, 80, 103] {
            let text = refused(&whole[..len], Format::Qcow2);
            assert!(text.contains("cannot be inspected"), "{len}: {text}");
        }
        let mut b = whole.clone();
        b[4..8].copy_from_slice(&1u32.to_be_bytes());
        assert!(refused(&b, Format::Qcow2).contains("version 1"));
        let mut b = whole.clone();
        b[20..24].copy_from_slice(&64u32.to_be_bytes());
        assert!(refused(&b, Format::Qcow2).contains("cluster bits 64"));
        let mut b = whole.clone();
        b[100..104].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(refused(&b, Format::Qcow2).contains("header length"));
        // An extension whose length runs past the first cluster (or wraps).
        let mut b = whole.clone();
        b[104..108].copy_from_slice(&7u32.to_be_bytes());
        b[108..112].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(refused(&b, Format::Qcow2).contains("runs past the first cluster"));
    }

    #[test]
    fn extensions_that_fill_the_cluster_end_the_walk() {
        // Extensions of length 0 all the way to the end of the (short) file: no data file.
        let mut b = image(3, 0, &[], None);
        for at in (104..b.len()).step_by(8) {
            b[at..at + 4].copy_from_slice(&9u32.to_be_bytes());
        }
        inspect(&b).unwrap();
    }
}
