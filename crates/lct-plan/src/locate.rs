//! Where a field is in a plan's text: the line and column of the value at a path
//! (`groups`, `server`, `hostname`), for errors found after parsing (a template that does
//! not end) to name the place as parse errors do.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The message the walk stops with when it reaches the field (the YAML reader then
/// attaches the field's position to it).
const FOUND: &str = "lct-locate: found";

/// The line and column (from 1) of the value at `path` in the YAML `text`; the nearest
/// enclosing field's when the field itself is not written (a default); (0, 0) when the
/// text has neither.
pub fn locate(text: &str, path: &[String]) -> (usize, usize) {
    for len in (1..=path.len()).rev() {
        let de = serde_norway::Deserializer::from_str(text);
        if let Err(e) = (Seek { path: &path[..len] }).deserialize(de)
            && e.to_string().contains(FOUND)
            && let Some(at) = e.location()
        {
            return (at.line(), at.column());
        }
    }
    (0, 0)
}

/// Walks the document down `path` (mapping keys; sequence indexes as digits) and fails
/// with [`FOUND`] at the value it names.
struct Seek<'p> {
    path: &'p [String],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Seek<'_> {
    fn here<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() { Err(E::custom(FOUND)) } else { Ok(()) }
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        let mut index = 0usize;
        loop {
            let found = if self.path[0] == index.to_string() {
                seq.next_element_seed(Seek { path: &self.path[1..] })?
            } else {
                seq.next_element::<IgnoredAny>()?.map(drop)
            };
            if found.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        while let Some(key) = map.next_key::<serde_norway::Value>()? {
            let key = match key {
                serde_norway::Value::String(s) => s,
                other => serde_norway::to_string(&other).unwrap_or_default().trim().to_string(),
            };
            if key == self.path[0] {
                map.next_value_seed(Seek { path: &self.path[1..] })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, path: &str) -> (usize, usize) {
        locate(text, &path.split('.').map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn fields_are_found_where_they_are_written() {
        let text = "description: x\ngroups:\n  server:\n    count: \"{{ n }}\"\n    hostname: h\nfirewall:\n  admin:\n    - 10.0.0.0/8\n    - \"{{ a }}\"\noffers: {a: b, c: \"{{ d }}\"}\n";
        assert_eq!(at(text, "groups.server.count"), (4, 12));
        assert_eq!(at(text, "groups.server.hostname"), (5, 15));
        assert_eq!(at(text, "firewall.admin.1"), (9, 7));
        assert_eq!(at(text, "offers.c"), (10, 19));
        // Not written (a default): the nearest field that is.
        assert_eq!(at(text, "names.domain"), (0, 0));
        assert_eq!(at(text, "groups.server.image"), (4, 5));
    }
}
