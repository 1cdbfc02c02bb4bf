//! Hashing keyed with this process's random key, for tables whose keys come off the network:
//! an attacker who cannot learn the key cannot choose names that collide. SipHash-1-3 (a
//! keyed PRF, as Knot's RRL uses SipHash) for rate-limit tags, whose 64 bits are stored as
//! the tag's fingerprint; foldhash, seeded from the same source, for the answer tables
//! (foldhash's own seed is addresses and the time, not a random source).

use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use lct_core::random::{self, RandomError};

/// A 128-bit SipHash key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SipKey {
    k0: u64,
    k1: u64,
}

impl SipKey {
    /// A fresh key from the system's random source.
    pub fn random() -> Result<SipKey, RandomError> {
        let bytes = random::bytes::<16>()?;
        let (k0, k1) = bytes.split_at(8);
        Ok(SipKey::new(u64::from_le_bytes(k0.try_into().expect("8")), u64::from_le_bytes(k1.try_into().expect("8"))))
    }

    pub const fn new(k0: u64, k1: u64) -> SipKey {
        SipKey { k0, k1 }
    }
}

impl std::fmt::Debug for SipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SipKey(..)") // a key is not for logs
    }
}

/// SipHash-c-d over bytes written in any pieces (the same result as one write of them all).
#[derive(Clone)]
pub struct Sip<const C: usize, const D: usize> {
    v: [u64; 4],
    /// Bytes not yet compressed (fewer than 8), little-endian.
    tail: u64,
    ntail: usize,
    len: usize,
}

/// SipHash-1-3: what Rust's and Python's hash tables use against flooding.
pub type Sip13 = Sip<1, 3>;

impl<const C: usize, const D: usize> Sip<C, D> {
    pub fn new(key: &SipKey) -> Self {
        Sip {
            v: [
                key.k0 ^ 0x736f_6d65_7073_6575,
                key.k1 ^ 0x646f_7261_6e64_6f6d,
                key.k0 ^ 0x6c79_6765_6e65_7261,
                key.k1 ^ 0x7465_6462_7974_6573,
            ],
            tail: 0,
            ntail: 0,
            len: 0,
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        let v = &mut self.v;
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }

    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        for _ in 0..C {
            self.round();
        }
        self.v[0] ^= m;
    }

    pub fn write(&mut self, mut bytes: &[u8]) {
        self.len = self.len.wrapping_add(bytes.len());
        if self.ntail > 0 {
            let take = (8 - self.ntail).min(bytes.len());
            for (i, b) in bytes[..take].iter().enumerate() {
                self.tail |= u64::from(*b) << (8 * (self.ntail + i));
            }
            self.ntail += take;
            bytes = &bytes[take..];
            if self.ntail < 8 {
                return;
            }
            let m = self.tail;
            self.compress(m);
            (self.tail, self.ntail) = (0, 0);
        }
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.compress(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        for (i, b) in words.remainder().iter().enumerate() {
            self.tail |= u64::from(*b) << (8 * i);
        }
        self.ntail = words.remainder().len();
    }

    pub fn finish(&self) -> u64 {
        let mut s = self.clone();
        s.compress(((s.len as u64) << 56) | s.tail);
        s.v[2] ^= 0xff;
        for _ in 0..D {
            s.round();
        }
        s.v[0] ^ s.v[1] ^ s.v[2] ^ s.v[3]
    }
}

/// The process's seeds for the answer tables, drawn once.
struct TableSeeds {
    shared: foldhash::SharedSeed,
    next: AtomicU64,
}

static TABLE_SEEDS: OnceLock<TableSeeds> = OnceLock::new();

fn draw_table_seeds() -> Result<TableSeeds, RandomError> {
    let [a, b] = [random::u64()?, random::u64()?];
    Ok(TableSeeds { shared: foldhash::SharedSeed::from_u64(a), next: AtomicU64::new(b) })
}

/// Draws the answer tables' seeds now, so that a failing random source is an error at start
/// rather than a panic at the first table.
pub fn init() -> Result<(), RandomError> {
    if TABLE_SEEDS.get().is_none() {
        let _ = TABLE_SEEDS.set(draw_table_seeds()?);
    }
    Ok(())
}

/// The answer tables' hasher: foldhash (a lookup hashes a short name a word at a time) with a
/// shared seed from the system's random source and a seed of its own per table (tables
/// filled from each other in iteration order would otherwise probe long chains).
#[derive(Clone, Debug)]
pub struct TableState(foldhash::fast::SeedableRandomState);

impl Default for TableState {
    fn default() -> Self {
        let seeds = TABLE_SEEDS.get_or_init(|| {
            draw_table_seeds().unwrap_or_else(|e| panic!("{e} (the answer tables need a random seed)"))
        });
        // Successive tables get seeds a golden-ratio step apart; foldhash mixes them.
        let own = seeds.next.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        TableState(foldhash::fast::SeedableRandomState::with_seed(own, &seeds.shared))
    }
}

impl BuildHasher for TableState {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    #[inline(always)]
    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip<const C: usize, const D: usize>(key: &SipKey, data: &[u8]) -> u64 {
        let mut h = Sip::<C, D>::new(key);
        h.write(data);
        h.finish()
    }

    #[test]
    fn siphash_2_4_matches_the_reference_vectors() {
        // The SipHash paper's test key (00..0f) and messages (00, 01, ... of each length).
        let key = SipKey::new(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let message: Vec<u8> = (0..64).collect();
        assert_eq!(sip::<2, 4>(&key, &message[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(sip::<2, 4>(&key, &message[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(sip::<2, 4>(&key, &message[..15]), 0xa129_ca61_49be_45e5);
        // And std's own SipHash-2-4 at every length up to 64.
        #[allow(deprecated)]
        for n in 0..=64 {
            let mut std_hasher = std::hash::SipHasher::new_with_keys(key.k0, key.k1);
            std::hash::Hasher::write(&mut std_hasher, &message[..n]);
            assert_eq!(sip::<2, 4>(&key, &message[..n]), std::hash::Hasher::finish(&std_hasher), "length {n}");
        }
    }

    #[test]
    fn siphash_1_3_matches_std_and_pieces_hash_as_a_whole() {
        // std's DefaultHasher::new() is SipHash-1-3 with a zero key.
        let zero = SipKey::new(0, 0);
        let message: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
        for n in 0..=100 {
            let mut std_hasher = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hasher::write(&mut std_hasher, &message[..n]);
            assert_eq!(sip::<1, 3>(&zero, &message[..n]), std::hash::Hasher::finish(&std_hasher), "length {n}");
        }
        let key = SipKey::new(0x1234_5678_9abc_def0, 0x0fed_cba9_8765_4321);
        let whole = sip::<1, 3>(&key, &message);
        for cuts in [(0, 1), (3, 11), (7, 8), (8, 16), (13, 99)] {
            let mut h = Sip13::new(&key);
            h.write(&message[..cuts.0]);
            h.write(&message[cuts.0..cuts.1]);
            h.write(&message[cuts.1..]);
            assert_eq!(h.finish(), whole, "{cuts:?}");
        }
        assert_ne!(sip::<1, 3>(&zero, &message), whole, "the key matters");
    }

    #[test]
    fn keys_and_table_seeds_are_random() {
        assert_ne!(SipKey::random().unwrap(), SipKey::random().unwrap());
        init().unwrap();
        let (a, b) = (TableState::default(), TableState::default());
        assert_ne!(a.hash_one(b"n-1.c1.lct.internal"), b.hash_one(b"n-1.c1.lct.internal"));
    }
}
