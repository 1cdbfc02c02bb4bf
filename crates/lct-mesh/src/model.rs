//! The mesh's records and the grammar of what it takes from others: region names, WireGuard
//! public keys, interface names. Each check names the value and refuses it whole.

use std::net::Ipv4Addr;

use lct_core::record::{Name, Record};
use serde::{Deserialize, Serialize};

use crate::MeshError;

/// The mesh's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[derive(clap::ValueEnum)]
pub enum Topology {
    /// One leader per region carries the traffic between regions; inside a region nodes use
    /// the private network (Kilo's location granularity).
    #[default]
    Leader,
    /// Every node a WireGuard peer of every other.
    Full,
}

/// How a node fared in a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncStatus {
    Changed,
    Unchanged,
    Failed,
    /// Not running (or unreachable): not in the mesh this round.
    Skipped,
}

/// The `mesh-node` record: a node's place in the mesh after a sync.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MeshNode {
    pub node: Name,
    pub region: String,
    /// Its mesh address.
    pub address: Ipv4Addr,
    /// Whether it carries its region's traffic to the other regions.
    pub leader: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Its WireGuard interface on the node.
    pub interface: String,
    /// How many WireGuard peers it has.
    pub peers: usize,
    pub status: SyncStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its firewall follows the mesh and the mesh changed under it (a leader, an endpoint, a
    /// member's address): `lct-fw push` it again (lct-mesh does not push firewalls).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub firewall_stale: bool,
    /// How long its apply took this sync, in milliseconds, as the controller saw it (for a
    /// namespace node, its thread's work; for a remote one, the whole SSH exec). Absent: not
    /// contacted (its configuration was the one it last applied) or not planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_ms: Option<u64>,
}

impl Record for MeshNode {
    const KIND: &'static str = "mesh-node";
    const VERSION: u32 = 1;
}

impl lct_core::table::Tabular for MeshNode {
    const HEADERS: &'static [&'static str] = &["NODE", "REGION", "ADDRESS", "LEADER", "PEERS", "STATUS", "ERROR"];
    fn row(&self) -> Vec<String> {
        vec![
            self.node.to_string(),
            self.region.clone(),
            self.address.to_string(),
            if self.leader { "yes".into() } else { "-".into() },
            self.peers.to_string(),
            format!("{:?}", self.status).to_lowercase(),
            self.error.clone().unwrap_or_else(|| "-".into()),
        ]
    }
}

/// The `mesh-peer` record: one WireGuard peer of one node, as `wg show dump` has it there.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MeshPeer {
    pub node: Name,
    /// The peer's node name, when the mesh knows its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Name>,
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    /// Seconds since the Unix epoch of the last handshake (none yet: absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_handshake: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl Record for MeshPeer {
    const KIND: &'static str = "mesh-peer";
    const VERSION: u32 = 1;
}

impl MeshPeer {
    /// A peer line as a node sent it back, checked before it reaches a table, the picture or
    /// the record: a public key, an `ADDRESS:PORT` endpoint, IPv4 prefixes (a hostile node
    /// must not write terminal escapes or DOT through them).
    pub fn check(&self) -> Result<(), MeshError> {
        let place = format!("node {}: a peer", self.node);
        check_public_key(&place, &self.public_key)?;
        if let Some(endpoint) = &self.endpoint
            && endpoint.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(MeshError::Input(format!("{place}: endpoint {:?} is not ADDRESS:PORT", shorten(endpoint))));
        }
        if let Some(bad) = self.allowed_ips.iter().find(|a| a.parse::<ipnet::Ipv4Net>().is_err()) {
            return Err(MeshError::Input(format!("{place}: allowed IP {:?} is not an IPv4 prefix", shorten(bad))));
        }
        Ok(())
    }
}

impl lct_core::table::Tabular for MeshPeer {
    const HEADERS: &'static [&'static str] = &["NODE", "PEER", "ENDPOINT", "HANDSHAKE", "RX", "TX"];
    fn row(&self) -> Vec<String> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        vec![
            self.node.to_string(),
            self.peer.as_ref().map_or_else(|| self.public_key.clone(), |p| p.to_string()),
            self.endpoint.clone().unwrap_or_else(|| "-".into()),
            self.latest_handshake.map_or("never".into(), |t| format!("{}s ago", now.saturating_sub(t))),
            self.rx_bytes.to_string(),
            self.tx_bytes.to_string(),
        ]
    }
}

/// The `mesh-config` record: what one node must look like, the input of `lct-mesh apply`
/// there. No private key: the node holds its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MeshConfig {
    pub interface: String,
    pub address: Ipv4Addr,
    pub listen_port: u16,
    /// Forward packets (a leader: between the private network and the tunnels).
    pub forward: bool,
    pub peers: Vec<PeerConfig>,
    /// Every mesh route to one address this node must have (others of lct's are removed):
    /// its region's members, through their private addresses.
    pub routes: Vec<RouteConfig>,
    /// The rest of the mesh, one route to the whole prefix under those: through the region's
    /// leader (a member), or into the tunnel (a leader, or every node in the full topology),
    /// where WireGuard's allowed IPs pick the peer. One route, not one per member of the other
    /// regions: a node joining changes its own region's members and the leaders only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest: Option<PrefixRoute>,
}

/// The route to the rest of the mesh prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PrefixRoute {
    /// The mesh prefix's network address and length.
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    /// Through this private address (the region's leader); none: through the WireGuard
    /// interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Ipv4Addr>,
}

impl PrefixRoute {
    /// `NETWORK/LEN` as `ip route` shows it, checked: a prefix whose host bits are clear.
    pub fn destination(&self) -> Result<String, MeshError> {
        let net = ipnet::Ipv4Net::new(self.network, self.prefix_len)
            .ok()
            .filter(|n| n.trunc().network() == self.network)
            .ok_or_else(|| {
                MeshError::Input(format!("mesh route {}/{}: not a network prefix", self.network, self.prefix_len))
            })?;
        Ok(net.to_string())
    }
}

impl Record for MeshConfig {
    const KIND: &'static str = "mesh-config";
    const VERSION: u32 = 1;
}

/// One WireGuard peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PeerConfig {
    pub public_key: String,
    /// ADDRESS:PORT.
    pub endpoint: String,
    /// Mesh addresses reached through this peer (host addresses).
    pub allowed_ips: Vec<Ipv4Addr>,
}

/// One route to a mesh address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RouteConfig {
    pub to: Ipv4Addr,
    /// Through this private address (a same-region node, or the region's leader); none:
    /// through the WireGuard interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Ipv4Addr>,
}

/// The `mesh-apply` record: what `lct-mesh apply` did on a node, with the node's public key.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MeshApplied {
    pub interface: String,
    pub public_key: String,
    /// Whether anything changed (with `--key`: whether the key was made now).
    pub changed: bool,
}

impl Record for MeshApplied {
    const KIND: &'static str = "mesh-apply";
    const VERSION: u32 = 1;
}

/// A region name: lct's one grammar (`lct_core::record::region_problem`), up to 63 bytes.
pub fn check_region(node: &str, region: &str) -> Result<(), MeshError> {
    match lct_core::record::region_problem(region, lct_core::record::MAX_REGION_LEN) {
        None => Ok(()),
        Some(why) => {
            Err(MeshError::Input(format!("node {node}: region {:?} is not a region name ({why})", shorten(region))))
        }
    }
}

/// A WireGuard public key: base64 of exactly 32 bytes (44 characters).
pub fn check_public_key(place: &str, key: &str) -> Result<(), MeshError> {
    let ok = key.len() == 44 && data_encoding::BASE64.decode(key.as_bytes()).is_ok_and(|bytes| bytes.len() == 32);
    if ok {
        Ok(())
    } else {
        Err(MeshError::Input(format!("{place}: {:?} is not a WireGuard public key (base64 of 32 bytes)", shorten(key))))
    }
}

/// An interface name lct-mesh may drive: `lm` or `lctmesh` names of at most 15 characters
/// of letters and digits (never a path or an option to `ip`).
pub fn check_interface(name: &str) -> Result<(), MeshError> {
    let ok = (2..=15).contains(&name.len())
        && (name.starts_with("lm") || name.starts_with("lctmesh"))
        && name.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok { Ok(()) } else { Err(MeshError::Input(format!("interface {:?}: not a mesh interface name", shorten(name)))) }
}

/// The first 40 characters of a hostile value, for an error message.
pub fn shorten(s: &str) -> String {
    if s.chars().count() > 40 { format!("{}...", s.chars().take(40).collect::<String>()) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_refuses_hostile_values() {
        assert!(check_region("a", "us-east").is_ok());
        for bad in ["", "Us", "a b", "a;reboot", "a\nb", "-a", &"a".repeat(64), "a$(id)", "ré"] {
            assert!(check_region("n-1", bad).is_err(), "{bad:?}");
        }
        let key = data_encoding::BASE64.encode(&[7u8; 32]);
        assert!(check_public_key("k", &key).is_ok());
        for bad in
            ["", "x", &data_encoding::BASE64.encode(&[7u8; 31]), "AAAA\nAAAA", &format!("{key}\nEndpoint=1.2.3.4:1")]
        {
            assert!(check_public_key("k", bad).is_err(), "{bad:?}");
        }
        let err = check_public_key("node x", &"A".repeat(5000)).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
        assert!(check_interface("lm0123456789abc").is_ok());
        for bad in ["eth0", "lm/../x", "lm-x", "lm0123456789abcd", "-lm"] {
            assert!(check_interface(bad).is_err(), "{bad:?}");
        }
    }
}
