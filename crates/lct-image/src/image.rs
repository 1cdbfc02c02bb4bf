//! Making, restoring and verifying images: extents read, compressed and hashed on every
//! core with a bounded number in flight (memory stays bounded whatever the disk's size),
//! written in order.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel};
use std::sync::{Mutex, OnceLock};

use serde::Serialize;

use crate::disk;
use crate::format::{EXTENT_SIZE, Extent, FormatError, Index, Kind, Manifest, hex, root_hash};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: {error}")]
    Format { path: String, error: FormatError },
    #[error("{0}")]
    Refused(String),
    #[error("{image}: extent {index} (bytes {offset}..{end}) is damaged: {why}")]
    Damaged { image: String, index: usize, offset: u64, end: u64, why: String },
    #[error("{target}: extent {index} (bytes {offset}..{end}) differs from the image")]
    Differs { target: String, index: usize, offset: u64, end: u64 },
}

pub(crate) fn io_at(path: &Path) -> impl Fn(std::io::Error) -> ImageError + '_ {
    move |error| ImageError::Io { path: path.display().to_string(), error }
}

/// How many threads compress or decompress: every core.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs `work` on `threads` threads over what `produce` yields, and hands the results to
/// `consume` in order; at most `window` items are between `produce` and `consume` at any
/// time (what bounds memory).
pub(crate) fn ordered<I: Send, O: Send>(
    threads: usize,
    window: usize,
    mut produce: impl FnMut(usize) -> Option<Result<I, ImageError>> + Send,
    work: impl Fn(usize, I) -> Result<O, ImageError> + Sync,
    mut consume: impl FnMut(usize, O) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let (tokens_tx, tokens_rx) = sync_channel::<()>(window);
    for _ in 0..window {
        tokens_tx.send(()).expect("room for the window");
    }
    let (jobs_tx, jobs_rx) = sync_channel::<(usize, I)>(window);
    let (results_tx, results_rx) = channel::<(usize, Result<O, ImageError>)>();
    let jobs_rx = Mutex::new(jobs_rx);
    // Once the consumer has stopped (an error), workers only drain the jobs, so that the
    // producer is never left blocked on a full queue.
    let stopped = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Owned here, so that an early return (an error) closes them: the producer and the
        // workers then stop instead of waiting for a consumer that is gone.
        let (tokens_tx, results_rx) = (tokens_tx, results_rx);
        let results_for_producer = results_tx.clone();
        scope.spawn(move || {
            let mut i = 0;
            while tokens_rx.recv().is_ok() {
                match produce(i) {
                    None => break,
                    Some(Ok(item)) => {
                        if jobs_tx.send((i, item)).is_err() {
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        let _ = results_for_producer.send((i, Err(e)));
                        break;
                    }
                }
                i += 1;
            }
        });
        let work = &work;
        let jobs_rx = &jobs_rx;
        let stopped = &stopped;
        for _ in 0..threads.max(1) {
            let results_tx = results_tx.clone();
            scope.spawn(move || {
                loop {
                    let job = jobs_rx.lock().expect("not poisoned").recv();
                    let Ok((i, item)) = job else { break };
                    if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                        continue;
                    }
                    if results_tx.send((i, work(i, item))).is_err() {
                        stopped.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        drop(results_tx);
        let mut pending: BTreeMap<usize, Result<O, ImageError>> = BTreeMap::new();
        let mut next = 0;
        for (i, result) in results_rx.iter() {
            pending.insert(i, result);
            while let Some(result) = pending.remove(&next) {
                consume(next, result?)?;
                next += 1;
                let _ = tokens_tx.send(());
            }
        }
        Ok(())
    })
}

/// A frame of `len` zeros, made once per length (all extents but the last share one).
pub(crate) fn zero_frame(len: usize) -> Vec<u8> {
    static FULL: OnceLock<(Vec<u8>, [u8; 32])> = OnceLock::new();
    if len as u64 == EXTENT_SIZE {
        return FULL.get_or_init(|| zeros_frame_and_hash(len)).0.clone();
    }
    zeros_frame_and_hash(len).0
}

fn zero_hash(len: usize) -> [u8; 32] {
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

/// What a create, restore or verify did (the `image-*` records).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kind: &'static str,
    pub v: u32,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub size: u64,
    pub extents: usize,
    pub data_extents: usize,
    pub zero_extents: usize,
    /// Extents `--skip-matching` found right on the target.
    pub skipped: usize,
    pub image_bytes: u64,
    pub root: String,
}

/// The report of a restore onto `target` of `opened` (done elsewhere, a node).
pub(crate) fn report_of(opened: &Opened, target: &str) -> Report {
    report("image-restored", Path::new(&opened.name), Some(Path::new(target)), &opened.index, 0)
}

pub(crate) fn report_for(kind: &'static str, image: &Path, target: Option<&Path>, index: &Index) -> Report {
    report(kind, image, target, index, 0)
}

fn report(kind: &'static str, image: &Path, target: Option<&Path>, index: &Index, skipped: usize) -> Report {
    let data = index.extents.iter().filter(|e| e.kind == Kind::Data).count();
    Report {
        kind,
        v: 1,
        image: image.display().to_string(),
        target: target.map(|t| t.display().to_string()),
        size: index.manifest.size,
        extents: index.extents.len(),
        data_extents: data,
        zero_extents: index.extents.len() - data,
        skipped,
        image_bytes: index.extents.iter().map(|e| u64::from(e.csize)).sum(),
        root: hex(&index.root),
    }
}

/// Images `source` into `out`: a block device or disk file (raw), a qcow2, VMDK, VHDX or
/// VDI file (through qemu-img), a .gz, .xz or .zst stream of a raw disk, or any of these by
/// URL. Written to `OUT.partial` and renamed when whole and synced. `progress` hears the
/// bytes done and the total (0 while unknown).
pub fn create(
    source: &Path,
    out: &Path,
    options: &CreateOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Report, ImageError> {
    let name = source.display().to_string();
    if crate::remote::is_url(&name) {
        return crate::source::create_from_url(&name, out, options, progress);
    }
    let mut head = [0u8; 72];
    let read = File::open(source).and_then(|f| {
        let mut n = 0;
        while n < head.len() {
            match std::io::Read::read(&mut &f, &mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    });
    let head = &head[..read.map_err(io_at(source))?];
    match crate::source::Kind::of(head) {
        crate::source::Kind::Raw => create_from_file(source, &name, out, options, progress),
        kind => crate::source::create_from_local(source, kind, out, options, progress),
    }
}

/// Images a raw disk: a block device or a file (its holes found without reading them).
pub(crate) fn create_from_file(
    source: &Path,
    name: &str,
    out: &Path,
    options: &CreateOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Report, ImageError> {
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
) -> Result<Report, ImageError> {
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
) -> Result<Report, ImageError> {
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
        Ok(report("image-created", out, None, &index, 0))
    });
    // A create that can go on keeps its partial file and checkpoint; others leave nothing.
    if finish.is_err() && !to_stdout && resume.is_none() {
        let _ = std::fs::remove_file(&partial);
    }
    finish
}

pub(crate) fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// Reads an image file's index.
pub fn index(image: &Path) -> Result<Index, ImageError> {
    let mut file = File::open(image).map_err(io_at(image))?;
    Index::read(&mut file).map_err(|error| ImageError::Format { path: image.display().to_string(), error })
}

/// `REPO::NAME` (image NAME in the repository at REPO, as borg names archives), unless a
/// file of that name exists.
pub fn repo_ref(spec: &Path) -> Option<(PathBuf, String)> {
    let text = spec.to_str()?;
    let (dir, name) = text.rsplit_once("::")?;
    (!spec.exists() && !name.is_empty()).then(|| (PathBuf::from(if dir.is_empty() { "." } else { dir }), name.into()))
}

/// An image opened for reading: a file, or an image in a repository (`REPO::NAME`, the
/// repository's shared lock held while it is open).
pub struct Opened {
    pub index: Index,
    /// How it was named.
    pub name: String,
    frames: Frames,
}

enum Frames {
    File(File, PathBuf),
    /// (The lock file is held, not read.)
    Repo(crate::repo::Repo, #[allow(dead_code)] File),
    Remote(Mutex<crate::remote::FrameStream>),
    /// A sent image (`lct-image send`): its data frames in order, on a pipe.
    Sent(Mutex<SentFrames>),
}

/// What `send` writes before the frames.
pub const SEND_MAGIC: &[u8; 8] = b"LCTSEND1";

/// The frames of a sent image, read in order; frames not asked for are read past.
pub struct SentFrames {
    input: Box<dyn std::io::Read + Send>,
    /// Where the next frame on the pipe is in the image's layout.
    next: u64,
    /// The data extents' frames in order: (where, how long) in the image's layout.
    frames: Vec<(u64, u32)>,
    at: usize,
}

impl Opened {
    /// An image file, `REPO::NAME`, or a URL (HTTPS; plain HTTP only if `allow_http`).
    pub fn open(spec: &Path, allow_http: bool) -> Result<Opened, ImageError> {
        let name = spec.display().to_string();
        if name == "-" {
            return Opened::sent(Box::new(std::io::stdin()), "(stdin)");
        }
        if crate::remote::is_url(&name) {
            let remote = crate::remote::Remote::open(&name, allow_http)?;
            let index = remote.index()?;
            let frames = Frames::Remote(Mutex::new(crate::remote::FrameStream::new(remote)));
            return Ok(Opened { index, name, frames });
        }
        if let Some((dir, image)) = repo_ref(spec) {
            let repo = crate::repo::Repo::open(&dir)?;
            let lock = repo.lock(false)?;
            let index = repo.index(&image)?;
            return Ok(Opened { index, name, frames: Frames::Repo(repo, lock) });
        }
        let index = index(spec)?;
        let file = File::open(spec).map_err(io_at(spec))?;
        Ok(Opened { index, name, frames: Frames::File(file, spec.to_path_buf()) })
    }

    /// An image as `send` wrote it: the magic, the trailer's length and the trailer, then
    /// the data extents' frames in order.
    pub fn sent(mut input: Box<dyn std::io::Read + Send>, name: &str) -> Result<Opened, ImageError> {
        let at = Path::new(name);
        let mut head = [0u8; 16];
        let read = input.read_exact(&mut head);
        if read.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::UnexpectedEof) || &head[..8] != SEND_MAGIC {
            return Err(ImageError::Refused(format!("{name}: not an image as lct-image send writes it")));
        }
        read.map_err(io_at(at))?;
        let len = u64::from_le_bytes(head[8..16].try_into().expect("8"));
        if len > crate::format::MAX_TRAILER {
            return Err(ImageError::Format {
                path: name.into(),
                error: FormatError::Limit(format!(
                    "a {len}-byte trailer, over the {} bytes of a 4 TiB disk's (MAX_TRAILER)",
                    crate::format::MAX_TRAILER
                )),
            });
        }
        // Read as it comes (not allocated as claimed): a stream that stops short costs only
        // what it sent.
        let mut trailer = Vec::new();
        (&mut input).take(len).read_to_end(&mut trailer).map_err(io_at(at))?;
        if trailer.len() as u64 != len {
            return Err(ImageError::Refused(format!(
                "{name}: the stream ended in its trailer ({} of {len} bytes)",
                trailer.len()
            )));
        }
        let index = Index::from_trailer(&trailer).map_err(|error| ImageError::Format { path: name.into(), error })?;
        let frames = index.extents.iter().filter(|e| e.kind == Kind::Data).map(|e| (e.coffset, e.csize)).collect();
        let sent = SentFrames { input, next: 0, frames, at: 0 };
        Ok(Opened { index, name: name.to_string(), frames: Frames::Sent(Mutex::new(sent)) })
    }

    /// Writes this image as a stream `Opened::sent` reads (what restores on a node over a
    /// pipe): the trailer first, then the data frames; zero extents are not sent.
    pub fn send(&self, out: &mut dyn Write) -> Result<(), ImageError> {
        let trailer = self.index.trailer();
        let stdout = Path::new("(output)");
        out.write_all(SEND_MAGIC).map_err(io_at(stdout))?;
        out.write_all(&(trailer.len() as u64).to_le_bytes()).map_err(io_at(stdout))?;
        out.write_all(&trailer).map_err(io_at(stdout))?;
        for e in self.index.extents.iter().filter(|e| e.kind == Kind::Data) {
            out.write_all(&self.frame(e)?).map_err(io_at(stdout))?;
        }
        out.flush().map_err(io_at(stdout))
    }

    /// Extent `e`'s frame, as stored.
    pub fn frame(&self, e: &Extent) -> Result<Vec<u8>, ImageError> {
        match &self.frames {
            Frames::File(file, path) => {
                let mut frame = vec![0u8; e.csize as usize];
                disk::read_at(file, &mut frame, e.coffset).map_err(io_at(path))?;
                Ok(frame)
            }
            Frames::Repo(repo, _) => repo.frame(e),
            Frames::Remote(stream) => stream.lock().expect("not poisoned").frame(e),
            Frames::Sent(sent) => {
                let mut sent = sent.lock().expect("not poisoned");
                let at = Path::new(&self.name);
                // Frames before this one that nobody asked for are read past.
                while sent.frames.get(sent.at).is_some_and(|(c, _)| *c < e.coffset) {
                    let skip = u64::from(sent.frames[sent.at].1);
                    let read =
                        std::io::copy(&mut (&mut sent.input).take(skip), &mut std::io::sink()).map_err(io_at(at))?;
                    if read != skip {
                        return Err(ImageError::Refused(format!("{}: the stream ended early", self.name)));
                    }
                    sent.next += skip;
                    sent.at += 1;
                }
                if sent.frames.get(sent.at).is_none_or(|(c, _)| *c != e.coffset) {
                    return Err(ImageError::Refused(format!("{}: frames asked for out of order", self.name)));
                }
                let mut frame = vec![0u8; e.csize as usize];
                sent.input.read_exact(&mut frame).map_err(|error| match error.kind() {
                    std::io::ErrorKind::UnexpectedEof => ImageError::Refused(format!(
                        "{}: the stream ended early, in extent at byte {}",
                        self.name, e.offset
                    )),
                    _ => io_at(at)(error),
                })?;
                sent.next += u64::from(e.csize);
                sent.at += 1;
                Ok(frame)
            }
        }
    }

    /// How often a transfer by URL was started again after a dropped connection.
    pub fn resumed(&self) -> u32 {
        match &self.frames {
            Frames::Remote(stream) => stream.lock().expect("not poisoned").resumed,
            _ => 0,
        }
    }
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
) -> Result<Report, ImageError> {
    let opened = Opened::open(image, options.allow_http)?;
    restore_opened(&opened, target, options, progress)
}

/// [`restore`] of an image already opened.
pub fn restore_opened(
    opened: &Opened,
    target: &Path,
    options: &RestoreOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Report, ImageError> {
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
    Ok(report("image-restored", image, Some(target), index, skipped.into_inner()))
}

/// Checks an image (every frame decompresses to its extent's hash) or, with `target`, that
/// the target holds the image: the first bad extent is named.
pub fn verify(
    image: &Path,
    target: Option<&Path>,
    threads: usize,
    allow_http: bool,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Report, ImageError> {
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
    Ok(report("image-verified", image, target, index, 0))
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod tests;
