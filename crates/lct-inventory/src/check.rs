//! `lct-inventory check`: every line of a record stream validated, each bad one reported
//! with its line and field, the good ones counted by kind.

use std::collections::BTreeMap;
use std::io::BufRead;

use lct_core::record::{Cluster, Node, NodeSpec, Record, Volume};
use lct_core::stream::{self, StreamError};

/// What a check found: the records by kind, and every bad line.
#[derive(Debug, Default)]
pub struct Checked {
    pub counts: BTreeMap<String, usize>,
    pub errors: Vec<StreamError>,
}

impl Checked {
    /// "3 node, 1 cluster", or "no records".
    pub fn summary(&self) -> String {
        let summary: Vec<String> = self.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        if summary.is_empty() { "no records".into() } else { summary.join(", ") }
    }
}

/// Reads every line: lct's kinds are parsed and checked, other kinds counted as they are.
pub fn check(input: impl BufRead) -> Checked {
    let mut checked = Checked::default();
    for line in stream::Reader::new(input) {
        let result = line.and_then(|line| {
            match line.kind.as_str() {
                Node::KIND => line.parse::<Node>().map(drop),
                Cluster::KIND => line.parse::<Cluster>().map(drop),
                NodeSpec::KIND => line.parse::<NodeSpec>().map(drop),
                Volume::KIND => line.parse::<Volume>().map(drop),
                _ => Ok(()),
            }?;
            *checked.counts.entry(line.kind).or_default() += 1;
            Ok(())
        });
        if let Err(e) = result {
            checked.errors.push(e);
        }
    }
    checked
}
