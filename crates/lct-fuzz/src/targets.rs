//! The readers fuzzed, each a function of any bytes that must not panic, returning a
//! fingerprint of its outcome (the error's kind and wording without its numbers, or the
//! shape of what was read), by which the runner tells new behaviour from old.

use std::hash::{Hash, Hasher};
use std::io::Cursor;
use std::path::Path;

use lct_image::format::{Index, Kind};

/// A reader under test.
pub struct Target {
    pub name: &'static str,
    /// What it reads, for `lct-fuzz --list` and the docs.
    pub about: &'static str,
    pub run: fn(&[u8]) -> u64,
}

/// Every target, in the order runs take them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "image-file",
        about: "an image file: the footer, seek table and index (lct_image::format::Index::read), then each data extent's frame decompressed and checked (check_frame)",
        run: image_file,
    },
    Target {
        name: "image-trailer",
        about: "a trailer alone, as a repository keeps an image and a URL's trailer is read (Index::from_trailer); its root hash and seek table fixed up after mutation, to reach the entries' checks",
        run: image_trailer,
    },
    Target {
        name: "image-stream",
        about: "a stream as `lct-image send` writes it (Opened::sent), its frames read in order and checked; its trailer fixed up (root hash, seek table, offsets that tile), to reach the extents' checks",
        run: image_stream,
    },
    Target {
        name: "dns-transfer",
        about: "a zone transfer's message as lct-dns's client reads it (wire::read_answers, the batch as text and tables, read_tsig)",
        run: dns_transfer,
    },
    Target {
        name: "dns-query",
        about: "a query as lct-dns's server reads it (the fast path's parser, then net's full parse), both views, UDP and TCP",
        run: dns_query,
    },
    Target { name: "plan", about: "a cluster plan's text (lct_plan::parse, then validate)", run: plan },
];

/// The target called `name`.
pub fn by_name(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// A fingerprint of `what`: its text without digits (numbers vary, kinds of outcome do not).
fn fingerprint(what: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    what.chars().filter(|c| !c.is_ascii_digit()).collect::<String>().hash(&mut hasher);
    hasher.finish()
}

fn outcome<T, E: std::fmt::Display>(result: &Result<T, E>, ok: impl FnOnce(&T) -> String) -> u64 {
    match result {
        Ok(value) => fingerprint(&format!("ok {}", ok(value))),
        Err(e) => fingerprint(&format!("error {e}")),
    }
}

/// How big `n` is, in powers of two, without digits (which [`fingerprint`] leaves out).
fn magnitude(n: u64) -> String {
    "#".repeat(n.next_power_of_two().trailing_zeros() as usize)
}

/// The shape of an index: how many extents of each kind, its extent size.
fn shape(index: &Index) -> String {
    let data = index.extents.iter().filter(|e| e.kind == Kind::Data).count() as u64;
    format!(
        "{} {} {}",
        magnitude(data),
        magnitude(index.extents.len() as u64 - data),
        magnitude(index.manifest.extent_size)
    )
}

/// The most frames a run decompresses (each takes up to an extent's size).
const FRAMES: usize = 8;

fn image_file(bytes: &[u8]) -> u64 {
    let index = Index::read(&mut Cursor::new(bytes));
    let mut checked = String::new();
    if let Ok(index) = &index {
        for (i, e) in index.extents.iter().enumerate().filter(|(_, e)| e.kind == Kind::Data).take(FRAMES) {
            // Index::read checked that the frames tile the file.
            let frame = &bytes[e.coffset as usize..(e.coffset + u64::from(e.csize)) as usize];
            let result = lct_image::frame::check_frame(Path::new("fuzz"), i, e, frame);
            checked.push_str(if result.is_ok() { "+" } else { "-" });
        }
    }
    outcome(&index, |index| format!("{} {checked}", shape(index)))
}

fn image_trailer(bytes: &[u8]) -> u64 {
    let mut bytes = bytes.to_vec();
    crate::fixup::trailer(&mut bytes, crate::fixup::Fix { tiling: false });
    outcome(&Index::from_trailer(&bytes), shape)
}

fn image_stream(bytes: &[u8]) -> u64 {
    let mut bytes = bytes.to_vec();
    crate::fixup::stream(&mut bytes, crate::fixup::Fix { tiling: true });
    let opened = lct_image::Opened::sent(Box::new(Cursor::new(bytes)), "fuzz");
    let mut checked = String::new();
    if let Ok(opened) = &opened {
        for (i, e) in opened.index.extents.iter().enumerate().filter(|(_, e)| e.kind == Kind::Data).take(FRAMES) {
            let result =
                opened.frame(e).and_then(|frame| lct_image::frame::check_frame(Path::new("fuzz"), i, e, &frame));
            checked.push_str(if result.is_ok() { "+" } else { "-" });
        }
    }
    outcome(&opened, |opened| format!("{} {checked}", shape(&opened.index)))
}

fn dns_transfer(bytes: &[u8]) -> u64 {
    outcome(&lct_dns::fuzzing::transfer_message(bytes), |n| magnitude(*n as u64))
}

fn dns_query(bytes: &[u8]) -> u64 {
    fingerprint(&magnitude(lct_dns::fuzzing::query(bytes) as u64))
}

fn plan(bytes: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(bytes);
    let result = lct_plan::parse(&text, "fuzz.yaml").and_then(|plan| lct_plan::validate(&plan, "fuzz.yaml"));
    outcome(&result, |()| String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed of every corpus gets further than garbage does (a seed that fails the
    /// reader's first check would make the corpus worthless).
    #[test]
    fn every_seed_reads_as_more_than_garbage() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/corpus");
        for target in TARGETS {
            let seeds = crate::runner::corpus_of(&corpus.join(target.name)).unwrap();
            let seeds: Vec<_> = seeds.into_iter().filter(|(name, _)| name.starts_with("seed-")).collect();
            assert!(!seeds.is_empty(), "{}: no seeds", target.name);
            let garbage = (target.run)(b"\x00garbage");
            for (name, bytes) in seeds {
                assert_ne!((target.run)(&bytes), garbage, "{}: {name} reads as garbage does", target.name);
            }
        }
    }
}
