//! Applying a [`Ruleset`] to nf_tables over netlink, in-process (no `nft` process).
//!
//! Only the `inet lct` table is ever touched. A full apply is one batch — add the table,
//! delete it, add it again with its sets, chain and rules — which the kernel commits
//! atomically: every packet sees the old table or the new one. When only membership changed
//! (same structure, same ruleset generation as after our last apply) the batch adds and
//! deletes set elements only.

use std::collections::BTreeSet;
use std::ffi::{CString, c_char};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nftnl::expr::{Bitwise, Cmp, CmpOp, Meta};
use nftnl::nftnl_sys::{self as sys, libc};
use nftnl::set::{Set, SetKey};
use nftnl::{Batch, Chain, FinalizedBatch, Hook, MsgType, Policy, ProtoFamily, Rule, Table, nft_expr};

use crate::model::Mode;
use crate::ruleset::{CHAIN, Ruleset, TABLE};
use lct_core::prefix::Prefix;
use lct_core::record::{PortSpec, Protocol};

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "applied")]
pub enum Applied {
    /// Nothing differed.
    Unchanged,
    /// Only set elements were added and removed.
    Elements { added: usize, removed: usize },
    /// The whole table was replaced.
    Table,
}

fn cstring(s: &str) -> CString {
    CString::new(s).expect("lct names have no NUL")
}

/// Replaces the whole `inet lct` table with `rs` in one atomic batch: where there is no
/// such table yet, the batch only adds (see [`Netlink`] for why that matters), and should the
/// table appear meanwhile, that batch is refused and the replacing one sent.
pub fn apply_table(nl: &Netlink, rs: &Ruleset) -> io::Result<()> {
    if !nl.table_exists()? {
        match build_table(nl, rs, false) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            done => return done,
        }
    }
    build_table(nl, rs, true)
}

/// With `replace`, the batch adds the table, deletes it and builds it anew (one transaction,
/// so the delete cannot fail on a missing table); without, it creates the table, and the
/// kernel refuses the batch if it exists.
fn build_table(nl: &Netlink, rs: &Ruleset, replace: bool) -> io::Result<()> {
    let table = Table::new(cstring(TABLE), ProtoFamily::Inet);
    let mut batch = Batch::new();
    if replace {
        batch.add(&table, MsgType::Add);
        batch.add(&table, MsgType::Del);
        batch.add(&table, MsgType::Add);
    } else {
        batch.add(&NewTable::new(TABLE, ProtoFamily::Inet), MsgType::Add);
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
    nl.send(&batch.finalize())
}

/// A table to create only where it does not exist (`NLM_F_EXCL`, which nftnl's `Table` does
/// not set): a batch that builds the table from nothing must not append to one that exists.
struct NewTable(std::ptr::NonNull<sys::nftnl_table>, ProtoFamily);

impl NewTable {
    fn new(name: &str, family: ProtoFamily) -> NewTable {
        let name = cstring(name);
        // SAFETY: a table object of our own, filled with copies of the name and family.
        unsafe {
            let raw = std::ptr::NonNull::new(sys::nftnl_table_alloc()).expect("allocation");
            sys::nftnl_table_set_str(raw.as_ptr(), sys::NFTNL_TABLE_NAME as u16, name.as_ptr());
            sys::nftnl_table_set_u32(raw.as_ptr(), sys::NFTNL_TABLE_FAMILY as u16, family as u32);
            NewTable(raw, family)
        }
    }
}

// SAFETY: writes one NEWTABLE message into the buffer the batch provides, as nftnl's own
// `Table` does, with the flags that make it exclusive.
unsafe impl nftnl::NlMsg for NewTable {
    unsafe fn write(&self, buf: *mut libc::c_void, seq: u32, _: MsgType) {
        let flags = libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL;
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
pub fn delete_table() -> io::Result<bool> {
    let nl = Netlink::open()?;
    if !nl.table_exists()? {
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

/// A receive buffer aligned for `nlmsghdr`, as libmnl requires.
struct NlBuffer(Vec<u64>);

impl NlBuffer {
    fn new() -> Self {
        NlBuffer(vec![0u64; (nftnl::nft_nlmsg_maxsize() as usize).div_ceil(8).max(8192)])
    }
    fn bytes(&mut self) -> &mut [u8] {
        let len = self.0.len() * 8;
        // SAFETY: u64 storage viewed as bytes; alignment only grows.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), len) }
    }
}

/// A netfilter netlink socket, one per sync. The kernel frees what a commit replaced or
/// deleted only after an RCU grace period, in a worker, and makes whoever next closes a
/// netfilter socket wait for that worker (about 20 ms here): so a sync opens one socket and
/// closes it once, and a batch that only adds (a table built where there was none, peers
/// joining) leaves nothing to wait for.
pub struct Netlink {
    socket: mnl::Socket,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open a netfilter netlink socket (root, or CAP_NET_ADMIN, needed): {e}"),
            )
        })?;
        grow_receive_buffer(&socket);
        Ok(Netlink { socket })
    }

    /// Sends a batch and checks every acknowledgement; the kernel applies all of it or nothing.
    fn send(&self, batch: &FinalizedBatch) -> io::Result<()> {
        let socket = &self.socket;
        let portid = socket.portid();
        send_in_one_message(socket, batch)?;
        let mut buffer = NlBuffer::new();
        let mut expected = batch.sequence_numbers();
        while !expected.is_empty() {
            for message in socket.recv(buffer.bytes())? {
                let message = message?;
                let seq = expected.next().ok_or_else(|| io::Error::other("unexpected netlink acknowledgement"))?;
                mnl::cb_run(message, seq, portid)
                    .map_err(|e| io::Error::new(e.kind(), format!("nf_tables refused the batch: {e}")))?;
            }
        }
        Ok(())
    }

    /// The ruleset generation: the kernel bumps it on every change to any table.
    pub fn generation(&self) -> io::Result<u32> {
        let socket = &self.socket;
        let portid = socket.portid();
        let seq = 1;
        let mut request = NlBuffer::new();
        let len = unsafe {
            let nlh = sys::nftnl_nlmsg_build_hdr(
                request.bytes().as_mut_ptr().cast::<c_char>(),
                libc::NFT_MSG_GETGEN as u16,
                ProtoFamily::Unspec as u16,
                libc::NLM_F_ACK as u16,
                seq,
            );
            (*nlh).nlmsg_len as usize
        };
        socket.send(&request.bytes()[..len])?;
        let mut buffer = NlBuffer::new();
        let mut id: Option<u32> = None;
        // Read up to the acknowledgement that follows the answer: the socket serves the
        // next request of this sync, which must not find it waiting.
        loop {
            let n = socket.recv_raw(buffer.bytes())?;
            if let mnl::CbResult::Stop = mnl::cb_run2(&buffer.bytes()[..n], seq, portid, gen_cb, &mut id)? {
                break;
            }
        }
        id.ok_or_else(|| io::Error::other("no ruleset generation in the kernel's answer"))
    }

    /// Whether the `inet lct` table exists.
    pub fn table_exists(&self) -> io::Result<bool> {
        let socket = &self.socket;
        let portid = socket.portid();
        let seq = 1;
        let request = nftnl::table::get_tables_nlmsg(seq);
        // The helper leaves the buffer at full size; send only the message.
        let len = u32::from_ne_bytes(request[..4].try_into().expect("4 bytes")) as usize;
        socket.send(&request[..len])?;
        let mut tables = std::collections::HashSet::new();
        let mut buffer = NlBuffer::new();
        loop {
            let n = socket.recv_raw(buffer.bytes())?;
            if let mnl::CbResult::Stop =
                mnl::cb_run2(&buffer.bytes()[..n], seq, portid, nftnl::table::get_tables_cb, &mut tables)?
            {
                break;
            }
        }
        // Tables of every family come back; ours is the only one named so in `inet` we
        // create, and lct never creates another of that name.
        Ok(tables.contains(&cstring(TABLE)))
    }
}

/// Sends every page of a batch in one `sendmsg`: the kernel processes a batch only within one
/// message, so a batch sent page by page (as `mnl::Socket::send_all` does) loses its begin
/// marker past the first page and is refused. The send buffer is raised to fit it, as `nft`
/// does.
fn send_in_one_message(socket: &mnl::Socket, batch: &FinalizedBatch) -> io::Result<()> {
    let pages: Vec<&[u8]> = batch.iter().collect();
    let total: usize = pages.iter().map(|p| p.len()).sum();
    let fd = unsafe { mnl::mnl_sys::mnl_socket_get_fd(socket.as_raw_socket()) };
    set_buffer(fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, total + (1 << 16));
    let mut iov: Vec<libc::iovec> =
        pages.iter().map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() }).collect();
    // SAFETY: a zeroed sockaddr_nl is valid; pid 0 is the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut kernel as *mut libc::sockaddr_nl).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as u32;
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    // SAFETY: sendmsg on our own socket with a well-formed msghdr.
    let sent = unsafe { libc::sendmsg(fd, &msg, 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    if sent as usize != total {
        return Err(io::Error::other(format!("netlink took {sent} of {total} bytes")));
    }
    Ok(())
}

/// Sets a socket buffer size, forcing it past the system limit where allowed (root).
fn set_buffer(fd: libc::c_int, force: libc::c_int, plain: libc::c_int, size: usize) {
    let size = size.min(libc::c_int::MAX as usize) as libc::c_int;
    for opt in [force, plain] {
        // SAFETY: setsockopt on our own socket with a c_int option value.
        let ok = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        } == 0;
        if ok {
            break;
        }
    }
}

/// Large batches (10,000+ elements) bring as many acknowledgements back at once.
fn grow_receive_buffer(socket: &mnl::Socket) {
    let fd = unsafe { mnl::mnl_sys::mnl_socket_get_fd(socket.as_raw_socket()) };
    set_buffer(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, 8 << 20);
}

fn gen_cb(header: &libc::nlmsghdr, id: &mut Option<u32>) -> libc::c_int {
    // SAFETY: libnftnl parses the message the kernel sent into an object we free.
    unsafe {
        let g = sys::nftnl_gen_alloc();
        if sys::nftnl_gen_nlmsg_parse(header, g) >= 0 {
            *id = Some(sys::nftnl_gen_get_u32(g, sys::NFTNL_GEN_ID as u16));
        }
        sys::nftnl_gen_free(g);
    }
    1 // MNL_CB_OK
}

/// What was last applied in this network namespace, and the generation right after.
#[derive(serde::Serialize, serde::Deserialize)]
struct LastApplied {
    generation: u32,
    ruleset: Ruleset,
    /// Per rule, how many IPv4 and IPv6 elements its sets were sized for at the last full apply.
    capacity: Vec<[u32; 2]>,
}

/// The first line of a memory file, naming its format.
const MEMORY_FORMAT: &[u8] = b"lct-fw memory 2\n";

impl LastApplied {
    /// The memory file: a line naming the format, a JSON line with everything but the peers,
    /// then each rule's IPv4 and IPv6 peers as a count (u32, little-endian) and the raw
    /// addresses in order. 10,000 peers are read and written in microseconds; as JSON
    /// strings they took a millisecond, half of an element-only sync.
    fn encode(generation: u32, ruleset: &Ruleset, capacity: &[[u32; 2]]) -> Vec<u8> {
        let without_peers = Ruleset {
            rules: ruleset
                .rules
                .iter()
                .map(|r| crate::Rule {
                    name: r.name.clone(),
                    comment: r.comment.clone(),
                    ports: r.ports.clone(),
                    peers_v4: BTreeSet::new(),
                    peers_v6: BTreeSet::new(),
                    cidrs: r.cidrs.clone(),
                })
                .collect(),
            node: ruleset.node.clone(),
            cluster: ruleset.cluster.clone(),
            mode: ruleset.mode,
            ssh_port: ruleset.ssh_port,
            admin_cidrs: ruleset.admin_cidrs.clone(),
            managed: ruleset.managed.clone(),
        };
        let header = LastApplied { generation, ruleset: without_peers, capacity: capacity.to_vec() };
        let peers: usize = ruleset.rules.iter().map(|r| r.peers_v4.len() * 4 + r.peers_v6.len() * 16 + 8).sum();
        let mut out = Vec::with_capacity(MEMORY_FORMAT.len() + 1024 + peers);
        out.extend_from_slice(MEMORY_FORMAT);
        serde_json::to_writer(&mut out, &header).expect("serializes");
        out.push(b'\n');
        for rule in &ruleset.rules {
            out.extend_from_slice(&(rule.peers_v4.len() as u32).to_le_bytes());
            rule.peers_v4.iter().for_each(|a| out.extend_from_slice(&a.octets()));
            out.extend_from_slice(&(rule.peers_v6.len() as u32).to_le_bytes());
            rule.peers_v6.iter().for_each(|a| out.extend_from_slice(&a.octets()));
        }
        out
    }

    /// Reads what [`encode`](Self::encode) wrote; `None` for anything else (an older format,
    /// a torn or foreign file), which makes the next sync replace the whole table.
    fn decode(bytes: &[u8]) -> Option<LastApplied> {
        let rest = bytes.strip_prefix(MEMORY_FORMAT)?;
        let end = rest.iter().position(|&b| b == b'\n')?;
        let mut last: LastApplied = serde_json::from_slice(&rest[..end]).ok()?;
        let mut rest = &rest[end + 1..];
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            rest = tail;
            Some(head)
        };
        for rule in &mut last.ruleset.rules {
            let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let raw = take(count.checked_mul(4)?)?;
            rule.peers_v4 = sorted(raw.chunks_exact(4).map(|a| Ipv4Addr::from(<[u8; 4]>::try_from(a).expect("4"))))?;
            let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let raw = take(count.checked_mul(16)?)?;
            rule.peers_v6 = sorted(raw.chunks_exact(16).map(|a| Ipv6Addr::from(<[u8; 16]>::try_from(a).expect("16"))))?;
        }
        take(1).is_none().then_some(last)
    }

    fn read(path: &std::path::Path) -> Option<LastApplied> {
        LastApplied::decode(&std::fs::read(path).ok()?)
    }
}

/// A set from addresses in strictly ascending order (built in bulk); `None` if they are not.
fn sorted<T: Ord + Copy>(items: impl Iterator<Item = T>) -> Option<BTreeSet<T>> {
    let items: Vec<T> = items.collect();
    items.windows(2).all(|w| w[0] < w[1]).then(|| items.into_iter().collect())
}

/// Where the last applied ruleset of this network namespace is remembered: /run (gone with
/// the namespaces at reboot), keyed by the namespace's inode.
pub(crate) fn memory_path() -> io::Result<std::path::PathBuf> {
    lct_core::state::netns_runtime_file("fw", "json")
}

fn remember(path: &std::path::Path, generation: u32, ruleset: &Ruleset, capacity: &[[u32; 2]]) -> io::Result<()> {
    std::fs::create_dir_all(path.parent().expect("has parent"))?;
    lct_core::fsutil::atomic_write(path, &LastApplied::encode(generation, ruleset, capacity), 0o600)
}

/// Brings this host's `inet lct` table to `rs`: only the elements when nothing else changed
/// since our last apply (same structure, and no one touched the ruleset: same generation),
/// the whole table otherwise — which also repairs drift such as `nft flush ruleset`.
pub fn sync(rs: &Ruleset, full: bool) -> io::Result<Applied> {
    let nl = Netlink::open()?;
    let path = memory_path()?;
    let last = LastApplied::read(&path);
    // Any change to the ruleset by anyone bumps the generation, our own element updates
    // included (we record the generation after them); a different one means drift.
    let fits = |last: &LastApplied| {
        last.capacity.len() == rs.rules.len()
            && rs
                .rules
                .iter()
                .zip(&last.capacity)
                .all(|(r, [c4, c6])| r.peers_v4.len() as u64 <= *c4 as u64 && r.peers_v6.len() as u64 <= *c6 as u64)
    };
    let (applied, capacity) = match last {
        Some(last)
            if !full
                && last.ruleset.structure() == rs.structure()
                && last.ruleset.node == rs.node
                && fits(&last)
                && nl.generation()? == last.generation =>
        {
            match apply_elements(&nl, &last.ruleset, rs) {
                Ok(applied) => (applied, last.capacity),
                // What we remembered does not match the kernel after all (a namespace that
                // reuses a deleted one's inode, say): the whole table puts it right.
                Err(e) => {
                    tracing::warn!("element update refused ({e}); replacing the table");
                    apply_table(&nl, rs)?;
                    let capacity =
                        rs.rules.iter().map(|r| [capacity(r.peers_v4.len()), capacity(r.peers_v6.len())]).collect();
                    (Applied::Table, capacity)
                }
            }
        }
        _ => {
            apply_table(&nl, rs)?;
            let capacity = rs.rules.iter().map(|r| [capacity(r.peers_v4.len()), capacity(r.peers_v6.len())]).collect();
            (Applied::Table, capacity)
        }
    };
    if applied != Applied::Unchanged {
        remember(&path, nl.generation()?, rs, &capacity)?;
    }
    Ok(applied)
}

/// Forgets what was applied here (after the table was deleted).
pub fn forget() -> io::Result<()> {
    match std::fs::remove_file(memory_path()?) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The ruleset last applied in this network namespace, if lct-fw remembers one.
pub fn last_applied() -> Option<Ruleset> {
    Some(LastApplied::read(&memory_path().ok()?)?.ruleset)
}

/// Peer addresses admitted by `old` and by no rule of `new`.
pub fn removed_peers(old: &Ruleset, new: &Ruleset) -> Vec<IpAddr> {
    let kept: BTreeSet<IpAddr> = new
        .rules
        .iter()
        .flat_map(|r| r.peers_v4.iter().map(|a| IpAddr::V4(*a)).chain(r.peers_v6.iter().map(|a| IpAddr::V6(*a))))
        .collect();
    let gone: BTreeSet<IpAddr> = old
        .rules
        .iter()
        .flat_map(|r| r.peers_v4.iter().map(|a| IpAddr::V4(*a)).chain(r.peers_v6.iter().map(|a| IpAddr::V6(*a))))
        .filter(|a| !kept.contains(a))
        .collect();
    gone.into_iter().collect()
}

/// Deletes the conntrack entries of connections these addresses started, so their established
/// connections stop too (otherwise `ct state established` keeps admitting them). Returns how
/// many addresses had entries.
pub fn kill_connections(addresses: &[IpAddr]) -> io::Result<usize> {
    let mut killed = 0;
    for a in addresses {
        let family = if a.is_ipv4() { "ipv4" } else { "ipv6" };
        let out = std::process::Command::new("conntrack")
            .args(["-D", "-f", family, "-s", &a.to_string()])
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("conntrack (scripts/setup installs it): {e}")))?;
        // conntrack exits 1 when there was nothing to delete.
        match out.status.code() {
            Some(0) => killed += 1,
            Some(1) => {}
            _ => return Err(io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string())),
        }
    }
    Ok(killed)
}

/// A change waiting for `lct-fw confirm`, and what to go back to without it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Pending {
    token: String,
    previous: Option<LastApplied>,
}

fn pending_path() -> io::Result<std::path::PathBuf> {
    Ok(memory_path()?.with_extension("pending.json"))
}

/// Remembers what is applied now, before a change that must be confirmed; returns the token
/// the watchdog checks.
pub fn begin_confirm() -> io::Result<String> {
    let previous = LastApplied::read(&memory_path()?);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let token = format!("{:x}{:x}", std::process::id(), nanos);
    let path = pending_path()?;
    std::fs::create_dir_all(path.parent().expect("has parent"))?;
    let bytes = serde_json::to_vec(&Pending { token: token.clone(), previous }).map_err(io::Error::other)?;
    lct_core::fsutil::atomic_write(&path, &bytes, 0o600)?;
    Ok(token)
}

/// Confirms the pending change; `false` if there was none.
pub fn confirm() -> io::Result<bool> {
    match std::fs::remove_file(pending_path()?) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Called by the watchdog when the time is up: unless the change with `token` was
/// confirmed, puts back what was applied before it (or removes the table, if there was none).
pub fn roll_back(token: &str) -> io::Result<bool> {
    let path = pending_path()?;
    let Some(pending) = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Pending>(&b).ok()) else {
        return Ok(false);
    };
    if pending.token != token {
        return Ok(false); // a newer change is pending; its own watchdog decides
    }
    match pending.previous {
        Some(previous) => {
            let nl = Netlink::open()?;
            apply_table(&nl, &previous.ruleset)?;
            remember(&memory_path()?, nl.generation()?, &previous.ruleset, &previous.capacity)?;
        }
        None => {
            delete_table()?;
            forget()?;
        }
    }
    std::fs::remove_file(&path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ruleset() -> Ruleset {
        let mut rs: Ruleset = serde_json::from_str(
            r#"{"node":"n1","cluster":"zk","mode":"managed-ports","ssh_port":22,"admin_cidrs":["192.0.2.0/24"],
                "rules":[{"name":"r0","comment":"zk peers","ports":["2181/tcp"],"cidrs":["198.51.100.0/24"]},
                         {"name":"r1","comment":"empty","ports":["53/udp"]}],
                "managed":["2181/tcp","53/udp"]}"#,
        )
        .unwrap();
        rs.rules[0].peers_v4 = (0..5000u32).map(|i| Ipv4Addr::from(0x0a00_0000 + i * 7)).collect();
        rs.rules[0].peers_v6 = (0..300u128).map(|i| Ipv6Addr::from(0x2001_0db8 << 96 | i)).collect();
        rs
    }

    #[test]
    fn memory_round_trips_and_refuses_what_it_did_not_write() {
        let rs = ruleset();
        let bytes = LastApplied::encode(42, &rs, &[[8192, 1024], [1024, 1024]]);
        let back = LastApplied::decode(&bytes).expect("decodes");
        assert_eq!((back.generation, &back.ruleset, back.capacity), (42, &rs, vec![[8192, 1024], [1024, 1024]]));
        // Torn, extended, older, or out of order: not trusted.
        assert!(LastApplied::decode(&bytes[..bytes.len() - 3]).is_none());
        assert!(LastApplied::decode(&[&bytes[..], b"x"].concat()).is_none());
        assert!(LastApplied::decode(br#"{"generation":1}"#).is_none());
        let header_end = MEMORY_FORMAT.len() + bytes[MEMORY_FORMAT.len()..].iter().position(|&b| b == b'\n').unwrap();
        let mut swapped = bytes.clone();
        let first = header_end + 1 + 4;
        swapped[first..first + 4].copy_from_slice(&[10, 255, 255, 255]);
        assert!(LastApplied::decode(&swapped).is_none());
    }
}
