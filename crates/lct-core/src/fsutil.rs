//! Files that never end up half-written, and locks that keep writers apart.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Replaces `path` with `contents` atomically: a temporary file in the same directory is
/// written, synced and renamed over the target, then the directory is synced. An existing
/// file's mode and owner are kept; a new file gets `new_mode`.
pub fn atomic_write(path: &Path, contents: &[u8], new_mode: u32) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    // A name of its own per call (random, created O_EXCL, mode 0600): two threads or
    // processes replacing the same file never write into each other's temporary file.
    let mut tmp = temp_file_in(&dir, &format!(".{}.", name.to_string_lossy()), ".tmp")?;
    let file = tmp.as_file_mut();
    file.write_all(contents)?;
    match fs::metadata(path) {
        Ok(old) => {
            file.set_permissions(fs::Permissions::from_mode(old.mode() & 0o7777))?;
            // Keeping another owner only works as root (and is only tried then: a sandboxed
            // service may be forbidden the chown system calls); our own file is ours anyway.
            let ours = file.metadata()?;
            if (ours.uid(), ours.gid()) != (old.uid(), old.gid()) {
                let _ = std::os::unix::fs::fchown(&*file, Some(old.uid()), Some(old.gid()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            file.set_permissions(fs::Permissions::from_mode(new_mode))?;
        }
        Err(e) => return Err(e),
    }
    file.sync_all()?;
    // On error the temporary file is removed when `tmp` drops.
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(&dir)?.sync_all()
}

/// Serializes `value` as pretty JSON and writes it atomically with mode 0600.
pub fn atomic_write_json<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    atomic_write(path, &bytes, 0o600)
}

/// A temporary file in `dir`, `{prefix}{16 letters and digits}{suffix}`, the name drawn from
/// the one random source (tempfile's own names come from a generator seeded by the clock),
/// created exclusively with mode 0600, removed on drop unless persisted.
pub fn temp_file_in(dir: &Path, prefix: &str, suffix: &str) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&random_name(prefix, suffix)?)
        .rand_bytes(0)
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
}

/// A private temporary directory (mode 0700) in the system's temporary directory, named as
/// [`temp_file_in`]'s files; removed with its contents on drop.
pub fn temp_dir(prefix: &str) -> io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&random_name(prefix, "")?)
        .rand_bytes(0)
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir()
}

/// A private temporary directory (0700) for secrets in clear (a decrypted SSH key), in
/// memory where there is a place for it (`$XDG_RUNTIME_DIR`, else `/dev/shm`), else as
/// [`temp_dir`]: a process killed before it removes it leaves nothing on disk.
pub fn secret_temp_dir(prefix: &str) -> io::Result<tempfile::TempDir> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_absolute());
    for base in runtime.into_iter().chain([PathBuf::from("/dev/shm")]) {
        if fs::metadata(&base).is_ok_and(|m| m.is_dir()) {
            let made = tempfile::Builder::new()
                .prefix(&random_name(prefix, "")?)
                .rand_bytes(0)
                .permissions(fs::Permissions::from_mode(0o700))
                .tempdir_in(&base);
            if let Ok(dir) = made {
                return Ok(dir);
            }
        }
    }
    temp_dir(prefix)
}

fn random_name(prefix: &str, suffix: &str) -> io::Result<String> {
    let token = crate::random::token(16, crate::random::ALPHANUMERIC).map_err(io::Error::other)?;
    Ok(format!("{prefix}{token}{suffix}"))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An exclusive advisory lock (flock) on a lock file, released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Blocks until the lock at `path` is ours; creates the file (and its directory) if needed.
    pub fn acquire(path: &Path) -> io::Result<Lock> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        file.lock()?;
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_clear_go_to_memory_where_there_is_a_place() {
        let dir = secret_temp_dir("lct-fsutil-test.").unwrap();
        assert_eq!(fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o700);
        let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        if runtime.is_none() && Path::new("/dev/shm").is_dir() {
            assert!(dir.path().starts_with("/dev/shm"), "{}", dir.path().display());
        }
    }

    #[test]
    fn atomic_write_keeps_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        atomic_write(&path, b"one", 0o644).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        atomic_write(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_writes_from_many_threads_never_collide() {
        // With one temporary name per process, threads wrote into each other's file and
        // renamed it away under each other (ENOENT, or a mix of two contents).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared");
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    let body = vec![b'a' + t; 64 * 1024];
                    for _ in 0..50 {
                        atomic_write(path, &body, 0o644).unwrap();
                        let now = fs::read(path).unwrap();
                        assert_eq!(now.len(), body.len());
                        assert!(now.iter().all(|&b| b == now[0]), "a torn file");
                    }
                });
            }
        });
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary file was left behind");
    }

    #[test]
    fn lock_excludes_other_holders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = Lock::acquire(&path).unwrap();
        let other = File::open(&path).unwrap();
        assert!(other.try_lock().is_err());
        drop(held);
        assert!(other.try_lock().is_ok());
    }
}
