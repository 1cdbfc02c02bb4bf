//! What `lct-plan` shows people: the packaged plans, a plan's summary, a cluster's status
//! and its event log. Each is written to `out`; the binary only picks the command.

use crate::state::Home;
use std::io::Write;

use anyhow::Context as _;
use lct_api::Provider;
use lct_core::record::{Name, NodeSpec};
use lct_core::table::{Table, Tabular};
use serde_json::Value;

use crate::plan::{Count, Event, Plan};
use crate::spec::{node_specs, offers};
use crate::state::load_cluster;
use crate::{PACKAGES, parse};

/// `lct-plan list`: each packaged plan with the first sentence of its description.
pub fn list(out: &mut impl Write) -> anyhow::Result<()> {
    for package in PACKAGES {
        let name = package.name;
        let plan = parse(package.plan, &format!("package:{name}"))?;
        let first = plan.description.split(". ").next().unwrap_or_default().trim().trim_end_matches('.');
        writeln!(out, "package:{name:<14} {first}")?;
    }
    Ok(())
}

/// `lct-plan show`: a plan's description, downloads, parameters, groups and services,
/// dependencies, what it opens to dependents and offers them.
pub fn show(out: &mut impl Write, plan: &Plan, source: &str) -> anyhow::Result<()> {
    writeln!(out, "{source}\n\n{}", plan.description.trim())?;
    if plan.downloads.is_empty() {
        writeln!(out, "\nDownloads: nothing outside Debian's archive.")?;
    } else {
        writeln!(out, "\nDownloads (checked by SHA-256 before use):")?;
        for d in &plan.downloads {
            writeln!(out, "  {} sha256:{} {}", d.url, d.sha256, d.description)?;
        }
    }
    if !plan.packages.is_empty() {
        writeln!(out, "\nDebian packages: {}", plan.packages.join(" "))?;
    }
    writeln!(out, "\nParameters:")?;
    for (name, p) in &plan.parameters {
        let default = match (&p.default, p.secret) {
            (_, true) => "<secret>".to_string(),
            (Some(d), _) => d.to_string(),
            (None, _) => "(required)".to_string(),
        };
        let kind = serde_json::to_value(p.kind)?;
        writeln!(out, "  {name:<20} {:<8} {default:<20} {}", kind.as_str().unwrap_or_default(), p.description)?;
    }
    writeln!(out, "\nGroups:")?;
    for (g, group) in &plan.groups {
        let count = match &group.count {
            Count::Fixed(n) => n.to_string(),
            Count::Template(t) => t.clone(),
        };
        writeln!(out, "  {:<12} count {count}, image {}", g.as_str(), group.image)?;
        for (s, service) in &group.services {
            let ports: Vec<String> = service.ports.iter().map(ToString::to_string).collect();
            writeln!(out, "    {:<10} {:<22} {}", s.as_str(), ports.join(","), service.description)?;
        }
    }
    if !plan.depends_on.is_empty() {
        writeln!(out, "\nDepends on:")?;
        for (role, d) in &plan.depends_on {
            let made_from = d.plan.as_deref().map_or(String::new(), |p| format!(" (made from {p})"));
            writeln!(out, "  {role:<12} cluster {}{made_from}, services {}", d.cluster, d.services.join(", "))?;
        }
    }
    let opened = crate::offered::opened_to_dependents(plan);
    writeln!(out, "\nOpens to its dependents: {}", crate::offered::describe(&opened))?;
    if !plan.offers.is_empty() {
        let names: Vec<&str> = plan.offers.keys().map(String::as_str).collect();
        writeln!(out, "\nOffers its dependents: {}", names.join(", "))?;
    }
    Ok(())
}

/// Events as a table: when (UTC), which, how it ended, how long, its hooks or its error.
pub fn events_table(out: &mut impl Write, events: &[Value]) -> std::io::Result<()> {
    writeln!(out, "  {:<20} {:<19} {:<7} {:>9}  HOOKS / ERROR", "AT (UTC)", "EVENT", "OUTCOME", "TOOK")?;
    for e in events {
        let at = e["at"]
            .as_i64()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default();
        let hooks: Vec<&str> = e["hooks"].as_array().into_iter().flatten().filter_map(|h| h["hook"].as_str()).collect();
        let detail = e["error"].as_str().map_or_else(|| hooks.join(", "), String::from);
        writeln!(
            out,
            "  {at:<20} {:<19} {:<7} {:>9}  {detail}",
            e["event"].as_str().unwrap_or_default(),
            e["outcome"].as_str().unwrap_or_default(),
            format!("{} ms", e["took_ms"])
        )?;
    }
    Ok(())
}

/// The events of cluster `name`'s log (`plans/NAME/events/`, after an older lct's
/// `events.jsonl` if one is left), oldest first.
pub fn events(home: &Home, name: &Name) -> anyhow::Result<Vec<Value>> {
    use lct_core::store::layout::{EVENTS, LEGACY_EVENT_LOG};
    let legacy = home.store.get(&crate::state::cluster_key(name, LEGACY_EVENT_LOG))?;
    let prefix = crate::state::cluster_prefix(name).join(EVENTS)?;
    let listed = home.store.list(&prefix)?;
    if legacy.is_none() && listed.is_empty() && !home.made_here(name)? {
        anyhow::bail!("cluster {name} has no event log here");
    }
    let mut text = legacy.map(|e| String::from_utf8_lossy(&e.value).into_owned()).unwrap_or_default();
    for (_, entry) in listed {
        text.push_str(&String::from_utf8_lossy(&entry.value));
    }
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// `lct-plan log NAME`: the cluster's events, as a table or as they are kept (JSON lines).
pub fn log(out: &mut impl Write, home: &Home, name: &Name, jsonl: bool) -> anyhow::Result<()> {
    let events = events(home, name)?;
    if !jsonl {
        return Ok(events_table(out, &events)?);
    }
    for e in &events {
        writeln!(out, "{e}")?;
    }
    Ok(())
}

/// `lct-plan log NAME EVENT`: the last run of `event`, then every hook's output of it.
pub fn event_log(out: &mut impl Write, home: &Home, name: &Name, event: Event) -> anyhow::Result<()> {
    let logs_dir = crate::state::logs_dir(home, name);
    let events = events(home, name)?;
    let last = events
        .iter()
        .rev()
        .find(|e| e["event"] == event.as_str())
        .with_context(|| format!("cluster {name}: no {event} event yet"))?;
    writeln!(out, "{last}")?;
    let prefix = format!("{event}.");
    let mut logs: Vec<_> = std::fs::read_dir(logs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    logs.sort_by_key(|e| e.file_name());
    for log in logs {
        writeln!(out, "==> {} <==", log.file_name().to_string_lossy())?;
        write!(out, "{}", std::fs::read_to_string(log.path()).unwrap_or_default())?;
    }
    Ok(())
}

/// `lct-plan status`: a cluster's plan, parameters (secrets hidden), groups against the
/// plan, what it offers, what it depends on, its nodes and last events.
pub async fn status(out: &mut impl Write, home: &Home, name: &Name) -> anyhow::Result<()> {
    let (state, plan) = load_cluster(home, name)?;
    let stopped = if state.stopped { " (stopped)" } else { "" };
    writeln!(out, "cluster {name}: from {} on {}{stopped}", state.source, state.provider)?;
    writeln!(out, "parameters:")?;
    for (k, v) in &state.parameters {
        let secret = plan.parameters.get(k).is_some_and(|p| p.secret);
        writeln!(out, "  {k} = {}", if secret { "<secret>".into() } else { v.to_string() })?;
    }
    let api = lct_api::AnyProvider::from_env(state.provider)?;
    let nodes: Vec<_> = api.list().await?.into_iter().filter(|n| &n.cluster == name).collect();
    let records = home.records().load()?;
    let planned = node_specs(&plan, name, &state.parameters, &Default::default(), state.provider)?;
    let wanted = node_specs(&plan, name, &state.parameters, &state.counts, state.provider)?;
    writeln!(out, "groups:")?;
    for (g, group) in &plan.groups {
        let count = |specs: &[NodeSpec]| specs.iter().filter(|s| &s.group == g).count();
        let have = nodes.iter().filter(|n| &n.group == g).count();
        let scaled =
            if state.counts.contains_key(g) { format!(" (scaled from {})", count(&planned)) } else { String::new() };
        let services: Vec<String> = group
            .services
            .iter()
            .map(|(s, svc)| format!("{s} {}", svc.ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")))
            .collect();
        writeln!(out, "  {:<12} {have} of {} nodes{scaled}  {}", g.as_str(), count(&wanted), services.join("; "))?;
    }
    let offered = offers(&plan, name, &state.parameters, &nodes, &records)?;
    if !offered.is_empty() {
        writeln!(out, "offers:")?;
        for (k, v) in offered {
            writeln!(out, "  {k} = {v}")?;
        }
    }
    if let Some(record) = records.iter().find(|c| &c.name == name)
        && !record.depends_on.is_empty()
    {
        let deps: Vec<String> = record
            .depends_on
            .iter()
            .map(|d| {
                format!("{} ({})", d.cluster, d.ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
            })
            .collect();
        writeln!(out, "depends on: {}", deps.join(", "))?;
    }
    writeln!(out, "nodes:")?;
    let mut table = Table::new(lct_core::record::Node::HEADERS);
    for n in &nodes {
        table.row(n.row());
    }
    table.write(out)?;
    let events = events(home, name).unwrap_or_default();
    writeln!(out, "last events:")?;
    events_table(out, &events[events.len().saturating_sub(5)..])?;
    Ok(())
}
