//! What a VMDK names besides its own file: the extents of its descriptor (text lines such
//! as `RW 2048 FLAT "other.img" 0`) and its parent (`parentFileNameHint="base.vmdk"`).
//!
//! A VMDK is either a text descriptor file, whose disk lives wholly in the files its extents
//! name, or a sparse file (magic `KDMV`, little-endian: capacity at 12, descriptor offset
//! at 28 and size at 36, both in 512-byte sectors) with the descriptor embedded. qemu reads a
//! sparse file of capacity 0 as a descriptor file (its extents are followed), and looks for
//! `parentFileNameHint` anywhere in the 10 KiB from byte 512 (sparse) or 0 (descriptor).
//! What is inspected here is a superset of what qemu reads: every descriptor byte qemu
//! would parse, with no NUL ending it early.

use super::{Format, Named, ReadAt, Refusal, le64, shown};

/// qemu reads at most this much of a descriptor.
const DESCRIPTOR_MAX: usize = 1 << 20;
/// Where qemu looks for a parent: 10 KiB from byte 512 of a sparse file, from 0 of a
/// descriptor file; this window holds both.
const PARENT_WINDOW: usize = 512 + 10 * 1024;
const SECTOR: u64 = 512;

fn names(what: String, name: &[u8]) -> Refusal {
    Refusal::NamesAnotherFile { format: Format::Vmdk, named: Named { what, name: shown(name) } }
}

fn uninspectable(field: &'static str, why: String) -> Refusal {
    Refusal::Uninspectable { format: Format::Vmdk, field, why }
}

pub(super) fn inspect(image: &dyn ReadAt) -> Result<(), Refusal> {
    let head = image.read_at_most(0, 512)?;
    if !head.starts_with(b"KDMV") {
        // A descriptor file: every extent with a name is another file.
        let text = image.read_at_most(0, DESCRIPTOR_MAX)?;
        no_parent(&text)?;
        return match extents(&text).find(|e| e.is_a_file()) {
            Some(extent) => Err(extent.refusal()),
            None => Ok(()),
        };
    }
    let field = |at: usize, what: &'static str| {
        le64(&head, at)
            .ok_or_else(|| uninspectable("header", format!("it ends at byte {} (before its {what})", head.len())))
    };
    let capacity = field(12, "capacity")?;
    let descriptor_at = field(28, "descriptor offset")?;
    let descriptor_sectors = field(36, "descriptor size")?;
    no_parent(&image.read_at_most(0, PARENT_WINDOW)?)?;
    if descriptor_at == 0 {
        return Ok(());
    }
    let at = descriptor_at
        .checked_mul(SECTOR)
        .ok_or_else(|| uninspectable("header", format!("descriptor offset {descriptor_at} sectors (past any file)")))?;
    let text = image.read_at_most(at, DESCRIPTOR_MAX)?;
    no_parent(&text)?;
    if capacity == 0 {
        // qemu takes such a file for a descriptor file and opens the files it names.
        return match extents(&text).find(|e| e.is_a_file()) {
            Some(extent) => Err(extent.refusal()),
            None => Ok(()),
        };
    }
    // The file holds its own disk: the descriptor's one SPARSE extent is this file (qemu
    // reads it from here whatever its name says). Any other extent would be another file.
    let len = usize::try_from(descriptor_sectors.saturating_mul(SECTOR)).unwrap_or(usize::MAX).min(text.len());
    let text = text[..len].split(|&b| b == 0).next().unwrap_or_default();
    let mut files = extents(text).filter(|e| e.is_a_file());
    if let Some(first) = files.next()
        && first.kind != "SPARSE"
    {
        return Err(first.refusal());
    }
    match files.next() {
        Some(another) => Err(another.refusal()),
        None => Ok(()),
    }
}

/// A descriptor's extent line: `ACCESS SECTORS TYPE ["NAME" [OFFSET]]`.
struct Extent<'a> {
    kind: String,
    name: Option<&'a [u8]>,
}

impl Extent<'_> {
    /// Every extent type but ZERO reads a file (qemu: FLAT, SPARSE, VMFS, VMFSSPARSE,
    /// SESPARSE; VMware has more): any named one counts.
    fn is_a_file(&self) -> bool {
        self.name.is_some() && self.kind != "ZERO"
    }

    fn refusal(&self) -> Refusal {
        names(format!("an extent ({})", self.kind), self.name.unwrap_or_default())
    }
}

/// C's `isspace`, which qemu's descriptor parser (sscanf) splits on.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The extent lines of a descriptor: lines whose first word is an access mode (in any case:
/// stricter than qemu, which takes only `RW`).
fn extents(text: &[u8]) -> impl Iterator<Item = Extent<'_>> {
    text.split(|&b| b == b'\n').filter_map(|line| {
        let mut words = line.split(|&b| is_space(b)).filter(|w| !w.is_empty());
        let access = words.next()?;
        if !["RW", "RDONLY", "NOACCESS"].iter().any(|a| access.eq_ignore_ascii_case(a.as_bytes())) {
            return None;
        }
        let _sectors = words.next();
        let kind = words.next().unwrap_or_default();
        let kind = kind.split(|&b| b == b'"').next().unwrap_or_default();
        let kind = String::from_utf8_lossy(kind).to_ascii_uppercase();
        let name = line.iter().position(|&b| b == b'"').map(|open| {
            let rest = &line[open + 1..];
            &rest[..rest.iter().position(|&b| b == b'"').unwrap_or(rest.len())]
        });
        Some(Extent { kind, name })
    })
}

/// Refuses a parent named anywhere in `window`. qemu skips the two bytes after the key
/// (`="`) and reads the name to the next quote; here everything from the key to the second
/// quote after it must be `=`, quotes and spaces (an empty hint), or it names a parent.
fn no_parent(window: &[u8]) -> Result<(), Refusal> {
    const KEY: &[u8] = b"parentFileNameHint";
    let mut from = 0;
    while let Some(found) = window[from..].windows(KEY.len()).position(|w| w == KEY) {
        let rest = &window[from + found + KEY.len()..];
        let end = rest.iter().enumerate().filter(|&(_, &b)| b == b'"').nth(1).map_or(rest.len(), |(i, _)| i);
        let value = &rest[..end];
        if value.iter().any(|&b| b != b'=' && b != b'"' && !is_space(b)) {
            let start = value.iter().position(|&b| b != b'=' && b != b'"' && !is_space(b)).unwrap_or(0);
            return Err(names("a parent disk (parentFileNameHint)".into(), &value[start..]));
        }
        from += found + KEY.len();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::refused;
    use super::*;

    fn descriptor(extents: &str) -> Vec<u8> {
        format!(
            "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
             createType=\"monolithicFlat\"\n\n# Extent description\n{extents}\n\
             # The Disk Data Base\nddb.adapterType = \"ide\"\n"
        )
        .into_bytes()
    }

    /// A sparse file: its header, then its descriptor at sector 1.
    fn sparse(capacity: u64, extents: &str) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0..4].copy_from_slice(b"KDMV");
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[12..20].copy_from_slice(&capacity.to_le_bytes());
        b[28..36].copy_from_slice(&1u64.to_le_bytes());
        b[36..44].copy_from_slice(&20u64.to_le_bytes());
        let mut text = descriptor(extents);
        text.resize(20 * 512, 0);
        b.extend(text);
        // Grain data after it, with what would look like an extent were it read.
        b.extend(b"\nRW 1 FLAT \"/not/a/descriptor\" 0\n");
        b
    }

    #[test]
    fn a_descriptor_files_extents_are_refused_by_type_and_name() {
        for (line, want) in [
            (r#"RW 2048 FLAT "/root/secret" 0"#, r#"an extent (FLAT) "/root/secret""#),
            (r#"RW 2048 SPARSE "base-s001.vmdk""#, r#"an extent (SPARSE) "base-s001.vmdk""#),
            (r#"  rdonly	8 vmfs "../x""#, r#"an extent (VMFS) "../x""#),
            (r#"RW 2048 FLAT"/glued" 0"#, r#"an extent (FLAT) "/glued""#),
            ("NOACCESS 1 VMFSSPARSE \"unterminated\r", r#"an extent (VMFSSPARSE) "unterminated\r""#),
        ] {
            let text = refused(&descriptor(line), Format::Vmdk);
            assert!(text.contains(want), "{line}: {text}");
        }
    }

    #[test]
    fn zero_extents_and_comments_name_nothing() {
        inspect(&descriptor("RW 2048 ZERO\n# RW 2048 FLAT \"commented\" 0")).unwrap();
    }

    #[test]
    fn a_parent_hint_is_refused_however_it_is_spelled() {
        for hint in [
            r#"parentFileNameHint="base.vmdk""#,
            "parentFileNameHint=\"\n/etc/shadow\"",
            r#"parentFileNameHint= "x""#,
            r#"#parentFileNameHintXX/y""#,
        ] {
            let text = refused(&descriptor(&format!("RW 8 ZERO\n{hint}")), Format::Vmdk);
            assert!(text.contains("a parent disk (parentFileNameHint)"), "{hint}: {text}");
        }
        inspect(&descriptor("RW 8 ZERO\nparentFileNameHint=\"\"")).unwrap();
        // In a sparse file's header sectors too.
        let mut b = sparse(2048, r#"RW 2048 SPARSE "disk.vmdk""#);
        b[600..631].copy_from_slice(br#"parentFileNameHint="/a/b.vmdk" "#);
        assert!(refused(&b, Format::Vmdk).contains(r#""/a/b.vmdk""#));
    }

    #[test]
    fn a_sparse_file_may_name_itself_once_and_nothing_else() {
        inspect(&sparse(2048, r#"RW 2048 SPARSE "disk.vmdk""#)).unwrap();
        let two = sparse(4096, "RW 2048 SPARSE \"disk.vmdk\"\nRW 2048 SPARSE \"/root/secret\"");
        assert!(refused(&two, Format::Vmdk).contains(r#"an extent (SPARSE) "/root/secret""#));
        let flat = sparse(2048, r#"RW 2048 FLAT "/root/secret" 0"#);
        assert!(refused(&flat, Format::Vmdk).contains(r#"an extent (FLAT) "/root/secret""#));
    }

    #[test]
    fn a_sparse_file_of_capacity_zero_is_a_descriptor_file() {
        let b = sparse(0, r#"RW 2048 SPARSE "disk.vmdk""#);
        assert!(refused(&b, Format::Vmdk).contains(r#"an extent (SPARSE) "disk.vmdk""#));
    }

    #[test]
    fn truncated_and_absurd_sparse_headers() {
        let whole = sparse(2048, r#"RW 2048 SPARSE "disk.vmdk""#);
        for len in [4, 12, 30, 43] {
            assert!(refused(&whole[..len], Format::Vmdk).contains("cannot be inspected"), "{len}");
        }
        let mut b = whole.clone();
        b[28..36].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(refused(&b, Format::Vmdk).contains("descriptor offset"));
        // A descriptor past the end, or an absurd size: nothing there to name a file.
        b[28..36].copy_from_slice(&(u64::MAX / 512).to_le_bytes());
        inspect(&b).unwrap();
        let mut b = whole.clone();
        b[36..44].copy_from_slice(&u64::MAX.to_le_bytes());
        inspect(&b).unwrap();
    }
}
