//! The counters ([`crate::stats`]) and the zones' gauges as named metrics: `dns-stat`
//! records (`lct-dns stats`) and Prometheus' text exposition format (version 0.0.4), both
//! made from the same samples.

use std::collections::BTreeMap;
use std::fmt::Write;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::served::Served;
use crate::stats::{Event, Snapshot};

/// One metric's value, with its labels: a line of `lct-dns stats`, a sample of /metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DnsStat {
    /// The Prometheus name (`lct_dns_queries_total`, ...).
    pub metric: String,
    /// Its labels (view, qtype, rcode, zone, ...); empty for a plain counter.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub value: u64,
}

impl lct_core::record::Record for DnsStat {
    const KIND: &'static str = "dns-stat";
    const VERSION: u32 = 1;
}

impl lct_core::table::Tabular for DnsStat {
    const HEADERS: &'static [&'static str] = &["METRIC", "LABELS", "VALUE"];
    fn row(&self) -> Vec<String> {
        let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        vec![self.metric.clone(), if labels.is_empty() { "-".into() } else { labels.join(",") }, self.value.to_string()]
    }
}

/// Every metric: name, Prometheus type, help. /metrics lists them in this order.
pub const METRICS: &[(&str, &str, &str)] = &[
    ("lct_dns_queries_total", "counter", "Queries answered, by view, question type and response code."),
    ("lct_dns_rrl_dropped_total", "counter", "UDP answers dropped by response rate limiting."),
    ("lct_dns_rrl_slipped_total", "counter", "UDP answers sent truncated by response rate limiting (slip)."),
    ("lct_dns_tcp_accepted_total", "counter", "TCP connections accepted."),
    ("lct_dns_tcp_refused_total", "counter", "TCP connections closed at once: every other one was mid-query."),
    ("lct_dns_tcp_evicted_total", "counter", "Idle TCP connections closed to make room for a new one."),
    ("lct_dns_tcp_open", "gauge", "TCP connections open now."),
    ("lct_dns_transfers_out_total", "counter", "Zone transfers served to secondaries, by type."),
    ("lct_dns_transfers_in_total", "counter", "Zone transfers taken from a primary, by type."),
    ("lct_dns_transfers_in_failed_total", "counter", "Refreshes of secondary zones that failed."),
    ("lct_dns_notify_sent_total", "counter", "NOTIFY messages answered by a secondary."),
    ("lct_dns_notify_unanswered_total", "counter", "NOTIFY messages no secondary answered after every try."),
    ("lct_dns_notify_received_total", "counter", "NOTIFY messages accepted from a primary."),
    ("lct_dns_notify_refused_total", "counter", "NOTIFY messages refused (not a primary's key for the zone)."),
    ("lct_dns_zone_serial", "gauge", "Each zone's SOA serial, by zone and role (primary or secondary)."),
    ("lct_dns_zone_expired", "gauge", "1 for a secondary zone past its SOA expire without a refresh."),
    (
        "lct_dns_validation_refused_total",
        "counter",
        "Transferred versions of signed secondary zones refused: they did not validate.",
    ),
    (
        "lct_dns_zone_refused_serial",
        "gauge",
        "The serial of a secondary zone's last transferred version, refused by validation (absent: it serves).",
    ),
    ("lct_dns_zone_signed", "gauge", "1 for a zone signed here with DNSSEC."),
    (
        "lct_dns_zone_next_key_event_seconds",
        "gauge",
        "Seconds to a signed zone's next key event (absent: none scheduled).",
    ),
    (
        "lct_dns_zone_signatures_expire_seconds",
        "gauge",
        "Seconds to the expiry of a signed zone's first signature to expire.",
    ),
    ("lct_dns_scrapes_refused_total", "counter", "Statistics requests turned away (too many, too slow, too big)."),
    ("lct_dns_uptime_seconds", "gauge", "Seconds since counting began."),
];

fn sample(metric: &str, labels: &[(&str, &str)], value: u64) -> DnsStat {
    DnsStat {
        metric: metric.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        value,
    }
}

/// The samples of a snapshot and of what is served now.
pub fn samples(snap: &Snapshot, served: &Served) -> Vec<DnsStat> {
    let mut out: Vec<DnsStat> = snap
        .query_counts()
        .map(|(view, qtype, rcode, n)| {
            sample("lct_dns_queries_total", &[("view", view), ("qtype", qtype), ("rcode", rcode)], n)
        })
        .collect();
    let e = |event| snap.event(event);
    out.extend([
        sample("lct_dns_rrl_dropped_total", &[], snap.rrl_drops),
        sample("lct_dns_rrl_slipped_total", &[], snap.rrl_slips),
        sample("lct_dns_tcp_accepted_total", &[], e(Event::TcpAccepted)),
        sample("lct_dns_tcp_refused_total", &[], e(Event::TcpRefused)),
        sample("lct_dns_tcp_evicted_total", &[], e(Event::TcpEvicted)),
        sample("lct_dns_tcp_open", &[], e(Event::TcpAccepted).saturating_sub(e(Event::TcpClosed))),
        sample("lct_dns_transfers_out_total", &[("type", "AXFR")], e(Event::AxfrOut)),
        sample("lct_dns_transfers_out_total", &[("type", "IXFR")], e(Event::IxfrOut)),
        sample("lct_dns_transfers_in_total", &[("type", "AXFR")], e(Event::AxfrIn)),
        sample("lct_dns_transfers_in_total", &[("type", "IXFR")], e(Event::IxfrIn)),
        sample("lct_dns_transfers_in_failed_total", &[], e(Event::TransferInFailed)),
        sample("lct_dns_notify_sent_total", &[], e(Event::NotifySent)),
        sample("lct_dns_notify_unanswered_total", &[], e(Event::NotifyUnanswered)),
        sample("lct_dns_notify_received_total", &[], e(Event::NotifyReceived)),
        sample("lct_dns_notify_refused_total", &[], e(Event::NotifyRefused)),
        sample("lct_dns_validation_refused_total", &[], e(Event::ValidationRefused)),
    ]);
    out.extend(zone_samples(served));
    out.push(sample("lct_dns_scrapes_refused_total", &[], e(Event::ScrapeRefused)));
    out.push(sample("lct_dns_uptime_seconds", &[], snap.uptime_seconds));
    out
}

/// Per zone: its serial, for a secondary zone whether it expired, for a zone signed here
/// its signing state. The one place a zone's gauges are made.
pub fn zone_samples(served: &Served) -> Vec<DnsStat> {
    // Serials found once per version, not per scrape; secondary zones too when they
    // have no records (never transferred, or expired).
    let serials = served.zone_serials();
    let zones: std::collections::BTreeSet<&str> = serials
        .iter()
        .map(|(zone, _)| zone.as_str())
        .chain(served.settings.primaries.iter().map(|p| p.zone.as_str()))
        .collect();
    let expired = served.settings.expired.lock().expect("not poisoned").clone();
    let mut out = Vec::new();
    for zone in zones {
        let secondary = served.settings.primaries.iter().any(|p| p.zone == zone);
        let role = if secondary { "secondary" } else { "primary" };
        if let Ok(i) = serials.binary_search_by(|(z, _)| z.as_str().cmp(zone)) {
            out.push(sample("lct_dns_zone_serial", &[("zone", zone), ("role", role)], serials[i].1.into()));
        }
        if secondary {
            out.push(sample("lct_dns_zone_expired", &[("zone", zone)], expired.contains(zone).into()));
            if let Some(serial) = crate::stats::refused_serial(zone) {
                out.push(sample("lct_dns_zone_refused_serial", &[("zone", zone)], serial.into()));
            }
        }
    }
    out.extend(signing_samples(served, crate::tsig::now()));
    out
}

/// Per zone signed here: that it is, and the seconds to its next key event and to its
/// first signature's expiry.
fn signing_samples(served: &Served, now: u64) -> Vec<DnsStat> {
    let dnssec = &served.settings.dnssec;
    let mut out = Vec::new();
    for zone in dnssec.zones() {
        let labels = [("zone", zone.as_str())];
        out.push(sample("lct_dns_zone_signed", &labels, 1));
        if let Some(ring) = dnssec.ring(&zone)
            && let (Some(at), _) = crate::keyroll::next_event(&ring, &dnssec.policy, now)
        {
            out.push(sample("lct_dns_zone_next_key_event_seconds", &labels, at.saturating_sub(now)));
        }
        if let Some(expiry) = dnssec.first_expiry(&zone) {
            out.push(sample("lct_dns_zone_signatures_expire_seconds", &labels, expiry.saturating_sub(now)));
        }
    }
    out
}

/// The samples in Prometheus' text format: each metric's HELP and TYPE, then its samples.
pub fn prometheus(samples: &[DnsStat]) -> String {
    let mut text = String::with_capacity(samples.len() * 80 + 4096);
    for (name, kind, help) in METRICS {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in samples.iter().filter(|s| s.metric == *name) {
            text.push_str(name);
            if !s.labels.is_empty() {
                let labels: Vec<String> =
                    s.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
                let _ = write!(text, "{{{}}}", labels.join(","));
            }
            let _ = writeln!(text, " {}", s.value);
        }
    }
    text
}

/// A label value as the text format writes it: backslash, double quote and newline escaped
/// (a zone's name comes from the configuration or a primary, not from a query).
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use crate::zone::{DnsRecord, RecordType, View};

    /// A zone of one SOA (serial 9), served from nowhere (nothing is kept).
    fn served() -> Served {
        let soa = DnsRecord {
            zone: "lct.internal.".into(),
            name: "lct.internal.".into(),
            rtype: RecordType::SOA,
            ttl: 300,
            data: "ns1.lct.internal. hostmaster.lct.internal. 9 3600 600 1209600 300".into(),
            view: View::Both,
        };
        let settings = Settings::bare("/nonexistent/zones.jsonl".into());
        Served::build(vec![soa], std::sync::Arc::new(settings)).unwrap()
    }

    #[test]
    fn every_sample_names_a_listed_metric_and_the_text_format_is_well_formed() {
        let stats = crate::stats::enable();
        stats.worker().answered(false, 1, 3);
        let served = served();
        assert!(served.zone_serials.get().is_none(), "found before any scrape");
        let samples = samples(&stats.snapshot(), &served);
        // Found once for this version, read by every later scrape.
        assert_eq!(served.zone_serials.get().unwrap(), &[("lct.internal.".to_string(), 9)]);
        for s in &samples {
            assert!(METRICS.iter().any(|(name, _, _)| *name == s.metric), "{} is not listed", s.metric);
        }
        let text = prometheus(&samples);
        assert!(text.contains("lct_dns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\",view=\"external\"} "), "{text}");
        assert!(text.contains("lct_dns_zone_serial{role=\"primary\",zone=\"lct.internal.\"} 9"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("a sample line: name, value");
            value.parse::<u64>().unwrap_or_else(|_| panic!("not a value: {line}"));
        }
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
