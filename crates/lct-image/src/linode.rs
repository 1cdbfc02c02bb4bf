//! An lct image as a Linode Image (`POST /images/upload`, then a PUT of the gzip'd raw
//! disk to the URL it returns). Linode takes gzip'd raw disks of at most 6 GB, 5 GB
//! compressed, and its upload URL (Object Storage's presigned PUT) wants the length up
//! front. So the disk is gzip'd twice, streamed both times with bounded memory: once to
//! count the bytes (both limits are checked before a byte is sent), once into the PUT with
//! that length; gzip's output is the same both times (`-n`: no name, no time). Nothing is
//! kept on disk. A failed PUT deletes the image record it made.
//!
//! The other way (a Linode Image into an lct image) the API does not allow: images cannot
//! be downloaded. Image a disk of a node made from it instead (docs/providers.md).

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use lct_api::linode::api::Linode;
use lct_api::linode::types::Image;

use crate::error::ImageError;
use crate::format::Kind;
use crate::frame::check_frame;
use crate::opened::Opened;

/// Linode's limits on an uploaded image: the raw disk, and the gzip'd file (lct-api's Linode
/// provider chooses between a Linode Image and a helper disk by the same numbers).
pub use lct_api::linode::images::{RAW_MAX, UPLOAD_MAX};

fn refused(message: String) -> ImageError {
    ImageError::Refused(message)
}

/// The disk an image holds, read in order: each frame checked against its hash.
pub struct RawDisk<'a> {
    opened: &'a Opened,
    next: usize,
    buf: Vec<u8>,
    at: usize,
}

impl<'a> RawDisk<'a> {
    pub fn new(opened: &'a Opened) -> RawDisk<'a> {
        RawDisk { opened, next: 0, buf: Vec::new(), at: 0 }
    }
}

impl Read for RawDisk<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            let Some(e) = self.opened.index.extents.get(self.next) else { return Ok(0) };
            self.buf = match e.kind {
                Kind::Zero => vec![0u8; e.len as usize],
                Kind::Data => {
                    let frame = self.opened.frame(e).map_err(std::io::Error::other)?;
                    check_frame(std::path::Path::new(&self.opened.name), self.next, e, &frame)
                        .map_err(std::io::Error::other)?
                }
            };
            self.next += 1;
            self.at = 0;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Runs `use_gzip` on the gzip'd disk of `opened` (`gzip -n -1`, fed from another thread).
fn gzipped<T>(opened: &Opened, use_gzip: impl FnOnce(&mut dyn Read) -> Result<T, ImageError>) -> Result<T, ImageError> {
    let mut child = Command::new("gzip")
        .args(["-n", "-1", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| refused(format!("gzip: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let result = std::thread::scope(|scope| {
        let feeder = scope.spawn(move || -> std::io::Result<u64> {
            let n = std::io::copy(&mut RawDisk::new(opened), &mut stdin)?;
            stdin.flush()?;
            Ok(n)
        });
        let used = use_gzip(&mut stdout);
        drop(stdout);
        let fed = feeder.join().expect("feeding gzip does not panic");
        (used, fed)
    });
    let status = child.wait().map_err(|e| refused(format!("gzip: {e}")))?;
    let (used, fed) = result;
    let fed = fed.map_err(|e| refused(format!("{}: {e}", opened.name)))?;
    if fed != opened.index.manifest.size {
        return Err(refused(format!("{}: {fed} bytes read, the disk has {}", opened.name, opened.index.manifest.size)));
    }
    if !status.success() {
        return Err(refused("gzip failed".into()));
    }
    used
}

/// Reads at most `limit` bytes from `inner`, and fails beyond them.
struct Bounded<'a> {
    inner: &'a mut dyn Read,
    left: u64,
}

impl Read for Bounded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::other("gzip's output grew between the two passes"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// What `push` is told.
pub struct Push<'a> {
    pub label: &'a str,
    pub region: &'a str,
    pub description: &'a str,
    pub wait: bool,
}

impl Push<'_> {
    /// The label and region as Linode takes them (checked before any request, and before
    /// a token is looked for).
    pub fn check(&self) -> Result<(), ImageError> {
        lct_api::linode::validate::label("label", self.label).map_err(|e| refused(e.to_string()))?;
        lct_api::linode::validate::region("region", self.region).map_err(|e| refused(e.to_string()))
    }
}

/// Makes `opened` a Linode Image; returns the image (available if `wait`). The API's calls
/// run on `runtime`, the compression and the PUT on this thread and one more.
pub fn push(
    runtime: &tokio::runtime::Runtime,
    api: &Linode,
    opened: &Opened,
    push: &Push<'_>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Image, ImageError> {
    let raw = opened.index.manifest.size;
    if raw > RAW_MAX {
        return Err(refused(format!(
            "{}: a {raw}-byte disk; Linode takes images of at most {RAW_MAX} bytes (raw)",
            opened.name
        )));
    }
    push.check()?;
    progress("compressing to count");
    let length =
        gzipped(opened, |gz| std::io::copy(gz, &mut std::io::sink()).map_err(|e| refused(format!("gzip: {e}"))))?;
    if length > UPLOAD_MAX {
        return Err(refused(format!(
            "{}: {length} bytes gzip'd; Linode takes uploads of at most {UPLOAD_MAX}: nothing was sent",
            opened.name
        )));
    }
    // The image's identity in the description: how lct-api finds the Linode Image made of
    // an lct image (nodes made from it rather than through a helper disk).
    let mark = lct_api::linode::images::identity_mark(&crate::format::hex(&opened.index.root));
    let description = if push.description.is_empty() { mark } else { format!("{} ({mark})", push.description) };
    let started = runtime
        .block_on(api.upload_image(push.label, push.region, &description))
        .map_err(|e| refused(format!("POST /images/upload: {e}")))?;
    progress("uploading");
    let url = started.upload_to.clone();
    let put = gzipped(opened, |gz| {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_connect(Some(std::time::Duration::from_secs(30))).build().into();
        let mut body = Bounded { inner: gz, left: length };
        agent
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", &length.to_string())
            .send(ureq::SendBody::from_reader(&mut body))
            // The URL carries its grant: never shown.
            .map_err(|e| refused(format!("PUT (upload URL): {}", e.to_string().replace(&url, "(upload URL)"))))?;
        Ok(())
    });
    if let Err(e) = put {
        let _ = runtime.block_on(api.delete_image(&started.image.id));
        return Err(e);
    }
    let id = &started.image.id;
    let image = if push.wait { runtime.block_on(api.wait_image(id)) } else { runtime.block_on(api.image(id)) };
    image.map_err(|e| refused(format!("image {}: {e}", started.image.id)))
}
