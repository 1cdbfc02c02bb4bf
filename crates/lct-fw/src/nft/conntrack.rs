//! Ending the established connections of peers a rule no longer admits (conntrack).

use std::io;
use std::net::IpAddr;

/// Deletes the conntrack entries of connections these addresses started, so their established
/// connections stop too (otherwise `ct state established` keeps admitting them). Returns how
/// many addresses had entries.
pub fn kill_connections(addresses: &[IpAddr]) -> io::Result<usize> {
    let mut killed = 0;
    for a in addresses {
        let family = if a.is_ipv4() { "ipv4" } else { "ipv6" };
        let out = std::process::Command::new("conntrack")
            .args(["-D", "-f", family, "-s", &a.to_string()])
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("conntrack (scripts/setup installs it): {e}")))?;
        // conntrack exits 1 when there was nothing to delete.
        match out.status.code() {
            Some(0) => killed += 1,
            Some(1) => {}
            _ => return Err(io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string())),
        }
    }
    Ok(killed)
}
