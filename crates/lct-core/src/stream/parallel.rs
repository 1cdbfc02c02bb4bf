//! Reading many records fast: the input in chunks of whole lines, parsed on all cores while
//! the next chunk is read; results merged in input order.

use std::io::{self, Read};

use super::{Line, StreamError};
use crate::record::Record;

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
mod tests {
    use super::*;
    use crate::record::Node;
    use crate::stream::read_kind;

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
