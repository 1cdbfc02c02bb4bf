//! An interface as this thread's network namespace has it (whether it exists, is up, and its
//! IPv4 addresses), read with getifaddrs(3) instead of an `ip` process: an apply reads this on
//! every contacted node, and on a 2-core controller with dozens of namespace nodes the
//! processes, not the work, were most of a sync. getifaddrs asks the kernel over a netlink
//! socket made by the calling thread, so a thread that entered a node's namespace (setns)
//! reads that node's interfaces.

use std::ffi::CStr;
use std::net::Ipv4Addr;

use crate::MeshError;

/// What an interface has now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Its IPv4 addresses with their prefix lengths.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
}

/// `name` as this thread's namespace has it, or None when there is no such interface.
pub fn interface(name: &str) -> Result<Option<Interface>, MeshError> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(MeshError::Node(format!("getifaddrs: {}", std::io::Error::last_os_error())));
    }
    let mut found: Option<Interface> = None;
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs made, alive until freeifaddrs.
        let ifa = unsafe { &*entry };
        entry = ifa.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string in every entry.
        if ifa.ifa_name.is_null() || unsafe { CStr::from_ptr(ifa.ifa_name) }.to_bytes() != name.as_bytes() {
            continue;
        }
        let this = found.get_or_insert_with(Interface::default);
        this.up |= ifa.ifa_flags & libc::IFF_UP as u32 != 0;
        if let Some(address) = ipv4_of(ifa.ifa_addr) {
            let prefix = ipv4_of(ifa.ifa_netmask).map_or(32, |mask| u32::from(mask).count_ones() as u8);
            this.ipv4.push((address, prefix));
        }
    }
    // SAFETY: the list from getifaddrs above, freed once; no reference into it outlives this.
    unsafe { libc::freeifaddrs(list) };
    Ok(found)
}

/// The IPv4 address in a sockaddr, if it is one.
fn ipv4_of(sockaddr: *const libc::sockaddr) -> Option<Ipv4Addr> {
    if sockaddr.is_null() {
        return None;
    }
    // SAFETY: a non-null sockaddr from getifaddrs; its family says which struct it is.
    if i32::from(unsafe { (*sockaddr).sa_family }) != libc::AF_INET {
        return None;
    }
    // SAFETY: an AF_INET sockaddr is a sockaddr_in.
    let sin = unsafe { &*(sockaddr as *const libc::sockaddr_in) };
    Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_up_with_its_address_and_a_missing_interface_is_none() {
        // Every network namespace has lo; the test's may have it down (a fresh one), so only
        // what is always true is asserted: it exists, and if it has 127.0.0.1 it is /8.
        let lo = interface("lo").unwrap().expect("lo exists");
        if let Some((_, prefix)) = lo.ipv4.iter().find(|(a, _)| *a == Ipv4Addr::LOCALHOST) {
            assert_eq!(*prefix, 8);
            assert!(lo.up, "lo with its address is up");
        }
        assert_eq!(interface("lm-no-such-if").unwrap(), None);
    }
}
