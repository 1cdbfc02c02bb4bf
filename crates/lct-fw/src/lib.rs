//! Host firewalls that follow cluster membership.
//!
//! * [`model`]: the declarations kept in a cluster record (`firewall`), and what dependent
//!   clusters declare they use.
//! * [`ruleset`]: one node's concrete ruleset: peer address sets per rule, resolved from
//!   the current members; as `fw-ruleset` records or `nft` text.
//! * [`nft`]: applying it to the kernel's nf_tables in-process over netlink (nftnl), in one
//!   atomic batch, or only the set elements when only membership changed; through `lct-fw
//!   watch` when it owns the table (Linux 6.9+).
//! * [`sync`]: a sync on this host; [`push`]: syncs on every affected node.
//! * [`report`]: the `fw-sync` record a sync prints.
//! * [`iptables`]: the fallback for hosts without nf_tables (not atomic).
//! * [`boot`]: the last applied ruleset saved on disk and loaded at boot, else default-deny.
//! * [`input`]: the node records (or this host's ruleset) read on stdin.
//! * [`host`]: this host's own firewall as the commands change it (sync saved for the next
//!   boot, confirm, roll-back, remove).
//! * [`cloud`]: Linode Cloud Firewalls mirroring each group's host rules.
//! * [`cli`]: the command line (the binary parses it and prints).

pub mod boot;
pub mod cli;
#[cfg(feature = "linode")]
pub mod cloud;
pub mod host;
pub mod input;
pub mod iptables;
pub mod model;
pub mod nft;
pub mod push;
pub mod report;
pub mod ruleset;
pub mod sync;

pub use lct_core::prefix::Prefix;
pub use model::{Allow, FirewallSpec, Mode};
pub use report::{SyncOutcome, SyncReport};
pub use ruleset::{Rule, Ruleset, RulesetError, for_node};
