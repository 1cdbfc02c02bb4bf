//! Clusters made from plans and their operations: `create`, `scale`, `start`, `stop`,
//! `reconcile`, `destroy` (`diff` apart). Every operation converges: a re-run
//! after any failure part-way finishes the job and never makes a node twice.
//!
//! An operation loads its cluster once ([`Context`], kept as [`crate::state`] says) and
//! hands it to the events it raises. The provider is the source of truth for which nodes
//! exist: the difference between its nodes and the membership hooks last saw is what
//! `node-added` and `node-removed` carry. The cluster record (domain, dependencies,
//! firewall declarations) is what lct-hosts, lct-fw and lct-dns read.

use anyhow::{Context as _, bail};
use lct_api::{AnyProvider, Provider};
use lct_core::record::{Name, Node, NodeSpec, ProviderName, Status};
use lct_core::store::Expect;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

use crate::hooks::{fire, progress};
use crate::labhome::LabHome;
use crate::plan::{Event, Plan};
use crate::records::PlanReconciled;
use crate::setting::Settings;
use crate::spec::{check_no_cycle, cluster_record, node_specs, placed, volume_labels, warn_unwise};
use crate::state::{Change, ClusterLock, ClusterState, Context, Home, Tools, clusters, find_cluster, lock};
use crate::suggest::did_you_mean;
use crate::{PlanRef, parameters};

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
    home: &Home,
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
    check_trust(&r, &loaded, trust)?;
    // One operation on a cluster at a time (others proceed); a second fails naming this one.
    let lock = lock(home, name, "create")?;
    // Everything is read and checked before anything is written: bad input changes nothing.
    let previous = find_cluster(home, name)?;
    if let Some((old, _)) = &previous
        && old.source != source
    {
        bail!("cluster {name} was made from {}, not {source}", old.source);
    }
    if let Some((old, _)) = &previous {
        old.check_lab_home()?;
    }
    sets.warn_visible_secrets(plan);
    let params = kept_parameters(plan, previous.as_ref().map(|(s, _)| s), &sets.all())?;
    crate::template::check_plan(&loaded, name.as_str(), &params)?;
    let store = home.records();
    let record =
        cluster_record(home, plan, name, &params, provider, store.get_or_new(name)?).map_err(|e| placed(e, &loaded))?;
    check_no_cycle(&store.load()?, &record)?;
    let counts = previous.as_ref().map(|(s, _)| s.counts.clone()).unwrap_or_default();
    node_specs(plan, name, &params, &counts, provider)?;
    warn_unwise(plan, &loaded.text, &loaded.source, name, &params, &counts)?;
    // The provider is reachable (its settings are there) before anything is written: a
    // create refused here leaves nothing for `scale` to finish.
    let api = AnyProvider::from_env(provider)?;
    // Groups made from lct images: found, checked and made ready before anything is written.
    let images = crate::images::resolve(home, tools, name, &loaded, provider)?;
    crate::images::prepare(&api, &images).await.with_context(|| source.clone())?;

    // The plan's scripts are kept with its copy: later events need no source or network.
    crate::state::save_plan(home, name, &loaded, &*lock)?;
    // A new cluster's state is made, never written over one another controller made.
    let expect = if previous.is_none() { Expect::Absent } else { Expect::Any };
    // A local-cloud cluster belongs to this machine's lab (checked above for one made before).
    let lab_home = if provider == ProviderName::Local { Some(LabHome::here()?) } else { None };
    let state = match previous {
        Some((old, _)) => ClusterState { parameters: params, provider, images, lab_home, ..old },
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
            images,
            lab_home,
        },
    };
    state.save(home, &*lock, expect)?;
    store.set(vec![record])?;
    let mut ctx = Context::new(home, tools, state, loaded.clone()).under(&lock);

    // The lab's mirror gets the plan's packages first (Linode nodes reach Debian directly);
    // nodes made from lct images have them (a bake installed them).
    if plan.groups.keys().any(|g| !ctx.state.images.contains_key(g)) {
        api.provide_packages(&plan.packages).await?;
    }
    converge(&mut ctx, &api, true).await
}

/// A plan from elsewhere without a pin runs none of its own commands unless trusted.
pub(crate) fn check_trust(r: &PlanRef, loaded: &crate::Loaded, trust: Trust) -> anyhow::Result<()> {
    if crate::check::runs_plan_supplied_commands(&loaded.plan) && r.is_unpinned_remote() && !trust.trust_hooks {
        bail!(
            "{}: a plan from elsewhere without a #sha256= pin runs no shell hooks, playbooks or \
             `packages` actions unless --trust-hooks is given",
            loaded.source
        );
    }
    Ok(())
}

/// The parameters' values: those given before (a re-run keeps them) unless set again, then
/// `sets`, each checked against the plan.
pub(crate) fn kept_parameters(
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

/// Makes the nodes the plan asks for and deletes the ones beyond it, waits for them, then
/// raises the events for what changed since the hooks last saw the cluster (`created` the
/// first time), and the dependency events on the clusters around it.
/// `prepared`: the groups' lct images were made ready already (`create` does it before
/// writing anything); else they are before a node is made.
async fn converge(ctx: &mut Context, api: &AnyProvider, prepared: bool) -> anyhow::Result<Vec<Node>> {
    converge_groups(ctx, api, prepared, None).await
}

/// [`converge`], or with `only`, the nodes of those groups made (none deleted): what
/// `reconcile` does for groups that replace lost nodes.
async fn converge_groups(
    ctx: &mut Context,
    api: &AnyProvider,
    prepared: bool,
    only: Option<&BTreeSet<Name>>,
) -> anyhow::Result<Vec<Node>> {
    let (name, state, plan) = (&ctx.state.name.clone(), &ctx.state, &ctx.plan);
    let mut specs = node_specs(plan, name, &state.parameters, &state.counts, state.provider)?;
    specs.retain(|s| only.is_none_or(|groups| groups.contains(&s.group)));
    for spec in &mut specs {
        if let Some(image) = state.images.get(&spec.group) {
            spec.image = Some(image.clone());
        }
    }
    let wanted: BTreeSet<&Name> = specs.iter().map(|s| &s.name).collect();
    let existing: Vec<Node> = api.list().await?.into_iter().filter(|n| &n.cluster == name).collect();
    // Nodes beyond the plan go first (the highest numbers, as `scale` asks), after
    // `node-removing` while they still run (a member leaves its ensemble before its node
    // goes); a failing hook deletes nothing, and a re-run raises it again. Only a plan that
    // has hooks for it hears it (the others' event logs stay as they were).
    let leaving: Vec<Name> = existing
        .iter()
        .filter(|n| only.is_none() && !wanted.contains(&n.name) && state.created && state.members.contains(&n.name))
        .map(|n| n.name.clone())
        .collect();
    if !leaving.is_empty() && plan.hooks.contains_key(&Event::NodeRemoving) {
        fire(ctx, Event::NodeRemoving, &Change { added: vec![], removed: leaving }).await?;
    }
    ctx.check_held("changing the cluster's nodes")?;
    for node in existing.iter().filter(|n| only.is_none() && !wanted.contains(&n.name)) {
        api.delete(&node.name).await.with_context(|| format!("deleting {}", node.name))?;
    }
    let mut waiting: Vec<Node> = existing.into_iter().filter(|n| wanted.contains(&n.name)).collect();
    let missing: Vec<&NodeSpec> = specs.iter().filter(|s| !waiting.iter().any(|n| n.name == s.name)).collect();
    if !prepared {
        let used = state.images.iter().filter(|(g, _)| missing.iter().any(|s| &&s.group == g));
        crate::images::prepare(api, &used.map(|(g, i)| (g.clone(), i.clone())).collect()).await?;
    }
    let bar = progress();
    if !missing.is_empty() {
        bar.set_message(format!("cluster {name}: making {} node(s), then waiting until they answer", missing.len()));
    }
    // The provider's order (the local cloud: one at a time, zk-1 gets .1), bounded.
    ctx.check_held("making the cluster's nodes")?;
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
        bail!(
            "{} of the nodes were not made (a re-run makes the missing ones once the cause named here is fixed): {}",
            failures.len(),
            failures.join("; ")
        );
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
    let volumes = attach_volumes(api, plan, &specs).await?;
    if !volumes.is_subset(&state.volumes) {
        ctx.state.volumes.extend(volumes);
        ctx.save()?;
    }
    settle(ctx, api).await?;
    Ok(api.list().await?.into_iter().filter(|n| &n.cluster == name).collect())
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
pub(crate) async fn wait_ssh(nodes: Vec<Node>) -> anyhow::Result<()> {
    use lct_inventory::exec::{ExecOptions, exec_each};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let options = ExecOptions {
        timeout: Some(std::time::Duration::from_secs(120)),
        ssh_options: vec!["ConnectTimeout=5".into()],
        ..ExecOptions::new()?
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
pub async fn settle(ctx: &mut Context, api: &AnyProvider) -> anyhow::Result<Change> {
    let name = &ctx.state.name.clone();
    let current: BTreeSet<Name> =
        api.list().await?.into_iter().filter(|n| &n.cluster == name).map(|n| n.name).collect();
    let change = Change {
        added: current.difference(&ctx.state.members).cloned().collect(),
        removed: ctx.state.members.difference(&current).cloned().collect(),
    };
    if !ctx.state.created {
        fire(ctx, Event::Created, &Change { added: current.iter().cloned().collect(), removed: vec![] }).await?;
        ctx.state.created = true;
    } else {
        if !change.removed.is_empty() {
            let only = Change { added: vec![], removed: change.removed.clone() };
            fire(ctx, Event::NodeRemoved, &only).await?;
        }
        if !change.added.is_empty() {
            let only = Change { added: change.added.clone(), removed: vec![] };
            fire(ctx, Event::NodeAdded, &only).await?;
        }
    }
    let first = ctx.state.members.is_empty() && !current.is_empty();
    ctx.state.members = current;
    ctx.save()?;
    if first || !change.added.is_empty() || !change.removed.is_empty() {
        propagate(ctx, &change).await?;
    }
    Ok(change)
}

/// A cluster's membership changed: its dependents hear `dependency-changed` (new offered
/// values, names, addresses), the clusters it depends on `dependent-changed` (their
/// firewalls admit the new nodes).
async fn propagate(ctx: &Context, change: &Change) -> anyhow::Result<()> {
    let name = ctx.name();
    let records = ctx.store.load()?;
    let one: BTreeSet<Name> = [name.clone()].into();
    let made_here = |c: &Name| ctx.home.made_here(c).unwrap_or(false);
    for dependent in lct_core::state::dependents_of(&records, &one).into_iter().filter(made_here) {
        fire(&ctx.other(&dependent)?, Event::DependencyChanged, change).await?;
    }
    for dependency in lct_core::state::dependencies_of(&records, &one).into_iter().filter(|c| c != name && made_here(c))
    {
        fire(&ctx.other(&dependency)?, Event::DependentChanged, change).await?;
    }
    Ok(())
}

/// `lct-plan scale NAME GROUP N`: the group's size becomes N (kept over the plan's count);
/// nodes are made or deleted (the highest numbers first) and the events follow.
pub async fn scale(home: &Home, tools: &Tools, name: &Name, group: &Name, count: u32) -> anyhow::Result<Vec<Node>> {
    let lock = lock(home, name, "scale")?;
    let mut ctx = Context::load(home, tools, name)?.under(&lock);
    let (state, plan) = (&mut ctx.state, &ctx.plan);
    if !plan.groups.contains_key(group) {
        let groups: Vec<&str> = plan.groups.keys().map(Name::as_str).collect();
        let close = did_you_mean(group.as_str(), groups.iter().copied());
        bail!("cluster {name} has no group {group} (it has {}){close}", groups.join(", "));
    }
    if state.stopped {
        bail!("cluster {name} is stopped: `lct-plan start {name}` first");
    }
    state.counts.insert(group.clone(), count);
    node_specs(plan, name, &state.parameters, &state.counts, state.provider)?;
    warn_unwise(plan, &ctx.text, &state.source, name, &state.parameters, &state.counts)?;
    ctx.save()?;
    let api = AnyProvider::from_env(ctx.state.provider)?;
    converge(&mut ctx, &api, false).await
}

/// `lct-plan stop`: `stopping` (nodes still up), the nodes stop, `stopped`.
pub async fn stop(home: &Home, tools: &Tools, name: &Name) -> anyhow::Result<()> {
    let lock = lock(home, name, "stop")?;
    let mut ctx = Context::load(home, tools, name)?.under(&lock);
    let api = AnyProvider::from_env(ctx.state.provider)?;
    fire(&ctx, Event::Stopping, &Change::default()).await?;
    let nodes: Vec<Node> = api.list().await?.into_iter().filter(|n| &n.cluster == name).collect();
    ctx.check_held("stopping the cluster's nodes")?;
    let stopped = futures_util::future::join_all(nodes.iter().map(|n| api.stop(&n.name))).await;
    for r in stopped {
        r?;
    }
    ctx.state.stopped = true;
    ctx.save()?;
    fire(&ctx, Event::Stopped, &Change::default()).await
}

/// `lct-plan start`: `starting`, the nodes start and are waited for, `started`; then what
/// changed while it was stopped is settled.
pub async fn start(home: &Home, tools: &Tools, name: &Name) -> anyhow::Result<()> {
    let lock = lock(home, name, "start")?;
    let mut ctx = Context::load(home, tools, name)?.under(&lock);
    let api = AnyProvider::from_env(ctx.state.provider)?;
    fire(&ctx, Event::Starting, &Change::default()).await?;
    let nodes: Vec<Node> = api.list().await?.into_iter().filter(|n| &n.cluster == name).collect();
    ctx.check_held("starting the cluster's nodes")?;
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
    ctx.state.stopped = false;
    ctx.save()?;
    fire(&ctx, Event::Started, &Change::default()).await?;
    settle(&mut ctx, &api).await?;
    Ok(())
}

/// `lct-plan reconcile`: raises `node-added` / `node-removed` for what changed behind lct's
/// back (the provider is the source of truth), makes the lost nodes of groups with
/// `replace_lost` again (their `node-added` follows), then runs the plan's built-in
/// `mesh-sync` (also for a cluster with a mesh member), `hosts`, `firewall` and `dns` actions again (each converges: a node whose file or rules drifted is put
/// right, the others are left alone). With `replace`, groups short of the plan are made
/// whole again as `create` would (the lost nodes made anew: `node-added`), after the lost
/// ones' `node-removed`. Stopped clusters are left alone.
pub async fn reconcile(home: &Home, tools: &Tools, name: &Name, replace: bool) -> anyhow::Result<PlanReconciled> {
    let lock = lock(home, name, "reconcile")?;
    reconcile_locked(home, tools, name, replace, &lock).await
}

/// [`reconcile`] for a caller that holds cluster `name`'s lock already (`--watch` reads what
/// it wrote before letting the lock go); its writes are fenced by `lock`.
pub(crate) async fn reconcile_locked(
    home: &Home,
    tools: &Tools,
    name: &Name,
    replace: bool,
    lock: &ClusterLock,
) -> anyhow::Result<PlanReconciled> {
    let mut ctx = Context::load(home, tools, name)?.under(lock);
    let mut out =
        PlanReconciled { cluster: name.clone(), added: vec![], removed: vec![], short: vec![], repaired: vec![] };
    if ctx.state.stopped {
        return Ok(out);
    }
    let api = AnyProvider::from_env(ctx.state.provider)?;
    let change = settle(&mut ctx, &api).await?;
    out.added = change.added;
    out.removed = change.removed;
    if replace {
        let before = ctx.state.members.clone();
        converge(&mut ctx, &api, false).await?;
        out.added.extend(ctx.state.members.difference(&before).cloned());
    }
    let (state, plan) = (&ctx.state, &ctx.plan);
    let specs = node_specs(plan, name, &state.parameters, &state.counts, state.provider)?;
    let mut nodes: Vec<Node> = api.list().await?.into_iter().filter(|n| &n.cluster == name).collect();
    // Groups that replace lost nodes get them back under their names (`node-added` follows).
    let lost: Vec<&NodeSpec> = specs
        .iter()
        .filter(|s| plan.groups.get(&s.group).is_some_and(|g| g.replace_lost))
        .filter(|s| !nodes.iter().any(|n| n.name == s.name))
        .collect();
    if !lost.is_empty() {
        let groups: BTreeSet<Name> = lost.iter().map(|s| s.group.clone()).collect();
        let names: Vec<Name> = lost.iter().map(|s| s.name.clone()).collect();
        converge_groups(&mut ctx, &api, false, Some(&groups)).await?;
        out.added.extend(names);
        nodes = api.list().await?.into_iter().filter(|n| &n.cluster == name).collect();
    }
    let plan = &ctx.plan;
    for g in plan.groups.keys() {
        let want = specs.iter().filter(|s| &s.group == g).count();
        let have = nodes.iter().filter(|n| &n.group == g).count();
        if want != have {
            out.short.push(format!("{g}: {have} of {want} nodes"));
        }
    }
    let used: BTreeSet<crate::plan::Action> = plan.hooks.values().flatten().filter_map(|h| h.action).collect();
    // A cluster with a member in the mesh has its mesh kept too (a leader deleted behind
    // lct's back is replaced, its firewalls pushed), before the names that follow it; only
    // a plan that names mesh-sync grows the mesh to its dependencies and dependents.
    let members = lct_mesh::addresses(home.store.as_ref())?;
    if !used.contains(&crate::plan::Action::MeshSync) && nodes.iter().any(|n| members.contains_key(&n.name)) {
        crate::actions::resync_mesh(&ctx).await?;
        out.repaired.push("mesh-sync".to_string());
    }
    let order = [
        crate::plan::Action::MeshSync,
        crate::plan::Action::Hosts,
        crate::plan::Action::Firewall,
        crate::plan::Action::Dns,
    ];
    for action in order {
        if used.contains(&action) {
            crate::actions::repair(&ctx, action).await?;
            out.repaired.push(serde_json::to_value(action)?.as_str().unwrap_or_default().to_string());
        }
    }
    Ok(out)
}

/// `lct-plan reconcile` over the named clusters, or every cluster made here: each on its
/// own (one failing stops no other), `each` told how it went; the error counts the failures.
pub async fn reconcile_all(
    home: &Home,
    tools: &Tools,
    names: &[Name],
    replace: bool,
    mut each: impl FnMut(&Name, anyhow::Result<PlanReconciled>),
) -> anyhow::Result<()> {
    let names = if names.is_empty() { clusters(home)? } else { names.to_vec() };
    let mut failed = 0;
    for name in &names {
        let result = reconcile(home, tools, name, replace).await;
        failed += usize::from(result.is_err());
        each(name, result);
    }
    if failed > 0 {
        bail!("{failed} of {} clusters failed to reconcile", names.len());
    }
    Ok(())
}

/// Deletes a cluster's nodes, its record and its state after its `destroying` hooks;
/// refused while other clusters depend on it, unless `force`. The clusters it depended on
/// hear `dependent-changed` (their firewalls stop admitting it).
pub async fn destroy(home: &Home, tools: &Tools, name: &Name, force: bool, keep_volumes: bool) -> anyhow::Result<()> {
    let lock = lock(home, name, "destroy")?;
    let ctx = Context::load(home, tools, name)?.under(&lock);
    let (state, plan, store) = (&ctx.state, &ctx.plan, &ctx.store);
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
        && let Err(e) = fire(&ctx, Event::Destroying, &Change::default()).await
        && !force
    {
        return Err(e.context("the destroying hooks failed; --force destroys anyway"));
    }
    let api = AnyProvider::from_env(state.provider)?;
    let nodes: Vec<Node> = api.list().await?.into_iter().filter(|n| &n.cluster == name).collect();
    let removed: Vec<Name> = nodes.iter().map(|n| n.name.clone()).collect();
    ctx.check_held("deleting the cluster's nodes")?;
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
    // Fenced: a destroy that lost its lock meanwhile deletes nothing another holder made.
    home.store.commit(&ctx.fenced(lct_core::store::Txn::new().delete_prefix(&crate::state::cluster_prefix(name))))?;
    // This machine's hook logs of it go too.
    match std::fs::remove_dir_all(home.dir.join("plans").join(name.as_str())) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    // Its names leave the DNS servers it was published on.
    if plan.hooks.values().flatten().any(|h| h.action == Some(crate::plan::Action::Dns)) {
        crate::actions::update_dns(home, &store.load()?).await?;
    }
    let change = Change { added: vec![], removed };
    for dependency in dependencies.into_iter().filter(|c| c != name) {
        if home.made_here(&dependency)? {
            fire(&ctx.other(&dependency)?, Event::DependentChanged, &change).await?;
        }
    }
    Ok(())
}
