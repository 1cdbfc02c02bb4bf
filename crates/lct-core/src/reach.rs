//! Whether lct may connect to a node's address from where it would start the connection:
//! never to a documentation address through a route that leaves this machine.
//!
//! The local cloud and the Linode test double give nodes addresses from the ranges RFC 5737
//! and RFC 3849 reserve for documentation (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
//! 2001:db8::/32). They exist only inside a lab: a namespace that reaches them has a route
//! made for them (the lab's outside namespace has 203.0.113.0/24 on its link). Anywhere else
//! the kernel sends them along the default route, out of this machine and onto a real
//! network, where they must never appear. So before any connection to such an address lct
//! asks the kernel which route it would take from the namespace the connection starts in
//! (`ip route get fibmatch`: the routing entry itself, with policy rules applied) and refuses
//! unless that route is at least as specific as the documentation block: a default route, a
//! VPN's 0.0.0.0/1, or no route at all is refused, naming the setting that points lct at the
//! lab. Other addresses are not checked: they are real, and reaching them is the point.

use std::net::IpAddr;
use std::process::Command;

use ipnet::IpNet;

/// The setting that names the network namespace lct reaches Linode nodes from (a VPN's, or
/// the lab's outside namespace when the Linode double is backed by machines).
pub const SSH_NETNS_VAR: &str = "LCT_LINODE_SSH_NETNS";

/// The ranges reserved for documentation: TEST-NET-1, -2, -3 (RFC 5737) and RFC 3849's.
pub const DOCUMENTATION: [&str; 4] = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"];

/// The documentation block `addr` is in, if any.
pub fn documentation_block(addr: IpAddr) -> Option<IpNet> {
    DOCUMENTATION.iter().map(|b| b.parse::<IpNet>().expect("a valid block")).find(|b| b.contains(&addr))
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to connect to {addr}: it is a documentation address ({block}), which exists only inside a lab, and {from} has no route to it there ({why}); set {SSH_NETNS_VAR} to the lab's namespace that reaches it (lct-linode-double prints it)"
)]
pub struct Unreachable {
    pub addr: IpAddr,
    pub block: IpNet,
    /// `this machine's own network namespace`, or `network namespace NAME`.
    pub from: String,
    /// What the kernel said: the route it would take, or that there is none.
    pub why: String,
}

/// Checks that a connection to `addr` started in network namespace `netns` (`ip netns`;
/// `None`: this process's own) stays inside the lab when `addr` is a documentation address.
pub fn check(addr: IpAddr, netns: Option<&str>) -> Result<(), Unreachable> {
    let Some(block) = documentation_block(addr) else { return Ok(()) };
    let from = match netns {
        Some(ns) => format!("network namespace {ns}"),
        None => "this machine's own network namespace".to_string(),
    };
    let refuse = |why: String| Err(Unreachable { addr, block, from: from.clone(), why });
    let mut ip = Command::new("ip");
    if let Some(ns) = netns {
        ip.args(["-n", ns]);
    }
    let out = match ip.args(["-j", "route", "get", "fibmatch", &addr.to_string()]).output() {
        Ok(out) => out,
        Err(e) => return refuse(format!("cannot run ip (iproute2): {e}")),
    };
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.trim().trim_start_matches("RTNETLINK answers: ");
        // ENETUNREACH: the kernel has no route for it at all.
        let why = if said.is_empty() || said.contains("Network is unreachable") { "no route at all" } else { said };
        return refuse(why.to_string());
    }
    match route_prefix_len(&String::from_utf8_lossy(&out.stdout), addr) {
        Some((_, len)) if len >= block.prefix_len() => Ok(()),
        Some((dst, _)) => refuse(format!("its route is {dst}, which leads out of this machine")),
        None => refuse("the kernel's answer names no route".into()),
    }
}

/// The destination of the route `ip -j route get fibmatch` printed, and its prefix length
/// (`default` is 0; a bare address is a host route).
fn route_prefix_len(json: &str, addr: IpAddr) -> Option<(String, u8)> {
    let routes: serde_json::Value = serde_json::from_str(json).ok()?;
    let dst = routes.get(0)?.get("dst")?.as_str()?.to_string();
    let full = if addr.is_ipv4() { 32 } else { 128 };
    let len = match dst.as_str() {
        "default" => 0,
        d => match d.split_once('/') {
            Some((_, len)) => len.parse().ok()?,
            None => full,
        },
    };
    Some((dst, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documentation_blocks_are_known() {
        for a in ["192.0.2.7", "198.51.100.1", "203.0.113.254", "2001:db8::5", "2001:db8:ffff::1"] {
            assert!(documentation_block(a.parse().unwrap()).is_some(), "{a}");
        }
        for a in ["192.0.3.1", "203.0.114.1", "8.8.8.8", "192.168.128.2", "2001:db9::1", "::1"] {
            assert!(documentation_block(a.parse().unwrap()).is_none(), "{a}");
        }
    }

    #[test]
    fn routes_are_read_with_their_prefix() {
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        let default = r#"[{"dst":"default","gateway":"10.0.0.1","dev":"eth0","flags":[]}]"#;
        assert_eq!(route_prefix_len(default, a), Some(("default".into(), 0)));
        let lab = r#"[{"dst":"203.0.113.0/24","dev":"eth0","protocol":"kernel","scope":"link","flags":[]}]"#;
        assert_eq!(route_prefix_len(lab, a), Some(("203.0.113.0/24".into(), 24)));
        let vpn = r#"[{"dst":"0.0.0.0/1","dev":"tun0","flags":[]}]"#;
        assert_eq!(route_prefix_len(vpn, a), Some(("0.0.0.0/1".into(), 1)));
        assert_eq!(route_prefix_len(r#"[{"dst":"203.0.113.5","dev":"eth1","flags":[]}]"#, a).unwrap().1, 32);
        assert_eq!(route_prefix_len("[]", a), None);
    }

    #[test]
    fn other_addresses_are_not_checked() {
        // A real address: no route lookup at all, whatever the namespace.
        assert_eq!(check("192.168.128.9".parse().unwrap(), Some("no-such-namespace")), Ok(()));
    }

    #[test]
    fn a_missing_namespace_is_refused_with_the_setting_named() {
        let e = check("203.0.113.9".parse().unwrap(), Some("lct-no-such-namespace-for-sure")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(SSH_NETNS_VAR) && text.contains("203.0.113.0/24"), "{text}");
        assert!(text.contains("network namespace lct-no-such-namespace-for-sure"), "{text}");
    }
}
