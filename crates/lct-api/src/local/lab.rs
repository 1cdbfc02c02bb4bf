//! A lab's network: its namespaces (the lab's, with the two bridges; the outside one; one per
//! node), the veth pairs that join them, their addresses and routes, and the marks that say
//! which namespaces belong to which lab.

use std::collections::BTreeSet;
use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use lct_core::fsutil::atomic_write;
use lct_core::record::{Name, Node};

use super::net;
use super::region::{PRIVATE_BRIDGE, private_bridge, region_of};
use crate::ProviderError;

/// The outside namespace's addresses: the "internet" that sees public addresses only.
pub const OUTSIDE_IPV4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
pub const OUTSIDE_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfffe);
pub(super) const PRIVATE_PREFIX: u8 = 17;
pub(super) const PUBLIC_RANGES: [[u8; 3]; 2] = [[203, 0, 113], [198, 51, 100]];
/// The same, as prefixes (for what must not overlap them).
pub const PUBLIC_IPV4_RANGES: [&str; 2] = ["203.0.113.0/24", "198.51.100.0/24"];
/// One file per namespace, named after it, holding the name of the lab that owns it.
pub(super) const MARKER_DIR: &str = "/run/lct/netns";
pub(super) const PUBLIC_BRIDGE: &str = "br-pub";

/// The namespaces and links of one lab.
pub(super) struct Lab {
    name: String,
}

impl Lab {
    pub(super) fn new(name: &str) -> Self {
        Lab { name: name.to_string() }
    }

    pub(super) fn lab_ns(&self) -> String {
        format!("{}-lab", self.name)
    }

    pub(super) fn outside_ns(&self) -> String {
        format!("{}-outside", self.name)
    }

    pub(super) fn node_ns(&self, node: &Name) -> String {
        format!("{}-{node}", self.name)
    }

    /// Marks a namespace as this lab's, so a sweep after lost state knows what is ours. The
    /// marks live in /run, like the namespaces themselves (both go with a reboot); not in
    /// /etc/netns/NS/, whose every file `ip netns exec` bind-mounts over /etc.
    pub(super) fn mark(&self, ns: &str) -> Result<(), ProviderError> {
        let marker = Path::new(MARKER_DIR).join(ns);
        fs::create_dir_all(MARKER_DIR)
            .and_then(|()| fs::write(&marker, format!("{}\n", self.name)))
            .map_err(|source| ProviderError::Io { what: marker.display().to_string(), error: source })
    }

    pub(super) fn unmark(ns: &str) {
        let _ = fs::remove_file(Path::new(MARKER_DIR).join(ns));
    }

    /// Namespaces that carry this lab's mark.
    pub(super) fn marked_namespaces(&self) -> Vec<String> {
        let prefix = format!("{}-", self.name);
        let Ok(entries) = fs::read_dir(MARKER_DIR) else {
            return Vec::new();
        };
        let mut found: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|ns| ns.starts_with(&prefix))
            .filter(|ns| {
                fs::read_to_string(Path::new(MARKER_DIR).join(ns)).is_ok_and(|owner| owner.trim() == self.name)
            })
            .collect();
        found.sort();
        found
    }

    /// Removes marked namespaces that no node of the state owns (left by lost state).
    pub(super) fn sweep(&self, keep: &BTreeSet<String>) -> Result<Vec<String>, ProviderError> {
        let mut removed = Vec::new();
        for ns in self.marked_namespaces() {
            if !keep.contains(&ns) {
                tracing::warn!(namespace = %ns, "removing a namespace of this lab that no node owns");
                net::delete_netns(&ns)?;
                let _ = fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
                Self::unmark(&ns);
                removed.push(ns);
            }
        }
        Ok(removed)
    }

    /// The lab's namespace with its two bridges, and the outside namespace joined to the
    /// public bridge; safe to run again.
    pub(super) fn ensure(&self) -> Result<(), ProviderError> {
        let lab = self.lab_ns();
        let outside = self.outside_ns();
        self.mark(&lab)?;
        self.mark(&outside)?;
        for ns in [&lab, &outside] {
            if !net::netns_exists(ns) {
                net::add_netns(ns)?;
            }
        }
        let lab_links = net::links_in(&lab)?;
        let outside_links = net::links_in(&outside)?;
        let mut in_lab = vec!["link set lo up".to_string()];
        for bridge in [PRIVATE_BRIDGE, PUBLIC_BRIDGE] {
            if !lab_links.contains(bridge) {
                in_lab.push(format!("link add {bridge} type bridge"));
            }
            in_lab.push(format!("link set {bridge} up"));
        }
        in_lab.extend(veth_pair(
            &lab,
            &lab_links,
            "out",
            Inner { ns: &outside, name: "eth0", mac: None },
            outside_links.contains("eth0"),
        )?);
        in_lab.push(format!("link set out master {PUBLIC_BRIDGE} up"));
        net::ip_batch(&lab, &in_lab)?;
        let mut in_outside = vec![
            "link set lo up".to_string(),
            format!("addr replace {OUTSIDE_IPV4}/24 dev eth0"),
            format!("addr replace {OUTSIDE_IPV6}/64 dev eth0 nodad"),
            "link set eth0 up".to_string(),
        ];
        in_outside.extend(PUBLIC_RANGES.iter().map(|[a, b, c]| format!("route replace {a}.{b}.{c}.0/24 dev eth0")));
        net::ip_batch(&outside, &in_outside)
    }

    pub(super) fn remove(&self) -> Result<(), ProviderError> {
        for ns in [self.outside_ns(), self.lab_ns()] {
            net::end_processes(&ns);
            net::delete_netns(&ns)?;
            let _ = fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
            Self::unmark(&ns);
        }
        Ok(())
    }

    /// A node's namespace, its two veth pairs to the lab's bridges (its region's private one,
    /// made here when it is the region's first node, and the public one), its addresses and routes:
    /// a batch of `ip` commands per namespace, each step safe to run again (a crash half-way
    /// is finished by the next run).
    pub(super) fn ensure_node(&self, node: &Node, up: bool) -> Result<(), ProviderError> {
        let lab = self.lab_ns();
        let ns = self.node_ns(&node.name);
        let id = &node.provider_id;
        self.mark(&ns)?;
        write_netns_etc(&ns, node)?;
        let fresh = !net::netns_exists(&ns);
        if fresh {
            net::add_netns(&ns)?;
        }
        // Keep IPv6 quiet: no router solicitations or autoconfigured addresses.
        net::net_sysctl_in(&ns, "ipv6/conf/default/accept_ra", "0")?;
        let node_links = if fresh { BTreeSet::new() } else { net::links_in(&ns)? };
        let lab_links = net::links_in(&lab)?;
        let mut in_lab = Vec::new();
        let private = private_bridge(region_of(node));
        if !lab_links.contains(&private) {
            in_lab.push(format!("link add {private} type bridge"));
        }
        in_lab.push(format!("link set {private} up"));
        let macs = [
            node_mac(PRIVATE_MAC_PREFIX, node.private_ipv4.first()),
            node_mac(PUBLIC_MAC_PREFIX, node.public_ipv4.first()),
        ];
        for ((veth, inside, bridge), mac) in
            [(format!("p{id}"), "eth0", private.as_str()), (format!("u{id}"), "eth1", PUBLIC_BRIDGE)]
                .into_iter()
                .zip(macs)
        {
            let inner = Inner { ns: &ns, name: inside, mac: mac.as_deref() };
            in_lab.extend(veth_pair(&lab, &lab_links, &veth, inner, node_links.contains(inside))?);
            in_lab.push(format!("link set {veth} master {bridge} up"));
        }
        net::ip_batch(&lab, &in_lab)?;
        let mut in_node = vec!["link set lo up".to_string()];
        in_node.extend(node.private_ipv4.iter().map(|a| format!("addr replace {a}/{PRIVATE_PREFIX} dev eth0")));
        in_node.extend(node.public_ipv4.iter().map(|a| format!("addr replace {a}/24 dev eth1")));
        in_node.extend(node.public_ipv6.iter().map(|a| format!("addr replace {a}/64 dev eth1 nodad")));
        in_node.extend(Self::link_commands(up));
        net::ip_batch(&ns, &in_node)
    }

    /// A node's namespace made anew, as a rebooted computer's network stack is: the old one
    /// deleted (with whatever rules, connections and settings it held), then the node's
    /// links, addresses and routes set up again.
    pub(super) fn renew_node(&self, node: &Node) -> Result<(), ProviderError> {
        net::delete_netns(&self.node_ns(&node.name))?;
        self.ensure_node(node, true)
    }

    /// What brings a node's links up (with its routes) or down.
    pub(super) fn link_commands(up: bool) -> Vec<String> {
        let state = if up { "up" } else { "down" };
        let mut commands: Vec<String> = ["eth0", "eth1"].iter().map(|dev| format!("link set {dev} {state}")).collect();
        if up {
            // Both public ranges share one link, as if the provider's router joined them.
            commands.extend(PUBLIC_RANGES.iter().map(|[a, b, c]| format!("route replace {a}.{b}.{c}.0/24 dev eth1")));
        }
        commands
    }

    pub(super) fn set_links(&self, node: &Node, up: bool) -> Result<(), ProviderError> {
        net::ip_batch(&self.node_ns(&node.name), &Self::link_commands(up))
    }

    pub(super) fn remove_node(&self, node: &Node) -> Result<(), ProviderError> {
        let lab = self.lab_ns();
        net::end_processes(&self.node_ns(&node.name));
        net::delete_netns(&self.node_ns(&node.name))?;
        // Deleting the namespace takes the veth pairs with it; a crash mid-create may have
        // left a lab-side end alone.
        if net::netns_exists(&lab) {
            for dev in [format!("p{}", node.provider_id), format!("u{}", node.provider_id)] {
                if net::link_exists(&lab, &dev) {
                    net::delete_link(&lab, &dev)?;
                }
            }
        }
        Self::unmark(&self.node_ns(&node.name));
        let etc = Path::new("/etc/netns").join(self.node_ns(&node.name));
        match fs::remove_dir_all(&etc) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ProviderError::Io { what: etc.display().to_string(), error: source }),
        }
    }
}

/// The first two bytes of a node's MAC on the private and on the public bridge (locally
/// administered, unicast); the other four are the link's IPv4 address.
const PRIVATE_MAC_PREFIX: [u8; 2] = [0x02, 0x1c];
const PUBLIC_MAC_PREFIX: [u8; 2] = [0x02, 0x1d];

/// The MAC of a node's link that holds `address`: the same for as long as the address is
/// the same, as a provider's network answers for an address whichever guest holds it. A
/// random MAC per veth made every reuse of an address (a machine made again after a
/// destroy, a scale down and up, a reboot's new namespace) a new MAC, while the outside
/// namespace and the other nodes still held the old one as STALE: their packets went to a
/// MAC no port had until the entry failed, 8.7 s in which a new machine's SSH did not answer.
/// (A gratuitous ARP at link up is no cure: the bridge sees the port's carrier a moment
/// later, and drops what comes first.)
fn node_mac(prefix: [u8; 2], address: Option<&std::net::Ipv4Addr>) -> Option<String> {
    let [a, b, c, d] = address?.octets();
    Some(format!("{:02x}:{:02x}:{a:02x}:{b:02x}:{c:02x}:{d:02x}", prefix[0], prefix[1]))
}

/// The inside end of a veth pair: its namespace, its name there and its MAC (the kernel's
/// random one when none).
pub(super) struct Inner<'a> {
    pub ns: &'a str,
    pub name: &'a str,
    pub mac: Option<&'a str>,
}

/// The batch line (in the lab's namespace) that makes the veth pair `outer` (in the lab) to
/// `inner`, when the inside end is missing; a lab end left alone (its namespace made again
/// after a crash between the two) is deleted first.
pub(super) fn veth_pair(
    lab: &str,
    lab_links: &BTreeSet<String>,
    outer: &str,
    inner: Inner<'_>,
    inner_exists: bool,
) -> Result<Option<String>, ProviderError> {
    if inner_exists {
        return Ok(None);
    }
    if lab_links.contains(outer) {
        net::delete_link(lab, outer)?;
    }
    let Inner { ns, name, mac } = inner;
    let address = mac.map(|mac| format!("address {mac} ")).unwrap_or_default();
    Ok(Some(format!("link add {outer} type veth peer name {name} {address}netns {ns}")))
}

/// The node's own `/etc/hosts` and `/etc/resolv.conf`, which `ip netns exec` bind-mounts
/// over the machine's. An existing hosts file is left alone: lct-hosts manages blocks in it.
pub(super) fn write_netns_etc(ns: &str, node: &Node) -> Result<(), ProviderError> {
    let dir = Path::new("/etc/netns").join(ns);
    let io = |p: &Path| {
        let what = p.display().to_string();
        move |source| ProviderError::Io { what, error: source }
    };
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let hosts = dir.join("hosts");
    if !hosts.exists() {
        let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        if let Some(a) = node.private_ipv4.first() {
            text.push_str(&format!("{a}\t{}\n", node.name));
        }
        atomic_write(&hosts, text.as_bytes(), 0o644).map_err(io(&hosts))?;
    }
    let resolv = dir.join("resolv.conf");
    if !resolv.exists() {
        // No resolver runs in the lab until lct-dns does; fail fast on the node itself
        // rather than fall back to the machine's resolver.
        let text = "# lct local cloud: lct-dns replaces this when it serves the lab\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n";
        atomic_write(&resolv, text.as_bytes(), 0o644).map_err(io(&resolv))?;
    }
    Ok(())
}

#[cfg(test)]
mod public_ranges {
    #[test]
    fn both_spellings_name_the_same_ranges() {
        let bytes: Vec<String> = super::PUBLIC_RANGES.iter().map(|[a, b, c]| format!("{a}.{b}.{c}.0/24")).collect();
        assert_eq!(bytes, super::PUBLIC_IPV4_RANGES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_link_s_mac_is_its_address_locally_administered() {
        let address: std::net::Ipv4Addr = "203.0.113.7".parse().unwrap();
        assert_eq!(node_mac(PUBLIC_MAC_PREFIX, Some(&address)).unwrap(), "02:1d:cb:00:71:07");
        assert_eq!(node_mac(PRIVATE_MAC_PREFIX, Some(&address)).unwrap(), "02:1c:cb:00:71:07");
        assert_eq!(node_mac(PUBLIC_MAC_PREFIX, None), None);
        // Unicast (bit 0 clear) and locally administered (bit 1 set), on both bridges.
        for prefix in [PRIVATE_MAC_PREFIX, PUBLIC_MAC_PREFIX] {
            assert_eq!(prefix[0] & 0b11, 0b10);
        }
        let inner = Inner { ns: "lab-n1", name: "eth1", mac: Some("02:1d:cb:00:71:07") };
        let line = veth_pair("lab", &BTreeSet::new(), "u7", inner, false).unwrap().unwrap();
        assert_eq!(line, "link add u7 type veth peer name eth1 address 02:1d:cb:00:71:07 netns lab-n1");
        let plain = veth_pair("lab", &BTreeSet::new(), "out", Inner { ns: "o", name: "eth0", mac: None }, false);
        assert_eq!(plain.unwrap().unwrap(), "link add out type veth peer name eth0 netns o");
    }
}
