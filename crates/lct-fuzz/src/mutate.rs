//! The mutator: deterministic for a seed (splitmix64), with the classic stages of AFL and
//! libFuzzer that find length and offset bugs in binary readers: bit flips, random bytes,
//! interesting integers (0, -1, powers of two, the format's sizes) in both byte orders,
//! small additions, inserted, deleted and duplicated ranges, and splices with another input.

/// splitmix64: small, fast, and the same sequence for the same seed everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Values that sit on the edges readers check (or forget to): zero, one, signed and unsigned
/// extremes of each width, and the sizes of lct's formats (4 KiB, 4 and 16 MiB extents).
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    9,
    12,
    17,
    57,
    0x3f,
    0x40,
    0x7f,
    0x80,
    0xc0,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    4 << 10,
    1 << 20,
    (1 << 20) + 1,
    4 << 20,
    (4 << 20) + 1,
    16 << 20,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    1 << 32,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// Changes `input` in place by one to four mutations; `other` (another input of the corpus)
/// is what splices take from. The result is at most `max_len` bytes.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8], max_len: usize) {
    for _ in 0..1 + rng.below(4) {
        if input.is_empty() {
            insert_random(rng, input, 0);
            continue;
        }
        let len = input.len();
        match rng.below(10) {
            0 => {
                let bit = rng.below(len * 8);
                input[bit / 8] ^= 1 << (bit % 8);
            }
            1 => {
                let at = rng.below(len);
                input[at] = rng.next_u64() as u8;
            }
            2 => put_interesting(rng, input),
            3 => add_small(rng, input),
            4 => {
                let at = rng.below(len + 1);
                insert_random(rng, input, at);
            }
            5 => {
                let at = rng.below(len);
                let most = if rng.chance(4) { len } else { 16 };
                let n = 1 + rng.below((len - at).min(most));
                input.drain(at..at + n);
            }
            6 => {
                // A range copied in again elsewhere (repeated records, entries, labels).
                let (from, n) = range(rng, len);
                let chunk = input[from..from + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            7 => {
                // A range written over another (a length copied onto an offset...).
                let (from, n) = range(rng, len);
                let chunk = input[from..from + n].to_vec();
                let at = rng.below(len);
                let n = n.min(len - at);
                input[at..at + n].copy_from_slice(&chunk[..n]);
            }
            8 if !other.is_empty() => {
                // Splice: this input's head, the other's tail.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            _ => {
                let keep = rng.below(len);
                input.truncate(keep);
            }
        }
    }
    input.truncate(max_len);
}

/// A range of up to 64 bytes (now and then any length) within `len` bytes.
fn range(rng: &mut Rng, len: usize) -> (usize, usize) {
    let from = rng.below(len);
    let most = if rng.chance(8) { len - from } else { (len - from).min(64) };
    (from, 1 + rng.below(most))
}

fn insert_random(rng: &mut Rng, input: &mut Vec<u8>, at: usize) {
    let n = 1 + rng.below(16);
    let bytes: Vec<u8> =
        if rng.chance(2) { vec![rng.next_u64() as u8; n] } else { (0..n).map(|_| rng.next_u64() as u8).collect() };
    input.splice(at..at, bytes);
}

fn put_interesting(rng: &mut Rng, input: &mut [u8]) {
    let width = [1, 2, 4, 8][rng.below(4)].min(input.len());
    let mut value = INTERESTING[rng.below(INTERESTING.len())];
    if rng.chance(4) {
        value = value.wrapping_add(rng.below(5) as u64).wrapping_sub(2);
    }
    let at = rng.below(input.len() - width + 1);
    // The value's low `width` bytes, little- or big-endian.
    let (le, be) = (value.to_le_bytes(), value.to_be_bytes());
    let bytes = if rng.chance(2) { &le[..width] } else { &be[8 - width..] };
    input[at..at + width].copy_from_slice(bytes);
}

fn add_small(rng: &mut Rng, input: &mut [u8]) {
    let width = [1, 2, 4][rng.below(3)].min(input.len());
    let at = rng.below(input.len() - width + 1);
    let delta = 1 + rng.below(16) as u64;
    let mut word = [0u8; 8];
    word[..width].copy_from_slice(&input[at..at + width]);
    let value = u64::from_le_bytes(word);
    let value = if rng.chance(2) { value.wrapping_add(delta) } else { value.wrapping_sub(delta) };
    input[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_inputs() {
        let make = |seed| {
            let mut rng = Rng::new(seed);
            let mut input = b"LCTSEND1 some bytes to change".to_vec();
            (0..200)
                .map(|_| {
                    mutate(&mut rng, &mut input, b"another input", 64);
                    input.clone()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(make(7), make(7));
        assert_ne!(make(7), make(8));
    }

    #[test]
    fn inputs_stay_within_the_length_and_change() {
        let mut rng = Rng::new(1);
        let seed = vec![0u8; 100];
        let mut changed = 0;
        for _ in 0..1000 {
            let mut input = seed.clone();
            mutate(&mut rng, &mut input, &seed, 120);
            assert!(input.len() <= 120);
            changed += usize::from(input != seed);
        }
        assert!(changed > 900, "{changed} of 1000 changed");
    }

    #[test]
    fn interesting_integers_land_in_both_byte_orders() {
        let mut rng = Rng::new(3);
        let (mut le, mut be) = (false, false);
        for _ in 0..5000 {
            let mut input = vec![0u8; 8];
            put_interesting(&mut rng, &mut input);
            le |= input[..4] == [0xff, 0xff, 0xff, 0x7f];
            be |= input[..4] == [0x7f, 0xff, 0xff, 0xff];
        }
        assert!(le && be);
    }
}
