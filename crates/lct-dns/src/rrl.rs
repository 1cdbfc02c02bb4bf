//! Response rate limiting over UDP, as BIND's and Knot's RRL: answers to one client network
//! (a /24 of IPv4, a /56 of IPv6) are counted per second in buckets by what they say (the
//! same name and type; negative answers per zone; refusals and errors per network), and
//! beyond the rate are dropped, except every `slip`-th, which goes out truncated and empty
//! so that a real client behind a spoofed flood retries over TCP, where no limit applies.
//! The point is that the server cannot be used to amplify a flood at a victim whose address
//! is forged, and that a flood of random names costs a bounded number of answers.
//!
//! A bucket's tag is hashed with SipHash-1-3 under a key drawn per process, and its 64 bits
//! are kept in the bucket as its fingerprint: names chosen to share a slot cannot be
//! computed without the key, and two tags that share one anyway never reset each other's
//! counts (a full set is shared at its strictest, as Knot's table does), so alternating
//! them is limited like repeating one.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use serde::Deserialize;

use crate::fast::Class;
use crate::keyed::{Sip13, SipKey};
use lct_core::random::RandomError;

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
    /// Buckets in the table (Knot's `rate-limit-table-size`): more keep more flows apart
    /// under a flood from many networks, at 24 bytes each.
    #[serde(deserialize_with = "table_size")]
    pub table_size: u32,
}

/// The most buckets `table_size` may ask for (4 Mi: 96 MiB).
pub const MAX_TABLE_SIZE: u32 = 1 << 22;

fn table_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if !(1..=MAX_TABLE_SIZE).contains(&n) {
        return Err(serde::de::Error::custom(format!("table_size {n}: from 1 to {MAX_TABLE_SIZE}")));
    }
    Ok(n)
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        // BIND's and Knot's documentation suggest 5 to 20; slip 2 is both's default.
        RateLimitSettings {
            responses_per_second: 20,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            internal: false,
            table_size: 1 << 16,
        }
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

/// One tag's count in one second. Empty while `count` is 0.
#[derive(Default, Clone, Copy)]
struct Bucket {
    /// The tag's keyed hash: 64 bits, compared in full.
    fingerprint: u64,
    second: u32,
    count: u32,
    limited: u32,
}

/// Buckets a tag may take: its set. A tag takes its own bucket, or an empty one, or one whose
/// second is over; only when all of them count other tags in this second does it share.
const WAYS: usize = 4;

pub struct RateLimit {
    settings: RateLimitSettings,
    key: SipKey,
    sets: Box<[Mutex<[Bucket; WAYS]>]>,
    /// Buckets used in each set (fewer than `WAYS` only in a table smaller than a set).
    ways: usize,
    start: Instant,
}

impl RateLimit {
    /// `None` when the settings turn it off; an error if the system's random source fails.
    pub fn new(settings: &RateLimitSettings) -> Result<Option<RateLimit>, RandomError> {
        if settings.responses_per_second == 0 {
            return Ok(None);
        }
        Ok(Some(RateLimit::with_key(settings, SipKey::random()?)))
    }

    fn with_key(settings: &RateLimitSettings, key: SipKey) -> RateLimit {
        let size = settings.table_size.clamp(1, MAX_TABLE_SIZE) as usize;
        let ways = size.min(WAYS);
        RateLimit {
            settings: settings.clone(),
            key,
            sets: (0..size.div_ceil(ways)).map(|_| Mutex::new([Bucket::default(); WAYS])).collect(),
            ways,
            start: Instant::now(),
        }
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
        let fingerprint = self.tag(client, class, name);
        // The set from the high bits (multiply-shift: any number of sets).
        let set = ((u128::from(fingerprint) * self.sets.len() as u128) >> 64) as usize;
        let mut set = self.sets[set].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let ways = &mut set[..self.ways];
        let b = if let Some(i) = ways.iter().position(|b| b.count > 0 && b.fingerprint == fingerprint) {
            &mut ways[i]
        } else if let Some(i) = ways.iter().position(|b| b.count == 0 || b.second != second) {
            // Empty, or counting a second that is over (its count would restart anyway).
            ways[i] = Bucket { fingerprint, second, count: 0, limited: 0 };
            &mut ways[i]
        } else {
            // Every bucket counts another tag in this second: taking one over would restart
            // its count (alternating tags would never be limited), so share the one closest
            // to its limit.
            ways.iter_mut().max_by_key(|b| b.count).expect("a set has a bucket")
        };
        if b.second != second {
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

    /// The keyed hash of the client's network, the class and the name.
    fn tag(&self, client: IpAddr, class: Class, name: &[u8]) -> u64 {
        let mut h = Sip13::new(&self.key);
        match client {
            IpAddr::V4(a) => {
                let bits =
                    u32::from(a) & u32::MAX.checked_shl(32 - self.settings.ipv4_prefix.min(32) as u32).unwrap_or(0);
                h.write(&[4]);
                h.write(&bits.to_be_bytes());
            }
            IpAddr::V6(a) => {
                let prefix = self.settings.ipv6_prefix.min(128) as u32;
                let bits = u128::from(a) & u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                h.write(&[6]);
                h.write(&bits.to_be_bytes());
            }
        }
        h.write(&[class as u8]);
        h.write(name);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: u32, slip: u32) -> RateLimit {
        RateLimit::new(&RateLimitSettings { responses_per_second: rate, slip, ..Default::default() }).unwrap().unwrap()
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

    /// Tags whose buckets are in one set under `rrl`'s key: names `n0`, `n1`, ... tried in order.
    fn names_in_one_set(rrl: &RateLimit, client: IpAddr, count: usize) -> Vec<Vec<u8>> {
        let set_of =
            |name: &[u8]| ((u128::from(rrl.tag(client, Class::Answer, name)) * rrl.sets.len() as u128) >> 64) as usize;
        let target = set_of(b"n0");
        let found: Vec<Vec<u8>> =
            (0..2_000_000).map(|i| format!("n{i}").into_bytes()).filter(|n| set_of(n) == target).take(count).collect();
        assert_eq!(found.len(), count);
        found
    }

    #[test]
    fn tags_sharing_a_slot_keep_their_own_counts() {
        // A known key, the default table: names whose buckets share a set (what an attacker
        // who knew the key, or FNV's unkeyed hash, could compute), alternated within a second.
        let settings = RateLimitSettings { responses_per_second: 5, slip: 0, ..Default::default() };
        let rrl = RateLimit::with_key(&settings, SipKey::new(1, 2));
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let names = names_in_one_set(&rrl, client, 2);
        let mut sent = [0; 2];
        for round in 0..20 {
            for (i, name) in names.iter().enumerate() {
                if rrl.check_at(client, Class::Answer, name, 1) == Verdict::Send {
                    sent[i] += 1;
                }
            }
            assert!(round < 5 || sent == [5, 5], "round {round}: {sent:?}");
        }
        assert_eq!(sent, [5, 5], "each name is limited to its own 5, however they alternate");
    }

    #[test]
    fn an_attacker_alternating_more_tags_than_a_slot_holds_is_still_limited() {
        // One bucket: every tag shares it, and none resets it.
        let one = RateLimit::with_key(
            &RateLimitSettings { responses_per_second: 5, slip: 0, table_size: 1, ..Default::default() },
            SipKey::new(3, 4),
        );
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let sent = (0..40u32)
            .filter(|i| {
                let (class, name): (Class, &[u8]) = if i.is_multiple_of(2) {
                    (Class::NxDomain, b"\x03lct\x08internal\x00")
                } else {
                    (Class::Answer, b"\x01x")
                };
                one.check_at(client, class, name, 1) == Verdict::Send
            })
            .count();
        assert_eq!(sent, 5, "two alternating tags in one bucket share its limit");
        // A set of four in the default table, eight tags alternating: at most the four
        // buckets' worth get through, however the attacker orders them.
        let rrl = RateLimit::with_key(
            &RateLimitSettings { responses_per_second: 5, slip: 0, ..Default::default() },
            SipKey::new(5, 6),
        );
        let names = names_in_one_set(&rrl, client, 8);
        let sent = (0..50)
            .flat_map(|_| names.iter())
            .filter(|name| rrl.check_at(client, Class::Answer, name, 1) == Verdict::Send)
            .count();
        assert!(sent <= WAYS * 5, "{sent} answers sent for {} tags in one set", names.len());
        // The next second, a new tag takes a bucket whose second is over.
        let newcomer = names_in_one_set(&rrl, client, 9).pop().unwrap();
        assert_eq!(rrl.check_at(client, Class::Answer, &newcomer, 2), Verdict::Send);
    }

    #[test]
    fn the_key_is_random_per_process() {
        // Run as a child: print this process's hash of a fixed tag.
        if std::env::var_os("LCT_RRL_PRINT_TAG").is_some() {
            let rrl = limit(5, 0);
            println!("tag={:016x}", rrl.tag("198.51.100.7".parse().unwrap(), Class::Answer, b"x"));
            return;
        }
        let tag_of_a_process = || {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "rrl::tests::the_key_is_random_per_process", "--nocapture", "--test-threads", "1"])
                .env("LCT_RRL_PRINT_TAG", "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            // (The harness may print its own text on the same line.)
            let at = text.find("tag=").unwrap_or_else(|| panic!("{text}")) + 4;
            text[at..at + 16].to_string()
        };
        let (a, b) = (tag_of_a_process(), tag_of_a_process());
        assert_ne!(a, b, "two processes hashed a tag alike: the key is not random");
        // And two tables of one process differ too.
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        assert_ne!(limit(5, 0).tag(client, Class::Answer, b"x"), limit(5, 0).tag(client, Class::Answer, b"x"));
    }

    #[test]
    fn table_size_is_bounded_in_the_configuration() {
        let parse = |text: &str| toml::from_str::<RateLimitSettings>(text);
        assert_eq!(parse("table_size = 1").unwrap().table_size, 1);
        assert_eq!(parse("").unwrap().table_size, 1 << 16);
        let err = parse("table_size = 0").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("from 1 to"), "{err}");
        assert!(parse(&format!("table_size = {}", MAX_TABLE_SIZE + 1)).is_err());
    }

    #[test]
    fn off_at_zero() {
        assert!(
            RateLimit::new(&RateLimitSettings { responses_per_second: 0, ..Default::default() }).unwrap().is_none()
        );
    }
}
