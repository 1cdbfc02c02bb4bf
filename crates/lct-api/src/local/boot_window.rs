//! How many machines of one create boot at once: a window, the next machine started as one
//! of those booting answers (issue 22's scale target).
//!
//! A machine's boot costs more CPU the more boot beside it (docs/benchmarks.md: 370 ms a
//! machine at 10 at once, 389-457 ms at 100), from contention on two cores and on the
//! kernel's locks every boot's mounts take, while machines already running cost little. So a
//! create of many machines starts at most the window's number at a time; a machine leaves
//! the window when its sshd accepts a connection from the lab's outside namespace (its boot
//! is done but for its last units), or after [`BOUND`] (a machine that never answers is
//! reported by the wait for it, not here). `LCT_LOCAL_BOOT_WINDOW` sets it: a number of
//! machines, or `all` for no window (every machine spawned as soon as it is made).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use lct_core::record::{Access, Node};

use super::net;
use crate::ProviderError;

/// The setting's name.
pub const VARIABLE: &str = "LCT_LOCAL_BOOT_WINDOW";
/// Machines booting at once when the setting is not given: no window (every machine
/// spawned as it is made). Chosen by measurement (docs/benchmarks.md): 100 machines took
/// 38.0 s with a window of 8 and 30.8-32.2 s without one, the machine otherwise near idle.
pub const DEFAULT: Option<usize> = None;
/// The most the setting takes (more is `all`).
const MOST: usize = 1000;
/// How long a machine may hold its place in the window.
pub const BOUND: Duration = Duration::from_secs(60);

/// The window from the environment: `Some(n)`, or `None` for no window.
pub fn from_env() -> Result<Option<usize>, ProviderError> {
    match std::env::var(VARIABLE) {
        Ok(value) => parse(&value),
        Err(std::env::VarError::NotPresent) => Ok(DEFAULT),
        Err(std::env::VarError::NotUnicode(_)) => parse("\u{fffd}"),
    }
}

fn parse(value: &str) -> Result<Option<usize>, ProviderError> {
    match value.trim() {
        "all" => Ok(None),
        n => match n.parse::<usize>() {
            Ok(n) if (1..=MOST).contains(&n) => Ok(Some(n)),
            _ => Err(ProviderError::Invalid(format!(
                "{VARIABLE}={:?}: the number of machines booting at once, 1 to {MOST}, or `all`",
                value.chars().take(40).collect::<String>()
            ))),
        },
    }
}

/// Waits until `node`'s sshd accepts a connection where lct reaches it (from the lab's
/// outside namespace), at most [`BOUND`]; whether it did. A node that is not a machine
/// reached over SSH does not wait.
pub fn wait_booted(node: &Node) -> bool {
    let Some(Access::Ssh { host, port, netns: Some(ns), .. }) = &node.access else { return true };
    let Ok(ip) = host.parse::<IpAddr>() else { return true };
    let address = SocketAddr::new(ip, *port);
    let deadline = Instant::now() + BOUND;
    // As the wait for SSH does: a plain connect, 50 ms growing to 200 ms between tries.
    let mut pause = Duration::from_millis(50);
    loop {
        if net::connects_from(ns, address) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 3 / 2).min(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_is_a_count_or_all_and_anything_else_is_named() {
        assert_eq!(parse("8").unwrap(), Some(8));
        assert_eq!(parse(" 1 ").unwrap(), Some(1));
        assert_eq!(parse("all").unwrap(), None);
        for bad in ["0", "-1", "1001", "eight", "", "8 machines", "\u{fffd}"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(VARIABLE) && e.contains("1 to 1000"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_node_that_is_not_reached_over_ssh_in_a_namespace_does_not_wait() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "cluster": "c", "group": "g", "name": "n-1", "provider": "local", "provider_id": "1",
            "region": "lab", "status": "booting", "private_ipv4": [], "public_ipv4": [],
            "private_ipv6": [], "public_ipv6": [], "tags": [],
            "access": {"method": "netns", "netns": "lct-c-n-1"}, "volumes": []
        }))
        .unwrap();
        let started = Instant::now();
        assert!(wait_booted(&node));
        assert!(started.elapsed() < Duration::from_millis(50));
    }
}
