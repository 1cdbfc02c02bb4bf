//! The DNSSEC part of the configuration: each signed zone's keys (read from the state
//! directory, made there the first time), the signature timers and the key policy.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Config, DnssecChoice};
use crate::zone::DnsRecord;

impl Config {
    /// The zones signed here, each key read from the state directory (made there the first
    /// time); a zone signed must be one of the records file's.
    pub fn dnssec(&self, records: &[DnsRecord], secondary_zones: &[String]) -> anyhow::Result<crate::sign::Dnssec> {
        use crate::zonekeys::KeyAlgorithm;
        let dir = self.state_file().parent().map(Path::to_path_buf).unwrap_or_default();
        let policy = self.policy()?;
        let now = crate::tsig::now();
        let mut keys = BTreeMap::new();
        for (zone, choice) in &self.dnssec {
            let zone = crate::zone::fqdn(&zone.to_ascii_lowercase());
            let field = self.field(format!("dnssec.\"{zone}\""));
            let algorithm = match choice {
                DnssecChoice::Off => continue,
                DnssecChoice::On => KeyAlgorithm::Ecdsa,
                DnssecChoice::Ed25519 => KeyAlgorithm::Ed25519,
            };
            if secondary_zones.contains(&zone) {
                anyhow::bail!("{field}: a zone followed from a primary is served as signed there, not signed here");
            }
            if !records.iter().any(|r| r.zone == zone) {
                anyhow::bail!("{field}: a zone that has no records");
            }
            let probe = crate::sign::Dnssec::with_rings(BTreeMap::new(), policy, dir.clone(), Default::default());
            let ttls = probe.ttls(records, &zone);
            let ring = crate::keystate::update(&dir, &zone, algorithm, now, |file| {
                crate::keyroll::advance(&zone, algorithm, file, &policy, ttls, now)
            })?;
            keys.insert(zone.clone(), ring);
        }
        let mut timers = crate::sign::Timers::default();
        if let Some(lifetime) = self.dnssec_timers.signature_lifetime {
            timers.lifetime = lifetime;
            timers.refresh = lifetime / 10 + (lifetime / 100).min(7_200);
        }
        if let Some(refresh) = self.dnssec_timers.signature_refresh {
            timers.refresh = refresh;
        }
        if timers.refresh >= timers.lifetime || timers.lifetime < 10 {
            anyhow::bail!(
                "{}: the refresh ({} s) must be shorter than the lifetime ({} s), itself 10 s at least",
                self.field("dnssec_timers".into()),
                timers.refresh,
                timers.lifetime
            );
        }
        Ok(crate::sign::Dnssec::with_rings(keys, policy, dir, timers).with_parents(self.dnssec_policy.parent.clone()))
    }

    /// The key policy: `[dnssec_policy]` over Knot's defaults.
    pub fn policy(&self) -> anyhow::Result<crate::keyroll::Policy> {
        let d = crate::keyroll::Policy::default();
        let p = &self.dnssec_policy;
        let policy = crate::keyroll::Policy {
            split: p.split.unwrap_or(d.split),
            zsk_lifetime: p.zsk_lifetime.unwrap_or(d.zsk_lifetime),
            ksk_lifetime: p.ksk_lifetime.unwrap_or(d.ksk_lifetime),
            propagation_delay: p.propagation_delay.unwrap_or(d.propagation_delay),
            dnskey_ttl: p.dnskey_ttl.or(d.dnskey_ttl),
            parent_ds_ttl: p.parent_ds_ttl.unwrap_or(d.parent_ds_ttl),
            parent_check_interval: p.parent_check_interval.unwrap_or(d.parent_check_interval).max(1),
        };
        // Ten years bounds every wait (a typing slip of a few digits is not a plan).
        for (name, value) in [
            ("zsk_lifetime", policy.zsk_lifetime),
            ("ksk_lifetime", policy.ksk_lifetime),
            ("propagation_delay", policy.propagation_delay),
            ("parent_ds_ttl", policy.parent_ds_ttl),
            ("parent_check_interval", policy.parent_check_interval),
        ] {
            if value > 10 * 365 * 86_400 {
                anyhow::bail!("{}: {value} s is more than ten years", self.field(format!("dnssec_policy.{name}")));
            }
        }
        // A lifetime shorter than a rollover's own waits would start the next before the
        // last ended (Knot refuses the same).
        for (name, lifetime) in [("zsk_lifetime", policy.zsk_lifetime), ("ksk_lifetime", policy.ksk_lifetime)] {
            let waits = policy.propagation_delay * 2 + u64::from(policy.dnskey_ttl.unwrap_or(0));
            if lifetime != 0 && lifetime <= waits {
                anyhow::bail!(
                    "{}: {lifetime} s is not longer than a rollover's waits ({waits} s: twice the propagation delay \
                     and the DNSKEY TTL); 0 rolls only when asked",
                    self.field(format!("dnssec_policy.{name}"))
                );
            }
        }
        Ok(policy)
    }
}
