//! Thin wrappers over iproute2 and util-linux, the tools that own namespaces, links and loop
//! devices. Each call is one process; every step is written so that running it again is
//! harmless (`replace` rather than `add`, existence checks before `add`).

use std::path::Path;
use std::process::Command;

use crate::ProviderError;

/// Runs a command and returns its stdout; a non-zero exit becomes an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, ProviderError> {
    run_command(Command::new(program).args(args), program, args)
}

/// [`run`] in the directory `dir`.
pub fn run_in(dir: &Path, program: &str, args: &[&str]) -> Result<String, ProviderError> {
    run_command(Command::new(program).args(args).current_dir(dir), program, args)
}

fn run_command(command: &mut Command, program: &str, args: &[&str]) -> Result<String, ProviderError> {
    let out = command.output().map_err(|source| ProviderError::Io {
        what: format!("cannot run {program} (is it installed? scripts/setup installs it)"),
        error: source,
    })?;
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

pub fn netns_exists(ns: &str) -> bool {
    Path::new("/run/netns").join(ns).exists()
}

pub fn ensure_netns(ns: &str) -> Result<(), ProviderError> {
    if !netns_exists(ns) {
        ip(&["netns", "add", ns])?;
    }
    ip_in(ns, &["link", "set", "lo", "up"])?;
    Ok(())
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

/// A veth pair from `ns_a`/`dev_a` to `ns_b`/`dev_b`, rebuilt if only one end exists (a
/// crash between the two halves of a step).
pub fn ensure_veth(ns_a: &str, dev_a: &str, ns_b: &str, dev_b: &str) -> Result<(), ProviderError> {
    let a = link_exists(ns_a, dev_a);
    let b = link_exists(ns_b, dev_b);
    if a && b {
        return Ok(());
    }
    if a {
        delete_link(ns_a, dev_a)?;
    }
    if b {
        delete_link(ns_b, dev_b)?;
    }
    ip_in(ns_a, &["link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b])?;
    Ok(())
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

pub fn ensure_bridge(ns: &str, dev: &str) -> Result<(), ProviderError> {
    if !link_exists(ns, dev) {
        ip_in(ns, &["link", "add", dev, "type", "bridge"])?;
    }
    ip_in(ns, &["link", "set", dev, "up"])?;
    Ok(())
}

/// The loop devices backed by `file`.
pub fn loops_of(file: &Path) -> Result<Vec<String>, ProviderError> {
    let out = run("losetup", &["--list", "--noheadings", "--output", "NAME", "--associated", &file.to_string_lossy()])?;
    Ok(out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
}

/// Whether a TCP connection to `address` opens from inside the network namespace `ns`: a
/// thread of its own enters the namespace (setns is per thread), tries once, and ends.
pub fn connects_from(ns: &str, address: std::net::SocketAddr) -> bool {
    use std::os::fd::AsRawFd;
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|s| {
        s.spawn(|| {
            let Ok(file) = std::fs::File::open(&path) else { return false };
            // SAFETY: setns on an open namespace file, for this thread only.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return false;
            }
            std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_millis(500)).is_ok()
        })
        .join()
        .unwrap_or(false)
    })
}
