//! The node's side (`lct-mesh apply`, `peers`, `down`, run there): its key made and kept
//! there, its WireGuard interface (the kernel's, or wireguard-go where the kernel has none),
//! its configuration through `wg syncconf` on a pipe, its mesh address and its routes
//! (marked with their own protocol number, so stale ones are found and removed).
//!
//! The private key is read from its file (0600, in a 0700 directory) into `wg` through a pipe
//! only: never in an argument, a log line or what is printed (`wg show dump`'s first line,
//! which has it, is dropped here).

use std::collections::BTreeMap;
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

/// The public key beside the private one: derived once (`wg pubkey`), then read.
fn public_path(interface: &str) -> PathBuf {
    PathBuf::from(KEY_DIR).join(format!("{interface}.pub"))
}

/// This node's public key, its private key made first if it has none (`wg genkey` here).
pub fn ensure_key(interface: &str) -> Result<MeshApplied, MeshError> {
    check_interface(interface)?;
    let path = key_path(interface);
    let public_file = public_path(interface);
    let made = !path.exists();
    if made {
        std::fs::create_dir_all(KEY_DIR).map_err(|e| MeshError::Node(format!("{KEY_DIR}: {e}")))?;
        std::fs::set_permissions(KEY_DIR, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| MeshError::Node(format!("{KEY_DIR}: {e}")))?;
        let private = run("wg", &["genkey"], None)?;
        // The old public key first: it must never be read beside the new private key.
        remove_if_there(&public_file)?;
        lct_core::fsutil::atomic_write(&path, private.as_bytes(), 0o600)
            .map_err(|e| MeshError::Node(format!("{}: {e}", path.display())))?;
    }
    let cached = std::fs::read_to_string(&public_file).ok().map(|t| t.trim().to_string());
    let public = match cached.filter(|k| check_public_key("cached", k).is_ok()) {
        Some(public) => public,
        None => {
            let private = std::fs::read(&path).map_err(|e| MeshError::Node(format!("{}: {e}", path.display())))?;
            let public = run("wg", &["pubkey"], Some(&private))?.trim().to_string();
            check_public_key("wg pubkey", &public)?;
            lct_core::fsutil::atomic_write(&public_file, format!("{public}\n").as_bytes(), 0o600)
                .map_err(|e| MeshError::Node(format!("{}: {e}", public_file.display())))?;
            public
        }
    };
    Ok(MeshApplied { interface: interface.to_string(), public_key: public, changed: made })
}

fn remove_if_there(path: &std::path::Path) -> Result<(), MeshError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(MeshError::Node(format!("{}: {e}", path.display()))),
        _ => Ok(()),
    }
}

/// The interface up: the kernel's WireGuard when it has it, else wireguard-go (which
/// detaches and keeps running until the interface is deleted). Whether it was made or
/// brought up now.
pub fn ensure_interface(interface: &str) -> Result<bool, MeshError> {
    check_interface(interface)?;
    if let Some(link) = crate::netif::interface(interface)? {
        if link.up {
            return Ok(false);
        }
    } else if run("ip", &["link", "add", "dev", interface, "type", "wireguard"], None).is_err() {
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
    Ok(true)
}

/// The peers, port and key as `config` says; whether anything changed. wireguard-go's
/// control socket when there is one (only the differences sent, no process), else `wg
/// syncconf` through a pipe (the kernel's WireGuard), compared before and after.
fn sync_peers(iface: &str, config: &MeshConfig) -> Result<bool, MeshError> {
    let private = std::fs::read_to_string(key_path(iface)).map_err(|e| MeshError::Node(format!("key: {e}")))?;
    if crate::uapi::socket(iface).exists() {
        let private_hex = crate::uapi::hex_key(private.trim()).map_err(|_| MeshError::Node("key: not a key".into()))?;
        let body = crate::uapi::changes(&crate::uapi::get(iface)?, &private_hex, config)?;
        drop(private_hex);
        if body.is_empty() {
            return Ok(false);
        }
        crate::uapi::set(iface, &body)?;
        return Ok(true);
    }
    let before = wg_fingerprint(iface);
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
    Ok(wg_fingerprint(iface) != before)
}

/// The peers (without counters) and the port, as `wg show dump` has them, sorted.
fn wg_fingerprint(interface: &str) -> String {
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
    lines.join("\n")
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
    if let Some(rest) = &config.rest {
        rest.destination()?;
    }
    let key = ensure_key(iface)?;
    // Each step says whether it changed something: nothing is read twice to compare.
    let mut changed = key.changed;
    changed |= ensure_interface(iface)?;
    changed |= sync_peers(iface, config)?;
    let cidr = format!("{}/32", config.address);
    let has = crate::netif::interface(iface)?.is_some_and(|i| i.ipv4.contains(&(config.address, 32)));
    if !has {
        run("ip", &["addr", "flush", "dev", iface], None)?;
        run("ip", &["addr", "add", &cidr, "dev", iface], None)?;
        changed = true;
    }
    changed |= sync_routes(iface, config.address, &config.routes, config.rest.as_ref())?;
    changed |= crate::forward::apply(iface, config)?;
    Ok(MeshApplied { changed, ..key })
}

/// lct-mesh's routes (`proto 77`) as `routes` and `rest` say: those that differ replaced,
/// those not wanted deleted, the others left alone (one `ip` to read, one batch to change,
/// none when nothing differs); whether anything changed.
fn sync_routes(
    iface: &str,
    src: Ipv4Addr,
    routes: &[crate::model::RouteConfig],
    rest: Option<&crate::model::PrefixRoute>,
) -> Result<bool, MeshError> {
    // Destination as `ip route` shows it (a host without `/32`) -> gateway (none: `dev iface`).
    let mut wanted: BTreeMap<String, Option<Ipv4Addr>> = routes.iter().map(|r| (r.to.to_string(), r.via)).collect();
    if let Some(rest) = rest {
        wanted.insert(rest.destination()?.trim_end_matches("/32").to_string(), rest.via);
    }
    let shown = run("ip", &["-4", "route", "show", "proto", ROUTE_PROTO], None)?;
    let current = shown_routes(&shown);
    let mut batch = String::new();
    for dst in current.keys().filter(|d| !wanted.contains_key(*d)) {
        let _ = writeln!(batch, "route del {dst} proto {ROUTE_PROTO}");
    }
    // The routes to single addresses first (more specific, so they win anyway).
    let mut order: Vec<(&String, &Option<Ipv4Addr>)> = wanted.iter().collect();
    order.sort_by_key(|(dst, _)| dst.contains('/'));
    for (dst, via) in order {
        let how = match via {
            Some(via) => format!("via {via}"),
            None => format!("dev {iface}"),
        };
        let want = ShownRoute {
            via: via.map(|v| v.to_string()),
            dev: via.is_none().then(|| iface.to_string()),
            src: Some(src.to_string()),
        };
        let same = current.get(dst).is_some_and(|now| {
            now.via == want.via && now.src == want.src && (want.dev.is_none() || now.dev == want.dev)
        });
        if !same {
            let to = if dst.contains('/') { dst.clone() } else { format!("{dst}/32") };
            let _ = writeln!(batch, "route replace {to} {how} src {src} proto {ROUTE_PROTO}");
        }
    }
    if batch.is_empty() {
        return Ok(false);
    }
    run("ip", &["-batch", "-"], Some(batch.as_bytes()))?;
    Ok(true)
}

/// One route as `ip route show` has it: its gateway, device and source.
#[derive(Debug, Default, PartialEq, Eq)]
struct ShownRoute {
    via: Option<String>,
    dev: Option<String>,
    src: Option<String>,
}

/// `ip -4 route show` lines by destination.
fn shown_routes(text: &str) -> BTreeMap<String, ShownRoute> {
    let mut routes = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(dst) = words.first() else { continue };
        let after =
            |key: &str| words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1)).map(|w| w.to_string());
        routes.insert(dst.to_string(), ShownRoute { via: after("via"), dev: after("dev"), src: after("src") });
    }
    routes
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
    remove_if_there(&public_path(interface))?;
    remove_if_there(&key_path(interface))
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
    fn shown_routes_are_read_by_destination() {
        let text = "100.64.0.1 via 192.168.128.1 dev veth0 src 100.64.0.2 \n\
                    100.64.0.0/10 dev lm0 scope link src 100.64.0.2 \n";
        let routes = shown_routes(text);
        let host = &routes["100.64.0.1"];
        assert_eq!((host.via.as_deref(), host.src.as_deref()), (Some("192.168.128.1"), Some("100.64.0.2")));
        let rest = &routes["100.64.0.0/10"];
        assert_eq!((rest.via.as_deref(), rest.dev.as_deref()), (None, Some("lm0")));
        assert!(shown_routes("").is_empty());
    }

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
