//! Clusters and plans as a picture (`lct-plan graph`, like `terraform graph`): each cluster a
//! box of its groups, the services they expose, the values it offers and the networks let
//! in; edges for the firewall's flows and for dependencies between clusters. Written as
//! Graphviz DOT, and as SVG through Graphviz's `dot`.
//!
//! Every text a plan or an operator wrote (descriptions, parameter values, node types) is
//! escaped into a quoted DOT string, and node identifiers are lct's own (`c0g1s2`), never a
//! name from the plan: a value holding `"`, a newline or `->` shows as written and cannot
//! add a node, an edge or an attribute to the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::state::Home;
use std::process::{Command, Stdio};

use lct_core::record::Name;
use serde_json::Value;

use crate::plan::{Count, Plan};

/// A cluster in the picture: one made here, or a plan drawn as the cluster it would make.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    /// Where its plan comes from (`package:zookeeper`, a path).
    pub source: String,
    pub plan: Plan,
    pub parameters: BTreeMap<String, Value>,
    /// Group sizes set by `scale`, over the plan's counts.
    pub counts: BTreeMap<Name, u32>,
}

/// What the picture is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Graphviz's language (render it with `dot -Tpng`, or paste it into a viewer)
    Dot,
    /// A picture, drawn by Graphviz's `dot`
    Svg,
}

/// Why no SVG came out.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error(
        "Graphviz's `dot` is not installed (Debian: apt-get install graphviz; scripts/setup installs it); \
         --format dot writes the graph without it"
    )]
    NoGraphviz,
    #[error("Graphviz's dot: {0}")]
    Dot(String),
}

/// The clusters named (every cluster made here when none is named and no plan is given)
/// and the plans given as `[NAME=]PLAN` (their parameters' defaults; NAME: the package's
/// or the file's name).
pub fn gather(home: &Home, clusters: &[Name], plans: &[String], allow_http: bool) -> anyhow::Result<Vec<Member>> {
    let mut names = clusters.to_vec();
    if names.is_empty() && plans.is_empty() {
        names = crate::state::clusters(home)?;
        if names.is_empty() {
            anyhow::bail!("no cluster was made here: name a plan (--plan package:zookeeper)");
        }
    }
    let mut members = Vec::new();
    for name in &names {
        let (state, plan) = crate::state::load_cluster(home, name)?;
        let name = name.to_string();
        members.push(Member { name, source: state.source, plan, parameters: state.parameters, counts: state.counts });
    }
    for given in plans {
        let (name, reference) = match given.split_once('=') {
            Some((name, reference)) if !name.contains([':', '/']) => (Some(name), reference),
            _ => (None, given.as_str()),
        };
        let plan_ref = crate::PlanRef::parse_with(reference, allow_http)?;
        let name = match (name, &plan_ref) {
            (Some(name), _) => name.parse::<Name>()?.to_string(),
            (None, crate::PlanRef::Package(p)) => p.clone(),
            (None, _) => Path::new(reference).file_stem().map_or("example".into(), |s| s.to_string_lossy().into()),
        };
        let loaded = plan_ref.load()?;
        let parameters = crate::parameters(&loaded.plan, &[]).map_err(anyhow::Error::msg)?;
        members.push(Member { name, source: loaded.source, plan: loaded.plan, parameters, counts: BTreeMap::new() });
    }
    Ok(members)
}

/// The clusters as a DOT digraph.
pub fn dot(members: &[Member]) -> String {
    let mut out = String::new();
    out.push_str("digraph lct {\n");
    out.push_str("  graph [rankdir=LR, compound=true, fontname=\"Helvetica\", fontsize=11, nodesep=0.3];\n");
    out.push_str("  node [fontname=\"Helvetica\", fontsize=10];\n");
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    let mut networks: BTreeMap<String, String> = BTreeMap::new();
    let mut edges = Vec::new();
    for (i, m) in members.iter().enumerate() {
        cluster(&mut out, &mut networks, &mut edges, i, m);
    }
    let mut outside: BTreeMap<String, String> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        dependencies(&mut outside, &mut edges, members, i, m);
    }
    for (text, id) in &networks {
        let _ = writeln!(out, "  {id} [shape=cds, style=filled, fillcolor=\"#eeeeee\", label={}];", quote(text));
    }
    for (text, id) in &outside {
        let _ = writeln!(out, "  {id} [shape=box, style=dashed, label={}];", quote(text));
    }
    for edge in edges {
        let _ = writeln!(out, "  {edge};");
    }
    out.push_str("}\n");
    out
}

/// One cluster's box: its groups and their services, its offered values, and the flows
/// into its services (from itself and from networks).
fn cluster(out: &mut String, networks: &mut BTreeMap<String, String>, edges: &mut Vec<String>, i: usize, m: &Member) {
    let ctx = crate::template::context(&m.name, &m.parameters);
    let render = |t: &str| crate::template::render(t, &ctx).unwrap_or_else(|_| t.to_string());
    let mut network = |text: String| -> String {
        let next = format!("n{}", networks.len());
        networks.entry(text).or_insert(next).clone()
    };
    // The flows from the cluster's own groups: (group, service node).
    let mut allowed = BTreeSet::new();
    for flow in &m.plan.firewall.allow {
        let Some(to) = service_id(i, &m.plan, &flow.to) else { continue };
        let groups: Vec<usize> = match flow.from.as_str() {
            "self" => (0..m.plan.groups.len()).collect(),
            f if f.starts_with("self:") => {
                m.plan.groups.keys().position(|g| g.as_str() == &f[5..]).into_iter().collect()
            }
            "dependents" => Vec::new(), // drawn as each dependent's dependency edge
            prefix => {
                let from = network(prefix.to_string());
                edges.push(format!("{from} -> {to} [color=\"#2e7d32\"]"));
                Vec::new()
            }
        };
        allowed.extend(groups.into_iter().map(|j| (j, to.clone())));
    }
    let _ = writeln!(out, "  subgraph cluster_{i} {{");
    let label = format!("cluster {}\n{}", m.name, m.source);
    let _ = writeln!(out, "    label={}; style=rounded; color=\"#4a6fa5\";", quote(&label));
    for (j, (g, group)) in m.plan.groups.iter().enumerate() {
        let count = match (&group.count, m.counts.get(g)) {
            (_, Some(n)) => n.to_string(),
            (Count::Fixed(n), None) => n.to_string(),
            (Count::Template(t), None) => render(t).trim().to_string(),
        };
        let mut text = format!("{g} × {count}\n{}", group.image);
        if let Some(t) = &group.node_type {
            let _ = write!(text, " {t}");
        }
        for v in &group.volumes {
            let _ = write!(text, "\nvolume {} {}", v.name, v.size);
        }
        let _ = writeln!(out, "    c{i}g{j} [shape=box3d, label={}];", quote(&text));
        for (k, (s, service)) in group.services.iter().enumerate() {
            let ports: Vec<String> = service.ports.iter().map(ToString::to_string).collect();
            let opened = m.plan.firewall.allow.iter().any(|f| f.from == "dependents" && f.to == format!("{g}.{s}"));
            let mut text = format!("{s}\n{}", ports.join(" "));
            if opened {
                text.push_str("\n(open to dependents)");
            }
            let _ = writeln!(out, "    c{i}g{j}s{k} [shape=ellipse, label={}];", quote(&text));
            // A group's own service: one edge, green when the firewall lets the group in.
            let style = match allowed.remove(&(j, format!("c{i}g{j}s{k}"))) {
                true => "color=\"#2e7d32\"",
                false => "arrowhead=none, style=bold, color=\"#888888\"",
            };
            edges.push(format!("c{i}g{j} -> c{i}g{j}s{k} [{style}]"));
        }
    }
    for (k, name) in m.plan.offers.keys().enumerate() {
        let _ = writeln!(out, "    c{i}o{k} [shape=note, label={}];", quote(&format!("offers {name}")));
    }
    out.push_str("  }\n");
    for admin in &m.plan.firewall.admin {
        let from = network(render(admin));
        for j in 0..m.plan.groups.len() {
            edges.push(format!("{from} -> c{i}g{j} [label=\"ssh\", style=dotted]"));
        }
    }
    for (j, to) in allowed {
        edges.push(format!("c{i}g{j} -> {to} [color=\"#2e7d32\"]"));
    }
}

/// Member `i`'s dependencies: an edge to each service it uses of the other cluster (a box
/// drawn dashed when that cluster is not in the picture), and one from each offered value
/// it reads.
fn dependencies(
    outside: &mut BTreeMap<String, String>,
    edges: &mut Vec<String>,
    members: &[Member],
    i: usize,
    m: &Member,
) {
    let ctx = crate::template::context(&m.name, &m.parameters);
    for (role, dep) in &m.plan.depends_on {
        let other = crate::template::render(&dep.cluster, &ctx).unwrap_or_else(|_| dep.cluster.clone());
        let Some((o, provider)) = members.iter().enumerate().find(|(_, p)| p.name == other) else {
            let made_from = dep.plan.as_deref().map_or(String::new(), |p| format!("\nmade from {p}"));
            let text = format!("cluster {other}\n(not in this picture){made_from}");
            let next = format!("x{}", outside.len());
            let id = outside.entry(text).or_insert(next).clone();
            let label = quote(&format!("{role}: {}", dep.services.join(", ")));
            edges.push(format!("c{i}g0 -> {id} [ltail=cluster_{i}, color=\"#b15928\", label={label}]"));
            continue;
        };
        let mut drawn = BTreeSet::new();
        for service in &dep.services {
            let to = service_id(o, &provider.plan, service).unwrap_or_else(|| format!("c{o}g0"));
            if drawn.insert(to.clone()) {
                let label = quote(&format!("{role}: {service}"));
                edges.push(format!("c{i}g0 -> {to} [ltail=cluster_{i}, color=\"#b15928\", label={label}]"));
            }
        }
        for value in &dep.uses {
            if let Some(k) = provider.plan.offers.keys().position(|n| n == value) {
                let label = quote(&format!("uses {value}"));
                edges.push(format!("c{o}o{k} -> c{i}g0 [lhead=cluster_{i}, style=dashed, label={label}]"));
            }
        }
    }
}

/// The node of service `GROUP.SERVICE` of member `i`.
fn service_id(i: usize, plan: &Plan, service: &str) -> Option<String> {
    let (g, s) = service.split_once('.')?;
    let (j, (_, group)) = plan.groups.iter().enumerate().find(|(_, (name, _))| name.as_str() == g)?;
    let k = group.services.keys().position(|name| name.as_str() == s)?;
    Some(format!("c{i}g{j}s{k}"))
}

/// `text` as a quoted DOT string shown as written: quotes and backslashes escaped, line
/// breaks as DOT's `\n`, other control characters as spaces.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The picture in the format asked for: DOT as it is, or drawn as SVG.
pub fn output(dot: &str, format: Format) -> Result<Vec<u8>, GraphError> {
    match format {
        Format::Dot => Ok(dot.as_bytes().to_vec()),
        Format::Svg => svg(dot),
    }
}

/// Draws DOT as SVG with Graphviz's `dot`.
pub fn svg(dot: &str) -> Result<Vec<u8>, GraphError> {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => GraphError::NoGraphviz,
            _ => GraphError::Dot(e.to_string()),
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    let text = dot.to_string();
    // Written from a thread: dot may fill its output pipe before it has read all its input.
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let output = child.wait_with_output().map_err(|e| GraphError::Dot(e.to_string()))?;
    let written = writer.join().map_err(|_| GraphError::Dot("writing its input failed".into()))?;
    if !output.status.success() {
        return Err(GraphError::Dot(String::from_utf8_lossy(&output.stderr).trim().to_string()));
    }
    written.map_err(|e| GraphError::Dot(e.to_string()))?;
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_text_inside_one_string() {
        assert_eq!(quote("a\"b"), r#""a\"b""#);
        assert_eq!(quote("a\\"), r#""a\\""#);
        assert_eq!(quote("x\n} -> y\r"), r#""x\n} -> y ""#);
    }
}
