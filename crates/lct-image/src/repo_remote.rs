//! Repositories on nodes: `ssh://NODE/PATH` (NODE a node of lct's inventory, PATH a directory
//! on it, typically a mounted volume). The repository code runs where the files are: lct-image
//! is put on the node (by SHA-256, as lct's other node-side programs) and the controller runs
//! `lct-image repo ...` there over lct's SSH, so locks, crash safety and verification are the
//! very code of a local repository. Images go up as `send` streams (the node first says
//! which extents it lacks: those only are sent) and come down the same way, every extent's
//! hash checked where it lands.

use std::io::{Read, Write};
use std::path::Path;

use lct_core::record::{Name, Node, Record};

use crate::error::{ImageError, io_at};
use crate::format::Kind;
use crate::node_pipe::{Piped, on_node};
use crate::opened::{Opened, SEND_MAGIC};
use crate::repo::{Added, Entry, Pruned, Repo};

/// What a receiving node answers first: the extents it wants.
const WANT_MAGIC: &[u8; 8] = b"LCTWANT1";

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

/// The repository a repo command names, if it is on a node.
pub fn of_command(command: &crate::cli::RepoCommand) -> Option<Result<NodeRepoName, ImageError>> {
    use crate::cli::RepoCommand::*;
    let (Init { repo }
    | Add { repo, .. }
    | List { repo }
    | Show { repo, .. }
    | Rm { repo, .. }
    | Prune { repo, .. }
    | Verify { repo, .. }
    | Export { repo, .. }
    | Receive { repo, .. }) = command;
    repo_name(repo.to_str()?)
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
        let state = lct_core::state::state_dir();
        let clusters = lct_core::state::ClusterStore::new(&state).load().map_err(|e| refused(e.to_string()))?;
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

    /// Image `name`, streamed from the node (`lct-image send PATH::NAME` there).
    pub fn open_image(&self, name: &str) -> Result<Opened, ImageError> {
        crate::repo::check_name(name)?;
        let image = format!("{}::{name}", self.name.path);
        let piped = self.start(&["send", &image], false)?;
        let mut opened = Opened::sent(Box::new(piped), &format!("{}::{name}", self.name))?;
        opened.name = format!("{}::{name}", self.name);
        Ok(opened)
    }

    /// Adds `image` as `name`: its index goes first, the node answers which data extents it
    /// lacks, and only those frames follow; the node checks each before storing it.
    pub fn add(&self, name: &str, image: &Opened) -> Result<Added, ImageError> {
        crate::repo::check_name(name)?;
        let mut piped = self.start(&["repo", "receive", &self.name.path, "--name", name], true)?;
        let trailer = image.index.trailer();
        let mut head = SEND_MAGIC.to_vec();
        head.extend_from_slice(&(trailer.len() as u64).to_le_bytes());
        head.extend_from_slice(&trailer);
        piped.write_all(&head)?;
        let wanted = read_want(&mut piped, &image.index)?;
        for i in wanted {
            piped.write_all(&image.frame(&image.index.extents[i])?)?;
        }
        let answer = piped.answer(1 << 16)?;
        let (added, _) = lct_core::stream::read_kind::<Added>(&answer[..])
            .map_err(|e| refused(format!("{}: receive: {e}", self.name)))?;
        let added = added.into_iter().next().ok_or_else(|| refused(format!("{}: receive said nothing", self.name)))?;
        Ok(Added { repo: self.name.to_string(), ..added })
    }
}

/// The node's list of wanted extents, checked: a count no larger than the image's data
/// extents, each an index of a data extent, in increasing order.
fn read_want(input: &mut impl Read, index: &crate::format::Index) -> Result<Vec<usize>, ImageError> {
    let bad = |why: String| refused(format!("the receiving node's answer: {why}"));
    let mut head = [0u8; 16];
    input.read_exact(&mut head).map_err(|e| bad(e.to_string()))?;
    if &head[..8] != WANT_MAGIC {
        return Err(bad("not a list of wanted extents".into()));
    }
    let count = u64::from_le_bytes(head[8..].try_into().expect("8"));
    let data = index.extents.iter().filter(|e| e.kind == Kind::Data).count() as u64;
    if count > data {
        return Err(bad(format!("{count} extents wanted of an image with {data}")));
    }
    let mut wanted = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut word = [0u8; 4];
        input.read_exact(&mut word).map_err(|e| bad(e.to_string()))?;
        let i = u32::from_le_bytes(word) as usize;
        let in_order = wanted.last().is_none_or(|last| i > *last);
        if !in_order || index.extents.get(i).is_none_or(|e| e.kind != Kind::Data) {
            return Err(bad(format!("extent {i}: not a data extent in order")));
        }
        wanted.push(i);
    }
    Ok(wanted)
}

/// The node's side of an add (`lct-image repo receive PATH --name NAME`): reads the image's
/// index from `input`, says which data extents the repository lacks (under its shared lock,
/// so that no prune takes one away meanwhile), then adds the image from the frames that
/// follow, each checked against its hash.
pub fn receive(
    repo: &Repo,
    name: &str,
    input: Box<dyn Read + Send>,
    output: &mut dyn Write,
) -> Result<Added, ImageError> {
    crate::repo::check_name(name)?;
    let mut opened = Opened::sent(input, "(controller)")?;
    let _shared = repo.lock(false)?;
    let wanted: Vec<usize> = (0..opened.index.extents.len())
        .filter(|&i| {
            let e = &opened.index.extents[i];
            e.kind == Kind::Data && !repo.holds(&e.hash)
        })
        .collect();
    let out = Path::new("(output)");
    let mut answer = WANT_MAGIC.to_vec();
    answer.extend_from_slice(&(wanted.len() as u64).to_le_bytes());
    for i in &wanted {
        answer.extend_from_slice(&(*i as u32).to_le_bytes());
    }
    output.write_all(&answer).and_then(|()| output.flush()).map_err(io_at(out))?;
    let keep: std::collections::HashSet<usize> = wanted.into_iter().collect();
    opened.only_frames(|i| keep.contains(&i));
    repo.add(name, &opened, crate::parallel::threads(), &|_, _| {})
}

/// Writes `image` (streamed from a node) as a standalone image file: `OUT.partial`, every
/// frame checked, synced, renamed.
pub fn export(image: &Opened, out: &Path) -> Result<(), ImageError> {
    let partial = crate::disk::partial_path(out);
    let file = std::fs::File::create(&partial).map_err(io_at(&partial))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let written = (|| {
        for (i, e) in image.index.extents.iter().enumerate() {
            let frame = match e.kind {
                Kind::Zero => crate::frame::zero_frame(e.len as usize),
                Kind::Data => {
                    let frame = image.frame(e)?;
                    crate::frame::check_frame(Path::new(&image.name), i, e, &frame)?;
                    frame
                }
            };
            writer.write_all(&frame).map_err(io_at(&partial))?;
        }
        writer.write_all(&image.index.trailer()).map_err(io_at(&partial))?;
        let file = writer.into_inner().map_err(|e| io_at(&partial)(e.into_error()))?;
        file.sync_all().map_err(io_at(&partial))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, out).map_err(io_at(out))
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

    /// A receiving node's answer is bounded by the image: a huge count, an index out of
    /// range or out of order, a zero extent are refused before a frame is sent.
    #[test]
    fn a_hostile_want_list_is_refused() {
        use crate::format::{Extent, Index};
        let e = |kind| Extent { offset: 0, len: 4096, coffset: 0, csize: 10, kind, hash: [0; 32] };
        let index = Index {
            manifest: crate::format::Manifest {
                size: 3 * 4096,
                extent_size: 4096,
                label: String::new(),
                source: String::new(),
                created: 0,
                tool_version: String::new(),
            },
            extents: vec![e(Kind::Data), e(Kind::Zero), e(Kind::Data)],
            root: [0; 32],
        };
        let want = |count: u64, items: &[u32]| {
            let mut b = WANT_MAGIC.to_vec();
            b.extend_from_slice(&count.to_le_bytes());
            items.iter().for_each(|i| b.extend_from_slice(&i.to_le_bytes()));
            read_want(&mut &b[..], &index)
        };
        assert_eq!(want(2, &[0, 2]).unwrap(), vec![0, 2]);
        assert!(want(1 << 40, &[]).unwrap_err().to_string().contains("extents wanted of an image with 2"));
        assert!(want(1, &[1]).is_err());
        assert!(want(1, &[7]).is_err());
        assert!(want(2, &[2, 0]).is_err());
        assert!(want(2, &[0]).is_err());
    }
}
