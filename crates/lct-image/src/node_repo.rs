//! Repositories on nodes: `ssh://NODE/PATH` (NODE a node of lct's inventory, PATH a directory
//! on it, typically a mounted volume), their names checked, their node found, lct-image put
//! there, and `lct-image repo ...` run there over lct's SSH: locks, crash safety and
//! verification are the very code of a local repository. (Images up and down: `repo_remote`.)

use std::path::Path;

use lct_core::record::{Name, Node, Record};

use crate::error::{ImageError, io_at};
use crate::node_pipe::{Piped, on_node};
use crate::repo::{Entry, Pruned};

/// Answers of list, show, prune and verify are at most this long.
const ANSWER_LIMIT: u64 = 64 << 20;

fn refused(message: String) -> ImageError {
    ImageError::Refused(message)
}

/// A repository on a node, as named: `ssh://NODE/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRepoName {
    pub node: Name,
    pub path: String,
}

impl std::fmt::Display for NodeRepoName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ssh://{}{}", self.node, self.path)
    }
}

/// `ssh://NODE/PATH`, if `spec` starts so (then checked: a node's name, an absolute path of
/// plain words; no user, port, `..`, quotes, spaces or shell characters).
pub fn repo_name(spec: &str) -> Option<Result<NodeRepoName, ImageError>> {
    let rest = spec.strip_prefix("ssh://")?;
    Some(parse_repo(spec, rest))
}

fn parse_repo(spec: &str, rest: &str) -> Result<NodeRepoName, ImageError> {
    let bad = |why: &str| refused(format!("{spec:?}: not a repository on a node ({why}; ssh://NODE/PATH)"));
    let (node, path) = rest.find('/').map(|i| rest.split_at(i)).ok_or_else(|| bad("no path"))?;
    let node: Name = node.parse().map_err(|_| bad("NODE is not a node's name: no user@ or :port"))?;
    let plain = path.len() <= 1024
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.+@".contains(&b))
        && path[1..].split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    if !plain {
        return Err(bad("PATH must be absolute, of letters, digits and - _ . + @, without . or .. or //"));
    }
    Ok(NodeRepoName { node, path: path.to_string() })
}

/// `ssh://NODE/PATH::NAME`, if `spec` is one.
pub fn entry_name(spec: &Path) -> Option<Result<(NodeRepoName, String), ImageError>> {
    let text = spec.to_str()?;
    if !text.starts_with("ssh://") {
        return None;
    }
    let Some((repo, name)) = text.rsplit_once("::") else {
        return Some(Err(refused(format!("{text:?}: an image in a repository on a node is ssh://NODE/PATH::NAME"))));
    };
    Some(repo_name(repo)?.and_then(|r| crate::repo::check_name(name).map(|()| (r, name.to_string()))))
}

/// Runs `future` to its end on a thread of its own (callable in or out of a runtime).
fn block<T: Send>(future: impl std::future::Future<Output = Result<T, ImageError>> + Send) -> Result<T, ImageError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| refused(e.to_string()))?;
                runtime.block_on(future)
            })
            .join()
            .unwrap_or_else(|_| Err(refused("a thread panicked".into())))
    })
}

/// Node `name` from the inventory (the providers lct uses), or an error naming it.
pub fn find_node(name: &Name) -> Result<Node, ImageError> {
    block(async {
        let clusters =
            lct_core::state::ClusterStore::open().and_then(|store| store.load()).map_err(|e| refused(e.to_string()))?;
        let selector = lct_inventory::Selector { names: vec![name.to_string()], ..Default::default() };
        let nodes = lct_inventory::query(&selector, &clusters).await.map_err(|e| refused(e.to_string()))?;
        nodes.into_iter().find(|n| n.name == *name).ok_or_else(|| {
            refused(format!("node {name}: not in the inventory (lct-inventory query lists the nodes lct knows)"))
        })
    })
}

/// Puts this very lct-image on `node` unless the node has the same (its SHA-256 asked first,
/// so that the program crosses the network only when it must).
pub fn ensure_program(node: &Node) -> Result<(), ImageError> {
    let here = std::env::current_exe().map_err(|e| refused(e.to_string()))?;
    let bytes = std::fs::read(&here).map_err(io_at(&here))?;
    let program = lct_inventory::install::Program::new("lct-image", bytes);
    let target = format!("{}/lct-image", program.dir);
    let what = format!("node {}: sha256sum", node.name);
    let answer =
        Piped::spawn(on_node(node, &["sh", "-c", "sha256sum \"$0\" 2>/dev/null || true", &target])?, what, false)?
            .answer(4096)?;
    if String::from_utf8_lossy(&answer).split_whitespace().next() == Some(program.sha256.as_str()) {
        return Ok(());
    }
    crate::node_pipe::count(program.bytes.len() as u64);
    block(async {
        let options = lct_inventory::exec::ExecOptions::default();
        for r in lct_inventory::install::install(std::slice::from_ref(node), &[program], &options).await {
            if !r.outcome.success() {
                return Err(refused(format!("node {}: installing lct-image: {}", r.node, r.stderr.trim())));
            }
        }
        Ok(())
    })
}

/// A repository on a node, its node found and lct-image on it.
pub struct NodeRepo {
    pub name: NodeRepoName,
    pub node: Node,
}

impl NodeRepo {
    pub fn open(name: &NodeRepoName) -> Result<NodeRepo, ImageError> {
        let node = find_node(&name.node)?;
        // A namespace node shares this machine's files: a repository there is a local one.
        if !matches!(node.access, Some(lct_core::record::Access::Ssh { .. })) {
            return Err(refused(format!(
                "node {}: not reached by SSH (a repository on a node needs a machine node or a Linode;                  on a namespace node, name the directory itself)",
                node.name
            )));
        }
        ensure_program(&node)?;
        Ok(NodeRepo { name: name.clone(), node })
    }

    /// `lct-image -o jsonl ARGS` on the node, running.
    pub fn start(&self, args: &[&str], stdin: bool) -> Result<Piped, ImageError> {
        let mut argv = vec!["lct-image", "-o", "jsonl"];
        argv.extend_from_slice(args);
        let what = format!("node {}: lct-image {}", self.node.name, args.first().copied().unwrap_or_default());
        Piped::spawn(on_node(&self.node, &argv)?, what, stdin)
    }

    /// `lct-image -o jsonl repo SUB PATH REST...` on the node: its records of kind `T`.
    fn records<T: Record>(&self, sub: &str, rest: &[&str]) -> Result<Vec<T>, ImageError> {
        let mut args = vec!["repo", sub, &self.name.path];
        args.extend_from_slice(rest);
        let answer = self.start(&args, false)?.answer(ANSWER_LIMIT)?;
        let (records, _) = lct_core::stream::read_kind::<T>(&answer[..])
            .map_err(|e| refused(format!("node {}: lct-image repo {sub}: {e}", self.node.name)))?;
        Ok(records)
    }

    pub fn init(&self) -> Result<(), ImageError> {
        self.records::<Entry>("init", &[]).map(|_| ())
    }

    pub fn list(&self) -> Result<Vec<Entry>, ImageError> {
        Ok(self.records::<Entry>("list", &[])?.into_iter().map(|e| self.named(e)).collect())
    }

    pub fn show(&self, name: &str) -> Result<Entry, ImageError> {
        crate::repo::check_name(name)?;
        let entry = self.records::<Entry>("show", &[name])?.into_iter().next();
        entry.map(|e| self.named(e)).ok_or_else(|| refused(format!("{}: said nothing of {name}", self.name)))
    }

    pub fn remove(&self, name: &str) -> Result<(), ImageError> {
        crate::repo::check_name(name)?;
        self.records::<Entry>("rm", &[name]).map(|_| ())
    }

    pub fn prune(&self, dry_run: bool) -> Result<Pruned, ImageError> {
        let rest: &[&str] = if dry_run { &["--dry-run"] } else { &[] };
        let pruned = self.records::<Pruned>("prune", rest)?.into_iter().next();
        let mut pruned = pruned.ok_or_else(|| refused(format!("{}: prune said nothing", self.name)))?;
        pruned.repo = self.name.to_string();
        Ok(pruned)
    }

    pub fn verify(&self, name: Option<&str>) -> Result<Vec<crate::Report<crate::report::Verified>>, ImageError> {
        if let Some(n) = name {
            crate::repo::check_name(n)?;
        }
        self.records("verify", name.as_slice())
    }

    /// An entry as this side names it (the repository as `ssh://NODE/PATH`).
    fn named(&self, entry: Entry) -> Entry {
        Entry { repo: self.name.to_string(), ..entry }
    }

    /// Image `name` as a `send` stream from the node (`lct-image send PATH::NAME` there).
    pub fn stream(&self, name: &str) -> Result<Piped, ImageError> {
        crate::repo::check_name(name)?;
        let image = format!("{}::{name}", self.name.path);
        self.start(&["send", &image], false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_repositories_on_nodes_are_strict() {
        let ok = repo_name("ssh://store-1/srv/images").unwrap().unwrap();
        assert_eq!(ok, NodeRepoName { node: "store-1".parse().unwrap(), path: "/srv/images".into() });
        assert_eq!(ok.to_string(), "ssh://store-1/srv/images");
        for bad in [
            "ssh://root@store-1/srv",
            "ssh://store-1:2222/srv",
            "ssh://store-1",
            "ssh://store-1/",
            "ssh://store-1/srv/../etc",
            "ssh://store-1/srv//x",
            "ssh://store-1/srv/$(touch /tmp/pwned)",
            "ssh://store-1/srv;reboot",
            "ssh://store-1/srv/'x'",
            "ssh://store-1/srv/a b",
            "ssh://store-1/srv/a\nb",
            "ssh://-oProxyCommand=x/srv",
            "ssh://Store/srv",
        ] {
            let error = repo_name(bad).unwrap().unwrap_err().to_string();
            assert!(error.contains("not a repository on a node"), "{bad}: {error}");
        }
        assert!(repo_name("/srv/images").is_none());
        for bad in
            ["ssh://s/srv::../x", "ssh://s/srv::a/b", "ssh://s/srv::$(touch x)", "ssh://s/srv::a;b", "ssh://s/srv"]
        {
            assert!(entry_name(Path::new(bad)).unwrap().is_err(), "{bad}");
        }
        let (repo, name) = entry_name(Path::new("ssh://s/srv::zk-1")).unwrap().unwrap();
        assert_eq!((repo.path.as_str(), name.as_str()), ("/srv", "zk-1"));
    }
}
