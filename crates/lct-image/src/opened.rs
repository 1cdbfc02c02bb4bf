//! An image opened for reading, however it is named: a file, `REPO::NAME`, a URL, or a
//! stream on a pipe (`-`, as `send` writes it); and `send` itself.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::disk;
use crate::error::{ImageError, io_at};
use crate::format::{Extent, FormatError, Index, Kind};
use crate::frame::ReadFrames;

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
        // ssh://NODE/PATH::NAME: streamed from the node that holds the repository.
        if let Some(entry) = crate::node_repo::entry_name(spec) {
            let (repo, image) = entry?;
            let stream = crate::node_repo::NodeRepo::open(&repo)?.stream(&image)?;
            return Opened::sent(Box::new(stream), &name);
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
        // A pipe that failed says why (a node's lct-image that found no such image).
        if let Err(e) = &read
            && e.kind() != std::io::ErrorKind::UnexpectedEof
        {
            return Err(ImageError::Refused(format!("{name}: {e}")));
        }
        if read.is_err() || &head[..8] != SEND_MAGIC {
            return Err(ImageError::Refused(format!("{name}: not an image as lct-image send writes it")));
        }
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

    /// Of a sent image: only the frames of the extents `keep` picks (by index) are on the
    /// stream (a node receiving an add asked for those only). Called before any frame is read.
    pub fn only_frames(&mut self, keep: impl Fn(usize) -> bool) {
        if let Frames::Sent(sent) = &mut self.frames {
            let sent = sent.get_mut().expect("not poisoned");
            sent.frames = self
                .index
                .extents
                .iter()
                .enumerate()
                .filter(|(i, e)| e.kind == Kind::Data && keep(*i))
                .map(|(_, e)| (e.coffset, e.csize))
                .collect();
        }
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

impl ReadFrames for Opened {
    fn index(&self) -> &Index {
        &self.index
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn frame(&self, e: &Extent) -> Result<Vec<u8>, ImageError> {
        Opened::frame(self, e)
    }
}

#[cfg(test)]
mod tests {
    //! Crafted streams: what a sent image claims never sizes an allocation.

    use super::*;

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
}
