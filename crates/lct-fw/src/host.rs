//! This host's own firewall as the commands change it: which node it is, a sync saved for the
//! next boot with its rollback watchdog, `confirm`, the watchdog's roll-back, `remove`.

use std::io;
use std::time::Duration;

use lct_core::record::Name;

use crate::boot::{self, BootError, Saved};
use crate::report::SyncReport;
use crate::ruleset::Ruleset;
use crate::sync::{Backend, SyncError, SyncOptions, sync_here};
use crate::{iptables, nft};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("reading the host name")]
    HostName(#[source] io::Error),
    #[error("the host name is not a node name ({0}); give --node")]
    NotANodeName(lct_core::record::InvalidValue),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Saved(#[from] BootError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The node this host is: its host name, up to the first dot.
pub fn host_name() -> Result<Name, HostError> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(HostError::HostName)?;
    let short = raw.trim().split('.').next().unwrap_or_default().to_string();
    short.parse::<Name>().map_err(HostError::NotANodeName)
}

/// Applies `ruleset` here as node `me` and saves it for the next boot (a change awaiting
/// `confirm` is saved when confirmed). With a confirm deadline, the watchdog is
/// `lct-fw rollback-watch`, started from this process's own binary.
pub fn sync(me: Name, ruleset: Ruleset, options: &SyncOptions) -> Result<SyncReport, HostError> {
    let report = sync_here(me, &ruleset, options, start_watchdog)?;
    if options.confirm_timeout.is_none() {
        boot::save(&Saved::Applied { backend: options.backend.into(), ruleset })?;
    }
    Ok(report)
}

/// A watchdog of our own, in this namespace, outliving this process.
fn start_watchdog(token: &str, after: u64) -> io::Result<()> {
    let mut watchdog = std::process::Command::new(std::env::current_exe()?);
    watchdog
        .args(["rollback-watch", "--token", token, "--after", &after.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // Its own process group: `exec --timeout` or a closing terminal must not end it.
    std::os::unix::process::CommandExt::process_group(&mut watchdog, 0);
    watchdog.spawn()?;
    eprintln!("lct-fw: run `lct-fw confirm` within {after} s, or the previous table comes back");
    Ok(())
}

/// Keeps the change a `sync --confirm-timeout` made, saving it for the next boot; `false`
/// when nothing awaited confirmation.
pub fn confirm() -> Result<bool, HostError> {
    let confirmed = nft::confirm()?;
    if confirmed {
        boot::save_applied_now()?;
    }
    Ok(confirmed)
}

/// The watchdog: after `after` seconds, puts the previous table back unless confirmed.
pub fn rollback_watch(token: &str, after: u64) -> Result<(), HostError> {
    std::thread::sleep(Duration::from_secs(after));
    if nft::roll_back(token)? {
        tracing::warn!("not confirmed in {after} s: the previous table is back");
    }
    Ok(())
}

/// Takes lct's firewall off this host (and off its next boots); `false` when there was none.
pub fn remove(backend: Backend) -> Result<bool, HostError> {
    match backend {
        Backend::Nft => {
            // Forgotten first: `lct-fw watch` finds nothing to put back when the table goes.
            nft::forget()?;
            boot::save(&Saved::Removed)?;
            Ok(nft::delete_table()?)
        }
        Backend::Iptables => {
            let removed = iptables::remove_and_forget()?;
            boot::save(&Saved::Removed)?;
            Ok(removed)
        }
    }
}
