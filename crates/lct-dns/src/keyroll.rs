//! Keys that run themselves: the key policy (`[dnssec_policy]`), the first keys of a zone,
//! and each rollover's steps as timestamps set when it starts (RFC 6781 4.1): a ZSK by
//! pre-publication, a KSK or CSK by double signature with CDS/CDNSKEY shown to the parent
//! until the operator says its new DS is there (`lct-dns ds-seen`, like Knot's
//! `knotc zone-ksk-submitted`). The server's timer calls [`advance`] at each key event.

use crate::keystate::{KeyRing, KeyState, Requests, RingFile, Role, StoredKey, Timing};
use crate::zonekeys::{KeyAlgorithm, KeyError, ZoneKey};

/// A day: how far past a rollover step the clock may be before it is suspect.
pub const CLOCK_SLACK: u64 = 86_400;

/// The key policy, Knot's defaults but where said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// KSK and ZSK (Knot's `single-type-signing: off`, its default), or one CSK.
    pub split: bool,
    /// Seconds a ZSK signs before its successor is started; 0: only by `lct-dns roll` [30 days].
    pub zsk_lifetime: u64,
    /// The same for a KSK or CSK [0: manual, as Knot: its rollover needs the parent].
    pub ksk_lifetime: u64,
    /// Seconds for a change to reach every secondary [1 hour].
    pub propagation_delay: u64,
    /// The DNSKEY, CDS and CDNSKEY sets' TTL [the SOA's TTL].
    pub dnskey_ttl: Option<u32>,
    /// How long resolvers may keep the parent's old DS after it changed [1 day: what most
    /// top-level domains give their DS sets; Knot asks the parent, lct-dns has no such query].
    pub parent_ds_ttl: u64,
    /// Seconds between asking the parent's servers for the DS during a submission [1 hour,
    /// Knot's `check-interval`].
    pub parent_check_interval: u64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            split: true,
            zsk_lifetime: 30 * 86_400,
            ksk_lifetime: 0,
            propagation_delay: 3_600,
            dnskey_ttl: None,
            parent_ds_ttl: 86_400,
            parent_check_interval: 3_600,
        }
    }
}

/// A zone's TTLs that rollover waits depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneTtls {
    /// The DNSKEY set's TTL.
    pub dnskey: u32,
    /// The largest TTL in the zone, negative answers' too.
    pub max: u32,
}

/// How many keys are made, at most, to find one whose key tag no key of the zone has (a
/// new key collides with one of n keys with odds n in 65,536: sixteen tries all colliding
/// mean a broken generator, not bad luck).
const KEY_TAG_TRIES: usize = 16;

/// A key of `role`, made now, published at `publish`, its key tag none of `file`'s keys have.
fn new_key(file: &RingFile, role: Role, now: u64, timing: Timing) -> Result<StoredKey, KeyError> {
    let algorithm = file.algorithm;
    new_key_from(file, role, now, timing, &mut || crate::zonekeys::generate_pkcs8(algorithm))
}

/// [`new_key`] with keys from `generate` (tests force a collision with it). Validators pick
/// the key for a signature by its tag: two keys of a zone with one tag make them try both
/// (RFC 4035 5.3.1), a cost a hostile zone could multiply (KeyTrap, CVE-2023-50387), and
/// some stop at the first. So a key whose tag is taken is thrown away and another made
/// (RFC 6781 3.1 says as much; Knot and BIND do the same).
fn new_key_from(
    file: &RingFile,
    role: Role,
    now: u64,
    timing: Timing,
    generate: &mut dyn FnMut() -> Result<Vec<u8>, String>,
) -> Result<StoredKey, KeyError> {
    let zone = &file.zone;
    let taken: Vec<u16> = KeyRing::from_file(file.clone())?.keys.iter().map(|k| k.key.tag).collect();
    for _ in 0..KEY_TAG_TRIES {
        let der = generate().map_err(|e| KeyError::Key { zone: zone.clone(), message: format!("no key made: {e}") })?;
        let key = ZoneKey::from_pkcs8(zone, file.algorithm, role.flags(), now, der.clone())?;
        if taken.contains(&key.tag) {
            tracing::info!("zone {zone}: a new {role:?} had key tag {} (taken): made another", key.tag);
            continue;
        }
        return Ok(StoredKey {
            role,
            timing: Timing { created: now, ..timing },
            pkcs8: data_encoding::BASE64.encode(&der),
        });
    }
    Err(KeyError::Key {
        zone: zone.clone(),
        message: format!(
            "no new {role:?} made: {KEY_TAG_TRIES} keys in a row had a key tag the zone's keys have ({taken:?})"
        ),
    })
}

/// A zone's first keys, active at once (nothing to roll from): a KSK and a ZSK, or a CSK.
pub fn first_keys(zone: &str, algorithm: KeyAlgorithm, split: bool, now: u64) -> Result<RingFile, KeyError> {
    let at_once = Timing { created: now, publish: now, ready: Some(now), active: Some(now), ..Default::default() };
    let roles: &[Role] = if split { &[Role::Ksk, Role::Zsk] } else { &[Role::Csk] };
    let mut file =
        RingFile { zone: zone.to_string(), algorithm, keys: Vec::new(), last_step: now, requests: Requests::default() };
    for &role in roles {
        // Each after the one before: the ZSK's tag is not the KSK's.
        let key = new_key(&file, role, now, at_once)?;
        file.keys.push(key);
    }
    tracing::info!("zone {zone}: new DNSSEC keys ({})", if split { "KSK and ZSK" } else { "CSK" });
    Ok(file)
}

/// `zone`'s CSK, from its key file under `dir`, made (and kept, 0600) if there is none
/// yet (tests, and zones signed without rollovers).
pub fn load_or_create_csk(
    dir: &std::path::Path,
    zone: &str,
    algorithm: KeyAlgorithm,
    now: u64,
) -> Result<crate::zonekeys::ZoneKey, KeyError> {
    let ring = crate::keystate::update(dir, zone, algorithm, now, |file| match file {
        Some(file) => Ok(file),
        None => first_keys(zone, algorithm, false, now),
    })?;
    let stored =
        ring.file.keys.iter().find(|k| k.role == Role::Csk).ok_or_else(|| KeyError::Key {
            zone: zone.into(),
            message: "no CSK (its keys are a KSK and a ZSK)".into(),
        })?;
    let der = data_encoding::BASE64
        .decode(stored.pkcs8.as_bytes())
        .map_err(|e| KeyError::Key { zone: zone.into(), message: format!("pkcs8: {e}") })?;
    crate::zonekeys::ZoneKey::from_pkcs8(zone, algorithm, 257, stored.timing.created, der)
}

/// Whether a key of `role`'s kind (ZSK, or KSK/CSK) is on its way in: a rollover runs.
fn rolling(file: &RingFile, ksk: bool, now: u64) -> bool {
    file.keys.iter().any(|k| {
        k.role.is_ksk() == ksk
            && matches!(k.timing.state_at(now), KeyState::Created | KeyState::Published | KeyState::Ready)
    })
}

/// The ring's role for a rollover of kind `ksk` (KSK or CSK, else ZSK); an error naming
/// why none can start.
pub fn roll_role(file: &RingFile, ksk: bool, now: u64) -> Result<Role, String> {
    let csk = file.keys.iter().any(|k| k.role == Role::Csk);
    let role = match (ksk, csk) {
        (true, true) => Role::Csk,
        (true, false) => Role::Ksk,
        (false, false) => Role::Zsk,
        (false, true) => return Err("its key is a CSK (no ZSK): roll it with `ksk`".into()),
    };
    if rolling(file, ksk, now) {
        return Err(format!("a {role:?} rollover runs already ({})", describe(file, now)));
    }
    Ok(role)
}

fn describe(file: &RingFile, now: u64) -> String {
    let keys: Vec<String> = file.keys.iter().map(|k| format!("{:?} {:?}", k.role, k.timing.state_at(now))).collect();
    keys.join(", ")
}

/// Starts a rollover of `role` at `now`: the new key's timestamps, and the old ones' where
/// they are known now (a KSK's wait for the parent is open until `ds-seen`).
fn start_roll(file: &mut RingFile, role: Role, policy: &Policy, ttls: ZoneTtls, now: u64) -> Result<(), KeyError> {
    let known = now.saturating_add(u64::from(ttls.dnskey)).saturating_add(policy.propagation_delay);
    if role == Role::Zsk {
        // Pre-publication (RFC 6781 4.1.1.1): published now, signs once every cache has
        // the new DNSKEY set; the old one published until its signatures left every cache.
        let timing = Timing { publish: now, ready: Some(known), active: Some(known), ..Default::default() };
        let remove = known.saturating_add(u64::from(ttls.max)).saturating_add(policy.propagation_delay);
        for old in file.keys.iter_mut().filter(|k| k.role == Role::Zsk && k.timing.retire.is_none()) {
            old.timing.retire_active = Some(known);
            old.timing.retire = Some(known);
            old.timing.remove = Some(remove);
        }
        let key = new_key(file, role, now, timing)?;
        file.keys.push(key);
    } else {
        // Double signature (RFC 6781 4.1.2): the new key signs the DNSKEY set (a CSK, the
        // zone too) from now; its DS may go to the parent once every cache has it.
        let timing = Timing { publish: now, ready: Some(known), ..Default::default() };
        let key = new_key(file, role, now, timing)?;
        file.keys.push(key);
    }
    tracing::info!("zone {}: {role:?} rollover started", file.zone);
    Ok(())
}

/// The operator saw the new DS at the parent at `seen`: the submitted key signs on alone,
/// the old ones sign until resolvers dropped the old DS, then go.
fn ds_seen(file: &mut RingFile, policy: &Policy, seen: u64) -> Result<(), String> {
    let ready: Vec<usize> = (0..file.keys.len())
        .filter(|&i| file.keys[i].role.is_ksk() && file.keys[i].timing.state_at(seen) == KeyState::Ready)
        .collect();
    if ready.is_empty() {
        return Err(format!("no key waits for its DS at the parent ({})", describe(file, seen)));
    }
    let retire = seen.saturating_add(policy.parent_ds_ttl).saturating_add(policy.propagation_delay);
    for (i, k) in file.keys.iter_mut().enumerate() {
        if ready.contains(&i) {
            k.timing.active = Some(seen);
        } else if k.role.is_ksk() && k.timing.retire_active.is_none() && k.timing.active.is_some() {
            k.timing.retire_active = Some(seen);
            k.timing.retire = Some(retire);
            k.timing.remove = Some(retire);
        }
    }
    tracing::info!("zone {}: the new DS is at the parent; the old key goes at {retire}", file.zone);
    Ok(())
}

/// Whether `ds-seen` would be taken now (a key waits for its DS).
pub fn check_ds_seen(file: &RingFile, now: u64) -> Result<(), String> {
    ds_seen(&mut file.clone(), &Policy::default(), now)
}

/// The keys at `now`: removed keys dropped, requests done, rollovers started whose key's
/// lifetime ran out, the zone's first keys made. A clock more than a day past a rollover
/// step the server never looked at is refused: the step's wait would be skipped (caches
/// still hold what the step waits for to leave them).
pub fn advance(
    zone: &str,
    algorithm: KeyAlgorithm,
    file: Option<RingFile>,
    policy: &Policy,
    ttls: ZoneTtls,
    now: u64,
) -> Result<RingFile, KeyError> {
    let err = |message: String| KeyError::Key { zone: zone.to_string(), message };
    let Some(mut file) = file else { return first_keys(zone, algorithm, policy.split, now) };
    if let Some(step) = file
        .keys
        .iter()
        .flat_map(|k| k.timing.all())
        .filter(|&t| t > file.last_step && t.saturating_add(CLOCK_SLACK) < now)
        .min()
    {
        return Err(err(format!(
            "the clock ({now}) is more than a day past a key step due at {step} (the last look was at {}): \
             not rolling keys with a clock far ahead; set the clock right",
            file.last_step
        )));
    }
    if let Some(newest) = file.keys.iter().map(|k| k.timing.created).max()
        && now.saturating_add(CLOCK_SLACK) < newest
    {
        return Err(err(format!(
            "the clock ({now}) is more than a day before the newest key was made ({newest}): not signing with a clock far off"
        )));
    }
    file.keys.retain(|k| k.timing.state_at(now) != KeyState::Removed);
    let requests = std::mem::take(&mut file.requests);
    for role in requests.roll {
        let role = roll_role(&file, role.is_ksk(), now).map_err(err)?;
        start_roll(&mut file, role, policy, ttls, now)?;
    }
    if let Some(seen) = requests.ds_seen {
        ds_seen(&mut file, policy, seen.min(now)).map_err(err)?;
    }
    // Lifetimes run out: a rollover of that kind starts (unless one runs).
    for ksk in [false, true] {
        let lifetime = if ksk { policy.ksk_lifetime } else { policy.zsk_lifetime };
        if lifetime == 0 || rolling(&file, ksk, now) {
            continue;
        }
        let due = file
            .keys
            .iter()
            .filter(|k| k.role.is_ksk() == ksk && k.timing.state_at(now) == KeyState::Active)
            .any(|k| k.timing.active.is_some_and(|a| a.saturating_add(lifetime) <= now));
        if due && let Ok(role) = roll_role(&file, ksk, now) {
            start_roll(&mut file, role, policy, ttls, now)?;
        }
    }
    if file.keys.iter().flat_map(|k| k.timing.all()).any(|t| t > file.last_step && t <= now) {
        file.last_step = now;
    }
    Ok(file)
}

/// The next key event after `now` (Unix seconds) and what it is; `None` with a reason when
/// the next step waits for the operator (a DS to submit) or nothing is scheduled.
pub fn next_event(ring: &KeyRing, policy: &Policy, now: u64) -> (Option<u64>, String) {
    let mut best: Option<(u64, String)> = None;
    let mut consider = |t: u64, what: String| {
        if t > now && best.as_ref().is_none_or(|(b, _)| t < *b) {
            best = Some((t, what));
        }
    };
    for k in &ring.keys {
        let tag = k.key.tag;
        let t = &k.timing;
        let steps = [
            (Some(t.publish), "published"),
            (t.ready, "ready"),
            (t.active, "active"),
            (t.retire_active, "retire-active"),
            (t.retire, "retired"),
            (t.remove, "removed"),
        ];
        for (at, what) in steps {
            if let Some(at) = at {
                consider(at, format!("{tag} {what}"));
            }
        }
        let lifetime = if k.role.is_ksk() { policy.ksk_lifetime } else { policy.zsk_lifetime };
        if lifetime > 0
            && k.state_at(now) == KeyState::Active
            && t.retire_active.is_none()
            && !rolling(&ring.file, k.role.is_ksk(), now)
            && let Some(active) = t.active
        {
            let role = if k.role.is_ksk() { "ksk" } else { "zsk" };
            consider(active.saturating_add(lifetime), format!("{tag} {role} rollover"));
        }
    }
    match best {
        Some((t, what)) => (Some(t), what),
        None => {
            let waiting = ring.keys.iter().find(|k| k.role.is_ksk() && k.state_at(now) == KeyState::Ready);
            match waiting {
                Some(k) => (None, format!("{} waits for its DS at the parent (lct-dns ds-seen)", k.key.tag)),
                None => (None, "none".into()),
            }
        }
    }
}

/// A key of a signed zone as `lct-dns keys` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct DnsKey {
    pub zone: String,
    /// The key tag (RFC 4034 appendix B).
    pub tag: u16,
    /// ksk, zsk or csk.
    pub role: String,
    /// The DNSSEC algorithm number (13: ECDSA P-256, 15: Ed25519).
    pub algorithm: u8,
    /// created, published, ready, active, retire-active, retired.
    pub state: String,
    /// The zone's next key event ("TAG STEP", or what it waits for).
    pub next_event: String,
    /// When, Unix seconds (absent: it waits for the operator, or nothing is scheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_event_at: Option<u64>,
}

impl lct_core::record::Record for DnsKey {
    const KIND: &'static str = "dns-key";
    const VERSION: u32 = 1;
}

impl lct_core::table::Tabular for DnsKey {
    const HEADERS: &'static [&'static str] = &["ZONE", "TAG", "ROLE", "ALG", "STATE", "NEXT EVENT", "AT"];
    fn row(&self) -> Vec<String> {
        vec![
            self.zone.clone(),
            self.tag.to_string(),
            self.role.clone(),
            self.algorithm.to_string(),
            self.state.clone(),
            self.next_event.clone(),
            self.next_event_at.map_or("-".into(), |t| t.to_string()),
        ]
    }
}

/// `ring`'s keys at `now`, each with the zone's next event.
pub fn report(ring: &KeyRing, policy: &Policy, now: u64) -> Vec<DnsKey> {
    let (at, what) = next_event(ring, policy, now);
    let text = |v: &dyn erased::Named| v.name();
    ring.keys
        .iter()
        .map(|k| DnsKey {
            zone: ring.zone.clone(),
            tag: k.key.tag,
            role: text(&k.role),
            algorithm: ring.algorithm.number(),
            state: text(&k.state_at(now)),
            next_event: what.clone(),
            next_event_at: at,
        })
        .collect()
}

/// Roles and states by the names their files and records give them.
mod erased {
    pub trait Named {
        fn name(&self) -> String;
    }
    impl<T: serde::Serialize> Named for T {
        fn name(&self) -> String {
            serde_json::to_value(self).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use data_encoding::BASE64;

    use super::*;
    use crate::zonekeys::{ds_file, key_file};

    const ZONE: &str = "lct.internal.";
    const TTLS: ZoneTtls = ZoneTtls { dnskey: 300, max: 600 };

    fn policy() -> Policy {
        Policy { zsk_lifetime: 1_000, propagation_delay: 10, parent_ds_ttl: 100, ..Policy::default() }
    }

    fn ring(file: &RingFile) -> KeyRing {
        KeyRing::from_file(file.clone()).unwrap()
    }

    fn tags(keys: &[&crate::zonekeys::ZoneKey]) -> Vec<u16> {
        keys.iter().map(|k| k.tag).collect()
    }

    /// A ZSK by pre-publication: the new key is in the DNSKEY set a DNSKEY TTL and the
    /// propagation delay before it signs; the old one stays published until its signatures
    /// left every cache (the zone's largest TTL and the delay), then goes.
    #[test]
    fn a_zsk_rolls_by_pre_publication_when_its_lifetime_ran_out() {
        let p = policy();
        let file = advance(ZONE, KeyAlgorithm::Ecdsa, None, &p, TTLS, 0).unwrap();
        let (ksk, zsk1) = (ring(&file).keys[0].key.tag, ring(&file).keys[1].key.tag);
        assert_eq!(advance(ZONE, KeyAlgorithm::Ecdsa, Some(file.clone()), &p, TTLS, 999).unwrap().keys.len(), 2);
        assert_eq!(next_event(&ring(&file), &p, 0).0, Some(1_000));
        let file = advance(ZONE, KeyAlgorithm::Ecdsa, Some(file), &p, TTLS, 1_000).unwrap();
        let r = ring(&file);
        let zsk2 = r.keys[2].key.tag;
        let plan = r.plan(1_000).unwrap();
        assert_eq!(tags(&plan.published), [ksk, zsk1, zsk2]);
        assert_eq!(tags(&plan.zone_signers), [zsk1]);
        assert_eq!(tags(&plan.key_signers), [ksk]);
        let switch = 1_000 + 300 + 10;
        assert_eq!(next_event(&r, &p, 1_000).0, Some(switch));
        let plan = r.plan(switch).unwrap();
        assert_eq!(tags(&plan.zone_signers), [zsk2], "signs with the new one");
        assert_eq!(tags(&plan.published), [ksk, zsk1, zsk2], "the old one still published");
        let gone = switch + 600 + 10;
        let file = advance(ZONE, KeyAlgorithm::Ecdsa, Some(file), &p, TTLS, gone).unwrap();
        assert_eq!(tags(&ring(&file).plan(gone).unwrap().published), [ksk, zsk2]);
        assert!(ring(&file).plan(gone).unwrap().submitting.is_empty(), "a ZSK needs nothing of the parent");
    }

    /// A KSK by double signature: both sign the DNSKEY set; the new one is submitted (CDS)
    /// once every cache has it, and waits for the operator; then the old one signs until the
    /// old DS left resolvers' caches, and goes.
    #[test]
    fn a_ksk_rolls_by_double_signature_and_waits_for_the_parent() {
        let p = Policy { zsk_lifetime: 0, ..policy() };
        let file = advance(ZONE, KeyAlgorithm::Ecdsa, None, &p, TTLS, 0).unwrap();
        let ksk1 = ring(&file).keys[0].key.tag;
        let mut file = file;
        assert!(check_ds_seen(&file, 5).is_err(), "nothing submitted");
        file.requests.roll.push(Role::Ksk);
        let file = advance(ZONE, KeyAlgorithm::Ecdsa, Some(file), &p, TTLS, 10).unwrap();
        let r = ring(&file);
        let ksk2 = r.keys[2].key.tag;
        let plan = r.plan(10).unwrap();
        assert_eq!(tags(&plan.key_signers), [ksk1, ksk2]);
        assert!(plan.submitting.is_empty());
        assert_eq!(tags(&r.wanted_ds(10)), [ksk1]);
        let ready = 10 + 300 + 10;
        assert_eq!(tags(&r.plan(ready).unwrap().submitting), [ksk2]);
        assert_eq!(tags(&r.wanted_ds(ready)), [ksk2]);
        assert!(next_event(&r, &p, ready).1.contains("waits for its DS"), "{:?}", next_event(&r, &p, ready));
        let mut file = file;
        check_ds_seen(&file, ready + 5).unwrap();
        file.requests.ds_seen = Some(ready + 5);
        let file = advance(ZONE, KeyAlgorithm::Ecdsa, Some(file), &p, TTLS, ready + 5).unwrap();
        let r = ring(&file);
        let plan = r.plan(ready + 5).unwrap();
        assert_eq!(tags(&plan.key_signers), [ksk1, ksk2], "the old one signs while the old DS is cached");
        assert!(plan.submitting.is_empty());
        let gone = ready + 5 + 100 + 10;
        let file = advance(ZONE, KeyAlgorithm::Ecdsa, Some(file), &p, TTLS, gone).unwrap();
        let plan = ring(&file).plan(gone).unwrap().key_signers.iter().map(|k| k.tag).collect::<Vec<_>>();
        assert_eq!(plan, [ksk2]);
        assert_eq!(ring(&file).keys.len(), 2);
        // The clock goes back to before the rollover (an NTP step, a wrong RTC at boot): the
        // steps taken stay taken, the new KSK signs alone and its DS is the one wanted.
        let r = ring(&file);
        for back in [0, 10, ready, gone - 1] {
            let plan = r.plan(back).unwrap();
            assert_eq!(tags(&plan.key_signers), [ksk2], "clock back at {back}");
            assert!(plan.submitting.is_empty(), "clock back at {back}");
            assert_eq!(tags(&r.wanted_ds(back)), [ksk2], "clock back at {back}");
        }
    }

    /// A CSK ring has no ZSK to roll; a second rollover while one runs is refused; a clock
    /// far past a step never looked at is refused; every key retired is an error.
    #[test]
    fn bad_rollover_requests_and_clocks_are_refused() {
        let p = Policy { split: false, ..policy() };
        let file = advance(ZONE, KeyAlgorithm::Ecdsa, None, &p, TTLS, 0).unwrap();
        assert!(roll_role(&file, false, 1).unwrap_err().contains("CSK"));
        let mut rolled = file.clone();
        rolled.requests.roll.push(Role::Csk);
        let rolled = advance(ZONE, KeyAlgorithm::Ecdsa, Some(rolled), &p, TTLS, 10).unwrap();
        assert!(roll_role(&rolled, true, 11).unwrap_err().contains("runs already"));
        let err = advance(ZONE, KeyAlgorithm::Ecdsa, Some(rolled.clone()), &p, TTLS, 10 + 320 + CLOCK_SLACK + 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("clock far ahead"), "{err}");
        let err = advance(ZONE, KeyAlgorithm::Ecdsa, Some(rolled), &p, TTLS, 0).map(drop);
        assert!(err.is_ok(), "a day back is within the slack");
        let mut retired = file;
        retired.keys[0].timing.retire_active = Some(5);
        retired.keys[0].timing.retire = Some(5);
        assert!(ring(&retired).plan(6).unwrap_err().contains("no key is active"));
    }

    /// A key file edited by hand (any timestamps, any requests) never makes the key steps
    /// panic: each is taken, or refused with an error.
    #[test]
    fn any_timestamps_in_a_key_file_are_taken_or_refused_never_a_panic() {
        use proptest::prelude::*;
        let p = policy();
        let base = advance(ZONE, KeyAlgorithm::Ecdsa, None, &p, TTLS, 1_000).unwrap();
        let stamp = prop_oneof![Just(None), any::<u64>().prop_map(Some), (0..5_000u64).prop_map(Some)];
        let timing = (any::<u64>(), stamp.clone(), stamp.clone(), stamp.clone(), stamp.clone(), stamp);
        let strategy = (
            proptest::collection::vec(timing, 1..4),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            any::<bool>(),
            0..6_000u64,
        );
        let config = proptest::test_runner::Config { cases: 500, failure_persistence: None, ..Default::default() };
        proptest::test_runner::TestRunner::new(config)
            .run(&strategy, |(timings, last_step, ds_seen, roll_ksk, now)| {
                let mut file = base.clone();
                file.last_step = last_step;
                file.requests.ds_seen = ds_seen;
                file.requests.roll = vec![if roll_ksk { Role::Ksk } else { Role::Zsk }];
                for (i, (publish, ready, active, retire_active, retire, remove)) in timings.into_iter().enumerate() {
                    let key = &mut file.keys[i % 2];
                    key.timing = Timing { created: 0, publish, ready, active, retire_active, retire, remove };
                }
                let r = ring(&file);
                let _ = r.plan(now);
                let _ = r.wanted_ds(now);
                let _ = next_event(&r, &p, now);
                let _ = report(&r, &p, now);
                if let Ok(after) = advance(ZONE, KeyAlgorithm::Ecdsa, Some(file), &p, TTLS, now) {
                    let _ = next_event(&ring(&after), &p, now);
                }
                Ok(())
            })
            .unwrap();
    }

    /// A new key whose key tag a key of the zone has is not kept: another is made, at most
    /// [`KEY_TAG_TRIES`] times, then a clear error (a generator that only collides).
    #[test]
    fn a_new_key_never_takes_a_key_tag_the_zone_has() {
        let file = first_keys(ZONE, KeyAlgorithm::Ecdsa, false, 0).unwrap();
        let csk = BASE64.decode(file.keys[0].pkcs8.as_bytes()).unwrap();
        let tag = |der: &[u8], role: Role| {
            ZoneKey::from_pkcs8(ZONE, KeyAlgorithm::Ecdsa, role.flags(), 0, der.to_vec()).unwrap().tag
        };
        let other = crate::zonekeys::generate_pkcs8(KeyAlgorithm::Ecdsa).unwrap();
        assert_ne!(tag(&other, Role::Csk), tag(&csk, Role::Csk), "two fresh keys collided: run again");
        // The same key again (same flags: the same tag) twice, then another.
        let mut made = vec![csk.clone(), csk.clone(), other.clone()].into_iter();
        let mut calls = 0;
        let key = new_key_from(&file, Role::Csk, 5, Timing::default(), &mut || {
            calls += 1;
            Ok(made.next().unwrap())
        })
        .unwrap();
        assert_eq!(calls, 3, "the colliding keys were thrown away");
        assert_eq!(BASE64.decode(key.pkcs8.as_bytes()).unwrap(), other);
        let mut with = file.clone();
        with.keys.push(key);
        let tags: Vec<u16> = ring(&with).keys.iter().map(|k| k.key.tag).collect();
        assert_ne!(tags[0], tags[1]);
        // A generator that only collides: an error naming the zone and the tag, no key.
        let mut calls = 0;
        let err = new_key_from(&file, Role::Csk, 5, Timing::default(), &mut || {
            calls += 1;
            Ok(csk.clone())
        })
        .unwrap_err()
        .to_string();
        assert_eq!(calls, KEY_TAG_TRIES);
        assert!(
            err.contains(ZONE) && err.contains(&tag(&csk, Role::Csk).to_string()) && err.contains("key tag"),
            "{err}"
        );
    }

    /// A lost key is not silently replaced (the parent's DS would no longer match), and a key
    /// others can read is refused; the first load makes the key and its DS.
    #[test]
    fn a_lost_or_exposed_key_is_an_error_naming_the_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = lct_core::fsutil::temp_dir("lct-dns-keys").unwrap();
        let zone = "lct.internal.";
        let made = load_or_create_csk(dir.path(), zone, KeyAlgorithm::Ecdsa, 1).unwrap();
        let ds = std::fs::read_to_string(ds_file(dir.path(), zone)).unwrap();
        assert_eq!(ds.trim(), made.ds(zone).unwrap());
        assert_eq!(load_or_create_csk(dir.path(), zone, KeyAlgorithm::Ecdsa, 2).unwrap().tag, made.tag);
        let key = key_file(dir.path(), zone);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_csk(dir.path(), zone, KeyAlgorithm::Ecdsa, 2).err().unwrap().to_string();
        assert!(err.contains(&key.display().to_string()) && err.contains("mode 644"), "{err}");
        std::fs::remove_file(&key).unwrap();
        let err = load_or_create_csk(dir.path(), zone, KeyAlgorithm::Ecdsa, 2).err().unwrap().to_string();
        assert!(err.contains("missing") && err.contains("lct.internal.ds"), "{err}");
        assert!(!key.exists(), "no new key was made");
    }
}
