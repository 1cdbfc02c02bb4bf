//! Events and their hooks: an event runs its hooks in order (built-in actions in
//! [`crate::actions`], scripts and playbooks in [`crate::script`]), each given the cluster
//! as its operation loaded it; the event log.

use anyhow::{Context as _, bail};

use crate::actions::{action_name, run_action};
use crate::plan::{Event, Hook};
use crate::records::{HookRun, PlanEvent};
use crate::script::{Given, run_playbook, run_script};
use crate::state::{Change, Context};

/// Raises `event` on the cluster: its hooks run in the declared order and the first
/// failure stops them, naming hook, node and exit status. The event, how it ended and the
/// hooks that ran go to the cluster's event log (`plans/NAME/events/`).
pub async fn fire(ctx: &Context, event: Event, change: &Change) -> anyhow::Result<()> {
    let (name, plan) = (ctx.name(), &ctx.plan);
    let started = std::time::Instant::now();
    let mut ran = Vec::new();
    let mut outcome = Ok(());
    let bar = progress();
    for (i, hook) in plan.hooks.get(&event).into_iter().flatten().enumerate() {
        let label = hook_label(hook, i);
        bar.set_message(format!("cluster {name}, {event}: {label}"));
        let hook_started = std::time::Instant::now();
        let result = match ctx.check_held(&format!("{event}'s hook {label}")) {
            Ok(()) => run_hook(ctx, event, hook, &label, change).await,
            Err(e) => Err(e),
        };
        ran.push(HookRun {
            hook: label.clone(),
            ok: result.is_ok(),
            took_ms: hook_started.elapsed().as_millis() as u64,
        });
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
    log_event(ctx, event, &ran, error.as_deref(), started.elapsed(), change)?;
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
    ctx: &Context,
    event: Event,
    hooks: &[HookRun],
    error: Option<&str>,
    took: std::time::Duration,
    change: &Change,
) -> anyhow::Result<()> {
    let name = ctx.name();
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
    let text = format!("{}\n", lct_core::stream::to_line(&line));
    // One key per event, made once; fenced by the cluster's lock when this run holds it.
    let key = lct_core::store::layout::new_event_key(&crate::state::cluster_prefix(name))?;
    let txn = lct_core::store::Txn::new().expect(&key, lct_core::store::Expect::Absent).put(
        &key,
        text.into_bytes(),
        lct_core::store::Secrecy::Public,
    );
    ctx.home.store.commit(&ctx.fenced(txn)).with_context(|| format!("cluster {name}: logging event {event}"))?;
    Ok(())
}

async fn run_hook(ctx: &Context, event: Event, hook: &Hook, label: &str, change: &Change) -> anyhow::Result<()> {
    let records = ctx.store.load()?;
    if let Some(action) = hook.action {
        // Programs and packages go to the new nodes only when nodes were added.
        let only = (event == Event::NodeAdded).then_some(change.added.as_slice());
        return run_action(ctx, action, &records, only).await;
    }
    let given = Given::gather(ctx, event, change, &records).await?;
    let logs = ctx.logs();
    std::fs::create_dir_all(&logs)?;
    let file_label = label.replace([' ', '/', '#'], "_");
    let log_path = |node: &str| logs.join(format!("{event}.{file_label}.{node}.log"));
    if let Some(playbook) = &hook.playbook {
        return run_playbook(ctx, playbook, &given, &log_path("controller")).await;
    }
    let text = match (&hook.script, &hook.run) {
        (Some(script), _) => {
            let key = ctx.key(&format!("files/{script}"))?;
            let entry = ctx.home.store.get(&key)?.with_context(|| format!("hook script {script}: absent"))?;
            String::from_utf8(entry.value).with_context(|| format!("hook script {script}: not UTF-8"))?
        }
        (_, Some(text)) => text.clone(),
        _ => bail!("a hook without action, script, run or playbook"),
    };
    // On the controller, a script reaches the nodes with lct's own programs (`lct-inventory
    // exec`) and the same state as this run.
    let bin_dir = std::iter::once(ctx.tools.bin_dir.clone());
    let path =
        std::env::join_paths(bin_dir.chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())))?;
    let controller = [
        ("LCT_STATE_DIR".to_string(), ctx.home.dir.display().to_string()),
        ("PATH".to_string(), path.to_string_lossy().into_owned()),
    ];
    run_script(ctx.name(), &text, &hook.on, &given, &controller, &log_path).await
}
