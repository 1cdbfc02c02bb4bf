//! Signatures made again before they expire, without a change to the zone: when the first
//! signature in use is due (the signature timers' refresh before its expiry), each signed
//! zone gets a new SOA serial and is built again, so the due signatures are made anew and
//! secondaries fetch them (NOTIFY, then a transfer), as Knot does.

use std::time::Duration;

use crate::live::Live;
use crate::served::Served;
use crate::zone::{DnsRecord, RecordType};

/// Longest sleep between looks (a reload may bring zones due sooner).
const LOOK_EVERY: u64 = 300;

/// Re-signs the signed zones of `live` as they come due, until the process ends.
pub async fn refresh_loop(live: Live) {
    loop {
        let due = live.current().settings.dnssec.next_refresh();
        let now = crate::tsig::now();
        let wait = due.map_or(LOOK_EVERY, |d| d.saturating_sub(now).clamp(1, LOOK_EVERY));
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let turn = live.update_lock().await;
        let served = live.current();
        if served.settings.dnssec.next_refresh().is_none_or(|d| d > crate::tsig::now()) {
            continue;
        }
        let zones: Vec<String> = served.settings.dnssec.zones().map(String::from).collect();
        let records = with_new_serials(&served.records, &zones);
        let settings = served.settings.clone();
        match tokio::task::spawn_blocking(move || Served::build_and_persist(records, settings)).await {
            Ok(Ok(next)) => {
                live.swap(next);
                tracing::info!("signatures refreshed in {}", zones.join(", "));
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
