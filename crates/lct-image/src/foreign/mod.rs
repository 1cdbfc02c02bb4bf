//! What a foreign disk image (qcow2, VMDK, VHDX, VDI) says about other files: backing files,
//! external data files, extents in other files, parent disks.
//!
//! qemu-img follows every such name it finds (absolute, or relative to the image), so an
//! image from outside that names `/root/.ssh/id_ed25519` as its backing file or extent would
//! have that file's bytes copied into the disk lct makes of it. `create` therefore reads the
//! headers here first, with its own bounded reads (every size, offset and count from the file
//! is checked against a fixed cap before it is used), and refuses an image that names any
//! other file, saying which; only then does qemu-img see it (and then with its backing
//! disabled, see `source`).

mod qcow2;
mod vdi;
mod vhdx;
mod vmdk;

use std::fmt;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The foreign formats `create` converts with qemu-img.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Qcow2,
    Vmdk,
    Vhdx,
    Vdi,
}

impl Format {
    /// qemu-img's name for the format (its `-f` and its block driver).
    pub fn qemu_name(self) -> &'static str {
        match self {
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhdx => "vhdx",
            Format::Vdi => "vdi",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "VMDK",
            Format::Vhdx => "VHDX",
            Format::Vdi => "VDI",
        })
    }
}

/// Another file (or disk) an image names: what kind of reference, and the name as the
/// image spells it (shown quoted and escaped, cut to a readable length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub what: String,
    pub name: String,
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "{} (its name is not in the image)", self.what)
        } else {
            write!(f, "{} {:?}", self.what, self.name)
        }
    }
}

/// Why an image is not converted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "it is a {format} image that names another file, {named}; lct takes only images that hold \
         their whole disk (flatten it where its parts are trusted, e.g. `qemu-img convert -O qcow2`)"
    )]
    NamesAnotherFile { format: Format, named: Named },
    #[error("its {format} {field} cannot be inspected: {why}")]
    Uninspectable { format: Format, field: &'static str, why: String },
    #[error("reading it: {0}")]
    Io(#[from] io::Error),
}

/// Refuses an image that names any other file (see the formats' modules for what counts).
pub fn inspect_file(path: &Path, format: Format) -> Result<(), Refusal> {
    inspect(&std::fs::File::open(path)?, format)
}

/// [`inspect_file`] over any bytes (the unit tests hand it crafted headers).
pub fn inspect(image: &dyn ReadAt, format: Format) -> Result<(), Refusal> {
    match format {
        Format::Qcow2 => qcow2::inspect(image),
        Format::Vmdk => vmdk::inspect(image),
        Format::Vhdx => vhdx::inspect(image),
        Format::Vdi => vdi::inspect(image),
    }
}

/// The most any one read here takes (a qcow2 image's first cluster at its largest, 2 MiB):
/// no length read from an image sizes an allocation beyond it.
pub(crate) const MAX_READ: usize = 2 << 20;

/// Bytes at an offset: fewer than asked at the end of the image, none beyond it.
pub trait ReadAt {
    fn read_at_most(&self, at: u64, len: usize) -> io::Result<Vec<u8>>;
}

impl ReadAt for std::fs::File {
    fn read_at_most(&self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        let size = self.metadata()?.len();
        let len = len.min(MAX_READ).min(usize::try_from(size.saturating_sub(at)).unwrap_or(usize::MAX));
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            match self.read_at(&mut buf[done..], at + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }
}

impl ReadAt for Vec<u8> {
    fn read_at_most(&self, at: u64, len: usize) -> io::Result<Vec<u8>> {
        let start = usize::try_from(at).unwrap_or(usize::MAX).min(self.len());
        let end = start.saturating_add(len.min(MAX_READ)).min(self.len());
        Ok(self[start..end].to_vec())
    }
}

/// Little- and big-endian fields of a header, `None` past its end.
pub(crate) fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}
pub(crate) fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}
pub(crate) fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}
pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}
pub(crate) fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// A name from an image as a message shows it: lossy UTF-8 up to the first NUL, at most
/// 256 characters (the rest is said to be cut).
pub(crate) fn shown(bytes: &[u8]) -> String {
    let bytes = bytes.split(|&b| b == 0).next().unwrap_or_default();
    let text = String::from_utf8_lossy(bytes);
    if text.chars().count() > 256 {
        format!("{}... (cut)", text.chars().take(256).collect::<String>())
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The text of a refusal (what the operator reads), for assertions.
    pub(crate) fn refused(image: &[u8], format: Format) -> String {
        match inspect(&image.to_vec(), format) {
            Ok(()) => panic!("{format} image accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn reads_stop_at_the_end_and_at_the_cap() {
        let bytes = vec![7u8; 10];
        assert_eq!(bytes.read_at_most(8, 100).unwrap(), vec![7, 7]);
        assert!(bytes.read_at_most(u64::MAX, 100).unwrap().is_empty());
        let big = vec![0u8; MAX_READ + 10];
        assert_eq!(big.read_at_most(0, usize::MAX).unwrap().len(), MAX_READ);
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        assert_eq!(file.read_at_most(8, 100).unwrap(), vec![7, 7]);
        assert!(file.read_at_most(u64::MAX, usize::MAX).unwrap().is_empty());
    }

    #[test]
    fn names_are_shown_escaped_and_cut() {
        let named = Named { what: "a backing file".into(), name: shown(b"/etc/x\n\x1b[2J\0ignored") };
        assert_eq!(named.to_string(), r#"a backing file "/etc/x\n\u{1b}[2J""#);
        assert!(shown(&[b'a'; 1000]).ends_with("... (cut)"));
    }
}
