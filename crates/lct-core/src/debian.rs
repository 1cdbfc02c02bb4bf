//! Debian package names and versions, checked against Debian Policy's grammar before any of
//! them reaches apt's command line (a plan's `packages`, the lab mirror's `add_packages`).
//!
//! A package is `NAME` or `NAME=VERSION` (apt's way of asking for one version). NAME is
//! Policy 5.6.1's `^[a-z0-9][a-z0-9+.-]+$`; VERSION is Policy 5.6.12's
//! `[EPOCH:]UPSTREAM[-REVISION]`. Neither can start with `-`, so no entry is ever taken as
//! an option, and none holds a space, a quote or a shell character.

/// Why a package entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not a Debian package (NAME or NAME=VERSION): {why}")]
pub struct BadPackage {
    pub entry: String,
    pub why: &'static str,
}

/// Checks `NAME` or `NAME=VERSION` against Debian's grammar.
pub fn check_package(entry: &str) -> Result<(), BadPackage> {
    let bad = |why| Err(BadPackage { entry: entry.to_string(), why });
    let (name, version) = match entry.split_once('=') {
        Some((name, version)) => (name, Some(version)),
        None => (entry, None),
    };
    if let Err(why) = check_name(name) {
        return bad(why);
    }
    if let Some(version) = version
        && let Err(why) = check_version(version)
    {
        return bad(why);
    }
    Ok(())
}

/// A package name: at least two characters of `a-z 0-9 + - .`, starting with a letter or
/// digit (Policy 5.6.1).
pub fn check_name(name: &str) -> Result<(), &'static str> {
    let bytes = name.as_bytes();
    if bytes.len() < 2 {
        return Err("a name has at least two characters");
    }
    if !(bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit()) {
        return Err("a name starts with a lower-case letter or a digit");
    }
    if !bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)) {
        return Err("a name has only a-z, 0-9, '+', '-' and '.'");
    }
    Ok(())
}

/// A version: `[EPOCH:]UPSTREAM[-REVISION]` (Policy 5.6.12). EPOCH is digits; UPSTREAM
/// starts with a digit and has alphanumerics and `. + ~` (and `-` when there is a
/// REVISION); REVISION has alphanumerics and `+ . ~`.
pub fn check_version(version: &str) -> Result<(), &'static str> {
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) => (Some(epoch), rest),
        None => (None, version),
    };
    if let Some(epoch) = epoch
        && (epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("a version's epoch is digits");
    }
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((upstream, revision)) => (upstream, Some(revision)),
        None => (rest, None),
    };
    if !upstream.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return Err("a version's upstream part starts with a digit");
    }
    let upstream_ok = |b: u8| b.is_ascii_alphanumeric() || b"+.~".contains(&b) || (b == b'-' && revision.is_some());
    if !upstream.bytes().all(upstream_ok) {
        return Err("a version's upstream part has only alphanumerics and '. + ~' ('-' before a revision)");
    }
    if let Some(revision) = revision
        && (revision.is_empty() || !revision.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.~".contains(&b)))
    {
        return Err("a version's revision has only alphanumerics and '+ . ~'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_names_and_versions_pass() {
        for ok in [
            "zookeeperd",
            "default-jre-headless",
            "libstdc++6",
            "g++",
            "python3.11",
            "0ad",
            "htop=3.2.2-2",
            "openssl=3.0.15-1~deb12u1",
            "bash=5.2.15-2+b7",
            "ntp=1:4.2.8p15+dfsg-2~1.2.2+dfsg1-1+deb12u1",
            "foo=1.0",
            "foo=2:1.0~rc1",
        ] {
            check_package(ok).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "a",
            "-oAPT::Update::Pre-Invoke::=touch /tmp/x",
            "--allow-unauthenticated",
            "htop; rm -rf /",
            "htop rm",
            "htop$(id)",
            "`id`",
            "Htop",
            "htop:amd64",
            "htop\n",
            "+htop",
            ".htop",
            "htop=",
            "htop=-1",
            "htop=a1.0",
            "htop=1.0 x",
            "htop=1:",
            "htop=x:1.0",
            "htop=1.0-",
            "htop=1.0-a-b;c",
            "htop=1.0=2",
            "htop=1:2:3",
        ] {
            assert!(check_package(bad).is_err(), "{bad:?} was taken");
        }
        assert_eq!(
            check_package("-oX").unwrap_err().to_string(),
            "\"-oX\" is not a Debian package (NAME or NAME=VERSION): a name starts with a lower-case letter or a digit"
        );
    }
}
