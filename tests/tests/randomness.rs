//! One source of randomness: no crate source reads randomness except through
//! `lct_core::random` (the kernel's CSPRNG), and none makes names or tokens from the process
//! id. Fails when someone adds another way.

use std::path::{Path, PathBuf};

/// Where randomness is drawn: the one module allowed to name the source.
const HELPER: &str = "crates/lct-core/src/random.rs";
/// Where temporary files are named from it.
const TEMP_HELPER: &str = "crates/lct-core/src/fsutil.rs";

/// A way of getting randomness other than the helper (an identifier matches whole).
struct Forbidden {
    word: &'static str,
    why: &'static str,
    /// Also in test modules (`#[cfg(test)] mod`), whose temporary directories need no guard.
    in_tests: bool,
    /// Besides the helper: files where the word is not randomness (each with its reason).
    allowed_in: &'static [&'static str],
}

const fn no(word: &'static str, why: &'static str) -> Forbidden {
    Forbidden { word, why, in_tests: true, allowed_in: &[] }
}

/// `lct-fw watch` knows its own commits by its pid (nf_tables names the committing process):
/// an identity, compared, never a name or a secret.
const WATCHER: &str = "crates/lct-fw/src/nft/watch.rs";
/// A lock's holder record names the process that holds it (`lct-plan unlock` shows it, an
/// operator stops it): an identity, shown, never a name or a secret.
const LOCK_HOLDER: &str = "crates/lct-core/src/store/types.rs";
/// The Landlock rules let qemu-img read the random device (its own start-up); lct reads
/// nothing there.
const CONFINE: &str = "crates/lct-image/src/confine.rs";

const FORBIDDEN: &[Forbidden] = &[
    Forbidden {
        word: "/dev/urandom",
        why: "reads the kernel's random device itself",
        in_tests: true,
        allowed_in: &[CONFINE],
    },
    no("/dev/random", "reads the kernel's random device itself"),
    no("getrandom", "calls the system's random source past the helper"),
    no("SystemRandom", "draws from ring's random source past the helper"),
    no("OsRng", "draws from the rand crates past the helper"),
    no("thread_rng", "draws from the rand crate's generator"),
    no("fastrand", "draws from a clock-seeded generator"),
    no("RandomState", "takes a seed from std's or foldhash's hasher (foldhash's is the time and addresses)"),
    Forbidden {
        word: "process::id",
        why: "puts the process id in a name or token (guessable)",
        in_tests: true,
        allowed_in: &[WATCHER, LOCK_HOLDER],
    },
    no("subsec_nanos", "takes randomness from the clock"),
    Forbidden {
        word: "tempfile::Builder",
        why: "names a temporary file from tempfile's clock-seeded generator: use lct_core::fsutil::temp_file_in or temp_dir",
        in_tests: false,
        allowed_in: &[TEMP_HELPER],
    },
    Forbidden {
        word: "tempfile::tempdir",
        why: "names a temporary directory from tempfile's clock-seeded generator: use lct_core::fsutil::temp_dir",
        in_tests: false,
        allowed_in: &[],
    },
    Forbidden {
        word: "NamedTempFile::new",
        why: "names a temporary file from tempfile's clock-seeded generator: use lct_core::fsutil::temp_file_in",
        in_tests: false,
        allowed_in: &[],
    },
];

/// `(file, line number, line, why)` for each use of a forbidden word in `text`, comments aside.
fn offences(file: &str, text: &str) -> Vec<(String, usize, String, &'static str)> {
    let mut found = Vec::new();
    let mut in_tests = false;
    let mut previous = "";
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        // A test module runs to the end of its file, as every crate here writes them.
        in_tests |= previous == "#[cfg(test)]" && code.starts_with("mod ");
        previous = code;
        if code.starts_with("//") {
            continue;
        }
        for f in FORBIDDEN {
            if (f.in_tests || !in_tests) && !f.allowed_in.contains(&file) && contains_word(code, f.word) {
                found.push((file.to_string(), n + 1, line.trim().to_string(), f.why));
            }
        }
    }
    found
}

/// Whether `word` occurs in `line` not as part of a longer identifier.
fn contains_word(line: &str, word: &str) -> bool {
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        (word.starts_with('/') || !ident(before)) && !ident(after)
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_crate_source_reads_randomness_but_the_helper() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for crate_dir in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = crate_dir.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    // The Linode double makes ids and tokens a client may rely on, too.
    rust_files(&root.join("tests/linode-double/src"), &mut files);
    assert!(files.len() > 50, "the scan found only {} files: is the layout as it expects?", files.len());
    let helper = root.join(HELPER);
    assert!(files.contains(&helper), "{HELPER} is where randomness is drawn");
    let mut found = Vec::new();
    for file in files.iter().filter(|f| **f != helper) {
        let text = std::fs::read_to_string(file).unwrap();
        found.extend(offences(&file.strip_prefix(root).unwrap().display().to_string(), &text));
    }
    let report: Vec<String> =
        found.iter().map(|(file, n, line, why)| format!("{file}:{n}: {why}: {line}\n  use lct_core::random")).collect();
    assert!(report.is_empty(), "randomness drawn past {HELPER}:\n{}", report.join("\n"));
}

#[test]
fn scripts_draw_no_weak_randomness() {
    // Bash's $RANDOM is a 15-bit generator seeded from the time and pid; `mktemp -u` names a
    // file it does not create (another may create it first). Scripts use `mktemp` (which
    // creates its file or directory exclusively) or lct's tools.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut scripts = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { walk(&path, out) } else { out.push(path) }
        }
    }
    walk(&root.join("scripts"), &mut scripts);
    let mut found = Vec::new();
    for script in &scripts {
        let Ok(text) = std::fs::read_to_string(script) else { continue };
        for (n, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or("");
            if code.trim_start().starts_with('#') {
                continue;
            }
            if code.contains("$RANDOM")
                || code.contains("${RANDOM")
                || code.contains("mktemp -u")
                || code.contains("mktemp --dry-run")
            {
                found.push(format!("{}:{}: {}", script.strip_prefix(root).unwrap().display(), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "weak randomness in scripts:\n{}", found.join("\n"));
}

#[test]
fn the_scan_catches_each_forbidden_way() {
    // The checks themselves: each way is caught, in any spelling a crate would use, and
    // names that merely contain a word, and comments, are not.
    let caught = |code: &str| !offences("x.rs", code).is_empty();
    assert!(caught(r#"let f = std::fs::File::open("/dev/urandom")?;"#));
    assert!(caught("let seed = getrandom::u64()?;"));
    assert!(caught("let rng = ring::rand::SystemRandom::new();"));
    assert!(caught("let x = std::collections::hash_map::RandomState::new().build_hasher().finish();"));
    assert!(caught("let x = foldhash::fast::RandomState::default();"));
    assert!(caught(r#"let token = format!("{:x}", std::process::id());"#));
    assert!(caught("let n = now.subsec_nanos();"));
    assert!(caught("let r = fastrand::u64(..);"));
    assert!(!caught("// reads /dev/urandom, as getrandom does"));
    assert!(!caught("TableState(foldhash::fast::SeedableRandomState::with_seed(own, seed))"));
    assert!(!caught("let random = lct_core::random::u64()?;"));
    assert!(caught(r#"let dir = tempfile::Builder::new().prefix("x").tempdir()?;"#));
    assert!(caught("let dir = tempfile::tempdir()?;"));
    // Temporary directories of tests need no guard; their process ids do not matter either
    // way, but randomness drawn there still goes through the helper.
    let test_module =
        "fn f() {}\n#[cfg(test)]\nmod tests {\n    let d = tempfile::tempdir();\n    let r = getrandom::u64();\n}\n";
    let found = offences("x.rs", test_module);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, 5);
    assert!(offences(TEMP_HELPER, "let t = tempfile::Builder::new();").is_empty());
}
