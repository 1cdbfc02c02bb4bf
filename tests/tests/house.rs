//! The house rules, checked on the sources themselves (issue 25): no two files of a crate
//! import each other, directly or around a loop; no source file over 600 lines; every
//! binary's `main.rs` under 250 lines. A rule broken names the files, so the fix is obvious.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;
const MAX_MAIN_LINES: usize = 250;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate sits in the repository").to_path_buf()
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn crates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(repo().join("crates"))
        .expect("crates/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("src").is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 8, "the workspace's crates are found: {dirs:?}");
    dirs
}

/// The code of a file without comments and without its `#[cfg(test)]` tail (tests may reach
/// anywhere in their own crate).
fn shipped_code(text: &str) -> String {
    let text = text.find("#[cfg(test)]").map_or(text, |at| &text[..at]);
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") { "" } else { line.find(" //").map_or(line, |at| &line[..at]) }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A library crate's modules: path (`nft::table`, "" for the root) to file. Binaries
/// (`main.rs`, `bin/`) are not part of the library's graph, nor test-only modules.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut modules = BTreeMap::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.first().is_some_and(|p| p == "bin") || parts == ["main"] {
            continue;
        }
        if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
            parts.pop();
        }
        modules.insert(parts.join("::"), file);
    }
    // Children declared only under #[cfg(test)] are tests, not shipped code.
    let mut test_only = Vec::new();
    for (name, file) in &modules {
        let text = fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.windows(2) {
            if pair[0].trim() == "#[cfg(test)]"
                && let Some(child) = pair[1].trim().strip_prefix("mod ").and_then(|r| r.strip_suffix(';'))
            {
                test_only.push(if name.is_empty() { child.to_string() } else { format!("{name}::{child}") });
            }
        }
    }
    for name in test_only {
        modules.remove(&name);
    }
    modules
}

/// The module a path names: its longest prefix that is a module.
fn owning_module(path: &[String], modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    (1..=path.len()).rev().map(|k| path[..k].join("::")).find(|m| modules.contains_key(m))
}

/// Which modules each module uses: `crate::a::b`, `super::x`, `self::x` and a child's name
/// used from its parent (`pub use child::Thing`, `child::function()`).
fn uses(modules: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (name, file) in modules {
        let code = shipped_code(&fs::read_to_string(file).unwrap());
        let here: Vec<String> = if name.is_empty() { vec![] } else { name.split("::").map(String::from).collect() };
        let mut used = BTreeSet::new();
        let bytes = code.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            let starts_word = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
            let after_path = at >= 2 && &bytes[at - 2..at] == b"::";
            if !starts_word || after_path || !(bytes[at].is_ascii_alphabetic() || bytes[at] == b'_') {
                at += 1;
                continue;
            }
            // A path: words joined by `::`.
            let end = code[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |n| at + n);
            let words: Vec<String> = code[at..end].split("::").filter(|w| !w.is_empty()).map(String::from).collect();
            at = end;
            if words.len() < 2 {
                continue;
            }
            let mut base = here.clone();
            let mut rest = &words[..];
            match words[0].as_str() {
                "crate" => {
                    base.clear();
                    rest = &words[1..];
                }
                "self" => rest = &words[1..],
                "super" => {
                    while rest.first().is_some_and(|w| w == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                }
                // A child of this module, named from its parent.
                child if modules.contains_key(&[here.clone(), vec![child.to_string()]].concat().join("::")) => {}
                _ => continue,
            }
            let target = [base, rest.to_vec()].concat();
            if let Some(module) = owning_module(&target, modules).or_else(|| target.is_empty().then(String::new))
                && &module != name
                && modules.contains_key(&module)
            {
                used.insert(module);
            }
        }
        graph.insert(name.clone(), used);
    }
    graph
}

/// The strongly connected sets of more than one module (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in &self.graph[v] {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut set = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    set.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if set.len() > 1 {
                    set.sort();
                    self.found.push(set);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

fn show(module: &str) -> &str {
    if module.is_empty() { "(crate root)" } else { module }
}

#[test]
fn no_file_of_a_crate_imports_another_around_a_loop() {
    let mut broken = Vec::new();
    for dir in crates() {
        let graph = uses(&modules(&dir.join("src")));
        for set in circles(&graph) {
            let edges: Vec<String> = set
                .iter()
                .flat_map(|a| {
                    graph[a].iter().filter(|b| set.contains(b)).map(move |b| format!("{} -> {}", show(a), show(b)))
                })
                .collect();
            broken.push(format!("{}: {}", dir.file_name().unwrap().to_string_lossy(), edges.join(", ")));
        }
    }
    assert!(broken.is_empty(), "files that import each other (directly or around a loop):\n{}", broken.join("\n"));
}

#[test]
fn the_checker_finds_a_loop_it_is_shown() {
    // The check above can fail: a crate whose two files use each other is found.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("nft")).unwrap();
    fs::write(src.join("lib.rs"), "pub mod nft;\npub mod model;\n").unwrap();
    fs::write(src.join("model.rs"), "//! Model.\npub struct Rule;\n").unwrap();
    fs::write(src.join("nft/mod.rs"), "pub mod table;\npub mod socket;\npub use table::Table;\n").unwrap();
    fs::write(src.join("nft/table.rs"), "use super::socket::Socket;\npub struct Table(crate::model::Rule);\n").unwrap();
    fs::write(src.join("nft/socket.rs"), "use crate::nft::Table;\npub struct Socket;\n").unwrap();
    let found = circles(&uses(&modules(&src)));
    assert_eq!(found, vec![vec!["nft".to_string(), "nft::socket".to_string(), "nft::table".to_string()]]);
    // Through a comment or a test module, nothing is used.
    fs::write(
        src.join("nft/socket.rs"),
        "// crate::nft::Table\npub struct Socket;\n#[cfg(test)]\nmod tests { use crate::nft::Table; }\n",
    )
    .unwrap();
    assert!(circles(&uses(&modules(&src))).is_empty());
}

#[test]
fn no_source_file_is_over_600_lines_and_no_main_over_250() {
    let mut long = Vec::new();
    let mut dirs: Vec<PathBuf> = crates().into_iter().map(|c| c.join("src")).collect();
    dirs.push(repo().join("tests/src"));
    dirs.push(repo().join("tests/tests"));
    dirs.push(repo().join("tests/linode-double/src"));
    for file in dirs.iter().flat_map(|d| rust_files(d)) {
        let lines = fs::read_to_string(&file).unwrap().lines().count();
        let limit = if file.file_name().is_some_and(|n| n == "main.rs") { MAX_MAIN_LINES } else { MAX_LINES };
        if lines > limit {
            long.push(format!("{} has {lines} lines (at most {limit})", file.strip_prefix(repo()).unwrap().display()));
        }
    }
    assert!(long.is_empty(), "files over their size:\n{}", long.join("\n"));
}
