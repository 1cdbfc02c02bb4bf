//! `lct-image create` against foreign disk images from outside (real qemu-img): a qcow2
//! whose backing file or external data file is a controller file, VMDKs whose extents name
//! one (a text descriptor, and a sparse file whose embedded descriptor qemu would follow),
//! a VHDX differencing disk and a VDI differencing image are each refused by path and by
//! URL, naming the input and what it names, and the controller file's bytes appear nowhere;
//! clean VMDK, VHDX and VDI images still convert; a format lct does not know (QED, whose
//! backing file qemu's probing would follow) is read as raw bytes.

use std::path::Path;
use std::process::Command;

use lct_tests::{Env, HttpFiles};

/// What the controller file holds: it must show up in no output.
const MARKER: &[u8] = b"lct-controller-secret-5d1f0e9a";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img").args(args).output().unwrap();
    assert!(out.status.success(), "qemu-img {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A file of `len` bytes holding the marker at its start and at every MiB.
fn controller_file(path: &Path, len: usize) {
    let mut bytes = vec![0u8; len];
    for at in (0..len).step_by(1 << 20) {
        bytes[at..at + MARKER.len()].copy_from_slice(MARKER);
    }
    std::fs::write(path, bytes).unwrap();
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Little-endian u32/u64 at a byte offset, and writing one.
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn put(b: &mut [u8], at: usize, value: &[u8]) {
    b[at..at + value.len()].copy_from_slice(value);
}

/// A VMDK descriptor file whose one extent is `target`, read flat from its start.
fn vmdk_descriptor(target: &Path, sectors: u64) -> String {
    format!(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n\
         # Extent description\nRW {sectors} FLAT \"{}\" 0\n\n# The Disk Data Base\nddb.adapterType = \"ide\"\n",
        target.display()
    )
}

/// A sparse VMDK (qemu-img's) turned into a "descriptor file" in disguise: capacity 0 and
/// an embedded descriptor whose extent is `target` (qemu follows it).
fn sparse_vmdk_naming(dir: &Path, target: &Path, out: &Path) {
    let plain = dir.join("plain-sparse.vmdk");
    qemu_img(&["create", "-q", "-f", "vmdk", s(&plain), "2M"]);
    let mut b = std::fs::read(&plain).unwrap();
    assert_eq!(&b[..4], b"KDMV");
    put(&mut b, 12, &0u64.to_le_bytes());
    let descriptor_at = 512 * u64::from_le_bytes(b[28..36].try_into().unwrap()) as usize;
    let mut text = vmdk_descriptor(target, 4096).into_bytes();
    text.resize(10 * 512, 0);
    put(&mut b, descriptor_at, &text);
    std::fs::write(out, b).unwrap();
}

/// qemu-img's VHDX with its File Parameters' HasParent flag set (qemu-img cannot make a
/// differencing VHDX, so its header is crafted): the metadata table is found by its
/// signature, the File Parameters item by its GUID.
fn differencing_vhdx(out: &Path) {
    qemu_img(&["create", "-q", "-f", "vhdx", s(out), "8M"]);
    let mut b = std::fs::read(out).unwrap();
    let file_parameters =
        [0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b];
    let table = (0..b.len()).step_by(64 << 10).find(|&at| b[at..].starts_with(b"metadata")).expect("a metadata table");
    let entries = usize::from(u16::from_le_bytes([b[table + 10], b[table + 11]]));
    let entry = (0..entries).map(|i| table + 32 + 32 * i).find(|&e| b[e..e + 16] == file_parameters).unwrap();
    let flags_at = table + le32(&b, entry + 16) as usize + 4;
    let flags = le32(&b, flags_at) | 2;
    put(&mut b, flags_at, &flags.to_le_bytes());
    std::fs::write(out, b).unwrap();
}

/// qemu-img's VDI made a differencing image (type 4) linked to a parent's UUID.
fn differencing_vdi(out: &Path) {
    qemu_img(&["create", "-q", "-f", "vdi", s(out), "8M"]);
    let mut b = std::fs::read(out).unwrap();
    put(&mut b, 0x4c, &4u32.to_le_bytes());
    put(&mut b, 0x1a8, &[0xab; 16]);
    std::fs::write(out, b).unwrap();
}

#[test]
fn foreign_images_naming_a_controller_file_are_refused_and_read_nothing_of_it() {
    let env = Env::new();
    let dir = env.state.path();
    let secret = dir.join("controller.key");
    controller_file(&secret, 4 << 20);
    let served = dir.join("served");
    std::fs::create_dir(&served).unwrap();

    qemu_img(&["create", "-q", "-f", "qcow2", "-b", s(&secret), "-F", "raw", s(&served.join("backing.qcow2"))]);
    // qemu-img create writes the data file: the marker goes in after, as a file of the
    // controller's that an image's header names.
    let data = dir.join("controller.data");
    let data_image = served.join("data-file.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={},data_file_raw=on", s(&data)),
        s(&data_image),
        "4M",
    ]);
    controller_file(&data, 4 << 20);
    std::fs::write(served.join("descriptor.vmdk"), vmdk_descriptor(&secret, 8192)).unwrap();
    sparse_vmdk_naming(dir, &secret, &served.join("sparse-capacity-0.vmdk"));
    differencing_vhdx(&served.join("differencing.vhdx"));
    differencing_vdi(&served.join("differencing.vdi"));

    let http = HttpFiles::serve(&served);
    let cases = [
        ("backing.qcow2", format!("a qcow2 image that names another file, a backing file {:?}", s(&secret))),
        ("data-file.qcow2", format!("a qcow2 image that names another file, an external data file {:?}", s(&data))),
        ("descriptor.vmdk", format!("a VMDK image that names another file, an extent (FLAT) {:?}", s(&secret))),
        ("sparse-capacity-0.vmdk", format!("a VMDK image that names another file, an extent (FLAT) {:?}", s(&secret))),
        ("differencing.vhdx", "a VHDX image that names another file, a parent disk".to_string()),
        (
            "differencing.vdi",
            "a VDI image that names another file, a parent image (image type 4, differencing)".to_string(),
        ),
    ];
    for (i, (file, names)) in cases.iter().enumerate() {
        for source in [s(&served.join(file)).to_string(), http.url(file)] {
            let image = dir.join(format!("{i}.lcti"));
            let out = env.run("lct-image", &["--allow-http", "create", &source, s(&image)]);
            assert_eq!(out.status, 1, "{source}: {}", out.stderr);
            assert!(out.stderr.contains(&format!("{source}: refused: it is {names}")), "{source}: {}", out.stderr);
            for output in [out.stdout.as_bytes(), out.stderr.as_bytes()] {
                assert!(!contains(output, MARKER), "{source}: the controller file's bytes were printed");
            }
            assert!(!image.exists() && !dir.join(format!("{i}.lcti.partial")).exists(), "{source}: an image was made");
            let left: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".source."))
                .collect();
            assert!(left.is_empty(), "{source}: scratch files left: {left:?}");
        }
    }
    // Without the inspection, qemu-img reads the controller file into the disk: the
    // attack is real (the VHDX and VDI ones qemu-img itself refuses to open).
    for file in ["backing.qcow2", "data-file.qcow2", "descriptor.vmdk", "sparse-capacity-0.vmdk"] {
        let raw = dir.join("unchecked.raw");
        let format = if file.ends_with("qcow2") { "qcow2" } else { "vmdk" };
        qemu_img(&["convert", "-q", "-f", format, "-O", "raw", s(&served.join(file)), s(&raw)]);
        assert!(contains(&std::fs::read(&raw).unwrap(), MARKER), "{file}: qemu-img alone reads the controller file");
    }
}

#[test]
fn clean_vmdk_vhdx_and_vdi_images_still_convert() {
    let env = Env::new();
    let dir = env.state.path();
    let raw = dir.join("disk.raw");
    lct_tests::pseudo_random_file(&raw, 3 << 20, 0x9e37_79b9_7f4a_7c15, 0x3f);
    for (format, options) in [
        ("vmdk", "subformat=monolithicSparse"),
        ("vmdk", "subformat=streamOptimized"),
        ("vhdx", "subformat=dynamic"),
        ("vdi", "static=off"),
    ] {
        let source = dir.join(format!("disk.{format}"));
        qemu_img(&["convert", "-q", "-f", "raw", "-O", format, "-o", options, s(&raw), s(&source)]);
        // The disk is what qemu-img makes of it (sizes round up to whole sectors or blocks).
        let want = dir.join("want.raw");
        qemu_img(&["convert", "-q", "-f", format, "-O", "raw", s(&source), s(&want)]);
        let image = dir.join("disk.lcti");
        let _ = std::fs::remove_file(&image);
        env.run("lct-image", &["create", s(&source), s(&image)]).ok();
        let target = dir.join("restored.raw");
        let _ = std::fs::remove_file(&target);
        env.run("lct-image", &["restore", s(&image), s(&target)]).ok();
        assert!(std::fs::read(&target).unwrap() == std::fs::read(&want).unwrap(), "{format} ({options}) differs");
    }
}

#[test]
fn a_format_lct_does_not_know_is_raw_bytes_never_probed() {
    let env = Env::new();
    let dir = env.state.path();
    let secret = dir.join("controller.key");
    controller_file(&secret, 1 << 20);
    // QED: qemu's probing would take it for what it is and read its backing file.
    let qed = dir.join("disk.qed");
    qemu_img(&["create", "-q", "-f", "qed", "-b", s(&secret), "-F", "raw", s(&qed)]);
    let probed = dir.join("probed.raw");
    qemu_img(&["convert", "-q", "-O", "raw", s(&qed), s(&probed)]);
    assert!(contains(&std::fs::read(&probed).unwrap(), MARKER), "qemu's probing follows the backing file");
    let image = dir.join("qed.lcti");
    env.run("lct-image", &["create", s(&qed), s(&image)]).ok();
    let target = dir.join("restored.raw");
    env.run("lct-image", &["restore", s(&image), s(&target)]).ok();
    let restored = std::fs::read(&target).unwrap();
    assert_eq!(restored, std::fs::read(&qed).unwrap(), "the QED file's own bytes, as a raw disk");
    assert!(!contains(&restored, MARKER));
}
