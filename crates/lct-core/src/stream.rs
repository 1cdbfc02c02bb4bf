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
use std::io::{self, BufRead, BufWriter, Read, Write};

use serde::{Deserialize, Serialize};

use crate::record::Record;

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

/// Something kept of a record, with the number of the line it came from.
pub type Numbered<U> = (usize, U);

/// How much input [`read_kind_parallel`] hands to a parser at once: for 31 MiB, 0.5 and
/// 1 MiB measured alike, 2 and 4 MiB slower (a core idles while the last chunk is parsed).
const CHUNK: usize = 1 << 20;

/// Reads a whole input and parses every line of kind `T` on all cores, handing each record
/// to `keep` as soon as it is parsed, with its text (so a caller can keep only what it
/// needs, or the line to pass on); what `keep` returns comes back with the line number. The
/// lines of other kinds come back as [`Line`]s. The calling thread reads the input in
/// chunks of whole lines (1 MiB) and hands them to one parser thread per core, reading on
/// while they parse; buffers are reused, so memory stays bounded by what `keep` keeps.
/// Errors are those of the first bad line, in input order, as [`read_kind`] reports them.
pub fn read_kind_parallel<T: Record, U: Send>(
    input: impl io::Read,
    keep: impl Fn(T, &str) -> U + Sync,
) -> Result<(Vec<Numbered<U>>, Vec<Line>), StreamError> {
    read_kind_parallel_with::<T, U>(input, |_| None, keep)
}

/// [`read_kind_parallel`] with a fast path: `quick` gets the text of each line of kind `T`
/// (of a version this build reads) first and may return what to keep straight from it,
/// e.g. by borrowing the few fields it needs; where it returns `None`, the line is parsed
/// as a whole `T` and handed to `keep`, and a bad line is reported as usual. `quick` must
/// return `None` for every line that is not a valid `T`.
pub fn read_kind_parallel_with<T: Record, U: Send>(
    mut input: impl io::Read,
    quick: impl Fn(&str) -> Option<U> + Sync,
    keep: impl Fn(T, &str) -> U + Sync,
) -> Result<(Vec<Numbered<U>>, Vec<Line>), StreamError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let prefix = prefix_of::<T>();
    let parser =
        PartParser { prefix: &prefix, quick: &quick, keep: &keep, _kind: std::marker::PhantomData::<fn() -> T> };
    // This thread reads chunks of whole lines and hands them to one parser per core; parsed
    // chunks come back with their buffers, which are read into again.
    let (work, jobs) = std::sync::mpsc::sync_channel::<(usize, Vec<u8>)>(threads);
    let jobs = std::sync::Mutex::new(jobs);
    let (finished, done) = std::sync::mpsc::channel::<(usize, Part<U>, Vec<u8>)>();
    let (parts, read_error) = std::thread::scope(|s| {
        for _ in 0..threads {
            let (jobs, parser, finished) = (&jobs, &parser, finished.clone());
            s.spawn(move || {
                loop {
                    let job = jobs.lock().expect("parsers do not panic").recv();
                    let Ok((index, chunk)) = job else { return };
                    let part = parser.parse_bytes(&chunk);
                    if finished.send((index, part, chunk)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(finished);
        let mut parts: Vec<Option<Part<U>>> = Vec::new();
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let mut carry: Vec<u8> = Vec::new();
        let mut read_error = None;
        loop {
            let mut chunk = spare.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK + 4096));
            chunk.clear();
            chunk.append(&mut carry);
            // A chunk, or more while it holds no line end (a line longer than a chunk: the
            // target doubles, so a long line costs reading it, not reading it over and over).
            let mut want = CHUNK;
            let eof = loop {
                let before = chunk.len();
                match fill(&mut input, &mut chunk, want) {
                    Err(e) => {
                        read_error = Some((parts.len(), e));
                        break true;
                    }
                    Ok(true) => break true,
                    Ok(false) if chunk[before..].contains(&b'\n') => break false,
                    Ok(false) => want = chunk.len() * 2,
                }
            };
            // Whole lines only; the rest starts the next chunk.
            let cut = if eof { chunk.len() } else { chunk.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) };
            carry.extend_from_slice(&chunk[cut..]);
            chunk.truncate(cut);
            if chunk.is_empty() {
                spare.push(chunk);
            } else {
                parts.push(None);
                work.send((parts.len() - 1, chunk)).expect("parsers wait for work");
            }
            for (index, part, chunk) in done.try_iter() {
                parts[index] = Some(part);
                spare.push(chunk);
            }
            if eof {
                break;
            }
        }
        drop(work);
        for (index, part, _) in done {
            parts[index] = Some(part);
        }
        (parts, read_error)
    });
    // The chunks before a read error count (one of them may hold an earlier bad line).
    let readable = read_error.as_ref().map_or(parts.len(), |(at, _)| *at);
    let mut merged = Merged::default();
    for part in parts.into_iter().take(readable) {
        merged.add(part.expect("every chunk is parsed"))?;
    }
    if let Some((_, e)) = read_error {
        return Err(StreamError::new(merged.lines + 1, None, format!("read error: {e}")));
    }
    Ok(merged.finish())
}

/// What our own writer puts first: lines that start so need no separate look at their head.
fn prefix_of<T: Record>() -> String {
    format!("{{\"kind\":\"{}\",\"v\":{},", T::KIND, T::VERSION)
}

/// The parts parsed so far, in input order, their line numbers made absolute.
struct Merged<U> {
    kept: Vec<Vec<Numbered<U>>>,
    others: Vec<Line>,
    /// Lines before the next part.
    lines: usize,
}

impl<U> Default for Merged<U> {
    fn default() -> Self {
        Merged { kept: Vec::new(), others: Vec::new(), lines: 0 }
    }
}

impl<U> Merged<U> {
    /// The next part; the first error, in input order, ends the reading.
    fn add(&mut self, mut part: Part<U>) -> Result<(), StreamError> {
        let base = self.lines;
        if let Some(mut e) = part.error {
            e.line += base;
            return Err(e);
        }
        for (n, _) in &mut part.kept {
            *n += base;
        }
        self.kept.push(part.kept);
        self.others.extend(part.others.into_iter().map(|mut l| {
            l.number += base;
            l
        }));
        self.lines += part.lines;
        Ok(())
    }

    fn finish(self) -> (Vec<Numbered<U>>, Vec<Line>) {
        let total: usize = self.kept.iter().map(Vec::len).sum();
        let mut parts = self.kept.into_iter();
        // Grown in place (a large allocation is remapped, not copied), the others appended.
        let mut all = parts.next().unwrap_or_default();
        all.reserve(total - all.len());
        for part in parts {
            all.extend(part);
        }
        (all, self.others)
    }
}

/// Reads until `buf` holds about `size` bytes; true at the end of the input.
fn fill(input: &mut impl io::Read, buf: &mut Vec<u8>, size: usize) -> io::Result<bool> {
    let want = size.saturating_sub(buf.len()).max(4096) as u64;
    let before = buf.len();
    input.take(want).read_to_end(buf)?;
    Ok(buf.len() - before < want as usize)
}

struct Part<U> {
    kept: Vec<Numbered<U>>,
    others: Vec<Line>,
    lines: usize,
    error: Option<StreamError>,
}

struct PartParser<'a, T, Q, K> {
    prefix: &'a str,
    quick: &'a Q,
    keep: &'a K,
    _kind: std::marker::PhantomData<fn() -> T>,
}

impl<T: Record, U, Q: Fn(&str) -> Option<U>, K: Fn(T, &str) -> U> PartParser<'_, T, Q, K> {
    /// Checks that a part is UTF-8 (on the part's own thread) and parses it; a line that is
    /// not UTF-8 is reported unless a line before it has another fault.
    fn parse_bytes(&self, bytes: &[u8]) -> Part<U> {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.parse(text),
            Err(e) => {
                let line_start = bytes[..e.valid_up_to()].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
                let valid = std::str::from_utf8(&bytes[..line_start]).expect("checked up to here");
                let mut part = self.parse(valid);
                if part.error.is_none() {
                    part.error = Some(StreamError::new(part.lines + 1, None, "not valid UTF-8"));
                }
                part
            }
        }
    }

    fn parse(&self, text: &str) -> Part<U> {
        let mut part = Part { kept: Vec::with_capacity(text.len() / 256), others: Vec::new(), lines: 0, error: None };
        for raw in text.split_inclusive('\n') {
            part.lines += 1;
            let number = part.lines;
            let fast = raw.starts_with(self.prefix);
            let line = if fast {
                Line { number, text: String::new(), kind: String::new(), version: T::VERSION }
            } else {
                match Line::from_text(number, raw) {
                    Ok(Some(line)) => line,
                    Ok(None) => continue,
                    Err(e) => {
                        part.error = Some(e);
                        return part;
                    }
                }
            };
            if !fast && !line.is::<T>() {
                part.others.push(line);
                continue;
            }
            let text = raw.trim_end_matches(['\n', '\r']);
            if line.version <= T::VERSION
                && let Some(u) = (self.quick)(text)
            {
                part.kept.push((number, u));
                continue;
            }
            let parsed = match serde_json::from_str::<T>(text) {
                Ok(mut r) if line.version <= T::VERSION => {
                    r.strip_envelope();
                    Ok(r)
                }
                _ => Line { text: text.to_string(), ..line }.parse::<T>(),
            };
            match parsed {
                // Numbered within the part; the merge adds the lines before it.
                Ok(r) => part.kept.push((number, (self.keep)(r, text))),
                Err(e) => {
                    part.error = Some(e);
                    return part;
                }
            }
        }
        part
    }
}

#[cfg(test)]
mod parallel_tests {
    use super::*;
    use crate::record::Node;

    fn node(i: usize) -> String {
        format!(
            r#"{{"kind":"node","v":1,"cluster":"c","group":"g","name":"n-{i}","provider":"local","status":"running","private_ipv4":["10.0.{}.{}"]}}"#,
            i / 256,
            i % 256
        )
    }

    #[test]
    fn parallel_reading_matches_sequential_reading() {
        // Over 6 MiB: several chunks, parsed on several threads, some lines long.
        let mut input = String::new();
        for i in 0..40_000 {
            input.push_str(&node(i));
            input.push('\n');
            if i % 700 == 0 {
                input.push_str("{\"kind\":\"other\",\"i\": ");
                input.push_str(&i.to_string());
                input.push_str("}\n\n");
            }
            if i % 9_000 == 0 {
                input.push_str(&format!("{{\"kind\":\"other\",\"long\":\"{}\"}}\n", "x".repeat(CHUNK + 10)));
            }
        }
        let (seq, seq_others) = read_kind::<Node>(input.as_bytes()).unwrap();
        let (par, par_others) = read_kind_parallel::<Node, Node>(input.as_bytes(), |n, _| n).unwrap();
        assert_eq!(seq, par.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>());
        // Line numbers count every line, blank ones and other kinds included.
        assert_eq!((par[0].0, par[1].0, par[2].0), (1, 5, 6));
        let numbers = |l: &[Line]| l.iter().map(|l| (l.number, l.text.clone())).collect::<Vec<_>>();
        assert_eq!(numbers(&seq_others), numbers(&par_others));
    }

    #[test]
    fn parallel_reading_reports_the_first_bad_line() {
        // Far apart, so that the bad lines land in different chunks, parsed at the same time.
        let mut input = String::new();
        for i in 0..30_000 {
            let line = node(i);
            let line = match i {
                1234 => line.replace("10.0.4.210", "10.0.4.999"),
                2500 => "not json".to_string(),
                25_000 => "not json either".to_string(),
                _ => line,
            };
            input.push_str(&line);
            input.push('\n');
        }
        let seq = read_kind::<Node>(input.as_bytes()).unwrap_err();
        let par = read_kind_parallel::<Node, Node>(input.as_bytes(), |n, _| n).unwrap_err();
        assert_eq!(seq, par);
        assert_eq!((par.line, par.field.as_deref()), (1235, Some("private_ipv4[0]")));
        // A line that is not UTF-8 is reported in order too.
        let mut bytes = input.clone().into_bytes();
        let at = input.match_indices('\n').nth(2799).unwrap().0 + 5;
        bytes[at] = 0xff;
        let e = read_kind_parallel::<Node, Node>(&bytes[..], |n, _| n).unwrap_err();
        assert_eq!(e.line, 1235, "{e}");
        let fixed = input.replace("10.0.4.999", "10.0.4.210").replace("not json", &node(2500));
        let at = fixed.match_indices('\n').nth(2799).unwrap().0 + 5;
        let mut bytes = fixed.into_bytes();
        bytes[at] = 0xff;
        let e = read_kind_parallel::<Node, Node>(&bytes[..], |n, _| n).unwrap_err();
        assert_eq!(e, read_kind::<Node>(&bytes[..]).unwrap_err());
        assert_eq!((e.line, e.message.as_str()), (2801, "not valid UTF-8"));
        // With the early ones mended, the one in a late chunk.
        let late = input.replace("10.0.4.999", "10.0.4.210").replace("not json\n", &format!("{}\n", node(2500)));
        let e = read_kind_parallel::<Node, Node>(late.as_bytes(), |n, _| n).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (25_001, "not a JSON object"));
        // The fast path still checks versions.
        let newer = node(1).replace("\"v\":1", "\"v\":2");
        let e = read_kind_parallel::<Node, Node>(newer.as_bytes(), |n, _| n).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("v"));
    }
}
