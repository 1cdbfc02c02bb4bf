//! A change that must be confirmed: what to go back to, and the watchdog's roll-back.

use std::io;

use super::memory::{LastApplied, forget, memory_path};
use super::owner::{delete_table, sync};

/// A change waiting for `lct-fw confirm`, and what to go back to without it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Pending {
    token: String,
    previous: Option<LastApplied>,
}

fn pending_path() -> io::Result<std::path::PathBuf> {
    Ok(memory_path()?.with_extension("pending.json"))
}

/// Remembers what is applied now, before a change that must be confirmed; returns the token
/// the watchdog checks.
pub fn begin_confirm() -> io::Result<String> {
    let previous = LastApplied::read(&memory_path()?);
    // Unguessable, so that only the watchdog started with this change can roll it back.
    let token = lct_core::random::hex(16).map_err(io::Error::other)?;
    let path = pending_path()?;
    std::fs::create_dir_all(path.parent().expect("has parent"))?;
    let bytes = serde_json::to_vec(&Pending { token: token.clone(), previous }).map_err(io::Error::other)?;
    lct_core::fsutil::atomic_write(&path, &bytes, 0o600)?;
    Ok(token)
}

/// Confirms the pending change; `false` if there was none.
pub fn confirm() -> io::Result<bool> {
    match std::fs::remove_file(pending_path()?) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Called by the watchdog when the time is up: unless the change with `token` was
/// confirmed, puts back what was applied before it (or removes the table, if there was none).
pub fn roll_back(token: &str) -> io::Result<bool> {
    let path = pending_path()?;
    let Some(pending) = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Pending>(&b).ok()) else {
        return Ok(false);
    };
    if pending.token != token {
        return Ok(false); // a newer change is pending; its own watchdog decides
    }
    match pending.previous {
        // The whole table, through `lct-fw watch` if it owns it.
        Some(previous) => {
            sync(&previous.ruleset, true)?;
        }
        None => {
            // Forgotten first: `lct-fw watch` finds nothing to put back when the table goes.
            forget()?;
            delete_table()?;
        }
    }
    std::fs::remove_file(&path)?;
    Ok(true)
}
