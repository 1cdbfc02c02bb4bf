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
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use lct_core::fsutil::atomic_write;

/// The file in a machine's directory naming its cgroups, one a line: `INODE PATH`, the
/// cgroup directory's inode when the supervisor made it and its absolute path (a line of a
/// bare path is from before the inode was recorded). Written by the supervisor when it joins
/// them, read by the machine's removal (the remover may run in another cgroup, so it cannot
/// derive them from its own).
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

/// A machine's cgroup name: `lct-LAB-NODE`. Unambiguous because a lab name has no hyphen
/// ([`is_lab_name`]): the lab ends at the first hyphen after `lct-`.
pub fn name(lab: &str, node: &str) -> String {
    format!("lct-{lab}-{node}")
}

/// Whether `lab` is a lab name as the state accepts one (lower-case letters and digits): a
/// hyphen in it would make `lct-a-b-c` both lab `a`'s node `b-c` and lab `a-b`'s node `c`.
fn is_lab_name(lab: &str) -> bool {
    !lab.is_empty() && lab.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether `node` can be the last part of a cgroup's name (one path component).
fn is_node_name(node: &str) -> bool {
    !node.is_empty() && node != "." && node != ".." && !node.contains('/')
}

/// Where cgroup hierarchies (v1 `cgroup` and v2 `cgroup2`) are mounted, from /proc/self/mounts.
fn cgroup_mounts() -> Vec<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 2 && (f[2] == "cgroup" || f[2] == "cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// Why a path is not this machine's cgroup: `dir` must be `MOUNT/PATH/NAME` where MOUNT is a
/// cgroup mount, NAME exactly this machine's `expected` name, PATH free of `..` and of any
/// `lct-*` directory (another machine's cgroup, whose container may make directories of any
/// name below it), and no symbolic link on the way. The record is a file anyone with write
/// access to the state directory could edit: it must not name another lab's, another
/// machine's or a system service's cgroup.
fn not_this_machines(dir: &Path, expected: &str, mounts: &[PathBuf]) -> Option<String> {
    if !dir.is_absolute() || dir.components().any(|c| !matches!(c, Component::RootDir | Component::Normal(_))) {
        return Some("not an absolute path without `.` and `..`".into());
    }
    if dir.file_name().is_none_or(|n| n != expected) {
        return Some(format!("not named {expected}"));
    }
    let Some(mount) =
        mounts.iter().filter(|m| dir.starts_with(m) && dir != m.as_path()).max_by_key(|m| m.as_os_str().len())
    else {
        return Some("not in a cgroup hierarchy (/proc/self/mounts)".into());
    };
    let Ok(below) = dir.strip_prefix(mount) else { return Some("not in a cgroup hierarchy".into()) };
    let between: Vec<_> = below.parent().map(|p| p.components().collect()).unwrap_or_default();
    if between.iter().any(|c| c.as_os_str().to_string_lossy().starts_with("lct-")) {
        return Some("inside another machine's cgroup".into());
    }
    match fs::canonicalize(dir) {
        Ok(real) if real != dir => Some(format!("a symbolic link on the way (it is {})", real.display())),
        _ => None,
    }
}

/// A cgroup joined: the machine's own, and the one the process came from (to go back to).
pub struct Joined {
    own: PathBuf,
    parent: PathBuf,
    inode: u64,
}

/// Moves this process (the supervisor) into a cgroup of its own named `lct-LAB-NODE` in each
/// hierarchy, beside where it was, so its systemd-nspawn makes the container's `payload`
/// cgroup there, and records them in `machine_dir`. Best effort: where a hierarchy refuses,
/// or a cgroup of that name already holds processes (another run of this machine: joining it
/// would make its removal kill them), the machine boots as before (an error says so).
pub fn join_own(machine_dir: &Path, lab: &str, node: &str) -> Vec<Joined> {
    let mut joined = Vec::new();
    if !is_lab_name(lab) || !is_node_name(node) {
        eprintln!("lct-api: no cgroup of its own for this machine: lab {lab:?} and node {node:?} cannot name one");
    } else {
        let name = name(lab, node);
        let mounts = cgroup_mounts();
        for (mount, path) in hierarchies() {
            let parent = mount.join(&path);
            let own = parent.join(&name);
            // What the removal would refuse is not made: it would stay behind.
            let joining = match not_this_machines(&own, &name, &mounts) {
                Some(why) => Err(io::Error::other(why)),
                None => join(&own),
            };
            match joining {
                Ok(inode) => joined.push(Joined { own, parent, inode }),
                Err(e) => eprintln!("lct-api: no cgroup of its own for this machine in {}: {e}", own.display()),
            }
        }
    }
    let record: String = joined.iter().map(|j| format!("{} {}\n", j.inode, j.own.display())).collect();
    if let Err(e) = atomic_write(&machine_dir.join(RECORD), record.as_bytes(), 0o644) {
        eprintln!("lct-api: cannot record this machine's cgroups in {}: {e}", machine_dir.display());
    }
    joined
}

/// Makes `own` (or takes it when it is there and empty: left by a supervisor killed after its
/// container stopped) and moves this process into it; returns its inode.
fn join(own: &Path) -> io::Result<u64> {
    match fs::create_dir(own) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let pids = procs_below(own);
            if !pids.is_empty() {
                return Err(io::Error::other(format!(
                    "it is there already with processes {pids:?} in it (another run of this machine, still alive): not joined"
                )));
            }
        }
        Err(e) => return Err(e),
    }
    let inode = fs::metadata(own)?.ino();
    fs::write(own.join("cgroup.procs"), b"0")?;
    Ok(inode)
}

/// Leaves the machine's own cgroups (back to where the supervisor came from) and removes
/// them with whatever nspawn left inside (empty by now: the container has stopped).
pub fn leave(joined: &[Joined]) {
    for j in joined {
        let _ = fs::write(j.parent.join("cgroup.procs"), b"0");
        let _ = remove_tree(&j.own);
    }
}

/// One line of the record: a cgroup's directory and, unless the line is from before they
/// were recorded, the inode it had when the supervisor made it (a kernfs inode number is
/// never reused: a cgroup removed and made again is another number).
#[derive(Debug, PartialEq)]
struct Recorded {
    dir: PathBuf,
    inode: Option<u64>,
}

/// The record's lines; one that is neither `INODE PATH` nor a bare absolute path is named in
/// a warning and skipped.
fn parse_record(text: &str) -> Vec<Recorded> {
    let mut found = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with('/') {
            found.push(Recorded { dir: PathBuf::from(line), inode: None });
            continue;
        }
        match line.split_once(' ').map(|(inode, dir)| (inode.parse::<u64>(), dir)) {
            Some((Ok(inode), dir)) => found.push(Recorded { dir: PathBuf::from(dir), inode: Some(inode) }),
            _ => tracing::warn!(line, "a line of a machine's cgroup record is not INODE PATH: skipped"),
        }
    }
    found
}

/// Removes a stopped machine's cgroups: those its supervisor recorded in `machine_dir`,
/// else (a machine from before the record) `lct-LAB-NODE` beside this process's own. Only
/// this machine's (lab `lab`, node `node`, known from the state and the machine's directory,
/// not from the record) and only the very directories recorded (their inodes) are touched. A
/// supervisor still inside (reaping nspawn, about to leave) is waited for; processes still
/// there after [`SETTLE`] belong to nothing but this machine and are killed. What cannot be
/// removed, or is refused, is named in a warning, never skipped silently.
pub fn remove_machine(machine_dir: &Path, lab: &str, node: &str) {
    if !is_lab_name(lab) || !is_node_name(node) {
        tracing::warn!(machine = %machine_dir.display(), lab, node, "no cgroup of this machine is removed: its lab and node name none");
        return;
    }
    let expected = name(lab, node);
    let recorded = match fs::read_to_string(machine_dir.join(RECORD)) {
        Ok(text) => parse_record(&text),
        // An empty record is not missing: a supervisor that joined none (another run held
        // them) recorded so, and must not have the other run's cgroups removed.
        Err(e) if e.kind() == io::ErrorKind::NotFound => hierarchies()
            .into_iter()
            .map(|(mount, path)| Recorded { dir: mount.join(path).join(&expected), inode: None })
            .collect(),
        Err(e) => {
            tracing::warn!(machine = %machine_dir.display(), error = %e, "the machine's cgroup record cannot be read: none removed");
            return;
        }
    };
    let mounts = cgroup_mounts();
    for r in recorded {
        if let Some(why) = not_this_machines(&r.dir, &expected, &mounts) {
            tracing::warn!(cgroup = %r.dir.display(), why, "the machine's cgroup record names a cgroup not its own: left alone");
        } else if let Err(e) = remove_settled(&r) {
            tracing::warn!(cgroup = %r.dir.display(), error = %e, "a machine's cgroup could not be removed");
        }
    }
}

/// A machine's cgroup directory, open: what is killed is the cgroup checked, not whatever
/// a path names later.
struct Opened {
    dir: PathBuf,
    fd: fs::File,
    unified: bool,
}

impl Opened {
    /// Opens `r`'s directory (no symbolic link followed), refusing anything but a cgroup file
    /// system's directory with the recorded inode.
    fn open(r: &Recorded) -> io::Result<Opened> {
        let fd = fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(&r.dir)?;
        // SAFETY: fstatfs(2) fills the zeroed struct it is given for an open descriptor.
        let mut fs_info: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut fs_info) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let unified = match fs_info.f_type {
            libc::CGROUP2_SUPER_MAGIC => true,
            libc::CGROUP_SUPER_MAGIC => false,
            _ => return Err(io::Error::other("not a cgroup file system's directory: left alone")),
        };
        let inode = fd.metadata()?.ino();
        if r.inode.is_some_and(|recorded| recorded != inode) {
            return Err(io::Error::other(format!(
                "another cgroup than the machine's (inode {inode}, recorded {}): left alone",
                r.inode.unwrap_or_default()
            )));
        }
        Ok(Opened { dir: r.dir.clone(), fd, unified })
    }

    /// Kills every process in the cgroup and below: on cgroup v2 by `cgroup.kill` (the
    /// kernel kills them all, no pid read and signalled later), else by pidfd.
    fn kill_all(&self) {
        if self.unified {
            // SAFETY: openat(2) below a descriptor this value owns, with a NUL-ended name.
            let raw =
                unsafe { libc::openat(self.fd.as_raw_fd(), c"cgroup.kill".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
            if raw >= 0 {
                // SAFETY: a descriptor openat just returned, owned by nothing else.
                let mut kill = fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
                if kill.write_all(b"1").is_ok() {
                    return;
                }
            }
            // A kernel before 5.14 has no cgroup.kill: as on v1.
        }
        kill_below(&self.dir);
    }
}

/// Removes the recorded cgroup and the cgroups below it once no process is left in them:
/// waits up to [`SETTLE`], then kills what is left and waits as long again.
fn remove_settled(r: &Recorded) -> io::Result<()> {
    let opened = match Opened::open(r) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        opened => opened?,
    };
    for killing in [false, true] {
        let deadline = Instant::now() + SETTLE;
        loop {
            match remove_tree(&opened.dir) {
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
        opened.kill_all();
    }
    Ok(())
}

/// Kills the processes of `dir` and the cgroups below it, each through a pidfd taken before
/// its pid is checked to be still listed in `dir`: a pid read from `cgroup.procs` may be
/// another process's by the time it is signalled (the listed one exited, its pid reused),
/// and a pidfd's process is the one it was opened for, whatever pid it had.
fn kill_below(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            kill_below(&entry.path());
        }
    }
    let pidfds: Vec<(libc::pid_t, OwnedFd)> =
        procs_in(dir).into_iter().filter_map(|pid| Some((pid, pidfd_open(pid)?))).collect();
    let still_there = procs_in(dir);
    for (pid, pidfd) in pidfds.iter().filter(|(pid, _)| still_there.contains(pid)) {
        // SAFETY: pidfd_send_signal(2) on a pidfd this function owns, no siginfo.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        };
        if sent != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                tracing::warn!(pid, cgroup = %dir.display(), error = %e, "cannot kill a process of a machine's cgroup");
            }
        }
    }
}

/// A pidfd for `pid`, if it still runs.
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    // SAFETY: a descriptor pidfd_open just returned, owned by nothing else.
    (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) })
}

/// The processes listed in `dir` itself.
fn procs_in(dir: &Path) -> Vec<libc::pid_t> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Every process in `dir` and the cgroups below it.
fn procs_below(dir: &Path) -> Vec<libc::pid_t> {
    let mut pids = procs_in(dir);
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

    /// A fake hierarchy: `MOUNT` (a directory standing for a cgroup mount) in a temporary
    /// directory, by its real path (the temporary directory's may have a link on the way).
    fn hierarchy() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let mount = fs::canonicalize(tmp.path()).unwrap().join("unified");
        fs::create_dir(&mount).unwrap();
        (tmp, mount)
    }

    #[test]
    fn only_this_machines_cgroup_in_a_cgroup_hierarchy_is_accepted() {
        let (_tmp, mount) = hierarchy();
        let mounts = [mount.clone()];
        let refused = |dir: PathBuf| not_this_machines(&dir, "lct-lab-web-1", &mounts);
        assert_eq!(refused(mount.join("lct-lab-web-1")), None);
        assert_eq!(refused(mount.join("user.slice/lct-lab-web-1")), None);
        fs::create_dir(mount.join("lct-lab-web-1")).unwrap();
        assert_eq!(refused(mount.join("lct-lab-web-1")), None, "an existing one");
        // A system service's, another lab's, another node's (a prefix), the hierarchy itself.
        for other in ["system.slice/lct-dns.service", "lct-other-web-1", "lct-lab-web-10", "lct-lab-web", ""] {
            assert!(refused(mount.join(other)).is_some(), "{other} accepted");
        }
        // Outside any cgroup mount, through `..`, relative, inside another machine's cgroup
        // (whose container makes directories of any name below it).
        assert!(refused(PathBuf::from("/home/someone/lct-lab-web-1")).is_some());
        assert!(refused(mount.join("../elsewhere/lct-lab-web-1")).is_some());
        assert!(refused(mount.join("x/../lct-lab-web-1")).is_some());
        assert!(refused(PathBuf::from("unified/lct-lab-web-1")).is_some());
        assert!(refused(mount.join("lct-other-db-1/payload/lct-lab-web-1")).is_some());
    }

    #[test]
    fn a_symbolic_link_to_another_cgroup_is_refused() {
        let (_tmp, mount) = hierarchy();
        let mounts = [mount.clone()];
        fs::create_dir_all(mount.join("lct-other-web-1")).unwrap();
        std::os::unix::fs::symlink(mount.join("lct-other-web-1"), mount.join("lct-lab-web-1")).unwrap();
        let why = not_this_machines(&mount.join("lct-lab-web-1"), "lct-lab-web-1", &mounts).expect("a link accepted");
        assert!(why.contains("symbolic link"), "{why}");
        // A link on the way: a directory of the right name reached through it.
        fs::create_dir_all(mount.join("system.slice/lct-lab-web-1")).unwrap();
        std::os::unix::fs::symlink(mount.join("system.slice"), mount.join("user.slice")).unwrap();
        assert!(not_this_machines(&mount.join("user.slice/lct-lab-web-1"), "lct-lab-web-1", &mounts).is_some());
    }

    #[test]
    fn a_name_is_never_two_labs_nodes() {
        // `lct-a-b-c` would be lab a's node b-c and lab a-b's node c: a lab has no hyphen.
        assert!(is_lab_name("a") && is_lab_name("lab2"));
        for lab in ["a-b", "", "A", "a/b", "a.b"] {
            assert!(!is_lab_name(lab), "{lab:?}");
        }
        for node in ["", ".", "..", "a/b"] {
            assert!(!is_node_name(node), "{node:?}");
        }
        // Nothing is joined for a lab that could collide (the record says none).
        let tmp = tempfile::tempdir().unwrap();
        assert!(join_own(tmp.path(), "a-b", "c").is_empty());
        assert_eq!(fs::read_to_string(tmp.path().join(RECORD)).unwrap(), "");
    }

    #[test]
    fn a_record_line_is_an_inode_and_a_path_or_an_old_bare_path() {
        let text =
            "4242 /sys/fs/cgroup/unified/lct-lab-web-1\n/sys/fs/cgroup/systemd/lct-lab-web-1\n\nx /a\n-1 /b\n12\n";
        assert_eq!(
            parse_record(text),
            [
                Recorded { dir: "/sys/fs/cgroup/unified/lct-lab-web-1".into(), inode: Some(4242) },
                Recorded { dir: "/sys/fs/cgroup/systemd/lct-lab-web-1".into(), inode: None },
            ]
        );
    }

    #[test]
    fn a_directory_outside_a_cgroup_file_system_or_of_another_inode_is_never_opened_to_kill() {
        let (_tmp, mount) = hierarchy();
        let dir = mount.join("lct-lab-web-1");
        fs::create_dir(&dir).unwrap();
        let err = Opened::open(&Recorded { dir: dir.clone(), inode: None }).err().expect("a tmpfs directory opened");
        assert!(err.to_string().contains("not a cgroup file system"), "{err}");
        std::os::unix::fs::symlink(&dir, mount.join("link")).unwrap();
        assert!(Opened::open(&Recorded { dir: mount.join("link"), inode: None }).is_err(), "a link followed");
    }

    /// Processes and cgroups of a root test, ended and removed also when it fails.
    struct Made(Vec<std::process::Child>, Vec<PathBuf>);

    impl Drop for Made {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
            for dir in &self.1 {
                let _ = remove_tree(dir);
            }
        }
    }

    #[test]
    #[ignore = "needs root: makes cgroups in this host's hierarchies (cargo test -p lct-api -- --ignored as_root)"]
    fn as_root_only_the_recorded_cgroups_are_killed_and_removed_and_a_busy_one_is_not_joined() {
        let lab = format!("cgt{}", lct_core::random::hex(4).unwrap());
        let machine_dir = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = hierarchies().into_iter().map(|(m, p)| m.join(p).join(name(&lab, "n1"))).collect();
        assert!(!dirs.is_empty(), "no cgroup hierarchy of this process found");
        let mut made = Made(Vec::new(), dirs.clone());
        // One process in each hierarchy's machine cgroup (and in its own elsewhere): another
        // run of the machine, still alive.
        for dir in &dirs {
            fs::create_dir(dir).unwrap();
            let child = std::process::Command::new("sleep").arg("600").spawn().unwrap();
            fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
            made.0.push(child);
        }
        let all_alive = |made: &mut Made| made.0.iter_mut().all(|c| c.try_wait().unwrap().is_none());

        // Not joined: its removal would kill the other run; the record says none, and a
        // removal by that record leaves them.
        assert!(join_own(machine_dir.path(), &lab, "n1").is_empty());
        assert_eq!(fs::read_to_string(machine_dir.path().join(RECORD)).unwrap(), "");
        remove_machine(machine_dir.path(), &lab, "n1");
        assert!(all_alive(&mut made) && dirs.iter().all(|d| d.exists()));

        // Recorded with another inode (made again since, or the record edited): left alone.
        let record = |inode: &dyn Fn(&Path) -> u64| -> String {
            dirs.iter().map(|d| format!("{} {}\n", inode(d), d.display())).collect()
        };
        fs::write(machine_dir.path().join(RECORD), record(&|d| fs::metadata(d).unwrap().ino() + 1)).unwrap();
        remove_machine(machine_dir.path(), &lab, "n1");
        assert!(all_alive(&mut made) && dirs.iter().all(|d| d.exists()));
        // Another lab's name: left alone.
        remove_machine(machine_dir.path(), "other", "n1");
        assert!(all_alive(&mut made) && dirs.iter().all(|d| d.exists()));

        // The machine's own: its processes killed after the wait (by cgroup.kill on v2, by
        // pidfd on v1), its cgroups gone.
        fs::write(machine_dir.path().join(RECORD), record(&|d| fs::metadata(d).unwrap().ino())).unwrap();
        remove_machine(machine_dir.path(), &lab, "n1");
        assert!(dirs.iter().all(|d| !d.exists()), "left: {:?}", dirs.iter().filter(|d| d.exists()).collect::<Vec<_>>());
        for child in &mut made.0 {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        }
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
