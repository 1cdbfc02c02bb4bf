//! A strict, allocation-free JSON scanner for the hot path of tools that read many records.
//!
//! serde_json builds what a record type asks for; a tool that needs three fields of 100,000
//! node records spends most of its time on the rest. [`Scanner`] walks one JSON text,
//! handing out borrowed strings and skipping whatever the caller does not want, and checks
//! the JSON grammar on the way (RFC 8259: no trailing commas, no control characters in
//! strings, numbers as the grammar spells them, nothing after the value). It declines (every
//! method returns `None`) rather than explains: strings with escapes, nesting deeper than
//! serde_json accepts, and anything malformed. The caller then reads the text with serde,
//! which handles the rest and names what is wrong.

/// How deep [`Scanner::skip_value`] goes (serde_json's limit is 128).
const MAX_DEPTH: usize = 100;

/// The length of a string's contents up to its closing quote; `None` at an escape, a
/// control character or the end of the text. Eight bytes at a time: most strings of a
/// record are short, but keys and values together are half of its bytes.
#[inline]
fn string_length(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytes equal to zero get their high bit set (the lowest such byte exactly; bytes above
    // it may be marked too, which does not matter when only the lowest is used).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let special = zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
        if special != 0 {
            let i = at + special.trailing_zeros() as usize / 8;
            return (bytes[i] == b'"').then_some(i);
        }
        at += 8;
    }
    for (i, &b) in bytes.iter().enumerate().skip(at) {
        match b {
            b'"' => return Some(i),
            b'\\' | 0..0x20 => return None,
            _ => {}
        }
    }
    None
}

/// A cursor over one JSON text.
pub struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Self {
        Scanner { text, pos: 0 }
    }

    #[inline]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes().get(self.pos).copied()
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.skip_whitespace();
        self.bytes()[self.pos..].starts_with(word.as_bytes()).then(|| self.pos += word.len())
    }

    /// Consumes `null` if it comes next.
    pub fn null(&mut self) -> bool {
        self.literal("null").is_some()
    }

    /// A string without escapes.
    #[inline]
    pub fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = start + string_length(&self.bytes()[start..])?;
        self.pos = end + 1;
        Some(&self.text[start..end])
    }

    /// An object: `field` is called with each key and must consume its value.
    pub fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.sequence(b'{', b'}', |s| {
            let key = s.string()?;
            s.eat(b':')?;
            field(s, key)
        })
    }

    /// An array: `item` is called for each element and must consume it.
    pub fn array(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.sequence(b'[', b']', item)
    }

    /// `open`, members separated by commas, `close`; `member` consumes each.
    fn sequence(&mut self, open: u8, close: u8, mut member: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(open)?;
        if self.eat(close).is_some() {
            return Some(());
        }
        loop {
            member(self)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b if b == close => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A whole number from 0 to `u16::MAX`.
    pub fn u16(&mut self) -> Option<u16> {
        let number = self.number()?;
        // serde_json reads `1.0`, `1e2` and `-0` as floats, which a u16 does not take.
        if number.bytes().all(|b| b.is_ascii_digit()) { number.parse().ok() } else { None }
    }

    fn number(&mut self) -> Option<&'a str> {
        self.skip_whitespace();
        let start = self.pos;
        let bytes = self.bytes();
        let digits = |pos: &mut usize| {
            let from = *pos;
            while bytes.get(*pos).is_some_and(u8::is_ascii_digit) {
                *pos += 1;
            }
            *pos > from
        };
        let mut pos = self.pos;
        if bytes.get(pos) == Some(&b'-') {
            pos += 1;
        }
        match bytes.get(pos)? {
            b'0' => pos += 1,
            b'1'..=b'9' => {
                digits(&mut pos);
            }
            _ => return None,
        }
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            digits(&mut pos).then_some(())?;
        }
        if let Some(b'e' | b'E') = bytes.get(pos) {
            pos += 1;
            if let Some(b'+' | b'-') = bytes.get(pos) {
                pos += 1;
            }
            digits(&mut pos).then_some(())?;
        }
        self.pos = pos;
        Some(&self.text[start..pos])
    }

    /// Any value, checked and passed over.
    pub fn skip_value(&mut self) -> Option<()> {
        self.skip_nested(0)
    }

    fn skip_nested(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|s, _| s.skip_nested(depth + 1)),
            b'[' => self.array(|s| s.skip_nested(depth + 1)),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => self.number().map(drop),
        }
    }

    /// Nothing but whitespace is left.
    pub fn end(&mut self) -> Option<()> {
        (self.peek().is_none()).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skips(text: &str) -> bool {
        let mut s = Scanner::new(text);
        s.skip_value().and_then(|_| s.end()).is_some()
    }

    #[test]
    fn agrees_with_serde_json_on_what_it_accepts() {
        let valid = [
            r#"{"a":[1,-2.5e+3,0,true,false,null,{"b":{}}],"c":"d é","e":[]}"#,
            " { \"a\" : 1 } \n",
            "0",
            "-0.0e0",
            r#""x""#,
        ];
        let invalid = [
            r#"{"a":1,}"#,
            r#"[1,]"#,
            "01",
            "1.",
            "1e",
            "-",
            "+1",
            ".5",
            r#"{"a" 1}"#,
            r#"{"a":1"#,
            r#"{"a":1} x"#,
            "\"a\tb\"",
            "tru",
            "nul",
            r#"{a:1}"#,
            "",
        ];
        for text in valid {
            assert!(serde_json::from_str::<serde_json::Value>(text).is_ok(), "{text}");
            assert!(skips(text), "{text}");
        }
        for text in invalid {
            assert!(serde_json::from_str::<serde_json::Value>(text).is_err(), "{text}");
            assert!(!skips(text), "{text}");
        }
        // Declined although valid: the caller falls back to serde.
        assert!(!skips(r#""a\"b""#));
        assert!(!skips(&"[".repeat(200)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]
        /// The word-at-a-time scan finds what a byte loop finds: the closing quote, or
        /// nothing before an escape or a control byte.
        #[test]
        fn string_length_matches_a_plain_loop(bytes in proptest::collection::vec(proptest::prop_oneof![
            3 => b'a'..=b'z',
            1 => proptest::sample::select(vec![b'"', b'\\', 0x1f, 0x20, 0x7f, 0x80, 0xa2, 0xdc, 0xff, 0x00, b'!', b'#', 0x9f]),
        ], 0..40)) {
            let plain = |bytes: &[u8]| {
                for (i, &b) in bytes.iter().enumerate() {
                    match b {
                        b'"' => return Some(i),
                        b'\\' | 0..0x20 => return None,
                        _ => {}
                    }
                }
                None
            };
            proptest::prop_assert_eq!(string_length(&bytes), plain(&bytes));
        }
    }

    #[test]
    fn reads_strings_and_ports() {
        let mut s = Scanner::new(r#"{"name":"zk-1","port":2181,"big":70000,"float":1.0}"#);
        let mut seen = Vec::new();
        s.object(|s, key| {
            match key {
                "name" => seen.push(s.string()?.to_string()),
                "port" => seen.push(s.u16()?.to_string()),
                "big" => assert_eq!(s.u16(), None),
                _ => assert_eq!(s.u16(), None),
            }
            Some(())
        });
        assert_eq!(seen, ["zk-1", "2181"]);
    }
}
