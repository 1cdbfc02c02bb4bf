//! The inventory: which nodes exist, which of them a command is about, and how to run
//! something on each.
//!
//! * [`Selector`] picks nodes by name or glob (`zk-*`), cluster, group, tag, status and
//!   provider, and widens a cluster selection to the clusters that depend on it, or that it
//!   depends on.
//! * [`query`] asks the providers for their nodes and applies a selector.
//! * [`ansible`] prints an Ansible dynamic inventory of nodes.
//! * [`install`] copies lct's node-side programs to nodes over SSH, checked by hash.
//! * [`exec`] runs a command on nodes in parallel: inside the namespace of a local node,
//!   over OpenSSH for a remote one; [`report`] prints what it and `install` did.
//! * [`clusters`] keeps cluster records (`clusters set`, `--depends-on`'s grammar).
//! * [`check`] validates a record stream line by line.

pub mod ansible;
pub mod check;
pub mod clusters;
pub mod exec;
pub mod install;
pub mod report;
mod select;
#[cfg(feature = "etcd")]
pub mod state;

pub use select::{Selector, glob, providers_long_help, query, say_unknown_clusters, select};
