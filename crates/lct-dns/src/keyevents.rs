//! The key events of the zones signed here, on [`Dnssec`]: each zone's keys taken along
//! their rollovers in their key files ([`crate::keyroll::advance`] under the file's lock),
//! the parent's servers asked for a submitted DS, the next event and the signatures' first
//! expiry for the timer ([`crate::resign`]) and the statistics.

use std::sync::atomic::Ordering;

use crate::keystate::KeyRing;
use crate::sign::Dnssec;

impl Dnssec {
    /// This, asking `parents` (the parent zone's servers) for the DS during a KSK submission.
    pub fn with_parents(mut self, parents: Vec<std::net::SocketAddr>) -> Dnssec {
        self.parents = parents;
        self
    }

    /// Asks the parent's servers (over TCP) whether the keys waiting for their DS have it,
    /// per zone with such keys; where every parent has had it at two looks a check interval
    /// apart, the submission is seen (as `lct-dns ds-seen` says it), taken at the next
    /// [`Dnssec::advance`]. The zones seen, and an error per parent that could not be asked
    /// (which counts as a miss: the two looks start again).
    pub fn check_parents(&self, now: u64) -> (Vec<String>, Vec<String>) {
        let (mut seen, mut errors) = (Vec::new(), Vec::new());
        let Some(dir) = &self.dir else { return (seen, errors) };
        if self.parents.is_empty() {
            return (seen, errors);
        }
        for zone in self.zones() {
            let ring = self.ring(&zone).expect("listed");
            let Some(apex) = crate::wire::wire_name(&zone) else { continue };
            let wanted: Vec<Vec<u8>> = match ring.plan(now) {
                Ok(plan) => plan.submitting.iter().map(|k| k.ds_rdata(&apex)).collect(),
                Err(_) => continue,
            };
            if wanted.is_empty() {
                self.sightings.lock().expect("not poisoned").forget(&zone);
                continue;
            }
            let asked = crate::dsquery::parents_have(&self.parents, &zone, &wanted);
            let have = matches!(asked, Ok(true));
            let gap = self.policy.parent_check_interval;
            let seen_twice = self.sightings.lock().expect("not poisoned").note(&zone, now, have, gap);
            match asked {
                Ok(false) => {}
                Ok(true) if !seen_twice => {
                    tracing::info!(
                        "zone {zone}: every parent has the new DS; looking again in {gap} s before it counts"
                    );
                }
                Ok(true) => {
                    self.sightings.lock().expect("not poisoned").forget(&zone);
                    let noted = crate::keystate::update(dir, &zone, ring.algorithm, now, |file| {
                        let mut file = file.ok_or_else(|| crate::zonekeys::KeyError::Key {
                            zone: zone.clone(),
                            message: "its key file is gone".into(),
                        })?;
                        if crate::keyroll::check_ds_seen(&file, now).is_ok() {
                            file.requests.ds_seen = Some(now);
                        }
                        Ok(file)
                    });
                    match noted {
                        Ok(_) => seen.push(zone),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                Err(e) => errors.push(format!("zone {zone}: {e}")),
            }
        }
        (seen, errors)
    }

    /// The earliest scheduled key event after `now` in any zone (Unix seconds), if any.
    pub fn next_key_event(&self, now: u64) -> Option<u64> {
        let rings = self.rings.read().expect("not poisoned");
        rings.values().filter_map(|r| crate::keyroll::next_event(r, &self.policy, now).0).min()
    }

    /// The expiry of `zone`'s signatures in use that expire first (Unix seconds), if any.
    pub fn first_expiry(&self, zone: &str) -> Option<u64> {
        let apex = crate::wire::wire_name(zone)?;
        self.signatures_expiring(|owner| owner.ends_with(&apex))
    }

    /// Each zone's keys taken to `now` in its key file (what `lct-dns roll` and `ds-seen`
    /// asked for, rollovers whose lifetime ran out, steps that came due); `records` give the
    /// TTLs the waits depend on. Whether the zones must be signed again: a key changed or
    /// changed state since the last signing pass. Nothing changes for a zone that fails.
    pub fn advance(&self, records: &[crate::zone::DnsRecord], now: u64) -> Result<bool, crate::zonekeys::KeyError> {
        let Some(dir) = &self.dir else { return Ok(false) };
        let mut changed = false;
        for zone in self.zones() {
            let old = self.ring(&zone).expect("listed");
            let ttls = self.ttls(records, &zone);
            let ring = crate::keystate::update(dir, &zone, old.algorithm, now, |file| {
                crate::keyroll::advance(&zone, old.algorithm, file, &self.policy, ttls, now)
            })?;
            let before = self.signed_at.load(Ordering::Relaxed);
            let states = |r: &KeyRing, at: u64| r.keys.iter().map(|k| (k.key.tag, k.state_at(at))).collect::<Vec<_>>();
            if ring.file.keys != old.file.keys || states(&ring, now) != states(&old, before) {
                changed = true;
            }
            self.rings.write().expect("not poisoned").insert(zone, ring);
        }
        Ok(changed)
    }

    /// The TTLs of `zone` that its keys' rollovers wait for.
    pub fn ttls(&self, records: &[crate::zone::DnsRecord], zone: &str) -> crate::keyroll::ZoneTtls {
        let of_zone = || records.iter().filter(|r| r.zone == zone);
        let soa = of_zone().find(|r| r.rtype == hickory_proto::rr::RecordType::SOA);
        let minimum = soa.and_then(|r| r.data.split_whitespace().nth(6)?.parse::<u32>().ok()).unwrap_or(0);
        let max = of_zone().map(|r| r.ttl).chain([minimum]).max().unwrap_or(0);
        let dnskey = self.policy.dnskey_ttl.or(soa.map(|r| r.ttl)).unwrap_or(max);
        crate::keyroll::ZoneTtls { dnskey, max: max.max(dnskey) }
    }
}
