//! JSON lines in and out.
//!
//! Each line is one JSON object with a `kind` (a string) and a schema version `v` (a
//! number; a line without `v` is version 1). A tool reads every line, takes the kinds it
//! knows with [`Line::parse`], and writes every other line back out byte for byte with
//! [`Writer::passthrough`], in order. Blank lines are skipped.
//!
//! Errors name the line number and, where there is one, the field:
//! `line 3: field private_ipv4[0]: invalid IPv4 address syntax`.

use std::fmt;
use std::io::{self, BufRead, BufWriter, Write};

use serde::{Deserialize, Serialize};

use crate::record::Record;

mod parallel;
pub use parallel::{Numbered, read_kind_parallel, read_kind_parallel_with};

/// A line that could not be read as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StreamError {
    /// 1-based line number in the input.
    pub line: usize,
    /// Path of the offending field (`name`, `access.port`, `public_ipv4[1]`), if known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "line {}: field {}: {}", self.line, field, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

impl StreamError {
    fn new(line: usize, field: Option<&str>, message: impl Into<String>) -> Self {
        StreamError { line, field: field.map(str::to_string), message: message.into() }
    }
}

/// One line of input: its number, its exact text and its kind.
#[derive(Debug, Clone)]
pub struct Line {
    pub number: usize,
    pub text: String,
    pub kind: String,
    pub version: u32,
}

#[derive(Deserialize)]
struct Head {
    kind: Option<serde_json::Value>,
    v: Option<serde_json::Value>,
}

impl Line {
    /// Reads one line of text; `Ok(None)` for a blank line.
    pub fn from_text(number: usize, text: &str) -> Result<Option<Line>, StreamError> {
        let trimmed = text.trim_end_matches(['\n', '\r']);
        if trimmed.trim().is_empty() {
            return Ok(None);
        }
        if !trimmed.trim_start().starts_with('{') {
            return Err(StreamError::new(number, None, "not a JSON object"));
        }
        let head: Head = match serde_json::from_str(trimmed) {
            Ok(h) => h,
            Err(e) if e.is_data() => {
                return Err(StreamError::new(number, None, "not a JSON object"));
            }
            Err(e) => {
                return Err(StreamError::new(number, None, format!("not valid JSON: {e}")));
            }
        };
        let kind = match head.kind {
            Some(serde_json::Value::String(k)) if !k.is_empty() => k,
            Some(_) => {
                return Err(StreamError::new(number, Some("kind"), "must be a non-empty string"));
            }
            None => {
                return Err(StreamError::new(number, Some("kind"), "missing (every line needs a kind)"));
            }
        };
        let version = match head.v {
            None => 1,
            Some(serde_json::Value::Number(n)) => match n.as_u64() {
                Some(v) if (1..=u32::MAX as u64).contains(&v) => v as u32,
                _ => {
                    return Err(StreamError::new(number, Some("v"), "must be a whole number from 1"));
                }
            },
            Some(_) => return Err(StreamError::new(number, Some("v"), "must be a number")),
        };
        Ok(Some(Line { number, text: trimmed.to_string(), kind, version }))
    }

    pub fn is<T: Record>(&self) -> bool {
        self.kind == T::KIND
    }

    /// Parses the line as a `T`, checking its version.
    pub fn parse<T: Record>(&self) -> Result<T, StreamError> {
        if self.version > T::VERSION {
            return Err(StreamError::new(
                self.number,
                Some("v"),
                format!(
                    "{} records of version {} are newer than this build reads (up to {})",
                    T::KIND,
                    self.version,
                    T::VERSION
                ),
            ));
        }
        // The fast path: plain serde_json. Only a line that fails is parsed again, more
        // slowly, to name the field at fault.
        let mut record: T = match serde_json::from_str(&self.text) {
            Ok(r) => r,
            Err(_) => return Err(self.explain::<T>()),
        };
        record.strip_envelope();
        Ok(record)
    }

    /// The error of parsing this line as a `T`, with the path of the field at fault.
    fn explain<T: Record>(&self) -> StreamError {
        match from_str_with_path::<T>(&self.text) {
            Ok(_) => StreamError::new(self.number, None, "unreadable record"),
            Err((field, message)) => StreamError { line: self.number, field, message },
        }
    }
}

/// Parses JSON text as a `T`; on failure, the path of the field at fault (`access.port`,
/// `public_ipv4[1]`; the field itself when it is missing) and a message without serde_json's
/// position suffix. Slower than plain serde_json: use it to explain a failure.
pub fn from_str_with_path<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (Option<String>, String)> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let path = e.path().to_string();
        let mut field = (path != ".").then_some(path);
        // serde_json appends " at line 1 column N", which only confuses here.
        let mut message = e.inner().to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        // A missing field is reported at its parent: name the field itself.
        if let Some(name) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            field = Some(match field {
                Some(parent) => format!("{parent}.{name}"),
                None => name.to_string(),
            });
            message = "missing".into();
        }
        (field, message)
    })
}

/// Iterates over the records of a reader.
pub struct Reader<R> {
    inner: R,
    number: usize,
    buf: String,
}

impl<R: BufRead> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader { inner, number: 0, buf: String::new() }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Line, StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            self.number += 1;
            match self.inner.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => match Line::from_text(self.number, &self.buf) {
                    Ok(Some(line)) => return Some(Ok(line)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                },
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Some(Err(StreamError::new(self.number, None, "not valid UTF-8")));
                }
                Err(e) => {
                    return Some(Err(StreamError::new(self.number, None, format!("read error: {e}"))));
                }
            }
        }
    }
}

/// Reads every line first, so a tool can refuse the whole input before acting on any of it.
pub fn read_all(input: impl BufRead) -> Result<Vec<Line>, StreamError> {
    Reader::new(input).collect()
}

/// Reads a whole input and parses every line of kind `T`, passing the rest back.
pub fn read_kind<T: Record>(input: impl BufRead) -> Result<(Vec<T>, Vec<Line>), StreamError> {
    let mut records = Vec::new();
    let mut others = Vec::new();
    for line in Reader::new(input) {
        let line = line?;
        if line.is::<T>() {
            records.push(line.parse::<T>()?);
        } else {
            others.push(line);
        }
    }
    Ok((records, others))
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    kind: &'static str,
    v: u32,
    #[serde(flatten)]
    record: &'a T,
}

/// Serializes a record as one JSON line (without the newline).
pub fn to_line<T: Record>(record: &T) -> String {
    let () = T::LISTED;
    serde_json::to_string(&Envelope { kind: T::KIND, v: T::VERSION, record }).expect("records always serialize")
}

/// What a filter prints: the lines it did not consume, unchanged and in order, then the
/// records it made.
pub fn write_after_passthrough<T: Record>(out: impl Write, others: &[Line], records: &[T]) -> io::Result<()> {
    let mut w = Writer::new(out);
    for line in others {
        w.passthrough(line)?;
    }
    for r in records {
        w.write(r)?;
    }
    w.flush()
}

/// Buffered JSON-lines output.
pub struct Writer<W: Write> {
    inner: BufWriter<W>,
}

impl<W: Write> Writer<W> {
    pub fn new(inner: W) -> Self {
        Writer { inner: BufWriter::with_capacity(64 * 1024, inner) }
    }

    pub fn write<T: Record>(&mut self, record: &T) -> io::Result<()> {
        let () = T::LISTED;
        serde_json::to_writer(&mut self.inner, &Envelope { kind: T::KIND, v: T::VERSION, record })?;
        self.inner.write_all(b"\n")
    }

    /// Writes a line this tool does not consume, unchanged.
    pub fn passthrough(&mut self, line: &Line) -> io::Result<()> {
        self.inner.write_all(line.text.as_bytes())?;
        self.inner.write_all(b"\n")
    }

    /// Writes a line of text as it is (a line read earlier, passed on).
    pub fn write_raw(&mut self, text: &str) -> io::Result<()> {
        self.inner.write_all(text.as_bytes())?;
        self.inner.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Node;

    const NODE: &str = r#"{"kind":"node","v":1,"cluster":"zk","group":"zookeeper","name":"zk-1","provider":"local","status":"running","private_ipv4":["192.168.128.1"]}"#;

    #[test]
    fn round_trip_and_passthrough() {
        let input = format!("{NODE}\n\n{{\"kind\":\"other\",\"x\": 1}}\n");
        let (nodes, others) = read_kind::<Node>(input.as_bytes()).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(others[0].text, "{\"kind\":\"other\",\"x\": 1}", "passthrough must be byte-exact");
        assert_eq!(others[0].number, 3);
        let line = to_line(&nodes[0]);
        assert!(line.starts_with(r#"{"kind":"node","v":1,"cluster":"zk""#), "{line}");
        let (again, _) = read_kind::<Node>(line.as_bytes()).unwrap();
        assert_eq!(again, nodes);
    }

    fn error_of(input: &str) -> StreamError {
        read_kind::<Node>(input.as_bytes()).unwrap_err()
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = error_of(&format!("{NODE}\n{{not json\n"));
        assert_eq!((e.line, e.field.as_deref()), (2, None));
        assert!(e.message.contains("not valid JSON"), "{e}");

        let e = error_of("[1,2]\n");
        assert_eq!(e.message, "not a JSON object");

        let e = error_of(r#"{"v":1}"#);
        assert_eq!(e.field.as_deref(), Some("kind"));

        let e = error_of(&NODE.replace("\"v\":1", "\"v\":7"));
        assert_eq!(e.field.as_deref(), Some("v"));
        assert!(e.to_string().contains("newer than this build"), "{e}");

        let e = error_of(&format!("{NODE}\n{}", NODE.replace("192.168.128.1", "192.168.300.1")));
        assert_eq!((e.line, e.field.as_deref()), (2, Some("private_ipv4[0]")));

        let e = error_of(&NODE.replace(r#""name":"zk-1","#, ""));
        assert_eq!(e.to_string(), "line 1: field name: missing");

        let e = error_of(&NODE.replace(r#""status":"running""#, r#""status":5"#));
        assert_eq!(e.field.as_deref(), Some("status"));

        let e = error_of(&NODE.replace("zk-1", "ZK_1"));
        assert_eq!(e.field.as_deref(), Some("name"));
        assert!(e.message.contains("not a valid host name"), "{e}");
    }
}
