//! UDP: several sockets per address (SO_REUSEPORT, so every core serves), each served on a
//! thread of its own by batched receives and sends; the fast path answers without leaving
//! the thread, the rest goes to the runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::dispatch::answer;
use crate::fast::Class;
use crate::live::Live;
use crate::rrl::{RateLimit, Verdict};
use crate::transfer::Replies;

/// `count` UDP sockets bound to one address with SO_REUSEPORT: the kernel spreads queries
/// over them, and so over their threads. Blocking: each has a thread that waits in
/// `recvmmsg`.
pub fn udp_sockets(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    (0..count.max(1))
        .map(|_| {
            let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
            let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
            s.set_reuse_port(true)?;
            if addr.is_ipv6() {
                s.set_only_v6(true)?;
            }
            s.bind(&addr.into())?;
            Ok(s.into())
        })
        .collect()
}

/// How many datagrams one system call receives or sends.
const BATCH: usize = 32;

/// Serves one UDP socket until the process ends, on a thread of its own: datagrams are
/// received and answered in batches (`recvmmsg`/`sendmmsg`, as NSD does), the common query
/// from the fast path's table without leaving the thread; everything else (other queries,
/// updates, transfers) goes to the runtime, which answers on the same socket. On a
/// `public` socket every query gets the external view ([`crate::served::Served::view`]).
pub fn udp_batch_loop(
    socket: std::net::UdpSocket,
    public: bool,
    live: Live,
    rrl: Option<Arc<RateLimit>>,
    runtime: tokio::runtime::Handle,
) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let socket = Arc::new(socket);
    let mut bufs = vec![[0u8; 4096]; BATCH];
    // SAFETY: all-zero bytes are valid for these C structs.
    let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut iovecs: Vec<libc::iovec> = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH];
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut replies: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
    let mut reply_names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut reply_name_lens: Vec<libc::socklen_t> = vec![0; BATCH];
    let mut reply_iovecs: Vec<libc::iovec> = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH];
    let mut reply_msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut key = Vec::with_capacity(300);
    // This thread's counters (none when statistics are off).
    let counts = crate::stats::get().map(|s| s.worker());
    let mut generation = live.generation();
    let mut served = live.current();
    loop {
        for i in 0..BATCH {
            iovecs[i] = libc::iovec { iov_base: bufs[i].as_mut_ptr().cast(), iov_len: bufs[i].len() };
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            msgs[i].msg_len = 0;
        }
        // Blocks for the first datagram, then takes what is already there (MSG_WAITFORONE).
        // SAFETY: every pointer in `msgs` points into buffers that outlive the call.
        let n = unsafe {
            libc::recvmmsg(fd, msgs.as_mut_ptr(), BATCH as libc::c_uint, libc::MSG_WAITFORONE, std::ptr::null_mut())
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::debug!("udp receive: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
            continue;
        }
        // A reload or update swaps the zones; pick them up before this batch's answers.
        let now = live.generation();
        if now != generation {
            generation = now;
            served = live.current();
        }
        let mut ready = 0;
        for i in 0..n as usize {
            let packet = &bufs[i][..msgs[i].msg_len as usize];
            let Some(src) = socket_addr(&names[i]) else { continue };
            let (answers, internal) = served.view(src.ip(), public);
            if let Some(outcome) = answers.answer_into(packet, internal, false, &mut key, &mut replies[ready]) {
                if let Some(counts) = &counts {
                    counts.answered(internal, outcome.qtype, replies[ready][3] & 0xf);
                }
                if let Some(rrl) = rrl.as_ref().filter(|r| !internal || r.limits_internal()) {
                    match rrl.check(src.ip(), outcome.class, outcome.bucket(&key)) {
                        Verdict::Send => {}
                        Verdict::Slip => {
                            counts.as_ref().inspect(|c| c.rrl_slipped());
                            outcome.slip(&mut replies[ready])
                        }
                        Verdict::Drop => {
                            counts.as_ref().inspect(|c| c.rrl_dropped());
                            continue;
                        }
                    }
                }
                reply_names[ready] = names[i];
                reply_name_lens[ready] = msgs[i].msg_hdr.msg_namelen;
                ready += 1;
                continue;
            }
            // The rest (updates, refused transfers, other classes, malformed messages) is
            // limited as errors are, before it costs the runtime anything.
            if let Some(rrl) = rrl.as_ref().filter(|r| !internal || r.limits_internal())
                && rrl.check(src.ip(), Class::Refused, b"") != Verdict::Send
            {
                counts.as_ref().inspect(|c| c.rrl_dropped());
                continue;
            }
            let (socket, live, packet) = (socket.clone(), live.clone(), packet.to_vec());
            runtime.spawn(async move {
                // (Over UDP nothing is streamed: transfers are refused there.)
                if let Replies::Now(messages) = answer(packet, src, false, public, &live).await {
                    if let Some(first) = messages.first().filter(|_| crate::stats::get().is_some()) {
                        crate::stats::response(live.current().view(src.ip(), public).1, first);
                    }
                    for message in messages {
                        let _ = socket.send_to(&message, src);
                    }
                }
            });
        }
        let mut sent = 0;
        while sent < ready {
            for j in sent..ready {
                reply_iovecs[j] = libc::iovec { iov_base: replies[j].as_mut_ptr().cast(), iov_len: replies[j].len() };
                let hdr = &mut reply_msgs[j].msg_hdr;
                hdr.msg_name = (&mut reply_names[j] as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = reply_name_lens[j];
                hdr.msg_iov = &mut reply_iovecs[j];
                hdr.msg_iovlen = 1;
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
                hdr.msg_flags = 0;
            }
            // SAFETY: as above; the replies outlive the call.
            let n = unsafe { libc::sendmmsg(fd, reply_msgs[sent..].as_mut_ptr(), (ready - sent) as libc::c_uint, 0) };
            if n <= 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // A reply that cannot go (the client's address unreachable): skip it.
                tracing::debug!("udp send: {e}");
                sent += 1;
                continue;
            }
            sent += n as usize;
        }
    }
}

/// The sender's address from what `recvmmsg` filled in.
fn socket_addr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match name.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(name as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(name as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
