//! Aligned text tables for terminals.

use std::io::{self, Write};

/// How a tool prints records: `-o table|jsonl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON object per line, for pipes.
    Jsonl,
}

pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
            let mut s = String::new();
            for (i, (cell, w)) in cells.zip(&widths).enumerate() {
                if i + 1 == widths.len() {
                    s.push_str(cell);
                } else {
                    s.push_str(&format!("{cell:<w$}  "));
                }
            }
            s.trim_end().to_string()
        };
        writeln!(out, "{}", line(&mut self.headers.iter().copied()))?;
        for row in &self.rows {
            writeln!(out, "{}", line(&mut row.iter().map(String::as_str)))?;
        }
        Ok(())
    }

    pub fn print(&self) -> io::Result<()> {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        self.write(&mut out)?;
        out.flush()
    }
}

/// Joins addresses (or anything displayable) with commas; `-` when empty.
pub fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() { "-".into() } else { items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",") }
}

/// A record that can be shown as a table row.
pub trait Tabular {
    const HEADERS: &'static [&'static str];
    fn row(&self) -> Vec<String>;
}

impl Tabular for crate::record::Node {
    const HEADERS: &'static [&'static str] =
        &["NAME", "CLUSTER", "GROUP", "STATUS", "PRIVATE", "PUBLIC", "PROVIDER", "ID", "REGION"];
    fn row(&self) -> Vec<String> {
        vec![
            self.name.to_string(),
            self.cluster.to_string(),
            self.group.to_string(),
            self.status.to_string(),
            list(&self.private_ipv4),
            list(&self.public_ipv4),
            self.provider.to_string(),
            self.provider_id.clone(),
            self.region.clone(),
        ]
    }
}

impl Tabular for crate::record::Volume {
    const HEADERS: &'static [&'static str] = &["LABEL", "SIZE_MIB", "STATUS", "ATTACHED_TO", "PATH", "PROVIDER"];
    fn row(&self) -> Vec<String> {
        vec![
            self.label.to_string(),
            self.size_mib.to_string(),
            self.status.clone(),
            self.attached_to.as_ref().map_or("-".into(), |n| n.to_string()),
            self.path.clone().unwrap_or_else(|| "-".into()),
            self.provider.to_string(),
        ]
    }
}

impl Tabular for crate::record::Cluster {
    const HEADERS: &'static [&'static str] = &["NAME", "DOMAIN", "PROVIDER", "DEPENDS_ON"];
    fn row(&self) -> Vec<String> {
        let deps: Vec<String> = self
            .depends_on
            .iter()
            .map(|d| {
                let mut s = d.cluster.to_string();
                if !d.groups.is_empty() {
                    s.push(':');
                    s.push_str(&d.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>().join("+"));
                }
                if !d.ports.is_empty() {
                    s.push('[');
                    s.push_str(&list(&d.ports));
                    s.push(']');
                }
                s
            })
            .collect();
        vec![
            self.name.to_string(),
            self.domain.as_ref().map_or("-".into(), |d| d.to_string()),
            self.provider.to_string(),
            if deps.is_empty() { "-".into() } else { deps.join(" ") },
        ]
    }
}

/// Prints records as a table or as JSON lines.
pub fn emit<T: crate::record::Record + Tabular>(items: &[T], format: OutputFormat) -> io::Result<()> {
    match format {
        OutputFormat::Table => {
            let mut t = Table::new(T::HEADERS);
            for item in items {
                t.row(item.row());
            }
            t.print()
        }
        OutputFormat::Jsonl => {
            let mut w = crate::stream::Writer::new(io::stdout().lock());
            for item in items {
                w.write(item)?;
            }
            w.flush()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&["NAME", "STATUS"]);
        t.row(vec!["zk-1".into(), "running".into()]);
        t.row(vec!["zookeeper-12".into(), "offline".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME          STATUS\nzk-1          running\nzookeeper-12  offline\n"
        );
    }
}
