//! What a VDI names besides its own file: a parent image (an undo or differencing image,
//! whose parent VirtualBox finds by the UUID in the header's link field).
//!
//! Layout (version 1.1, little-endian): signature 0xbeda107f at 64, version at 68, image
//! type at 76 (1 dynamic, 2 fixed, 3 undo, 4 differencing), the link (parent) UUID at 424.

use super::{Format, Named, ReadAt, Refusal, le32};

const SIGNATURE: u32 = 0xbeda_107f;
const VERSION_1_1: u32 = 0x0001_0001;
const LINK_UUID: usize = 0x1a8;

fn uninspectable(why: String) -> Refusal {
    Refusal::Uninspectable { format: Format::Vdi, field: "header", why }
}

pub(super) fn inspect(image: &dyn ReadAt) -> Result<(), Refusal> {
    let head = image.read_at_most(0, 512)?;
    if head.len() < LINK_UUID + 16 {
        return Err(uninspectable(format!("it ends at byte {} (its header has {} bytes)", head.len(), LINK_UUID + 16)));
    }
    let field = |at| le32(&head, at).expect("a whole header");
    if field(64) != SIGNATURE {
        return Err(uninspectable(format!("signature {:#x} (a VDI has {SIGNATURE:#x})", field(64))));
    }
    if field(68) != VERSION_1_1 {
        return Err(uninspectable(format!("version {:#x} (lct knows 1.1, as qemu does)", field(68))));
    }
    let link = &head[LINK_UUID..LINK_UUID + 16];
    let image_type = field(76);
    match image_type {
        1 | 2 if link.iter().all(|&b| b == 0) => Ok(()),
        1..=4 => Err(Refusal::NamesAnotherFile {
            format: Format::Vdi,
            named: Named {
                what: format!(
                    "a parent image (image type {image_type}, {})",
                    if image_type == 3 { "undo" } else { "differencing" }
                ),
                name: format!("UUID {}", uuid(link)),
            },
        }),
        other => Err(uninspectable(format!("image type {other} (1 to 4)"))),
    }
}

/// A UUID as VirtualBox shows it (its first three fields little-endian).
fn uuid(b: &[u8]) -> String {
    let hex = |range: &[u8]| range.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let rev = |range: &[u8]| hex(&range.iter().rev().copied().collect::<Vec<_>>());
    format!("{}-{}-{}-{}-{}", rev(&b[0..4]), rev(&b[4..6]), rev(&b[6..8]), hex(&b[8..10]), hex(&b[10..16]))
}

#[cfg(test)]
mod tests {
    use super::super::tests::refused;
    use super::*;

    fn image(image_type: u32, link: [u8; 16]) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[..39].copy_from_slice(b"<<< Oracle VM VirtualBox Disk Image >>>");
        b[64..68].copy_from_slice(&SIGNATURE.to_le_bytes());
        b[68..72].copy_from_slice(&VERSION_1_1.to_le_bytes());
        b[76..80].copy_from_slice(&image_type.to_le_bytes());
        b[LINK_UUID..LINK_UUID + 16].copy_from_slice(&link);
        b
    }

    #[test]
    fn normal_and_fixed_images_pass() {
        inspect(&image(1, [0; 16])).unwrap();
        inspect(&image(2, [0; 16])).unwrap();
    }

    #[test]
    fn differencing_and_undo_images_and_linked_ones_are_refused() {
        let link = [0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
        let text = refused(&image(4, link), Format::Vdi);
        assert!(text.contains("differencing) \"UUID 00112233-4455-6677-8899-aabbccddeeff\""), "{text}");
        assert!(refused(&image(3, [0; 16]), Format::Vdi).contains("undo"));
        assert!(refused(&image(1, link), Format::Vdi).contains("a parent image"));
    }

    #[test]
    fn truncated_and_unknown_headers_are_named_errors() {
        let whole = image(1, [0; 16]);
        assert!(refused(&whole[..100], Format::Vdi).contains("it ends at byte 100"));
        let mut b = whole.clone();
        b[68..72].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        assert!(refused(&b, Format::Vdi).contains("version 0x10000"));
        let mut b = whole.clone();
        b[76..80].copy_from_slice(&9u32.to_le_bytes());
        assert!(refused(&b, Format::Vdi).contains("image type 9"));
        let mut b = whole;
        b[64] ^= 1;
        assert!(refused(&b, Format::Vdi).contains("signature"));
    }
}
