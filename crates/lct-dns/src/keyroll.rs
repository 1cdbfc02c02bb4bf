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
#[path = "keyroll_tests.rs"]
mod tests;
