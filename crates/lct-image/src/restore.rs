//! Restoring an image onto a file or block device, and verifying an image or a target:
//! every extent's hash checked, on every core, in order.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::disk;
use crate::error::{ImageError, io_at};
use crate::format::Kind;
use crate::frame::check_frame;
use crate::opened::Opened;
use crate::parallel::{ordered, threads};
use crate::report::{Report, Restored, Verified};

/// What `restore` is told.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Read the target first and write only the extents that differ (a resumed restore,
    /// or a target that already holds most of the image).
    pub skip_matching: bool,
    pub threads: usize,
    /// Write onto a block device even while it is mounted.
    pub force: bool,
    /// Read an image by plain HTTP.
    pub allow_http: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions { skip_matching: false, threads: threads(), force: false, allow_http: false }
    }
}

/// Restores `image` onto `target` (a file, made or grown to the disk's size, or a block
/// device at least that large): each extent's hash is checked before it is written, zero
/// extents become real zeros, and the target is synced before this returns.
pub fn restore(
    image: &Path,
    target: &Path,
    options: &RestoreOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Report<Restored>, ImageError> {
    let opened = Opened::open(image, options.allow_http)?;
    restore_opened(&opened, target, options, progress)
}

/// [`restore`] of an image already opened.
pub fn restore_opened(
    opened: &Opened,
    target: &Path,
    options: &RestoreOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Report<Restored>, ImageError> {
    let image = Path::new(&opened.name);
    let index = &opened.index;
    if !options.force
        && let Some(at) = disk::mounted_rw(target).map_err(io_at(target))?
    {
        return Err(ImageError::Refused(format!(
            "{} is mounted on {at}: unmount it first (--force writes anyway)",
            target.display()
        )));
    }
    let out =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(target).map_err(io_at(target))?;
    let size = index.manifest.size;
    // A file with nothing in it (new, or empty) reads as zeros once sized: its zero extents
    // need no work at all.
    let fresh = !disk::is_block_device(&out) && out.metadata().map_err(io_at(target))?.len() == 0;
    if disk::is_block_device(&out) {
        let have = disk::size(&out).map_err(io_at(target))?;
        if have < size {
            return Err(ImageError::Refused(format!(
                "{} has {have} bytes, the image's disk {size}: too small",
                target.display()
            )));
        }
    } else if out.metadata().map_err(io_at(target))?.len() != size {
        out.set_len(size).map_err(io_at(target))?;
    }
    let skipped = std::sync::atomic::AtomicUsize::new(0);
    ordered(
        options.threads,
        options.threads * 2 + 2,
        |i| {
            let e = index.extents.get(i)?;
            if e.kind == Kind::Zero {
                return Some(Ok(Vec::new()));
            }
            Some(opened.frame(e))
        },
        |i, frame| {
            let e = &index.extents[i];
            if options.skip_matching {
                let mut have = vec![0u8; e.len as usize];
                if disk::read_at(&out, &mut have, e.offset).is_ok() && *blake3::hash(&have).as_bytes() == e.hash {
                    skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
            }
            match e.kind {
                Kind::Zero if fresh => Ok(()),
                Kind::Zero => disk::zero_range(&out, e.offset, u64::from(e.len)).map_err(io_at(target)),
                Kind::Data => {
                    let data = check_frame(image, i, e, &frame)?;
                    out.write_all_at(&data, e.offset).map_err(io_at(target))
                }
            }
        },
        |i, ()| {
            let e = &index.extents[i];
            progress(e.offset + u64::from(e.len), size);
            Ok(())
        },
    )?;
    out.sync_all().map_err(io_at(target))?;
    Ok(Report::of(image, Some(target), index, skipped.into_inner()))
}

/// Checks an image (every frame decompresses to its extent's hash) or, with `target`, that
/// the target holds the image: the first bad extent is named.
pub fn verify(
    image: &Path,
    target: Option<&Path>,
    threads: usize,
    allow_http: bool,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Report<Verified>, ImageError> {
    let opened = Opened::open(image, allow_http)?;
    let index = &opened.index;
    let size = index.manifest.size;
    let target_file = match target {
        Some(t) => Some(File::open(t).map_err(io_at(t))?),
        None => None,
    };
    ordered(
        threads,
        threads * 2 + 2,
        |i| {
            let e = index.extents.get(i)?;
            let Some(file) = &target_file else { return Some(opened.frame(e)) };
            let path = target.expect("with its file");
            let mut buf = vec![0u8; e.len as usize];
            Some(disk::read_at(file, &mut buf, e.offset).map(|()| buf).map_err(|err| match target {
                // A short target is a difference, not an I/O failure.
                Some(t) if err.kind() == std::io::ErrorKind::UnexpectedEof => ImageError::Differs {
                    target: t.display().to_string(),
                    index: i,
                    offset: e.offset,
                    end: e.offset + u64::from(e.len),
                },
                _ => io_at(path)(err),
            }))
        },
        |i, buf| {
            let e = &index.extents[i];
            let end = e.offset + u64::from(e.len);
            if let Some(t) = target {
                if *blake3::hash(&buf).as_bytes() != e.hash {
                    return Err(ImageError::Differs {
                        target: t.display().to_string(),
                        index: i,
                        offset: e.offset,
                        end,
                    });
                }
                return Ok(());
            }
            check_frame(image, i, e, &buf).map(|_| ())
        },
        |i, ()| {
            let e = &index.extents[i];
            progress(e.offset + u64::from(e.len), size);
            Ok(())
        },
    )?;
    Ok(Report::of(image, target, index, 0))
}
