//! Images up to and down from repositories on nodes (`crate::node_repo`). Up: the image's
//! index goes first, the node says which data extents it lacks, only those frames follow,
//! each checked on the node against its hash. Down: a `send` stream, each frame checked here.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{ImageError, io_at};
use crate::format::Kind;
use crate::node_repo::NodeRepo;
use crate::opened::{Opened, SEND_MAGIC};
use crate::repo::{Added, Repo};

/// What a receiving node answers first: the extents it wants.
const WANT_MAGIC: &[u8; 8] = b"LCTWANT1";

fn refused(message: String) -> ImageError {
    ImageError::Refused(message)
}

/// Adds `image` to `repo` as `name`: its index goes first, the node answers which data extents it
/// lacks, and only those frames follow; the node checks each before storing it.
pub fn add(repo: &NodeRepo, name: &str, image: &Opened) -> Result<Added, ImageError> {
    crate::repo::check_name(name)?;
    let mut piped = repo.start(&["repo", "receive", &repo.name.path, "--name", name], true)?;
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
        .map_err(|e| refused(format!("{}: receive: {e}", repo.name)))?;
    let added = added.into_iter().next().ok_or_else(|| refused(format!("{}: receive said nothing", repo.name)))?;
    Ok(Added { repo: repo.name.to_string(), ..added })
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
