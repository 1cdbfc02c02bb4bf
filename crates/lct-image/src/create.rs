//! Making an image of a raw disk: extents read, compressed and hashed on every core with a
//! bounded number in flight (memory stays bounded whatever the disk's size), written in
//! order to `OUT.partial` with a checkpoint beside it, renamed when whole.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::disk::{self, partial_path};
use crate::error::{ImageError, io_at};
use crate::format::{EXTENT_SIZE, Extent, Index, Kind, Manifest, root_hash};
use crate::frame::{zero_frame, zero_hash};
use crate::parallel::{ordered, threads};
use crate::report::{Created, Report};

/// What `create` is told.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub label: String,
    /// zstd's level (3, as `zstd -3`, by default).
    pub level: i32,
    pub threads: usize,
    /// Image a block device even while it is mounted read-write.
    pub force: bool,
    /// Read a source by plain HTTP.
    pub allow_http: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions { label: String::new(), level: 3, threads: threads(), force: false, allow_http: false }
    }
}

/// Images a raw disk: a block device or a file (its holes found without reading them).
pub(crate) fn create_from_file(
    source: &Path,
    name: &str,
    out: &Path,
    options: &CreateOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Report<Created>, ImageError> {
    if !options.force
        && let Some(at) = disk::mounted_rw(source).map_err(io_at(source))?
    {
        return Err(ImageError::Refused(format!(
            "{} is mounted read-write on {at}: its image would not be consistent. Remount it read-only \
             (mount -o remount,ro {at}), freeze it (fsfreeze -f {at}), or image a snapshot; --force images it anyway",
            source.display()
        )));
    }
    let file = File::open(source).map_err(io_at(source))?;
    let size = disk::size(&file).map_err(io_at(source))?;
    let ranges = disk::data_ranges(&file, size);
    let count = size.div_ceil(EXTENT_SIZE) as usize;
    let resume = crate::checkpoint::Source::of(&file, name, size, options.level).map_err(io_at(source))?;
    write_image(
        name,
        out,
        options,
        size,
        Some(resume),
        |i| {
            if i >= count {
                return None;
            }
            let offset = i as u64 * EXTENT_SIZE;
            let len = (size - offset).min(EXTENT_SIZE) as usize;
            if ranges.as_ref().is_some_and(|r| !disk::has_data(r, offset, offset + len as u64)) {
                return Some(Ok(Chunk::Hole(len)));
            }
            let mut buf = vec![0u8; len];
            Some(disk::read_at(&file, &mut buf, offset).map(|()| Chunk::Data(buf)).map_err(io_at(source)))
        },
        progress,
    )
}

/// An extent of a disk on its way into an image.
pub(crate) enum Chunk {
    Data(Vec<u8>),
    Hole(usize),
}

/// Images a raw disk read as one stream (its size known at its end).
pub(crate) fn create_from_stream(
    name: &str,
    mut stream: impl std::io::Read + Send,
    out: &Path,
    options: &CreateOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Report<Created>, ImageError> {
    let at = Path::new(name);
    write_image(
        name,
        out,
        options,
        0,
        None,
        move |_| {
            let mut buf = vec![0u8; EXTENT_SIZE as usize];
            let mut n = 0;
            while n < buf.len() {
                match stream.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Some(Err(io_at(at)(e))),
                }
            }
            if n == 0 {
                return None;
            }
            buf.truncate(n);
            Some(Ok(Chunk::Data(buf)))
        },
        progress,
    )
}

/// Extents written between two checkpoints (64 MiB of disk).
const CHECKPOINT_EVERY: usize = 16;

/// Compresses and hashes what `produce` yields (extent after extent, all full but the
/// last) on every core, writes the frames in order to `OUT.partial`, then the trailer;
/// syncs and renames. `size` is the disk's size if known (for progress), else 0. With
/// `resume` (a source read at random: a file or a device), a checkpoint is kept beside the
/// partial file and a create that stopped goes on where it stopped (`produce` is then
/// asked for the extents from there).
fn write_image(
    name: &str,
    out: &Path,
    options: &CreateOptions,
    size: u64,
    resume: Option<crate::checkpoint::Source>,
    mut produce: impl FnMut(usize) -> Option<Result<Chunk, ImageError>> + Send,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Report<Created>, ImageError> {
    // An image its own readers would refuse (more extents than MAX_EXTENTS) is never made:
    // refused here, before any byte is written, not found out at restore.
    if size.div_ceil(EXTENT_SIZE) > crate::format::MAX_EXTENTS {
        return Err(ImageError::Refused(format!(
            "{name}: {size} bytes is over the {} bytes lct-image reads back (MAX_EXTENTS extents of {EXTENT_SIZE} bytes)",
            crate::format::MAX_EXTENTS * EXTENT_SIZE
        )));
    }
    // `-`: the image to stdout (a node imaging its volume for the controller), else a file
    // written as OUT.partial and renamed when whole.
    let to_stdout = out == Path::new("-");
    let partial = if to_stdout { PathBuf::from("(stdout)") } else { partial_path(out) };
    let resume = resume.filter(|_| !to_stdout);
    let done = resume.as_ref().and_then(|source| crate::checkpoint::resumable(&partial, source)).unwrap_or_default();
    let mut extents: Vec<Extent> = Vec::with_capacity(size.div_ceil(EXTENT_SIZE) as usize);
    let (mut offset, mut coffset) =
        done.last().map_or((0, 0), |e| (e.offset + u64::from(e.len), e.coffset + u64::from(e.csize)));
    let start = done.len();
    if start > 0 {
        tracing::warn!(
            "{}: going on from extent {start} (byte {offset}), where an earlier create stopped",
            out.display()
        );
    }
    extents.extend(done);
    let sink: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        let mut file =
            OpenOptions::new().write(true).create(true).truncate(start == 0).open(&partial).map_err(io_at(&partial))?;
        file.set_len(coffset).map_err(io_at(&partial))?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(coffset)).map_err(io_at(&partial))?;
        Box::new(file)
    };
    let mut file_to_sync = if to_stdout { None } else { Some(File::open(&partial).map_err(io_at(&partial))?) };
    let mut checkpoint = match &resume {
        Some(source) => {
            Some(crate::checkpoint::Checkpoint::open(&partial, source, start > 0).map_err(io_at(&partial))?)
        }
        None => None,
    };
    let mut vouched = start;
    let mut writer = BufWriter::with_capacity(1 << 20, sink);
    let level = options.level;
    let result = ordered(
        options.threads,
        options.threads * 2 + 2,
        |i| produce(i + start),
        |_, chunk| {
            Ok(match chunk {
                Chunk::Hole(len) => (Kind::Zero, len, zero_frame(len), zero_hash(len)),
                Chunk::Data(buf) if disk::is_zero(&buf) => {
                    (Kind::Zero, buf.len(), zero_frame(buf.len()), zero_hash(buf.len()))
                }
                Chunk::Data(buf) => {
                    let frame = zstd::bulk::compress(&buf, level).map_err(io_at(&partial))?;
                    (Kind::Data, buf.len(), frame, *blake3::hash(&buf).as_bytes())
                }
            })
        },
        |_, (kind, len, frame, hash)| {
            if extents.last().is_some_and(|e| u64::from(e.len) != EXTENT_SIZE) {
                return Err(ImageError::Refused(format!("{name}: an extent after a short one")));
            }
            writer.write_all(&frame).map_err(io_at(&partial))?;
            extents.push(Extent { offset, len: len as u32, coffset, csize: frame.len() as u32, kind, hash });
            offset += len as u64;
            coffset += frame.len() as u64;
            progress(offset, size);
            // Every so often: the frames synced, then vouched for in the checkpoint.
            if let (Some(ckpt), Some(file)) = (checkpoint.as_mut(), file_to_sync.as_ref())
                && extents.len() - vouched >= CHECKPOINT_EVERY
            {
                writer.flush().map_err(io_at(&partial))?;
                file.sync_data().map_err(io_at(&partial))?;
                ckpt.append(&extents[vouched..]).map_err(io_at(&partial))?;
                vouched = extents.len();
            }
            Ok(())
        },
    );
    let finish = result.and_then(|()| {
        if extents.is_empty() {
            return Err(ImageError::Refused(format!("{name}: an empty disk")));
        }
        let manifest = Manifest {
            size: offset,
            extent_size: EXTENT_SIZE,
            label: options.label.clone(),
            source: name.to_string(),
            created: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let root = root_hash(&extents);
        let index = Index { manifest, extents: std::mem::take(&mut extents), root };
        writer.write_all(&index.trailer()).map_err(io_at(&partial))?;
        writer.flush().map_err(io_at(&partial))?;
        if let Some(file) = file_to_sync.take() {
            file.sync_all().map_err(io_at(&partial))?;
            std::fs::rename(&partial, out).map_err(io_at(out))?;
        }
        if let Some(ckpt) = checkpoint.take() {
            ckpt.remove();
        }
        Ok(Report::of(out, None, &index, 0))
    });
    // A create that can go on keeps its partial file and checkpoint; others leave nothing.
    if finish.is_err() && !to_stdout && resume.is_none() {
        let _ = std::fs::remove_file(&partial);
    }
    finish
}
