//! Bringing this host's firewall to a node's ruleset: the backend's sync, then what was
//! asked around it (ending removed peers' connections, a confirm deadline).

use std::io;

use lct_core::record::Name;

use crate::report::SyncReport;
use crate::ruleset::Ruleset;
use crate::{iptables, nft};

/// Which packet filter applies the ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// nf_tables over netlink, in one atomic batch.
    Nft,
    /// iptables and ip6tables (not atomic), for hosts without nf_tables.
    Iptables,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Iptables => "iptables",
        }
    }
}

/// How to sync.
#[derive(Debug, Clone, Copy)]
pub struct SyncOptions {
    /// Replace the whole table even when only elements changed.
    pub full: bool,
    /// End the established connections of peers no rule admits any more.
    pub kill_established: bool,
    /// Roll back unless `lct-fw confirm` comes within this many seconds (nft only).
    pub confirm_timeout: Option<u64>,
    pub backend: Backend,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("--confirm-timeout needs the nft backend")]
    ConfirmNeedsNft,
    #[error("{what}: {error}")]
    Io { what: &'static str, error: io::Error },
}

fn context(what: &'static str) -> impl FnOnce(io::Error) -> SyncError {
    move |error| SyncError::Io { what, error }
}

/// Applies `ruleset` on this host (node `me`). With a confirm deadline, `start_watchdog` is
/// given the token and the seconds: it must start what rolls back unless confirmed (the
/// binary starts `lct-fw rollback-watch`, outliving itself).
pub fn sync_here(
    me: Name,
    ruleset: &Ruleset,
    options: &SyncOptions,
    start_watchdog: impl FnOnce(&str, u64) -> io::Result<()>,
) -> Result<SyncReport, SyncError> {
    if options.backend == Backend::Iptables && options.confirm_timeout.is_some() {
        return Err(SyncError::ConfirmNeedsNft);
    }
    // What was applied before: only to end removed peers' connections.
    let previous = match options.backend {
        _ if !options.kill_established => None,
        Backend::Nft => nft::last_applied(),
        Backend::Iptables => iptables::last_applied(),
    };
    let token = match options.confirm_timeout {
        Some(_) => Some(nft::begin_confirm().map_err(context("remembering the table to go back to"))?),
        None => None,
    };
    let applied = match options.backend {
        Backend::Nft => nft::sync(ruleset, options.full).map_err(context("applying to nftables"))?,
        Backend::Iptables => iptables::sync(ruleset).map_err(context("applying with iptables"))?,
    };
    let mut report = SyncReport::applied(me, &applied);
    if let Some(previous) = &previous {
        let gone = nft::removed_peers(previous, ruleset);
        let killed = nft::kill_connections(&gone).map_err(context("ending removed peers' connections"))?;
        report.connections_ended_for = Some(killed);
    }
    if let (Some(token), Some(after)) = (token, options.confirm_timeout) {
        start_watchdog(&token, after).map_err(context("starting the rollback watchdog"))?;
        report.confirm_within_s = Some(after);
    }
    Ok(report)
}
