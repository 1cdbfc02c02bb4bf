//! The batches: a whole `inet lct` table built in one transaction, or only the set elements
//! that changed; the matches a rule is made of.

use std::collections::BTreeSet;
use std::ffi::{CString, c_char};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nftnl::expr::{Bitwise, Cmp, CmpOp, Meta};
use nftnl::nftnl_sys::{self as sys, libc};
use nftnl::set::{Set, SetKey};
use nftnl::{Batch, Chain, FinalizedBatch, Hook, MsgType, Policy, ProtoFamily, Rule, Table, nft_expr};

use crate::model::Mode;
use crate::ruleset::{CHAIN, METADATA_V4, METADATA_V6, OUTPUT_CHAIN, Ruleset, TABLE};
use lct_core::prefix::Prefix;
use lct_core::record::{PortSpec, Protocol};

use super::socket::{Netlink, QUERY_SEQ};
use crate::report::Applied;

fn cstring(s: &str) -> CString {
    CString::new(s).expect("lct names have no NUL")
}

/// Replaces the whole `inet lct` table with `rs` in one atomic batch: where there is no
/// such table yet, the batch only adds (see [`Netlink`] for why that matters), and should the
/// table appear meanwhile, that batch is refused and the replacing one sent.
/// With `owned`, the table is made the socket's own (see [`OWNED`]).
pub fn apply_table(nl: &Netlink, rs: &Ruleset, owned: bool) -> io::Result<()> {
    if !table_exists(nl)? {
        match nl.send(&table_batch(rs, false, owned)?) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            done => return done,
        }
    }
    nl.send(&table_batch(rs, true, owned)?)
}

/// The table flags (linux/netfilter/nf_tables.h) that make a table its netlink socket's own:
/// `NFT_TABLE_F_OWNER` (Linux 5.12): other sockets' changes to it are refused (EPERM) and
/// `nft flush ruleset` passes it by; `NFT_TABLE_F_PERSIST` (6.9): it stays, unowned, when
/// its owner's socket closes, until a batch from another socket replaces it (a new owner, or
/// none). Without PERSIST an owned table dies with its owner, so lct-fw owns it only with both.
pub const OWNED: u32 = 0x2 | 0x4;

/// Both batches of a table, built ahead of time: `lct-fw watch` keeps them for the ruleset it
/// guards, so that putting the table back is one `sendmsg` and nothing before it.
pub(super) struct PreparedTable {
    create: FinalizedBatch,
    replace: FinalizedBatch,
}

impl PreparedTable {
    pub(super) fn new(rs: &Ruleset, owned: bool) -> io::Result<PreparedTable> {
        Ok(PreparedTable { create: table_batch(rs, false, owned)?, replace: table_batch(rs, true, owned)? })
    }

    /// Puts the table back: `gone` says the table is known to be missing (then the batch that
    /// only adds goes first, and the replacing one only if the table is there after all).
    pub(super) fn apply(&self, nl: &Netlink, gone: bool) -> io::Result<()> {
        if gone {
            match nl.send(&self.create) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                done => return done,
            }
        }
        nl.send(&self.replace)
    }
}

/// Whether the `inet lct` table exists.
pub(super) fn table_exists(nl: &Netlink) -> io::Result<bool> {
    let request = nftnl::table::get_tables_nlmsg(QUERY_SEQ);
    // The helper leaves the buffer at full size; send only the message.
    let len = u32::from_ne_bytes(request[..4].try_into().expect("4 bytes")) as usize;
    let mut tables = std::collections::HashSet::new();
    nl.query(&request[..len], nftnl::table::get_tables_cb, &mut tables)?;
    // Tables of every family come back; ours is the only one named so in `inet` we
    // create, and lct never creates another of that name.
    Ok(tables.contains(&cstring(TABLE)))
}

/// With `replace`, the batch adds the table, deletes it and builds it anew (one transaction,
/// so the delete cannot fail on a missing table); without, it creates the table, and the
/// kernel refuses the batch if it exists. With `owned`, the table built carries [`OWNED`]:
/// the replacing batch also takes over a table whose owner has gone (the first add, without
/// flags, leaves an existing table as it is; one owned by another socket refuses it: EPERM).
fn table_batch(rs: &Ruleset, replace: bool, owned: bool) -> io::Result<FinalizedBatch> {
    let table = Table::new(cstring(TABLE), ProtoFamily::Inet);
    let flags = if owned { OWNED } else { 0 };
    let mut batch = Batch::new();
    if replace {
        // Without flags (nftnl's `Table` sends flags 0): an owned or orphaned table refuses a
        // change of its flags (EOPNOTSUPP), but takes an add without them as a no-op.
        batch.add(&NewTable::new(TABLE, ProtoFamily::Inet, false, 0), MsgType::Add);
        batch.add(&table, MsgType::Del);
        batch.add(&NewTable::new(TABLE, ProtoFamily::Inet, false, flags), MsgType::Add);
    } else {
        batch.add(&NewTable::new(TABLE, ProtoFamily::Inet, true, flags), MsgType::Add);
    }

    let mut id = 1;
    let mut v4_sets = Vec::new();
    let mut v6_sets = Vec::new();
    let names: Vec<(CString, CString)> =
        rs.rules.iter().map(|r| (cstring(&format!("{}_v4", r.name)), cstring(&format!("{}_v6", r.name)))).collect();
    for (rule, (n4, n6)) in rs.rules.iter().zip(&names) {
        let mut s4: Set<Ipv4Addr> = Set::new_named(n4, id, &table, ProtoFamily::Inet);
        let mut s6: Set<Ipv6Addr> = Set::new_named(n6, id + 1, &table, ProtoFamily::Inet);
        id += 2;
        size_hint(&s4, rule.peers_v4.len());
        size_hint(&s6, rule.peers_v6.len());
        for a in &rule.peers_v4 {
            s4.add(a);
        }
        for a in &rule.peers_v6 {
            s6.add(a);
        }
        v4_sets.push(s4);
        v6_sets.push(s6);
    }
    for s in &v4_sets {
        batch.add(s, MsgType::Add);
        batch.add_iter(s.elems_iter(), MsgType::Add);
    }
    for s in &v6_sets {
        batch.add(s, MsgType::Add);
        batch.add_iter(s.elems_iter(), MsgType::Add);
    }

    let chain_name = cstring(CHAIN);
    let mut chain = Chain::new(&chain_name, &table);
    chain.set_hook(Hook::In, 0);
    chain.set_policy(if rs.mode == Mode::DefaultDeny { Policy::Drop } else { Policy::Accept });
    batch.add(&chain, MsgType::Add);

    let mut rules: Vec<Rule> = Vec::new();
    // Replies to what this host started, and connections already admitted, pass.
    let mut r = Rule::new(&chain);
    r.add_expr(&nft_expr!(ct state));
    let bits = (nftnl::expr::States::ESTABLISHED | nftnl::expr::States::RELATED).bits();
    r.add_expr(&Bitwise::new(bits, 0u32));
    r.add_expr(&Cmp::new(CmpOp::Neq, 0u32));
    r.add_expr(&nft_expr!(verdict accept));
    rules.push(r);
    // Loopback (its index is 1 in every namespace).
    let mut r = Rule::new(&chain);
    r.add_expr(&nft_expr!(meta iif));
    r.add_expr(&nft_expr!(cmp == 1u32));
    r.add_expr(&nft_expr!(verdict accept));
    rules.push(r);
    if rs.mode == Mode::DefaultDeny {
        for proto in [libc::IPPROTO_ICMP as u8, libc::IPPROTO_ICMPV6 as u8] {
            let mut r = Rule::new(&chain);
            r.add_expr(&nft_expr!(meta l4proto));
            r.add_expr(&nft_expr!(cmp == proto));
            r.add_expr(&nft_expr!(verdict accept));
            rules.push(r);
        }
    }
    // The failsafe: SSH from the admin prefixes, before anything that could drop it.
    let ssh = PortSpec { first: rs.ssh_port, last: rs.ssh_port, protocol: Protocol::Tcp };
    for cidr in &rs.admin_cidrs {
        let mut r = Rule::new(&chain);
        r.set_comment(c"ssh failsafe").map_err(io::Error::other)?;
        match_cidr(&mut r, cidr);
        match_port(&mut r, &ssh);
        r.add_expr(&nft_expr!(verdict accept));
        rules.push(r);
    }
    for (i, rule) in rs.rules.iter().enumerate() {
        for port in &rule.ports {
            let mut r = Rule::new(&chain);
            r.add_expr(&nft_expr!(meta nfproto));
            r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
            r.add_expr(&nft_expr!(payload ipv4 saddr));
            r.add_expr(&nft_expr!(lookup & v4_sets[i]));
            match_port(&mut r, port);
            r.add_expr(&nft_expr!(verdict accept));
            rules.push(r);

            let mut r = Rule::new(&chain);
            r.add_expr(&nft_expr!(meta nfproto));
            r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV6 as u8));
            r.add_expr(&nft_expr!(payload ipv6 saddr));
            r.add_expr(&nft_expr!(lookup & v6_sets[i]));
            match_port(&mut r, port);
            r.add_expr(&nft_expr!(verdict accept));
            rules.push(r);

            for cidr in &rule.cidrs {
                let mut r = Rule::new(&chain);
                match_cidr(&mut r, cidr);
                match_port(&mut r, port);
                r.add_expr(&nft_expr!(verdict accept));
                rules.push(r);
            }
        }
    }
    if rs.mode == Mode::ManagedPorts {
        for port in &rs.managed {
            let mut r = Rule::new(&chain);
            match_port(&mut r, port);
            r.add_expr(&nft_expr!(verdict drop));
            rules.push(r);
        }
    }
    for r in &rules {
        batch.add(r, MsgType::Add);
    }

    // The metadata service is root's: its user-data holds the node's secrets.
    let output_name = cstring(OUTPUT_CHAIN);
    let mut output = Chain::new(&output_name, &table);
    output.set_hook(Hook::Out, 0);
    output.set_policy(Policy::Accept);
    batch.add(&output, MsgType::Add);
    let mut root_only = Vec::new();
    for a in METADATA_V4 {
        let mut r = Rule::new(&output);
        r.add_expr(&nft_expr!(meta nfproto));
        r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
        r.add_expr(&nft_expr!(payload ipv4 daddr));
        r.add_expr(&nft_expr!(cmp == a));
        root_only.push(r);
    }
    for a in METADATA_V6 {
        let mut r = Rule::new(&output);
        r.add_expr(&nft_expr!(meta nfproto));
        r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV6 as u8));
        r.add_expr(&nft_expr!(payload ipv6 daddr));
        r.add_expr(&nft_expr!(cmp == a));
        root_only.push(r);
    }
    for r in &mut root_only {
        r.set_comment(c"metadata: root only").map_err(io::Error::other)?;
        r.add_expr(&nft_expr!(meta skuid));
        r.add_expr(&Cmp::new(CmpOp::Neq, 0u32));
        r.add_expr(&nft_expr!(verdict drop));
        batch.add(r, MsgType::Add);
    }
    Ok(batch.finalize())
}

/// A table to add with what nftnl's `Table` does not set: `exclusive` (`NLM_F_EXCL`), for a
/// batch that builds the table from nothing and must not append to one that exists, and
/// table flags ([`OWNED`]).
struct NewTable(std::ptr::NonNull<sys::nftnl_table>, ProtoFamily, bool);

impl NewTable {
    fn new(name: &str, family: ProtoFamily, exclusive: bool, flags: u32) -> NewTable {
        let name = cstring(name);
        // SAFETY: a table object of our own, filled with copies of the name and family.
        unsafe {
            let raw = std::ptr::NonNull::new(sys::nftnl_table_alloc()).expect("allocation");
            sys::nftnl_table_set_str(raw.as_ptr(), sys::NFTNL_TABLE_NAME as u16, name.as_ptr());
            sys::nftnl_table_set_u32(raw.as_ptr(), sys::NFTNL_TABLE_FAMILY as u16, family as u32);
            if flags != 0 {
                sys::nftnl_table_set_u32(raw.as_ptr(), sys::NFTNL_TABLE_FLAGS as u16, flags);
            }
            NewTable(raw, family, exclusive)
        }
    }
}

// SAFETY: writes one NEWTABLE message into the buffer the batch provides, as nftnl's own
// `Table` does, with the flags asked for.
unsafe impl nftnl::NlMsg for NewTable {
    unsafe fn write(&self, buf: *mut libc::c_void, seq: u32, _: MsgType) {
        let exclusive = if self.2 { libc::NLM_F_EXCL } else { 0 };
        let flags = libc::NLM_F_ACK | libc::NLM_F_CREATE | exclusive;
        unsafe {
            let header = sys::nftnl_nlmsg_build_hdr(
                buf.cast::<c_char>(),
                libc::NFT_MSG_NEWTABLE as u16,
                self.1 as u16,
                flags as u16,
                seq,
            );
            sys::nftnl_table_nlmsg_build_payload(header, self.0.as_ptr());
        }
    }
}

impl Drop for NewTable {
    fn drop(&mut self) {
        // SAFETY: allocated in `new`, freed once.
        unsafe { sys::nftnl_table_free(self.0.as_ptr()) };
    }
}

/// Adds and removes set elements so the sets of `old` (what the kernel holds) become those
/// of `new`. Both must have the same structure.
pub fn apply_elements(nl: &Netlink, old: &Ruleset, new: &Ruleset) -> io::Result<Applied> {
    let table = Table::new(cstring(TABLE), ProtoFamily::Inet);
    let mut batch = Batch::new();
    let (mut added, mut removed) = (0, 0);
    let mut keep4 = Vec::new();
    let mut keep6 = Vec::new();
    for (o, n) in old.rules.iter().zip(&new.rules) {
        let n4 = cstring(&format!("{}_v4", n.name));
        let n6 = cstring(&format!("{}_v6", n.name));
        let (add4, del4) = diff(&o.peers_v4, &n.peers_v4);
        let (add6, del6) = diff(&o.peers_v6, &n.peers_v6);
        added += add4.len() + add6.len();
        removed += del4.len() + del6.len();
        keep4.push((n4, add4, del4));
        keep6.push((n6, add6, del6));
    }
    if added + removed == 0 {
        return Ok(Applied::Unchanged);
    }
    let mut sets4 = Vec::new();
    for (name, add, del) in &keep4 {
        sets4.push((elements::<Ipv4Addr>(name, &table, add), elements::<Ipv4Addr>(name, &table, del)));
    }
    let mut sets6 = Vec::new();
    for (name, add, del) in &keep6 {
        sets6.push((elements::<Ipv6Addr>(name, &table, add), elements::<Ipv6Addr>(name, &table, del)));
    }
    // Deletions first: an address that leaves and comes back in one sync is re-added.
    for (add, del) in &sets4 {
        if let Some(d) = del {
            batch.add_iter(d.elems_iter(), MsgType::Del);
        }
        if let Some(a) = add {
            batch.add_iter(a.elems_iter(), MsgType::Add);
        }
    }
    for (add, del) in &sets6 {
        if let Some(d) = del {
            batch.add_iter(d.elems_iter(), MsgType::Del);
        }
        if let Some(a) = add {
            batch.add_iter(a.elems_iter(), MsgType::Add);
        }
    }
    nl.send(&batch.finalize())?;
    Ok(Applied::Elements { added, removed })
}

/// How many elements a set made for `n` may hold: room to grow, so membership changes stay
/// element-only; past it, the next sync replaces the table with a larger set.
pub fn capacity(n: usize) -> u32 {
    (n.saturating_mul(2)).max(1024).next_power_of_two().min(1 << 24) as u32
}

/// The capacities a whole table made for `rs` has, per rule (IPv4, IPv6).
pub fn capacities(rs: &Ruleset) -> Vec<[u32; 2]> {
    rs.rules.iter().map(|r| [capacity(r.peers_v4.len()), capacity(r.peers_v6.len())]).collect()
}

/// Tells the kernel how large the set will be, so it sizes its hash table once instead of
/// growing it element by element.
fn size_hint<K>(set: &Set<'_, K>, n: usize) {
    // SAFETY: the set object is ours and alive; NFTNL_SET_DESC_SIZE takes a u32.
    unsafe { sys::nftnl_set_set_u32(set.as_ptr().as_ptr(), sys::NFTNL_SET_DESC_SIZE as u16, capacity(n)) };
}

fn elements<'a, K: SetKey>(name: &CString, table: &'a Table, keys: &[K]) -> Option<Set<'a, K>> {
    if keys.is_empty() {
        return None;
    }
    let mut set: Set<K> = Set::new_named(name, 0, table, ProtoFamily::Inet);
    for k in keys {
        set.add(k);
    }
    Some(set)
}

fn diff<T: Ord + Copy>(old: &BTreeSet<T>, new: &BTreeSet<T>) -> (Vec<T>, Vec<T>) {
    (new.difference(old).copied().collect(), old.difference(new).copied().collect())
}

/// Deletes the `inet lct` table, if there is one.
pub(super) fn delete_table(nl: &Netlink) -> io::Result<bool> {
    if !table_exists(nl)? {
        return Ok(false);
    }
    let table = Table::new(cstring(TABLE), ProtoFamily::Inet);
    let mut batch = Batch::new();
    batch.add(&table, MsgType::Del);
    nl.send(&batch.finalize())?;
    Ok(true)
}

fn match_cidr(r: &mut Rule, cidr: &Prefix) {
    r.add_expr(&nft_expr!(meta nfproto));
    match cidr.addr() {
        IpAddr::V4(a) => {
            r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV4 as u8));
            r.add_expr(&nft_expr!(payload ipv4 saddr));
            let mask = cidr.mask_octets();
            r.add_expr(&Bitwise::new(&mask[..], &[0u8; 4][..]));
            r.add_expr(&nft_expr!(cmp == a));
        }
        IpAddr::V6(a) => {
            r.add_expr(&nft_expr!(cmp == libc::NFPROTO_IPV6 as u8));
            r.add_expr(&nft_expr!(payload ipv6 saddr));
            let mask = cidr.mask_octets();
            r.add_expr(&Bitwise::new(&mask[..], &[0u8; 16][..]));
            r.add_expr(&nft_expr!(cmp == a));
        }
    }
}

fn match_port(r: &mut Rule, port: &PortSpec) {
    r.add_expr(&Meta::L4Proto);
    match port.protocol {
        Protocol::Tcp => {
            r.add_expr(&nft_expr!(cmp == libc::IPPROTO_TCP as u8));
            r.add_expr(&nft_expr!(payload tcp dport));
        }
        Protocol::Udp => {
            r.add_expr(&nft_expr!(cmp == libc::IPPROTO_UDP as u8));
            r.add_expr(&nft_expr!(payload udp dport));
        }
    }
    // Ports are big-endian on the wire; the kernel compares bytes, so order is preserved.
    let first = port.first.to_be_bytes();
    let last = port.last.to_be_bytes();
    if port.first == port.last {
        r.add_expr(&Cmp::new(CmpOp::Eq, &first[..]));
    } else {
        r.add_expr(&Cmp::new(CmpOp::Gte, &first[..]));
        r.add_expr(&Cmp::new(CmpOp::Lte, &last[..]));
    }
}
