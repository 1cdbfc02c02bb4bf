//! A child process confined by Landlock to the files it is given: qemu-img converting an
//! image from outside may read that image and the system's programs and libraries, and
//! write its output, and nothing else, whatever the image names (a second wall behind
//! `foreign`'s inspection).
//!
//! Landlock (Linux 5.13 on) is an unprivileged sandbox: a ruleset built here, applied by the
//! child to itself between fork and exec (with no_new_privs), inherited by nothing but it.
//! Where the kernel has none, [`Confinement::new`] says so and the caller runs unconfined.

use std::ffi::{CString, c_int, c_long};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

// linux/landlock.h
const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: c_int = 1;
const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
/// Every file system right of ABI 1 (execute .. make_sym).
const ABI_1: u64 = (1 << 13) - 1;
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// Programs and libraries: read and run (qemu-img, ld.so, its libraries and modules).
const SYSTEM_PROGRAMS: &[&str] = &["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"];
/// What qemu-img and its libraries read at start (none of it private). Not /proc/self: a
/// rule made here would name this process's directory, not the child's; qemu-img reads its
/// status there, is denied, and does without.
const SYSTEM_READ: &[&str] = &[
    "/etc/ld.so.cache",
    "/dev/urandom",
    "/proc/sys/vm/max_map_count",
    "/sys/devices/system/cpu",
    "/sys/devices/system/node",
];
const SYSTEM_READ_WRITE: &[&str] = &["/dev/null"];

/// A Landlock ruleset for one child process.
pub(crate) struct Confinement {
    ruleset: OwnedFd,
    truncate: u64,
}

impl Confinement {
    /// A ruleset under which `program` and the system's programs and libraries can be read
    /// and run, `reads` (existing files) read, and `writes` (existing files) read, written
    /// and truncated; `None` where the kernel has no Landlock (or a seccomp filter hides it).
    pub(crate) fn new(program: &Path, reads: &[&Path], writes: &[&Path]) -> io::Result<Option<Confinement>> {
        // SAFETY: the documented way to ask for the ABI version (no attribute).
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<RulesetAttr>(),
                0usize,
                CREATE_RULESET_VERSION,
            )
        };
        if abi < 1 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::ENOSYS | libc::EOPNOTSUPP | libc::EPERM) => Ok(None),
                _ => Err(error),
            };
        }
        let truncate = if abi >= 3 { TRUNCATE } else { 0 };
        let attr = RulesetAttr { handled_access_fs: ABI_1 | if abi >= 2 { REFER } else { 0 } | truncate };
        // SAFETY: a valid attribute of the size given; the result is a new fd (or -1).
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the fd was just made for us and is owned by nothing else.
        let confinement = Confinement { ruleset: unsafe { OwnedFd::from_raw_fd(fd as c_int) }, truncate };
        for dir in SYSTEM_PROGRAMS {
            confinement.allow_if_there(Path::new(dir), READ_FILE | READ_DIR | EXECUTE)?;
        }
        confinement.allow(program, READ_FILE | EXECUTE)?;
        for path in SYSTEM_READ {
            confinement.allow_if_there(Path::new(path), READ_FILE | READ_DIR)?;
        }
        for path in SYSTEM_READ_WRITE {
            confinement.allow_if_there(Path::new(path), READ_FILE | WRITE_FILE)?;
        }
        for path in reads {
            confinement.allow(path, READ_FILE)?;
        }
        for path in writes {
            confinement.allow(path, READ_FILE | WRITE_FILE | truncate)?;
        }
        Ok(Some(confinement))
    }

    fn allow_if_there(&self, path: &Path, access: u64) -> io::Result<()> {
        match self.allow(path, access) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Allows `access` beneath `path` (on a file, only its file rights apply).
    fn allow(&self, path: &Path, access: u64) -> io::Result<()> {
        let name = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: a NUL-terminated path; O_PATH opens nothing for reading.
        let fd = unsafe { libc::open(name.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just opened, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let file_rights = EXECUTE | WRITE_FILE | READ_FILE | self.truncate;
        let access = if std::fs::metadata(path)?.is_dir() { access } else { access & file_rights };
        let rule = PathBeneathAttr { allowed_access: access, parent_fd: fd.as_raw_fd() };
        // SAFETY: a valid rule for a valid ruleset fd.
        let done = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.ruleset.as_raw_fd(),
                RULE_PATH_BENEATH,
                &rule as *const PathBeneathAttr,
                0u32,
            )
        };
        if done < 0 {
            return Err(io::Error::other(format!(
                "landlock rule for {}: {}",
                path.display(),
                io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    /// Confines the process `command` starts, from its exec on.
    pub(crate) fn apply(self, command: &mut Command) {
        let ruleset = self.ruleset;
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                let done: c_long = libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32);
                if done != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// A program's path as the shell would find it (confined, a search of PATH would be denied
/// in places and the program is allowed by its own path).
pub(crate) fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}
