//! The interface's contract as one check every backend's tests run (the local backend's
//! unit tests; the etcd backend's tests against a real cluster).

use std::time::Duration;

use super::api::{Store, update};
use super::key::Key;
use super::types::{Change, Entry, Expect, Holder, Secrecy, StoreError, Txn, Wait};

/// A key known good.
macro_rules! key {
    ($($arg:tt)*) => {
        Key::new(format!($($arg)*)).expect("a fixed state key")
    };
}

/// What every backend must do; `store` starts empty.
#[allow(clippy::missing_panics_doc)]
pub fn check(store: &dyn Store) {
    let a = key!("plans/zk/cluster.json");
    let b = key!("plans/zk/plan.yaml");
    assert!(store.get(&a).unwrap().is_none());
    // Made only if absent.
    let r1 = store.put_if(&a, b"one", Secrecy::Public, Expect::Absent).unwrap();
    assert!(store.put_if(&a, b"x", Secrecy::Public, Expect::Absent).unwrap_err().is_conflict());
    let got = store.get(&a).unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.rev), (&b"one"[..], r1));
    // Replaced only at the revision read.
    let r2 = store.put_if(&a, b"two", Secrecy::Public, Expect::Rev(r1)).unwrap();
    assert_ne!(r1, r2);
    let err = store.put_if(&a, b"lost update", Secrecy::Public, Expect::Rev(r1)).unwrap_err();
    assert!(err.to_string().contains("plans/zk/cluster.json"), "{err}");
    assert_eq!(store.get(&a).unwrap().unwrap().value, b"two");
    // A transaction over two keys: nothing written when one compare fails.
    let txn = Txn::new().expect(&a, Expect::Rev(r2)).expect(&b, Expect::Rev(r1)).put(&a, "three", Secrecy::Public).put(
        &b,
        "plan",
        Secrecy::Public,
    );
    assert!(store.commit(&txn).unwrap_err().is_conflict());
    assert_eq!(store.get(&a).unwrap().unwrap().value, b"two");
    assert!(store.get(&b).unwrap().is_none());
    let txn = Txn::new().expect(&a, Expect::Rev(r2)).expect(&b, Expect::Absent).put(&a, "three", Secrecy::Public).put(
        &b,
        "plan",
        Secrecy::Public,
    );
    let done = store.commit(&txn).unwrap();
    assert_eq!(done.revs.len(), 2);
    assert_eq!(store.get(&b).unwrap().unwrap().rev, done.rev_of(&b).unwrap());
    // Listing is by segment, sorted.
    store.put(&key!("plans/zkx/cluster.json"), b"other", Secrecy::Public).unwrap();
    let listed: Vec<String> = store.list(&key!("plans/zk")).unwrap().into_iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(listed, ["plans/zk/cluster.json", "plans/zk/plan.yaml"]);
    // Appends keep every line and move the revision.
    let events = key!("plans/zk/events.jsonl");
    let e1 = store.append(&events, b"1\n", Secrecy::Public).unwrap();
    let e2 = store.append(&events, b"2\n", Secrecy::Public).unwrap();
    assert_ne!(e1, e2);
    assert_eq!(store.get(&events).unwrap().unwrap(), Entry { value: b"1\n2\n".to_vec(), rev: e2 });
    // Secrets read back in clear.
    let secret = key!("ssh/id_ed25519");
    store.put_secret(&secret, b"PRIVATE", Expect::Absent).unwrap();
    assert_eq!(store.get_secret(&secret).unwrap().unwrap().value, b"PRIVATE");
    // update() retries on conflict and leaves alone when told.
    let counter = key!("counter");
    for _ in 0..3 {
        update(store, &counter, Secrecy::Public, |old| {
            let n: u32 = old.map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
            Ok(Some((n + 1).to_string().into_bytes()))
        })
        .unwrap();
    }
    assert_eq!(store.get(&counter).unwrap().unwrap().value, b"3");
    // A prefix goes with everything under it, and nothing beside it.
    store.commit(&Txn::new().delete_prefix(&key!("plans/zk"))).unwrap();
    assert!(store.keys(&key!("plans/zk")).unwrap().is_empty());
    assert_eq!(store.keys(&key!("plans")).unwrap().len(), 1);
    store.delete_if(&counter, Expect::Any).unwrap();
    assert!(store.get(&counter).unwrap().is_none());
    // Locks: one holder, named to the next; gone with the guard.
    let name = key!("plans/zk");
    let guard = store.lock(&name, &Holder::here("scale zk"), Duration::from_secs(10), Wait::No).unwrap();
    assert_eq!(guard.name(), &name);
    let err = store.lock(&name, &Holder::here("destroy zk"), Duration::from_secs(10), Wait::No).unwrap_err();
    assert!(matches!(&err, StoreError::Held { holder, .. } if holder.operation == "scale zk"), "{err}");
    assert!(err.to_string().contains("scale zk"), "{err}");
    assert_eq!(store.lock_holder(&name).unwrap().unwrap().operation, "scale zk");
    // A write fenced by the held lock applies (a lost lock's is refused: the backends' tests).
    assert_eq!(guard.fence().lock, name);
    let fenced = key!("plans/zk/fenced");
    store.commit(&Txn::new().fenced(&*guard).put(&fenced, b"f".to_vec(), Secrecy::Public)).unwrap();
    assert_eq!(store.get(&fenced).unwrap().unwrap().value, b"f");
    store.delete_if(&fenced, Expect::Any).unwrap();
    // Another cluster's lock is free meanwhile.
    drop(store.lock(&key!("plans/hdfs"), &Holder::here("scale hdfs"), Duration::from_secs(10), Wait::No).unwrap());
    drop(guard);
    assert!(store.lock_holder(&name).unwrap().is_none());
    let _again = store
        .lock(&name, &Holder::here("destroy zk"), Duration::from_secs(10), Wait::Upto(Duration::from_secs(1)))
        .unwrap();
    // A watch sees writes and deletes under its prefix only.
    let mut watch = store.watch(&key!("plans")).unwrap();
    assert!(watch.next(Duration::from_millis(10)).unwrap().is_empty());
    store.put(&key!("plans/w/cluster.json"), b"w", Secrecy::Public).unwrap();
    store.put(&key!("elsewhere"), b"e", Secrecy::Public).unwrap();
    let seen = watch.next(Duration::from_secs(5)).unwrap();
    assert_eq!(seen.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), ["plans/w/cluster.json"]);
    store.commit(&Txn::new().delete(&key!("plans/w/cluster.json"))).unwrap();
    let seen = watch.next(Duration::from_secs(5)).unwrap();
    assert_eq!(seen, [Change { key: key!("plans/w/cluster.json"), rev: None }]);
}
