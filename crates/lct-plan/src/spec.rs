//! What a plan asks for and gives, rendered for one cluster: its nodes, its cluster record
//! (domain, dependencies, firewall declarations, refused when they make a cycle), its
//! volumes, and the values it offers its dependents.

use crate::state::Home;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};
use lct_core::record::{Cluster, Dependency, Name, Node, NodeSpec, PortSpec, ProviderName};
use lct_fw::model::{Allow, FirewallSpec, Mode};
use serde_json::{Value, json};

use crate::error::PlanError;
use crate::load::Loaded;
use crate::offered::Refused;
use crate::plan::{Count, Plan};
use crate::state::load_cluster;

/// The template context (see [`crate::template::context`]).
pub(crate) fn context(name: &Name, params: &BTreeMap<String, Value>) -> Value {
    crate::template::context(name.as_str(), params)
}

/// Renders a plan template within its bounds ([`crate::template::render`]).
pub(crate) fn render(template: &str, ctx: &Value) -> anyhow::Result<String> {
    crate::template::render(template, ctx).map_err(anyhow::Error::msg)
}

/// The nodes a plan asks for: every group's count of nodes (`counts` from `scale` over the
/// plan's), named by its template.
pub fn node_specs(
    plan: &Plan,
    name: &Name,
    params: &BTreeMap<String, Value>,
    counts: &BTreeMap<Name, u32>,
    provider: ProviderName,
) -> anyhow::Result<Vec<NodeSpec>> {
    let ctx = context(name, params);
    let mut specs = Vec::new();
    let mut seen = BTreeSet::new();
    for (g, group) in &plan.groups {
        let count: u32 = match (&group.count, counts.get(g)) {
            (_, Some(n)) => *n,
            (Count::Fixed(n), None) => *n,
            (Count::Template(t), None) => {
                render(t, &ctx)?.trim().parse().with_context(|| format!("groups.{g}.count: {t:?}"))?
            }
        };
        if count > crate::plan::MAX_GROUP_NODES {
            bail!("groups.{g}.count: {count} nodes, over the {} a group may have", crate::plan::MAX_GROUP_NODES);
        }
        for index in 1..=count {
            let mut c = ctx.clone();
            c["group"] = json!(g);
            c["index"] = json!(index);
            let hostname = render(&group.hostname, &c)?;
            let node: Name = hostname.parse().with_context(|| format!("groups.{g}.hostname gave {hostname:?}"))?;
            if !seen.insert(node.clone()) {
                bail!("groups.{g}.hostname: two nodes would be named {node}");
            }
            let image = lct_api::provider_image(provider, &group.image);
            specs.push(NodeSpec {
                cluster: name.clone(),
                group: g.clone(),
                name: node,
                region: group.region.clone().filter(|_| lct_api::has_regions(provider)),
                node_type: group.node_type.clone(),
                image: Some(image),
                tags: group.tags.clone(),
                user_data: None,
            });
        }
    }
    Ok(specs)
}

/// The ports of `GROUP.SERVICE` in `plan`.
fn service_ports(plan: &Plan, service: &str) -> anyhow::Result<(Name, Vec<PortSpec>)> {
    let (g, s) = service.split_once('.').context("GROUP.SERVICE")?;
    let group = plan.groups.iter().find(|(n, _)| n.as_str() == g).with_context(|| format!("no group {g}"))?;
    let svc =
        group.1.services.iter().find(|(n, _)| n.as_str() == s).with_context(|| format!("no service {service}"))?;
    Ok((group.0.clone(), svc.1.ports.clone()))
}

/// The cluster record a plan fills: domain, provider, dependencies (with the ports of the
/// services used, from the other cluster's plan), firewall declarations.
pub fn cluster_record(
    home: &Home,
    plan: &Plan,
    name: &Name,
    params: &BTreeMap<String, Value>,
    provider: ProviderName,
    existing: Cluster,
) -> anyhow::Result<Cluster> {
    let ctx = context(name, params);
    let mut record = existing;
    record.provider = provider;
    if let Some(domain) = &plan.names.domain {
        let refused = |e: lct_core::record::InvalidValue| refused("names.domain", e.to_string());
        record.domain = Some(render(domain, &ctx)?.parse().map_err(refused)?);
    } else {
        // Without a domain of its own the cluster's is NAME.PARENT: one too long to be a
        // domain name is refused here, not left to name the nodes under the parent.
        let parent = lct_core::naming::parent_domain().map_err(anyhow::Error::msg)?;
        format!("{name}.{parent}").parse::<lct_core::record::DomainName>().map_err(|e| {
            let why = "the cluster's name under the parent domain, LCT_DOMAIN";
            refused("names.domain", format!("{e} ({why}); give the plan a names.domain, or the cluster a shorter name"))
        })?;
    }
    // Only a plan that differs from the defaults says so in the record.
    let policy = plan.names.policy();
    record.names = (policy != lct_core::record::NamePolicy::default()).then_some(policy);
    record.depends_on = Vec::new();
    for (role, dep) in &plan.depends_on {
        let field = format!("depends_on.{role}.cluster");
        let other: Name = render(&dep.cluster, &ctx)?.parse().map_err(|e| refused(&field, format!("{e}")))?;
        let (_, other_plan) = load_cluster(home, &other)
            .map_err(|e| refused(&field, format!("cluster {other} has no plan here; create it first: {e:#}")))?;
        // Only what the other cluster opens to dependents becomes a rule on its nodes.
        crate::offered::check_dependency(role, dep, &format!("cluster {other}"), &other_plan)?;
        for service in &dep.services {
            let (group, ports) =
                service_ports(&other_plan, service).with_context(|| format!("depends_on.{role}: {other}"))?;
            record.depends_on.push(Dependency { cluster: other.clone(), groups: vec![group], ports });
        }
    }
    let mut spec = FirewallSpec { mode: Mode::DefaultDeny, ..Default::default() };
    for (i, admin) in plan.firewall.admin.iter().enumerate() {
        let field = format!("firewall.admin[{i}]");
        spec.admin_cidrs.push(render(admin, &ctx)?.parse().map_err(|e| refused(&field, format!("{e}")))?);
    }
    for flow in &plan.firewall.allow {
        let (group, ports) = service_ports(plan, &flow.to)?;
        let mut allow =
            Allow { from_cluster: None, from_groups: vec![], from_cidrs: vec![], to_groups: vec![group], ports };
        match flow.from.as_str() {
            "self" => {}
            // Dependents are admitted by what they declare they use (their depends_on).
            "dependents" => continue,
            f if f.starts_with("self:") => allow.from_groups = vec![f[5..].parse()?],
            f => allow.from_cidrs = vec![f.parse().map_err(|e| anyhow::anyhow!("firewall: {e}"))?],
        }
        spec.allow.push(allow);
    }
    spec.store(&mut record);
    Ok(record)
}

/// A value of the cluster record refused, with the plan's field it came from.
fn refused(field: &str, message: String) -> Refused {
    Refused { field: field.to_string(), message }
}

/// An error of [`cluster_record`] for the plan `loaded`: a refusal with its place in the
/// plan's text, as `validate` names it; any other after the plan's name.
pub fn placed(e: anyhow::Error, loaded: &Loaded) -> anyhow::Error {
    match e.downcast::<Refused>() {
        Ok(Refused { field, message }) => {
            PlanError::Invalid { file: loaded.source.clone(), field, message }.located(&loaded.text).into()
        }
        Err(e) => e.context(loaded.source.clone()),
    }
}

/// A dependency cycle is refused before anything is written.
pub(crate) fn check_no_cycle(records: &[Cluster], new: &Cluster) -> anyhow::Result<()> {
    let mut edges: BTreeMap<&Name, Vec<&Name>> = BTreeMap::new();
    for c in records.iter().filter(|c| c.name != new.name).chain([new]) {
        edges.entry(&c.name).or_default().extend(c.depends_on.iter().map(|d| &d.cluster));
    }
    let mut path = vec![&new.name];
    fn walk<'a>(edges: &BTreeMap<&'a Name, Vec<&'a Name>>, path: &mut Vec<&'a Name>) -> Option<String> {
        let last = *path.last().expect("never empty");
        for next in edges.get(last).into_iter().flatten() {
            if *next == path[0] {
                let names: Vec<String> = path.iter().chain([next]).map(|n| n.to_string()).collect();
                return Some(names.join(" -> "));
            }
            if path.contains(next) {
                continue;
            }
            path.push(next);
            if let Some(cycle) = walk(edges, path) {
                return Some(cycle);
            }
            path.pop();
        }
        None
    }
    if let Some(cycle) = walk(&edges, &mut path) {
        bail!("depends_on: a cycle of dependencies: {cycle}");
    }
    Ok(())
}

/// The volumes the plan gives its nodes: `NODE-VOLUME` (zk-1's `data` is `zk-1-data`).
pub(crate) fn volume_labels(plan: &Plan, specs: &[NodeSpec]) -> anyhow::Result<Vec<(Name, Name, u64)>> {
    let mut out = Vec::new();
    for spec in specs {
        for v in plan.groups.get(&spec.group).map(|g| g.volumes.as_slice()).unwrap_or_default() {
            let label: Name = format!("{}-{}", spec.name, v.name)
                .parse()
                .with_context(|| format!("groups.{}.volumes: {}-{}", spec.group, spec.name, v.name))?;
            let size = lct_api::parse_size_mib(&v.size).map_err(anyhow::Error::msg)?;
            out.push((label, spec.name.clone(), size));
        }
    }
    Ok(out)
}

/// The values cluster `name` offers its dependents, rendered over its nodes: the template
/// sees the parameters, `cluster`, and `nodes.GROUP`, a list (by name) of `{name, fqdn,
/// private_ipv4, public_ipv4}` (the FQDN by lct's naming rule).
pub fn offers(
    plan: &Plan,
    name: &Name,
    params: &BTreeMap<String, Value>,
    nodes: &[Node],
    records: &[Cluster],
) -> anyhow::Result<BTreeMap<String, String>> {
    let naming = lct_core::naming::Naming::new(records, lct_core::naming::parent_domain().map_err(anyhow::Error::msg)?);
    let mut groups: BTreeMap<String, Vec<Value>> = plan.groups.keys().map(|g| (g.to_string(), Vec::new())).collect();
    let mut own: Vec<&Node> = nodes.iter().filter(|n| &n.cluster == name).collect();
    own.sort_by(|a, b| a.name.cmp(&b.name));
    for n in own {
        groups.entry(n.group.to_string()).or_default().push(json!({
            "name": n.name,
            "fqdn": naming.node_fqdn(&n.cluster, &n.name),
            "private_ipv4": n.private_ipv4.first().map(|a| a.to_string()),
            "public_ipv4": n.public_ipv4.first().map(|a| a.to_string()),
        }));
    }
    let mut ctx = context(name, params);
    ctx["nodes"] = json!(groups);
    plan.offers.iter().map(|(k, t)| Ok((k.clone(), render(t, &ctx).with_context(|| format!("offers.{k}"))?))).collect()
}

/// ZooKeeper's quorum and leader-election ports: a group serving both is an ensemble.
const ZOOKEEPER_QUORUM: [u16; 2] = [2888, 3888];

/// Values a plan may have but had better not, as errors placed in its `text` (said as
/// warnings): a ZooKeeper ensemble (a group serving ports 2888 and 3888, as
/// package:zookeeper's `server`) of an even number of servers, which survives no more
/// failures than one server fewer and splits into halves that cannot elect a leader.
pub fn unwise(
    plan: &Plan,
    text: &str,
    source: &str,
    name: &Name,
    params: &BTreeMap<String, Value>,
    counts: &BTreeMap<Name, u32>,
) -> anyhow::Result<Vec<PlanError>> {
    let specs = node_specs(plan, name, params, counts, ProviderName::default())?;
    let mut found = Vec::new();
    for (g, group) in &plan.groups {
        let serves =
            |port: u16| group.services.values().flat_map(|s| &s.ports).any(|p| (p.first..=p.last).contains(&port));
        let count = specs.iter().filter(|s| &s.group == g).count();
        if ZOOKEEPER_QUORUM.iter().all(|p| serves(*p)) && count > 0 && count % 2 == 0 {
            let message = format!(
                "{count} ZooKeeper servers: a majority of {count} is {}, so they survive {} failure(s), as {} \
                 do; an odd count ({} or {}) is better",
                count / 2 + 1,
                (count - 1) / 2,
                count - 1,
                count - 1,
                count + 1
            );
            let field = format!("groups.{g}.count");
            found.push(PlanError::Invalid { file: source.to_string(), field, message }.located(text));
        }
    }
    Ok(found)
}

/// Says [`unwise`]'s findings as warnings.
pub fn warn_unwise(
    plan: &Plan,
    text: &str,
    source: &str,
    name: &Name,
    params: &BTreeMap<String, Value>,
    counts: &BTreeMap<Name, u32>,
) -> anyhow::Result<()> {
    for warning in unwise(plan, text, source, name, params, counts)? {
        tracing::warn!("{warning}");
    }
    Ok(())
}
