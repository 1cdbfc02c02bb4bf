//! `/etc/hosts` for lct clusters.
//!
//! * [`render`] turns node records into [`HostEntry`] records: a node's private (and, if
//!   asked, public) addresses with its short name, its FQDN under the cluster's domain and
//!   its aliases; sorted, so the same membership always gives the same bytes.
//! * [`HostsFile`] edits one managed block per cluster between marker lines, keeping every
//!   other byte; [`apply`] writes it atomically (or in place on a bind mount), under a lock,
//!   and not at all when nothing changed.
//! * [`input`] reads a record stream for `render` and `apply`; [`args`] are the naming
//!   flags the subcommands share.
//! * [`push`] renders once and applies on every node of the selected clusters and of the
//!   clusters that depend on them.

pub mod args;
mod entry;
mod file;
pub mod input;
mod layout;
mod member;
pub mod push;
mod render;

pub use entry::{
    HostEntry, HostsError, PublicNames, RenderOptions, Scope, blocks_of, check, check_host_name, hosts_text,
};
pub use file::{ApplyOutcome, ApplyReport, HostsFile, WriteMode, apply, block_begin, block_end};
pub use member::Member;
pub use push::{PushPlan, PushReport, PushStatus, plan, push};
pub use render::{render, render_blocks};
