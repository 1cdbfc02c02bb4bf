//! `lct-plan bake NAME PLAN`: a plan's image-time work done once, on one node, and kept as
//! an image that every node of cluster NAME can be made from (`image: baked`).
//!
//! One bake per plan: the bake node stands for the first group whose image is `baked` (else
//! the first group) and starts from the provider's Debian. On it: lct's node-side programs
//! (`install`), the plan's packages, then the `baked` event's hooks (downloads). Then the
//! disk is generalized on the node ([`crate::generalize`]), the node stopped, its disk
//! captured by the provider and added to the repository as `PLAN-<hash12>`
//! ([`crate::recipe`]), after a check that none of the plan's secrets is on it. The node and
//! the capture go whatever happens. An entry the repository holds already is reused: no node.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, bail};
use lct_api::disk_image::DiskCapture;
use lct_api::{AnyProvider, Provider};
use lct_core::record::{Name, Node, NodeSpec, ProviderName};
use lct_inventory::exec::{ExecOptions, exec_each};
use serde_json::Value;

use crate::actions::run_action;
use crate::cluster::{Trust, check_trust, wait_ssh};
use crate::hooks::{fire, progress};
use crate::images::{base_image, programs, save_bake};
use crate::plan::{Action, Event};
use crate::recipe::{bake_hash, entry_name, plan_name, recipe};
use crate::records::{PlanBakeStep, PlanBaked};
use crate::setting::Settings;
use crate::state::{ClusterState, Context, Home, Tools};
use crate::{PlanRef, parameters};

/// Where the bake's image goes.
pub struct BakeTo<'a> {
    pub repo: &'a Path,
    pub provider: ProviderName,
}

/// Says a step: a spinner's message on a terminal, a `plan-bake-step` line otherwise.
struct Steps {
    name: Name,
    started: Instant,
    bar: indicatif::ProgressBar,
}

impl Steps {
    fn say(&self, step: &str) {
        if self.bar.is_hidden() {
            let at_ms = self.started.elapsed().as_millis() as u64;
            let line = PlanBakeStep { name: self.name.clone(), step: step.to_string(), at_ms };
            eprintln!("{}", lct_core::stream::to_line(&line));
        } else {
            self.bar.set_message(format!("bake {}: {step}", self.name));
        }
    }
}

/// Bakes plan `reference` for cluster `name` into `to.repo`, or finds it baked already.
pub async fn bake(
    home: &Home,
    tools: &Tools,
    name: &Name,
    reference: &str,
    sets: &Settings,
    to: BakeTo<'_>,
    trust: Trust,
) -> anyhow::Result<PlanBaked> {
    let started = Instant::now();
    let r = PlanRef::parse_with(reference, trust.allow_http)?;
    let loaded = r.load()?;
    check_trust(&r, &loaded, trust)?;
    let plan = &loaded.plan;
    sets.warn_visible_secrets(plan);
    let params = parameters(plan, &sets.all()).map_err(anyhow::Error::msg).context(loaded.source.clone())?;
    crate::template::check_plan(&loaded, name.as_str(), &params)?;
    let group = plan.bake_group().clone();
    let base = base_image(plan, &group, to.provider)?;
    let recipe = recipe(&loaded, &base, &programs(tools)?);
    let hash = bake_hash(&recipe, plan, &sets.all());
    let entry = entry_name(&plan_name(&loaded.source), &hash);
    let repo = lct_image::repo::Repo::init(to.repo).with_context(|| format!("repository {}", to.repo.display()))?;
    let repo_text = to.repo.display().to_string();
    let mut baked = PlanBaked {
        name: name.clone(),
        plan: loaded.source.clone(),
        image: format!("{repo_text}::{entry}"),
        entry: entry.clone(),
        repo: repo_text,
        hash,
        recipe,
        base_image: base.clone(),
        created: now(),
        disk_size: 0,
        arch: std::env::consts::ARCH.to_string(),
        reused: true,
        new_bytes: 0,
        took_ms: 0,
    };
    // Nothing changed since a bake made it: no node.
    if let Ok(found) = repo.show(&entry) {
        baked.created = found.created;
        baked.disk_size = found.size;
        baked.took_ms = started.elapsed().as_millis() as u64;
        save_bake(home, &baked)?;
        return Ok(baked);
    }

    let cluster: Name =
        format!("{name}-bake").parse().map_err(|e| anyhow::anyhow!("{name}-bake (the bake node's name): {e}"))?;
    let api = AnyProvider::from_env(to.provider)?;
    if api.list().await?.iter().any(|n| n.name == cluster) {
        bail!("a node named {cluster} exists already: a bake of {name} is under way, or died (delete the node)");
    }
    // The bake node's own cluster, in memory: hooks get the plan, its files and parameters.
    let state = ClusterState {
        name: cluster.clone(),
        source: loaded.source.clone(),
        provider: to.provider,
        parameters: params.clone(),
        counts: Default::default(),
        created: false,
        members: Default::default(),
        stopped: false,
        volumes: Default::default(),
        images: Default::default(),
        lab_home: None,
    };
    // The bake node's cluster is locked as any other's: its files and events are fenced.
    let lock = crate::state::lock(home, &cluster, "bake")?;
    let ctx = Context::new(home, tools, state, loaded.clone()).under(&lock);
    // Its plan's files for the hooks, kept as a cluster's are while the bake runs.
    crate::state::save_plan(home, &cluster, &loaded, &*lock)?;
    let logs = ctx.logs();
    let spec = NodeSpec {
        cluster: cluster.clone(),
        group,
        name: cluster.clone(),
        region: plan.groups.values().find_map(|g| g.region.clone()).filter(|_| lct_api::has_regions(to.provider)),
        node_type: plan.groups.values().find_map(|g| g.node_type.clone()),
        image: Some(base),
        tags: vec!["lct-bake".into()],
        user_data: None,
    };
    let steps = Steps { name: name.clone(), started, bar: progress() };
    let secrets: Vec<String> = params
        .iter()
        .filter(|(k, _)| plan.parameters.get(*k).is_some_and(|p| p.secret || p.generate))
        .map(|(_, v)| text(v))
        .collect();
    let made = on_node(&ctx, &api, &spec, &steps, &repo, &entry, &secrets).await;
    steps.say("deleting the bake node");
    let released = api.release_capture(&cluster).await;
    let deleted = api.delete(&cluster).await;
    steps.bar.finish_and_clear();
    let added = made.with_context(|| format!("baking {name} (the hooks' logs: {})", logs.display()))?;
    released.with_context(|| format!("releasing the capture of {cluster}"))?;
    deleted.with_context(|| format!("deleting the bake node {cluster}"))?;
    home.store
        .commit(&ctx.fenced(lct_core::store::Txn::new().delete_prefix(&crate::state::cluster_prefix(&cluster))))?;
    match std::fs::remove_dir_all(home.dir.join("plans").join(cluster.as_str())) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    baked.reused = false;
    baked.disk_size = added.size;
    baked.new_bytes = added.new_bytes;
    baked.took_ms = started.elapsed().as_millis() as u64;
    save_bake(home, &baked)?;
    Ok(baked)
}

/// `lct-plan create --bake`: the plan's image baked first if the repository lacks it (reused,
/// no node, when it has it), said on standard error (a `plan-baked` line, or a sentence on a
/// terminal); a plan without an `image: baked` group is refused before anything is made.
pub async fn bake_for_create(
    home: &Home,
    tools: &Tools,
    name: &Name,
    reference: &str,
    sets: &Settings,
    to: BakeTo<'_>,
    trust: Trust,
) -> anyhow::Result<PlanBaked> {
    let loaded = PlanRef::parse_with(reference, trust.allow_http)?.load()?;
    if !loaded.plan.groups.values().any(|g| g.image == "baked") {
        bail!("--bake: no group of {} has `image: baked` (a group's image names what to bake for)", loaded.source);
    }
    let baked = bake(home, tools, name, reference, sets, to, trust).await?;
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let how = if baked.reused { "reused" } else { "baked" };
        eprintln!("cluster {name}: image {} {how} in {:.1} s", baked.image, baked.took_ms as f64 / 1000.0);
    } else {
        eprintln!("{}", lct_core::stream::to_line(&baked));
    }
    Ok(baked)
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), String::from)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The bake node's life up to its disk in the repository (the caller deletes it).
async fn on_node(
    ctx: &Context,
    api: &AnyProvider,
    spec: &NodeSpec,
    steps: &Steps,
    repo: &lct_image::repo::Repo,
    entry: &str,
    secrets: &[String],
) -> anyhow::Result<lct_image::repo::Added> {
    let plan = &ctx.plan;
    steps.say("the plan's packages to the provider");
    api.provide_packages(&plan.packages).await?;
    steps.say("making the bake node");
    let node = api.create(spec).await.with_context(|| format!("creating {}", spec.name))?;
    let node = api.wait_ready(node).await?;
    if !api.ready_answers_ssh() {
        wait_ssh(vec![node.clone()]).await?;
    }
    let only = [node.name.clone()];
    let records = ctx.store.load()?;
    steps.say("installing lct's node-side programs");
    run_action(ctx, Action::Install, &records, Some(&only)).await.context("installing lct's programs")?;
    if !plan.packages.is_empty() {
        steps.say("installing the plan's packages");
        run_action(ctx, Action::Packages, &records, Some(&only)).await.context("installing the plan's packages")?;
    }
    steps.say("the baked event's hooks");
    let change = crate::state::Change { added: only.to_vec(), removed: vec![] };
    fire(ctx, Event::Baked, &change).await?;
    steps.say("generalizing the disk");
    generalize(&node).await?;
    steps.say("stopping the bake node");
    api.stop(&node.name).await.with_context(|| format!("stopping {}", node.name))?;
    steps.say("capturing the disk");
    let capture = api.capture_disk(&node.name).await.with_context(|| format!("capturing {}'s disk", node.name))?;
    let local_bin = lct_api::disk_image::lct_image_program()?;
    // The disk as a raw file here, or imaged on the node into the repository's tmp/.
    let mut imaged = None;
    let source = match capture {
        DiskCapture::Here(path) => {
            let (scanned, values) = (path.clone(), secrets.to_vec());
            let found = tokio::task::spawn_blocking(move || crate::generalize::secrets_in(&scanned, &values))
                .await?
                .with_context(|| format!("reading {}", path.display()))?;
            refuse_secrets(ctx, secrets, &found)?;
            path
        }
        DiskCapture::OnNode { device } => {
            let node = api.list().await?.into_iter().find(|n| n.name == node.name).context("the bake node is gone")?;
            secrets_on_node(&node, &device, secrets).await?;
            let tmp = repo.path().join("tmp");
            let image = lct_core::fsutil::temp_file_in(&tmp, "bake.", ".lcti")?.into_temp_path();
            let path = image.to_path_buf();
            lct_image::volume::image_device_on(node, device, path.clone(), Default::default(), local_bin.clone())
                .await?;
            imaged = Some(image);
            path
        }
    };
    steps.say("adding the disk to the repository");
    let nothing = |_: u64, _: u64| {};
    let added = lct_image::any::repo_add(repo, &source, entry, Default::default(), local_bin, &nothing, &nothing)
        .await
        .with_context(|| format!("adding {} to {}", source.display(), repo.path().display()))?;
    drop(imaged);
    Ok(added)
}

/// A secret on the disk stops the bake; the error names the parameters, never the values.
fn refuse_secrets(ctx: &Context, secrets: &[String], found: &[usize]) -> anyhow::Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = ctx
        .state
        .parameters
        .iter()
        .filter(|(_, v)| found.iter().any(|i| secrets.get(*i).is_some_and(|s| *s == text(v))))
        .map(|(k, _)| k.as_str())
        .collect();
    bail!(
        "the bake node's disk holds the value of secret parameter(s) {} (a baked hook wrote it): \
         it would be in every node made from the image; nothing was added",
        names.join(", ")
    )
}

/// The same check on a node's device: the values go on grep's standard input, never its
/// command line.
async fn secrets_on_node(node: &Node, device: &str, secrets: &[String]) -> anyhow::Result<()> {
    let long: Vec<&String> = secrets.iter().filter(|s| s.len() >= 8).collect();
    if long.is_empty() {
        return Ok(());
    }
    let input: String = long.iter().map(|s| format!("{s}\n")).collect();
    let argv: Vec<String> = ["grep", "-qaFf", "-", "--", device].map(String::from).to_vec();
    let jobs = vec![(node.clone(), argv, input.into_bytes())];
    for r in exec_each(jobs, &ExecOptions::new()?, None).await {
        match r.outcome {
            lct_inventory::exec::Outcome::Exited { code: 1 } => {}
            lct_inventory::exec::Outcome::Exited { code: 0 } => {
                bail!("the bake node's disk holds the value of a secret parameter: nothing was added")
            }
            _ => bail!("node {}: looking for secrets on {device}: {}", r.node, r.outcome.describe()),
        }
    }
    Ok(())
}

/// Generalizes the bake node ([`crate::generalize::GENERALIZE`], no argument).
async fn generalize(node: &Node) -> anyhow::Result<()> {
    let argv: Vec<String> =
        vec!["sh".into(), "-c".into(), crate::generalize::GENERALIZE.into(), "lct-generalize".into()];
    let jobs = vec![(node.clone(), argv, Vec::new())];
    for r in exec_each(jobs, &ExecOptions::new()?, None).await {
        if !r.outcome.success() || !r.stdout.contains("generalized") {
            bail!("generalizing {}: {}: {}", r.node, r.outcome.describe(), r.stderr.trim());
        }
    }
    Ok(())
}
