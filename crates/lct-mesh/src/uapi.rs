//! wireguard-go's control socket: its configuration read and changed in WireGuard's
//! cross-platform text protocol (`get=1` / `set=1`, `key=value` lines, an empty line ends a
//! message, `errno=N` answers) over the unix socket `/var/run/wireguard/IFACE.sock`, instead of
//! a `wg` process per read or change. Only what differs is sent: peers that stay keep their
//! sessions, as with `wg syncconf`. The kernel's WireGuard has no such socket (`wg` then).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::MeshError;
use crate::model::MeshConfig;

/// Where wireguard-go listens for `interface`.
pub fn socket(interface: &str) -> PathBuf {
    PathBuf::from("/var/run/wireguard").join(format!("{interface}.sock"))
}

/// The most a device's answer may hold: a line per field, a few per peer (a leader of a
/// mesh of thousands is under a MiB).
const ANSWER_LIMIT: usize = 4 << 20;

/// A device as its socket describes it (the private key in hex: compared, never shown).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Device {
    pub private_key: String,
    pub listen_port: u16,
    /// Peer (public key in hex) -> its endpoint and allowed IPs.
    pub peers: BTreeMap<String, (Option<SocketAddr>, BTreeSet<String>)>,
}

fn exchange(interface: &str, request: &str) -> Result<Vec<(String, String)>, MeshError> {
    let path = socket(interface);
    let fail = |e: std::io::Error| MeshError::Node(format!("{}: {e}", path.display()));
    let mut stream = UnixStream::connect(&path).map_err(fail)?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(fail)?;
    stream.set_write_timeout(Some(Duration::from_secs(10))).map_err(fail)?;
    stream.write_all(request.as_bytes()).map_err(fail)?;
    let mut reader = BufReader::new(std::io::Read::take(stream, ANSWER_LIMIT as u64));
    let mut fields = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(fail)? == 0 {
            return Err(MeshError::Node(format!("{}: the answer ended early", path.display())));
        }
        let line = line.trim_end_matches('\n');
        if line.is_empty() {
            break;
        }
        let (key, value) =
            line.split_once('=').ok_or_else(|| MeshError::Node(format!("{}: not a key=value line", path.display())))?;
        fields.push((key.to_string(), value.to_string()));
    }
    match fields.iter().rev().find(|(k, _)| k == "errno") {
        Some((_, errno)) if errno == "0" => Ok(fields),
        Some((_, errno)) => {
            Err(MeshError::Node(format!("{}: errno {}", path.display(), errno.chars().take(12).collect::<String>())))
        }
        None => Err(MeshError::Node(format!("{}: no errno in the answer", path.display()))),
    }
}

/// The device's configuration now.
pub fn get(interface: &str) -> Result<Device, MeshError> {
    let mut device = Device::default();
    let mut peer: Option<String> = None;
    for (key, value) in exchange(interface, "get=1\n\n")? {
        match key.as_str() {
            "private_key" => device.private_key = value,
            "listen_port" => device.listen_port = value.parse().unwrap_or(0),
            "public_key" => {
                device.peers.entry(value.clone()).or_default();
                peer = Some(value);
            }
            "endpoint" => {
                if let Some(p) = &peer {
                    device.peers.entry(p.clone()).or_default().0 = value.parse().ok();
                }
            }
            "allowed_ip" => {
                if let Some(p) = &peer {
                    device.peers.entry(p.clone()).or_default().1.insert(value);
                }
            }
            _ => {}
        }
    }
    Ok(device)
}

/// What to send for `now` to become `config` with this private key (in hex): nothing when it
/// is already. Peers gone are removed; a peer that differs gets its endpoint and allowed IPs
/// replaced; the others are not named (their sessions stay).
pub fn changes(now: &Device, private_hex: &str, config: &MeshConfig) -> Result<String, MeshError> {
    let mut body = String::new();
    if now.private_key != private_hex {
        body.push_str(&format!("private_key={private_hex}\n"));
    }
    if now.listen_port != config.listen_port {
        body.push_str(&format!("listen_port={}\n", config.listen_port));
    }
    let mut wanted = BTreeSet::new();
    for p in &config.peers {
        let key = hex_key(&p.public_key)?;
        let endpoint: SocketAddr =
            p.endpoint.parse().map_err(|_| MeshError::Input(format!("peer endpoint {:?}", p.endpoint)))?;
        let allowed: BTreeSet<String> = p.allowed_ips.iter().map(|a| format!("{a}/32")).collect();
        if now.peers.get(&key) != Some(&(Some(endpoint), allowed.clone())) {
            body.push_str(&format!("public_key={key}\nendpoint={endpoint}\nreplace_allowed_ips=true\n"));
            for a in &allowed {
                body.push_str(&format!("allowed_ip={a}\n"));
            }
        }
        wanted.insert(key);
    }
    for key in now.peers.keys().filter(|k| !wanted.contains(*k)) {
        body.push_str(&format!("public_key={key}\nremove=true\n"));
    }
    Ok(body)
}

/// Sends `body` (from [`changes`]) to the device.
pub fn set(interface: &str, body: &str) -> Result<(), MeshError> {
    exchange(interface, &format!("set=1\n{body}\n")).map(drop)
}

/// A WireGuard key in base64 (checked) as the protocol writes it: hex.
pub fn hex_key(base64: &str) -> Result<String, MeshError> {
    crate::model::check_public_key("key", base64)?;
    let bytes = data_encoding::BASE64.decode(base64.as_bytes()).expect("checked above");
    Ok(data_encoding::HEXLOWER.encode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PeerConfig;

    #[test]
    fn only_what_differs_is_sent() {
        let key = |b: u8| data_encoding::BASE64.encode(&[b; 32]);
        let peer = |b: u8, ip: &str| PeerConfig {
            public_key: key(b),
            endpoint: "203.0.113.3:51820".into(),
            allowed_ips: vec![ip.parse().unwrap()],
        };
        let config = MeshConfig {
            interface: "lm0".into(),
            address: "100.64.0.1".parse().unwrap(),
            listen_port: 51820,
            forward: true,
            peers: vec![peer(1, "100.64.0.2"), peer(2, "100.64.0.3")],
            routes: Vec::new(),
            rest: None,
        };
        let private = "07".repeat(32);
        let fresh = changes(&Device::default(), &private, &config).unwrap();
        assert!(fresh.starts_with(&format!("private_key={private}\nlisten_port=51820\n")), "{fresh}");
        assert_eq!(fresh.matches("replace_allowed_ips=true").count(), 2, "{fresh}");
        // As configured: nothing to send. A peer that went, one whose addresses changed.
        let mut now = Device { private_key: private.clone(), listen_port: 51820, peers: BTreeMap::new() };
        for (b, ip) in [(1u8, "100.64.0.2/32"), (2, "100.64.0.3/32")] {
            let endpoint = Some("203.0.113.3:51820".parse().unwrap());
            now.peers.insert(hex_key(&key(b)).unwrap(), (endpoint, BTreeSet::from([ip.to_string()])));
        }
        assert_eq!(changes(&now, &private, &config).unwrap(), "");
        now.peers.insert(hex_key(&key(9)).unwrap(), (None, BTreeSet::new()));
        now.peers.get_mut(&hex_key(&key(2)).unwrap()).unwrap().1 = BTreeSet::from(["100.64.0.4/32".into()]);
        let body = changes(&now, &private, &config).unwrap();
        let k2 = hex_key(&key(2)).unwrap();
        let k9 = hex_key(&key(9)).unwrap();
        assert_eq!(
            body,
            format!(
                "public_key={k2}\nendpoint=203.0.113.3:51820\nreplace_allowed_ips=true\nallowed_ip=100.64.0.3/32\npublic_key={k9}\nremove=true\n"
            )
        );
        // A hostile key never reaches the socket as text of its own.
        let mut bad = config.clone();
        bad.peers[0].public_key = format!("{}\nprivate_key=00", key(1));
        assert!(changes(&now, &private, &bad).is_err());
    }
}
