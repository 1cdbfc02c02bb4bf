//! Disks: files and block devices, their size, whether they are mounted, holes in sparse
//! files, and making a range truly zero (a punched hole, BLKZEROOUT, or written zeros).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// BLKGETSIZE64 and BLKZEROOUT (linux/fs.h).
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKZEROOUT: libc::c_ulong = 0x127f;

/// The size of a file or block device.
pub fn size(file: &File) -> io::Result<u64> {
    let meta = file.metadata()?;
    if meta.file_type().is_block_device() {
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which lives for the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(size)
    } else {
        Ok(meta.len())
    }
}
/// Bytes an unprivileged writer may still put in the file system holding `dir` (statvfs).
pub fn free_space(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs the call fills.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

pub fn is_block_device(file: &File) -> bool {
    file.metadata().is_ok_and(|m| m.file_type().is_block_device())
}

/// Where `path` (a block device) is mounted read-write, if it is: from /proc/self/mountinfo,
/// by device number (any name of the device counts). A file is checked through the loop
/// devices backed by it is not: image a loop device, not its file, while it is in use.
pub fn mounted_rw(path: &Path) -> io::Result<Option<String>> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_block_device() {
        return Ok(None);
    }
    let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
    let want = format!("{major}:{minor}");
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.get(2) == Some(&want.as_str()) {
            let options = fields.get(5).copied().unwrap_or_default();
            if options.split(',').any(|o| o == "rw") {
                return Ok(Some(fields.get(4).copied().unwrap_or_default().to_string()));
            }
        }
    }
    Ok(None)
}

/// The data ranges of a (sparse) regular file, from SEEK_DATA/SEEK_HOLE: everything else
/// reads as zeros. `None` when the file system cannot say (then every byte is read).
pub fn data_ranges(file: &File, size: u64) -> Option<Vec<(u64, u64)>> {
    if is_block_device(file) {
        return None;
    }
    let fd = file.as_raw_fd();
    let mut ranges = Vec::new();
    let mut at: i64 = 0;
    while (at as u64) < size {
        // SAFETY: lseek on a file descriptor we own; no memory is passed.
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENXIO) { Some(ranges) } else { None };
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return None;
        }
        ranges.push((data as u64, hole as u64));
        at = hole;
    }
    Some(ranges)
}

/// Whether `[start, end)` touches any data range.
pub fn has_data(ranges: &[(u64, u64)], start: u64, end: u64) -> bool {
    ranges.iter().any(|&(a, b)| a < end && b > start)
}

/// Whether every byte is zero (word at a time).
pub fn is_zero(buf: &[u8]) -> bool {
    let (head, words, tail) = unsafe {
        // SAFETY: any bytes are valid u64s; align_to only reinterprets the aligned middle.
        buf.align_to::<u64>()
    };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// Makes `[offset, offset + len)` of `file` read as zeros: a punched hole in a file,
/// BLKZEROOUT on a block device, written zeros where neither works.
pub fn zero_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let fd = file.as_raw_fd();
    if is_block_device(file) {
        let range: [u64; 2] = [offset, len];
        // SAFETY: BLKZEROOUT reads two u64s through the pointer, which lives for the call.
        if unsafe { libc::ioctl(fd, BLKZEROOUT, &range) } == 0 {
            return Ok(());
        }
    } else {
        // SAFETY: fallocate on a file descriptor we own; no memory is passed.
        let done = unsafe {
            libc::fallocate(fd, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, offset as i64, len as i64)
        };
        if done == 0 {
            return Ok(());
        }
    }
    let zeros = vec![0u8; len.min(4 << 20) as usize];
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}

/// Where a file is written until it is whole and synced (`OUT.partial`), then renamed.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}
