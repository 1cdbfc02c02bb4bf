//! The mesh as a picture: Graphviz DOT with each region a box, leaders marked, WireGuard
//! tunnels as bold edges labelled with their last handshake's age, and a region's members
//! joined to their leader by dashed edges (the private network). Every name is quoted and
//! escaped, though the grammar already keeps regions and node names plain.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use lct_core::record::Name;

use crate::model::{MeshPeer, Topology};
use crate::state::MeshState;

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn age(now: u64, handshake: Option<u64>) -> String {
    match handshake {
        None => "no handshake".into(),
        Some(t) => format!("{}s ago", now.saturating_sub(t)),
    }
}

/// The DOT text of `state`, tunnels labelled from `peers` (none: no labels).
pub fn dot(state: &MeshState, peers: &[MeshPeer], now: u64) -> String {
    let mut regions: BTreeMap<&str, Vec<(&Name, &crate::state::Member)>> = BTreeMap::new();
    for (name, m) in &state.members {
        regions.entry(m.region.as_str()).or_default().push((name, m));
    }
    let leaders: BTreeSet<&Name> = state.leaders.values().collect();
    let mut out =
        String::from("digraph mesh {\n  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"sans-serif\"];\n");
    let _ = writeln!(
        out,
        "  label={};",
        quote(&format!("lct-mesh {} ({:?})", state.prefix, state.topology).to_lowercase())
    );
    for (i, (region, members)) in regions.iter().enumerate() {
        let _ = writeln!(out, "  subgraph cluster_{i} {{\n    label={};\n    style=rounded;", quote(region));
        for (name, m) in members {
            let lead = leaders.contains(name);
            let label = format!("{name}\\n{}{}", m.address, if lead { "\\nleader" } else { "" });
            let _ = writeln!(
                out,
                "    {} [label=\"{}\"{}];",
                quote(name.as_str()),
                label.replace('"', ""),
                if lead { ", penwidth=2, style=\"rounded,bold,filled\", fillcolor=\"#e8f0ff\"" } else { "" }
            );
        }
        out.push_str("  }\n");
    }
    // Tunnels, once per pair, labelled with the fresher side's handshake.
    let mut tunnels: BTreeMap<(&Name, &Name), Option<u64>> = BTreeMap::new();
    for p in peers {
        let Some(peer) = &p.peer else { continue };
        let pair = if p.node <= *peer { (&p.node, peer) } else { (peer, &p.node) };
        let seen = tunnels.entry(pair).or_insert(None);
        *seen = (*seen).max(p.latest_handshake);
    }
    if peers.is_empty() {
        // No status asked: the planned tunnels.
        let ends: Vec<&Name> = match state.topology {
            Topology::Leader => leaders.iter().copied().collect(),
            Topology::Full => state.members.keys().collect(),
        };
        for (i, a) in ends.iter().enumerate() {
            for b in &ends[i + 1..] {
                tunnels.insert((a, b), None);
            }
        }
    }
    for ((a, b), handshake) in &tunnels {
        let label = if peers.is_empty() { "wg".to_string() } else { age(now, *handshake) };
        let _ = writeln!(
            out,
            "  {} -> {} [dir=both, penwidth=2, label={}];",
            quote(a.as_str()),
            quote(b.as_str()),
            quote(&label)
        );
    }
    if state.topology == Topology::Leader {
        for (region, leader) in &state.leaders {
            for (name, _) in regions.get(region.as_str()).into_iter().flatten().filter(|(n, _)| *n != leader) {
                let _ = writeln!(
                    out,
                    "  {} -> {} [style=dashed, arrowhead=none, color=gray];",
                    quote(name.as_str()),
                    quote(leader.as_str())
                );
            }
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Member;

    #[test]
    fn regions_are_boxes_and_tunnels_carry_ages() {
        let mut s = MeshState::new("100.64.0.0/24".parse().unwrap(), Topology::Leader, 51820);
        for (i, (n, r)) in [("a-1", "a"), ("a-2", "a"), ("b-1", "b")].iter().enumerate() {
            s.members.insert(
                n.parse().unwrap(),
                Member {
                    address: format!("100.64.0.{}", i + 1).parse().unwrap(),
                    public_key: None,
                    region: r.to_string(),
                    local_interface: None,
                    endpoint: None,
                },
            );
        }
        s.leaders.insert("a".into(), "a-1".parse().unwrap());
        s.leaders.insert("b".into(), "b-1".parse().unwrap());
        let planned = dot(&s, &[], 100);
        assert!(planned.contains("subgraph cluster_0 {\n    label=\"a\";"), "{planned}");
        assert!(planned.contains("\"a-1\" -> \"b-1\" [dir=both, penwidth=2, label=\"wg\"]"), "{planned}");
        assert!(planned.contains("\"a-2\" -> \"a-1\" [style=dashed"), "{planned}");
        assert!(planned.contains("leader"));
        let peer = MeshPeer {
            node: "b-1".parse().unwrap(),
            peer: Some("a-1".parse().unwrap()),
            public_key: "k".into(),
            endpoint: None,
            allowed_ips: vec![],
            latest_handshake: Some(90),
            rx_bytes: 1,
            tx_bytes: 1,
        };
        assert!(dot(&s, &[peer], 100).contains("\"a-1\" -> \"b-1\" [dir=both, penwidth=2, label=\"10s ago\"]"));
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c d\"");
    }
}
