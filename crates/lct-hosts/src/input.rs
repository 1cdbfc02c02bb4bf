//! What `render` and `apply` read: node records (slimmed to what rendering needs), cluster
//! records (the state directory's, and any on the stream), host-entry records and every
//! other line; and what passes on to the next tool.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use anyhow::Context;
use lct_core::record::{Cluster, Name, Node};
use lct_core::state::ClusterStore;
use lct_core::stream::{self, Writer};

use crate::entry::{HostEntry, RenderOptions, blocks_of, check};
use crate::member::Member;
use crate::render::render_blocks;

/// A record stream read for hosts files.
pub struct Input {
    pub nodes: Vec<Member>,
    /// With `keep_node_lines`: each node line's number and text, to pass it on.
    pub node_lines: Vec<(usize, String)>,
    pub clusters: Vec<Cluster>,
    pub others: Vec<stream::Line>,
}

impl Input {
    /// Reads `input` (node lines kept as text too with `keep_node_lines`); the cluster
    /// records are those of `store` with the stream's over them.
    pub fn read(input: impl Read, store: &ClusterStore, keep_node_lines: bool) -> anyhow::Result<Input> {
        // Only what rendering needs is kept of each node: 100,000 nodes stay well within memory.
        let (nodes, node_lines, others) = if keep_node_lines {
            let (kept, others) = stream::read_kind_parallel_with::<Node, (Member, String)>(
                input,
                |text| Some((Member::from_node_json(text)?, text.to_string())),
                |node, text| (Member::from(node), text.to_string()),
            )
            .context("stdin")?;
            let (nodes, lines) = kept.into_iter().map(|(number, (member, text))| (member, (number, text))).unzip();
            (nodes, lines, others)
        } else {
            let (kept, others) =
                stream::read_kind_parallel_with::<Node, Member>(input, Member::from_node_json, |node, _| {
                    Member::from(node)
                })
                .context("stdin")?;
            (kept.into_iter().map(|(_, member)| member).collect(), Vec::new(), others)
        };
        let clusters = store.with_input(&others)?;
        Ok(Input { nodes, node_lines, clusters, others })
    }

    /// The text of each cluster's block: the host entries that came in (checked here), or,
    /// when none came, the node records rendered (after `render`, nodes travel along as
    /// context only).
    pub fn blocks(&self, options: &RenderOptions) -> anyhow::Result<BTreeMap<Name, String>> {
        let mut entries = Vec::new();
        for line in self.others.iter().filter(|l| l.is::<HostEntry>()) {
            entries.push(line.parse::<HostEntry>().context("stdin")?);
        }
        if entries.is_empty() {
            return Ok(render_blocks(&self.nodes, &self.clusters, options)?);
        }
        check(&entries)?;
        Ok(blocks_of(entries))
    }

    /// Every input line passed on, node records too (the next tool, e.g. lct-fw, needs them),
    /// in input order; `entries` follow.
    pub fn write_through(&self, entries: &[HostEntry], out: impl Write) -> io::Result<()> {
        let mut out = Writer::new(out);
        let mut nodes = self.node_lines.iter().peekable();
        for line in &self.others {
            while let Some((_, text)) = nodes.next_if(|(n, _)| *n < line.number) {
                out.write_raw(text)?;
            }
            out.passthrough(line)?;
        }
        for (_, text) in nodes {
            out.write_raw(text)?;
        }
        for e in entries {
            out.write(e)?;
        }
        out.flush()
    }
}
