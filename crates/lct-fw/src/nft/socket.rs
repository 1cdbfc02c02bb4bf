//! The netfilter netlink socket: one per sync, batches sent in one message, generations read.

use std::ffi::c_char;
use std::io;

use nftnl::nftnl_sys::{self as sys, libc};
use nftnl::{FinalizedBatch, ProtoFamily};

/// The sequence number of queries (one at a time per socket).
pub(super) const QUERY_SEQ: u32 = 1;

/// A receive buffer aligned for `nlmsghdr`, as libmnl requires.
pub(super) struct NlBuffer(Vec<u64>);

impl NlBuffer {
    pub(super) fn new() -> Self {
        NlBuffer(vec![0u64; (nftnl::nft_nlmsg_maxsize() as usize).div_ceil(8).max(8192)])
    }
    pub(super) fn bytes(&mut self) -> &mut [u8] {
        let len = self.0.len() * 8;
        // SAFETY: u64 storage viewed as bytes; alignment only grows.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), len) }
    }
}

/// Why a netfilter netlink socket could not be opened, with what it takes (for commits and
/// for the notifications `lct-fw watch` reads alike).
pub(super) fn not_opened(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot open a netfilter netlink socket (root, or CAP_NET_ADMIN, needed): {e}"))
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
        let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(not_opened)?;
        grow_receive_buffer(&socket);
        Ok(Netlink { socket })
    }

    /// Sends a batch and checks every acknowledgement; the kernel applies all of it or nothing.
    pub(super) fn send(&self, batch: &FinalizedBatch) -> io::Result<()> {
        let socket = &self.socket;
        let portid = socket.portid();
        send_in_one_message(socket, batch)?;
        let mut buffer = NlBuffer::new();
        let mut expected = batch.sequence_numbers();
        let checked = (|| {
            while !expected.is_empty() {
                for message in socket.recv(buffer.bytes())? {
                    let message = message?;
                    let seq = expected.next().ok_or_else(|| io::Error::other("unexpected netlink acknowledgement"))?;
                    mnl::cb_run(message, seq, portid)
                        .map_err(|e| io::Error::new(e.kind(), format!("nf_tables refused the batch: {e}")))?;
                }
            }
            Ok(())
        })();
        if checked.is_err() {
            // A refused batch is acknowledged message by message, all queued by the time
            // sendmsg returned: the next batch on this socket must not read them as its own.
            self.discard_pending(&mut buffer);
        }
        checked
    }

    /// Drops whatever the kernel queued on this socket and no one read.
    fn discard_pending(&self, buffer: &mut NlBuffer) {
        let fd = unsafe { mnl::mnl_sys::mnl_socket_get_fd(self.socket.as_raw_socket()) };
        let bytes = buffer.bytes();
        // SAFETY: recv into our own buffer, at most its length, never blocking.
        while unsafe { libc::recv(fd, bytes.as_mut_ptr().cast(), bytes.len(), libc::MSG_DONTWAIT) } > 0 {}
    }

    /// The ruleset generation: the kernel bumps it on every change to any table.
    pub fn generation(&self) -> io::Result<u32> {
        let mut request = NlBuffer::new();
        let len = unsafe {
            let nlh = sys::nftnl_nlmsg_build_hdr(
                request.bytes().as_mut_ptr().cast::<c_char>(),
                libc::NFT_MSG_GETGEN as u16,
                ProtoFamily::Unspec as u16,
                libc::NLM_F_ACK as u16,
                QUERY_SEQ,
            );
            (*nlh).nlmsg_len as usize
        };
        let mut id: Option<u32> = None;
        self.query(&request.bytes()[..len], gen_cb, &mut id)?;
        id.ok_or_else(|| io::Error::other("no ruleset generation in the kernel's answer"))
    }

    /// Sends a request (sequence number [`QUERY_SEQ`]) and hands every message of the answer
    /// to `callback`, up to the acknowledgement that ends it: the socket serves the next
    /// request, which must not find it waiting.
    pub(super) fn query<T>(&self, request: &[u8], callback: mnl::Callback<T>, data: &mut T) -> io::Result<()> {
        let socket = &self.socket;
        let portid = socket.portid();
        socket.send(request)?;
        let mut buffer = NlBuffer::new();
        loop {
            let n = socket.recv_raw(buffer.bytes())?;
            if let mnl::CbResult::Stop = mnl::cb_run2(&buffer.bytes()[..n], QUERY_SEQ, portid, callback, data)? {
                return Ok(());
            }
        }
    }

    /// The generation our own single commit made, given the one read just before it: the
    /// next one, unless someone else committed in between (then 0, which no commit makes: the
    /// kernel counts from 1), so that their change is not taken for ours.
    pub fn generation_after(&self, before: u32) -> io::Result<u32> {
        let now = self.generation()?;
        Ok(if now == before.wrapping_add(1) { now } else { 0 })
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
pub(super) fn set_buffer(fd: libc::c_int, force: libc::c_int, plain: libc::c_int, size: usize) {
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
