//! Signatures made again before they expire, and keys taken through their rollovers,
//! without a change to the zone: when the first signature in use is due (the signature
//! timers' refresh before its expiry) or a key event comes (a key published, active,
//! retired, a rollover asked for by `lct-dns roll` or `ds-seen`), each signed zone gets a
//! new SOA serial and is built again, so secondaries fetch the new version (NOTIFY, then a
//! transfer), as Knot does.

use std::time::Duration;

use crate::live::Live;
use crate::served::Served;
use crate::zone::{DnsRecord, RecordType};

/// Longest sleep between looks when nothing is signed (a reload may bring signed zones).
const LOOK_EVERY: u64 = 300;

/// Longest sleep between looks at the key files of signed zones (an operator's `lct-dns
/// roll` or `ds-seen` is taken within this).
pub const KEY_LOOK_EVERY: u64 = 2;

/// Why a look at `now` is refused when the last one was at `last_look`: a clock jumped
/// more than a day ahead between two looks seconds apart (a wrong clock would date every
/// signature in the future, and collapse the waits of a rollover). A restart accepts it.
pub fn clock_jumped(last_look: u64, now: u64, looks_every: u64) -> Option<String> {
    let gap = now.saturating_sub(last_look);
    (gap > looks_every.saturating_add(crate::keyroll::CLOCK_SLACK)).then(|| {
        format!(
            "the clock jumped {gap} s ahead since the last look: not signing or rolling keys with a clock far ahead \
             (the previous version serves on); if the clock is right, restart lct-dns to accept it"
        )
    })
}

/// Re-signs the signed zones of `live` as they come due, until the process ends.
pub async fn refresh_loop(live: Live) {
    let mut last_look = crate::tsig::now();
    let mut next_parent_check = 0;
    loop {
        let dnssec = live.current().settings.dnssec.clone();
        let now = crate::tsig::now();
        let longest = if dnssec.zones().is_empty() { LOOK_EVERY } else { KEY_LOOK_EVERY };
        let due = [dnssec.next_refresh(), dnssec.next_key_event(now)].into_iter().flatten().min();
        let wait = due.map_or(longest, |d| d.saturating_sub(now).clamp(1, longest));
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let turn = live.update_lock().await;
        let served = live.current();
        let now = crate::tsig::now();
        if !served.settings.dnssec.zones().is_empty()
            && let Some(why) = clock_jumped(last_look, now, longest)
        {
            tracing::error!("{why}");
            continue;
        }
        last_look = now;
        // A KSK submission: the parent's servers asked for the DS now and then.
        let submitting = served.settings.dnssec.zones().iter().any(|z| {
            served.settings.dnssec.ring(z).is_some_and(|r| r.plan(now).is_ok_and(|p| !p.submitting.is_empty()))
        });
        if submitting && !served.settings.dnssec.parents.is_empty() && now >= next_parent_check {
            next_parent_check = now + served.settings.dnssec.policy.parent_check_interval;
            let dnssec = served.settings.dnssec.clone();
            if let Ok((seen, errors)) = tokio::task::spawn_blocking(move || dnssec.check_parents(now)).await {
                for zone in seen {
                    tracing::info!("zone {zone}: the parent has the new DS (seen by asking it)");
                }
                for e in errors {
                    tracing::warn!("the parent's DS not checked: {e}");
                }
            }
        }
        let keys_changed = {
            let (records, dnssec) = (served.records.clone(), served.settings.dnssec.clone());
            match tokio::task::spawn_blocking(move || dnssec.advance(&records, now)).await {
                Ok(Ok(changed)) => changed,
                Ok(Err(e)) => {
                    // The previous version serves on; the keys are looked at again later.
                    tracing::error!("keys not taken further, trying again in a minute: {e}");
                    drop(turn);
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!("keys not taken further: {e}");
                    continue;
                }
            }
        };
        let refresh_due = served.settings.dnssec.next_refresh().is_some_and(|d| d <= now);
        if !keys_changed && !refresh_due {
            continue;
        }
        let zones: Vec<String> = served.settings.dnssec.zones();
        let records = with_new_serials(&served.records, &zones);
        let settings = served.settings.clone();
        let build = move || {
            let next = Served::build_and_persist(records, settings)?;
            crate::keyserial::note_served(&next.settings.dnssec, &next.records, now);
            Ok::<_, anyhow::Error>(next)
        };
        match tokio::task::spawn_blocking(build).await {
            Ok(Ok(next)) => {
                live.swap(next);
                let why = if keys_changed { "keys changed" } else { "signatures refreshed" };
                tracing::info!("{why} in {}", zones.join(", "));
                if keys_changed && let Some(ring) = zones.first().and_then(|z| served.settings.dnssec.ring(z)) {
                    tracing::info!("zone {}: keys {}", ring.zone, ring.describe(now));
                }
            }
            Ok(Err(e)) => {
                // The previous version serves on (its signatures still valid for the refresh
                // margin); another try in a minute.
                tracing::error!("signatures not refreshed, trying again in a minute: {e:#}");
                drop(turn);
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            }
            Err(e) => tracing::error!("signatures not refreshed: {e}"),
        }
        drop(turn);
    }
}

/// `records` with the SOA serial of each zone in `zones` one up (RFC 1982; 0 skipped).
pub fn with_new_serials(records: &[DnsRecord], zones: &[String]) -> Vec<DnsRecord> {
    records
        .iter()
        .map(|r| {
            if r.rtype != RecordType::SOA || !zones.contains(&r.zone) {
                return r.clone();
            }
            let mut fields: Vec<String> = r.data.split_whitespace().map(String::from).collect();
            if let Some(serial) = fields.get(2).and_then(|s| s.parse::<u32>().ok()) {
                fields[2] = match serial.wrapping_add(1) {
                    0 => 1,
                    n => n,
                }
                .to_string();
            }
            DnsRecord { data: fields.join(" "), ..r.clone() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// Looks seconds apart: a gap of a day and more is a clock far ahead, refused; less, or
    /// a clock going back, is not this check's (signing refuses a clock before its keys).
    #[test]
    fn a_clock_jumping_a_day_ahead_between_looks_is_refused() {
        let day = crate::keyroll::CLOCK_SLACK;
        assert!(super::clock_jumped(1_000, 1_002, 2).is_none());
        assert!(super::clock_jumped(1_000, 1_000 + day, 2).is_none());
        let why = super::clock_jumped(1_000, 1_003 + day, 2).unwrap();
        assert!(why.contains("clock far ahead") && why.contains("restart"), "{why}");
        assert!(super::clock_jumped(1_000, 10, 2).is_none());
    }
}
