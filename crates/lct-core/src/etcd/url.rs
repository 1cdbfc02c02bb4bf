//! Where lct's state lives on etcd: `etcd://HOST:PORT,HOST:PORT/PREFIX` (plain HTTP, for
//! loopback or a private network) or `etcds://...` (TLS), read strictly before anything is
//! connected to.

use super::error::EtcdError;

/// The most endpoints one URL may name (etcd clusters have 3, 5 or 7 members).
pub const MAX_ENDPOINTS: usize = 16;
/// The longest prefix: lct's keys are appended to it, and etcd bounds a key's size.
pub const MAX_PREFIX: usize = 128;
/// The prefix when the URL names none.
pub const DEFAULT_PREFIX: &str = "lct";

/// A parsed state URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    /// `HOST:PORT` of each member, in the order given (IPv6 hosts in brackets).
    pub endpoints: Vec<String>,
    /// Whether the members are reached over TLS (`etcds://`).
    pub tls: bool,
    /// Every key lct writes starts with `PREFIX/`.
    pub prefix: String,
}

impl EtcdUrl {
    /// Reads `etcd://HOST[:PORT][,HOST[:PORT]...][/PREFIX]` or `etcds://...`; the port
    /// defaults to 2379, the prefix to `lct`. A prefix is words of letters, digits, `.`, `_`
    /// and `-` joined by single slashes.
    pub fn parse(text: &str) -> Result<EtcdUrl, EtcdError> {
        let bad = |why: String| EtcdError::Url { url: text.to_string(), why };
        let (tls, rest) = if let Some(rest) = text.strip_prefix("etcd://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("etcds://") {
            (true, rest)
        } else {
            return Err(bad("not an etcd URL: etcd://HOST:PORT,.../PREFIX or etcds://... (TLS)".into()));
        };
        let (hosts, prefix) = match rest.split_once('/') {
            Some((hosts, prefix)) => (hosts, prefix.trim_end_matches('/')),
            None => (rest, ""),
        };
        let prefix = if prefix.is_empty() { DEFAULT_PREFIX } else { prefix };
        check_prefix(prefix).map_err(|why| bad(format!("prefix {prefix:?}: {why}")))?;
        if hosts.is_empty() {
            return Err(bad("no endpoint: name at least one HOST:PORT".into()));
        }
        let mut endpoints = Vec::new();
        for part in hosts.split(',') {
            let endpoint = endpoint(part).map_err(|why| bad(format!("endpoint {part:?}: {why}")))?;
            if endpoints.contains(&endpoint) {
                return Err(bad(format!("endpoint {endpoint} is named twice")));
            }
            endpoints.push(endpoint);
        }
        if endpoints.len() > MAX_ENDPOINTS {
            return Err(bad(format!("{} endpoints: at most {MAX_ENDPOINTS}", endpoints.len())));
        }
        Ok(EtcdUrl { endpoints, tls, prefix: prefix.to_string() })
    }

    /// The URL again, in its canonical form (ports and prefix spelled out).
    pub fn to_url(&self) -> String {
        let scheme = if self.tls { "etcds" } else { "etcd" };
        format!("{scheme}://{}/{}", self.endpoints.join(","), self.prefix)
    }
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > MAX_PREFIX {
        return Err(format!("{} bytes: at most {MAX_PREFIX}", prefix.len()));
    }
    for word in prefix.split('/') {
        if word.is_empty() {
            return Err("an empty part (two slashes in a row, or one at the start)".into());
        }
        if word == "." || word == ".." {
            return Err(format!("a part {word:?}"));
        }
        if let Some(c) = word.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
            return Err(format!("{c:?} is not allowed (letters, digits, '.', '_', '-' and '/')"));
        }
    }
    Ok(())
}

/// `HOST:PORT` checked: a host name (letters, digits, '-' and '.'), an IPv4 address or an
/// IPv6 address in brackets; the port 1 to 65535 (2379 when left out).
fn endpoint(part: &str) -> Result<String, String> {
    let (host, port) = if let Some(rest) = part.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or("an IPv6 address without its closing ']'")?;
        addr.parse::<std::net::Ipv6Addr>().map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("something after ']' that is not :PORT")?),
        };
        (format!("[{addr}]"), port)
    } else {
        match part.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (part.to_string(), None),
        }
    };
    if !host.starts_with('[') {
        if host.is_empty() {
            return Err("no host".into());
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(format!("{host:?} is neither a host name nor an IPv4 address"));
        }
    }
    let port = match port {
        None => 2379,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => n,
            _ => return Err(format!("port {p:?} is not a number from 1 to 65535")),
        },
    };
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_endpoints_and_prefix() {
        let url = EtcdUrl::parse("etcd://127.0.0.1:2379,db-2.example:12379,[::1]/team/lct").unwrap();
        assert_eq!(url.endpoints, ["127.0.0.1:2379", "db-2.example:12379", "[::1]:2379"]);
        assert_eq!(url.prefix, "team/lct");
        assert!(!url.tls);
        let url = EtcdUrl::parse("etcds://a:1").unwrap();
        assert!(url.tls);
        assert_eq!(url.prefix, "lct");
        assert_eq!(url.to_url(), "etcds://a:1/lct");
        assert_eq!(EtcdUrl::parse("etcd://h/p/").unwrap().prefix, "p");
    }

    #[test]
    fn refuses_what_is_not_an_etcd_url() {
        for bad in [
            "http://127.0.0.1:2379",
            "etcd://",
            "etcd:///lct",
            "etcd://a:0",
            "etcd://a:65536",
            "etcd://a:+1",
            "etcd://a:1,a:1",
            "etcd://a b:1",
            "etcd://-a:1",
            "etcd://[::1:1",
            "etcd://[nope]:1",
            "etcd://a:1/x//y",
            "etcd://a:1/../x",
            "etcd://a:1/x y",
            "etcd://a:1/x%00",
            "etcd://user@a:1",
            "etcd://a:1,",
        ] {
            let e = EtcdUrl::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(bad), "{bad}: the error names the URL: {e}");
        }
        let many = (1..=17).map(|i| format!("h{i}:1")).collect::<Vec<_>>().join(",");
        assert!(EtcdUrl::parse(&format!("etcd://{many}")).is_err());
        assert!(EtcdUrl::parse(&format!("etcd://a:1/{}", "x".repeat(129))).is_err());
    }
}
