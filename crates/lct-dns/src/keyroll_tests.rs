//! Tests of [`crate::keyroll`]: rollovers step by step, key tags, lost keys.
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
    assert!(err.contains(ZONE) && err.contains(&tag(&csk, Role::Csk).to_string()) && err.contains("key tag"), "{err}");
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
