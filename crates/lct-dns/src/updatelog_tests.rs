use super::*;
use crate::wire::serial_of;
use crate::zone::fixtures::{rec, zone};

fn temp_log() -> (impl Drop, PathBuf) {
    let dir = lct_core::fsutil::temp_dir("lct-dns-updatelog").unwrap();
    // In a directory not made yet, as a server's first update finds its state directory.
    let path = update_log_file(&dir.path().join("dns").join("zones.jsonl"));
    (dir, path)
}

/// Two changes of the fixture zone: 7 to 8 adds b, 8 to 9 takes a's public address out.
fn two_changes() -> [Change; 2] {
    let b = rec("b.zk.lct.internal.", RecordType::A, "192.168.128.2");
    let a_public = zone().into_iter().find(|r| r.data == "203.0.113.1").unwrap();
    [
        Change { from: 7, to: 8, removed: vec![], added: vec![b] },
        Change { from: 8, to: 9, removed: vec![a_public], added: vec![] },
    ]
}

fn sorted(mut records: Vec<DnsRecord>) -> Vec<DnsRecord> {
    records.sort();
    records
}

/// The records after both changes, made without the log.
fn expected() -> Vec<DnsRecord> {
    let mut want = zone();
    want.retain(|r| r.data != "203.0.113.1");
    want.push(rec("b.zk.lct.internal.", RecordType::A, "192.168.128.2"));
    let soa = want.iter_mut().find(|r| r.rtype == RecordType::SOA).unwrap();
    soa.data = "ns1.lct.internal. hostmaster.lct.internal. 9 3600 600 1209600 300".into();
    sorted(want)
}

#[test]
fn appended_changes_replay_onto_the_state_file_once() {
    let (_dir, path) = temp_log();
    let [first, second] = two_changes();
    let size = append(&path, "lct.internal.", &first).unwrap();
    assert!(append(&path, "lct.internal.", &second).unwrap() > size, "appended, not rewritten");
    let mut records = zone();
    let done = replay(&path, &mut records).unwrap();
    assert_eq!(done, Replayed { applied: 2, ..Default::default() });
    assert_eq!(sorted(records.clone()), expected());
    assert_eq!(serial_of(&records, "lct.internal."), Some(9));
    // Replayed again onto the result (a fold the crash cut short): nothing applies twice.
    let done = replay(&path, &mut records).unwrap();
    assert_eq!(done, Replayed { skipped: 2, ..Default::default() });
    assert_eq!(sorted(records), expected());
    // No log: nothing to do.
    let mut records = zone();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(replay(&path, &mut records).unwrap(), Replayed::default());
    assert_eq!(records, zone());
}

/// A line that starts from a serial newer than the state file's (the version it followed
/// was never written: a fold that failed) is a gap, reported with its place and serials,
/// never skipped as if applied; one from an older serial across the RFC 1982 wrap is in
/// the state file already.
#[test]
fn a_line_past_the_state_files_serial_is_a_gap_not_a_skip() {
    let (_dir, path) = temp_log();
    let [_, second] = two_changes();
    append(&path, "lct.internal.", &second).unwrap();
    let mut records = zone();
    let done = replay(&path, &mut records).unwrap();
    assert_eq!((done.applied, done.skipped), (0, 0));
    let [gap] = done.gaps.as_slice() else { panic!("one gap: {:?}", done.gaps) };
    assert!(gap.contains("line 1") && gap.contains("serial 8") && gap.contains("has 7"), "{gap}");
    assert_eq!(records, zone(), "nothing applied");
    // A line from before the wrap onto a zone past it: already applied.
    std::fs::remove_file(&path).unwrap();
    let wrapped = Change { from: u32::MAX - 2, to: u32::MAX - 1, removed: vec![], added: vec![] };
    append(&path, "lct.internal.", &wrapped).unwrap();
    let done = replay(&path, &mut records).unwrap();
    assert_eq!(done, Replayed { skipped: 1, ..Default::default() });
}

/// A crash in the middle of an append: the versions before the torn line are served, the
/// line is reported with where it starts, and cut off so the next append follows a whole
/// line (at every cut point of the second line).
#[test]
fn a_torn_line_ends_the_replay_is_reported_and_cut_off() {
    let (_dir, path) = temp_log();
    let [first, second] = two_changes();
    let whole_first = append(&path, "lct.internal.", &first).unwrap();
    let whole = append(&path, "lct.internal.", &second).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for cut in whole_first..whole {
        std::fs::write(&path, &bytes[..cut as usize]).unwrap();
        let mut records = zone();
        let done = replay(&path, &mut records).unwrap();
        assert_eq!(done.applied, 1, "cut at {cut}");
        if cut == whole_first {
            assert_eq!(done.torn, None, "nothing after the first line");
            continue;
        }
        let torn = done.torn.unwrap_or_else(|| panic!("cut at {cut}: the torn line is reported"));
        assert!(torn.contains("line 2 (byte") && torn.contains(&path.display().to_string()), "{torn}");
        assert_eq!(serial_of(&records, "lct.internal."), Some(8), "the version before the torn line");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole_first, "cut back to the whole line");
    }
    // The next append follows the whole line and replays.
    append(&path, "lct.internal.", &second).unwrap();
    let mut records = zone();
    assert_eq!(replay(&path, &mut records).unwrap().applied, 2);
    assert_eq!(sorted(records), expected());
}

/// A step after the line's write that fails (here the new log's directory sync) cuts the
/// line off again: the update is answered SERVFAIL, so a restart must not replay it.
#[test]
fn a_failure_after_the_write_cuts_the_line_off() {
    let (_dir, path) = temp_log();
    let [first, second] = two_changes();
    let failing = |_: &Path| Err(std::io::Error::other("the directory's sync failed"));
    let e = append_then(&path, "lct.internal.", &first, failing).unwrap_err();
    assert!(matches!(e, LogError::Io { .. }) && e.to_string().contains("sync failed"), "{e}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "the line is cut off");
    let mut records = zone();
    assert_eq!(replay(&path, &mut records).unwrap(), Replayed::default());
    // The log exists now: the next appends do not sync the directory, and replay whole.
    let whole = append(&path, "lct.internal.", &first).unwrap();
    assert!(append_then(&path, "lct.internal.", &second, failing).unwrap() > whole);
    assert_eq!(replay(&path, &mut records).unwrap().applied, 2);
    assert_eq!(sorted(records), expected());
}

/// A line that is whole but not a change (a disk that returned garbage) stops the replay
/// there, as a torn one does: nothing after it is applied out of order.
#[test]
fn an_unreadable_line_stops_the_replay() {
    let (_dir, path) = temp_log();
    let [first, second] = two_changes();
    append(&path, "lct.internal.", &first).unwrap();
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"zone\": 12}\n").unwrap();
    let mut after = std::fs::read(&path).unwrap();
    let mut line = serde_json::to_vec(&Entry { zone: "lct.internal.".into(), change: second }).unwrap();
    line.push(b'\n');
    after.extend(line);
    std::fs::write(&path, after).unwrap();
    let mut records = zone();
    let done = replay(&path, &mut records).unwrap();
    assert_eq!(done.applied, 1);
    assert!(done.torn.as_deref().is_some_and(|t| t.contains("line 2")), "{:?}", done.torn);
    assert_eq!(serial_of(&records, "lct.internal."), Some(8));
}

/// Folding writes the zones served whole and removes the log: the state file read back is
/// the version served, and nothing is replayed onto it.
#[test]
fn a_fold_writes_the_zones_whole_and_empties_the_log() {
    use crate::served::Served;
    use crate::settings::Settings;
    let (_dir, path) = temp_log();
    let state_file = path.parent().unwrap().join("zones.jsonl");
    let [first, second] = two_changes();
    append(&path, "lct.internal.", &first).unwrap();
    append(&path, "lct.internal.", &second).unwrap();
    let settings = Settings::bare(state_file.clone());
    let served = Served::build(expected(), std::sync::Arc::new(settings)).unwrap();
    fold(&served).unwrap();
    assert!(!path.exists(), "the log is gone");
    let text = std::fs::read(&state_file).unwrap();
    let (mut back, _) = lct_core::stream::read_kind::<DnsRecord>(&text[..]).unwrap();
    assert_eq!(replay(&path, &mut back).unwrap(), Replayed::default());
    assert_eq!(sorted(back), expected());
    // Folding again with no log is fine.
    fold(&served).unwrap();
}
