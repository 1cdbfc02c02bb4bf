//! Regions: the one grammar of a region's name, and the private network a node is on (its
//! provider's region: private addresses name a node only within one, as two regions, or two
//! providers, may hand out the same address).

use std::fmt;

use super::node::{Node, ProviderName};

/// The longest region name (a DNS label's length; Linode's are far shorter). A provider may
/// allow less: the local cloud's names become bridge names (12 bytes).
pub const MAX_REGION_LEN: usize = 63;

/// Why `name` is not a region name of at most `max_len` bytes, or `None` when it is one:
/// lower-case ASCII letters, digits and inner hyphens, a letter first, no `--`, no final
/// hyphen (`us-east`, `eu-central`, `a`, `eu2`).
pub fn region_problem(name: &str, max_len: usize) -> Option<String> {
    let bytes = name.as_bytes();
    if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > max_len {
        Some(format!("is {} bytes long, over {max_len}", name.len()))
    } else if !bytes[0].is_ascii_lowercase() {
        Some("must start with a lower-case letter".to_string())
    } else if !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-') {
        Some("may hold only lower-case letters, digits and hyphens".to_string())
    } else if name.ends_with('-') || name.contains("--") {
        Some("may not end with a hyphen or hold two in a row".to_string())
    } else {
        None
    }
}

/// One private network: a provider's region.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrivateNetwork {
    pub provider: ProviderName,
    /// As the node record has it (empty: a record from before regions).
    pub region: String,
}

impl fmt::Display for PrivateNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let provider = serde_json::to_value(self.provider).ok();
        let provider = provider.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
        write!(f, "{provider} region {}", if self.region.is_empty() { "(none)" } else { &self.region })
    }
}

/// `PROVIDER:REGION` (`local:a`, `linode:us-east`): how a private network is named on a
/// command line (a region name alone would be ambiguous: two providers may use one name).
impl std::str::FromStr for PrivateNetwork {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (provider, region) =
            s.split_once(':').ok_or_else(|| format!("{s:?}: expected PROVIDER:REGION (local:a, linode:us-east)"))?;
        let provider: ProviderName = provider.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if let Some(problem) = region_problem(region, MAX_REGION_LEN) {
            return Err(format!("{s:?}: region {region:?} {problem}"));
        }
        Ok(PrivateNetwork { provider, region: region.to_string() })
    }
}

impl Node {
    /// The private network this node is on: the one definition every tool uses to decide
    /// whether another node's private address reaches it (lct-fw, lct-hosts, lct-dns,
    /// lct-mesh).
    pub fn private_network(&self) -> PrivateNetwork {
        PrivateNetwork { provider: self.provider, region: self.region.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_network_is_named_with_its_provider() {
        let n: PrivateNetwork = "linode:us-east".parse().unwrap();
        assert_eq!((n.provider, n.region.as_str()), (ProviderName::Linode, "us-east"));
        for bad in ["us-east", "nimbus:a", "local:", "local:A", "local:a;reboot", ":a"] {
            assert!(bad.parse::<PrivateNetwork>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn one_grammar_and_one_network() {
        for good in ["a", "us-east", "eu2", "ap-south-1"] {
            assert_eq!(region_problem(good, MAX_REGION_LEN), None, "{good}");
        }
        for bad in ["", "Us", "1a", "-a", "a-", "a--b", "a b", "a;reboot", "a\nb", "ré", &"a".repeat(64)] {
            assert!(region_problem(bad, MAX_REGION_LEN).is_some(), "{bad:?}");
        }
        assert!(region_problem("abcdefghijklm", 12).unwrap().contains("over 12"));
        let node = |provider: &str, region: &str| -> Node {
            serde_json::from_value(serde_json::json!({
                "cluster": "c", "group": "g", "name": "n-1", "provider": provider, "status": "running", "region": region,
            }))
            .unwrap()
        };
        assert_eq!(node("local", "a").private_network(), node("local", "a").private_network());
        assert_ne!(node("local", "a").private_network(), node("local", "b").private_network());
        assert_ne!(node("local", "us-east").private_network(), node("linode", "us-east").private_network());
        assert_eq!(node("linode", "us-east").private_network().to_string(), "linode region us-east");
    }
}
