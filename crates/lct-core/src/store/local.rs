//! The local directory backend: each key a file under the state directory, as every
//! earlier lct kept it (`clusters.jsonl`, `plans/NAME/cluster.json`, `ssh/id_ed25519`).
//!
//! * A value is written atomically ([`crate::fsutil::atomic_write`]): 0644, or 0600 for a
//!   secret (a secret's parent directories are made 0700).
//! * A revision is a hash of the file's identity and times (device, inode, size, mtime and
//!   ctime in ns), taken from the same open file as its content: an atomic write makes a
//!   new inode, an append a new size and time.
//! * A transaction holds `STATE/.store.lock` (flock) from its compares to its last write, so
//!   no other lct process writes between. Each file is replaced atomically; a crash between
//!   two files of one transaction may leave the first written (see docs/state.md).
//! * A lock is a flock on `STATE/.locks/NAME` with the holder's record in it: the kernel
//!   releases it when the process ends, however it ends.
//! * A watch polls the revisions under its prefix.
//!
//! Names starting with `.` (temporary files, the lock files) are never keys, and links are
//! not followed out of the directory: a key's file is opened with O_NOFOLLOW.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::api::Store;
use super::key::Key;
use super::types::{
    Change, Committed, Entry, Expect, Fence, Holder, LockGuard, Op, Rev, Secrecy, StoreError, Txn, Wait, Watch,
};

/// The state directory as a [`Store`].
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: &Path) -> LocalStore {
        LocalStore { root: root.to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn io(&self, path: &Path) -> impl FnOnce(io::Error) -> StoreError + use<> {
        let place = path.display().to_string();
        move |e| StoreError::Io { place, error: e }
    }

    /// The store-wide writer lock, held for one transaction or append.
    fn writer_lock(&self) -> Result<crate::fsutil::Lock, StoreError> {
        mkdirs(&self.root, 0o755).map_err(self.io(&self.root))?;
        let path = self.root.join(".store.lock");
        crate::fsutil::Lock::acquire(&path).map_err(self.io(&path))
    }

    fn rev_now(&self, key: &Key) -> Result<Option<Rev>, StoreError> {
        let path = self.path(key);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(rev_of(&m))),
            Ok(_) => Ok(None),
            Err(e) if missing(&e) => Ok(None),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    fn walk(&self, dir: &Path, out: &mut Vec<(Key, Rev)>) -> Result<(), StoreError> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if missing(&e) => return Ok(()),
            Err(e) => return Err(self.io(dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(self.io(dir))?;
            let path = entry.path();
            let Some(rel) = path.strip_prefix(&self.root).ok().and_then(Path::to_str) else { continue };
            // Temporary and lock files, and names lct never writes, are no keys.
            let Ok(key) = Key::new(rel) else { continue };
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if missing(&e) => continue,
                Err(e) => return Err(self.io(&path)(e)),
            };
            if meta.is_dir() {
                self.walk(&path, out)?;
            } else if meta.is_file() {
                out.push((key, rev_of(&meta)));
            }
        }
        Ok(())
    }

    /// `key`'s file and the mode it is written with, its directories made (0700 for a
    /// secret, 0755 otherwise).
    fn file_for(&self, key: &Key, secrecy: Secrecy) -> Result<(PathBuf, u32), StoreError> {
        let path = self.path(key);
        let (file_mode, dir_mode) = match super::layout::at_least(key, secrecy) {
            Secrecy::Public => (0o644, 0o755),
            Secrecy::Secret => (0o600, 0o700),
        };
        if let Some(parent) = path.parent() {
            mkdirs(parent, dir_mode).map_err(self.io(parent))?;
        }
        Ok((path, file_mode))
    }

    fn apply(&self, op: &Op, done: &mut Committed) -> Result<(), StoreError> {
        match op {
            Op::Put { key, value, secrecy } => {
                let (path, file_mode) = self.file_for(key, *secrecy)?;
                // atomic_write keeps an existing file's mode: a secret's is narrowed first.
                if file_mode == 0o600
                    && let Ok(m) = fs::symlink_metadata(&path)
                    && m.is_file()
                    && m.mode() & 0o077 != 0
                {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(self.io(&path))?;
                }
                crate::fsutil::atomic_write(&path, value, file_mode).map_err(self.io(&path))?;
                let rev = self.rev_now(key)?.ok_or_else(|| self.io(&path)(io::ErrorKind::NotFound.into()))?;
                done.revs.push((key.clone(), rev));
            }
            Op::Delete { key } => {
                let path = self.path(key);
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if missing(&e) => {}
                    Err(e) => return Err(self.io(&path)(e)),
                }
            }
            Op::DeletePrefix { prefix } => {
                let path = self.path(prefix);
                let result = match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
                    Ok(_) => fs::remove_file(&path),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => {}
                    Err(e) if missing(&e) => {}
                    Err(e) => return Err(self.io(&path)(e)),
                }
            }
        }
        Ok(())
    }

    fn lock_path(&self, name: &Key) -> PathBuf {
        self.root.join(".locks").join(name.as_str())
    }

    fn open_lock(&self, name: &Key) -> Result<(File, PathBuf), StoreError> {
        let path = self.lock_path(name);
        if let Some(parent) = path.parent() {
            mkdirs(parent, 0o755).map_err(self.io(parent))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(self.io(&path))?;
        Ok((file, path))
    }
}

fn missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

fn mkdirs(dir: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(mode).create(dir)
}

/// FNV-1a over the file's identity and times: the same in every lct build.
fn rev_of(m: &fs::Metadata) -> Rev {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for word in
        [m.dev(), m.ino(), m.size(), m.mtime() as u64, m.mtime_nsec() as u64, m.ctime() as u64, m.ctime_nsec() as u64]
    {
        for b in word.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Rev(h)
}

fn holder_in(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

impl Store for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        let path = self.path(key);
        let mut file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(f) => f,
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(self.io(&path)(e)),
        };
        let meta = file.metadata().map_err(self.io(&path))?;
        if !meta.is_file() {
            return Ok(None);
        }
        let mut value = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut value).map_err(self.io(&path))?;
        Ok(Some(Entry { value, rev: rev_of(&meta) }))
    }

    fn keys(&self, prefix: &Key) -> Result<Vec<(Key, Rev)>, StoreError> {
        let mut out = Vec::new();
        self.walk(&self.path(prefix), &mut out)?;
        out.sort();
        Ok(out)
    }

    fn list(&self, prefix: &Key) -> Result<Vec<(Key, Entry)>, StoreError> {
        let mut out = Vec::new();
        for (key, _) in self.keys(prefix)? {
            if let Some(entry) = self.get(&key)? {
                out.push((key, entry));
            }
        }
        Ok(out)
    }

    fn commit(&self, txn: &Txn) -> Result<Committed, StoreError> {
        let _writer = self.writer_lock()?;
        for (key, expect) in &txn.compares {
            let now = self.rev_now(key)?;
            let holds = match expect {
                Expect::Any => true,
                Expect::Absent => now.is_none(),
                Expect::Rev(rev) => now == Some(*rev),
            };
            if !holds {
                let show = |r: Option<Rev>| r.map_or("absent".to_string(), |r| format!("revision {r}"));
                let expected = match expect {
                    Expect::Absent => "absent".to_string(),
                    Expect::Rev(r) => show(Some(*r)),
                    Expect::Any => "anything".to_string(),
                };
                return Err(StoreError::Conflict { key: key.clone(), expected, found: show(now) });
            }
        }
        let mut done = Committed::default();
        for op in &txn.ops {
            self.apply(op, &mut done)?;
        }
        Ok(done)
    }

    fn append(&self, key: &Key, bytes: &[u8], secrecy: Secrecy) -> Result<Rev, StoreError> {
        let _writer = self.writer_lock()?;
        let (path, file_mode) = self.file_for(key, secrecy)?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(file_mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(self.io(&path))?;
        // A secret's existing file is narrowed before it gets more (as a put does).
        let meta = file.metadata().map_err(self.io(&path))?;
        if file_mode == 0o600 && meta.mode() & 0o077 != 0 {
            file.set_permissions(fs::Permissions::from_mode(0o600)).map_err(self.io(&path))?;
        }
        file.write_all(bytes).map_err(self.io(&path))?;
        file.sync_data().map_err(self.io(&path))?;
        Ok(rev_of(&file.metadata().map_err(self.io(&path))?))
    }

    fn lock(&self, name: &Key, holder: &Holder, _ttl: Duration, wait: Wait) -> Result<Box<dyn LockGuard>, StoreError> {
        let (mut file, path) = self.open_lock(name)?;
        let deadline = match wait {
            Wait::No => Instant::now(),
            Wait::Upto(d) => Instant::now() + d,
        };
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        return Err(match holder_in(&mut file) {
                            Some(holder) => StoreError::Held { name: name.clone(), holder },
                            None => StoreError::HeldUnknown { name: name.clone() },
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(fs::TryLockError::Error(e)) => return Err(self.io(&path)(e)),
            }
        }
        let record = serde_json::to_vec(holder).map_err(|e| self.io(&path)(io::Error::other(e)))?;
        file.set_len(0).map_err(self.io(&path))?;
        std::os::unix::fs::FileExt::write_all_at(&file, &record, 0).map_err(self.io(&path))?;
        file.sync_data().map_err(self.io(&path))?;
        Ok(Box::new(LocalLock { name: name.clone(), file }))
    }

    fn lock_holder(&self, name: &Key) -> Result<Option<Holder>, StoreError> {
        let path = self.lock_path(name);
        let mut file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(f) => f,
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(self.io(&path)(e)),
        };
        match file.try_lock_shared() {
            // Nobody holds it: whatever record is there is stale.
            Ok(()) => Ok(None),
            Err(fs::TryLockError::WouldBlock) => match holder_in(&mut file) {
                Some(h) => Ok(Some(h)),
                None => Err(StoreError::HeldUnknown { name: name.clone() }),
            },
            Err(fs::TryLockError::Error(e)) => Err(self.io(&path)(e)),
        }
    }

    fn unlock(&self, name: &Key) -> Result<Option<Holder>, StoreError> {
        let path = self.lock_path(name);
        let mut file = match OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(f) => f,
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(self.io(&path)(e)),
        };
        match file.try_lock() {
            Ok(()) => {
                let stale = holder_in(&mut file);
                file.set_len(0).map_err(self.io(&path))?;
                Ok(stale)
            }
            // A live process holds it; the kernel frees it when that process ends.
            Err(fs::TryLockError::WouldBlock) => Err(match holder_in(&mut file) {
                Some(holder) => StoreError::Held { name: name.clone(), holder },
                None => StoreError::HeldUnknown { name: name.clone() },
            }),
            Err(fs::TryLockError::Error(e)) => Err(self.io(&path)(e)),
        }
    }

    fn watch(&self, prefix: &Key) -> Result<Box<dyn Watch>, StoreError> {
        let seen = self.keys(prefix)?.into_iter().collect();
        Ok(Box::new(PollWatch { store: self.clone(), prefix: prefix.clone(), seen }))
    }

    fn local_path(&self, key: &Key) -> Option<PathBuf> {
        Some(self.path(key))
    }
}

#[derive(Debug)]
struct LocalLock {
    name: Key,
    file: File,
}

impl LockGuard for LocalLock {
    fn name(&self) -> &Key {
        &self.name
    }

    fn is_held(&self) -> bool {
        true
    }

    fn fence(&self) -> Fence {
        // A flock: a live process never loses it and `unlock` never breaks it, so nothing
        // to compare (commit checks no fence here).
        Fence { lock: self.name.clone(), token: 0 }
    }
}

impl Drop for LocalLock {
    fn drop(&mut self) {
        // The record goes first, then the flock (with the file).
        let _ = self.file.set_len(0);
    }
}

struct PollWatch {
    store: LocalStore,
    prefix: Key,
    seen: BTreeMap<Key, Rev>,
}

const POLL: Duration = Duration::from_millis(250);

impl Watch for PollWatch {
    fn next(&mut self, timeout: Duration) -> Result<Vec<Change>, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            let now: BTreeMap<Key, Rev> = self.store.keys(&self.prefix)?.into_iter().collect();
            let mut changes: Vec<Change> = now
                .iter()
                .filter(|(k, r)| self.seen.get(*k) != Some(*r))
                .map(|(k, r)| Change { key: k.clone(), rev: Some(*r) })
                .collect();
            changes.extend(
                self.seen.keys().filter(|k| !now.contains_key(*k)).map(|k| Change { key: k.clone(), rev: None }),
            );
            self.seen = now;
            if !changes.is_empty() || Instant::now() >= deadline {
                changes.sort_by(|a, b| a.key.cmp(&b.key));
                return Ok(changes);
            }
            std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
        }
    }
}
