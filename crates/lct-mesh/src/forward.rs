//! A leader's forwarding, and nothing more: the tunnel and its region's private network only,
//! for mesh traffic only.
//!
//! Two locks, each enough alone where it applies:
//! * forwarding is switched on per interface (IPv4 decides by the interface a packet arrives
//!   on), the tunnel's and the private network's, never `all`;
//! * an nft table of lct-mesh's own (`inet lct_mesh`, a `forward` chain) accepts between the
//!   tunnel and the private interfaces only packets from another region's mesh address to one
//!   of this region's, and back, and drops every other forwarded packet that enters or leaves
//!   either. That matters where the private and public addresses share one interface (Linode's
//!   `eth0`), where per-interface forwarding cannot tell them apart, and against a peer that
//!   sends a non-mesh destination (a private address) into the tunnel.
//!
//! A third, for every node with tunnel peers (a leader; every member in the full topology):
//! an `input` chain drops a packet from a mesh address reached through the tunnel that
//! arrives on another interface. WireGuard admits such a source only from its peer (AllowedIPs);
//! the same source on the private or public network is a forgery aimed at lct-fw, which
//! admits another region's member by its mesh address.
//!
//! The chain's policy is accept: forwarding between interfaces lct-mesh does not use (a
//! container bridge, say) is not lct-mesh's to decide. The interfaces whose forwarding
//! lct-mesh switched on (those that were off) are recorded beside the key, and switched off
//! again when the node stops leading or leaves the mesh; the table goes with them.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::MeshError;
use crate::model::{MeshConfig, shorten};
use crate::sys::{KEY_DIR, run};

/// lct-mesh's nft table (family inet), apart from lct-fw's `inet lct`.
pub const TABLE: &str = "lct_mesh";

/// Where the interfaces lct-mesh switched forwarding on for are recorded (one name a line).
fn record_path(interface: &str) -> PathBuf {
    PathBuf::from(KEY_DIR).join(format!("{interface}.forwarding"))
}

/// A kernel interface's name as it may appear in a path under conf/ and in an nft string:
/// 1-15 bytes of letters, digits, `-`, `_`, `.`, `@` (never `.`, `..` or a `/`).
fn check_device(dev: &str) -> Result<(), MeshError> {
    let ok = (1..=15).contains(&dev.len())
        && dev != "."
        && dev != ".."
        && dev.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok { Ok(()) } else { Err(MeshError::Node(format!("interface {:?}: not an interface name", shorten(dev)))) }
}

/// Mesh addresses this node reaches through its tunnel (another region's, for a leader;
/// every other member's in the full topology): WireGuard admits them from their peer only,
/// so a packet from one of them that arrives on any other interface is a forgery.
fn through_tunnel(config: &MeshConfig) -> Vec<Ipv4Addr> {
    // Its peers' allowed IPs: what WireGuard takes from the tunnel (the route into it is one
    // to the whole prefix, so the routes do not list them).
    let addrs: BTreeSet<Ipv4Addr> = config.peers.iter().flat_map(|p| p.allowed_ips.iter().copied()).collect();
    addrs.into_iter().collect()
}

/// The ruleset of lct-mesh's table (see the module's documentation): an `input` chain that
/// drops packets from a tunnel-reached mesh address arriving anywhere but the tunnel, and on
/// a leader (`forward`) the chain that confines its forwarding.
pub fn ruleset(interface: &str, private: &BTreeSet<String>, config: &MeshConfig) -> String {
    // A leader's routes: its region's members through their private addresses, other
    // regions' addresses into the tunnel.
    let here: Vec<Ipv4Addr> = config.routes.iter().filter(|r| r.via.is_some()).map(|r| r.to).collect();
    let there = through_tunnel(config);
    let set = |name: &str, addrs: &[Ipv4Addr]| {
        let mut t = format!("\tset {name} {{\n\t\ttype ipv4_addr;\n");
        if !addrs.is_empty() {
            let list: Vec<String> = addrs.iter().map(Ipv4Addr::to_string).collect();
            let _ = writeln!(t, "\t\telements = {{ {} }}", list.join(", "));
        }
        t + "\t}\n"
    };
    let mut t = format!("table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n");
    t += &set("here", &here);
    t += &set("there", &there);
    // Before anything local accepts it (lct-fw admits a member of another region by its mesh
    // address): a packet with such a source that did not come out of the tunnel was sent by
    // someone on the private or public network, not by the peer WireGuard authenticated.
    t += "\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n";
    let _ = writeln!(t, "\t\tiifname != \"{interface}\" ip saddr @there drop");
    t += "\t}\n";
    if !config.forward {
        return t + "}\n";
    }
    t += "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n";
    // A leader alone in its region has no private interface to forward to (nft has no
    // empty anonymous set): its tunnel then forwards nothing.
    let devs: Vec<String> = private.iter().map(|d| format!("\"{d}\"")).collect();
    let devs = (!devs.is_empty()).then(|| format!("{{ {} }}", devs.join(", ")));
    if let Some(devs) = &devs {
        let _ = writeln!(t, "\t\tiifname \"{interface}\" oifname {devs} ip saddr @there ip daddr @here accept");
        let _ = writeln!(t, "\t\tiifname {devs} oifname \"{interface}\" ip saddr @here ip daddr @there accept");
    }
    for side in ["iifname", "oifname"] {
        let _ = writeln!(t, "\t\t{side} \"{interface}\" drop");
        if let Some(devs) = &devs {
            let _ = writeln!(t, "\t\t{side} {devs} drop");
        }
    }
    t + "\t}\n}\n"
}

/// The interfaces a leader's members are reached through (its private network's).
fn private_devices(config: &MeshConfig) -> Result<BTreeSet<String>, MeshError> {
    let mut devices = BTreeSet::new();
    // One `ip` for every gateway (a leader has one per member of its region), a line each.
    let vias: BTreeSet<Ipv4Addr> = config.routes.iter().filter_map(|r| r.via).collect();
    if vias.is_empty() {
        return Ok(devices);
    }
    let batch: String = vias.iter().map(|via| format!("route get {via}\n")).collect();
    for route in run("ip", &["-4", "-o", "-batch", "-"], Some(batch.as_bytes()))?.lines() {
        if let Some(dev) = route.split_whitespace().skip_while(|w| *w != "dev").nth(1) {
            check_device(dev)?;
            devices.insert(dev.to_string());
        }
    }
    Ok(devices)
}

fn forwarding_path(dev: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{dev}/forwarding")
}

fn recorded(interface: &str) -> Result<BTreeSet<String>, MeshError> {
    let path = record_path(interface);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(MeshError::Node(format!("{}: {e}", path.display()))),
    };
    let devs: BTreeSet<String> = text.lines().map(str::to_string).collect();
    devs.iter().try_for_each(|d| check_device(d))?;
    Ok(devs)
}

fn record(interface: &str, devs: &BTreeSet<String>) -> Result<(), MeshError> {
    let path = record_path(interface);
    if devs.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(MeshError::Node(format!("{}: {e}", path.display())))
            }
            _ => Ok(()),
        };
    }
    let text: String = devs.iter().map(|d| format!("{d}\n")).collect();
    lct_core::fsutil::atomic_write(&path, text.as_bytes(), 0o600)
        .map_err(|e| MeshError::Node(format!("{}: {e}", path.display())))
}

/// This node's forwarding as `config` says: a leader's confined to mesh traffic between the
/// tunnel and its private network; a member's (or a former leader's) off where lct-mesh
/// turned it on, the table gone. Whether anything changed.
pub fn apply(interface: &str, config: &MeshConfig) -> Result<bool, MeshError> {
    if !config.forward && through_tunnel(config).is_empty() {
        // A member of the leader topology (most nodes): one `nft` to see there is no table.
        let had_forwarding = !recorded(interface)?.is_empty();
        stop_forwarding(interface)?;
        let had_table = run("nft", &["list", "table", "inet", TABLE], None).is_ok();
        if had_table {
            delete_table()?;
        }
        return Ok(had_forwarding || had_table);
    }
    let before = fingerprint(interface);
    apply_rules(interface, config)?;
    Ok(fingerprint(interface) != before)
}

fn apply_rules(interface: &str, config: &MeshConfig) -> Result<(), MeshError> {
    if !config.forward {
        stop_forwarding(interface)?;
        // A node with tunnel peers of its own (the full topology) keeps the input chain,
        // replaced in one nft transaction; a leader topology's member has none.
        return if through_tunnel(config).is_empty() {
            delete_table()
        } else {
            run("nft", &["-f", "-"], Some(ruleset(interface, &BTreeSet::new(), config).as_bytes())).map(drop)
        };
    }
    let private = private_devices(config)?;
    // The confinement first: forwarding is never on without it.
    run("nft", &["-f", "-"], Some(ruleset(interface, &private, config).as_bytes()))?;
    let wanted: BTreeSet<String> = private.iter().cloned().chain([interface.to_string()]).collect();
    let mut ours = recorded(interface)?;
    for dev in &wanted {
        let now = std::fs::read_to_string(forwarding_path(dev))
            .map_err(|e| MeshError::Node(format!("forwarding on {dev}: {e}")))?;
        if now.trim() != "1" {
            // Recorded before it is switched on: a crash in between leaves it to be undone.
            ours.insert(dev.clone());
            record(interface, &ours)?;
            std::fs::write(forwarding_path(dev), "1")
                .map_err(|e| MeshError::Node(format!("forwarding on {dev}: {e}")))?;
        }
    }
    // A private interface that is no longer one (routes moved): back as it was.
    for dev in ours.clone().difference(&wanted) {
        switch_off(dev)?;
        ours.remove(dev);
    }
    record(interface, &ours)
}

/// Forwarding off where lct-mesh switched it on, the tunnel's too, and the table gone.
pub fn stop(interface: &str) -> Result<(), MeshError> {
    stop_forwarding(interface)?;
    delete_table()
}

/// Forwarding off where lct-mesh switched it on, the tunnel's too; the record cleared.
fn stop_forwarding(interface: &str) -> Result<(), MeshError> {
    let mut ours = recorded(interface)?;
    ours.insert(interface.to_string());
    for dev in &ours {
        switch_off(dev)?;
    }
    record(interface, &BTreeSet::new())
}

fn delete_table() -> Result<(), MeshError> {
    // `nft` fails when there is no such table: made first, so the delete always has one.
    let text = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
    run("nft", &["-f", "-"], Some(text.as_bytes()))?;
    Ok(())
}

/// Forwarding off on `dev`; an interface that is gone has none.
fn switch_off(dev: &str) -> Result<(), MeshError> {
    match std::fs::write(forwarding_path(dev), "0") {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(MeshError::Node(format!("forwarding on {dev}: {e}"))),
        _ => Ok(()),
    }
}

/// What `apply` compares before and after, of forwarding: the interfaces lct-mesh switched
/// on and its table (none: empty).
pub fn fingerprint(interface: &str) -> String {
    let devs: Vec<String> = recorded(interface).unwrap_or_default().into_iter().collect();
    let table = run("nft", &["list", "table", "inet", TABLE], None).unwrap_or_default();
    format!("forwarding {}\n{table}", devs.join(" "))
}

/// Forgets the record of a namespace node that is gone (its namespace took its settings).
pub fn forget(interface: &str) -> Result<(), MeshError> {
    record(interface, &BTreeSet::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PeerConfig, PrefixRoute, RouteConfig};

    fn peer(allowed: &[&str]) -> PeerConfig {
        PeerConfig {
            public_key: "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".into(),
            endpoint: "203.0.113.3:51820".into(),
            allowed_ips: allowed.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn a_leader_forwards_mesh_traffic_between_tunnel_and_private_network_only() {
        let route =
            |to: &str, via: Option<&str>| RouteConfig { to: to.parse().unwrap(), via: via.map(|v| v.parse().unwrap()) };
        let config = MeshConfig {
            interface: "lctmesh0".into(),
            address: "100.64.0.1".parse().unwrap(),
            listen_port: 51820,
            forward: true,
            // Another region's members, reached through the tunnel by one route to the prefix.
            peers: vec![peer(&["100.64.0.4", "100.64.0.3"])],
            routes: vec![route("100.64.0.2", Some("192.168.128.2"))],
            rest: Some(PrefixRoute { network: "100.64.0.0".parse().unwrap(), prefix_len: 24, via: None }),
        };
        let t = ruleset("lctmesh0", &BTreeSet::from(["eth1".to_string()]), &config);
        assert!(t.contains("set here {\n\t\ttype ipv4_addr;\n\t\telements = { 100.64.0.2 }"), "{t}");
        assert!(t.contains("elements = { 100.64.0.3, 100.64.0.4 }"), "{t}");
        assert!(t.contains("iifname \"lctmesh0\" oifname { \"eth1\" } ip saddr @there ip daddr @here accept"), "{t}");
        assert!(t.contains("iifname { \"eth1\" } oifname \"lctmesh0\" ip saddr @here ip daddr @there accept"), "{t}");
        // Every other packet in or out of either is dropped, after the two accepts.
        let drops = t.find("iifname \"lctmesh0\" drop").unwrap();
        assert!(t.rfind("accept\n").unwrap() < drops);
        assert!(t.contains("oifname { \"eth1\" } drop") && t.contains("policy accept"), "{t}");
        // The drops name no family (the table is inet): IPv6 in or out of either goes too.
        assert!(t.starts_with("table inet lct_mesh\n") && t.contains("\n\t\tiifname { \"eth1\" } drop\n"), "{t}");
        // Another region's mesh source is taken from the tunnel only (a forgery on the private
        // or public network is dropped before lct-fw, which admits it by that address, sees it).
        assert!(t.contains("type filter hook input priority filter - 10; policy accept;"), "{t}");
        assert!(t.contains("\t\tiifname != \"lctmesh0\" ip saddr @there drop\n"), "{t}");
        // Not a leader (the full topology's member): the input chain, no forwarding chain.
        let member = MeshConfig { forward: false, ..config.clone() };
        let m = ruleset("lctmesh0", &BTreeSet::new(), &member);
        assert!(m.contains("iifname != \"lctmesh0\" ip saddr @there drop") && !m.contains("hook forward"), "{m}");
        // A region of one (no members): empty sets, still valid nft (no `elements = { }`).
        let alone = MeshConfig { routes: Vec::new(), peers: vec![peer(&["100.64.0.3"])], ..config };
        let t = ruleset("lctmesh0", &BTreeSet::new(), &alone);
        assert!(!t.contains("{  }") && !t.contains("accept\n") && t.contains("oifname \"lctmesh0\" drop"), "{t}");
        for bad in ["", "..", "a/b", "eth0\"; drop", "a b", &"e".repeat(16)] {
            assert!(check_device(bad).is_err(), "{bad:?}");
        }
        assert!(check_device("eth0").is_ok() && check_device("veth1@if2").is_ok());
    }
}
