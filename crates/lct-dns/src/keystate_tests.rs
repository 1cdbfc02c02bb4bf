//! Tests of [`crate::keystate`]: an old one-key file read as a CSK, key files refused,
//! states following the timestamps.

use super::*;

/// The one-key file of earlier versions is read as an active CSK (same key, same DS)
/// and rewritten in the several-keys form at the first change.
#[test]
fn an_old_single_key_file_becomes_a_csk_with_the_same_ds() {
    let dir = lct_core::fsutil::temp_dir("lct-dns-keystate").unwrap();
    let zone = "lct.internal.";
    let der = crate::zonekeys::generate_pkcs8(KeyAlgorithm::Ecdsa).unwrap();
    let pkcs8 = data_encoding::BASE64.encode(&der);
    let old = serde_json::json!({"zone": zone, "algorithm": "ecdsa", "flags": 257, "created": 100, "pkcs8": pkcs8});
    let path = key_file(dir.path(), zone);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    lct_core::fsutil::atomic_write(&path, old.to_string().as_bytes(), 0o600).unwrap();
    let key = ZoneKey::from_pkcs8(zone, KeyAlgorithm::Ecdsa, 257, 100, der).unwrap();
    let ring = update(dir.path(), zone, KeyAlgorithm::Ecdsa, 200, |f| Ok(f.unwrap())).unwrap();
    assert_eq!(ring.keys.len(), 1);
    assert_eq!((ring.keys[0].role, ring.keys[0].state_at(200)), (Role::Csk, KeyState::Active));
    assert_eq!(ring.keys[0].key.tag, key.tag);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"keys\"") && text.contains("\"role\": \"csk\""), "{text}");
    let ds = std::fs::read_to_string(ds_file(dir.path(), zone)).unwrap();
    assert_eq!(ds.trim(), key.ds(zone).unwrap());
    // Read again: the same.
    assert_eq!(load(dir.path(), zone, KeyAlgorithm::Ecdsa).unwrap().file, ring.file);
}

/// A key file of an algorithm lct-dns does not sign with, of another zone, of another
/// algorithm than configured, or not a key file: an error naming the file, nothing written.
#[test]
fn a_key_file_lct_dns_cannot_use_is_an_error_naming_it() {
    let dir = lct_core::fsutil::temp_dir("lct-dns-keystate").unwrap();
    let zone = "lct.internal.";
    let path = key_file(dir.path(), zone);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let cases = [
        (r#"{"zone": "lct.internal.", "algorithm": "rsasha1", "keys": []}"#, "not a key file"),
        (r#"{"zone": "other.", "algorithm": "ecdsa", "keys": []}"#, "holds the keys of other."),
        (r#"{"zone": "lct.internal.", "algorithm": "ed25519", "keys": []}"#, "does not roll algorithms"),
        (r#"{"zone": "lct.internal.", "algorithm": "ecdsa", "flags": 256, "created": 1, "pkcs8": ""}"#, "CSK"),
        (r#"{"zone": "lct.internal.", "algorithm": "ecdsa", "keys": [], "extra": 1}"#, "not a key file"),
        // Control characters quoted from the file come out escaped, not raw.
        (
            r#"{"zone": "\u001b[2J\nforged.", "algorithm": "ecdsa", "keys": []}"#,
            "holds the keys of \\u{1b}[2J\\nforged.",
        ),
    ];
    for (text, why) in cases {
        lct_core::fsutil::atomic_write(&path, text.as_bytes(), 0o600).unwrap();
        let err = update(dir.path(), zone, KeyAlgorithm::Ecdsa, 5, |f| Ok(f.unwrap())).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains(why), "{text}: {err}");
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "nothing written");
    }
    // A key whose private half is not a key: named by zone.
    let bad = r#"{"zone": "lct.internal.", "algorithm": "ecdsa", "keys": [{"role": "csk", "created": 1, "publish": 1, "pkcs8": "AAAA"}]}"#;
    lct_core::fsutil::atomic_write(&path, bad.as_bytes(), 0o600).unwrap();
    let err = update(dir.path(), zone, KeyAlgorithm::Ecdsa, 5, |f| Ok(f.unwrap())).unwrap_err().to_string();
    assert!(err.contains("lct.internal.") && err.contains("cannot be used"), "{err}");
}

/// A key file that is a symbolic link (to a file the server was not given), a FIFO, or
/// too big to be one: an error naming the file, the target not read nor rewritten.
#[test]
fn a_key_file_that_is_a_link_a_fifo_or_huge_is_refused() {
    let dir = lct_core::fsutil::temp_dir("lct-dns-keystate").unwrap();
    let zone = "lct.internal.";
    let path = key_file(dir.path(), zone);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // A good key file elsewhere, linked to.
    let other = lct_core::fsutil::temp_dir("lct-dns-keystate").unwrap();
    let ring = update(other.path(), zone, KeyAlgorithm::Ecdsa, 5, |f| {
        crate::keyroll::advance(
            zone,
            KeyAlgorithm::Ecdsa,
            f,
            &Default::default(),
            crate::keyroll::ZoneTtls { dnskey: 300, max: 600 },
            5,
        )
    })
    .unwrap();
    let target = key_file(other.path(), zone);
    let target_text = std::fs::read(&target).unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let err = update(dir.path(), zone, KeyAlgorithm::Ecdsa, 5, |f| Ok(f.unwrap())).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()) && err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), target_text, "the target untouched");
    assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
    assert!(load(dir.path(), zone, KeyAlgorithm::Ecdsa).is_err());
    assert!(!ring.keys.is_empty());
    std::fs::remove_file(&path).unwrap();
    // A lock file that is a link: refused, its target not made.
    let lock = lock_file(dir.path(), zone);
    let elsewhere = other.path().join("made-by-the-lock");
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
    let err = load_or_lock(dir.path(), zone);
    assert!(err.contains("symbolic link") && err.contains(".lock"), "{err}");
    assert!(!elsewhere.exists(), "the lock's link target was made");
    std::fs::remove_file(&lock).unwrap();
    // A FIFO: refused, not waited on.
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = load(dir.path(), zone, KeyAlgorithm::Ecdsa).unwrap_err().to_string();
    assert!(err.contains("not a plain file"), "{err}");
    std::fs::remove_file(&path).unwrap();
    // Bigger than any key file: refused without reading it all.
    let huge = vec![b' '; KEY_FILE_MAX as usize + 1];
    lct_core::fsutil::atomic_write(&path, &huge, 0o600).unwrap();
    let err = load(dir.path(), zone, KeyAlgorithm::Ecdsa).unwrap_err().to_string();
    assert!(err.contains("bytes: not a key file"), "{err}");
}

/// `update`'s error for `zone` with no change asked.
fn load_or_lock(dir: &Path, zone: &str) -> String {
    let reached = |_| Err(KeyError::Key { zone: zone.into(), message: "the lock was taken".into() });
    update(dir, zone, KeyAlgorithm::Ecdsa, 5, reached).map(drop).unwrap_err().to_string()
}

#[test]
fn states_follow_the_timestamps() {
    let t = Timing {
        created: 0,
        publish: 10,
        ready: Some(20),
        active: Some(30),
        retire_active: Some(40),
        retire: Some(50),
        remove: Some(60),
    };
    let states: Vec<KeyState> = [5, 10, 25, 30, 45, 55, 60].iter().map(|&n| t.state_at(n)).collect();
    use KeyState::*;
    assert_eq!(states, [Created, Published, Ready, Active, RetireActive, Retired, Removed]);
    assert_eq!(Timing { active: None, ..t }.state_at(35), Ready, "a KSK waits for its DS");
}
