//! Clusters made from plans: `create` (converging: a re-run after any failure part-way
//! finishes the job and never makes a node twice), `status`, `destroy`, and the built-in
//! actions the `created` event runs.
//!
//! A cluster's state is `STATE/plans/NAME/`: `plan.yaml` (the copy every later operation
//! reads, no network needed), `cluster.json` (where the plan came from, the parameters; 0600
//! since parameters may be secret) and `events.jsonl` (what ran, when, how it ended). The
//! provider is the source of truth for which nodes exist; the cluster record (domain,
//! dependencies, firewall declarations) is what lct-hosts, lct-fw and lct-dns read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use lct_api::{AnyProvider, Provider};
use lct_core::fsutil::{atomic_write, atomic_write_json};
use lct_core::record::{Cluster, Dependency, Name, Node, NodeSpec, PortSpec, ProviderName};
use lct_core::state::ClusterStore;
use lct_fw::model::{Allow, FirewallSpec, Mode};
use lct_inventory::exec::ExecOptions;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::plan::{Action, Count, Event, Plan};
use crate::{PlanRef, parameters, parse};

/// What lct keeps of a cluster made from a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    pub name: Name,
    /// The reference it was made from (`package:zookeeper`, a path).
    pub source: String,
    pub provider: ProviderName,
    pub parameters: BTreeMap<String, Value>,
}

/// Where clusters made from plans keep their state.
pub fn plans_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("plans")
}

fn cluster_dir(state_dir: &Path, name: &Name) -> PathBuf {
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

/// The template context: the parameters, the cluster's name, and `admin_cidr` (the network
/// that reaches SSH: `LCT_ADMIN_CIDR`, else the local cloud's outside namespace), which a
/// parameter of that name overrides.
fn context(name: &Name, params: &BTreeMap<String, Value>) -> Value {
    let mut ctx = serde_json::Map::new();
    let admin =
        std::env::var("LCT_ADMIN_CIDR").ok().filter(|a| !a.is_empty()).unwrap_or_else(|| "203.0.113.254/32".into());
    ctx.insert("admin_cidr".into(), json!(admin));
    for (k, v) in params {
        ctx.insert(k.clone(), v.clone());
    }
    ctx.insert("cluster".into(), json!(name));
    Value::Object(ctx)
}

fn render(template: &str, ctx: &Value) -> anyhow::Result<String> {
    let env = minijinja::Environment::new();
    Ok(env.render_str(template, ctx)?)
}

/// The nodes a plan asks for: every group's count of nodes, named by its template.
pub fn node_specs(
    plan: &Plan,
    name: &Name,
    params: &BTreeMap<String, Value>,
    provider: ProviderName,
) -> anyhow::Result<Vec<NodeSpec>> {
    let ctx = context(name, params);
    let mut specs = Vec::new();
    let mut seen = BTreeSet::new();
    for (g, group) in &plan.groups {
        let count: u32 = match &group.count {
            Count::Fixed(n) => *n,
            Count::Template(t) => {
                render(t, &ctx)?.trim().parse().with_context(|| format!("groups.{g}.count: {t:?}"))?
            }
        };
        for index in 1..=count {
            let mut c = ctx.clone();
            c["group"] = json!(g);
            c["index"] = json!(index);
            let hostname = render(&group.hostname, &c)?;
            let node: Name = hostname.parse().with_context(|| format!("groups.{g}.hostname gave {hostname:?}"))?;
            if !seen.insert(node.clone()) {
                bail!("groups.{g}.hostname: two nodes would be named {node}");
            }
            let image = match (provider, group.image.as_str()) {
                (ProviderName::Linode, "debian-12") => "linode/debian12".to_string(),
                (_, image) => image.to_string(),
            };
            specs.push(NodeSpec {
                cluster: name.clone(),
                group: g.clone(),
                name: node,
                region: group.region.clone().filter(|_| provider == ProviderName::Linode),
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
    record.depends_on = Vec::new();
    for (role, dep) in &plan.depends_on {
        let other: Name = render(&dep.cluster, &ctx)?.parse().with_context(|| format!("depends_on.{role}.cluster"))?;
        let (_, other_plan) = load_cluster(state_dir, &other)
            .with_context(|| format!("depends_on.{role}: cluster {other} has no plan here; create it first"))?;
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

/// Appends an event to the cluster's log.
fn log_event(state_dir: &Path, name: &Name, event: Event, outcome: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let path = cluster_dir(state_dir, name).join("events.jsonl");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let line = json!({ "kind": "plan-event", "v": 1, "cluster": name, "event": event, "at": now, "outcome": outcome });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| path.display().to_string())?;
    writeln!(f, "{line}")?;
    Ok(())
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
    name: &Name,
    reference: &str,
    provider: ProviderName,
    sets: &[(String, String)],
    bin_dir: &Path,
    trust: Trust,
) -> anyhow::Result<Vec<Node>> {
    let r = PlanRef::parse_with(reference, trust.allow_http)?;
    let (plan, text, source) = r.load()?;
    let shell_hooks = plan.hooks.values().flatten().any(|h| h.script.is_some() || h.playbook.is_some());
    if shell_hooks && r.is_unpinned_remote() && !trust.trust_hooks {
        bail!(
            "{source}: a plan from elsewhere without a #sha256= pin runs no shell hooks unless --trust-hooks is given"
        );
    }
    if plan.hooks.values().flatten().any(|h| h.playbook.is_some()) {
        bail!("{source}: playbook hooks are not run by this build yet (scripts and built-in actions are)");
    }
    let scripts: Vec<&String> = plan.hooks.values().flatten().filter_map(|h| h.script.as_ref()).collect();
    let plan_dir = match &r {
        PlanRef::Path(p) => Some(Path::new(p).parent().unwrap_or(Path::new(".")).to_path_buf()),
        _ if scripts.is_empty() => None,
        _ => bail!("{source}: script hooks of plans by URL or packaged plans are not run by this build yet"),
    };
    // Everything is read and checked before anything is written: bad input changes nothing.
    let mut script_bodies = Vec::new();
    if let Some(plan_dir) = &plan_dir {
        for script in &scripts {
            let body = std::fs::read(plan_dir.join(script)).with_context(|| format!("hook script {script}"))?;
            script_bodies.push((script.to_string(), body));
        }
    }
    // A re-run keeps the parameters given before, unless set again.
    let previous = load_cluster(state_dir, name).ok();
    let mut all_sets: Vec<(String, String)> = Vec::new();
    if let Some((old, _)) = &previous {
        if old.source != source {
            bail!("cluster {name} was made from {}, not {source}", old.source);
        }
        for (k, v) in &old.parameters {
            if !sets.iter().any(|(s, _)| s == k) {
                all_sets.push((k.clone(), v.as_str().map_or_else(|| v.to_string(), String::from)));
            }
        }
    }
    all_sets.extend(sets.iter().cloned());
    let params = parameters(&plan, &all_sets).map_err(anyhow::Error::msg)?;
    let store = ClusterStore::new(state_dir);
    let record = cluster_record(state_dir, &plan, name, &params, provider, store.get_or_new(name)?)?;

    let dir = cluster_dir(state_dir, name);
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    // The plan's scripts are kept with its copy: later events need no source directory.
    for (script, body) in &script_bodies {
        let target = dir.join("files").join(script);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        atomic_write(&target, body, 0o600)?;
    }
    atomic_write(&dir.join("plan.yaml"), text.as_bytes(), 0o600)?;
    let state = ClusterState { name: name.clone(), source, provider, parameters: params.clone() };
    atomic_write_json(&dir.join("cluster.json"), &state)?;
    store.set(vec![record])?;

    let api = AnyProvider::from_env(provider)?;
    // The lab's mirror gets the plan's packages first (Linode nodes reach Debian directly).
    if let AnyProvider::Local(local) = &api
        && !plan.packages.is_empty()
    {
        local.images().add_packages(&plan.packages)?;
    }
    let specs = node_specs(&plan, name, &params, provider)?;
    let existing: BTreeSet<Name> =
        api.list().await?.into_iter().filter(|n| &n.cluster == name).map(|n| n.name).collect();
    let mut created = Vec::new();
    for spec in &specs {
        if existing.contains(&spec.name) {
            continue;
        }
        created.push(api.create(spec).await.with_context(|| format!("creating {}", spec.name))?);
    }
    // Machines boot side by side.
    let ready = futures_util::future::join_all(created.into_iter().map(|n| api.wait_ready(n))).await;
    for r in ready {
        r?;
    }
    let outcome = run_actions(state_dir, &plan, name, Event::Created, bin_dir).await;
    log_event(state_dir, name, Event::Created, if outcome.is_ok() { "ok" } else { "failed" })?;
    outcome?;
    Ok(api.list().await?.into_iter().filter(|n| &n.cluster == name).collect())
}

/// The built-in actions of `event`, in the declared order; the first failure stops them.
pub async fn run_actions(
    state_dir: &Path,
    plan: &Plan,
    name: &Name,
    event: Event,
    bin_dir: &Path,
) -> anyhow::Result<()> {
    let store = ClusterStore::new(state_dir);
    for hook in plan.hooks.get(&event).into_iter().flatten() {
        let records = store.load()?;
        if let Some(script) = &hook.script {
            run_script(state_dir, plan, name, event, script, &hook.on, &records).await?;
            continue;
        }
        let Some(action) = hook.action else { continue };
        let selector = lct_inventory::Selector { clusters: vec![name.clone()], ..Default::default() };
        let options = ExecOptions::default();
        match action {
            Action::Install => {
                let nodes = lct_inventory::query(&selector, &records).await?;
                let programs = lct_inventory::install::Program::beside(bin_dir)?;
                for r in lct_inventory::install::install(&nodes, &programs, &options).await {
                    if !r.outcome.success() {
                        bail!("action install: node {}: {}: {}", r.node, r.outcome.describe(), r.stderr.trim());
                    }
                }
            }
            Action::Hosts => {
                let nodes = lct_inventory::query(&lct_inventory::Selector::default(), &records).await?;
                // This cluster's block, and its dependencies' blocks, reach its nodes (and
                // its dependents').
                let mut selected: BTreeSet<Name> = [name.clone()].into();
                selected.extend(lct_core::state::dependencies_of(&records, &selected));
                let push_plan = lct_hosts::plan(&nodes, &records, &selected, &lct_hosts::RenderOptions::default())?;
                for r in
                    lct_hosts::push(push_plan, "/etc/hosts", &bin_dir.join("lct-hosts"), "lct-hosts", &options).await
                {
                    if let Some(e) = r.error {
                        bail!("action hosts: node {}: {e}", r.node);
                    }
                }
            }
            Action::Firewall => {
                let nodes = lct_inventory::query(&lct_inventory::Selector::default(), &records).await?;
                let fw = lct_fw::push::PushOptions {
                    force: false,
                    full: false,
                    kill_established: true,
                    backend: lct_fw::sync::Backend::Nft,
                    parallel: 32,
                    timeout: std::time::Duration::from_secs(60),
                    local_bin: bin_dir.join("lct-fw").display().to_string(),
                    remote_bin: "lct-fw".into(),
                };
                let reports = lct_fw::push::push(&nodes, &records, &[name.clone()].into(), &fw).await?;
                let failed = lct_fw::push::failures(&reports);
                if !failed.is_empty() {
                    bail!("action firewall: {}", failed.join(", "));
                }
            }
            Action::Packages => {
                let nodes = lct_inventory::query(&selector, &records).await?;
                let packages = plan.packages.join(" ");
                let script = format!(
                    "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq {packages} >/dev/null"
                );
                let jobs = nodes
                    .iter()
                    .filter(|n| matches!(n.access, Some(lct_core::record::Access::Ssh { .. })))
                    .map(|n| (n.clone(), vec!["sh".to_string(), "-c".to_string(), script.clone()], Vec::new()))
                    .collect();
                for r in lct_inventory::exec::exec_each(jobs, &options, None).await {
                    if !r.outcome.success() {
                        bail!("action packages: node {}: {}: {}", r.node, r.outcome.describe(), r.stderr.trim());
                    }
                }
            }
            Action::Dns => bail!("action dns is not run by this build yet"),
        }
    }
    Ok(())
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

/// `LCT_OFFER_ROLE_NAME` for every value the clusters `plan` depends on offer.
fn offered_env(
    state_dir: &Path,
    plan: &Plan,
    name: &Name,
    params: &BTreeMap<String, Value>,
    nodes: &[Node],
    records: &[Cluster],
) -> anyhow::Result<Vec<(String, String)>> {
    let ctx = context(name, params);
    let mut env = Vec::new();
    for (role, dep) in &plan.depends_on {
        let other: Name = render(&dep.cluster, &ctx)?.parse()?;
        let (other_state, other_plan) = load_cluster(state_dir, &other)?;
        for (key, value) in offers(&other_plan, &other, &other_state.parameters, nodes, records)? {
            let var = format!("LCT_OFFER_{}_{}", role, key).to_ascii_uppercase().replace('-', "_");
            env.push((var, value));
        }
    }
    Ok(env)
}

/// Runs a hook's script: on every node of the `on` groups over SSH (or in its namespace), or
/// on the controller when `on` is empty. Its standard input is the node records of the
/// cluster and the clusters it depends on (JSON lines), after a `plan-secrets` line with the
/// secret parameters (never in an environment or a command line, so in no process list);
/// the other parameters are `LCT_PARAM_NAME`, with `LCT_EVENT` and `LCT_CLUSTER`. Its output
/// is kept per hook, event and node under the cluster's `logs/`.
async fn run_script(
    state_dir: &Path,
    plan: &Plan,
    name: &Name,
    event: Event,
    script: &str,
    on: &[Name],
    records: &[Cluster],
) -> anyhow::Result<()> {
    let dir = cluster_dir(state_dir, name);
    let text =
        std::fs::read_to_string(dir.join("files").join(script)).with_context(|| format!("hook script {script}"))?;
    let (state, _) = load_cluster(state_dir, name)?;
    let event_name = serde_json::to_value(event)?.as_str().unwrap_or_default().to_string();
    let mut env: Vec<(String, String)> =
        vec![("LCT_EVENT".into(), event_name.clone()), ("LCT_CLUSTER".into(), name.to_string())];
    let mut secrets = serde_json::Map::new();
    for (k, v) in &state.parameters {
        let value = v.as_str().map_or_else(|| v.to_string(), String::from);
        if plan.parameters.get(k).is_some_and(|p| p.secret) {
            secrets.insert(k.clone(), json!(value));
        } else {
            env.push((format!("LCT_PARAM_{}", k.to_ascii_uppercase()), value));
        }
    }
    let mut wanted: BTreeSet<Name> = [name.clone()].into();
    wanted.extend(lct_core::state::dependencies_of(records, &wanted));
    let selector = lct_inventory::Selector { clusters: wanted.into_iter().collect(), ..Default::default() };
    let nodes = lct_inventory::query(&selector, records).await?;
    env.extend(offered_env(state_dir, plan, name, &state.parameters, &nodes, records)?);
    let mut input = json!({ "kind": "plan-secrets", "v": 1, "cluster": name, "parameters": secrets }).to_string();
    input.push('\n');
    for n in &nodes {
        input.push_str(&lct_core::stream::to_line(n));
        input.push('\n');
    }
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log_name = |node: &str| logs.join(format!("{event_name}.{}.{node}.log", script.replace('/', "_")));
    let mut argv = vec!["env".to_string()];
    argv.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    argv.extend(["sh".into(), "-c".into(), text, format!("lct-hook {script}")]);
    if on.is_empty() {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        let _ = stdin.write_all(input.as_bytes()).await;
        drop(stdin);
        let out = child.wait_with_output().await?;
        let mut log = out.stdout.clone();
        log.extend_from_slice(&out.stderr);
        std::fs::write(log_name("controller"), log)?;
        if !out.status.success() {
            bail!(
                "hook {script} on the controller: exit {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        return Ok(());
    }
    let jobs = nodes
        .iter()
        .filter(|n| &n.cluster == name && on.contains(&n.group))
        .map(|n| (n.clone(), argv.clone(), input.clone().into_bytes()))
        .collect();
    let mut failed = Vec::new();
    for r in lct_inventory::exec::exec_each(jobs, &ExecOptions::default(), None).await {
        std::fs::write(log_name(r.node.as_str()), format!("{}{}", r.stdout, r.stderr))?;
        if !r.outcome.success() {
            failed.push(format!(
                "node {}: {}: {}",
                r.node,
                r.outcome.describe(),
                r.stderr.trim().lines().last().unwrap_or_default()
            ));
        }
    }
    if !failed.is_empty() {
        bail!("hook {script}: {}", failed.join("; "));
    }
    Ok(())
}

/// Deletes a cluster's nodes, its record and its state; refused while other clusters
/// depend on it, unless `force`.
pub async fn destroy(state_dir: &Path, name: &Name, force: bool) -> anyhow::Result<()> {
    let (state, _plan) = load_cluster(state_dir, name)?;
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
    let api = AnyProvider::from_env(state.provider)?;
    for node in api.list().await?.into_iter().filter(|n| &n.cluster == name) {
        api.delete(&node.name).await.with_context(|| format!("deleting {}", node.name))?;
    }
    store.remove(std::slice::from_ref(name))?;
    std::fs::remove_dir_all(cluster_dir(state_dir, name))?;
    Ok(())
}
