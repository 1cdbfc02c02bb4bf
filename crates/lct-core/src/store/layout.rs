//! Which of lct's keys are secret: decided by the key's name, in this one table, never by
//! whoever wrote the value. A backend that stores elsewhere (etcd) seals every value at a
//! secret key whatever the writer asked, and refuses to read one that is not sealed (written
//! by someone without the team's key); the local directory keeps them 0600; a migration
//! copies them sealed.

use super::key::Key;
use super::types::Secrecy;

/// Secret keys, as patterns of segments: `*` is one segment, a trailing `**` any depth
/// (at least one segment).
const SECRET: &[&str] = &[
    // lct's SSH client key: whoever has it logs in to every node.
    "ssh/id_ed25519",
    // A cluster's parameters (generated passwords, a CA's key) and its plan, whose hooks
    // run on the controller.
    "plans/*/cluster.json",
    "plans/*/plan.yaml",
    "plans/*/files/**",
    // A bake's record: the image's root and what it was made from.
    "images/bakes/**",
    // Secrets kept for other tools.
    "secrets/**",
];

/// The old one-value event log of a cluster (`plans/NAME/events.jsonl`): read, and mapped to
/// event keys by a migration, never written any more.
pub const LEGACY_EVENT_LOG: &str = "events.jsonl";

/// The folder of a cluster's events under its prefix (`plans/NAME/events/`).
pub const EVENTS: &str = "events";

/// The key of one event of the cluster whose prefix is `cluster` (`plans/zk`): one key per
/// event, made once, so the log never rewrites a growing value (on etcd every rewrite is kept
/// in its history until compacted). Named by `at` (nanoseconds since the epoch, 16 hex
/// digits) then `tail`, so a sorted listing is the log in order.
pub fn event_key(cluster: &Key, at_nanos: u64, tail: &str) -> Result<Key, super::KeyError> {
    cluster.join(&format!("{EVENTS}/{at_nanos:016x}-{tail}"))
}

/// The key of an event happening now (a random tail: two controllers never collide).
pub fn new_event_key(cluster: &Key) -> Result<Key, super::StoreError> {
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let tail = crate::random::hex(4).map_err(|e| super::StoreError::io("random", std::io::Error::other(e)))?;
    Ok(event_key(cluster, at, &tail)?)
}

/// The event keys an old log's lines map to: each line's `at` (seconds) and its place, so
/// they sort before later events and in their order.
pub fn legacy_events(cluster: &Key, log: &[u8]) -> Result<Vec<(Key, Vec<u8>)>, super::KeyError> {
    let text = String::from_utf8_lossy(log);
    let mut out = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let at = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["at"].as_u64()).unwrap_or(0);
        let nanos = at.saturating_mul(1_000_000_000).saturating_add(i as u64);
        out.push((event_key(cluster, nanos, &format!("log{i:06}"))?, format!("{line}\n").into_bytes()));
    }
    Ok(out)
}

/// How `key`'s value is kept at least (a writer may ask for more, never less).
pub fn secrecy_of(key: &Key) -> Secrecy {
    let segments: Vec<&str> = key.segments().collect();
    if SECRET.iter().any(|pattern| matches(pattern, &segments)) { Secrecy::Secret } else { Secrecy::Public }
}

/// The stronger of what a writer asked for and what the table says.
pub fn at_least(key: &Key, asked: Secrecy) -> Secrecy {
    if asked == Secrecy::Secret { Secrecy::Secret } else { secrecy_of(key) }
}

fn matches(pattern: &str, segments: &[&str]) -> bool {
    let parts: Vec<&str> = pattern.split('/').collect();
    if let Some((&"**", head)) = parts.split_last() {
        return segments.len() > head.len() && head.iter().zip(segments).all(|(p, s)| *p == "*" || p == s);
    }
    parts.len() == segments.len() && parts.iter().zip(segments).all(|(p, s)| *p == "*" || p == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(key: &str) -> Secrecy {
        secrecy_of(&Key::new(key).unwrap())
    }

    #[test]
    fn secrecy_is_decided_by_the_key() {
        for secret in [
            "ssh/id_ed25519",
            "plans/zk/cluster.json",
            "plans/zk/plan.yaml",
            "plans/zk/files/configure.sh",
            "plans/zk/files/roles/x/tasks.yml",
            "images/bakes/zb.json",
            "secrets/zk/password",
        ] {
            assert_eq!(of(secret), Secrecy::Secret, "{secret}");
        }
        for public in [
            "clusters.jsonl",
            "ssh/id_ed25519.pub",
            "ssh/known_hosts",
            "plans/zk/events.jsonl",
            "plans/zk/events/0000000000000001-ab",
            "plans/zk/files",
            "plans/zk/cluster.json.bak",
            "images",
            "images/bakes",
            "dns/linode-example.com.json",
        ] {
            assert_eq!(of(public), Secrecy::Public, "{public}");
        }
        let key = Key::new("clusters.jsonl").unwrap();
        assert_eq!(at_least(&key, Secrecy::Secret), Secrecy::Secret);
        assert_eq!(at_least(&Key::new("plans/a/plan.yaml").unwrap(), Secrecy::Public), Secrecy::Secret);
    }

    #[test]
    fn events_sort_in_their_order_old_log_first() {
        let zk = Key::new("plans/zk").unwrap();
        let old =
            legacy_events(&zk, b"{\"at\":1796000000,\"event\":\"created\"}\n\n{\"at\":1796000000,\"event\":\"x\"}\n")
                .unwrap();
        assert_eq!(old.len(), 2);
        assert_eq!(old[0].1, b"{\"at\":1796000000,\"event\":\"created\"}\n");
        let now = new_event_key(&zk).unwrap();
        let mut keys = vec![now.clone(), old[1].0.clone(), old[0].0.clone()];
        keys.sort();
        assert_eq!(keys, vec![old[0].0.clone(), old[1].0.clone(), now.clone()]);
        assert!(now.as_str().starts_with("plans/zk/events/") && now.is_under(&zk), "{now}");
        assert_ne!(new_event_key(&zk).unwrap(), new_event_key(&zk).unwrap());
    }
}
