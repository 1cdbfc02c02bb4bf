//! The project's scripts find what cargo built wherever cargo put it.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root")
}

#[test]
fn release_dir_follows_cargo_target_dir() {
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .args(["-c", ". scripts/lib/cargo.sh && release_dir"])
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", elsewhere.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{}/release", elsewhere.path().display()));
}

#[test]
fn no_script_assumes_the_target_directory() {
    // A script that runs target/release/X fails for everyone with CARGO_TARGET_DIR set.
    let mut bad = Vec::new();
    let mut dirs = vec![repo().join("scripts")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if std::fs::read_to_string(&path).is_ok_and(|t| t.contains("target/release")) {
                bad.push(path.display().to_string());
            }
        }
    }
    assert!(bad.is_empty(), "scripts naming target/release: {bad:?}");
}
