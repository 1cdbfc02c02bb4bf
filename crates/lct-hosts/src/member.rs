//! What rendering needs of a node, and how to read it from a node record quickly.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use lct_core::record::{Name, Node, ProviderName, Status, check_label};
use lct_core::scan::Scanner;
use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::StrDeserializer;

/// What rendering needs of a node: its names and first address of each kind. Small, so
/// 100,000 of them fit in a few MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub cluster: Name,
    pub name: Name,
    pub private_ipv4: Option<Ipv4Addr>,
    pub private_ipv6: Option<Ipv6Addr>,
    pub public_ipv4: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
}

impl From<Node> for Member {
    fn from(n: Node) -> Member {
        Member {
            private_ipv4: n.private_ipv4.first().copied(),
            private_ipv6: n.private_ipv6.first().copied(),
            public_ipv4: n.public_ipv4.first().copied(),
            public_ipv6: n.public_ipv6.first().copied(),
            cluster: n.cluster,
            name: n.name,
        }
    }
}

impl From<&Node> for Member {
    fn from(n: &Node) -> Member {
        Member::from(n.clone())
    }
}

impl Member {
    /// The member of a node record's JSON text, read without building the whole [`Node`]:
    /// strings are borrowed from the text and only the first address of each list is kept.
    /// Every field is still checked as [`Node`] checks it; `None` when the text is not a valid
    /// node record, or when [`Scanner`] declines it (e.g. JSON escapes in a string): then
    /// read it as a [`Node`], which also says what is wrong. A test keeps the two in step.
    pub fn from_node_json(text: &str) -> Option<Member> {
        let mut s = Scanner::new(text);
        let mut seen = 0u32;
        let (mut cluster, mut group, mut name, mut provider, mut status) = (None, None, None, false, false);
        let (mut private_ipv4, mut private_ipv6, mut public_ipv4, mut public_ipv6) = (None, None, None, None);
        s.object(|s, key| {
            let Some(bit) = field_bit(key) else {
                return s.skip_value(); // serde ignores unknown fields
            };
            if seen & bit != 0 {
                return None; // serde refuses a field given twice
            }
            seen |= bit;
            match key {
                "cluster" => cluster = Some(label(s)?),
                "group" => group = Some(label(s)?),
                "name" => name = Some(label(s)?),
                "provider" => provider = word::<ProviderName>(s)?,
                "status" => status = word::<Status>(s)?,
                "provider_id" | "region" => drop(s.string()?),
                "private_ipv4" => private_ipv4 = first_address(s, parse_ipv4)?,
                "public_ipv4" => public_ipv4 = first_address(s, parse_ipv4)?,
                "private_ipv6" => private_ipv6 = first_address(s, |a| a.parse().ok())?,
                "public_ipv6" => public_ipv6 = first_address(s, |a| a.parse().ok())?,
                "tags" => s.array(|s| s.string().map(drop))?,
                "access" => {
                    if !s.null() {
                        access(s)?;
                    }
                }
                // Volumes are rare: only none is read here.
                "volumes" => s.array(|_| None)?,
                _ => unreachable!("every field is matched"),
            }
            Some(())
        })?;
        s.end()?;
        // The fields serde requires.
        (group.is_some() && provider && status).then_some(())?;
        Some(Member {
            cluster: Name::from_str(cluster?).ok()?,
            name: Name::from_str(name?).ok()?,
            private_ipv4,
            private_ipv6,
            public_ipv4,
            public_ipv6,
        })
    }
}

/// A bit for each field of a node record, as [`Node`] names them.
fn field_bit(key: &str) -> Option<u32> {
    let index = match key {
        "cluster" => 0,
        "group" => 1,
        "name" => 2,
        "provider" => 3,
        "provider_id" => 4,
        "region" => 5,
        "status" => 6,
        "private_ipv4" => 7,
        "public_ipv4" => 8,
        "private_ipv6" => 9,
        "public_ipv6" => 10,
        "tags" => 11,
        "access" => 12,
        "volumes" => 13,
        _ => return None,
    };
    Some(1 << index)
}

fn label<'a>(s: &mut Scanner<'a>) -> Option<&'a str> {
    let text = s.string()?;
    check_label(text).ok().map(|_| text)
}

/// A unit variant of a serde enum, by its serialized name; `Some(true)` when it is one.
fn word<'de, T: Deserialize<'de>>(s: &mut Scanner<'de>) -> Option<bool> {
    let text = s.string()?;
    let d: StrDeserializer<'_, serde::de::value::Error> = text.into_deserializer();
    T::deserialize(d).ok().map(|_| true)
}

/// Every element parsed; the first one kept.
fn first_address<T>(s: &mut Scanner<'_>, parse: impl Fn(&str) -> Option<T>) -> Option<Option<T>> {
    let mut first = None;
    s.array(|s| {
        let address = parse(s.string()?)?;
        first.get_or_insert(address);
        Some(())
    })?;
    Some(first)
}

/// An IPv4 address in dotted-decimal form, exactly as [`Ipv4Addr`]'s `FromStr` reads it
/// (four decimal numbers up to 255, no leading zeros), in a fraction of its time.
fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?.as_bytes();
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
            return None;
        }
        let mut value = 0u16;
        for &digit in part {
            if !digit.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(digit - b'0');
        }
        *octet = u8::try_from(value).ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// An access object, checked as serde reads [`lct_core::record::Access`]: a method, and the
/// field that method needs.
fn access(s: &mut Scanner<'_>) -> Option<()> {
    let (mut method, mut netns, mut host, mut seen) = (None, false, false, 0u8);
    s.object(|s, key| {
        let bit = match key {
            "method" => 1,
            "netns" => 2,
            "host" => 4,
            "port" => 8,
            "user" => 16,
            _ => return s.skip_value(),
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        match key {
            "method" => method = Some(s.string()?),
            // The others are optional: null is as good as absent.
            _ if s.null() => {}
            "port" => drop(s.u16()?),
            _ => {
                s.string()?;
                netns |= key == "netns";
                host |= key == "host";
            }
        }
        Some(())
    })?;
    match method? {
        "netns" if netns => Some(()),
        "ssh" if host => Some(()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"kind":"node","v":1,"cluster":"c0","group":"node","name":"n-0","provider":"local","provider_id":"0","region":"local","status":"running","private_ipv4":["10.0.0.1","10.0.0.2"],"public_ipv4":["100.64.0.0"],"private_ipv6":[],"public_ipv6":["2001:db8::1"],"tags":["a"],"access":{"method":"ssh","host":"h","port":22,"user":null}}"#;

    /// What reading the whole node gives, the reference.
    fn by_serde(text: &str) -> Option<Member> {
        serde_json::from_str::<Node>(text).ok().map(Member::from)
    }

    #[test]
    fn ipv4_is_read_as_the_standard_library_reads_it() {
        let texts = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1..3.4",
            "",
            ".1.2.3",
            "1.2.3.",
            "+1.2.3.4",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1000.1.1.1",
            "0.00.0.0",
            "a.b.c.d",
            "1.2.3.٣",
            "192.168.100.200",
            "00.0.0.0",
            "0.0.0.0.",
        ];
        for text in texts {
            assert_eq!(parse_ipv4(text), text.parse().ok(), "{text:?}");
        }
        for i in 0..70_000u32 {
            let text = format!("{}.{}.{}.{}", i % 300, (i / 7) % 260, i % 3, (i * 31) % 1000);
            assert_eq!(parse_ipv4(&text), text.parse().ok(), "{text:?}");
        }
    }

    #[test]
    fn reads_what_lct_writes() {
        let m = Member::from_node_json(LINE).expect("read");
        assert_eq!(Some(&m), by_serde(LINE).as_ref());
        assert_eq!(m.private_ipv4, Some("10.0.0.1".parse().unwrap()));
        let node = serde_json::from_str::<Node>(LINE).unwrap();
        let written = lct_core::stream::to_line(&node);
        assert_eq!(Member::from_node_json(&written), Some(m));
    }

    /// Mutations of a node line: whatever the quick reader accepts, serde accepts too and
    /// reads the same; what it declines, the caller reads with serde.
    #[test]
    fn never_accepts_what_serde_refuses() {
        let pieces = [
            "",
            "\"",
            ",",
            ":",
            "{",
            "}",
            "[",
            "]",
            "null",
            "1",
            "-1",
            "70000",
            "1.5",
            "\\",
            "\t",
            "x",
            "X",
            "é",
            " ",
            "\"running\"",
            "\"bogus\"",
            "\"netns\"",
            "\"ssh\"",
            "\"host\":\"h\"",
            "\"cluster\":\"c\"",
            "\"volumes\":[]",
            "\"volumes\":null",
            "\"port\":-0",
            "\"10.0.0.300\"",
            "\"::1\"",
            "true",
        ];
        // Up to three edits of the line: at a place, cut up to 5 bytes, put in a piece.
        let edit = (0.0..1.0f64, 0..6usize, 0..pieces.len());
        let edits = proptest::collection::vec(edit, 1..=3);
        let config = proptest::test_runner::Config { cases: 20_000, failure_persistence: None, ..Default::default() };
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let (accepted, declined) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        runner
            .run(&edits, |edits| {
                let mut text = LINE.to_string();
                for (place, cut, piece) in edits {
                    let at = (place * (text.len() + 1) as f64) as usize;
                    let at = (0..=at.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap();
                    let end = (at..=(at + cut).min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap();
                    text.replace_range(at..end, pieces[piece]);
                }
                match Member::from_node_json(&text) {
                    Some(m) => {
                        accepted.set(accepted.get() + 1);
                        proptest::prop_assert_eq!(Some(m), by_serde(&text), "{}", text);
                    }
                    None => declined.set(declined.get() + 1),
                }
                Ok(())
            })
            .unwrap();
        let (accepted, declined) = (accepted.get(), declined.get());
        assert!(accepted > 1000 && declined > 1000, "{accepted} accepted, {declined} declined");
    }
}
