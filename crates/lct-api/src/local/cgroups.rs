//! A machine's own cgroups (`lct-LAB-NODE` in each hierarchy): made by its supervisor before
//! systemd-nspawn starts, recorded in the machine's directory, and removed with the machine
//! whatever ended it (its supervisor killed, the lab's state lost, removal from a process in
//! another cgroup).
//!
//! Every machine's nspawn in one cgroup shared one `payload/system.slice/...` tree: one
//! machine's systemd removing a unit's empty cgroup while another attached a process to the
//! same unit's failed the second (`219/CGROUP` at boot, seen with 30 machines booting at
//! once). So each machine gets a cgroup of its own; nspawn and the machine's systemd make
//! `supervisor` and `payload/...` below it, which the kernel never removes by itself.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lct_core::fsutil::atomic_write;

/// The file in a machine's directory naming its cgroups, one absolute path a line: written
/// by the supervisor when it joins them, read by the machine's removal (the remover may run
/// in another cgroup, so it cannot derive them from its own).
const RECORD: &str = "cgroups";

/// How long a removal waits for a cgroup's last processes (the supervisor leaving after
/// nspawn's exit, the container's last tasks exiting) before it kills them.
const SETTLE: Duration = Duration::from_secs(5);

/// The cgroup hierarchies a machine's container is placed in: (where the hierarchy is
/// mounted, this process's path in it), for the named `systemd` v1 hierarchy of a hybrid
/// host and the unified (v2) one.
fn hierarchies() -> Vec<(PathBuf, String)> {
    let Ok(text) = fs::read_to_string("/proc/self/cgroup") else { return Vec::new() };
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let is_cgroup2 = |p: &Path| {
        mounts.lines().any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.len() > 2 && Path::new(f[1]) == p && f[2] == "cgroup2"
        })
    };
    let mut found = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let mount = match controllers {
            "name=systemd" => PathBuf::from("/sys/fs/cgroup/systemd"),
            "" if is_cgroup2(Path::new("/sys/fs/cgroup/unified")) => PathBuf::from("/sys/fs/cgroup/unified"),
            "" if is_cgroup2(Path::new("/sys/fs/cgroup")) => PathBuf::from("/sys/fs/cgroup"),
            _ => continue,
        };
        found.push((mount, path.trim_start_matches('/').to_string()));
    }
    found
}

/// A machine's cgroup name: `lct-LAB-NODE`.
pub fn name(lab: &str, node: &str) -> String {
    format!("lct-{lab}-{node}")
}

/// A cgroup joined: the machine's own, and the one the process came from (to go back to).
pub struct Joined {
    own: PathBuf,
    parent: PathBuf,
}

/// Moves this process (the supervisor) into a cgroup of its own named `name` in each
/// hierarchy, beside where it was, so its systemd-nspawn makes the container's `payload`
/// cgroup there, and records them in `machine_dir`. Best effort: where a hierarchy refuses,
/// the machine boots as before (a warning says so).
pub fn join_own(machine_dir: &Path, name: &str) -> Vec<Joined> {
    let mut joined = Vec::new();
    for (mount, path) in hierarchies() {
        let parent = mount.join(&path);
        let own = parent.join(name);
        let joining = match fs::create_dir(&own) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
            _ => fs::write(own.join("cgroup.procs"), b"0"),
        };
        match joining {
            Ok(()) => joined.push(Joined { own, parent }),
            Err(e) => eprintln!("lct-api: no cgroup of its own for this machine in {}: {e}", own.display()),
        }
    }
    let record: String = joined.iter().map(|j| format!("{}\n", j.own.display())).collect();
    if let Err(e) = atomic_write(&machine_dir.join(RECORD), record.as_bytes(), 0o644) {
        eprintln!("lct-api: cannot record this machine's cgroups in {}: {e}", machine_dir.display());
    }
    joined
}

/// Leaves the machine's own cgroups (back to where the supervisor came from) and removes
/// them with whatever nspawn left inside (empty by now: the container has stopped).
pub fn leave(joined: &[Joined]) {
    for j in joined {
        let _ = fs::write(j.parent.join("cgroup.procs"), b"0");
        let _ = remove_tree(&j.own);
    }
}

/// Removes a stopped machine's cgroups: those its supervisor recorded in `machine_dir`,
/// else (a machine from before the record) `lct-LAB-NODE` beside this process's own. A
/// supervisor still inside (reaping nspawn, about to leave) is waited for; processes still
/// there after [`SETTLE`] belong to nothing but this machine and are killed. What cannot be
/// removed is named in a warning, never skipped silently.
pub fn remove_machine(machine_dir: &Path, lab: &str, node: &str) {
    let mut dirs: Vec<PathBuf> = fs::read_to_string(machine_dir.join(RECORD))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect();
    if dirs.is_empty() && !lab.is_empty() {
        dirs = hierarchies().into_iter().map(|(mount, path)| mount.join(path).join(name(lab, node))).collect();
    }
    for dir in dirs.iter().filter(|d| is_machine_cgroup(d)) {
        if let Err(e) = remove_settled(dir) {
            tracing::warn!(cgroup = %dir.display(), error = %e, "a machine's cgroup could not be removed");
        }
    }
}

/// Only a `lct-*` directory in a cgroup file system is removed (the record is a file anyone
/// with write access to the state directory could edit: it must not name other cgroups).
fn is_machine_cgroup(dir: &Path) -> bool {
    dir.starts_with("/sys/fs/cgroup")
        && dir.components().all(|c| !matches!(c, std::path::Component::ParentDir))
        && dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with("lct-"))
}

/// Removes `dir` and the cgroups below it once no process is left in them: waits up to
/// [`SETTLE`], then kills what is left and waits as long again.
fn remove_settled(dir: &Path) -> io::Result<()> {
    for killing in [false, true] {
        let deadline = Instant::now() + SETTLE;
        loop {
            match remove_tree(dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    if killing {
                        return Err(e);
                    }
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        for pid in procs_below(dir) {
            // SAFETY: kill(2) on a pid the kernel listed in this machine's own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    Ok(())
}

/// Every process in `dir` and the cgroups below it.
fn procs_below(dir: &Path) -> Vec<libc::pid_t> {
    let mut pids: Vec<libc::pid_t> = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            pids.extend(procs_below(&entry.path()));
        }
    }
    pids
}

/// Removes a cgroup directory and the cgroups below it, deepest first (a cgroup's files go
/// with it: only its directory is removed). The first error is returned (EBUSY: a process
/// is still inside), after trying every directory.
fn remove_tree(dir: &Path) -> io::Result<()> {
    let mut first = Ok(());
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
                if let Err(e) = remove_tree(&entry.path()) {
                    first = first.and(Err(e));
                }
            }
        }
        Err(e) => return Err(e),
    }
    fs::remove_dir(dir).and(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_naming_anything_but_a_machine_cgroup_is_ignored() {
        assert!(is_machine_cgroup(Path::new("/sys/fs/cgroup/unified/lct-lab-web-1")));
        assert!(is_machine_cgroup(Path::new("/sys/fs/cgroup/systemd/user.slice/lct-lab-web-1")));
        assert!(!is_machine_cgroup(Path::new("/sys/fs/cgroup/unified")));
        assert!(!is_machine_cgroup(Path::new("/sys/fs/cgroup/unified/user.slice")));
        assert!(!is_machine_cgroup(Path::new("/home/someone/lct-data")));
        assert!(!is_machine_cgroup(Path::new("/sys/fs/cgroup/../../home/lct-x")));
    }

    #[test]
    fn a_tree_is_removed_deepest_first_and_a_missing_one_is_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("lct-l-n");
        fs::create_dir_all(top.join("payload/system.slice/ssh.service")).unwrap();
        fs::create_dir_all(top.join("supervisor")).unwrap();
        remove_tree(&top).unwrap();
        assert!(!top.exists());
        assert_eq!(remove_tree(&top).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
