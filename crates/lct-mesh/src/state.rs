//! The mesh as recorded in lct's state store (key `mesh.json`: the state directory's file, or
//! etcd's key, so controllers sharing a store share one mesh): its prefix, topology and port,
//! each member's mesh address and public key, each region's leader. Addresses are recorded,
//! not recomputed from order: a node keeps its address for as long as it exists. Written
//! under the store lock `mesh` and with a compare of the revision read; read back strictly:
//! every key, address and region is checked again, and two members claiming one address or
//! one key is an error naming both.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use lct_core::record::{Name, Node};
use lct_core::store::{Expect, Key, Rev, Secrecy, Store};
use lct_core::stream;
use serde::{Deserialize, Serialize};

use crate::MeshError;
use crate::model::{MeshConfig, Topology, check_public_key, check_region, shorten};

/// The default mesh prefix: the shared address space of RFC 6598 (what Tailscale uses too),
/// which neither Linode's private network nor the lab's use.
pub const DEFAULT_PREFIX: &str = "100.64.0.0/10";
/// The store's key of the recorded mesh.
pub const KEY: &str = "mesh.json";
/// The store lock that one sync, watch round or down holds at a time.
pub const LOCK: &str = "mesh";

/// WireGuard's usual port.
pub const DEFAULT_PORT: u16 = 51820;

/// One member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub address: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(default)]
    pub region: String,
    /// A namespace node's interface: its key is a file of this machine, removed here when the
    /// node leaves the inventory (a deleted node cannot be asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_interface: Option<String>,
    /// Its public address, where its WireGuard peers send (what firewalls admit the port from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Ipv4Addr>,
}

/// The recorded mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshState {
    #[serde(with = "prefix_text")]
    pub prefix: Ipv4Net,
    pub topology: Topology,
    pub port: u16,
    #[serde(default)]
    pub members: BTreeMap<Name, Member>,
    /// Region -> its leader.
    #[serde(default)]
    pub leaders: BTreeMap<String, Name>,
    /// Node -> the digest of the configuration it last applied (see [`config_digest`]): a
    /// sync does not contact a node whose planned configuration has this digest (`--full`
    /// does). Absent: never applied, or its last apply failed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub applied: BTreeMap<Name, String>,
}

impl MeshState {
    pub fn new(prefix: Ipv4Net, topology: Topology, port: u16) -> MeshState {
        MeshState {
            prefix,
            topology,
            port,
            members: BTreeMap::new(),
            leaders: BTreeMap::new(),
            applied: BTreeMap::new(),
        }
    }

    /// The store's key of the recorded mesh.
    pub fn key() -> Key {
        Key::new(KEY).expect("a fixed key")
    }

    /// The recorded mesh, checked, with its revision; none yet: `None`.
    pub fn load(store: &dyn Store) -> Result<Option<(MeshState, Rev)>, MeshError> {
        let place = || {
            store
                .local_path(&Self::key())
                .map_or_else(|| format!("{} {KEY}", store.describe()), |p| p.display().to_string())
        };
        let Some(entry) = store.get(&Self::key()).map_err(|e| MeshError::Io(format!("{}: {e}", place())))? else {
            return Ok(None);
        };
        let state: MeshState =
            serde_json::from_slice(&entry.value).map_err(|e| MeshError::Input(format!("{}: {e}", place())))?;
        state.check().map_err(|e| MeshError::Input(format!("{}: {e}", place())))?;
        Ok(Some((state, entry.rev)))
    }

    /// Writes it if the record is as `expect` says (the revision read: another controller's
    /// write in between is a conflict, never overwritten); the new revision.
    pub fn save(&self, store: &dyn Store, expect: Expect) -> Result<Rev, MeshError> {
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| MeshError::Io(e.to_string()))?;
        text.push(b'\n');
        store.put_if(&Self::key(), &text, Secrecy::Public, expect).map_err(|e| {
            MeshError::Io(format!("{} {KEY}: {e} (another controller changed the mesh? sync again)", store.describe()))
        })
    }

    /// Forgets the record (`lct-mesh down`).
    pub fn remove(store: &dyn Store) -> Result<(), MeshError> {
        store
            .delete_if(&Self::key(), Expect::Any)
            .map_err(|e| MeshError::Io(format!("{} {KEY}: {e}", store.describe())))
    }

    /// Every recorded value valid, every address in the prefix and claimed once.
    pub fn check(&self) -> Result<(), MeshError> {
        let mut seen: BTreeMap<Ipv4Addr, &Name> = BTreeMap::new();
        let mut keys: BTreeMap<&String, &Name> = BTreeMap::new();
        for (name, m) in &self.members {
            if !usable(&self.prefix, m.address) {
                return Err(MeshError::Input(format!(
                    "node {name}: mesh address {} is not a host address of {}",
                    m.address, self.prefix
                )));
            }
            if let Some(other) = seen.insert(m.address, name) {
                return Err(MeshError::Input(format!(
                    "nodes {other} and {name} both claim mesh address {}",
                    m.address
                )));
            }
            if let Some(key) = &m.public_key {
                check_public_key(&format!("node {name}: public key"), key)?;
                if let Some(other) = keys.insert(key, name) {
                    return Err(MeshError::Input(format!("nodes {other} and {name} both hold one public key")));
                }
            }
            check_region(name.as_str(), &m.region)?;
            if let Some(iface) = &m.local_interface {
                crate::model::check_interface(iface)?;
            }
            if let Some(endpoint) = m.endpoint {
                check_endpoint(&self.prefix, name, endpoint)?;
            }
        }
        for (name, digest) in &self.applied {
            if !self.members.contains_key(name) {
                return Err(MeshError::Input(format!("applied configuration of node {name}: not a member")));
            }
            if !is_digest(digest) {
                return Err(MeshError::Input(format!(
                    "applied configuration of node {name}: {:?} is not a digest (64 hex digits)",
                    shorten(digest)
                )));
            }
        }
        // A leader leads the region it is a member of: firewalls admit WireGuard from the
        // leaders' endpoints, so a record naming another region's node (or none) as a leader
        // would open the port to it.
        for (region, leader) in &self.leaders {
            check_region(leader.as_str(), region)?;
            match self.members.get(leader) {
                Some(m) if &m.region == region => {}
                Some(m) => {
                    return Err(MeshError::Input(format!(
                        "leader of region {region}: node {leader} is a member of region {}",
                        m.region
                    )));
                }
                None => {
                    return Err(MeshError::Input(format!("leader of region {region}: node {leader} is not a member")));
                }
            }
        }
        Ok(())
    }

    /// The recorded mesh of lct's state store (`LCT_STATE`, else the state directory), for
    /// the tools that follow the mesh (firewalls, names); none yet: `None`.
    pub fn load_shared() -> Result<Option<MeshState>, MeshError> {
        let store = lct_core::store::open().map_err(|e| MeshError::Io(e.to_string()))?;
        Ok(Self::load(store.as_ref())?.map(|(s, _)| s))
    }

    /// Every member's mesh address whose node applied the mesh (a public key came back), by
    /// node: a planned member that never answered has an address that works nowhere yet.
    pub fn applied_addresses(&self) -> BTreeMap<Name, Ipv4Addr> {
        self.members.iter().filter(|(_, m)| m.public_key.is_some()).map(|(n, m)| (n.clone(), m.address)).collect()
    }

    /// `node`'s mesh address, if it is a member.
    pub fn address_of(&self, node: &Name) -> Option<Ipv4Addr> {
        self.members.get(node).map(|m| m.address)
    }

    /// The public addresses `node`'s WireGuard peers send from: in the leader topology a
    /// leader's are the other regions' leaders and a member has none; in the full topology,
    /// every other member's. Empty for a node that is not a member.
    pub fn wireguard_peers(&self, node: &Name) -> BTreeSet<Ipv4Addr> {
        let Some(me) = self.members.get(node) else { return BTreeSet::new() };
        let endpoint = |name: &Name| self.members.get(name).and_then(|m| m.endpoint);
        match self.topology {
            Topology::Full => self.members.iter().filter(|(n, _)| *n != node).filter_map(|(_, m)| m.endpoint).collect(),
            Topology::Leader if self.leaders.get(&me.region) == Some(node) => self
                .leaders
                .iter()
                .filter(|(region, _)| **region != me.region)
                .filter_map(|(_, leader)| endpoint(leader))
                .collect(),
            Topology::Leader => BTreeSet::new(),
        }
    }

    /// The members whose firewall (lct-fw's rules, which follow this record) differs between
    /// `before` and `self`: those whose WireGuard peers changed (a new leader, a moved
    /// endpoint), and every member when any member's mesh address came, went or moved (a
    /// cluster peer is admitted by it). None recorded before: every member.
    pub fn firewall_changes(&self, before: Option<&MeshState>) -> BTreeSet<Name> {
        let Some(before) = before else { return self.members.keys().cloned().collect() };
        let addresses = |m: &MeshState| m.members.iter().map(|(n, m)| (n.clone(), m.address)).collect::<Vec<_>>();
        if addresses(before) != addresses(self) || before.port != self.port {
            return self.members.keys().cloned().collect();
        }
        self.members.keys().filter(|n| before.wireguard_peers(n) != self.wireguard_peers(n)).cloned().collect()
    }

    /// The lowest free host address of the prefix not in `taken`.
    pub fn free_address(&self, taken: &BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr, MeshError> {
        self.prefix
            .hosts()
            .find(|a| !taken.contains(a))
            .ok_or_else(|| MeshError::Input(format!("mesh prefix {} is full", self.prefix)))
    }
}

/// The digest of what `node` is to look like: its planned configuration and the node it is
/// for (provider, its id there, how it is reached), so a node made again under the same name
/// (a new id) is contacted though its configuration is the same. SHA-256, in hex.
pub fn config_digest(node: &Node, config: &MeshConfig) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let access = serde_json::to_string(&node.access).unwrap_or_default();
    // Fields apart by a newline: none of them holds one in its JSON or its grammar.
    for part in [stream::to_line(config).as_str(), node.provider.as_str(), &node.provider_id, &access] {
        ctx.update(part.as_bytes());
        ctx.update(b"\n");
    }
    data_encoding::HEXLOWER.encode(ctx.finish().as_ref())
}

fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The prefix as `ADDR/LEN` text (ipnet's serde support is not built in).
mod prefix_text {
    use ipnet::Ipv4Net;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Ipv4Net, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(p)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Net, D::Error> {
        let text = String::deserialize(d)?;
        let p: Ipv4Net =
            text.parse().map_err(|_| serde::de::Error::custom(format!("{text:?} is not an IPv4 prefix")))?;
        if p.trunc() != p {
            return Err(serde::de::Error::custom(format!("{text:?} has host bits set")));
        }
        Ok(p)
    }
}

/// A member's endpoint: where its WireGuard peers send and what firewalls admit the port
/// from, so one public unicast address of a host. Refused: `0.0.0.0/8` (to a firewall,
/// "this network"), loopback, link-local, multicast, broadcast, the reserved `240.0.0.0/4`,
/// the private ranges (RFC 1918 and the providers', see `lct_api::ranges`) and the mesh's
/// own prefix: a private network's address is not one node's outside its region, and a
/// hostile or broken record must not turn into a firewall rule that admits a whole network.
pub fn check_endpoint(prefix: &Ipv4Net, node: &Name, endpoint: Ipv4Addr) -> Result<(), MeshError> {
    let why = if endpoint.octets()[0] == 0 {
        Some("\"this network\" (0.0.0.0/8)")
    } else if endpoint.is_loopback() {
        Some("loopback")
    } else if endpoint.is_link_local() {
        Some("link-local")
    } else if endpoint.is_multicast() {
        Some("multicast")
    } else if endpoint.is_broadcast() || endpoint.octets()[0] >= 240 {
        Some("reserved or broadcast")
    } else if endpoint.is_private()
        || lct_api::ranges::provider_ranges().iter().any(|r| r.private && r.range.contains(&endpoint))
    {
        Some("a private address")
    } else if prefix.contains(&endpoint) {
        Some("inside the mesh prefix")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(MeshError::Input(format!(
            "node {node}: endpoint {endpoint} is {why}, not a public address of one node"
        ))),
    }
}

/// Whether `a` is a host address of `prefix` (not its network or broadcast address).
pub fn usable(prefix: &Ipv4Net, a: Ipv4Addr) -> bool {
    prefix.contains(&a) && (prefix.prefix_len() >= 31 || (a != prefix.network() && a != prefix.broadcast()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_digests_are_members_and_digests() {
        let mut s = MeshState::new("100.64.0.0/24".parse().unwrap(), Topology::Leader, DEFAULT_PORT);
        let name: Name = "a-1".parse().unwrap();
        let member = Member {
            address: "100.64.0.1".parse().unwrap(),
            public_key: None,
            region: "a".into(),
            local_interface: None,
            endpoint: None,
        };
        s.members.insert(name.clone(), member);
        s.applied.insert(name.clone(), "ab".repeat(32));
        s.check().unwrap();
        for bad in ["AB".repeat(32), "ab".repeat(31), format!("{}\n", "ab".repeat(32))] {
            let mut t = s.clone();
            t.applied.insert(name.clone(), bad.clone());
            assert!(t.check().unwrap_err().to_string().contains("not a digest"), "{bad:?}");
        }
        let mut t = s.clone();
        t.applied.insert("b-1".parse().unwrap(), "ab".repeat(32));
        assert!(t.check().unwrap_err().to_string().contains("node b-1: not a member"));

        // The digest follows the configuration and the node it is for (made again: a new id).
        let node: Node = serde_json::from_value(serde_json::json!({
            "cluster": "c", "group": "g", "name": "a-1", "provider": "local", "provider_id": "7", "region": "a", "status": "running",
            "access": {"method": "netns", "netns": "x-a-1"},
        }))
        .unwrap();
        let config = MeshConfig {
            interface: "lm0".into(),
            address: "100.64.0.1".parse().unwrap(),
            listen_port: DEFAULT_PORT,
            forward: false,
            peers: Vec::new(),
            routes: Vec::new(),
            rest: None,
        };
        let d = config_digest(&node, &config);
        assert!(is_digest(&d) && d == config_digest(&node, &config.clone()));
        assert_ne!(d, config_digest(&node, &MeshConfig { listen_port: 1, ..config.clone() }));
        let again = Node { provider_id: "8".into(), ..node.clone() };
        assert_ne!(d, config_digest(&again, &config), "a node made again under its name is contacted");
    }

    #[test]
    fn recorded_state_is_checked_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = lct_core::store::local::LocalStore::new(dir.path());
        let load = || MeshState::load(&store).map(|s| s.map(|(s, _)| s));
        assert_eq!(load().unwrap(), None);
        let mut s = MeshState::new("100.64.0.0/24".parse().unwrap(), Topology::Leader, DEFAULT_PORT);
        s.members.insert(
            "a-1".parse().unwrap(),
            Member {
                address: "100.64.0.1".parse().unwrap(),
                public_key: None,
                region: "a".into(),
                local_interface: None,
                endpoint: None,
            },
        );
        let rev = s.save(&store, Expect::Absent).unwrap();
        assert_eq!(load().unwrap(), Some(s.clone()));
        // Another controller's write in between: a conflict, its record kept.
        let mut theirs = s.clone();
        theirs.port = 51821;
        let newer = theirs.save(&store, Expect::Rev(rev)).unwrap();
        assert!(s.save(&store, Expect::Rev(rev)).is_err());
        assert_eq!(load().unwrap().unwrap().port, 51821);
        s.save(&store, Expect::Rev(newer)).unwrap();

        // Another node claiming a-1's address.
        let mut twice = s.clone();
        twice.members.insert(
            "b-1".parse().unwrap(),
            Member {
                address: "100.64.0.1".parse().unwrap(),
                public_key: None,
                region: "b".into(),
                local_interface: None,
                endpoint: None,
            },
        );
        let err = twice.check().unwrap_err().to_string();
        assert!(err.contains("a-1 and b-1 both claim mesh address 100.64.0.1"), "{err}");
        // Outside the prefix, the network address, a hostile key or region.
        for (address, key, region) in [
            ("100.65.0.1", None, "a"),
            ("100.64.0.0", None, "a"),
            ("100.64.0.2", Some("x\nEndpoint = 6.6.6.6:1"), "a"),
            ("100.64.0.2", None, "a\n[Peer]"),
        ] {
            let mut bad = s.clone();
            bad.members.insert(
                "c-1".parse().unwrap(),
                Member {
                    address: address.parse().unwrap(),
                    public_key: key.map(String::from),
                    region: region.into(),
                    local_interface: None,
                    endpoint: None,
                },
            );
            assert!(bad.check().is_err(), "{address} {key:?} {region:?}");
            bad.save(&store, Expect::Any).unwrap();
            assert!(load().unwrap_err().to_string().contains("mesh.json"));
        }
        // Endpoints that are not one node's public address: refused on load, never a rule.
        for endpoint in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.128.9",
            "100.64.0.200",
        ] {
            let mut bad = s.clone();
            bad.members.values_mut().for_each(|m| m.endpoint = Some(endpoint.parse().unwrap()));
            let err = bad.check().unwrap_err().to_string();
            assert!(err.contains(&format!("node a-1: endpoint {endpoint} is")), "{err}");
            bad.save(&store, Expect::Any).unwrap();
            assert!(load().unwrap_err().to_string().contains("mesh.json"));
        }
        let mut public = s.clone();
        public.members.values_mut().for_each(|m| m.endpoint = Some("203.0.113.9".parse().unwrap()));
        public.check().unwrap();
        // A leader that is not a member, or leads another region than its own.
        for (region, leader, why) in [("a", "z-1", "is not a member"), ("b", "a-1", "is a member of region a")] {
            let mut bad = s.clone();
            bad.leaders.insert(region.into(), leader.parse().unwrap());
            let err = bad.check().unwrap_err().to_string();
            assert!(err.contains(&format!("leader of region {region}: node {leader} {why}")), "{err}");
        }
        // Two members of one key (`wg` would merge their peers into one).
        let mut one_key = s.clone();
        let key = data_encoding::BASE64.encode(&[9u8; 32]);
        one_key.members.values_mut().for_each(|m| m.public_key = Some(key.clone()));
        one_key.members.insert(
            "d-1".parse().unwrap(),
            Member {
                address: "100.64.0.4".parse().unwrap(),
                public_key: Some(key),
                region: "d".into(),
                local_interface: None,
                endpoint: None,
            },
        );
        let err = one_key.check().unwrap_err().to_string();
        assert!(err.contains("nodes a-1 and d-1 both hold one public key"), "{err}");
        // WireGuard peers: a leader's are the other leaders' public addresses; a member has none.
        let mut mesh = MeshState::new("100.64.0.0/24".parse().unwrap(), Topology::Leader, DEFAULT_PORT);
        for (i, (name, region)) in [("a-1", "a"), ("a-2", "a"), ("b-1", "b"), ("c-1", "c")].into_iter().enumerate() {
            let member = Member {
                address: Ipv4Addr::new(100, 64, 0, i as u8 + 1),
                public_key: None,
                region: region.into(),
                local_interface: None,
                endpoint: Some(Ipv4Addr::new(203, 0, 113, i as u8 + 1)),
            };
            mesh.members.insert(name.parse().unwrap(), member);
            if name != "a-2" {
                mesh.leaders.insert(region.into(), name.parse().unwrap());
            }
        }
        let peers = |m: &MeshState, n: &str| {
            m.wireguard_peers(&n.parse().unwrap()).iter().map(|a| a.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(peers(&mesh, "a-1"), ["203.0.113.3", "203.0.113.4"]);
        assert!(peers(&mesh, "a-2").is_empty() && peers(&mesh, "x-1").is_empty());
        mesh.topology = Topology::Full;
        assert_eq!(peers(&mesh, "a-2"), ["203.0.113.1", "203.0.113.3", "203.0.113.4"]);
        assert_eq!(mesh.address_of(&"b-1".parse().unwrap()), Some(Ipv4Addr::new(100, 64, 0, 3)));

        // Whose firewall follows a change: a new leader of a moves the WireGuard peers of
        // every leader (b-1, c-1) and of a's old and new leader; a new address, everyone's.
        mesh.topology = Topology::Leader;
        let names = |set: BTreeSet<Name>| set.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(mesh.firewall_changes(Some(&mesh)).is_empty());
        assert_eq!(names(mesh.firewall_changes(None)), ["a-1", "a-2", "b-1", "c-1"]);
        let mut moved = mesh.clone();
        moved.leaders.insert("a".into(), "a-2".parse().unwrap());
        assert_eq!(names(moved.firewall_changes(Some(&mesh))), ["a-1", "a-2", "b-1", "c-1"]);
        let mut endpoint = mesh.clone();
        endpoint.members.get_mut(&"c-1".parse::<Name>().unwrap()).unwrap().endpoint = Some([203, 0, 113, 9].into());
        assert_eq!(names(endpoint.firewall_changes(Some(&mesh))), ["a-1", "b-1"]);
        let mut joined = mesh.clone();
        joined.members.get_mut(&"a-2".parse::<Name>().unwrap()).unwrap().address = [100, 64, 0, 9].into();
        assert_eq!(joined.firewall_changes(Some(&mesh)).len(), 4);

        let taken: BTreeSet<Ipv4Addr> = ["100.64.0.1".parse().unwrap()].into();
        assert_eq!(s.free_address(&taken).unwrap(), "100.64.0.2".parse::<Ipv4Addr>().unwrap());
    }
}
