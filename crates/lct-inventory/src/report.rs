//! What `exec` and `install` print: a command's lines as they come, prefixed with the
//! node's name like `pdsh` (on a terminal), or one result record per node (in a pipe); and a
//! failure that names every node it happened on.

use std::io::{self, Write};

use anyhow::bail;
use lct_core::cli::OutputFormat;
use lct_core::record::Node;
use lct_core::stream::{self, Writer};

use crate::exec::{self, ExecOptions, ExecResult, OutputLine, Stream};

/// Runs `command` on `nodes` and prints as `format` says (the `passthrough` lines first, in
/// a pipe); an error names every node whose command failed.
pub async fn exec_printed(
    nodes: Vec<Node>,
    command: Vec<String>,
    options: &ExecOptions,
    format: OutputFormat,
    passthrough: &[stream::Line],
) -> anyhow::Result<()> {
    if nodes.is_empty() {
        tracing::warn!("no nodes selected; nothing to run");
    }
    let total = nodes.len();
    let results = match format {
        OutputFormat::Table => {
            // Lines appear as they are printed, prefixed like `pdsh`: "node | text".
            let width = nodes.iter().map(|n| n.name.as_str().len()).max().unwrap_or(0);
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<OutputLine>();
            let printer = tokio::spawn(async move {
                while let Some(l) = rx.recv().await {
                    let line = format!("{:<width$} | {}\n", l.node.as_str(), l.text);
                    let _ = match l.stream {
                        Stream::Stdout => io::stdout().write_all(line.as_bytes()),
                        Stream::Stderr => io::stderr().write_all(line.as_bytes()),
                    };
                }
            });
            let results = exec::exec(nodes, command, options, Some(tx)).await;
            printer.await?;
            results
        }
        OutputFormat::Jsonl => {
            let mut out = Writer::new(io::stdout().lock());
            for line in passthrough {
                out.passthrough(line)?;
            }
            out.flush()?;
            drop(out);
            let results = exec::exec(nodes, command, options, None).await;
            let mut out = Writer::new(io::stdout().lock());
            let mut sorted: Vec<&ExecResult> = results.iter().collect();
            sorted.sort_by(|a, b| (&a.cluster, &a.node).cmp(&(&b.cluster, &b.node)));
            for r in sorted {
                out.write(r)?;
            }
            out.flush()?;
            results
        }
    };
    let mut failures: Vec<String> = results
        .iter()
        .filter(|r| !r.outcome.success())
        .map(|r| format!("{} ({})", r.node, r.outcome.describe()))
        .collect();
    failures.sort();
    if !failures.is_empty() {
        bail!("failed on {} of {total} nodes: {}", failures.len(), failures.join(", "));
    }
    Ok(())
}

/// Prints install's results (a table of what each node said, or the records); an error
/// names every node and step that failed, with its last line of stderr.
pub fn install_printed(mut results: Vec<ExecResult>, format: OutputFormat) -> anyhow::Result<()> {
    results.sort_by(|a, b| a.node.cmp(&b.node));
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.outcome.success())
        .map(|r| {
            format!("{} ({}: {})", r.node, r.outcome.describe(), r.stderr.trim().lines().last().unwrap_or_default())
        })
        .collect();
    match format {
        OutputFormat::Jsonl => {
            let mut out = Writer::new(io::stdout().lock());
            for r in &results {
                out.write(r)?;
            }
            out.flush()?;
        }
        OutputFormat::Table => {
            let mut table = lct_core::table::Table::new(&["NODE", "RESULT"]);
            for r in &results {
                let said = r.stdout.trim().lines().last().unwrap_or_default().to_string();
                table.row(vec![r.node.to_string(), if r.outcome.success() { said } else { r.outcome.describe() }]);
            }
            table.print()?;
        }
    }
    if !failed.is_empty() {
        bail!("install failed on {} of {}: {}", failed.len(), results.len(), failed.join(", "));
    }
    Ok(())
}
