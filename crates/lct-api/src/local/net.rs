//! Thin wrappers over iproute2 and util-linux, the tools that own namespaces, links and loop
//! devices: one process per call, or per namespace with `ip -batch`, and what is cheaper
//! done in process (a namespace made, its links listed); every step is written
//! so that running it again is harmless (`replace` rather than `add`, existence checks
//! before `add`).

use std::path::Path;
use std::process::Command;

use crate::ProviderError;

/// Runs a command and returns its stdout; a non-zero exit becomes an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, ProviderError> {
    run_command(Command::new(program).args(args), program, args)
}

/// `e2fsck -fn DISK`: whether the ext4 file system in `disk` is clean, changing nothing; what
/// e2fsck found (it reports on stdout) in the error.
pub fn check_ext4(disk: &Path) -> Result<(), ProviderError> {
    let out = Command::new("e2fsck").arg("-fn").arg(disk).output().map_err(|error| ProviderError::Io {
        what: "cannot run e2fsck (is it installed? scripts/setup installs it)".into(),
        error,
    })?;
    if out.status.success() {
        return Ok(());
    }
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(ProviderError::Command {
        command: format!("e2fsck -fn {}", disk.display()),
        stderr: format!("{} ({})", lines[lines.len().saturating_sub(8)..].join("; "), out.status),
    })
}

/// [`run`] in the directory `dir`.
pub fn run_in(dir: &Path, program: &str, args: &[&str]) -> Result<String, ProviderError> {
    run_command(Command::new(program).args(args).current_dir(dir), program, args)
}

fn run_command(command: &mut Command, program: &str, args: &[&str]) -> Result<String, ProviderError> {
    run_with_input(command, program, args, None)
}

/// Runs `command`, `input` (if any) on its stdin; its stdout, or an error with its stderr.
fn run_with_input(
    command: &mut Command,
    program: &str,
    args: &[&str],
    input: Option<&[u8]>,
) -> Result<String, ProviderError> {
    use std::io::Write;
    use std::process::Stdio;
    let cannot_run = |source| ProviderError::Io {
        what: format!("cannot run {program} (is it installed? scripts/setup installs it)"),
        error: source,
    };
    let out = match input {
        None => command.output().map_err(cannot_run)?,
        Some(input) => {
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(cannot_run)?;
            // A program that stops reading early closes its end: its stderr says why, not
            // the pipe.
            let _ = child.stdin.take().expect("piped").write_all(input);
            child.wait_with_output().map_err(cannot_run)?
        }
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ProviderError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

pub fn ip(args: &[&str]) -> Result<String, ProviderError> {
    run("ip", args)
}

/// `ip -n NS ARGS...`
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String, ProviderError> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Runs `ip -n NS -batch -` with `commands`, one per line: one process for all a step needs
/// in a namespace (a node's create was twenty `ip` processes, most of its time). A failed
/// line stops the batch; the error names it.
pub fn ip_batch(ns: &str, commands: &[String]) -> Result<(), ProviderError> {
    if commands.is_empty() {
        return Ok(());
    }
    let args = ["-n", ns, "-batch", "-"];
    let input = commands.join("\n") + "\n";
    match run_with_input(Command::new("ip").args(args), "ip", &args, Some(input.as_bytes())) {
        Ok(_) => Ok(()),
        Err(ProviderError::Command { stderr, .. }) => {
            let line = failed_line(&stderr, commands);
            Err(ProviderError::Command {
                command: format!("ip -n {ns} {}", line.map_or_else(|| commands.join("; "), str::to_string)),
                stderr,
            })
        }
        Err(e) => Err(e),
    }
}

/// The batch line `ip` says failed ("Command failed -:3": the third).
fn failed_line<'a>(stderr: &str, commands: &'a [String]) -> Option<&'a str> {
    let (_, n) = stderr.rsplit_once("Command failed -:")?;
    let n: usize = n.trim().parse().ok()?;
    commands.get(n.checked_sub(1)?).map(String::as_str)
}

/// The names of the links in a namespace, asked from a thread that enters it
/// (`if_nameindex(3)`: one netlink dump on a socket opened there), not from an `ip` process
/// (a node's create asked this once each; `ip`'s start is mostly the dynamic loader).
pub fn links_in(ns: &str) -> Result<std::collections::BTreeSet<String>, ProviderError> {
    let io = |error| ProviderError::Io { what: format!("the links of namespace {ns}"), error };
    lct_core::state::in_netns(ns, || {
        // SAFETY: if_nameindex returns an array ended by a zeroed entry (or null on error);
        // the names are C strings it owns, copied out before the array is freed once.
        unsafe {
            let list = libc::if_nameindex();
            if list.is_null() {
                return Err(std::io::Error::last_os_error());
            }
            let mut names = std::collections::BTreeSet::new();
            let mut entry = list;
            while (*entry).if_index != 0 && !(*entry).if_name.is_null() {
                names.insert(std::ffi::CStr::from_ptr((*entry).if_name).to_string_lossy().into_owned());
                entry = entry.add(1);
            }
            libc::if_freenameindex(list);
            Ok(names)
        }
    })
    .and_then(|listed| listed)
    .map_err(io)
}

/// Where `ip netns` keeps its named namespaces.
const NETNS_RUN_DIR: &str = "/run/netns";

/// Makes the named network namespace as `ip netns add` does, without its process: /run/netns
/// made a shared mount point (so the name propagates into mount namespaces made from this
/// one, and `ip netns` everywhere sees it), an empty file created there (exclusively: two
/// creates of one name never share it), and a new namespace, unshared by a thread of its own,
/// bind-mounted onto the file. A failure removes the file: nothing half-made is left.
pub fn add_netns(ns: &str) -> Result<(), ProviderError> {
    use std::ffi::CString;
    if ns.is_empty() || ns == "." || ns == ".." || ns.contains(['/', '\0']) {
        return Err(ProviderError::Invalid(format!("network namespace {ns:?}: not a namespace name")));
    }
    let io = |what: String| move |error| ProviderError::Io { what, error };
    let dir = Path::new(NETNS_RUN_DIR);
    std::fs::create_dir_all(dir).map_err(io(NETNS_RUN_DIR.into()))?;
    let c = |p: &str| CString::new(p).expect("no NUL: checked above");
    let (dir_c, none) = (c(NETNS_RUN_DIR), c("none"));
    let empty = c("");
    let mut made_mount_point = false;
    // SAFETY: mount(2) with NUL-terminated strings that outlive the calls.
    while unsafe {
        libc::mount(empty.as_ptr(), dir_c.as_ptr(), none.as_ptr(), libc::MS_SHARED | libc::MS_REC, std::ptr::null())
    } != 0
    {
        let error = std::io::Error::last_os_error();
        // EINVAL: /run/netns is not a mount point yet; bind it onto itself once, as iproute2.
        if error.raw_os_error() != Some(libc::EINVAL) || made_mount_point {
            return Err(io(format!("making {NETNS_RUN_DIR} a shared mount"))(error));
        }
        // SAFETY: as above.
        if unsafe {
            libc::mount(dir_c.as_ptr(), dir_c.as_ptr(), none.as_ptr(), libc::MS_BIND | libc::MS_REC, std::ptr::null())
        } != 0
        {
            return Err(io(format!("bind-mounting {NETNS_RUN_DIR} onto itself"))(std::io::Error::last_os_error()));
        }
        made_mount_point = true;
    }
    let path = dir.join(ns);
    // A plain file of that name is what a create killed between its file and its mount left
    // (no namespace is mounted on it): it goes, or the name could never be made again.
    if path.exists() && !netns_exists(ns) {
        std::fs::remove_file(&path).map_err(io(format!("removing the stale {}", path.display())))?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io(format!("creating {}", path.display())))?;
    let target = c(&path.to_string_lossy());
    let bound = std::thread::scope(|s| {
        let made = std::thread::Builder::new().name("lct-netns-add".into()).spawn_scoped(s, || {
            // SAFETY: unshare(2) of this thread's network namespace only (the thread ends
            // right after), then a bind mount of it, with NUL-terminated strings.
            unsafe {
                if libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let source = c("/proc/thread-self/ns/net");
                if libc::mount(source.as_ptr(), target.as_ptr(), none.as_ptr(), libc::MS_BIND, std::ptr::null()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
        // No thread (a limit on threads or memory): an error, the file removed below.
        made?.join().unwrap_or_else(|_| Err(std::io::Error::other("the thread making the namespace panicked")))
    });
    bound.map_err(|error| {
        let _ = std::fs::remove_file(&path);
        io(format!("making network namespace {ns}"))(error)
    })
}

/// Sets a sysctl of a network namespace (`net.ipv6.conf.default.accept_ra` is
/// `ipv6/conf/default/accept_ra`) from a thread that enters it: no process.
pub fn net_sysctl_in(ns: &str, key: &str, value: &str) -> Result<(), ProviderError> {
    let sysctl = Path::new("/proc/sys/net").join(key);
    lct_core::state::in_netns(ns, || std::fs::write(&sysctl, value))
        .and_then(|written| written)
        .map_err(|error| ProviderError::Io { what: format!("{} in namespace {ns}", sysctl.display()), error })
}

/// Whether a network namespace is mounted at /run/netns/NS: the file is on nsfs (a plain
/// file there is a create that died half-way, not a namespace).
pub fn netns_exists(ns: &str) -> bool {
    const NSFS_MAGIC: libc::c_long = 0x6e73_6673;
    let Ok(path) = std::ffi::CString::new(format!("{NETNS_RUN_DIR}/{ns}")) else { return false };
    // SAFETY: statfs(2) of a NUL-terminated path into a zeroed struct it fills.
    unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        libc::statfs(path.as_ptr(), &mut fs) == 0 && fs.f_type as libc::c_long == NSFS_MAGIC
    }
}

/// Ends the processes still in a namespace that goes for good (a deleted node's daemons:
/// wireguard-go, a DNS server), as a deleted computer's end: left alone they would keep the
/// namespace, its addresses and sockets alive, unseen. Asked again until none is left, since
/// a process ended may have started another meanwhile (a command run on the node as it is
/// deleted); SIGKILL after a second. Machines are removed before this.
pub fn end_processes(ns: &str) {
    if !netns_exists(ns) {
        return;
    }
    for round in 0..20 {
        let Ok(pids) = ip(&["netns", "pids", ns]) else { return };
        let pids: Vec<libc::pid_t> =
            pids.split_whitespace().filter_map(|p| p.parse().ok()).filter(|p| *p > 1).collect();
        if pids.is_empty() {
            return;
        }
        let signal = if round < 10 { libc::SIGTERM } else { libc::SIGKILL };
        for pid in pids {
            // SAFETY: kill(2) with a pid the kernel listed just now; no memory is involved.
            unsafe { libc::kill(pid, signal) };
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Deletes a namespace, and what lct's tools kept about it in /run.
pub fn delete_netns(ns: &str) -> Result<(), ProviderError> {
    if let Some(ino) = lct_core::state::netns_inode(ns) {
        ip(&["netns", "delete", ns])?;
        lct_core::state::forget_netns(ino);
    }
    Ok(())
}

pub fn link_exists(ns: &str, dev: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", "dev", dev])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Deletes a link; one that is already gone is fine (the kernel removes a veth's peer
/// asynchronously when the other end's namespace goes away: `ip` may find the device and
/// then see it vanish, "No such device").
pub fn delete_link(ns: &str, dev: &str) -> Result<(), ProviderError> {
    match ip_in(ns, &["link", "delete", dev]) {
        Err(ProviderError::Command { stderr, .. })
            if stderr.contains("Cannot find device") || stderr.contains("No such device") =>
        {
            Ok(())
        }
        other => other.map(drop),
    }
}

/// The loop devices backed by `file`.
pub fn loops_of(file: &Path) -> Result<Vec<String>, ProviderError> {
    let out = run("losetup", &["--list", "--noheadings", "--output", "NAME", "--associated", &file.to_string_lossy()])?;
    Ok(out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
}

/// Whether a TCP connection to `address` opens from inside the network namespace `ns`: a
/// thread of its own enters the namespace (setns is per thread), tries once, and ends.
pub fn connects_from(ns: &str, address: std::net::SocketAddr) -> bool {
    lct_core::state::in_netns(ns, || {
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_millis(500)).is_ok()
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_batch_names_its_line() {
        let commands = vec!["link set lo up".to_string(), "addr replace 10.0.0.1/24 dev eth9".to_string()];
        let stderr = "Cannot find device \"eth9\"\nCommand failed -:2";
        assert_eq!(failed_line(stderr, &commands), Some("addr replace 10.0.0.1/24 dev eth9"));
        assert_eq!(failed_line("Command failed -:0", &commands), None);
        assert_eq!(failed_line("Command failed -:7", &commands), None);
        assert_eq!(failed_line("Error: something else", &commands), None);
    }

    #[test]
    #[ignore = "needs root: makes a network namespace (cargo test -p lct-api -- --ignored as_root)"]
    fn as_root_a_namespace_made_in_process_is_one_ip_netns_lists_and_enters() {
        let tag = lct_core::random::hex(4).unwrap();
        let ns = format!("lct-nstest-{tag}");
        add_netns(&ns).unwrap();
        struct Gone(String);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = ip(&["netns", "delete", &self.0]);
            }
        }
        let gone = Gone(ns.clone());
        // iproute2 sees it by name and can work in it; it is a namespace of its own (only lo).
        assert!(ip(&["netns", "list"]).unwrap().lines().any(|l| l.split(' ').next() == Some(ns.as_str())));
        let pair = format!("link add {tag}a type veth peer name {tag}b");
        ip_batch(&ns, &[pair]).unwrap();
        let links: Vec<String> = links_in(&ns).unwrap().into_iter().collect();
        assert_eq!(links, [format!("{tag}a"), format!("{tag}b"), "lo".to_string()]);
        // The machine's own namespace has no such link: the thread's unshare left it alone.
        assert!(!std::path::Path::new("/sys/class/net").join(format!("{tag}a")).exists());
        // A second make of the same name fails and leaves the first intact; bad names are refused.
        assert!(add_netns(&ns).is_err());
        assert!(links_in(&ns).unwrap().contains(&format!("{tag}a")));
        for bad in ["", "..", "a/b", "x\0y"] {
            assert!(matches!(add_netns(bad), Err(ProviderError::Invalid(_))), "{bad:?}");
        }
        drop(gone);
        assert!(!netns_exists(&ns));
        // A create that died between its file and its mount left a plain file: not a
        // namespace, and the next create of the name replaces it.
        let stale = std::path::Path::new(NETNS_RUN_DIR).join(&ns);
        std::fs::write(&stale, "").unwrap();
        let gone = Gone(ns.clone());
        assert!(!netns_exists(&ns), "a plain file is not a namespace");
        add_netns(&ns).unwrap();
        assert!(netns_exists(&ns) && links_in(&ns).unwrap().contains("lo"));
        drop(gone);
        assert!(!stale.exists());
    }
}
