//! The node's side (`lct-mesh apply`, `peers`, `down`, run there): its key made and kept
//! there, its WireGuard interface (the kernel's, or wireguard-go where the kernel has none),
//! its configuration through `wg syncconf` on a pipe, its mesh address and its routes
//! (marked with their own protocol number, so stale ones are found and removed).
//!
//! The private key is read from its file (0600, in a 0700 directory) into `wg` through a pipe
//! only: never in an argument, a log line or what is printed (`wg show dump`'s first line,
//! which has it, is dropped here).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use lct_core::record::Name;

use crate::MeshError;
use crate::model::{MeshApplied, MeshConfig, MeshPeer, check_interface, check_public_key};
use crate::sys::run;

/// The routing protocol number that marks lct-mesh's routes (`ip route ... proto 77`).
pub const ROUTE_PROTO: &str = "77";
/// Where keys live on a node.
pub use crate::sys::KEY_DIR;

fn key_path(interface: &str) -> PathBuf {
    PathBuf::from(KEY_DIR).join(format!("{interface}.key"))
}

/// This node's public key, its private key made first if it has none (`wg genkey` here).
pub fn ensure_key(interface: &str) -> Result<MeshApplied, MeshError> {
    check_interface(interface)?;
    let path = key_path(interface);
    let made = !path.exists();
    if made {
        std::fs::create_dir_all(KEY_DIR).map_err(|e| MeshError::Node(format!("{KEY_DIR}: {e}")))?;
        std::fs::set_permissions(KEY_DIR, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| MeshError::Node(format!("{KEY_DIR}: {e}")))?;
        let private = run("wg", &["genkey"], None)?;
        lct_core::fsutil::atomic_write(&path, private.as_bytes(), 0o600)
            .map_err(|e| MeshError::Node(format!("{}: {e}", path.display())))?;
    }
    let private = std::fs::read(&path).map_err(|e| MeshError::Node(format!("{}: {e}", path.display())))?;
    let public = run("wg", &["pubkey"], Some(&private))?.trim().to_string();
    check_public_key("wg pubkey", &public)?;
    Ok(MeshApplied { interface: interface.to_string(), public_key: public, changed: made })
}

/// The interface up: the kernel's WireGuard when it has it, else wireguard-go (which
/// detaches and keeps running until the interface is deleted).
pub fn ensure_interface(interface: &str) -> Result<(), MeshError> {
    check_interface(interface)?;
    if run("ip", &["link", "show", "dev", interface], None).is_ok() {
        return Ok(());
    }
    if run("ip", &["link", "add", "dev", interface, "type", "wireguard"], None).is_err() {
        let status = Command::new("wireguard-go")
            .arg(interface)
            // Debian's wireguard-go starts on Linux only when told the kernel's is not wanted.
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| {
                MeshError::Node(format!("wireguard-go: {e} (install wireguard-go, or use a kernel with WireGuard)"))
            })?;
        if !status.success() {
            return Err(MeshError::Node(format!("wireguard-go {interface}: {status}")));
        }
    }
    run("ip", &["link", "set", "dev", interface, "up"], None)?;
    Ok(())
}

/// What `apply` compares before and after: the peers (without counters), the port, the
/// addresses, lct-mesh's routes and its forwarding.
fn fingerprint(interface: &str) -> String {
    let dump = run("wg", &["show", interface, "dump"], None).unwrap_or_default();
    // wireguard-go lists peers in no fixed order: sorted here.
    let mut lines: Vec<String> = dump
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split('\t').collect();
            match i {
                0 => format!("0 port {}", f.get(2).unwrap_or(&"")),
                _ => format!("1 peer {} {} {}", f[0], f.get(2).unwrap_or(&""), f.get(3).unwrap_or(&"")),
            }
        })
        .collect();
    lines.sort();
    let mut text = lines.join("\n");
    text.push_str(&run("ip", &["-4", "-o", "addr", "show", "dev", interface], None).unwrap_or_default());
    text.push_str(&run("ip", &["-4", "route", "show", "proto", ROUTE_PROTO], None).unwrap_or_default());
    text.push_str(&crate::forward::fingerprint(interface));
    text
}

/// Brings this node to `config`.
pub fn apply(config: &MeshConfig) -> Result<MeshApplied, MeshError> {
    let iface = config.interface.as_str();
    check_interface(iface)?;
    for p in &config.peers {
        check_public_key("peer", &p.public_key)?;
        p.endpoint
            .parse::<std::net::SocketAddr>()
            .map_err(|_| MeshError::Input(format!("peer endpoint {:?}", p.endpoint)))?;
    }
    let key = ensure_key(iface)?;
    ensure_interface(iface)?;
    let before = fingerprint(iface);
    let private = std::fs::read_to_string(key_path(iface)).map_err(|e| MeshError::Node(format!("key: {e}")))?;
    let mut conf = format!("[Interface]\nPrivateKey = {}\nListenPort = {}\n", private.trim(), config.listen_port);
    for p in &config.peers {
        let allowed: Vec<String> = p.allowed_ips.iter().map(|a| format!("{a}/32")).collect();
        let _ = write!(
            conf,
            "\n[Peer]\nPublicKey = {}\nEndpoint = {}\nAllowedIPs = {}\n",
            p.public_key,
            p.endpoint,
            allowed.join(", ")
        );
    }
    run("wg", &["syncconf", iface, "/dev/stdin"], Some(conf.as_bytes()))?;
    drop(conf);
    let cidr = format!("{}/32", config.address);
    let addrs = run("ip", &["-4", "-o", "addr", "show", "dev", iface], None)?;
    if !addrs.contains(&format!("inet {cidr} ")) {
        run("ip", &["addr", "flush", "dev", iface], None)?;
        run("ip", &["addr", "add", &cidr, "dev", iface], None)?;
    }
    run("ip", &["link", "set", "dev", iface, "up"], None)?;
    sync_routes(iface, config.address, &config.routes)?;
    crate::forward::apply(iface, config)?;
    Ok(MeshApplied { changed: key.changed || fingerprint(iface) != before, ..key })
}

fn sync_routes(iface: &str, src: Ipv4Addr, routes: &[crate::model::RouteConfig]) -> Result<(), MeshError> {
    let mut batch = String::new();
    let wanted: Vec<String> = routes.iter().map(|r| r.to.to_string()).collect();
    for line in run("ip", &["-4", "route", "show", "proto", ROUTE_PROTO], None)?.lines() {
        let dst = line.split_whitespace().next().unwrap_or_default();
        if !dst.is_empty() && !wanted.iter().any(|w| w == dst || format!("{w}/32") == dst) {
            let _ = writeln!(batch, "route del {dst} proto {ROUTE_PROTO}");
        }
    }
    for r in routes {
        match r.via {
            Some(via) => _ = writeln!(batch, "route replace {}/32 via {via} src {src} proto {ROUTE_PROTO}", r.to),
            None => _ = writeln!(batch, "route replace {}/32 dev {iface} src {src} proto {ROUTE_PROTO}", r.to),
        }
    }
    if !batch.is_empty() {
        run("ip", &["-batch", "-"], Some(batch.as_bytes()))?;
    }
    Ok(())
}

/// This node's peers as `wg show dump` has them (its own line, with the private key, left out).
pub fn peers(node: &Name, interface: &str) -> Result<Vec<MeshPeer>, MeshError> {
    check_interface(interface)?;
    let dump = run("wg", &["show", interface, "dump"], None)?;
    Ok(dump.lines().skip(1).filter_map(|line| parse_peer(node, line)).collect())
}

fn parse_peer(node: &Name, line: &str) -> Option<MeshPeer> {
    // public-key preshared-key endpoint allowed-ips latest-handshake rx tx keepalive
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() < 7 {
        return None;
    }
    let peer = MeshPeer {
        node: node.clone(),
        peer: None,
        public_key: f[0].to_string(),
        endpoint: (f[2] != "(none)").then(|| f[2].to_string()),
        allowed_ips: f[3].split(',').filter(|s| !s.is_empty() && *s != "(none)").map(String::from).collect(),
        latest_handshake: f[4].parse().ok().filter(|t| *t != 0),
        rx_bytes: f[5].parse().unwrap_or(0),
        tx_bytes: f[6].parse().unwrap_or(0),
    };
    // What `wg` printed is checked like anything else a node says (the controller checks again).
    peer.check().ok().map(|()| peer)
}

/// Removes the key of a namespace node that is gone (its file is one of this machine's).
pub fn forget_key(interface: &str) -> Result<(), MeshError> {
    check_interface(interface)?;
    crate::forward::forget(interface)?;
    match std::fs::remove_file(key_path(interface)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(MeshError::Node(format!("key: {e}"))),
        _ => Ok(()),
    }
}

/// Leaves the mesh: forwarding back as it was (and lct-mesh's nft table gone), lct-mesh's
/// routes, the interface (wireguard-go exits with it) and the key.
pub fn down(interface: &str) -> Result<(), MeshError> {
    check_interface(interface)?;
    crate::forward::stop(interface)?;
    run("ip", &["route", "flush", "proto", ROUTE_PROTO], None)?;
    if run("ip", &["link", "show", "dev", interface], None).is_ok() {
        run("ip", &["link", "del", "dev", interface], None)?;
    }
    forget_key(interface)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

    #[test]
    fn dump_lines_become_peers() {
        let node: Name = "a-1".parse().unwrap();
        let p = parse_peer(
            &node,
            &format!("{KEY}\t(none)\t203.0.113.3:51820\t100.64.0.3/32,100.64.0.4/32\t1700000000\t10\t20\toff"),
        )
        .unwrap();
        assert_eq!(p.endpoint.as_deref(), Some("203.0.113.3:51820"));
        assert_eq!(p.allowed_ips, ["100.64.0.3/32", "100.64.0.4/32"]);
        assert_eq!((p.latest_handshake, p.rx_bytes, p.tx_bytes), (Some(1_700_000_000), 10, 20));
        let never = parse_peer(&node, &format!("{KEY}\t(none)\t(none)\t(none)\t0\t0\t0\toff")).unwrap();
        assert_eq!((never.endpoint, never.latest_handshake, never.allowed_ips.len()), (None, None, 0));
        assert!(parse_peer(&node, "short").is_none());
        // Whatever is not a key, an endpoint or a prefix is dropped, never shown.
        for bad in [
            "KEY=\t(none)\t(none)\t(none)\t0\t0\t0\toff".to_string(),
            format!("{KEY}\t(none)\t\x1b[2J:1\t(none)\t0\t0\t0\toff"),
            format!("{KEY}\t(none)\t(none)\t100.64.0.3/32,\x1b]0;owned\x07\t0\t0\t0\toff"),
        ] {
            assert!(parse_peer(&node, &bad).is_none(), "{bad:?}");
        }
    }
}
