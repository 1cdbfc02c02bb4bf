//! The one source of randomness: the kernel's CSPRNG (getrandom(2)), for every password,
//! key, token, id, nonce and seed lct makes. A failure is an error, never a weaker fallback
//! (no time, process id or address is ever mixed in instead); tests/tests/randomness.rs
//! fails if crate source reads randomness any other way.

/// The system's random source failed (on Linux: getrandom(2) refused, as a seccomp filter
/// or a kernel without it would).
#[derive(Debug, thiserror::Error)]
#[error("the system's random source (getrandom) failed: {0}")]
pub struct RandomError(getrandom::Error);

/// Letters and digits: tokens that survive any shell, URL, YAML or config file unquoted.
pub const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(RandomError)
}

/// `N` random bytes (keys, seeds).
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}

pub fn u64() -> Result<u64, RandomError> {
    bytes().map(u64::from_le_bytes)
}

pub fn u16() -> Result<u16, RandomError> {
    bytes().map(u16::from_le_bytes)
}

/// `len` characters drawn uniformly from `alphabet` (at most 256 distinct bytes): bytes at
/// or above the largest multiple of its length are drawn again, so no character is likelier
/// than another (a plain `% len` would favour the first ones).
pub fn token(len: usize, alphabet: &[u8]) -> Result<String, RandomError> {
    assert!(!alphabet.is_empty() && alphabet.len() <= 256 && alphabet.is_ascii(), "an ASCII alphabet of 1 to 256");
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    let mut pool = [0u8; 64];
    while out.len() < len {
        fill(&mut pool)?;
        for b in pool.iter().filter(|b| usize::from(**b) < limit) {
            if out.len() == len {
                break;
            }
            out.push(alphabet[usize::from(*b) % alphabet.len()] as char);
        }
    }
    Ok(out)
}

/// `n` random bytes in lower-case hex (`2n` characters).
pub fn hex(n: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; n];
    fill(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_and_fill_the_whole_buffer() {
        let (a, b) = (bytes::<32>().unwrap(), bytes::<32>().unwrap());
        assert_ne!(a, b);
        // 64 KiB from the source: every byte value turns up (a stuck or short fill would not).
        let mut big = vec![0u8; 1 << 16];
        fill(&mut big).unwrap();
        let mut seen = [false; 256];
        big.iter().for_each(|b| seen[usize::from(*b)] = true);
        assert!(seen.iter().all(|s| *s));
        assert_ne!(u64().unwrap(), u64().unwrap());
    }

    #[test]
    fn tokens_have_the_length_and_alphabet_asked_for_without_bias() {
        let t = token(24, ALPHANUMERIC).unwrap();
        assert_eq!(t.len(), 24);
        assert!(t.bytes().all(|c| c.is_ascii_alphanumeric()), "{t}");
        assert_ne!(t, token(24, ALPHANUMERIC).unwrap());
        // 57 characters: 256 % 57 = 28, so a plain modulo would draw the first 28 characters
        // 5/4 as often as the rest. 200,000 draws: each of the others is expected 3,509 times
        // (σ ≈ 59); a modulo bias would put the first ones near 4,300.
        let alphabet = &ALPHANUMERIC[..57];
        let sample = token(200_000, alphabet).unwrap();
        let mut counts = [0u32; 256];
        sample.bytes().for_each(|c| counts[usize::from(c)] += 1);
        for c in alphabet {
            let n = counts[usize::from(*c)];
            assert!((3_150..3_870).contains(&n), "{} drawn {n} times", *c as char);
        }
        assert_eq!(token(0, ALPHANUMERIC).unwrap(), "");
    }

    #[test]
    fn hex_is_two_digits_a_byte() {
        let h = hex(16).unwrap();
        assert_eq!(h.len(), 32);
        assert!(h.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}
