//! nf_tables' change notifications, as `nft monitor` reads them: a netfilter netlink socket
//! in the NFNLGRP_NFTABLES group, each commit's changes parsed into what changed (which
//! object of which table) and, from the NEWGEN message that closes the commit, who committed
//! it (the new generation, the process id and name).

use std::io;

use nftnl::nftnl_sys::libc;

use super::socket::{NlBuffer, set_buffer};

/// NEWGEN's attributes (linux/netfilter/nf_tables.h, `enum nft_gen_attributes`).
const NFTA_GEN_ID: u16 = 1;
const NFTA_GEN_PROC_PID: u16 = 2;
const NFTA_GEN_PROC_NAME: u16 = 3;
/// The other messages carry their table's name as attribute 1 (NFTA_TABLE_NAME,
/// NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE, NFTA_SET_ELEM_LIST_TABLE, ...), and
/// their own name as 2 (sets, elements' set, objects, flowtables), 3 (chains) or their chain
/// as 2 (rules).
const ATTR_TABLE: u16 = 1;
/// The kernel's own NFT_MSG_DESTROY* (6.3+) are notified as DEL*; known here all the same.
const NFT_MSG_DESTROY_FIRST: u16 = 26;
const NFT_MSG_DESTROY_LAST: u16 = 32;

/// One change of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `add` or `delete`.
    pub action: &'static str,
    /// `table`, `chain`, `rule`, `set`, `element`, `object` or `flowtable`.
    pub object: &'static str,
    /// The nfproto family (1 inet, 2 ip, 10 ip6, ...).
    pub family: u8,
    pub table: String,
    /// The object's name (a chain's, a set's), a rule's chain, an element's set.
    pub name: Option<String>,
    /// The netlink port id of the socket that sent the change (0: the kernel itself).
    pub port_id: u32,
}

impl Change {
    /// Whether the change is to the table `family`/`name`.
    pub fn is_to(&self, family: u8, table: &str) -> bool {
        self.family == family && self.table == table
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {} {}", self.action, self.object, family_name(self.family), self.table)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        Ok(())
    }
}

fn family_name(family: u8) -> &'static str {
    match family as i32 {
        libc::NFPROTO_INET => "inet",
        libc::NFPROTO_IPV4 => "ip",
        libc::NFPROTO_IPV6 => "ip6",
        libc::NFPROTO_ARP => "arp",
        libc::NFPROTO_BRIDGE => "bridge",
        libc::NFPROTO_NETDEV => "netdev",
        _ => "family?",
    }
}

/// The end of a commit: the generation it made and the process that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub generation: u32,
    pub pid: Option<u32>,
    pub process: Option<String>,
}

impl std::fmt::Display for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.pid, &self.process) {
            (Some(pid), Some(name)) => write!(f, "pid {pid} ({name})"),
            (Some(pid), None) => write!(f, "pid {pid}"),
            _ => write!(f, "an unnamed process"),
        }
    }
}

/// What the socket delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Change(Change),
    Commit(Commit),
    /// The kernel dropped notifications (the socket's buffer overflowed): anything may have
    /// changed.
    Lost,
}

/// A socket subscribed to nf_tables' notifications in this network namespace.
pub struct Monitor {
    socket: mnl::Socket,
    buffer: NlBuffer,
}

impl Monitor {
    pub fn open() -> io::Result<Monitor> {
        let socket = mnl::Socket::open(mnl::Bus::Netfilter).map_err(super::socket::not_opened)?;
        // Groups below 32 are a bit mask at bind time.
        socket.bind(1 << (libc::NFNLGRP_NFTABLES - 1), mnl::mnl_sys::MNL_SOCKET_AUTOPID)?;
        // A 10,000-peer table comes back as as many element notifications: room for them, so
        // that none is lost (and `Lost` stays the exception).
        set_buffer(socket_fd(&socket), libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, 32 << 20);
        Ok(Monitor { socket, buffer: NlBuffer::new() })
    }

    pub fn fd(&self) -> libc::c_int {
        socket_fd(&self.socket)
    }

    /// Waits for notifications, then returns them with every one already queued behind them
    /// (a commit arrives as several datagrams; a burst of commits is taken in one go).
    pub fn wait(&mut self) -> io::Result<Vec<Event>> {
        let mut events = Vec::new();
        self.receive(0, &mut events)?;
        while self.receive(libc::MSG_DONTWAIT, &mut events)? {}
        Ok(events)
    }

    /// One datagram into `events`; `false` when none was waiting (non-blocking).
    fn receive(&mut self, flags: libc::c_int, events: &mut Vec<Event>) -> io::Result<bool> {
        let fd = socket_fd(&self.socket);
        let bytes = self.buffer.bytes();
        loop {
            // SAFETY: recv into our own buffer, at most its length.
            let n = unsafe { libc::recv(fd, bytes.as_mut_ptr().cast(), bytes.len(), flags) };
            if n >= 0 {
                events.extend(parse(&bytes[..n as usize]));
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(false),
                Some(libc::ENOBUFS) => {
                    events.push(Event::Lost);
                    return Ok(true);
                }
                _ => return Err(e),
            }
        }
    }
}

fn socket_fd(socket: &mnl::Socket) -> libc::c_int {
    // SAFETY: the socket is open for as long as `socket` lives.
    unsafe { mnl::mnl_sys::mnl_socket_get_fd(socket.as_raw_socket()) }
}

/// The events of one datagram: its netlink messages, those of nf_tables parsed, others
/// (errors, done markers) skipped.
pub fn parse(mut bytes: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    while bytes.len() >= 16 {
        let len = u32::from_ne_bytes(bytes[0..4].try_into().expect("4")) as usize;
        if len < 16 || len > bytes.len() {
            break;
        }
        let kind = u16::from_ne_bytes(bytes[4..6].try_into().expect("2"));
        let port_id = u32::from_ne_bytes(bytes[12..16].try_into().expect("4"));
        if (kind >> 8) as i32 == libc::NFNL_SUBSYS_NFTABLES
            && let Some(event) = message(kind & 0xff, port_id, &bytes[16..len])
        {
            events.push(event);
        }
        bytes = &bytes[align(len).min(bytes.len())..];
    }
    events
}

/// One nf_tables message: `nfgenmsg` (family, version, resource id), then attributes.
fn message(kind: u16, port_id: u32, payload: &[u8]) -> Option<Event> {
    let family = *payload.first()?;
    let attrs = attributes(payload.get(4..)?);
    let text = |t: u16| {
        attrs
            .iter()
            .find(|(k, _)| *k == t)
            .map(|(_, v)| String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or(v)).into_owned())
    };
    let be32 = |t: u16| {
        attrs.iter().find(|(k, _)| *k == t).and_then(|(_, v)| Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?)))
    };
    if kind == libc::NFT_MSG_NEWGEN as u16 {
        return Some(Event::Commit(Commit {
            generation: be32(NFTA_GEN_ID)?,
            pid: be32(NFTA_GEN_PROC_PID),
            process: text(NFTA_GEN_PROC_NAME),
        }));
    }
    let destroyed = (NFT_MSG_DESTROY_FIRST..=NFT_MSG_DESTROY_LAST).contains(&kind);
    let (action, object, name_attr) = match kind as i32 {
        libc::NFT_MSG_NEWTABLE => ("add", "table", None),
        libc::NFT_MSG_DELTABLE => ("delete", "table", None),
        libc::NFT_MSG_NEWCHAIN => ("add", "chain", Some(3)),
        libc::NFT_MSG_DELCHAIN => ("delete", "chain", Some(3)),
        libc::NFT_MSG_NEWRULE => ("add", "rule", Some(2)),
        libc::NFT_MSG_DELRULE => ("delete", "rule", Some(2)),
        libc::NFT_MSG_NEWSET => ("add", "set", Some(2)),
        libc::NFT_MSG_DELSET => ("delete", "set", Some(2)),
        libc::NFT_MSG_NEWSETELEM => ("add", "element", Some(2)),
        libc::NFT_MSG_DELSETELEM => ("delete", "element", Some(2)),
        libc::NFT_MSG_NEWOBJ => ("add", "object", Some(2)),
        libc::NFT_MSG_DELOBJ => ("delete", "object", Some(2)),
        22 => ("add", "flowtable", Some(2)),    // NFT_MSG_NEWFLOWTABLE
        24 => ("delete", "flowtable", Some(2)), // NFT_MSG_DELFLOWTABLE
        _ if destroyed => ("delete", "object", None),
        _ => return None, // traces and answers to queries: not changes
    };
    Some(Event::Change(Change {
        action,
        object,
        family,
        table: text(ATTR_TABLE)?,
        name: name_attr.and_then(text),
        port_id,
    }))
}

/// The top-level attributes (type without its flag bits, value).
fn attributes(mut bytes: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff; // NLA_TYPE_MASK
        if len < 4 || len > bytes.len() {
            break;
        }
        out.push((kind, &bytes[4..len]));
        bytes = &bytes[align(len).min(bytes.len())..];
    }
    out
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(align(a.len()), 0);
        a
    }

    fn msg(kind: i32, family: u8, port_id: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = [vec![family, 0, 0, 0]].iter().chain(attrs).flatten().copied().collect();
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&(((libc::NFNL_SUBSYS_NFTABLES as u16) << 8) | kind as u16).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&port_id.to_ne_bytes());
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn a_commit_parses_into_changes_and_who_made_it() {
        let datagram = [
            msg(libc::NFT_MSG_DELRULE, 1, 77, &[attr(1, b"lct\0"), attr(2, b"input\0"), attr(3, &5u64.to_be_bytes())]),
            msg(libc::NFT_MSG_DELTABLE, 1, 77, &[attr(1, b"lct\0"), attr(2, &0u32.to_be_bytes())]),
            msg(
                libc::NFT_MSG_NEWGEN,
                0,
                77,
                &[attr(1, &42u32.to_be_bytes()), attr(2, &4321u32.to_be_bytes()), attr(3, b"nft\0")],
            ),
        ]
        .concat();
        let events = parse(&datagram);
        let Event::Change(rule) = &events[0] else { panic!("{events:?}") };
        assert_eq!(rule.to_string(), "delete rule inet lct input");
        assert!(rule.is_to(libc::NFPROTO_INET as u8, "lct") && rule.port_id == 77);
        let Event::Change(table) = &events[1] else { panic!("{events:?}") };
        assert_eq!(table.to_string(), "delete table inet lct");
        assert_eq!(events[2], Event::Commit(Commit { generation: 42, pid: Some(4321), process: Some("nft".into()) }));
        // Torn input ends the parse; it never panics.
        for cut in 0..datagram.len() {
            let _ = parse(&datagram[..cut]);
        }
    }
}
