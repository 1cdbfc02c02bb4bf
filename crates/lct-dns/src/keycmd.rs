//! `lct-dns ds`, `keys`, `roll` and `ds-seen`: a signed zone's keys from the command line.
//! `roll` and `ds-seen` only write a request into the zone's key file, under its lock; the
//! running server takes it at its next look (every 2 s).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::bail;
use lct_core::cli::OutputFormat;
use lct_core::stream;
use lct_dns::config::Config;
use lct_dns::zonekeys::{KeyAlgorithm, KeyError};

/// The DS set the parent should hold: a master file line each, or `dns-ds` records (a kind
/// of its own: a DS belongs to the parent zone, not to the records lct-dns serves for this
/// one).
pub fn ds(zone: &str, config: &Path, format: OutputFormat) -> anyhow::Result<()> {
    let (zone, dir, algorithm) = signed_zone(config, zone)?;
    let ring = lct_dns::keystate::load(&dir, &zone, algorithm)?;
    let now = lct_dns::tsig::now();
    let records = ring.wanted_ds(now).iter().map(|k| k.ds_record(&zone)).collect::<Result<Vec<_>, _>>();
    let records = records.map_err(|e| anyhow::anyhow!(e))?;
    if records.is_empty() {
        bail!("zone {zone}: no KSK is active or ready ({})", ring.describe(now));
    }
    match format {
        OutputFormat::Table => {
            let mut out = io::stdout().lock();
            for ds in &records {
                writeln!(out, "{}", ds.line())?;
            }
        }
        _ => stream::write_after_passthrough(io::stdout().lock(), &[], &records)?,
    }
    Ok(())
}

/// The zone's keys with their role, state and the next event.
pub fn keys(zone: &str, config: &Path, format: OutputFormat) -> anyhow::Result<()> {
    let (zone, dir, algorithm) = signed_zone(config, zone)?;
    let policy = Config::load(config)?.policy()?;
    let ring = lct_dns::keystate::load(&dir, &zone, algorithm)?;
    let keys = lct_dns::keyroll::report(&ring, &policy, lct_dns::tsig::now());
    lct_core::table::emit(&keys, format).map_err(Into::into)
}

/// Asks for a rollover of the KSK (or CSK) or the ZSK now; refused while one runs.
pub fn roll(zone: &str, ksk: bool, config: &Path) -> anyhow::Result<()> {
    let (zone, dir, algorithm) = signed_zone(config, zone)?;
    let now = lct_dns::tsig::now();
    lct_dns::keystate::update(&dir, &zone, algorithm, now, |file| {
        let mut file = file.ok_or_else(|| no_keys(&dir, &zone))?;
        let role = lct_dns::keyroll::roll_role(&file, ksk, now)
            .map_err(|message| KeyError::Key { zone: zone.clone(), message })?;
        if !file.requests.roll.iter().any(|r| r.is_ksk() == ksk) {
            file.requests.roll.push(role);
        }
        Ok(file)
    })?;
    eprintln!("zone {zone}: rollover asked for; the running server starts it within seconds (lct-dns keys shows it)");
    Ok(())
}

/// The new DS is at the parent; refused unless a key waits for it.
pub fn ds_seen(zone: &str, config: &Path) -> anyhow::Result<()> {
    let (zone, dir, algorithm) = signed_zone(config, zone)?;
    let now = lct_dns::tsig::now();
    lct_dns::keystate::update(&dir, &zone, algorithm, now, |file| {
        let mut file = file.ok_or_else(|| no_keys(&dir, &zone))?;
        lct_dns::keyroll::check_ds_seen(&file, now).map_err(|message| KeyError::Key { zone: zone.clone(), message })?;
        file.requests.ds_seen = Some(now);
        Ok(file)
    })?;
    eprintln!("zone {zone}: DS seen at the parent; the running server retires the old key within seconds");
    Ok(())
}

/// A zone signed in the configuration at `config`: its name (fully qualified, lower case),
/// the state directory its keys are in, and their algorithm; an error for a zone not signed.
fn signed_zone(config: &Path, zone: &str) -> anyhow::Result<(String, PathBuf, KeyAlgorithm)> {
    let config = Config::load(config)?;
    let zone = lct_dns::zone::fqdn(&zone.to_ascii_lowercase());
    let algorithm = match config.dnssec.iter().find(|(z, _)| lct_dns::zone::fqdn(&z.to_ascii_lowercase()) == zone) {
        Some((_, lct_dns::config::DnssecChoice::On)) => KeyAlgorithm::Ecdsa,
        Some((_, lct_dns::config::DnssecChoice::Ed25519)) => KeyAlgorithm::Ed25519,
        _ => bail!("zone {zone} is not signed in this configuration ([dnssec] \"{zone}\" = \"on\")"),
    };
    let dir = config.state_file().parent().map(PathBuf::from).unwrap_or_default();
    Ok((zone, dir, algorithm))
}

/// The error for a signed zone whose keys the server has not made yet.
fn no_keys(dir: &Path, zone: &str) -> KeyError {
    KeyError::File {
        path: lct_dns::zonekeys::key_file(dir, zone).display().to_string(),
        message: format!("zone {zone} has no key yet: `lct-dns serve` makes it when it first signs the zone"),
    }
}
