//! The fallback for hosts without nf_tables: the same ruleset as iptables/ip6tables rules in
//! a chain of lct's own (`LCT`, jumped to from the first rule of `INPUT`).
//!
//! **Not atomic**: iptables has no transactions across commands. The new rules are built in
//! a second chain (`LCT-NEW`) while the old one still filters; one inserted jump switches
//! traffic over, then the old chain is removed and the new one renamed. Between the two
//! jumps both chains are in place, the new one first. iptables has no sets either: one rule
//! per peer and port.
//!
//! The metadata service is kept root's here too: a chain `LCT-OUT`, jumped to from `OUTPUT`,
//! drops what users other than root send it (`-m owner ! --uid-owner 0`).

use std::io;

use lct_core::record::{PortSpec, Protocol};

use crate::model::Mode;
use crate::report::Applied;
use crate::ruleset::{METADATA_V4, METADATA_V6, Ruleset};
use lct_core::prefix::Prefix;

const CHAIN: &str = "LCT";
const NEW_CHAIN: &str = "LCT-NEW";
const OUT_CHAIN: &str = "LCT-OUT";
const NEW_OUT_CHAIN: &str = "LCT-OUT-NEW";

fn ipt(v6: bool) -> io::Result<iptables::IPTables> {
    iptables::new(v6).map_err(|e| io::Error::other(format!("iptables (scripts/setup installs it): {e}")))
}

fn err(e: Box<dyn std::error::Error>) -> io::Error {
    io::Error::other(e.to_string())
}

/// The rules of one family, as iptables arguments.
pub fn rules(rs: &Ruleset, v6: bool) -> Vec<String> {
    let mut out =
        vec!["-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT".to_string(), "-i lo -j ACCEPT".to_string()];
    if rs.mode == Mode::DefaultDeny {
        out.push(if v6 { "-p ipv6-icmp -j ACCEPT" } else { "-p icmp -j ACCEPT" }.to_string());
    }
    let ssh = PortSpec { first: rs.ssh_port, last: rs.ssh_port, protocol: Protocol::Tcp };
    for c in rs.admin_cidrs.iter().filter(|c| c.is_ipv6() == v6) {
        out.push(format!("-s {c} {} -m comment --comment ssh-failsafe -j ACCEPT", port(&ssh)));
    }
    for r in &rs.rules {
        let peers: Vec<String> = if v6 {
            r.peers_v6.iter().map(|a| format!("{a}/128")).collect()
        } else {
            r.peers_v4.iter().map(|a| format!("{a}/32")).collect()
        };
        let cidrs = r.cidrs.iter().filter(|c: &&Prefix| c.is_ipv6() == v6).map(|c| c.to_string());
        let sources: Vec<String> = peers.into_iter().chain(cidrs).collect();
        for p in &r.ports {
            for s in &sources {
                out.push(format!("-s {s} {} -j ACCEPT", port(p)));
            }
        }
    }
    match rs.mode {
        Mode::ManagedPorts => out.extend(rs.managed.iter().map(|p| format!("{} -j DROP", port(p)))),
        Mode::DefaultDeny => out.push("-j DROP".to_string()),
    }
    out
}

/// The rules of lct's output chain: the metadata service is root's.
pub fn output_rules(v6: bool) -> Vec<String> {
    let addresses: Vec<String> = if v6 {
        METADATA_V6.iter().map(|a| format!("{a}/128")).collect()
    } else {
        METADATA_V4.iter().map(|a| format!("{a}/32")).collect()
    };
    addresses
        .iter()
        .map(|a| format!("-d {a} -m owner ! --uid-owner 0 -m comment --comment metadata-root-only -j DROP"))
        .collect()
}

fn port(p: &PortSpec) -> String {
    let proto = match p.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    if p.first == p.last {
        format!("-p {proto} --dport {}", p.first)
    } else {
        format!("-p {proto} --dport {}:{}", p.first, p.last)
    }
}

/// Applies the ruleset with iptables and ip6tables.
pub fn apply(rs: &Ruleset) -> io::Result<()> {
    for v6 in [false, true] {
        let t = ipt(v6)?;
        switch_over(&t, "INPUT", CHAIN, NEW_CHAIN, &rules(rs, v6))?;
        switch_over(&t, "OUTPUT", OUT_CHAIN, NEW_OUT_CHAIN, &output_rules(v6))?;
    }
    Ok(())
}

/// Builds `rules` in `new`, jumps to it from `hook` first, then replaces `chain` with it.
fn switch_over(t: &iptables::IPTables, hook: &str, chain: &str, new: &str, rules: &[String]) -> io::Result<()> {
    if t.chain_exists("filter", new).map_err(err)? {
        let _ = t.delete_all("filter", hook, &format!("-j {new}"));
        t.flush_chain("filter", new).map_err(err)?;
    } else {
        t.new_chain("filter", new).map_err(err)?;
    }
    for rule in rules {
        t.append("filter", new, rule).map_err(err)?;
    }
    // Switch over: the new chain first, then the old one out.
    t.insert("filter", hook, &format!("-j {new}"), 1).map_err(err)?;
    remove_chain(t, hook, chain)?;
    t.rename_chain("filter", new, chain).map_err(err)?;
    Ok(())
}

fn remove_chain(t: &iptables::IPTables, hook: &str, chain: &str) -> io::Result<bool> {
    if !t.chain_exists("filter", chain).map_err(err)? {
        return Ok(false);
    }
    while t.exists("filter", hook, &format!("-j {chain}")).map_err(err)? {
        t.delete("filter", hook, &format!("-j {chain}")).map_err(err)?;
    }
    t.flush_chain("filter", chain).map_err(err)?;
    t.delete_chain("filter", chain).map_err(err)?;
    Ok(true)
}

/// Removes lct's chains and jumps; `false` if there were none.
pub fn remove() -> io::Result<bool> {
    let mut any = false;
    for v6 in [false, true] {
        let t = ipt(v6)?;
        any |= remove_chain(&t, "INPUT", CHAIN)?;
        any |= remove_chain(&t, "INPUT", NEW_CHAIN)?;
        any |= remove_chain(&t, "OUTPUT", OUT_CHAIN)?;
        any |= remove_chain(&t, "OUTPUT", NEW_OUT_CHAIN)?;
    }
    Ok(any)
}

/// Where the iptables backend remembers what it applied (beside the nft backend's memory).
fn memory_path() -> io::Result<std::path::PathBuf> {
    Ok(crate::nft::memory_path()?.with_extension("iptables.json"))
}

/// What the iptables backend last applied in this namespace.
pub fn last_applied() -> Option<Ruleset> {
    serde_json::from_slice(&std::fs::read(memory_path().ok()?).ok()?).ok()
}

/// Applies with the iptables backend and remembers it (for `--kill-established`).
pub fn sync(rs: &Ruleset) -> io::Result<Applied> {
    if last_applied().as_ref() == Some(rs) {
        return Ok(Applied::Unchanged);
    }
    apply(rs)?;
    let path = memory_path()?;
    std::fs::create_dir_all(path.parent().expect("has parent"))?;
    let bytes = serde_json::to_vec(rs).map_err(io::Error::other)?;
    lct_core::fsutil::atomic_write(&path, &bytes, 0o600)?;
    Ok(Applied::Table)
}

/// Removes the iptables backend's chains and forgets them.
pub fn remove_and_forget() -> io::Result<bool> {
    let removed = remove()?;
    match std::fs::remove_file(memory_path()?) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_mirror_the_nft_table() {
        let rs: Ruleset = serde_json::from_value(serde_json::json!({
            "node": "zk-1", "cluster": "zk", "mode": "managed-ports", "ssh_port": 22,
            "admin_cidrs": ["192.0.2.0/24"], "managed": ["2181/tcp", "2888-3888/tcp"],
            "rules": [{"name": "r0", "comment": "x", "ports": ["2181/tcp"],
                       "peers_v4": ["192.168.128.3"], "peers_v6": ["2001:db8::3"], "cidrs": ["10.0.0.0/8"]}]
        }))
        .unwrap();
        let v4 = rules(&rs, false);
        assert_eq!(
            v4[2..],
            [
                "-s 192.0.2.0/24 -p tcp --dport 22 -m comment --comment ssh-failsafe -j ACCEPT",
                "-s 192.168.128.3/32 -p tcp --dport 2181 -j ACCEPT",
                "-s 10.0.0.0/8 -p tcp --dport 2181 -j ACCEPT",
                "-p tcp --dport 2181 -j DROP",
                "-p tcp --dport 2888:3888 -j DROP",
            ]
        );
        let v6 = rules(&rs, true);
        assert!(v6.contains(&"-s 2001:db8::3/128 -p tcp --dport 2181 -j ACCEPT".to_string()));
        assert!(!v6.iter().any(|r| r.contains("192.0.2.0")));
        assert_eq!(
            output_rules(false),
            ["-d 169.254.169.254/32 -m owner ! --uid-owner 0 -m comment --comment metadata-root-only -j DROP"]
        );
        assert_eq!(output_rules(true).len(), 2);
    }
}
