//! Thin wrappers over iproute2 and util-linux, the tools that own namespaces, links and loop
//! devices: one process per call, or per namespace with `ip -batch`; every step is written
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

/// Link names from `ip -o link show`.
fn link_names(listing: &str) -> std::collections::BTreeSet<String> {
    listing
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

/// The names of the links in a namespace (a veth's `@peer` left off).
pub fn links_in(ns: &str) -> Result<std::collections::BTreeSet<String>, ProviderError> {
    Ok(link_names(&ip_in(ns, &["-o", "link", "show"])?))
}

/// Sets a sysctl of a network namespace (`net.ipv6.conf.default.accept_ra` is
/// `ipv6/conf/default/accept_ra`) from a thread that enters it: no process.
pub fn net_sysctl_in(ns: &str, key: &str, value: &str) -> Result<(), ProviderError> {
    let sysctl = Path::new("/proc/sys/net").join(key);
    lct_core::state::in_netns(ns, || std::fs::write(&sysctl, value))
        .and_then(|written| written)
        .map_err(|error| ProviderError::Io { what: format!("{} in namespace {ns}", sysctl.display()), error })
}

pub fn netns_exists(ns: &str) -> bool {
    Path::new("/run/netns").join(ns).exists()
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
    fn a_failed_batch_names_its_line_and_links_are_named_without_their_peer() {
        let commands = vec!["link set lo up".to_string(), "addr replace 10.0.0.1/24 dev eth9".to_string()];
        let stderr = "Cannot find device \"eth9\"\nCommand failed -:2";
        assert_eq!(failed_line(stderr, &commands), Some("addr replace 10.0.0.1/24 dev eth9"));
        assert_eq!(failed_line("Command failed -:0", &commands), None);
        assert_eq!(failed_line("Command failed -:7", &commands), None);
        assert_eq!(failed_line("Error: something else", &commands), None);
        let listing = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\\    link/loopback 00:00:00:00:00:00\n\
                       5: p1@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master br-priv state UP\\    link/ether 4e:9e\n";
        let names: Vec<String> = link_names(listing).into_iter().collect();
        assert_eq!(names, ["lo", "p1"]);
    }
}
