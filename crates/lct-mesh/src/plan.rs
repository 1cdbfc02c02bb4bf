//! Planning: from node records and the recorded mesh, each node's mesh address (recorded,
//! or pinned by a `mesh-address=ADDR` tag, or the lowest free one), each region's leader, and
//! what every node must look like (its peers and routes). Pure: everything is checked and
//! planned before any node is touched, so bad input changes nothing anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use lct_core::record::{Access, Name, Node, Status};

use crate::MeshError;
use crate::model::{MeshConfig, PeerConfig, PrefixRoute, RouteConfig, Topology, check_region, shorten};
use crate::state::{Member, MeshState, usable};

/// The tag that pins a node's mesh address.
pub const ADDRESS_TAG: &str = "mesh-address=";

/// The WireGuard interface lct-mesh drives on a node. Namespace nodes share this machine's
/// `/var/run/wireguard` (wireguard-go's control sockets), so each gets a name of its own
/// (from its namespace's); a node of its own (SSH) has `lctmesh0`.
pub fn interface_for(node: &Node) -> String {
    match &node.access {
        Some(Access::Netns { netns }) => {
            // FNV-1a: stable across builds and machines (the name must not change).
            let hash =
                netns.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
            format!("lm{:013x}", (hash ^ (hash >> 29)) & ((1 << 52) - 1))
        }
        _ => "lctmesh0".into(),
    }
}

/// The mesh's members this round: the recorded mesh brought up to date with the inventory.
#[derive(Debug, Clone)]
pub struct Assigned {
    pub state: MeshState,
    /// The running nodes, which get configured.
    pub running: Vec<Node>,
    /// Interfaces of namespace nodes that left: their keys (files of this machine) to remove.
    pub gone_local: Vec<String>,
}

/// Checks the nodes and gives every one an address: recorded ones are kept, members no
/// longer in the inventory are dropped.
pub fn assign(mut state: MeshState, nodes: &[Node]) -> Result<Assigned, MeshError> {
    let mut seen = BTreeSet::new();
    let mut pinned: BTreeMap<Ipv4Addr, &Name> = BTreeMap::new();
    let nodes: Vec<&Node> = nodes.iter().filter(|n| n.status != Status::Deleting).collect();
    for node in &nodes {
        if !seen.insert(&node.name) {
            return Err(MeshError::Input(format!("node {} appears twice in the input", node.name)));
        }
        check_region(node.name.as_str(), &node.region)?;
        for a in node.private_ipv4.iter().chain(&node.public_ipv4) {
            if state.prefix.contains(a) {
                return Err(MeshError::Input(format!(
                    "mesh prefix {} overlaps node {}'s address {a}: choose another --prefix",
                    state.prefix, node.name
                )));
            }
        }
        if let Some(address) = pinned_address(node, &state)?
            && let Some(other) = pinned.insert(address, &node.name)
        {
            return Err(MeshError::Input(format!(
                "nodes {other} and {} both claim mesh address {address} (tag {ADDRESS_TAG})",
                node.name
            )));
        }
    }
    // Not only today's addresses: any a provider may hand out later would be hidden too.
    let taken = lct_api::ranges::overlapping(&state.prefix);
    if !taken.is_empty() {
        let names: Vec<String> = taken.iter().map(|r| format!("{} of {} ({})", r.range, r.provider, r.what)).collect();
        return Err(MeshError::Input(format!(
            "mesh prefix {} overlaps {}: choose another --prefix",
            state.prefix,
            names.join(", ")
        )));
    }
    // The mesh's regions are private networks: a region name shared by two providers would
    // route one's members via the other's private addresses, which do not reach.
    let mut networks: BTreeMap<&str, &Node> = BTreeMap::new();
    for node in &nodes {
        if let Some(other) = networks.insert(&node.region, node)
            && other.private_network() != node.private_network()
        {
            return Err(MeshError::Input(format!(
                "nodes {} ({}) and {} ({}) share the region name {} on two private networks: not supported in one mesh",
                other.name,
                other.private_network(),
                node.name,
                node.private_network(),
                node.region
            )));
        }
    }
    let present: BTreeSet<&Name> = nodes.iter().map(|n| &n.name).collect();
    let gone_local = state
        .members
        .iter()
        .filter(|(name, _)| !present.contains(name))
        .filter_map(|(_, m)| m.local_interface.clone())
        .collect();
    state.members.retain(|name, _| present.contains(name));
    state.applied.retain(|name, _| present.contains(name));
    state.leaders.retain(|_, leader| present.contains(leader));
    // A pinned address taken by another recorded member: the claim is refused, the record stays.
    for (address, name) in &pinned {
        if let Some((holder, _)) = state.members.iter().find(|(n, m)| m.address == *address && n != name) {
            return Err(MeshError::Input(format!(
                "node {name} claims mesh address {address} (tag {ADDRESS_TAG}), which is node {holder}'s"
            )));
        }
    }
    for node in &nodes {
        let wanted = pinned.iter().find(|(_, n)| **n == &node.name).map(|(a, _)| *a);
        let member = state.members.get(&node.name).cloned();
        let address = match (wanted, &member) {
            (Some(a), _) => a,
            (None, Some(m)) => m.address,
            (None, None) => {
                let mut taken: BTreeSet<Ipv4Addr> = state.members.values().map(|m| m.address).collect();
                taken.extend(pinned.keys());
                state.free_address(&taken)?
            }
        };
        let public_key = member.and_then(|m| m.public_key);
        let local_interface = matches!(node.access, Some(Access::Netns { .. })).then(|| interface_for(node));
        let endpoint = node.public_ipv4.first().copied();
        let member = Member { address, public_key, region: node.region.clone(), local_interface, endpoint };
        state.members.insert(node.name.clone(), member);
    }
    // A recorded leader that is now of another region (a node made again under its name)
    // leads it no more: chosen again below, not an error of the record.
    let members = &state.members;
    state.leaders.retain(|region, leader| members.get(leader).is_some_and(|m| &m.region == region));
    state.check()?;
    let running = nodes.into_iter().filter(|n| n.status == Status::Running && n.access.is_some()).cloned().collect();
    Ok(Assigned { state, running, gone_local })
}

fn pinned_address(node: &Node, state: &MeshState) -> Result<Option<Ipv4Addr>, MeshError> {
    let Some(tag) = node.tags.iter().find_map(|t| t.strip_prefix(ADDRESS_TAG)) else { return Ok(None) };
    let address: Ipv4Addr = tag.parse().map_err(|_| {
        MeshError::Input(format!("node {}: tag {ADDRESS_TAG}{:?}: not an IPv4 address", node.name, shorten(tag)))
    })?;
    if !usable(&state.prefix, address) {
        return Err(MeshError::Input(format!(
            "node {}: tag {ADDRESS_TAG}{address}: not a host address of the mesh prefix {}",
            node.name, state.prefix
        )));
    }
    Ok(Some(address))
}

/// What to push: each node with its configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    pub configs: Vec<(Node, MeshConfig)>,
    /// Region -> leader (leader topology).
    pub leaders: BTreeMap<String, Name>,
}

/// Whether a node's configuration in `plan` has `key` as a peer's key. Planned with a stand-in
/// key for the nodes that have none yet: when no one names it, their real keys are not needed
/// before the others' applies (a member joining a region that has a leader), and are made in
/// their own apply, in the same round.
pub fn names_key(plan: &Plan, key: &str) -> bool {
    plan.configs.iter().any(|(_, config)| config.peers.iter().any(|p| p.public_key == key))
}

/// The configuration of every node in `members` (running nodes whose keys are known, the
/// keys recorded in `state`). Leaders: the recorded one while it is a member, else the first
/// by name that has a public address. A region with no node able to lead is an error.
pub fn plan(state: &mut MeshState, members: &[Node]) -> Result<Plan, MeshError> {
    let key = |n: &Node| state.members.get(&n.name).and_then(|m| m.public_key.clone());
    let mut regions: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
    for n in members {
        if key(n).is_none() {
            return Err(MeshError::Input(format!("node {}: no public key recorded", n.name)));
        }
        regions.entry(n.region.as_str()).or_default().push(n);
    }
    let endpoint = |n: &Node| n.public_ipv4.first().map(|a| format!("{a}:{}", state.port));
    let address = |n: &Node| state.members[&n.name].address;
    let mut leaders: BTreeMap<String, Name> = BTreeMap::new();
    if state.topology == Topology::Leader {
        for (region, nodes) in &regions {
            let recorded = state.leaders.get(*region);
            let able = |n: &&&Node| !n.public_ipv4.is_empty() && !n.private_ipv4.is_empty();
            let leader = nodes
                .iter()
                .filter(able)
                .find(|n| Some(&n.name) == recorded)
                .or_else(|| nodes.iter().filter(able).min_by_key(|n| &n.name))
                .ok_or_else(|| {
                    MeshError::Input(format!(
                        "region {region}: no node can lead (none running with a public and a private address)"
                    ))
                })?;
            leaders.insert(region.to_string(), leader.name.clone());
        }
    } else if let Some(n) = members.iter().find(|n| n.public_ipv4.is_empty()) {
        return Err(MeshError::Input(format!("node {}: no public address, which topology full needs", n.name)));
    }
    let regions_led = leaders.len();
    let mut configs = Vec::new();
    for n in members {
        let mut peers = Vec::new();
        let mut routes = BTreeSet::new();
        let is_leader = leaders.get(&n.region) == Some(&n.name);
        let to_prefix = |via: Option<Ipv4Addr>| PrefixRoute {
            network: state.prefix.network(),
            prefix_len: state.prefix.prefix_len(),
            via,
        };
        let rest = match state.topology {
            Topology::Full => {
                for other in members.iter().filter(|o| o.name != n.name) {
                    peers.push(PeerConfig {
                        public_key: key(other).expect("checked above"),
                        endpoint: endpoint(other).expect("checked above"),
                        allowed_ips: vec![address(other)],
                    });
                }
                (!peers.is_empty()).then(|| to_prefix(None))
            }
            Topology::Leader => {
                // The region's private network, unencrypted (as the provider's is).
                for other in regions[n.region.as_str()].iter().filter(|o| o.name != n.name) {
                    routes.insert(RouteConfig { to: address(other), via: other.private_ipv4.first().copied() });
                }
                if regions_led < 2 {
                    None
                } else if is_leader {
                    Some(to_prefix(None))
                } else {
                    let leader = regions[n.region.as_str()].iter().find(|l| Some(&l.name) == leaders.get(&n.region));
                    Some(to_prefix(leader.and_then(|l| l.private_ipv4.first().copied())))
                }
            }
        };
        if is_leader {
            for (region, leader) in &leaders {
                if *region == n.region {
                    continue;
                }
                let l = members.iter().find(|m| &m.name == leader).expect("leaders are members");
                let mut allowed: Vec<Ipv4Addr> = regions[region.as_str()].iter().map(|m| address(m)).collect();
                allowed.sort();
                peers.push(PeerConfig {
                    public_key: key(l).expect("checked above"),
                    endpoint: endpoint(l).expect("leaders have public addresses"),
                    allowed_ips: allowed,
                });
            }
        }
        peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        configs.push((
            n.clone(),
            MeshConfig {
                interface: interface_for(n),
                address: address(n),
                listen_port: state.port,
                forward: is_leader,
                peers,
                routes: routes.into_iter().collect(),
                rest,
            },
        ));
    }
    state.leaders = leaders.clone();
    Ok(Plan { configs, leaders })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, region: &str, n: u8, public: bool) -> Node {
        serde_json::from_value(serde_json::json!({
            "cluster": "c", "group": "g", "name": name, "provider": "local", "status": "running", "region": region,
            "private_ipv4": [format!("192.168.128.{n}")],
            "public_ipv4": if public { vec![format!("203.0.113.{n}")] } else { vec![] },
            "access": {"method": "netns", "netns": format!("x-{name}")},
        }))
        .unwrap()
    }

    fn keyed(nodes: &[Node]) -> MeshState {
        let mut a = assign(MeshState::new("100.64.0.0/24".parse().unwrap(), Topology::Leader, 51820), nodes).unwrap();
        for (i, m) in a.state.members.values_mut().enumerate() {
            m.public_key = Some(data_encoding::BASE64.encode(&[i as u8; 32]));
        }
        a.state
    }

    #[test]
    fn a_new_member_is_named_by_no_one_a_new_leader_or_full_peer_is() {
        let stand_in = data_encoding::BASE64.encode(&[0xEE; 32]);
        let with_new = |topology: Topology, nodes: &[Node], new: &str| {
            let mut s = keyed(nodes);
            s.topology = topology;
            s.members.get_mut(&new.parse::<Name>().unwrap()).unwrap().public_key = Some(stand_in.clone());
            plan(&mut s, nodes).unwrap()
        };
        let nodes = vec![node("a-1", "a", 1, true), node("b-1", "b", 2, true), node("a-2", "a", 3, true)];
        // a-2 joins region a, led by a-1: its peers and a-1's routes name its address, no one its key.
        assert!(!names_key(&with_new(Topology::Leader, &nodes, "a-2"), &stand_in));
        // A region's first node leads it: the other leaders peer with it, by its key.
        let c = vec![node("a-1", "a", 1, true), node("b-1", "b", 2, true), node("c-1", "c", 3, true)];
        assert!(names_key(&with_new(Topology::Leader, &c, "c-1"), &stand_in));
        // Full: every node is every other's peer.
        assert!(names_key(&with_new(Topology::Full, &nodes, "a-2"), &stand_in));
    }

    #[test]
    fn addresses_are_recorded_not_recomputed() {
        let nodes = vec![node("a-1", "a", 1, true), node("a-2", "a", 2, true), node("b-1", "b", 3, true)];
        let s =
            assign(MeshState::new("100.64.0.0/24".parse().unwrap(), Topology::Leader, 51820), &nodes).unwrap().state;
        let addr = |s: &MeshState, n: &str| s.members[&n.parse::<Name>().unwrap()].address.to_string();
        assert_eq!([addr(&s, "a-1"), addr(&s, "a-2"), addr(&s, "b-1")], ["100.64.0.1", "100.64.0.2", "100.64.0.3"]);
        // a-1 goes, a-0 comes first by name: b-1 keeps its address, a-0 gets the lowest free one.
        let later = vec![node("a-0", "a", 4, true), node("a-2", "a", 2, true), node("b-1", "b", 3, true)];
        let s = assign(s, &later).unwrap().state;
        assert_eq!([addr(&s, "a-0"), addr(&s, "a-2"), addr(&s, "b-1")], ["100.64.0.1", "100.64.0.2", "100.64.0.3"]);
        assert!(!s.members.contains_key(&"a-1".parse::<Name>().unwrap()));
        // b's recorded leader comes back in region c (made again under its name): it leads b
        // no more, and the record is not refused for it.
        let mut s = s;
        s.leaders.insert("b".into(), "b-1".parse().unwrap());
        let moved = vec![node("a-0", "a", 4, true), node("a-2", "a", 2, true), node("b-1", "c", 3, true)];
        let s = assign(s, &moved).unwrap().state;
        assert!(s.leaders.is_empty(), "{:?}", s.leaders);
    }

    #[test]
    fn leaders_carry_the_traffic_between_regions() {
        let nodes = vec![
            node("a-1", "a", 1, true),
            node("a-2", "a", 2, false),
            node("b-1", "b", 3, true),
            node("b-2", "b", 4, true),
        ];
        let mut s = keyed(&nodes);
        let p = plan(&mut s, &nodes).unwrap();
        assert_eq!(p.leaders.values().map(|n| n.as_str()).collect::<Vec<_>>(), ["a-1", "b-1"]);
        let cfg = |n: &str| &p.configs.iter().find(|(node, _)| node.name.as_str() == n).unwrap().1;
        // a-1 leads a: one peer (b's leader) for all of b's addresses; forwards.
        assert!(cfg("a-1").forward);
        assert_eq!(cfg("a-1").peers.len(), 1);
        assert_eq!(cfg("a-1").peers[0].endpoint, "203.0.113.3:51820");
        assert_eq!(cfg("a-1").peers[0].allowed_ips.len(), 2);
        // a-2: no peers; a-1 through its private address; the rest of the mesh (b) through
        // a-1 too, one route to the prefix, not one per member of b.
        assert!(cfg("a-2").peers.is_empty() && !cfg("a-2").forward);
        let via: Vec<String> = cfg("a-2").routes.iter().map(|r| format!("{}>{:?}", r.to, r.via)).collect();
        assert_eq!(via, ["100.64.0.1>Some(192.168.128.1)"]);
        let rest = cfg("a-2").rest.clone().unwrap();
        assert_eq!(
            (rest.destination().unwrap(), rest.via),
            ("100.64.0.0/24".into(), Some("192.168.128.1".parse().unwrap()))
        );
        // A leader: its region's members through the private network, the rest into the tunnel.
        assert_eq!(cfg("a-1").routes.len(), 1);
        assert_eq!(cfg("a-1").rest.as_ref().unwrap().via, None);
        // A node joins region b: only b's members and the other regions' leaders change.
        let mut joined = nodes.clone();
        joined.push(node("b-3", "b", 5, true));
        let mut s2 = keyed(&joined);
        let before = plan(&mut s2, &nodes).unwrap();
        let after = plan(&mut s2, &joined).unwrap();
        let changed: Vec<&str> = after
            .configs
            .iter()
            .filter(|(n, c)| before.configs.iter().find(|(m, _)| m.name == n.name).is_none_or(|(_, b)| b != c))
            .map(|(n, _)| n.name.as_str())
            .collect();
        assert_eq!(changed, ["a-1", "b-1", "b-2", "b-3"]);
        // The recorded leader stays while it is a member, though b-1 comes first by name.
        s.leaders.insert("b".into(), "b-2".parse().unwrap());
        assert_eq!(plan(&mut s, &nodes).unwrap().leaders["b"].as_str(), "b-2");
        // b-2 gone: b-1 leads, and a-2's routes to b go through a-1 still.
        let without: Vec<Node> = nodes.iter().filter(|n| n.name.as_str() != "b-2").cloned().collect();
        assert_eq!(plan(&mut s, &without).unwrap().leaders["b"].as_str(), "b-1");
        // No node able to lead a region.
        let nobody = vec![node("a-2", "a", 2, false), node("b-1", "b", 3, true)];
        let mut s = keyed(&nobody);
        let err = plan(&mut s, &nobody).unwrap_err().to_string();
        assert!(err.contains("region a: no node can lead"), "{err}");
    }

    #[test]
    fn full_topology_and_bad_input() {
        let nodes = vec![node("a-1", "a", 1, true), node("a-2", "a", 2, true), node("b-1", "b", 3, true)];
        let mut s = keyed(&nodes);
        s.topology = Topology::Full;
        let p = plan(&mut s, &nodes).unwrap();
        // Every other member a peer; one route to the prefix into the tunnel, none per member.
        assert!(p.configs.iter().all(|(_, c)| c.peers.len() == 2
            && c.routes.is_empty()
            && c.rest.as_ref().is_some_and(|r| r.via.is_none())));
        let lone = vec![node("a-1", "a", 1, true), node("a-2", "a", 2, false)];
        let mut s = keyed(&lone);
        s.topology = Topology::Full;
        assert!(plan(&mut s, &lone).unwrap_err().to_string().contains("node a-2: no public address"));

        let fresh = || MeshState::new("100.64.0.0/24".parse().unwrap(), Topology::Leader, 51820);
        let overlap = MeshState::new("192.168.0.0/16".parse().unwrap(), Topology::Leader, 51820);
        let err = assign(overlap, &nodes).unwrap_err().to_string();
        assert!(err.contains("overlaps node a-1's address 192.168.128.1"), "{err}");
        // Above every node's address, inside the providers' private range: a later node's.
        let above = MeshState::new("192.168.200.0/24".parse().unwrap(), Topology::Leader, 51820);
        let err = assign(above, &nodes).unwrap_err().to_string();
        assert!(err.contains("overlaps 192.168.128.0/17 of local (private addresses)"), "{err}");
        assert!(err.contains("192.168.128.0/17 of linode"), "{err}");
        let lab = MeshState::new("198.51.100.0/24".parse().unwrap(), Topology::Leader, 51820);
        assert!(assign(lab, &nodes).unwrap_err().to_string().contains("the lab's public addresses"));
        let mut elsewhere = node("a-9", "a", 9, true);
        elsewhere.provider = lct_core::record::ProviderName::Linode;
        let err = assign(fresh(), &[nodes[0].clone(), elsewhere]).unwrap_err().to_string();
        assert!(err.contains("nodes a-1 (local region a) and a-9 (linode region a) share the region name a"), "{err}");
        let mut hostile = node("a-3", "a", 5, true);
        hostile.region = "a\n[Peer]\nAllowedIPs = 0.0.0.0/0".into();
        assert!(assign(fresh(), &[hostile]).unwrap_err().to_string().contains("not a region name"));
        // A node pinning another's address.
        let s = assign(fresh(), &nodes).unwrap().state;
        let mut thief = node("b-2", "b", 4, true);
        thief.tags.push("mesh-address=100.64.0.1".into());
        let mut with_thief = nodes.clone();
        with_thief.push(thief.clone());
        let err = assign(s.clone(), &with_thief).unwrap_err().to_string();
        assert!(err.contains("node b-2 claims mesh address 100.64.0.1"), "{err}");
        let mut twin = node("b-3", "b", 6, true);
        twin.tags.push("mesh-address=100.64.0.9".into());
        thief.tags = vec!["mesh-address=100.64.0.9".into()];
        let err = assign(fresh(), &[thief.clone(), twin]).unwrap_err().to_string();
        assert!(err.contains("both claim mesh address 100.64.0.9"), "{err}");
        thief.tags = vec!["mesh-address=100.64.0.255".into()];
        assert!(assign(fresh(), &[thief.clone()]).unwrap_err().to_string().contains("not a host address"));
        thief.tags = vec!["mesh-address=1.2.3.4; reboot".into()];
        assert!(assign(fresh(), &[thief]).unwrap_err().to_string().contains("not an IPv4 address"));
        assert_eq!(interface_for(&nodes[0]).len(), 15);
        assert_ne!(interface_for(&nodes[0]), interface_for(&nodes[1]));
    }
}
