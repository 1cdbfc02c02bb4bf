//! Crafted images, streams and servers against lct-image run under a 256 MiB address-space
//! limit (`prlimit --as`): each claim that would size an allocation (an extent size, an
//! extent count, a trailer's length, a file's size from Content-Range) gets an error naming
//! it and exit 1, never an abort. A well-made image restores under the same limit, so the
//! limit is not what fails the others.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use lct_image::format::{Extent, Index, Kind, Manifest, root_hash};
use lct_tests::{Env, Run};

const LIMIT: &str = "--as=268435456";

fn s(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_string()
}

/// lct-image under the memory limit, with `stdin` on its standard input.
fn limited(env: &Env, args: &[&str], stdin: &[u8]) -> Run {
    let mut command = Command::new("prlimit");
    command.arg(LIMIT).arg("--").arg(lct_tests::bin("lct-image")).args(args);
    command.env("LCT_STATE_DIR", env.state.path()).env("NO_COLOR", "1");
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn prlimit");
    let mut input = child.stdin.take().unwrap();
    // (A refusal may come before all of it is read.)
    let _ = input.write_all(stdin);
    drop(input);
    Run::from(child.wait_with_output().unwrap())
}

/// Exit 1 with `named` in the error, and no sign of an abort.
fn refused(run: &Run, named: &str) {
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(run.stderr.contains(named), "{named:?} not in: {}", run.stderr);
    assert!(!run.stderr.contains("memory allocation"), "{}", run.stderr);
}

/// An image of `data` (one extent) whose manifest and extent `craft` changes (the root hash
/// and seek table follow, as a careful forger makes them).
fn crafted(data: &[u8], craft: impl FnOnce(&mut Manifest, &mut Extent)) -> Vec<u8> {
    let frame = zstd_frame(data);
    let mut extent = Extent {
        offset: 0,
        len: data.len() as u32,
        coffset: 0,
        csize: frame.len() as u32,
        kind: Kind::Data,
        hash: [0; 32],
    };
    let mut manifest = Manifest {
        size: data.len() as u64,
        extent_size: 4 << 20,
        label: "crafted".into(),
        source: "crafted".into(),
        created: 0,
        tool_version: "0".into(),
    };
    craft(&mut manifest, &mut extent);
    let extents = vec![extent];
    let root = root_hash(&extents);
    let mut bytes = frame;
    bytes.extend_from_slice(&Index { manifest, extents, root }.trailer());
    bytes
}

/// A zstd frame of `data` stored raw (a raw block: no compressor needed here).
fn zstd_frame(data: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x20, data.len() as u8]; // single segment, 1-byte size
    assert!(data.len() < 256);
    frame.extend_from_slice(&((data.len() as u32) << 3 | 1).to_le_bytes()[..3]);
    frame.extend_from_slice(data);
    frame
}

#[test]
fn crafted_images_and_streams_get_a_named_error_within_256_mib() {
    let env = Env::new();
    let dir = env.state.path();

    // The control: a well-made image is made, read and restored under the same limit.
    let raw = dir.join("disk.raw");
    lct_tests::pseudo_random_file(&raw, 9 << 20, 7, 0x3f);
    let image = dir.join("disk.lcti");
    let made = limited(&env, &["create", &s(&raw), &s(&image)], b"");
    assert_eq!(made.status, 0, "{}", made.stderr);
    let restored = limited(&env, &["restore", &s(&image), &s(&dir.join("restored.raw"))], b"");
    assert_eq!(restored.status, 0, "{}", restored.stderr);
    assert!(std::fs::read(&raw).unwrap() == std::fs::read(dir.join("restored.raw")).unwrap());

    // An extent size of 4 GiB - 1 and an extent that long: `verify IMAGE TARGET` would read
    // the target's extent into a buffer that size.
    let huge = dir.join("huge-extent.lcti");
    std::fs::write(
        &huge,
        crafted(b"four bytes", |m, e| {
            m.extent_size = u64::from(u32::MAX);
            m.size = u64::from(u32::MAX);
            e.len = u32::MAX;
        }),
    )
    .unwrap();
    refused(&limited(&env, &["verify", &s(&huge), &s(&raw)], b""), "MAX_EXTENT_SIZE");
    refused(&limited(&env, &["info", &s(&huge)], b""), "MAX_EXTENT_SIZE");

    // An extent count that asks for all memory, backed by the file's length (a sparse file of
    // 40 GiB whose footer lists 2^32 - 1 frames: a 32 GiB seek table).
    let many = dir.join("many-extents.lcti");
    let file = std::fs::File::create(&many).unwrap();
    file.set_len(40 << 30).unwrap();
    let mut footer = u32::MAX.to_le_bytes().to_vec();
    footer.push(0);
    footer.extend_from_slice(&0x8F92_EAB1u32.to_le_bytes());
    std::os::unix::fs::FileExt::write_all_at(&file, &footer, (40 << 30) - 9).unwrap();
    drop(file);
    refused(&limited(&env, &["info", &s(&many)], b""), "MAX_EXTENTS");

    // The index frame's size in the seek table past the file's start.
    let mut past = std::fs::read(&image).unwrap();
    let n = past.len();
    past[n - 17..n - 13].copy_from_slice(&u32::MAX.to_le_bytes());
    let past_file = dir.join("past.lcti");
    std::fs::write(&past_file, &past).unwrap();
    refused(&limited(&env, &["info", &s(&past_file)], b""), "the file has");

    // A stream (`restore -`) whose trailer claims 4 GiB, and one that stops inside it.
    let mut stream = b"LCTSEND1".to_vec();
    stream.extend_from_slice(&(1u64 << 32).to_le_bytes());
    let target = dir.join("from-stream.raw");
    refused(&limited(&env, &["restore", "-", &s(&target)], &stream), "MAX_TRAILER");
    let mut stream = b"LCTSEND1".to_vec();
    stream.extend_from_slice(&(1u64 << 20).to_le_bytes());
    stream.extend_from_slice(&[0; 1000]);
    refused(&limited(&env, &["restore", "-", &s(&target)], &stream), "the stream ended in its trailer");
    assert!(!target.exists(), "nothing is written before the index is read");
}

/// A server on loopback that answers every request with `respond(range start)`: the status
/// line and headers it returns, then `body(range start)`.
fn server(respond: fn(u64) -> (String, Vec<u8>)) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                loop {
                    let mut from = 0u64;
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                            from = v.split('-').next().unwrap().trim().parse().unwrap();
                        }
                    }
                    let (head, body) = respond(from);
                    let head = format!("{head}content-length: {}\r\n\r\n", body.len());
                    if out.write_all(head.as_bytes()).and_then(|()| out.write_all(&body)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A "file" of 2^50 bytes, zeros but for its footer, which lists 2^32 - 1 frames: its
/// Content-Range is consistent, and its seek table would take 32 GiB.
const CLAIMED: u64 = 1 << 50;

fn huge_file(from: u64) -> (String, Vec<u8>) {
    let mut tail = [0u8; 17];
    tail[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    tail[13..17].copy_from_slice(&0x8F92_EAB1u32.to_le_bytes());
    let body: Vec<u8> = if from + 17 >= CLAIMED {
        tail[(from + 17 - CLAIMED) as usize..].to_vec()
    } else {
        vec![0; (CLAIMED - from).min(1 << 16) as usize]
    };
    let last = from + body.len() as u64 - 1;
    (format!("HTTP/1.1 206 Partial Content\r\ncontent-range: bytes {from}-{last}/{CLAIMED}\r\n"), body)
}

/// Answers every range with the file's first bytes, as if it were asked for them.
fn wrong_range(from: u64) -> (String, Vec<u8>) {
    let _ = from;
    (format!("HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 0-99/{CLAIMED}\r\n"), vec![0x5a; 100])
}

#[test]
fn a_server_claiming_a_huge_image_or_sending_other_bytes_gets_a_named_error() {
    let env = Env::new();
    let target = env.state.path().join("t.raw");
    let url = format!("http://127.0.0.1:{}/disk.lcti", server(huge_file));
    refused(&limited(&env, &["--allow-http", "restore", &url, &s(&target)], b""), "MAX_EXTENTS");
    let url = format!("http://127.0.0.1:{}/disk.lcti", server(wrong_range));
    let run = limited(&env, &["--allow-http", "info", &url], b"");
    refused(&run, "(Content-Range)");
    assert!(
        run.stderr.contains(&format!("asked for bytes {}- of {CLAIMED}, the server sent 0-99", CLAIMED - 9)),
        "{}",
        run.stderr
    );
    assert!(!target.exists());
}

/// A qcow2 (its magic and version at the start) claiming a petabyte: fetched whole before
/// qemu-img may read it, so it must fit, and is refused before a byte is written.
fn huge_qcow2(from: u64) -> (String, Vec<u8>) {
    let mut body = vec![0u8; (CLAIMED - from).min(1 << 16) as usize];
    if from == 0 {
        body[..8].copy_from_slice(b"QFI\xfb\0\0\0\x03");
    }
    let last = from + body.len() as u64 - 1;
    (format!("HTTP/1.1 206 Partial Content\r\ncontent-range: bytes {from}-{last}/{CLAIMED}\r\n"), body)
}

#[test]
fn a_foreign_image_by_url_larger_than_the_disk_is_refused_before_it_is_fetched() {
    let env = Env::new();
    let out = env.state.path().join("vendor.lcti");
    let url = format!("http://127.0.0.1:{}/vendor.qcow2", server(huge_qcow2));
    let run = limited(&env, &["--allow-http", "create", &url, &s(&out)], b"");
    refused(&run, &format!("{CLAIMED} bytes to fetch"));
    let left: Vec<_> = std::fs::read_dir(env.state.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().starts_with("vendor.lcti")), "{left:?}");
}
