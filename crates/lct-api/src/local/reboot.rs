//! What a machine's reboot resets, as on a real computer (or a Linode): the container runs
//! under a small supervisor (`lct-api lab run-machine`, hidden) that waits for it, and when
//! the machine reboots itself (`systemctl reboot` inside: systemd-nspawn with `--keep-unit`
//! exits 133, as for systemd-nspawn@.service's `RestartForceExitStatus=133`) has the lab's
//! repair boot it again; every boot of a machine that ran before gets a new network
//! namespace (see `LocalCloud::ensure_machine`), so no nftables ruleset, conntrack entry or
//! sysctl of the previous boot survives it, as none survives a real reboot.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lct_core::fsutil::atomic_write;

use super::cgroups;
use crate::ProviderError;

/// systemd-nspawn's exit status when the machine asked for a reboot (`--keep-unit`).
pub const EXIT_REBOOT: i32 = 133;

/// The hidden subcommand of `lct-api` that supervises one machine's container.
pub const SUPERVISOR_COMMAND: [&str; 2] = ["lab", "run-machine"];

/// `lct-api`: this program when it is lct-api, else the one beside it (the Linode double,
/// lct-plan and the tests run machines too; scripts/install puts them all in one place).
fn lct_api() -> Result<PathBuf, ProviderError> {
    let exe =
        std::env::current_exe().map_err(|error| ProviderError::Io { what: "where is this program?".into(), error })?;
    if exe.file_name().is_some_and(|n| n == "lct-api") {
        return Ok(exe);
    }
    let beside = exe.with_file_name("lct-api");
    if beside.exists() {
        Ok(beside)
    } else {
        Err(ProviderError::Io {
            what: format!("{}: lct-api must be beside {} to run machines", beside.display(), exe.display()),
            error: io::ErrorKind::NotFound.into(),
        })
    }
}

/// What the supervisor is told: the lab's state, where to keep the container's pid, and
/// systemd-nspawn's arguments.
pub struct Supervised<'a> {
    pub state_dir: &'a Path,
    pub lab: &'a str,
    pub pid_file: &'a Path,
    pub nspawn_args: &'a [String],
}

/// Starts the supervisor detached (its own session, so it outlives this process and never
/// gets its terminal's hangup), the console going to `console`; returns once the container's
/// pid is in `pid_file` (the caller checks it is alive).
pub fn start(s: &Supervised<'_>, console: fs::File, running: impl Fn() -> bool) -> Result<(), ProviderError> {
    let err = console.try_clone().map_err(|error| ProviderError::Io { what: "the console log".into(), error })?;
    let _ = fs::remove_file(s.pid_file);
    let mut cmd = Command::new(lct_api()?);
    cmd.args(SUPERVISOR_COMMAND)
        .arg(format!("--state-dir={}", s.state_dir.display()))
        .arg(format!("--lab={}", s.lab))
        .arg(format!("--pid-file={}", s.pid_file.display()))
        .arg("--")
        .args(s.nspawn_args)
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| if libc::setsid() < 0 { Err(io::Error::last_os_error()) } else { Ok(()) });
    }
    let mut child =
        cmd.spawn().map_err(|error| ProviderError::Io { what: "starting lct-api lab run-machine".into(), error })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ProviderError::Invalid(format!("the machine's supervisor ended at once ({status})")));
        }
        if Instant::now() > deadline {
            return Err(ProviderError::Invalid("the machine's container did not start within 10 s".into()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Not waited for here: it runs as long as the machine.
    std::mem::forget(child);
    Ok(())
}

/// The supervisor itself: runs systemd-nspawn, keeps its pid in `pid_file`, waits; when the
/// machine rebooted itself, the lab's repair (under the lab's lock) boots it again in a
/// fresh namespace, unless it was stopped or deleted meanwhile.
pub fn run(s: &Supervised<'_>) -> Result<(), ProviderError> {
    let machine_dir = s.pid_file.parent().unwrap_or(Path::new("."));
    let node = machine_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let joined = cgroups::join_own(machine_dir, s.lab, &node);
    let status = boot_and_wait(s);
    // Left before a reboot's repair starts the next supervisor, which must not be born in
    // this machine's cgroup (it makes its own beside it).
    cgroups::leave(&joined);
    if status?.code() == Some(EXIT_REBOOT) {
        eprintln!("lct-api: the machine rebooted itself: booting it again with a fresh network stack");
        super::LocalCloud::new(s.state_dir, Some(s.lab.to_string())).repair_after_reboot()?;
    }
    Ok(())
}

/// nspawn's argument naming the machine's network namespace.
const NETNS_ARG: &str = "--network-namespace-path=";

/// Runs systemd-nspawn, keeps its pid in the pid file, and waits for it.
///
/// nspawn starts in a mount namespace of its own without /run/netns: that directory is a
/// shared mount (iproute2 makes it so), so every nspawn's namespace, copied from the host's,
/// received every node's namespace mount made after it (each `ip netns add` copied into
/// every running machine's nspawn under the kernel's one mount lock: O(N) per new machine)
/// and held every node's namespace alive. The machine's own namespace is passed to nspawn
/// as a file descriptor opened before (`/proc/self/fd/N`).
fn boot_and_wait(s: &Supervised<'_>) -> Result<std::process::ExitStatus, ProviderError> {
    let netns = s
        .nspawn_args
        .iter()
        .find_map(|a| a.strip_prefix(NETNS_ARG))
        .map(|path| fs::File::open(path).map_err(|error| ProviderError::Io { what: path.to_string(), error }))
        .transpose()?;
    let netns_fd = netns.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    let args: Vec<String> = s
        .nspawn_args
        .iter()
        .map(|a| match (a.strip_prefix(NETNS_ARG), netns_fd) {
            (Some(_), Some(fd)) => format!("{NETNS_ARG}/proc/self/fd/{fd}"),
            _ => a.clone(),
        })
        .collect();
    let mut cmd = Command::new("systemd-nspawn");
    // SAFETY: between fork and exec only system calls (fcntl, unshare, mount, umount2), on
    // a file descriptor `netns` keeps open until the spawn returns and C strings made here.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = netns_fd {
                // Inherited by nspawn (File::open made it close-on-exec).
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The whole tree private first: nothing the host mounts later (every other node's
            // namespace) propagates in, even where /run/netns shares /run's peer group (a
            // systemd host's shared /run: iproute2's bind of /run/netns joins it), and the
            // unmounts below are this namespace's alone.
            let (root, run_netns) = (c"/", c"/run/netns");
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // Every /run/netns mount stacked there (iproute2 and lct may each have bound it
            // onto itself); none (a host without any namespace yet) is fine.
            for _ in 0..16 {
                if libc::umount2(run_netns.as_ptr(), libc::MNT_DETACH) != 0 {
                    break;
                }
            }
            Ok(())
        });
    }
    let mut child = cmd
        .args(&args)
        // /proc/sys/net writable inside, the rest of /proc/sys read-only (nspawn makes it all
        // read-only for a network namespace it did not make): the namespace is the machine's
        // own, as a Linode's kernel is, and lct-mesh sets forwarding per interface there.
        .env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "network")
        .stdin(Stdio::null())
        .spawn()
        .map_err(|error| ProviderError::Io {
            what: "cannot run systemd-nspawn (systemd-container; scripts/setup installs it)".into(),
            error,
        })?;
    atomic_write(s.pid_file, format!("{}\n", child.id()).as_bytes(), 0o644)
        .map_err(|error| ProviderError::Io { what: s.pid_file.display().to_string(), error })?;
    child.wait().map_err(|error| ProviderError::Io { what: "waiting for systemd-nspawn".into(), error })
}
