//! The fuzz harness in the normal test suite: every target runs its in-tree corpus (seeds
//! and the regressions of crashes found before) and a fixed number of inputs mutated from it
//! with a fixed seed, so a run is the same everywhere; a panic, an input over the memory
//! budget or a slow one fails the test with the input. `scripts/bench/fuzz` runs the same
//! targets for a set time with a random seed.

use lct_tests::Run;

fn corpus() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

#[test]
fn every_reader_survives_its_corpus_and_mutations_of_it() {
    let out = Run::from(
        std::process::Command::new(lct_tests::bin("lct-fuzz"))
            .args(["--runs", "20000", "--seed", "1", "--corpus"])
            .arg(corpus())
            .output()
            .expect("run lct-fuzz"),
    );
    assert_eq!(out.status, 0, "{}{}", out.stdout, out.stderr);
    for target in ["image-file", "image-trailer", "image-stream", "dns-transfer", "dns-query", "plan"] {
        let line = out.stdout.lines().find(|l| l.starts_with(&format!("{target}: "))).unwrap_or_else(|| {
            panic!("no summary of {target}: {}", out.stdout);
        });
        assert!(line.contains("and 20000 mutated") && line.ends_with(" 0 findings"), "{line}");
    }
}

#[test]
fn the_regressions_are_in_the_corpus() {
    // Each crash the harness found (docs/security.md, section 4) stays in the corpus, so the
    // test above runs it every time.
    for (target, input) in [
        ("image-trailer", "regress-count-overflow"),
        ("image-stream", "regress-trailer-4gib"),
        ("image-stream", "regress-frame-csize"),
    ] {
        assert!(corpus().join(target).join(input).is_file(), "{target}/{input}");
    }
}
