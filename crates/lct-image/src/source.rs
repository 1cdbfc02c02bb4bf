//! Sources `create` reads besides a raw disk: compressed streams of a raw disk (.gz and .xz
//! through the system's gzip and xz, .zst in process), disk formats qemu-img reads (qcow2,
//! VMDK, VHDX, VDI: converted to a sparse raw file beside the output first, since qemu-img
//! needs to seek), and any of these by URL (fetched first for qemu-img's formats, streamed
//! otherwise). A disk format is inspected first (`foreign`: an image naming any other file
//! is refused) and qemu-img is told its format and driver outright: what lct does not
//! recognise is read as raw, never left to qemu's probing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use crate::confine::{self, Confinement};
use crate::create::{CreateOptions, create_from_file, create_from_stream};
use crate::error::{ImageError, io_at};
use crate::foreign::{self, Format};
use crate::report::{Created, Report};

/// What a source is, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Raw,
    Gzip,
    Xz,
    Zstd,
    /// A format qemu-img converts.
    Qemu(Format),
}

impl Kind {
    pub fn of(head: &[u8]) -> Kind {
        let starts = |magic: &[u8]| head.starts_with(magic);
        if starts(b"QFI\xfb") {
            Kind::Qemu(Format::Qcow2)
        } else if starts(b"KDMV") || starts(b"# Disk DescriptorFile") {
            Kind::Qemu(Format::Vmdk)
        } else if starts(b"vhdxfile") {
            Kind::Qemu(Format::Vhdx)
        } else if head.get(64..68) == Some(&[0x7f, 0x10, 0xda, 0xbe]) {
            Kind::Qemu(Format::Vdi)
        } else if starts(&[0x1f, 0x8b]) {
            Kind::Gzip
        } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Kind::Xz
        } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Kind::Zstd
        } else {
            Kind::Raw
        }
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
) -> Result<Report<Created>, ImageError> {
    let name = source.display().to_string();
    if crate::remote::is_url(&name) {
        return create_from_url(&name, out, options, progress);
    }
    let mut head = [0u8; 72];
    let read = std::fs::File::open(source).and_then(|f| {
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
    match Kind::of(head) {
        Kind::Raw => create_from_file(source, &name, out, options, progress),
        kind => create_from_local(source, kind, out, options, progress),
    }
}

/// A local file that is not a raw disk.
pub(crate) fn create_from_local(
    source: &Path,
    kind: Kind,
    out: &Path,
    options: &CreateOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Report<Created>, ImageError> {
    let name = source.display().to_string();
    match kind {
        Kind::Raw => create_from_file(source, &name, out, options, progress),
        Kind::Qemu(format) => {
            let raw = Scratch::beside(out, "raw")?;
            convert(source, &name, format, &raw.0)?;
            create_from_file(&raw.0, &name, out, options, progress)
        }
        Kind::Zstd if crate::opened::index(source).is_ok() => {
            Err(ImageError::Refused(format!("{name} is an lct image already: restore it, or add it to a repository")))
        }
        compressed => {
            let file = std::fs::File::open(source).map_err(io_at(source))?;
            let stream = decoded(&name, compressed, Box::new(file))?;
            create_from_stream(&name, stream, out, options, progress)
        }
    }
}

/// A source by URL.
pub(crate) fn create_from_url(
    url: &str,
    out: &Path,
    options: &CreateOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Report<Created>, ImageError> {
    let remote = crate::remote::Remote::open(url, options.allow_http)?;
    if remote.index().is_ok() {
        return Err(ImageError::Refused(format!(
            "{url} is an lct image already: restore it, or add it to a repository, by its URL"
        )));
    }
    let mut head = Vec::with_capacity(72);
    remote.from(0)?.take(72).read_to_end(&mut head).map_err(|e| ImageError::Refused(format!("{url}: {e}")))?;
    match Kind::of(&head) {
        Kind::Qemu(format) => {
            // qemu-img seeks: the file is fetched whole first, beside the output: never more
            // than the server announced, and only where that fits (a server claiming a
            // petabyte gets a refusal, not a full disk).
            let fetched = Scratch::beside(out, format.qemu_name())?;
            let dir = fetched.0.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let room = crate::disk::free_space(dir).map_err(io_at(dir))?;
            if remote.len > room {
                return Err(ImageError::Refused(format!(
                    "{url}: {} bytes to fetch, {room} free in {}",
                    remote.len,
                    dir.display()
                )));
            }
            let mut file = std::fs::File::create(&fetched.0).map_err(io_at(&fetched.0))?;
            std::io::copy(&mut remote.from(0)?.take(remote.len), &mut file)
                .map_err(|e| ImageError::Refused(format!("{url}: {e}")))?;
            drop(file);
            let raw = Scratch::beside(out, "raw")?;
            convert(&fetched.0, url, format, &raw.0)?;
            create_from_file(&raw.0, url, out, options, progress)
        }
        kind => {
            let stream = decoded(url, kind, remote.from(0)?)?;
            create_from_stream(url, stream, out, options, progress)
        }
    }
}

/// A file beside the output for the create's time, removed after (whatever happens).
struct Scratch(PathBuf);

impl Scratch {
    fn beside(out: &Path, ext: &str) -> Result<Scratch, ImageError> {
        let mut name = out.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".source.{ext}"));
        let path = out.with_file_name(name);
        let _ = std::fs::remove_file(&path);
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `qemu-img convert` of `source` (called `name` in messages) to a sparse raw file, once
/// `foreign` has found it names no other file.
fn convert(source: &Path, name: &str, format: Format, raw: &Path) -> Result<(), ImageError> {
    foreign::inspect_file(source, format)
        .map_err(|refusal| ImageError::Refused(format!("{name}: refused: {refusal}")))?;
    qemu_convert(source, name, format, raw)
}

/// qemu-img held to `source` and `raw` whatever `source` names (what `foreign` might
/// miss): its block driver and the `file` protocol are given outright (no probing, no
/// protocol prefix read from the name), the image is opened read-only (nothing written back
/// to it, such as a VHDX log replayed), its backing chain is cut (`"backing": null`), and
/// Landlock lets it read no other file and write no other (where the kernel has Landlock;
/// where not, it says so).
fn qemu_convert(source: &Path, name: &str, format: Format, raw: &Path) -> Result<(), ImageError> {
    let qemu = format.qemu_name();
    let filename = source.to_str().ok_or_else(|| {
        ImageError::Refused(format!("{name}: qemu-img takes only UTF-8 file names, and {} is not", source.display()))
    })?;
    let options = serde_json::json!({
        "driver": qemu,
        "read-only": true,
        "file": { "driver": "file", "filename": filename, "read-only": true },
        "backing": null,
    });
    let program = confine::program("qemu-img").ok_or_else(|| {
        ImageError::Refused(format!("qemu-img (to read {format}) is not on PATH; scripts/setup installs it"))
    })?;
    // The output exists before qemu-img runs: confined, it may write that one file.
    std::fs::File::create(raw).map_err(io_at(raw))?;
    let mut command = Command::new(&program);
    command.args(["convert", "-q", "-f", qemu, "-O", "raw"]).arg(format!("json:{options}")).arg(raw);
    match Confinement::new(&program, &[source], &[raw]) {
        Ok(Some(confinement)) => confinement.apply(&mut command),
        Ok(None) => tracing::warn!(
            "this kernel has no Landlock: qemu-img runs unconfined (the inspection of {name} alone keeps it to that file)"
        ),
        Err(e) => return Err(ImageError::Refused(format!("confining qemu-img with Landlock: {e}"))),
    }
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ImageError::Refused(format!("{}: {e}", program.display())))?;
    if !out.status.success() {
        return Err(ImageError::Refused(format!(
            "{name}: qemu-img cannot convert it from {format}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The raw disk inside a compressed stream.
fn decoded(name: &str, kind: Kind, input: Box<dyn Read + Send>) -> Result<Box<dyn Read + Send>, ImageError> {
    Ok(match kind {
        Kind::Raw => input,
        Kind::Zstd => Box::new(zstd::stream::read::Decoder::new(input).map_err(io_at(Path::new(name)))?),
        Kind::Gzip => Box::new(Filter::spawn(name, "gzip", input)?),
        Kind::Xz => Box::new(Filter::spawn(name, "xz", input)?),
        Kind::Qemu(_) => unreachable!("converted, not streamed"),
    })
}

/// A decompressor process: fed by a thread, read here; its exit status is checked at the
/// end of its output, so a damaged stream is an error, never a short disk.
struct Filter {
    tool: &'static str,
    child: Child,
    stdout: ChildStdout,
    feeder: Option<std::thread::JoinHandle<std::io::Result<u64>>>,
}

impl Filter {
    fn spawn(name: &str, tool: &'static str, mut input: Box<dyn Read + Send>) -> Result<Filter, ImageError> {
        let mut child = Command::new(tool)
            .args(["-dc"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ImageError::Refused(format!("{tool} (to read {name}): {e}")))?;
        let mut stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let feeder = std::thread::spawn(move || std::io::copy(&mut input, &mut stdin));
        Ok(Filter { tool, child, stdout, feeder: Some(feeder) })
    }
}

impl Read for Filter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let fed = self.feeder.take().map(|f| f.join());
            let mut stderr = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            let status = self.child.wait()?;
            if let Some(Ok(Err(e))) = fed {
                return Err(std::io::Error::other(format!("reading it: {e}")));
            }
            if !status.success() {
                return Err(std::io::Error::other(format!("{} -d failed: {}", self.tool, stderr.trim())));
            }
        }
        Ok(n)
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    //! The second wall alone: qemu-img as `create` runs it, on images the inspection would
    //! have refused, still reads no other file.
    use super::*;

    const MARKER: &[u8] = b"lct-unit-secret-31c4b2";

    fn qemu_img(args: &[&str]) {
        let out = Command::new("qemu-img").args(args).output().unwrap();
        assert!(out.status.success(), "qemu-img {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn secret(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        let mut bytes = MARKER.to_vec();
        bytes.resize(1 << 20, 0);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn has_marker(path: &Path) -> bool {
        std::fs::read(path).unwrap_or_default().windows(MARKER.len()).any(|w| w == MARKER)
    }

    #[test]
    fn the_backing_chain_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let secret = secret(dir.path(), "secret");
        let image = dir.path().join("backing.qcow2");
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            secret.to_str().unwrap(),
            "-F",
            "raw",
            image.to_str().unwrap(),
        ]);
        let raw = dir.path().join("out.raw");
        qemu_convert(&image, "backing.qcow2", Format::Qcow2, &raw).unwrap();
        assert_eq!(std::fs::metadata(&raw).unwrap().len(), 1 << 20);
        assert!(!has_marker(&raw), "the backing file was read");
    }

    #[test]
    fn confined_qemu_img_opens_no_file_an_image_names() {
        let dir = tempfile::tempdir().unwrap();
        let program = confine::program("qemu-img").expect("qemu-img (scripts/setup installs it)");
        let raw = dir.path().join("probe.raw");
        std::fs::write(&raw, b"").unwrap();
        assert!(
            Confinement::new(&program, &[], &[&raw]).unwrap().is_some(),
            "this kernel has no Landlock: the second wall cannot be tested here"
        );
        let secret = secret(dir.path(), "secret");
        let descriptor = dir.path().join("descriptor.vmdk");
        std::fs::write(
            &descriptor,
            format!(
                "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\
                 RW 2048 FLAT \"{}\" 0\n",
                secret.display()
            ),
        )
        .unwrap();
        let data = dir.path().join("data");
        let data_image = dir.path().join("data-file.qcow2");
        let option = format!("data_file={},data_file_raw=on", data.display());
        qemu_img(&["create", "-q", "-f", "qcow2", "-o", &option, data_image.to_str().unwrap(), "1M"]);
        std::fs::copy(&secret, &data).unwrap();
        for (image, format) in [(&descriptor, Format::Vmdk), (&data_image, Format::Qcow2)] {
            let raw = dir.path().join("out.raw");
            let error = qemu_convert(image, "the image", format, &raw).unwrap_err().to_string();
            assert!(error.contains("Permission denied"), "{format}: {error}");
            assert!(!has_marker(&raw), "{format}: the named file was read");
        }
    }

    #[test]
    fn a_disk_larger_than_the_readers_take_is_refused_before_any_byte_is_written() {
        use crate::format::EXTENT_SIZE;
        // A sparse file one byte over MAX_EXTENTS extents: its image could never be read back.
        let dir = lct_core::fsutil::temp_dir("lct-image-test-").unwrap();
        let disk = dir.path().join("huge.raw");
        std::fs::File::create(&disk).unwrap().set_len(crate::format::MAX_EXTENTS * EXTENT_SIZE + 1).unwrap();
        let out = dir.path().join("huge.lct");
        let error = create(&disk, &out, &CreateOptions::default(), &|_, _| {}).unwrap_err();
        assert!(matches!(error, ImageError::Refused(_)), "{error}");
        assert!(error.to_string().contains("MAX_EXTENTS"), "{error}");
        assert!(!out.exists() && !crate::disk::partial_path(&out).exists(), "nothing written");
    }
}
