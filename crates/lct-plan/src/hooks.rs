//! Events and their hooks: built-in actions (hosts, firewall, install, packages), scripts
//! on the controller or on every node of a group, Ansible playbooks; what every hook is
//! given (the event, the inventory, the offered values, the parameters, secrets only on
//! standard input); the event log and each hook's output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, bail};
use lct_core::record::{Access, Cluster, Name, Node};
use lct_core::state::ClusterStore;
use lct_inventory::exec::ExecOptions;
use serde_json::{Value, json};

use crate::cluster::{ClusterState, cluster_dir, context, load_cluster, render};
use crate::plan::{Action, Event, Hook, Plan};
use crate::records::{HookRun, PlanEvent, PlanSecrets};

/// What changed, for `node-added` and `node-removed` hooks (`LCT_NODES_ADDED`,
/// `LCT_NODES_REMOVED`, comma-separated).
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub added: Vec<Name>,
    pub removed: Vec<Name>,
}

/// Where lct's own programs are (the controller side of `install`, `hosts`, `firewall`).
#[derive(Debug, Clone)]
pub struct Tools {
    pub bin_dir: std::path::PathBuf,
}

/// Raises `event` on cluster `name`: its hooks run in the declared order and the first
/// failure stops them, naming hook, node and exit status. The event, how it ended and the
/// hooks that ran go to the cluster's `events.jsonl`.
pub async fn fire(state_dir: &Path, tools: &Tools, name: &Name, event: Event, change: &Change) -> anyhow::Result<()> {
    let (state, plan) = load_cluster(state_dir, name)?;
    let started = std::time::Instant::now();
    let mut ran = Vec::new();
    let mut outcome = Ok(());
    let bar = progress();
    for (i, hook) in plan.hooks.get(&event).into_iter().flatten().enumerate() {
        let label = hook_label(hook, i);
        bar.set_message(format!("cluster {name}, {event}: {label}"));
        let result = run_hook(state_dir, tools, &state, &plan, event, hook, &label, change).await;
        ran.push(HookRun { hook: label.clone(), ok: result.is_ok() });
        if let Err(e) = result {
            outcome = Err(e.context(format!("cluster {name}, event {event}, hook {label}")));
            break;
        }
    }
    bar.finish_and_clear();
    if !plan.hooks.get(&event).is_none_or(Vec::is_empty) && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let how = if outcome.is_ok() { "ok" } else { "failed" };
        eprintln!("cluster {name}, {event}: {how} in {:.1} s", started.elapsed().as_secs_f64());
    }
    let error = outcome.as_ref().err().map(|e| format!("{e:#}"));
    log_event(state_dir, name, event, &ran, error.as_deref(), started.elapsed(), change)?;
    outcome
}

/// A spinner naming the hook at work, on a terminal only (cron and pipes see nothing).
pub fn progress() -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").expect("a valid template"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// A hook's name in logs: `action hosts`, `script configure.py`, `run #2`, `playbook site.yml`.
fn hook_label(hook: &Hook, index: usize) -> String {
    match (&hook.action, &hook.script, &hook.run, &hook.playbook) {
        (Some(a), ..) => format!("action {}", action_name(*a)),
        (_, Some(s), ..) => format!("script {s}"),
        (_, _, Some(_), _) => format!("run #{}", index + 1),
        (.., Some(p)) => format!("playbook {p}"),
        _ => format!("hook #{}", index + 1),
    }
}

/// Appends an event to the cluster's log (no parameter values: secrets never reach it).
fn log_event(
    state_dir: &Path,
    name: &Name,
    event: Event,
    hooks: &[HookRun],
    error: Option<&str>,
    took: std::time::Duration,
    change: &Change,
) -> anyhow::Result<()> {
    use std::io::Write;
    let path = cluster_dir(state_dir, name).join("events.jsonl");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let line = PlanEvent {
        cluster: name.clone(),
        event,
        at: now,
        outcome: if error.is_none() { "ok" } else { "failed" }.into(),
        took_ms: took.as_millis() as u64,
        hooks: hooks.to_vec(),
        error: error.map(String::from),
        added: change.added.clone(),
        removed: change.removed.clone(),
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| path.display().to_string())?;
    writeln!(f, "{}", lct_core::stream::to_line(&line))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_hook(
    state_dir: &Path,
    tools: &Tools,
    state: &ClusterState,
    plan: &Plan,
    event: Event,
    hook: &Hook,
    label: &str,
    change: &Change,
) -> anyhow::Result<()> {
    let records = ClusterStore::new(state_dir).load()?;
    if let Some(action) = hook.action {
        // Programs and packages go to the new nodes only when nodes were added.
        let only = (event == Event::NodeAdded).then_some(change.added.as_slice());
        return run_action(state_dir, tools, plan, &state.name, action, &records, only).await;
    }
    let given = Given::gather(state_dir, state, plan, event, change, &records).await?;
    let logs = cluster_dir(state_dir, &state.name).join("logs");
    std::fs::create_dir_all(&logs)?;
    let file_label = label.replace([' ', '/', '#'], "_");
    let log_path = |node: &str| logs.join(format!("{event}.{file_label}.{node}.log"));
    if let Some(playbook) = &hook.playbook {
        return run_playbook(state_dir, tools, state, plan, playbook, &given, &log_path("controller")).await;
    }
    let text = match (&hook.script, &hook.run) {
        (Some(script), _) => std::fs::read_to_string(cluster_dir(state_dir, &state.name).join("files").join(script))
            .with_context(|| format!("hook script {script}"))?,
        (_, Some(text)) => text.clone(),
        _ => bail!("a hook without action, script, run or playbook"),
    };
    run_script(&state.name, &text, &hook.on, &given, &log_path).await
}

/// Runs one built-in action outside an event (`reconcile` repairing drift).
pub async fn repair(state_dir: &Path, tools: &Tools, name: &Name, action: Action) -> anyhow::Result<()> {
    let (_, plan) = load_cluster(state_dir, name)?;
    let records = ClusterStore::new(state_dir).load()?;
    run_action(state_dir, tools, &plan, name, action, &records, None)
        .await
        .with_context(|| format!("cluster {name}: action {}", action_name(action)))
}

fn action_name(action: Action) -> String {
    serde_json::to_value(action).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// A built-in action; `install` and `packages` only on `only`, when given.
async fn run_action(
    state_dir: &Path,
    tools: &Tools,
    plan: &Plan,
    name: &Name,
    action: Action,
    records: &[Cluster],
    only: Option<&[Name]>,
) -> anyhow::Result<()> {
    let selector = lct_inventory::Selector { clusters: vec![name.clone()], ..Default::default() };
    let own = || async {
        let nodes = lct_inventory::query(&selector, records).await?;
        anyhow::Ok(nodes.into_iter().filter(|n| only.is_none_or(|o| o.contains(&n.name))).collect::<Vec<Node>>())
    };
    let options = ExecOptions::default();
    match action {
        Action::Install => {
            let nodes = own().await?;
            let programs = lct_inventory::install::Program::beside(&tools.bin_dir)?;
            for r in lct_inventory::install::install(&nodes, &programs, &options).await {
                if !r.outcome.success() {
                    bail!("node {}: {}: {}", r.node, r.outcome.describe(), r.stderr.trim());
                }
            }
        }
        Action::Hosts => {
            let nodes = lct_inventory::query(&lct_inventory::Selector::default(), records).await?;
            // This cluster's block and its dependencies' blocks reach its nodes and its
            // dependents' nodes.
            let mut selected: BTreeSet<Name> = [name.clone()].into();
            selected.extend(lct_core::state::dependencies_of(records, &selected));
            let push_plan = lct_hosts::plan(&nodes, records, &selected, &lct_hosts::RenderOptions::default())?;
            let local = tools.bin_dir.join("lct-hosts");
            for r in lct_hosts::push(push_plan, "/etc/hosts", &local, "lct-hosts", &options).await {
                if let Some(e) = r.error {
                    bail!("node {}: {e}", r.node);
                }
            }
        }
        Action::Firewall => {
            let nodes = lct_inventory::query(&lct_inventory::Selector::default(), records).await?;
            let fw = lct_fw::push::PushOptions {
                force: false,
                full: false,
                kill_established: true,
                backend: lct_fw::sync::Backend::Nft,
                parallel: 32,
                timeout: std::time::Duration::from_secs(60),
                local_bin: tools.bin_dir.join("lct-fw").display().to_string(),
                remote_bin: "lct-fw".into(),
            };
            let reports = lct_fw::push::push(&nodes, records, &[name.clone()].into(), &fw).await?;
            let failed = lct_fw::push::failures(&reports);
            if !failed.is_empty() {
                bail!("{}", failed.join(", "));
            }
        }
        Action::Packages => {
            let nodes = own().await?;
            // The packages are arguments of the script ("$@", after apt-get's `--`), never
            // part of its text: a name can be neither a shell word nor an option (and each
            // passed Debian's grammar at validate).
            let mut argv: Vec<String> = ["sh", "-c", INSTALL_PACKAGES, "lct-packages"].map(String::from).to_vec();
            argv.extend(plan.packages.iter().cloned());
            let jobs = nodes
                .iter()
                .filter(|n| matches!(n.access, Some(Access::Ssh { .. })))
                .map(|n| (n.clone(), argv.clone(), Vec::new()))
                .collect();
            for r in lct_inventory::exec::exec_each(jobs, &options, None).await {
                if !r.outcome.success() {
                    bail!("node {}: {}: {}", r.node, r.outcome.describe(), r.stderr.trim());
                }
            }
        }
        Action::Dns => update_dns(state_dir, records).await?,
    }
    Ok(())
}

/// Installs the packages given as its arguments. Servers get what they need, not what is
/// recommended (no desktop fonts for a JRE). Tried three times: a mirror changing while a
/// node reads it (the lab's, when another plan adds packages; Debian's, on a push) fails
/// one run of apt, not the next one, which reads the index again.
const INSTALL_PACKAGES: &str = r#"export DEBIAN_FRONTEND=noninteractive
for try in 1 2 3; do
  apt-get update -qq && apt-get install -y -qq --no-install-recommends -- "$@" >/dev/null && exit 0
  [ $try = 3 ] || sleep $try
done
exit 100"#;

/// Brings every DNS server made by a plan here (package:dns-private) in line with the
/// whole inventory: `lct-dns update` runs on the server's node, where its key is (the key
/// never leaves it), and sends the difference as signed updates.
pub async fn update_dns(state_dir: &Path, records: &[Cluster]) -> anyhow::Result<()> {
    let options = ExecOptions::default();
    let all = lct_inventory::query(&lct_inventory::Selector::default(), records).await?;
    let input: String = all.iter().map(|n| lct_core::stream::to_line(n) + "\n").collect();
    for (server, offered) in dns_servers(state_dir, &all, records)? {
        let (Some(at), Some(address), Some(ns), Some(domain)) =
            (offered.get("update_node"), offered.get("server"), offered.get("dns_ns"), offered.get("domain"))
        else {
            bail!("cluster {server} offers update_node but not server, dns_ns and domain");
        };
        // Only a node of the offering cluster: a plan cannot send lct-dns to another's node.
        let Some(node) = all.iter().find(|n| n.name.as_str() == at && n.cluster == server) else {
            // Its node is gone: reconcile and create put it back; nothing to update.
            continue;
        };
        // The update runs on the server's node, where the key is: it never leaves it. The
        // offered values are plan output: each is glued to its option (`--domain=VALUE`), so
        // none can be read as an option of its own.
        let argv: Vec<String> = vec![
            "lct-dns".into(),
            "update".into(),
            format!("--server={address}:53"),
            "--key-file=/etc/lct/lct-update.key".into(),
            format!("--domain={domain}"),
            format!("--parent-domain={domain}"),
            format!("--ns={ns}"),
            "--output=jsonl".into(),
        ];
        let jobs = vec![(node.clone(), argv, input.clone().into_bytes())];
        for r in lct_inventory::exec::exec_each(jobs, &options, None).await {
            if !r.outcome.success() {
                bail!(
                    "lct-dns update on {} (cluster {server}): {}: {}",
                    r.node,
                    r.outcome.describe(),
                    last_line(&r.stderr)
                );
            }
        }
    }
    Ok(())
}

/// The DNS servers made by plans here (clusters whose plan offers `update_node`, as
/// package:dns-private does), with what they offer.
fn dns_servers(
    state_dir: &Path,
    nodes: &[Node],
    records: &[Cluster],
) -> anyhow::Result<Vec<(Name, BTreeMap<String, String>)>> {
    let mut servers = Vec::new();
    for name in crate::cluster::clusters(state_dir)? {
        let (state, plan) = load_cluster(state_dir, &name)?;
        if plan.offers.contains_key("update_node") && nodes.iter().any(|n| n.cluster == name) {
            let offered = offers(&plan, &name, &state.parameters, nodes, records)?;
            servers.push((name, offered));
        }
    }
    Ok(servers)
}

/// What a script or playbook is given.
struct Given {
    /// `LCT_EVENT`, `LCT_CLUSTER`, `LCT_PARAM_*`, `LCT_OFFER_*`, `LCT_NODES_ADDED`, ...
    env: Vec<(String, String)>,
    /// The `plan-secrets` record: secret parameters, by name.
    secrets: PlanSecrets,
    /// The node records of the cluster and the clusters it depends on (and its dependents').
    nodes: Vec<Node>,
}

impl Given {
    async fn gather(
        state_dir: &Path,
        state: &ClusterState,
        plan: &Plan,
        event: Event,
        change: &Change,
        records: &[Cluster],
    ) -> anyhow::Result<Given> {
        let name = &state.name;
        let mut env: Vec<(String, String)> =
            vec![("LCT_EVENT".into(), event.to_string()), ("LCT_CLUSTER".into(), name.to_string())];
        let join = |names: &[Name]| names.iter().map(Name::to_string).collect::<Vec<_>>().join(",");
        env.push(("LCT_NODES_ADDED".into(), join(&change.added)));
        env.push(("LCT_NODES_REMOVED".into(), join(&change.removed)));
        // What the plan says it downloads (one place: the hook takes URL and pin from here).
        for (i, d) in plan.downloads.iter().enumerate() {
            env.push((format!("LCT_DOWNLOAD_{}_URL", i + 1), d.url.clone()));
            env.push((format!("LCT_DOWNLOAD_{}_SHA256", i + 1), d.sha256.clone()));
        }
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
        wanted.extend(lct_core::state::dependents_of(records, &[name.clone()].into()));
        let selector = lct_inventory::Selector { clusters: wanted.into_iter().collect(), ..Default::default() };
        let nodes = lct_inventory::query(&selector, records).await?;
        env.extend(offered_env(state_dir, plan, name, &state.parameters, &nodes, records)?);
        let secrets = PlanSecrets { cluster: name.clone(), parameters: secrets };
        Ok(Given { env, secrets, nodes })
    }

    /// Standard input: the secrets line, then the node records.
    fn input(&self) -> Vec<u8> {
        let mut input = lct_core::stream::to_line(&self.secrets);
        input.push('\n');
        input.push_str(&self.inventory());
        input.into_bytes()
    }

    fn inventory(&self) -> String {
        self.nodes.iter().map(|n| lct_core::stream::to_line(n) + "\n").collect()
    }
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
            let var = format!("LCT_OFFER_{role}_{key}").to_ascii_uppercase().replace('-', "_");
            env.push((var, value));
        }
    }
    Ok(env)
}

/// The command that runs a hook script: it is written to a private temporary directory and
/// run by its `#!` line (`sh` without one); the first line of standard input (the secrets)
/// goes to the script's standard input only, the inventory also to `$LCT_INVENTORY`.
/// The directory is removed when it ends.
const RUNNER: &str = r#"set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
printf '%s' "$1" > "$d/hook"
chmod 700 "$d/hook"
case "$1" in '#!'*) ;; *) mv "$d/hook" "$d/hook.sh"; printf '#!/bin/sh\nexec sh "$0.sh" "$@"\n' > "$d/hook"; chmod 700 "$d/hook";; esac
IFS= read -r secrets
cat > "$d/inventory.jsonl"
set +e
{ printf '%s\n' "$secrets"; cat "$d/inventory.jsonl"; } | LCT_INVENTORY="$d/inventory.jsonl" "$d/hook"
"#;

/// Runs a hook's script on every node of the `on` groups (over SSH or in its namespace, all
/// at once) or, when `on` is empty, on the controller. Its output is kept per hook, event
/// and node under the cluster's `logs/`.
async fn run_script(
    name: &Name,
    text: &str,
    on: &[Name],
    given: &Given,
    log_path: &dyn Fn(&str) -> std::path::PathBuf,
) -> anyhow::Result<()> {
    let mut argv = vec!["env".to_string()];
    argv.extend(given.env.iter().map(|(k, v)| format!("{k}={v}")));
    argv.extend(["sh".into(), "-c".into(), RUNNER.into(), "lct-hook".into(), text.into()]);
    if on.is_empty() {
        let out = run_local(&argv, &given.input(), &[]).await?;
        std::fs::write(log_path("controller"), format!("{}{}", out.0, out.1))?;
        if let Some(status) = out.2 {
            bail!("on the controller: {status}: {}", last_line(&out.1));
        }
        return Ok(());
    }
    let jobs: Vec<_> = given
        .nodes
        .iter()
        .filter(|n| &n.cluster == name && on.contains(&n.group))
        .map(|n| (n.clone(), argv.clone(), given.input()))
        .collect();
    if jobs.is_empty() {
        return Ok(());
    }
    let mut failed = Vec::new();
    for r in lct_inventory::exec::exec_each(jobs, &ExecOptions::default(), None).await {
        std::fs::write(log_path(r.node.as_str()), format!("{}{}", r.stdout, r.stderr))?;
        if !r.outcome.success() {
            failed.push(format!("node {}: {}: {}", r.node, r.outcome.describe(), last_line(&r.stderr)));
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

fn last_line(s: &str) -> &str {
    s.trim().lines().last().unwrap_or_default()
}

/// Runs a command on the controller with `input` on its standard input: its output, and
/// how it failed (if it did).
async fn run_local(
    argv: &[String],
    input: &[u8],
    env: &[(String, String)],
) -> anyhow::Result<(String, String, Option<String>)> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {}", argv[0]))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    let out = child.wait_with_output().await?;
    let _ = writer.await;
    let failed = (!out.status.success()).then(|| match out.status.code() {
        Some(code) => format!("exit status {code}"),
        None => format!("{}", out.status),
    });
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned(), failed))
}

/// Runs an Ansible playbook of the plan on the controller. Its inventory is `lct-inventory
/// ansible` over the cluster and the clusters around it (groups per cluster, `zk`, and per
/// cluster and role, `zk_server`); the parameters and offered values are extra variables
/// (`lct_param_NAME`, `lct_offer_ROLE_NAME`, `lct_event`), `lct_groups` maps the plan's groups
/// to their Ansible groups (`hosts: "{{ lct_groups.server }}"`); the secrets come from a 0600
/// file removed afterwards (never on a command line).
async fn run_playbook(
    state_dir: &Path,
    tools: &Tools,
    state: &ClusterState,
    plan: &Plan,
    playbook: &str,
    given: &Given,
    log: &Path,
) -> anyhow::Result<()> {
    let dir = cluster_dir(state_dir, &state.name);
    let work = lct_core::fsutil::temp_dir("lct-playbook-")?;
    let mut clusters: Vec<String> = given.nodes.iter().map(|n| n.cluster.to_string()).collect();
    clusters.dedup();
    let quote = lct_inventory::exec::shell_quote;
    let mut inventory =
        format!("#!/bin/sh\nexec {} ansible", quote(&tools.bin_dir.join("lct-inventory").display().to_string()));
    for c in BTreeSet::<String>::from_iter(clusters) {
        inventory.push_str(&format!(" --cluster {}", quote(&c)));
    }
    inventory.push_str(" \"$@\"\n");
    let inventory_path = work.path().join("inventory");
    lct_core::fsutil::atomic_write(&inventory_path, inventory.as_bytes(), 0o700)?;
    let mut vars = serde_json::Map::new();
    for (k, v) in &given.env {
        vars.insert(k.to_ascii_lowercase(), json!(v));
    }
    for (k, v) in &given.secrets.parameters {
        vars.insert(format!("lct_param_{k}"), v.clone());
    }
    let groups: serde_json::Map<String, Value> = plan
        .groups
        .keys()
        .map(|g| (g.to_string(), json!(lct_inventory::ansible::group_name(&[state.name.as_str(), g.as_str()]))))
        .collect();
    vars.insert("lct_groups".into(), Value::Object(groups));
    // Every string is `!unsafe`: Ansible renders variables as templates when used, and
    // these hold values from elsewhere (a dependency's offers, the operator's parameters);
    // `{{ lookup('pipe', ...) }}` in one of them stays text.
    let vars_path = work.path().join("vars.yaml");
    lct_core::fsutil::atomic_write(&vars_path, unsafe_yaml(&Value::Object(vars)).as_bytes(), 0o600)?;
    let argv = vec![
        "ansible-playbook".to_string(),
        "-i".into(),
        inventory_path.display().to_string(),
        "-e".into(),
        format!("@{}", vars_path.display()),
        dir.join("files").join(playbook).display().to_string(),
    ];
    let env = vec![
        ("ANSIBLE_HOME".to_string(), work.path().join("ansible").display().to_string()),
        ("ANSIBLE_NOCOLOR".into(), "1".into()),
        ("ANSIBLE_RETRY_FILES_ENABLED".into(), "0".into()),
        ("LCT_STATE_DIR".into(), state_dir.display().to_string()),
    ];
    let env: Vec<(String, String)> = env.into_iter().chain(given.env.iter().cloned()).collect();
    let (stdout, stderr, failed) = run_local(&argv, &[], &env).await?;
    std::fs::write(log, format!("{stdout}{stderr}"))?;
    if let Some(status) = failed {
        // Ansible says which host failed in its recap lines.
        let failed_hosts: Vec<&str> =
            stdout.lines().filter(|l| l.contains("failed=") && !l.contains("failed=0")).map(str::trim).collect();
        bail!("ansible-playbook {playbook}: {status}: {}", failed_hosts.join("; "));
    }
    Ok(())
}

/// A JSON value as YAML (flow style) whose strings are all tagged `!unsafe`, so Ansible never
/// evaluates them as templates. Strings are double-quoted with every byte outside printable
/// ASCII escaped (YAML's `\u` / `\U`), which YAML reads back exactly.
fn unsafe_yaml(value: &Value) -> String {
    fn quoted(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                ' '..='~' => out.push(c),
                c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push_str(&format!("\\U{:08x}", c as u32)),
            }
        }
        out.push('"');
        out
    }
    match value {
        Value::String(s) => format!("!unsafe {}", quoted(s)),
        Value::Array(items) => format!("[{}]", items.iter().map(unsafe_yaml).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter().map(|(k, v)| format!("{}: {}", quoted(k), unsafe_yaml(v))).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn playbook_variables_are_unsafe_yaml_that_reads_back_exactly() {
        let value = serde_json::json!({
            "lct_offer_up_url": "{{ lookup('pipe', 'id') }}",
            "lct_param_n": 3,
            "odd": "quote \" back\\slash tab\t nl\n é 😀",
        });
        let yaml = super::unsafe_yaml(&value);
        assert!(yaml.contains("\"lct_offer_up_url\": !unsafe \"{{ lookup('pipe', 'id') }}\""), "{yaml}");
        // YAML reads it back as the same value (the tags aside).
        let back: serde_json::Value = serde_norway::from_str(&yaml.replace("!unsafe ", "")).unwrap();
        assert_eq!(back, value);
    }
}
