//! The naming flags every subcommand shares (`--public`, `--alias`, `--parent-domain`...),
//! and the render options they make.

use std::collections::BTreeMap;

use lct_core::cli::UsageError;
use lct_core::record::{DomainName, Name};

use crate::entry::{PublicNames, RenderOptions, check_host_name};

/// Which entries and names.
#[derive(Debug, Clone, clap::Args)]
pub struct Naming {
    /// Entries for public addresses too (named NODE.public unless --public-domain); a
    /// cluster whose record has `names` (a plan's) gets what that says instead
    #[arg(long)]
    pub public: bool,
    /// Name public entries NODE.SUFFIX
    #[arg(long, value_name = "SUFFIX", default_value = "public")]
    pub public_suffix: Name,
    /// Name public entries NODE.DOMAIN instead
    #[arg(long, value_name = "DOMAIN")]
    pub public_domain: Option<DomainName>,
    /// No entries for private addresses (except for clusters whose record says otherwise)
    #[arg(long)]
    pub no_private: bool,
    /// IPv4 only
    #[arg(long)]
    pub no_ipv6: bool,
    /// An extra name for a node: NODE=NAME (repeatable)
    #[arg(long, value_name = "NODE=NAME", value_parser = parse_alias)]
    pub alias: Vec<(Name, String)>,
    /// The parent of clusters without a domain: their nodes are NODE.CLUSTER.PARENT (as in
    /// lct-dns)
    #[arg(long, value_name = "DOMAIN", env = "LCT_DOMAIN", default_value = lct_core::naming::DEFAULT_PARENT_DOMAIN)]
    pub parent_domain: DomainName,
}

fn parse_alias(s: &str) -> Result<(Name, String), String> {
    let (node, name) = s.split_once('=').ok_or("expected NODE=NAME")?;
    let node = node.parse::<Name>().map_err(|e| e.to_string())?;
    check_host_name(name).map_err(|e| e.to_string())?;
    Ok((node, name.to_string()))
}

impl Naming {
    /// The render options the flags ask for (nothing to render is a usage error).
    pub fn options(&self) -> Result<RenderOptions, UsageError> {
        let public = match (&self.public_domain, self.public) {
            (Some(d), _) => Some(PublicNames::Domain(d.clone())),
            (None, true) => Some(PublicNames::Suffix(self.public_suffix.to_string())),
            (None, false) => None,
        };
        if self.no_private && public.is_none() {
            return Err(UsageError("--no-private without --public leaves nothing to render".into()));
        }
        let mut aliases: BTreeMap<Name, Vec<String>> = BTreeMap::new();
        for (node, name) in &self.alias {
            aliases.entry(node.clone()).or_default().push(name.clone());
        }
        Ok(RenderOptions {
            private: !self.no_private,
            public,
            ipv6: !self.no_ipv6,
            aliases,
            parent_domain: self.parent_domain.clone(),
        })
    }
}
