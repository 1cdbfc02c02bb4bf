//! Images by URL. An lct image is read with HTTP Range requests: its trailer first (the
//! footer, then the index and seek table), then its frames in order from one streaming
//! response, which is started again at the next frame it needs if the connection drops
//! (resume at frame boundaries) or if a long run of frames is not needed (a repository that
//! holds them). Other images (raw, .gz, .xz, .zst, qcow2) are read as one stream.
//! HTTPS only, unless the caller allows plain HTTP.

use std::io::Read;

use crate::error::ImageError;
use crate::format::{Extent, Footer, FormatError, Index};

/// How often a dropped transfer is started again (at the frame it stopped in) before the
/// error is reported.
const RETRIES: u32 = 5;

/// Frames skipped by reading rather than by a new request when the gap is this small.
const SKIP_BY_READING: u64 = 1 << 20;

/// Whether `spec` names something by URL.
pub fn is_url(spec: &str) -> bool {
    spec.starts_with("https://") || spec.starts_with("http://")
}

fn failed(url: &str, why: impl std::fmt::Display) -> ImageError {
    ImageError::Refused(format!("{url}: {why}"))
}

/// A Content-Range header's `bytes FIRST-LAST/LENGTH`.
fn content_range(headers: &ureq::http::HeaderMap) -> Option<(u64, u64, u64)> {
    let value = headers.get("content-range")?.to_str().ok()?.trim();
    let (range, len) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, len) = (first.trim().parse().ok()?, last.trim().parse().ok()?, len.trim().parse().ok()?);
    (first <= last && last < len).then_some((first, last, len))
}

/// A file behind a URL that answers Range requests.
pub struct Remote {
    agent: ureq::Agent,
    url: String,
    pub len: u64,
}

impl Remote {
    /// Checks the scheme and asks for the size (a one-byte Range request: servers answer
    /// those even where HEAD is not allowed).
    pub fn open(url: &str, allow_http: bool) -> Result<Remote, ImageError> {
        if url.starts_with("http://") && !allow_http {
            return Err(failed(url, "plain HTTP can be read and changed on the way: use HTTPS, or --allow-http"));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(std::time::Duration::from_secs(15)))
            .timeout_recv_response(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        let response = agent.get(url).header("Range", "bytes=0-0").call().map_err(|e| failed(url, e))?;
        let len = match response.status().as_u16() {
            206 => match content_range(response.headers()) {
                Some((0, _, len)) => len,
                Some((from, _, _)) => {
                    return Err(failed(url, format!("asked for byte 0, the server sent from {from}")));
                }
                None => return Err(failed(url, "no size in the server's Content-Range")),
            },
            status => {
                return Err(failed(
                    url,
                    format!("the server does not serve byte ranges (HTTP {status} to a Range request)"),
                ));
            }
        };
        Ok(Remote { agent, url: url.to_string(), len })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bytes from `from` to the end, as a stream.
    pub fn from(&self, from: u64) -> Result<Box<dyn Read + Send>, ImageError> {
        let response = self
            .agent
            .get(&self.url)
            .header("Range", &format!("bytes={from}-"))
            .call()
            .map_err(|e| failed(&self.url, e))?;
        if response.status().as_u16() != 206 {
            return Err(failed(&self.url, format!("HTTP {} to a Range request", response.status().as_u16())));
        }
        // The bytes must be the ones asked for, of the file whose size we were told: a server
        // that sends others (or whose file changed) is caught here, not by a damaged disk.
        match content_range(response.headers()) {
            Some((start, _, len)) if start == from && len == self.len => {}
            Some((start, end, len)) => {
                return Err(failed(
                    &self.url,
                    format!(
                        "asked for bytes {from}- of {}, the server sent {start}-{end}/{len} (Content-Range)",
                        self.len
                    ),
                ));
            }
            None => return Err(failed(&self.url, "a partial response without a Content-Range")),
        }
        Ok(Box::new(response.into_body().into_reader()))
    }

    /// `len` bytes at `from` (`len` is bounded by the caller: the format's limits).
    fn read(&self, from: u64, len: u64) -> Result<Vec<u8>, ImageError> {
        let mut buf = Vec::new();
        self.from(from)?.take(len).read_to_end(&mut buf).map_err(|e| failed(&self.url, e))?;
        if buf.len() as u64 != len {
            return Err(failed(&self.url, format!("{} bytes at {from} instead of {len}", buf.len())));
        }
        Ok(buf)
    }

    /// The image's index, from its trailer: the footer says how long the seek table is, the
    /// table how long the index frame is.
    pub fn index(&self) -> Result<Index, ImageError> {
        let format = |error: FormatError| ImageError::Format { path: self.url.clone(), error };
        let short = || format(FormatError::Truncated("shorter than a seek table".into()));
        if self.len < 17 {
            return Err(short());
        }
        let footer = self.read(self.len - 9, 9)?;
        let footer = Footer::parse(footer[..].try_into().expect("9 bytes"), self.len).map_err(format)?;
        // The index frame's size is the table's last entry; it must fit the limits before the
        // trailer is asked for.
        let last = self.read(self.len - 9 - 8, 4)?;
        let index_len = u64::from(u32::from_le_bytes(last[..4].try_into().expect("4")));
        if index_len > footer.max_index_len() {
            return Err(format(FormatError::Index(format!(
                "an index frame of {index_len} bytes for {} extents (at most {})",
                footer.frames - 1,
                footer.max_index_len()
            ))));
        }
        let trailer_len = (footer.table_len + index_len).min(self.len);
        let trailer = self.read(self.len - trailer_len, trailer_len)?;
        let index = Index::from_trailer(&trailer).map_err(format)?;
        let data: u64 = index.extents.iter().map(|e| u64::from(e.csize)).sum();
        if data + trailer_len != self.len {
            return Err(format(FormatError::Truncated(format!(
                "its frames and tables make {} bytes, the server has {}",
                data + trailer_len,
                self.len
            ))));
        }
        Ok(index)
    }
}

/// An image's frames read in order from one streaming response, started again where needed.
pub struct FrameStream {
    remote: Remote,
    reader: Option<Box<dyn Read + Send>>,
    /// Where the reader is in the file.
    at: u64,
    /// Transfers started again after a dropped connection (reported at the end).
    pub resumed: u32,
}

impl FrameStream {
    pub fn new(remote: Remote) -> FrameStream {
        FrameStream { remote, reader: None, at: 0, resumed: 0 }
    }

    pub fn url(&self) -> &str {
        self.remote.url()
    }

    /// Extent `e`'s frame.
    pub fn frame(&mut self, e: &Extent) -> Result<Vec<u8>, ImageError> {
        let mut tries = 0;
        loop {
            match self.try_frame(e) {
                Ok(frame) => return Ok(frame),
                Err(error) if tries < RETRIES => {
                    tries += 1;
                    self.resumed += 1;
                    tracing::warn!("{}: {error}; reading again from byte {}", self.remote.url, e.coffset);
                    self.reader = None;
                    std::thread::sleep(std::time::Duration::from_millis(200 << tries.min(4)));
                }
                Err(error) => {
                    return Err(failed(&self.remote.url, format!("frame at byte {}: {error}", e.coffset)));
                }
            }
        }
    }

    fn try_frame(&mut self, e: &Extent) -> std::io::Result<Vec<u8>> {
        let ahead = e.coffset.checked_sub(self.at);
        if self.reader.is_none() || ahead.is_none_or(|gap| gap > SKIP_BY_READING) {
            self.reader = Some(self.remote.from(e.coffset).map_err(std::io::Error::other)?);
            self.at = e.coffset;
        }
        let reader = self.reader.as_mut().expect("just made");
        let gap = e.coffset - self.at;
        if gap > 0 {
            let skipped = std::io::copy(&mut reader.take(gap), &mut std::io::sink())?;
            self.at += skipped;
            if skipped != gap {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the transfer ended early"));
            }
        }
        let mut frame = vec![0u8; e.csize as usize];
        let result = reader.read_exact(&mut frame);
        if result.is_err() {
            self.reader = None;
        }
        result?;
        self.at += u64::from(e.csize);
        Ok(frame)
    }
}
