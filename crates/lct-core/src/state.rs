//! The state directory and the cluster records kept in it; runtime state per network
//! namespace.
//!
//! The state directory is `/var/lib/lct` unless `LCT_STATE_DIR` names another. It holds
//! `clusters.jsonl` (one cluster record a line) and a folder per provider (`local/`). The
//! cluster records are read and written through the state interface ([`crate::store`]):
//! `clusters.jsonl` is one key, changed by compare-and-swap of its revision.
//!
//! What a tool knows about the network namespace it runs in (lct-fw: the ruleset it last
//! applied) lives until reboot in `/run/lct/TOOL/net-INO.*`, INO being the namespace's inode:
//! unique while the namespace lives, reused after. Whoever deletes a namespace calls
//! [`forget_netns`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use crate::record::{Cluster, Name, ProviderName};
use crate::store::{Key, Secrecy, SharedStore, StoreError};
use crate::stream::{self, StreamError};

pub use crate::store::{DEFAULT_STATE_DIR, state_dir};

/// Runtime state: a tmpfs, gone at reboot with the namespaces it describes.
pub const RUN_DIR: &str = "/run/lct";

/// `/run/lct/TOOL/net-INO.EXT` for the network namespace this process is in.
pub fn netns_runtime_file(tool: &str, ext: &str) -> io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    // This thread's namespace: a thread may have entered a node's (lct-fw push does).
    let ino = fs::metadata("/proc/thread-self/ns/net")?.ino();
    Ok(Path::new(RUN_DIR).join(tool).join(format!("net-{ino}.{ext}")))
}

/// The inode of a named network namespace (`ip netns`), to [`forget_netns`] it once deleted.
pub fn netns_inode(name: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(Path::new("/run/netns").join(name)).ok().map(|m| m.ino())
}

/// Runs `f` on a thread of its own that has entered the named network namespace (`ip
/// netns`): the sockets it opens, the netlink it speaks and the `/proc/sys/net` it writes are
/// the namespace's, with no process started. setns is per thread and the thread ends with
/// `f`, so nothing else of this process runs there.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    use std::os::fd::AsRawFd;
    // A node record's name, joined to /run/netns: one file name there, never a path out of it
    // (`../../proc/1/ns/net` is this machine's own namespace), as `ip netns` insists too.
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("network namespace {:?}: not a namespace name", name.chars().take(60).collect::<String>()),
        ));
    }
    let path = Path::new("/run/netns").join(name);
    std::thread::scope(|s| {
        let thread = std::thread::Builder::new().name(format!("netns-{name}")).spawn_scoped(s, || {
            let file =
                fs::File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            // SAFETY: setns on this thread only, with a namespace file it holds open.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(e.kind(), format!("entering {}: {e}", path.display())));
            }
            Ok(f())
        })?;
        thread.join().unwrap_or_else(|_| Err(io::Error::other(format!("the thread in namespace {name} panicked"))))
    })
}

/// Removes what every tool kept about the network namespace with inode `ino`, which is
/// gone: a namespace made later may get the same inode, and must not inherit it.
pub fn forget_netns(ino: u64) {
    let prefix = format!("net-{ino}.");
    let Ok(tools) = fs::read_dir(RUN_DIR) else { return };
    for tool in tools.flatten() {
        let Ok(files) = fs::read_dir(tool.path()) else { continue };
        for file in files.flatten() {
            if file.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(file.path());
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{path}: {source}")]
    Record { path: PathBuf, source: StreamError },
    #[error("cluster {0} depends on itself")]
    SelfDependency(Name),
    #[error("cluster {0:?} is given twice")]
    Duplicate(Name),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The cluster records of a state store.
#[derive(Debug, Clone)]
pub struct ClusterStore {
    store: SharedStore,
    key: Key,
}

/// The key of the cluster records.
pub const CLUSTERS_KEY: &str = "clusters.jsonl";

impl ClusterStore {
    /// The records of the state directory `state_dir` (the local backend).
    pub fn new(state_dir: &Path) -> Self {
        ClusterStore::on(std::sync::Arc::new(crate::store::local::LocalStore::new(state_dir)))
    }

    /// The records of the store the environment names ([`crate::store::open`]).
    pub fn open() -> Result<Self, StateError> {
        Ok(ClusterStore::on(crate::store::open()?))
    }

    /// The records of `store`.
    pub fn on(store: SharedStore) -> Self {
        ClusterStore { store, key: Key::new(CLUSTERS_KEY).expect("a fixed key") }
    }

    /// Where the records are, for messages (`/var/lib/lct/clusters.jsonl`).
    pub fn describe(&self) -> String {
        match self.store.local_path(&self.key) {
            Some(path) => path.display().to_string(),
            None => format!("{} {}", self.store.describe(), self.key),
        }
    }

    /// All cluster records, sorted by name; none when there are none yet.
    pub fn load(&self) -> Result<Vec<Cluster>, StateError> {
        let Some(entry) = self.store.get(&self.key)? else { return Ok(Vec::new()) };
        parse(&entry.value, &self.describe())
    }

    /// The stored record of a cluster, or a new one with just its name.
    pub fn get_or_new(&self, name: &Name) -> Result<Cluster, StateError> {
        Ok(self.load()?.into_iter().find(|c| &c.name == name).unwrap_or_else(|| Cluster::new(name.clone())))
    }

    /// The cluster records among a tool's input lines (they win), completed by the stored
    /// ones: what a tool that reads node records needs to know of their clusters.
    pub fn with_input(&self, lines: &[stream::Line]) -> Result<Vec<Cluster>, StateError> {
        let mut clusters = Vec::new();
        for line in lines.iter().filter(|l| l.is::<Cluster>()) {
            let c = line.parse::<Cluster>().map_err(|source| StateError::Record { path: "stdin".into(), source })?;
            clusters.push(c);
        }
        let known: BTreeSet<Name> = clusters.iter().map(|c| c.name.clone()).collect();
        clusters.extend(self.load()?.into_iter().filter(|c| !known.contains(&c.name)));
        Ok(clusters)
    }

    /// Adds or replaces these clusters (by name) in one atomic write.
    pub fn set(&self, new: Vec<Cluster>) -> Result<Vec<Cluster>, StateError> {
        let mut seen = BTreeSet::new();
        for c in &new {
            if !seen.insert(c.name.clone()) {
                return Err(StateError::Duplicate(c.name.clone()));
            }
            if c.depends_on.iter().any(|d| d.cluster == c.name) {
                return Err(StateError::SelfDependency(c.name.clone()));
            }
        }
        self.update(|all| {
            for c in &new {
                all.insert(c.name.clone(), c.clone());
            }
        })
    }

    /// Records that `provider` holds nodes of `clusters` now (`lct-api create` calls it), so
    /// queries by cluster ask it without being told. A cluster without a record gets one
    /// naming `provider` (on the local cloud none: it is asked whenever it has state). A record naming other providers is moved to `provider` when none of
    /// those holds its nodes (a record made before its first node, by `clusters set`), and
    /// otherwise gets `provider` in `also_on`: `elsewhere` names the clusters whose recorded
    /// providers still hold nodes. Returns the records that changed.
    pub fn note_nodes_on(
        &self,
        clusters: &BTreeSet<Name>,
        provider: ProviderName,
        elsewhere: &BTreeSet<Name>,
    ) -> Result<Vec<Cluster>, StateError> {
        // Nothing to record (the usual case): the file is not written, nor made.
        let current = self.load()?;
        let news = |name: &Name| match current.iter().find(|c| &c.name == name) {
            None => provider != ProviderName::Local,
            Some(c) => !c.providers().contains(&provider),
        };
        if !clusters.iter().any(news) {
            return Ok(Vec::new());
        }
        let mut changed = Vec::new();
        self.update(|all| {
            // Again from the start when another writer came between.
            changed.clear();
            for name in clusters {
                let Some(record) = all.get_mut(name) else {
                    // The local cloud is asked whenever it has state: its clusters need none.
                    if provider == ProviderName::Local {
                        continue;
                    }
                    let record = Cluster { provider, ..Cluster::new(name.clone()) };
                    changed.push(record.clone());
                    all.insert(name.clone(), record);
                    continue;
                };
                if record.providers().contains(&provider) {
                    continue;
                }
                if elsewhere.contains(name) {
                    record.also_on.push(provider);
                } else {
                    record.provider = provider;
                    record.also_on.clear();
                }
                changed.push(record.clone());
            }
        })?;
        Ok(changed)
    }

    /// Removes these clusters; returns the names that were there.
    pub fn remove(&self, names: &[Name]) -> Result<Vec<Name>, StateError> {
        let mut removed = Vec::new();
        self.update(|all| {
            removed.clear();
            for n in names {
                if all.remove(n).is_some() {
                    removed.push(n.clone());
                }
            }
        })?;
        Ok(removed)
    }

    fn update(&self, mut change: impl FnMut(&mut BTreeMap<Name, Cluster>)) -> Result<Vec<Cluster>, StateError> {
        // Read, change, write if nobody wrote meanwhile; else again with what they wrote.
        let place = self.describe();
        let mut result = Vec::new();
        let mut bad = None;
        crate::store::update(&*self.store, &self.key, Secrecy::Public, |old| {
            let old = match old.map(|v| parse(v, &place)).transpose() {
                Ok(old) => old.unwrap_or_default(),
                Err(e) => {
                    bad = Some(e);
                    return Ok(None);
                }
            };
            let mut all: BTreeMap<Name, Cluster> = old.into_iter().map(|c| (c.name.clone(), c)).collect();
            change(&mut all);
            let mut text = String::new();
            for c in all.values() {
                text.push_str(&stream::to_line(c));
                text.push('\n');
            }
            result = all.into_values().collect();
            Ok(Some(text.into_bytes()))
        })?;
        match bad {
            Some(e) => Err(e),
            None => Ok(result),
        }
    }
}

fn parse(bytes: &[u8], place: &str) -> Result<Vec<Cluster>, StateError> {
    let (mut clusters, _) = stream::read_kind::<Cluster>(BufReader::new(bytes))
        .map_err(|source| StateError::Record { path: PathBuf::from(place), source })?;
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(clusters)
}

/// The clusters that directly depend on any of `names` (not including `names`).
pub fn dependents_of(clusters: &[Cluster], names: &BTreeSet<Name>) -> BTreeSet<Name> {
    clusters
        .iter()
        .filter(|c| !names.contains(&c.name) && c.depends_on.iter().any(|d| names.contains(&d.cluster)))
        .map(|c| c.name.clone())
        .collect()
}

/// The clusters that any of `names` directly depends on (not including `names`).
pub fn dependencies_of(clusters: &[Cluster], names: &BTreeSet<Name>) -> BTreeSet<Name> {
    clusters
        .iter()
        .filter(|c| names.contains(&c.name))
        .flat_map(|c| c.depends_on.iter().map(|d| d.cluster.clone()))
        .filter(|n| !names.contains(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(line: &str) -> Cluster {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn a_namespace_name_is_a_name_under_run_netns_only() {
        // Refused before anything is opened: never this machine's own namespace by a path.
        for bad in ["", ".", "..", "../../proc/1/ns/net", "/proc/1/ns/net", "a/b", "a\0b"] {
            let err = in_netns(bad, || ()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert!(err.to_string().contains("not a namespace name"), "{err}");
        }
        // A name that is one (absent here): the open fails, naming the file.
        let err = in_netns("lct-no-such-namespace", || ()).unwrap_err();
        assert!(err.to_string().contains("/run/netns/lct-no-such-namespace"), "{err}");
    }

    #[test]
    fn store_round_trip_and_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        let store = ClusterStore::new(dir.path());
        assert!(store.load().unwrap().is_empty());
        store
            .set(vec![
                cluster(r#"{"name":"zk","domain":"zk.lct"}"#),
                cluster(r#"{"name":"hdfs","depends_on":[{"cluster":"zk","ports":["2181/tcp"]}]}"#),
                cluster(r#"{"name":"hbase","depends_on":[{"cluster":"hdfs"},{"cluster":"zk"}]}"#),
            ])
            .unwrap();
        let all = store.load().unwrap();
        assert_eq!(all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["hbase", "hdfs", "zk"]);
        let zk: BTreeSet<Name> = ["zk".parse().unwrap()].into();
        let names = |s: BTreeSet<Name>| s.into_iter().map(String::from).collect::<Vec<_>>();
        assert_eq!(names(dependents_of(&all, &zk)), ["hbase", "hdfs"]);
        let hbase: BTreeSet<Name> = ["hbase".parse().unwrap()].into();
        assert_eq!(names(dependencies_of(&all, &hbase)), ["hdfs", "zk"]);

        assert!(matches!(
            store.set(vec![cluster(r#"{"name":"x","depends_on":[{"cluster":"x"}]}"#)]),
            Err(StateError::SelfDependency(_))
        ));
        assert_eq!(store.remove(&["hdfs".parse().unwrap()]).unwrap().len(), 1);
        assert_eq!(store.load().unwrap().len(), 2);
    }

    #[test]
    fn clusters_remember_where_their_nodes_are() {
        let dir = tempfile::tempdir().unwrap();
        let store = ClusterStore::new(dir.path());
        let names = |list: &[&str]| list.iter().map(|n| n.parse().unwrap()).collect::<BTreeSet<Name>>();
        // A record made before any node (a domain set first) names the local cloud.
        store.set(vec![cluster(r#"{"name":"pre","domain":"pre.lct"}"#)]).unwrap();
        store.set(vec![cluster(r#"{"name":"both"}"#)]).unwrap();
        let changed =
            store.note_nodes_on(&names(&["lz", "pre", "both"]), ProviderName::Linode, &names(&["both"])).unwrap();
        assert_eq!(changed.len(), 3);
        let all: BTreeMap<String, Cluster> =
            store.load().unwrap().into_iter().map(|c| (c.name.to_string(), c)).collect();
        assert_eq!(all["lz"].providers(), [ProviderName::Linode]);
        assert_eq!(all["pre"].providers(), [ProviderName::Linode], "no local node: moved");
        assert_eq!(all["pre"].domain.as_ref().unwrap().as_str(), "pre.lct", "the rest kept");
        assert_eq!(all["both"].providers(), [ProviderName::Local, ProviderName::Linode], "local nodes too");
        // Again: nothing changes.
        assert!(store.note_nodes_on(&names(&["lz", "both"]), ProviderName::Linode, &names(&[])).unwrap().is_empty());
        // A local cluster needs no record; one on Linode that grows locally names both.
        store.note_nodes_on(&names(&["demo", "lz"]), ProviderName::Local, &names(&["lz"])).unwrap();
        let all: BTreeMap<String, Cluster> =
            store.load().unwrap().into_iter().map(|c| (c.name.to_string(), c)).collect();
        assert!(!all.contains_key("demo"));
        assert_eq!(all["lz"].providers(), [ProviderName::Linode, ProviderName::Local]);
        // Nothing new on a fresh state directory: no file is made.
        let fresh = tempfile::tempdir().unwrap();
        ClusterStore::new(fresh.path()).note_nodes_on(&names(&["demo"]), ProviderName::Local, &names(&[])).unwrap();
        assert!(!fresh.path().join("clusters.jsonl").exists());
    }

    #[test]
    fn concurrent_writers_lose_no_update() {
        // Eight writers, each adding its own clusters one by one: every record survives
        // (each write compares the revision it read).
        let dir = tempfile::tempdir().unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let store = ClusterStore::new(dir.path());
                s.spawn(move || {
                    for i in 0..10 {
                        store.set(vec![cluster(&format!(r#"{{"name":"c{t}-{i}"}}"#))]).unwrap();
                    }
                });
            }
        });
        assert_eq!(ClusterStore::new(dir.path()).load().unwrap().len(), 80);
    }

    #[test]
    fn corrupt_store_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = ClusterStore::new(dir.path());
        fs::write(
            dir.path().join("clusters.jsonl"),
            "{\"kind\":\"cluster\",\"name\":\"ok\"}\n{\"kind\":\"cluster\",\"name\":\"Bad\"}\n",
        )
        .unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("clusters.jsonl: line 2: field name"), "{err}");
    }
}
