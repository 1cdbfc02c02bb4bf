//! Checks made before any request, where they can be made locally: each names its field.

use super::client::ApiFailure;

fn invalid(field: &str, message: impl Into<String>) -> ApiFailure {
    ApiFailure::Invalid { field: field.into(), message: message.into() }
}

/// Linode's label rule: 3 to 64 of `A-Z a-z 0-9 - _ .`, starting and ending with a letter or
/// digit, no two of `-_.` in a row.
pub fn label(field: &str, s: &str) -> Result<(), ApiFailure> {
    if !(3..=64).contains(&s.len()) {
        return Err(invalid(field, format!("{s:?}: must be 3 to 64 characters")));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(invalid(field, format!("{s:?}: {c:?} is not allowed (letters, digits, - _ . only)")));
    }
    let b = s.as_bytes();
    if !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err(invalid(field, format!("{s:?}: must start and end with a letter or digit")));
    }
    if b.windows(2).any(|w| !w[0].is_ascii_alphanumeric() && !w[1].is_ascii_alphanumeric()) {
        return Err(invalid(field, format!("{s:?}: no two of - _ . in a row")));
    }
    Ok(())
}

/// A region id's shape (`us-east`, `in-bom-2`); whether it exists is asked of the API.
/// lct's one region grammar first (`lct_core::record::region_problem`), then Linode's own
/// shape on top (a two-letter country, then parts), as the local cloud adds its 12 bytes.
pub fn region(field: &str, s: &str) -> Result<(), ApiFailure> {
    if let Some(why) = lct_core::record::region_problem(s, lct_core::record::MAX_REGION_LEN) {
        let shown: String = s.chars().take(40).collect();
        return Err(invalid(field, format!("{shown:?} is not a region id ({why})")));
    }
    let parts: Vec<&str> = s.split('-').collect();
    let ok = parts.len() >= 2
        && parts[0].len() == 2
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts[1..].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    if ok { Ok(()) } else { Err(invalid(field, format!("{s:?} is not a region id (like us-east)"))) }
}

/// A type id's shape (`g6-nanode-1`).
pub fn instance_type(field: &str, s: &str) -> Result<(), ApiFailure> {
    let ok = s.starts_with('g')
        && s.contains('-')
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { Ok(()) } else { Err(invalid(field, format!("{s:?} is not a Linode type id (like g6-nanode-1)"))) }
}

/// An image id's shape: `linode/debian12` or `private/123`.
pub fn image(field: &str, s: &str) -> Result<(), ApiFailure> {
    let ok = match s.split_once('/') {
        Some(("private", id)) => !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        Some((vendor, name)) => {
            !vendor.is_empty()
                && !name.is_empty()
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
        }
        None => false,
    };
    if ok { Ok(()) } else { Err(invalid(field, format!("{s:?} is not an image id (like linode/debian12)"))) }
}

/// A disk size in MiB: at least 1, at most what the type has.
pub fn disk_size(field: &str, size_mib: u64, type_disk_mib: Option<u64>) -> Result<(), ApiFailure> {
    if size_mib == 0 {
        return Err(invalid(field, "must be at least 1 MiB"));
    }
    if let Some(max) = type_disk_mib.filter(|m| size_mib > *m) {
        return Err(invalid(field, format!("{size_mib} MiB is more than the type's {max} MiB")));
    }
    Ok(())
}

/// A volume size in GiB: 10 to 16384 (Linode's bounds).
pub fn volume_size(field: &str, size_gib: u64) -> Result<(), ApiFailure> {
    if !(10..=16_384).contains(&size_gib) {
        return Err(invalid(field, format!("{size_gib} GiB: volumes are 10 to 16384 GiB")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["zk-1", "web_01.prod", "abc", &"a".repeat(64)] {
            assert!(label("label", ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("ab", "3 to 64"),
            ("-abc", "start and end"),
            ("a--b", "in a row"),
            ("a b c", "not allowed"),
            ("a._b", "in a row"),
        ] {
            let e = label("label", bad).unwrap_err().to_string();
            assert!(e.starts_with("field label: ") && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn ids() {
        assert!(region("region", "us-east").is_ok() && region("region", "in-bom-2").is_ok());
        assert!(region("region", "US-East").is_err() && region("region", "useast").is_err());
        // Linode's shape, past lct's one grammar's length: refused, and the message stays short.
        let long = format!("us-{}", "a".repeat(70));
        let err = format!("{:?}", region("region", &long).unwrap_err());
        assert!(err.contains("over 63") && err.len() < 300, "{err}");
        assert!(instance_type("type", "g6-nanode-1").is_ok() && instance_type("type", "nanode").is_err());
        assert!(image("image", "linode/debian12").is_ok() && image("image", "private/123").is_ok());
        assert!(image("image", "debian12").is_err() && image("image", "private/abc").is_err());
        assert!(disk_size("size", 0, None).is_err() && disk_size("size", 30_000, Some(25_600)).is_err());
        assert!(volume_size("size", 5).is_err() && volume_size("size", 20).is_ok());
    }
}
