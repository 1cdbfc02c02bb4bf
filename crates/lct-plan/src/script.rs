//! Hook scripts and playbooks: what each is given (the event, the inventory, the offered
//! values, the parameters, secrets only on standard input), and how it runs (on the
//! controller, or on every node of a group), its output kept per hook, event and node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context as _, bail};
use lct_core::record::{Cluster, Name, Node};
use lct_inventory::exec::ExecOptions;
use serde_json::{Value, json};

use crate::plan::{Event, Plan};
use crate::records::PlanSecrets;
use crate::spec::{context, offers, render};
use crate::state::{Change, Context, Home, load_cluster};

/// What a script or playbook is given.
pub(crate) struct Given {
    /// `LCT_EVENT`, `LCT_CLUSTER`, `LCT_PARAM_*`, `LCT_OFFER_*`, `LCT_NODES_ADDED`, ...
    env: Vec<(String, String)>,
    /// The `plan-secrets` record: secret parameters, by name.
    secrets: PlanSecrets,
    /// The node records of the cluster and the clusters it depends on (and its dependents').
    nodes: Vec<Node>,
}

impl Given {
    pub(crate) async fn gather(
        ctx: &Context,
        event: Event,
        change: &Change,
        records: &[Cluster],
    ) -> anyhow::Result<Given> {
        let (state, plan) = (&ctx.state, &ctx.plan);
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
        env.extend(offered_env(&ctx.home, plan, name, &state.parameters, &nodes, records)?);
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

/// `LCT_OFFER_ROLE_NAME` for every value the clusters `plan` depends on offer.
fn offered_env(
    home: &Home,
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
        let (other_state, other_plan) = load_cluster(home, &other)?;
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
/// at once) or, when `on` is empty, on the controller (with `controller` added to its
/// environment: lct's programs first on `PATH`, `LCT_STATE_DIR`). Its output is kept per hook, event
/// and node under the cluster's `logs/`.
pub(crate) async fn run_script(
    name: &Name,
    text: &str,
    on: &[Name],
    given: &Given,
    controller: &[(String, String)],
    log_path: &dyn Fn(&str) -> std::path::PathBuf,
) -> anyhow::Result<()> {
    let mut argv = vec!["env".to_string()];
    argv.extend(given.env.iter().map(|(k, v)| format!("{k}={v}")));
    argv.extend(["sh".into(), "-c".into(), RUNNER.into(), "lct-hook".into(), text.into()]);
    if on.is_empty() {
        let out = run_local(&argv, &given.input(), controller).await?;
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
    for r in lct_inventory::exec::exec_each(jobs, &ExecOptions::new()?, None).await {
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

pub(crate) fn last_line(s: &str) -> &str {
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

/// The directory of the plan's files for a program that reads them (ansible-playbook and
/// the roles beside a playbook): their own directory where the store keeps files, else a
/// copy in `work` (private, removed with it).
fn files_dir(ctx: &Context, work: &Path) -> anyhow::Result<std::path::PathBuf> {
    let prefix = ctx.key("files")?;
    if let Some(dir) = ctx.home.store.local_path(&prefix) {
        return Ok(dir);
    }
    let dir = work.join("files");
    for (key, entry) in ctx.home.store.list(&prefix)? {
        let rel = &key.as_str()[prefix.as_str().len() + 1..];
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap_or(&dir))?;
        lct_core::fsutil::atomic_write(&path, &entry.value, 0o700)?;
    }
    Ok(dir)
}

/// Runs an Ansible playbook of the plan on the controller. Its inventory is `lct-inventory
/// ansible` over the cluster and the clusters around it (groups per cluster, `zk`, and per
/// cluster and role, `zk_server`); the parameters and offered values are extra variables
/// (`lct_param_NAME`, `lct_offer_ROLE_NAME`, `lct_event`), `lct_groups` maps the plan's groups
/// to their Ansible groups (`hosts: "{{ lct_groups.server }}"`); the secrets come from a 0600
/// file removed afterwards (never on a command line).
pub(crate) async fn run_playbook(ctx: &Context, playbook: &str, given: &Given, log: &Path) -> anyhow::Result<()> {
    let (home, tools, state, plan) = (&ctx.home, &ctx.tools, &ctx.state, &ctx.plan);
    let work = lct_core::fsutil::temp_dir("lct-playbook-")?;
    let files = files_dir(ctx, work.path())?;
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
        files.join(playbook).display().to_string(),
    ];
    let env = vec![
        ("ANSIBLE_HOME".to_string(), work.path().join("ansible").display().to_string()),
        ("ANSIBLE_NOCOLOR".into(), "1".into()),
        ("ANSIBLE_RETRY_FILES_ENABLED".into(), "0".into()),
        ("LCT_STATE_DIR".into(), home.dir.display().to_string()),
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
