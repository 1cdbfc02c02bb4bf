//! Response rate limiting over UDP, as BIND's and Knot's RRL: answers to one client network
//! (a /24 of IPv4, a /56 of IPv6) are counted per second in buckets by what they say (the
//! same name and type; negative answers per zone; refusals and errors per network), and
//! beyond the rate are dropped, except every `slip`-th, which goes out truncated and empty
//! so that a real client behind a spoofed flood retries over TCP, where no limit applies.
//! The point is that the server cannot be used to amplify a flood at a victim whose address
//! is forged, and that a flood of random names costs a bounded number of answers.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use serde::Deserialize;

use crate::fast::Class;

/// `[rate_limit]` in the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Answers per second per client network and bucket; 0 turns rate limiting off.
    pub responses_per_second: u32,
    /// Every n-th answer beyond the rate is sent truncated instead of dropped (0: none, 1: all).
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Limit clients of the internal view too (off: only the outside is limited).
    pub internal: bool,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        // BIND's and Knot's documentation suggest 5 to 20; slip 2 is both's default.
        RateLimitSettings { responses_per_second: 20, slip: 2, ipv4_prefix: 24, ipv6_prefix: 56, internal: false }
    }
}

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send it truncated and empty.
    Slip,
    Drop,
}

#[derive(Default)]
struct Bucket {
    tag: u64,
    second: u32,
    count: u32,
    limited: u32,
}

/// Slots in the table: a power of two; a flood from many networks shares them, so a
/// colliding bucket restarts its count (an attacker cannot grow memory).
const SLOTS: usize = 1 << 16;

pub struct RateLimit {
    settings: RateLimitSettings,
    slots: Box<[Mutex<Bucket>]>,
    start: Instant,
}

impl RateLimit {
    /// `None` when the settings turn it off.
    pub fn new(settings: &RateLimitSettings) -> Option<RateLimit> {
        (settings.responses_per_second > 0).then(|| RateLimit {
            settings: settings.clone(),
            slots: (0..SLOTS).map(|_| Mutex::new(Bucket::default())).collect(),
            start: Instant::now(),
        })
    }

    /// Whether answers to internal clients are limited too.
    pub fn limits_internal(&self) -> bool {
        self.settings.internal
    }

    /// Counts an answer of `class` about `name` to `client`.
    pub fn check(&self, client: IpAddr, class: Class, name: &[u8]) -> Verdict {
        self.check_at(client, class, name, self.start.elapsed().as_secs() as u32)
    }

    fn check_at(&self, client: IpAddr, class: Class, name: &[u8], second: u32) -> Verdict {
        let tag = self.tag(client, class, name);
        let slot = &self.slots[tag as usize & (SLOTS - 1)];
        let mut b = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.tag != tag {
            *b = Bucket { tag, second, count: 0, limited: 0 };
        } else if b.second != second {
            b.second = second;
            b.count = 0;
        }
        b.count = b.count.saturating_add(1);
        if b.count <= self.settings.responses_per_second {
            return Verdict::Send;
        }
        b.limited = b.limited.wrapping_add(1);
        match self.settings.slip {
            0 => Verdict::Drop,
            n if b.limited.is_multiple_of(n) => Verdict::Slip,
            _ => Verdict::Drop,
        }
    }

    /// FNV-1a over the client's network, the class and the name.
    fn tag(&self, client: IpAddr, class: Class, name: &[u8]) -> u64 {
        let mut network = [0u8; 17];
        match client {
            IpAddr::V4(a) => {
                let bits =
                    u32::from(a) & u32::MAX.checked_shl(32 - self.settings.ipv4_prefix.min(32) as u32).unwrap_or(0);
                network[0] = 4;
                network[1..5].copy_from_slice(&bits.to_be_bytes());
            }
            IpAddr::V6(a) => {
                let prefix = self.settings.ipv6_prefix.min(128) as u32;
                let bits = u128::from(a) & u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                network[0] = 6;
                network[1..17].copy_from_slice(&bits.to_be_bytes());
            }
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in network.iter().chain([class as u8].iter()).chain(name) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: u32, slip: u32) -> RateLimit {
        RateLimit::new(&RateLimitSettings { responses_per_second: rate, slip, ..Default::default() }).unwrap()
    }

    #[test]
    fn beyond_the_rate_answers_are_dropped_and_every_slipth_truncated() {
        let rrl = limit(5, 2);
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..11).map(|_| rrl.check_at(client, Class::NxDomain, b"zone", 1)).collect();
        assert_eq!(&verdicts[..5], &[Verdict::Send; 5]);
        assert_eq!(
            &verdicts[5..],
            &[Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip, Verdict::Drop, Verdict::Slip]
        );
        // The next second starts afresh.
        assert_eq!(rrl.check_at(client, Class::NxDomain, b"zone", 2), Verdict::Send);
    }

    #[test]
    fn buckets_are_per_network_class_and_name() {
        let rrl = limit(1, 0);
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let same_net: IpAddr = "198.51.100.200".parse().unwrap();
        let other_net: IpAddr = "198.51.101.7".parse().unwrap();
        assert_eq!(rrl.check_at(a, Class::Answer, b"x", 1), Verdict::Send);
        assert_eq!(rrl.check_at(same_net, Class::Answer, b"x", 1), Verdict::Drop, "a /24 shares a bucket");
        assert_eq!(rrl.check_at(other_net, Class::Answer, b"x", 1), Verdict::Send);
        assert_eq!(rrl.check_at(a, Class::Answer, b"y", 1), Verdict::Send, "another name");
        assert_eq!(rrl.check_at(a, Class::NoData, b"x", 1), Verdict::Send, "another class");
        let v6: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let v6_same: IpAddr = "2001:db8:0:ff::2".parse().unwrap();
        let v6_other: IpAddr = "2001:db8:0:100::1".parse().unwrap();
        assert_eq!(rrl.check_at(v6, Class::Answer, b"x", 1), Verdict::Send);
        assert_eq!(rrl.check_at(v6_same, Class::Answer, b"x", 1), Verdict::Drop, "a /56 shares a bucket");
        assert_eq!(rrl.check_at(v6_other, Class::Answer, b"x", 1), Verdict::Send);
    }

    #[test]
    fn off_at_zero() {
        assert!(RateLimit::new(&RateLimitSettings { responses_per_second: 0, ..Default::default() }).is_none());
    }
}
