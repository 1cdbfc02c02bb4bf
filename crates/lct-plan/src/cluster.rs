//! Clusters made from plans and their operations: `create`, `scale`, `start`, `stop`,
//! `reconcile`, `destroy`, `diff`. Every operation converges: a re-run after any failure
//! part-way finishes the job and never makes a node twice.
//!
//! A cluster's state is `STATE/plans/NAME/`: `plan.yaml` (the copy every later operation
//! reads, no network needed), `files/` (its hook scripts), `cluster.json` (where the plan
//! came from, the parameters, group sizes, the membership its hooks last saw; 0600 since
//! parameters may be secret), `events.jsonl` and `logs/`. The provider is the source of
//! truth for which nodes exist: the difference between its nodes and the membership hooks
//! last saw is what `node-added` and `node-removed` carry. The cluster record (domain,
//! dependencies, firewall declarations) is what lct-hosts, lct-fw and lct-dns read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use lct_api::{AnyProvider, Provider};
use lct_core::fsutil::{atomic_write, atomic_write_json};
use lct_core::record::{Cluster, Dependency, Name, Node, NodeSpec, PortSpec, ProviderName, Status};
use lct_core::state::ClusterStore;
use lct_fw::model::{Allow, FirewallSpec, Mode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::hooks::{Change, Tools, fire};
use crate::plan::{Count, Event, Plan};
use crate::setting::Settings;
use crate::{PlanRef, parameters, parse};

/// What lct keeps of a cluster made from a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    pub name: Name,
    /// The reference it was made from (`package:zookeeper`, a path).
    pub source: String,
    pub provider: ProviderName,
    pub parameters: BTreeMap<String, Value>,
    /// Group sizes set by `scale`, over the plan's counts.
    #[serde(default)]
    pub counts: BTreeMap<Name, u32>,
    /// Whether the `created` event has run to its end.
    #[serde(default)]
    pub created: bool,
    /// The nodes the hooks last saw (after the last event that ended well).
    #[serde(default)]
    pub members: BTreeSet<Name>,
    /// Stopped by `lct-plan stop`.
    #[serde(default)]
    pub stopped: bool,
    /// The volumes it made (`destroy` deletes them unless kept).
    #[serde(default)]
    pub volumes: BTreeSet<Name>,
}

impl ClusterState {
    fn save(&self, state_dir: &Path) -> anyhow::Result<()> {
        Ok(atomic_write_json(&cluster_dir(state_dir, &self.name).join("cluster.json"), self)?)
    }
}

/// Where clusters made from plans keep their state.
pub fn plans_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("plans")
}

pub(crate) fn cluster_dir(state_dir: &Path, name: &Name) -> PathBuf {
    plans_dir(state_dir).join(name.as_str())
}

/// A cluster's saved plan and state.
pub fn load_cluster(state_dir: &Path, name: &Name) -> anyhow::Result<(ClusterState, Plan)> {
    let dir = cluster_dir(state_dir, name);
    let state: ClusterState = serde_json::from_slice(
        &std::fs::read(dir.join("cluster.json"))
            .with_context(|| format!("cluster {name} was not made by lct-plan here"))?,
    )
    .with_context(|| format!("{}", dir.join("cluster.json").display()))?;
    let text = std::fs::read_to_string(dir.join("plan.yaml")).context("the cluster's plan copy")?;
    let plan = parse(&text, &dir.join("plan.yaml").display().to_string())?;
    Ok((state, plan))
}

/// A cluster's saved plan copy, as loaded (its text for errors that name the place).
fn saved_plan(state_dir: &Path, name: &Name) -> anyhow::Result<crate::Loaded> {
    let path = cluster_dir(state_dir, name).join("plan.yaml");
    let text = std::fs::read_to_string(&path).context("the cluster's plan copy")?;
    let source = path.display().to_string();
    let plan = parse(&text, &source)?;
    Ok(crate::Loaded { plan, text, source, files: BTreeMap::new() })
}

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
    state_dir: &Path,
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
        record.domain = Some(render(domain, &ctx)?.parse().context("names.domain")?);
    }
    // Only a plan that differs from the defaults says so in the record.
    let policy = plan.names.policy();
    record.names = (policy != lct_core::record::NamePolicy::default()).then_some(policy);
    record.depends_on = Vec::new();
    for (role, dep) in &plan.depends_on {
        let other: Name = render(&dep.cluster, &ctx)?.parse().with_context(|| format!("depends_on.{role}.cluster"))?;
        let (_, other_plan) = load_cluster(state_dir, &other)
            .with_context(|| format!("depends_on.{role}: cluster {other} has no plan here; create it first"))?;
        // Only what the other cluster opens to dependents becomes a rule on its nodes.
        crate::offered::check_dependency(role, dep, &format!("cluster {other}"), &other_plan)?;
        for service in &dep.services {
            let (group, ports) =
                service_ports(&other_plan, service).with_context(|| format!("depends_on.{role}: {other}"))?;
            record.depends_on.push(Dependency { cluster: other.clone(), groups: vec![group], ports });
        }
    }
    let mut spec = FirewallSpec { mode: Mode::DefaultDeny, ..Default::default() };
    for admin in &plan.firewall.admin {
        spec.admin_cidrs.push(render(admin, &ctx)?.parse().map_err(|e| anyhow::anyhow!("firewall.admin: {e}"))?);
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

/// How far a plan from elsewhere is trusted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Trust {
    /// Plans by plain-HTTP URLs are taken.
    pub allow_http: bool,
    /// An unpinned remote plan's shell hooks may run.
    pub trust_hooks: bool,
}

/// Makes (or finishes making) cluster `name` from `reference`.
pub async fn create(
    state_dir: &Path,
    tools: &Tools,
    name: &Name,
    reference: &str,
    provider: ProviderName,
    sets: &Settings,
    trust: Trust,
) -> anyhow::Result<Vec<Node>> {
    let r = PlanRef::parse_with(reference, trust.allow_http)?;
    let loaded = r.load()?;
    let (plan, source) = (&loaded.plan, loaded.source.clone());
    if crate::check::runs_plan_supplied_commands(plan) && r.is_unpinned_remote() && !trust.trust_hooks {
        bail!(
            "{source}: a plan from elsewhere without a #sha256= pin runs no shell hooks, playbooks or \
             `packages` actions unless --trust-hooks is given"
        );
    }
    // Everything is read and checked before anything is written: bad input changes nothing.
    let previous = load_cluster(state_dir, name).ok();
    if let Some((old, _)) = &previous
        && old.source != source
    {
        bail!("cluster {name} was made from {}, not {source}", old.source);
    }
    sets.warn_visible_secrets(plan);
    let params = kept_parameters(plan, previous.as_ref().map(|(s, _)| s), &sets.all())?;
    crate::template::check_plan(&loaded, name.as_str(), &params)?;
    let store = ClusterStore::new(state_dir);
    let record = cluster_record(state_dir, plan, name, &params, provider, store.get_or_new(name)?)
        .with_context(|| source.clone())?;
    check_no_cycle(&store.load()?, &record)?;
    let counts = previous.as_ref().map(|(s, _)| s.counts.clone()).unwrap_or_default();
    node_specs(plan, name, &params, &counts, provider)?;
    // The provider is reachable (its settings are there) before anything is written: a
    // create refused here leaves nothing for `scale` to finish.
    let api = AnyProvider::from_env(provider)?;

    let dir = cluster_dir(state_dir, name);
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    // The plan's scripts are kept with its copy: later events need no source or network.
    for (file, body) in &loaded.files {
        let target = dir.join("files").join(file);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        atomic_write(&target, body, 0o700)?;
    }
    atomic_write(&dir.join("plan.yaml"), loaded.text.as_bytes(), 0o600)?;
    let state = match previous {
        Some((old, _)) => ClusterState { parameters: params, provider, ..old },
        None => ClusterState {
            name: name.clone(),
            source,
            provider,
            parameters: params,
            counts: BTreeMap::new(),
            created: false,
            members: BTreeSet::new(),
            stopped: false,
            volumes: BTreeSet::new(),
        },
    };
    state.save(state_dir)?;
    store.set(vec![record])?;

    // The lab's mirror gets the plan's packages first (Linode nodes reach Debian directly).
    api.provide_packages(&plan.packages).await?;
    converge(state_dir, tools, &api, name).await
}

/// The parameters' values: those given before (a re-run keeps them) unless set again, then
/// `sets`, each checked against the plan.
fn kept_parameters(
    plan: &Plan,
    previous: Option<&ClusterState>,
    sets: &[(String, String)],
) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut all: Vec<(String, String)> = Vec::new();
    for (k, v) in previous.map(|p| &p.parameters).into_iter().flatten() {
        if !sets.iter().any(|(s, _)| s == k) {
            all.push((k.clone(), v.as_str().map_or_else(|| v.to_string(), String::from)));
        }
    }
    all.extend(sets.iter().cloned());
    parameters(plan, &all).map_err(anyhow::Error::msg)
}

/// A dependency cycle is refused before anything is written.
fn check_no_cycle(records: &[Cluster], new: &Cluster) -> anyhow::Result<()> {
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

/// Makes the nodes the plan asks for and deletes the ones beyond it, waits for them, then
/// raises the events for what changed since the hooks last saw the cluster (`created` the
/// first time), and the dependency events on the clusters around it.
async fn converge(state_dir: &Path, tools: &Tools, api: &AnyProvider, name: &Name) -> anyhow::Result<Vec<Node>> {
    let (state, plan) = load_cluster(state_dir, name)?;
    let specs = node_specs(&plan, name, &state.parameters, &state.counts, state.provider)?;
    let wanted: BTreeSet<&Name> = specs.iter().map(|s| &s.name).collect();
    let existing: Vec<Node> = api.list().await?.into_iter().filter(|n| &n.cluster == name).collect();
    // Nodes beyond the plan go first (the highest numbers, as `scale` asks).
    for node in existing.iter().filter(|n| !wanted.contains(&n.name)) {
        api.delete(&node.name).await.with_context(|| format!("deleting {}", node.name))?;
    }
    let mut waiting: Vec<Node> = existing.into_iter().filter(|n| wanted.contains(&n.name)).collect();
    let missing: Vec<&NodeSpec> = specs.iter().filter(|s| !waiting.iter().any(|n| n.name == s.name)).collect();
    let bar = crate::hooks::progress();
    if !missing.is_empty() {
        bar.set_message(format!("cluster {name}: making {} node(s), then waiting until they answer", missing.len()));
    }
    // The provider's order (the local cloud: one at a time, zk-1 gets .1), bounded.
    let how = lct_api::create::CreateMany { wait_ready: false, ..Default::default() };
    let made = lct_api::create::create_many(api, missing.into_iter().cloned().collect(), how, |_| {}).await;
    let mut failures = Vec::new();
    for (spec, m) in made {
        match m {
            Ok(node) => waiting.push(node),
            Err(e) => failures.push(format!("creating {}: {e}", spec.name)),
        }
    }
    if !failures.is_empty() {
        bail!("{} of the nodes were not made (a re-run makes them): {}", failures.len(), failures.join("; "));
    }
    if !state.stopped {
        // Machines boot side by side; a node made by a run that died is waited for too.
        let ready = futures_util::future::join_all(
            waiting.into_iter().filter(|n| n.status != Status::Offline).map(|n| api.wait_ready(n)),
        )
        .await;
        let mut up = Vec::new();
        for r in ready {
            up.push(r?);
        }
        if !api.ready_answers_ssh() && !plan.hooks.is_empty() {
            wait_ssh(up).await?;
        }
    }
    bar.finish_and_clear();
    let volumes = attach_volumes(api, &plan, &specs).await?;
    if !volumes.is_subset(&state.volumes) {
        let (mut state, _) = load_cluster(state_dir, name)?;
        state.volumes.extend(volumes);
        state.save(state_dir)?;
    }
    settle(state_dir, tools, api, name).await?;
    Ok(api.list().await?.into_iter().filter(|n| &n.cluster == name).collect())
}

/// The volumes the plan gives its nodes: `NODE-VOLUME` (zk-1's `data` is `zk-1-data`).
fn volume_labels(plan: &Plan, specs: &[NodeSpec]) -> anyhow::Result<Vec<(Name, Name, u64)>> {
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

/// Every node's volumes made (once) and attached to it; a volume of a node that is gone
/// stays, detached, and comes back to it if the node does (data is never deleted by a scale).
async fn attach_volumes(api: &AnyProvider, plan: &Plan, specs: &[NodeSpec]) -> anyhow::Result<BTreeSet<Name>> {
    let wanted = volume_labels(plan, specs)?;
    let labels: BTreeSet<Name> = wanted.iter().map(|(l, _, _)| l.clone()).collect();
    if wanted.is_empty() {
        return Ok(labels);
    }
    let existing = api.volumes().await?;
    let nodes = api.list().await?;
    for (label, node, size_mib) in wanted {
        let volume = match existing.iter().find(|v| v.label == label) {
            Some(v) => v.clone(),
            None => {
                let region = nodes.iter().find(|n| n.name == node).map(|n| n.region.clone()).filter(|r| !r.is_empty());
                api.create_volume(&lct_api::VolumeSpec { label: label.clone(), size_mib, region })
                    .await
                    .with_context(|| format!("creating volume {label}"))?
            }
        };
        if volume.attached_to.as_ref() != Some(&node) {
            api.attach_volume(&label, &node).await.with_context(|| format!("attaching volume {label} to {node}"))?;
        }
    }
    Ok(labels)
}

/// Waits until every node answers SSH (with its pinned host key) and cloud-init has
/// finished: a provider's "running" comes before sshd answers (Linode), and hooks need it.
/// Retries for up to 5 minutes, then names the nodes that never answered and why.
async fn wait_ssh(nodes: Vec<Node>) -> anyhow::Result<()> {
    use lct_inventory::exec::{ExecOptions, exec_each};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let options = ExecOptions {
        timeout: Some(std::time::Duration::from_secs(120)),
        ssh_options: vec!["ConnectTimeout=5".into()],
        ..ExecOptions::default()
    };
    let mut waiting: Vec<Node> =
        nodes.into_iter().filter(|n| matches!(n.access, Some(lct_core::record::Access::Ssh { .. }))).collect();
    loop {
        // cloud-init's CLI (a Python start) only while its result is not written yet: nodes
        // the provider already waited for answer at once.
        let wait =
            format!("[ -e {} ] || cloud-init status --wait >/dev/null 2>&1; true", lct_api::cloudinit::RESULT_PATH);
        let argv = vec!["sh".to_string(), "-c".to_string(), wait];
        let jobs = waiting.iter().map(|n| (n.clone(), argv.clone(), Vec::new())).collect();
        let results = exec_each(jobs, &options, None).await;
        // Refused before any connection (a lab's address out of the lab): waiting changes nothing.
        if let Some(r) = results.iter().find(|r| matches!(r.outcome, lct_inventory::exec::Outcome::NotStarted { .. })) {
            bail!("{}", r.outcome.describe());
        }
        let failed: BTreeMap<Name, String> = results
            .into_iter()
            .filter(|r| !r.outcome.success())
            .map(|r| (r.node, r.stderr.trim().lines().last().unwrap_or_default().to_string()))
            .collect();
        waiting.retain(|n| failed.contains_key(&n.name));
        if waiting.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            let why: Vec<String> = failed.iter().map(|(n, e)| format!("{n}: {e}")).collect();
            bail!("nodes that do not answer SSH after 5 minutes: {}", why.join("; "));
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// Raises the events for what the hooks have not seen yet: `created` until it has ended
/// well, then `node-removed` and `node-added` for the difference between the provider's
/// nodes and the membership last seen; then the dependency events around the cluster.
/// Membership is saved only after the events end well, so a re-run raises them again.
pub async fn settle(state_dir: &Path, tools: &Tools, api: &AnyProvider, name: &Name) -> anyhow::Result<Change> {
    let (mut state, _) = load_cluster(state_dir, name)?;
    let current: BTreeSet<Name> =
        api.list().await?.into_iter().filter(|n| &n.cluster == name).map(|n| n.name).collect();
    let change = Change {
        added: current.difference(&state.members).cloned().collect(),
        removed: state.members.difference(&current).cloned().collect(),
    };
    if !state.created {
        fire(
            state_dir,
            tools,
            name,
            Event::Created,
            &Change { added: current.iter().cloned().collect(), removed: vec![] },
        )
        .await?;
        state.created = true;
    } else {
        if !change.removed.is_empty() {
            let only = Change { added: vec![], removed: change.removed.clone() };
            fire(state_dir, tools, name, Event::NodeRemoved, &only).await?;
        }
        if !change.added.is_empty() {
            let only = Change { added: change.added.clone(), removed: vec![] };
            fire(state_dir, tools, name, Event::NodeAdded, &only).await?;
        }
    }
    let first = state.members.is_empty() && !current.is_empty();
    state.members = current;
    state.save(state_dir)?;
    if first || !change.added.is_empty() || !change.removed.is_empty() {
        propagate(state_dir, tools, name, &change).await?;
    }
    Ok(change)
}

/// A cluster's membership changed: its dependents hear `dependency-changed` (new offered
/// values, names, addresses), the clusters it depends on `dependent-changed` (their
/// firewalls admit the new nodes).
async fn propagate(state_dir: &Path, tools: &Tools, name: &Name, change: &Change) -> anyhow::Result<()> {
    let records = ClusterStore::new(state_dir).load()?;
    let one: BTreeSet<Name> = [name.clone()].into();
    let made_here = |c: &Name| cluster_dir(state_dir, c).join("cluster.json").exists();
    for dependent in lct_core::state::dependents_of(&records, &one).into_iter().filter(made_here) {
        fire(state_dir, tools, &dependent, Event::DependencyChanged, change).await?;
    }
    for dependency in lct_core::state::dependencies_of(&records, &one).into_iter().filter(|c| c != name && made_here(c))
    {
        fire(state_dir, tools, &dependency, Event::DependentChanged, change).await?;
    }
    Ok(())
}

/// `lct-plan scale NAME GROUP N`: the group's size becomes N (kept over the plan's count);
/// nodes are made or deleted (the highest numbers first) and the events follow.
pub async fn scale(
    state_dir: &Path,
    tools: &Tools,
    name: &Name,
    group: &Name,
    count: u32,
) -> anyhow::Result<Vec<Node>> {
    let (mut state, plan) = load_cluster(state_dir, name)?;
    if !plan.groups.contains_key(group) {
        let groups: Vec<&str> = plan.groups.keys().map(Name::as_str).collect();
        bail!("cluster {name} has no group {group} (it has {})", groups.join(", "));
    }
    if state.stopped {
        bail!("cluster {name} is stopped: `lct-plan start {name}` first");
    }
    state.counts.insert(group.clone(), count);
    node_specs(&plan, name, &state.parameters, &state.counts, state.provider)?;
    state.save(state_dir)?;
    let api = AnyProvider::from_env(state.provider)?;
    converge(state_dir, tools, &api, name).await
}

/// `lct-plan stop`: `stopping` (nodes still up), the nodes stop, `stopped`.
pub async fn stop(state_dir: &Path, tools: &Tools, name: &Name) -> anyhow::Result<()> {
    let (mut state, _) = load_cluster(state_dir, name)?;
    let api = AnyProvider::from_env(state.provider)?;
    fire(state_dir, tools, name, Event::Stopping, &Change::default()).await?;
    let nodes: Vec<Node> = api.list().await?.into_iter().filter(|n| &n.cluster == name).collect();
    let stopped = futures_util::future::join_all(nodes.iter().map(|n| api.stop(&n.name))).await;
    for r in stopped {
        r?;
    }
    state.stopped = true;
    state.save(state_dir)?;
    fire(state_dir, tools, name, Event::Stopped, &Change::default()).await
}

/// `lct-plan start`: `starting`, the nodes start and are waited for, `started`; then what
/// changed while it was stopped is settled.
pub async fn start(state_dir: &Path, tools: &Tools, name: &Name) -> anyhow::Result<()> {
    let (mut state, _plan) = load_cluster(state_dir, name)?;
    let api = AnyProvider::from_env(state.provider)?;
    fire(state_dir, tools, name, Event::Starting, &Change::default()).await?;
    let nodes: Vec<Node> = api.list().await?.into_iter().filter(|n| &n.cluster == name).collect();
    let started = futures_util::future::join_all(nodes.iter().map(|n| async {
        let node = if n.status == Status::Running { n.clone() } else { api.start(&n.name).await? };
        api.wait_ready(node).await
    }))
    .await;
    let mut up = Vec::new();
    for r in started {
        up.push(r?);
    }
    if !api.ready_answers_ssh() {
        wait_ssh(up).await?;
    }
    state.stopped = false;
    state.save(state_dir)?;
    fire(state_dir, tools, name, Event::Started, &Change::default()).await?;
    settle(state_dir, tools, &api, name).await?;
    Ok(())
}

/// What `reconcile` found and did for one cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciled {
    pub cluster: Name,
    pub added: Vec<Name>,
    pub removed: Vec<Name>,
    /// Groups with fewer or more nodes than the plan asks (`lct-plan create` converges).
    pub short: Vec<String>,
    /// The built-in actions run again to repair drift.
    pub repaired: Vec<String>,
}

/// `lct-plan reconcile`: raises `node-added` / `node-removed` for what changed behind lct's
/// back (the provider is the source of truth), then runs the plan's built-in `hosts` and
/// `firewall` actions again (each converges: a node whose file or rules drifted is put
/// right, the others are left alone). Stopped clusters are left alone.
pub async fn reconcile(state_dir: &Path, tools: &Tools, name: &Name) -> anyhow::Result<Reconciled> {
    let (state, plan) = load_cluster(state_dir, name)?;
    let mut out = Reconciled { cluster: name.clone(), added: vec![], removed: vec![], short: vec![], repaired: vec![] };
    if state.stopped {
        return Ok(out);
    }
    let api = AnyProvider::from_env(state.provider)?;
    let change = settle(state_dir, tools, &api, name).await?;
    out.added = change.added;
    out.removed = change.removed;
    let specs = node_specs(&plan, name, &state.parameters, &state.counts, state.provider)?;
    let nodes: Vec<Node> = api.list().await?.into_iter().filter(|n| &n.cluster == name).collect();
    for g in plan.groups.keys() {
        let want = specs.iter().filter(|s| &s.group == g).count();
        let have = nodes.iter().filter(|n| &n.group == g).count();
        if want != have {
            out.short.push(format!("{g}: {have} of {want} nodes"));
        }
    }
    let used: BTreeSet<crate::plan::Action> = plan.hooks.values().flatten().filter_map(|h| h.action).collect();
    for action in [crate::plan::Action::Hosts, crate::plan::Action::Firewall, crate::plan::Action::Dns] {
        if used.contains(&action) {
            crate::hooks::repair(state_dir, tools, name, action).await?;
            out.repaired.push(serde_json::to_value(action)?.as_str().unwrap_or_default().to_string());
        }
    }
    Ok(out)
}

/// Every cluster made by lct-plan here.
pub fn clusters(state_dir: &Path) -> anyhow::Result<Vec<Name>> {
    let mut names = Vec::new();
    let Ok(entries) = std::fs::read_dir(plans_dir(state_dir)) else { return Ok(names) };
    for e in entries {
        let e = e?;
        if e.path().join("cluster.json").exists()
            && let Some(name) = e.file_name().to_str().and_then(|n| n.parse().ok())
        {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// What an operation would do, changing nothing: nodes made and deleted, the record's
/// changes, the events raised.
pub async fn diff(
    state_dir: &Path,
    name: &Name,
    reference: Option<&str>,
    sets: &Settings,
    counts: &[(Name, u32)],
    trust: Trust,
) -> anyhow::Result<Vec<String>> {
    let previous = load_cluster(state_dir, name).ok();
    let (loaded, provider, mut state_counts, members, created) = match (&previous, reference) {
        (_, Some(r)) => {
            let loaded = PlanRef::parse_with(r, trust.allow_http)?.load()?;
            let (provider, counts, members, created) = previous
                .as_ref()
                .map_or((ProviderName::default(), BTreeMap::new(), BTreeSet::new(), false), |(s, _)| {
                    (s.provider, s.counts.clone(), s.members.clone(), s.created)
                });
            (loaded, provider, counts, members, created)
        }
        (Some((s, _)), None) => {
            (saved_plan(state_dir, name)?, s.provider, s.counts.clone(), s.members.clone(), s.created)
        }
        (None, None) => bail!("cluster {name} was not made by lct-plan here: give a plan to compare with"),
    };
    let plan = loaded.plan.clone();
    let source = loaded.source.clone();
    sets.warn_visible_secrets(&plan);
    let params = kept_parameters(&plan, previous.as_ref().map(|(s, _)| s), &sets.all())?;
    crate::template::check_plan(&loaded, name.as_str(), &params)?;
    for (g, n) in counts {
        if !plan.groups.contains_key(g) {
            bail!("cluster {name} has no group {g}");
        }
        state_counts.insert(g.clone(), *n);
    }
    let specs = node_specs(&plan, name, &params, &state_counts, provider)?;
    let api = AnyProvider::from_env(provider)?;
    let existing: Vec<Node> = api.list().await?.into_iter().filter(|n| &n.cluster == name).collect();
    let mut lines = Vec::new();
    let wanted: BTreeSet<&Name> = specs.iter().map(|s| &s.name).collect();
    for n in existing.iter().filter(|n| !wanted.contains(&n.name)) {
        lines.push(format!("- node {} (group {})", n.name, n.group));
    }
    for s in specs.iter().filter(|s| !existing.iter().any(|n| n.name == s.name)) {
        lines.push(format!("+ node {} (group {}, image {})", s.name, s.group, s.image.as_deref().unwrap_or("-")));
    }
    let store = ClusterStore::new(state_dir);
    let old = store.get_or_new(name)?;
    let new = cluster_record(state_dir, &plan, name, &params, provider, old.clone()).context(source)?;
    let (a, b) = (serde_json::to_value(&old)?, serde_json::to_value(&new)?);
    for key in ["domain", "depends_on", "names", "firewall", "provider"] {
        if a.get(key) != b.get(key) {
            lines.push(format!(
                "~ record {key}: {} -> {}",
                a.get(key).unwrap_or(&Value::Null),
                b.get(key).unwrap_or(&Value::Null)
            ));
        }
    }
    let after: BTreeSet<Name> = specs.iter().map(|s| s.name.clone()).collect();
    if !created {
        lines.push("event created".into());
    } else {
        if members.difference(&after).next().is_some() {
            lines.push("event node-removed".into());
        }
        if after.difference(&members).next().is_some() {
            lines.push("event node-added".into());
        }
    }
    Ok(lines)
}

/// Deletes a cluster's nodes, its record and its state after its `destroying` hooks;
/// refused while other clusters depend on it, unless `force`. The clusters it depended on
/// hear `dependent-changed` (their firewalls stop admitting it).
pub async fn destroy(
    state_dir: &Path,
    tools: &Tools,
    name: &Name,
    force: bool,
    keep_volumes: bool,
) -> anyhow::Result<()> {
    let (state, plan) = load_cluster(state_dir, name)?;
    let store = ClusterStore::new(state_dir);
    let records = store.load()?;
    let dependents: Vec<String> = records
        .iter()
        .filter(|c| c.depends_on.iter().any(|d| &d.cluster == name))
        .map(|c| c.name.to_string())
        .collect();
    if !dependents.is_empty() && !force {
        bail!("cluster {name} is used by {}: destroy them first, or give --force", dependents.join(", "));
    }
    let dependencies = lct_core::state::dependencies_of(&records, &[name.clone()].into());
    if !state.stopped
        && let Err(e) = fire(state_dir, tools, name, Event::Destroying, &Change::default()).await
        && !force
    {
        return Err(e.context("the destroying hooks failed; --force destroys anyway"));
    }
    let api = AnyProvider::from_env(state.provider)?;
    let nodes: Vec<Node> = api.list().await?.into_iter().filter(|n| &n.cluster == name).collect();
    let removed: Vec<Name> = nodes.iter().map(|n| n.name.clone()).collect();
    for node in nodes {
        api.delete(&node.name).await.with_context(|| format!("deleting {}", node.name))?;
    }
    // The volumes it made go too, unless kept.
    if !keep_volumes {
        for v in api.volumes().await?.into_iter().filter(|v| state.volumes.contains(&v.label)) {
            if v.attached_to.is_some() {
                api.detach_volume(&v.label).await.with_context(|| format!("detaching volume {}", v.label))?;
            }
            api.delete_volume(&v.label).await.with_context(|| format!("deleting volume {}", v.label))?;
        }
    }
    store.remove(std::slice::from_ref(name))?;
    std::fs::remove_dir_all(cluster_dir(state_dir, name))?;
    // Its names leave the DNS servers it was published on.
    if plan.hooks.values().flatten().any(|h| h.action == Some(crate::plan::Action::Dns)) {
        crate::hooks::update_dns(state_dir, &store.load()?).await?;
    }
    let change = Change { added: vec![], removed };
    for dependency in dependencies.into_iter().filter(|c| c != name) {
        if cluster_dir(state_dir, &dependency).join("cluster.json").exists() {
            fire(state_dir, tools, &dependency, Event::DependentChanged, &change).await?;
        }
    }
    Ok(())
}
