//! The checks a plan must pass before anything is made from it (templates compile,
//! references inside it resolve, hooks are well formed), and parameter values from `--set`
//! checked against their types.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use lct_core::record::Name;
use serde_json::Value;

use crate::error::PlanError;
use crate::plan::{Action, Count, Event, Hook, ParameterType, Plan};
use crate::suggest::did_you_mean;

/// The checks a plan passes before use.
pub fn validate(plan: &Plan, source: &str) -> Result<(), PlanError> {
    let bad = |field: String, message: String| PlanError::Invalid { file: source.to_string(), field, message };
    let env = minijinja::Environment::new();
    let template = |field: String, text: &str| -> Result<(), PlanError> {
        env.template_from_str(text).map(drop).map_err(|e| bad(field, format!("template: {e}")))
    };
    crate::check::plan_inputs(plan).map_err(|(field, message)| bad(field, message))?;
    crate::placement::check(plan).map_err(|(field, message)| bad(field, message))?;
    for (name, p) in &plan.parameters {
        if !is_identifier(name) {
            return Err(bad(format!("parameters.{name}"), "a parameter name is letters, digits and _".into()));
        }
        if p.generate && (p.kind != ParameterType::String || p.default.is_some()) {
            return Err(bad(
                format!("parameters.{name}.generate"),
                "a generated value is a string without default".into(),
            ));
        }
        if let Some(pattern) = &p.pattern {
            if p.kind != ParameterType::String {
                return Err(bad(format!("parameters.{name}.pattern"), "a pattern is for a string".into()));
            }
            compile(pattern).map_err(|m| bad(format!("parameters.{name}.pattern"), m))?;
        }
        if let Some(default) = &p.default {
            check_type(p.kind, default, p.minimum, p.maximum)
                .and_then(|()| check_pattern(p.pattern.as_deref(), p.secret, default))
                .map_err(|m| bad(format!("parameters.{name}.default"), m))?;
        }
    }
    if plan.groups.is_empty() {
        return Err(bad("groups".into(), "a plan has at least one group".into()));
    }
    for (g, group) in &plan.groups {
        if let Count::Template(t) = &group.count {
            template(format!("groups.{g}.count"), t)?;
        }
        template(format!("groups.{g}.hostname"), &group.hostname)?;
        let mut volumes = BTreeSet::new();
        for (i, v) in group.volumes.iter().enumerate() {
            lct_api::parse_size_mib(&v.size).map_err(|m| bad(format!("groups.{g}.volumes[{i}].size"), m))?;
            if !volumes.insert(&v.name) {
                return Err(bad(format!("groups.{g}.volumes[{i}].name"), format!("{} is named twice", v.name)));
            }
        }
        let image = group.image.as_str();
        let lct_image = lct_api::disk_image::LctImage::parse(image);
        if lct_image.as_ref().is_some_and(|i| !i.is_pinned()) {
            // A plan names what its nodes run: content behind a URL must be the content the
            // plan's author meant (as hook downloads are pinned by SHA-256).
            return Err(bad(
                format!("groups.{g}.image"),
                format!(
                    "{image}: an image by URL must be pinned, URL#root=HEX (the `root` of `lct-image info -o jsonl URL`)"
                ),
            ));
        }
        let lct_image = lct_image.is_some();
        if !lct_image && !matches!(image, "debian-12" | "linode/debian12" | "lct/netns" | "baked") {
            return Err(bad(
                format!("groups.{g}.image"),
                format!("{image:?}: debian-12, lct/netns, baked, REPO::NAME, an image file or an https:// URL"),
            ));
        }
        if image.chars().any(char::is_control) {
            return Err(bad(format!("groups.{g}.image"), "a control character in an image name".into()));
        }
    }
    let services: BTreeSet<String> =
        plan.groups.iter().flat_map(|(g, group)| group.services.keys().map(move |s| format!("{g}.{s}"))).collect();
    for (i, admin) in plan.firewall.admin.iter().enumerate() {
        template(format!("firewall.admin[{i}]"), admin)?;
    }
    for (i, flow) in plan.firewall.allow.iter().enumerate() {
        if !services.contains(&flow.to) {
            return Err(bad(
                format!("firewall.allow[{i}].to"),
                format!(
                    "{:?} is no GROUP.SERVICE of this plan ({}){}",
                    flow.to,
                    list(&services),
                    did_you_mean(&flow.to, services.iter().map(String::as_str))
                ),
            ));
        }
        let from_ok = match flow.from.as_str() {
            "self" | "dependents" => true,
            f if f.starts_with("self:") => plan.groups.keys().any(|g| g.as_str() == &f[5..]),
            f => lct_core::prefix::Prefix::parse(f, lct_core::prefix::HostBits::Refuse).is_ok(),
        };
        if !from_ok {
            let mut known: Vec<String> = ["self", "dependents"].map(String::from).to_vec();
            known.extend(plan.groups.keys().map(|g| format!("self:{g}")));
            return Err(bad(
                format!("firewall.allow[{i}].from"),
                format!(
                    "{:?}: self, self:GROUP, dependents or an address prefix{}",
                    flow.from,
                    did_you_mean(&flow.from, known.iter().map(String::as_str))
                ),
            ));
        }
    }
    if let Some(domain) = &plan.names.domain {
        template("names.domain".into(), domain)?;
    }
    for (role, dep) in &plan.depends_on {
        template(format!("depends_on.{role}.cluster"), &dep.cluster)?;
        for (i, s) in dep.services.iter().enumerate() {
            if s.split_once('.').is_none_or(|(g, s)| g.is_empty() || s.is_empty()) {
                return Err(bad(format!("depends_on.{role}.services[{i}]"), format!("{s:?}: GROUP.SERVICE")));
            }
        }
    }
    for (name, offer) in &plan.offers {
        template(format!("offers.{name}"), offer)?;
    }
    for (event, i, hook) in hooks_in(plan) {
        check_hook(plan, hook).map_err(|m| bad(format!("hooks.{event}[{i}]"), m))?;
    }
    for (i, hook) in plan.hooks.get(&Event::Baked).into_iter().flatten().enumerate() {
        check_baked_hook(plan, hook).map_err(|m| bad(format!("hooks.baked[{i}]"), m))?;
    }
    let mut roles = BTreeSet::new();
    for (role, dep) in &plan.depends_on {
        if !roles.insert(dep.cluster.clone()) {
            return Err(bad(format!("depends_on.{role}.cluster"), format!("{} is named twice", dep.cluster)));
        }
    }
    Ok(())
}

/// Every hook with its event's name and its place in the event's list.
pub fn hooks_in(plan: &Plan) -> impl Iterator<Item = (String, usize, &Hook)> {
    plan.hooks.iter().flat_map(|(event, hooks)| {
        let event = event.as_str().to_string();
        hooks.iter().enumerate().map(move |(i, h)| (event.clone(), i, h))
    })
}

fn check_hook(plan: &Plan, hook: &Hook) -> Result<(), String> {
    let kinds = [hook.action.is_some(), hook.script.is_some(), hook.playbook.is_some(), hook.run.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err("a hook is one of action, script, run or playbook".into());
    }
    for g in &hook.on {
        if !plan.groups.contains_key(g) {
            return Err(format!("on: no group {g}{}", did_you_mean(g.as_str(), plan.groups.keys().map(Name::as_str))));
        }
    }
    if hook.action.is_some() && !hook.on.is_empty() {
        return Err("a built-in action runs on the controller (no `on`)".into());
    }
    if hook.action == Some(Action::Packages) && plan.packages.is_empty() {
        return Err("action packages, but the plan lists no packages".into());
    }
    if hook.playbook.is_some() && !hook.on.is_empty() {
        // A playbook names its hosts itself (`hosts: server`); lct gives it the inventory.
        return Err("a playbook runs on the controller and names its hosts itself (no `on`)".into());
    }
    if let Some(file) = hook.script.as_ref().or(hook.playbook.as_ref())
        && (Path::new(file).is_absolute() || file.split('/').any(|p| p == ".." || p.is_empty()))
    {
        return Err(format!("{file}: a path inside the plan's directory"));
    }
    Ok(())
}

/// A `baked` hook works on the bake node alone: lct's programs and the plan's packages, or
/// a script on the bake node's group (no cluster exists yet: hosts, firewalls, DNS and
/// playbooks over an inventory have nothing to work on).
fn check_baked_hook(plan: &Plan, hook: &Hook) -> Result<(), String> {
    if let Some(action) = hook.action
        && !matches!(action, Action::Install | Action::Packages)
    {
        return Err("a baked hook's action is install or packages (there is no cluster yet)".into());
    }
    if hook.playbook.is_some() {
        return Err("a baked hook is an action, a script or run (no playbook: there is no cluster yet)".into());
    }
    let group = plan.bake_group();
    if let Some(other) = hook.on.iter().find(|g| *g != group) {
        return Err(format!("on: {other}: a baked script runs on the bake node, of group {group}"));
    }
    Ok(())
}

fn list(items: &BTreeSet<String>) -> String {
    if items.is_empty() { "it has none".into() } else { items.iter().cloned().collect::<Vec<_>>().join(", ") }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !s.as_bytes()[0].is_ascii_digit()
}

fn check_type(kind: ParameterType, v: &Value, min: Option<i64>, max: Option<i64>) -> Result<(), String> {
    match (kind, v) {
        (ParameterType::String, Value::String(_)) | (ParameterType::Boolean, Value::Bool(_)) => Ok(()),
        (ParameterType::Integer, Value::Number(n)) => {
            let n = n.as_i64().ok_or_else(|| format!("{n} is not a whole number"))?;
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                return Err(format!(
                    "{n} is outside {}..{}",
                    min.map_or("".into(), |m| m.to_string()),
                    max.map_or("".into(), |m| m.to_string())
                ));
            }
            Ok(())
        }
        (kind, v) => {
            Err(format!("{v} is not a {}", serde_json::to_value(kind).unwrap_or_default().as_str().unwrap_or("value")))
        }
    }
}

/// The most a pattern's compiled program may take: a plan's pattern (`a{1000}{1000}`) cannot
/// make validate build a huge automaton.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// A parameter's pattern, anchored at both ends, compiled within bounds.
fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("not a pattern: {}", e.to_string().lines().last().unwrap_or_default()))
}

/// A string value against its parameter's pattern (a secret's value never shown).
fn check_pattern(pattern: Option<&str>, secret: bool, value: &Value) -> Result<(), String> {
    let (Some(pattern), Value::String(text)) = (pattern, value) else { return Ok(()) };
    if compile(pattern)?.is_match(text) {
        return Ok(());
    }
    Err(format!("{} does not match the pattern {pattern}", if secret { "the value" } else { text }))
}

/// The parameters' values: defaults, then `--set NAME=VALUE` (each parsed and checked as
/// its parameter's type). A parameter without default must be set.
pub fn parameters(plan: &Plan, sets: &[(String, String)]) -> Result<BTreeMap<String, Value>, String> {
    let mut values = BTreeMap::new();
    for (name, p) in &plan.parameters {
        if let Some(d) = &p.default {
            values.insert(name.clone(), d.clone());
        }
    }
    for (name, text) in sets {
        let p = plan.parameters.get(name).ok_or_else(|| {
            let known: BTreeSet<String> = plan.parameters.keys().cloned().collect();
            let close = did_you_mean(name, known.iter().map(String::as_str));
            format!("--set {name}: the plan has no such parameter ({}){close}", list(&known))
        })?;
        let value = match p.kind {
            ParameterType::String => Value::String(text.clone()),
            ParameterType::Integer => text
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("--set {name}={}: not a whole number", shown(p.secret, text)))?,
            ParameterType::Boolean => match text.as_str() {
                "true" | "yes" | "1" => Value::Bool(true),
                "false" | "no" | "0" => Value::Bool(false),
                _ => return Err(format!("--set {name}={}: true or false", shown(p.secret, text))),
            },
        };
        check_type(p.kind, &value, p.minimum, p.maximum)
            .and_then(|()| check_pattern(p.pattern.as_deref(), p.secret, &value))
            .map_err(|m| format!("--set {name}: {m}"))?;
        values.insert(name.clone(), value);
    }
    for (name, p) in &plan.parameters {
        if p.generate && p.kind == ParameterType::String && !values.contains_key(name) {
            let value = Value::String(random_token()?);
            check_pattern(p.pattern.as_deref(), p.secret, &value)
                .map_err(|m| format!("parameter {name}: a generated value (24 letters and digits): {m}"))?;
            values.insert(name.clone(), value);
        }
    }
    if let Some((name, _)) = plan.parameters.iter().find(|(n, _)| !values.contains_key(*n)) {
        return Err(format!("parameter {name} has no default: give --set {name}=VALUE"));
    }
    Ok(values)
}

/// 24 letters and digits from the system's random source (about 143 bits).
fn random_token() -> Result<String, String> {
    lct_core::random::token(24, lct_core::random::ALPHANUMERIC).map_err(|e| e.to_string())
}

/// A secret's value is never shown, not even in an error.
fn shown(secret: bool, text: &str) -> &str {
    if secret { "<secret>" } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PACKAGES, PlanRef, parse};

    const GOOD: &str = "description: a test\ngroups:\n  server:\n    count: 2\n    services:\n      client:\n        ports: [2181/tcp]\nfirewall:\n  allow:\n    - {from: dependents, to: server.client}\n";

    fn error(text: &str) -> String {
        match parse(text, "p.yaml") {
            Err(e) => e.to_string(),
            Ok(plan) => validate(&plan, "p.yaml").unwrap_err().to_string(),
        }
    }

    #[test]
    fn every_packaged_plan_is_valid() {
        for p in PACKAGES {
            let loaded = PlanRef::Package(p.name.into()).load().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(loaded.files.len(), p.files.len(), "package:{}: files no hook runs", p.name);
        }
        validate(&parse(GOOD, "p.yaml").unwrap(), "p.yaml").unwrap();
    }

    #[test]
    fn images_and_baked_hooks_are_checked() {
        for image in [
            "baked",
            "/srv/repo::zk-0123",
            "./zk.lcti",
            "https://x.example/zk.lcti#root=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "ssh://store-1/r::zk",
        ] {
            let plan = GOOD.replace("    count: 2\n", &format!("    count: 2\n    image: {image:?}\n"));
            validate(&parse(&plan, "p.yaml").unwrap(), "p.yaml").unwrap_or_else(|e| panic!("{image}: {e}"));
        }
        let e = error(&GOOD.replace("    count: 2\n", "    count: 2\n    image: https://x.example/zk.lcti\n"));
        assert!(e.contains("groups.server.image: https://x.example/zk.lcti: an image by URL must be pinned"), "{e}");
        let e = error(&GOOD.replace("    count: 2\n", "    count: 2\n    image: debian-13\n"));
        assert!(e.starts_with("p.yaml: groups.server.image: \"debian-13\": debian-12, lct/netns, baked"), "{e}");
        let e = error(&GOOD.replace("    count: 2\n", "    count: 2\n    image: \"/r::a\\nb\"\n"));
        assert!(e.contains("groups.server.image: a control character"), "{e}");
        // mesh-sync is a built-in action of the controller, for the cluster's events.
        let meshed = parse(&format!("{GOOD}hooks:\n  node-removed:\n    - action: mesh-sync\n"), "p.yaml").unwrap();
        validate(&meshed, "p.yaml").unwrap();
        assert_eq!(meshed.hooks.values().flatten().next().unwrap().action, Some(crate::plan::Action::MeshSync));
        let e = error(&format!("{GOOD}hooks:\n  created:\n    - {{action: mesh-sync, on: [server]}}\n"));
        assert!(e.contains("a built-in action runs on the controller"), "{e}");
        let e = error(&format!("{GOOD}hooks:\n  baked:\n    - action: mesh-sync\n"));
        assert!(e.contains("a baked hook's action is install or packages"), "{e}");
        let e = error(&format!("{GOOD}hooks:\n  baked:\n    - action: hosts\n"));
        assert!(e.contains("hooks.baked[0]: a baked hook's action is install or packages"), "{e}");
        let e = error(&format!("{GOOD}hooks:\n  baked:\n    - playbook: site.yml\n"));
        assert!(e.contains("hooks.baked[0]: a baked hook is an action, a script or run"), "{e}");
        let two = GOOD.replace("firewall:", "  other:\n    count: 1\nfirewall:");
        let e = error(&format!("{two}hooks:\n  baked:\n    - {{run: 'true', on: [server]}}\n"));
        assert!(e.contains("hooks.baked[0]: on: server: a baked script runs on the bake node, of group other"), "{e}");
        let fine = format!("{two}hooks:\n  baked:\n    - {{run: 'true', on: [other]}}\n    - action: install\n");
        validate(&parse(&fine, "p.yaml").unwrap(), "p.yaml").unwrap();
    }

    #[test]
    fn bad_plans_name_file_line_column_and_field() {
        let e = error(&GOOD.replace("    count: 2\n", "    count: 2\n    colour: blue\n"));
        assert!(e.starts_with("p.yaml: line 5, column 5: field groups.server.colour: unknown field `colour`"), "{e}");
        let e = error(&GOOD.replace("[2181/tcp]", "[2181/sctp]"));
        assert!(e.contains("line 7") && e.contains("field groups.server.services.client.ports[0]"), "{e}");
        let e = error(&GOOD.replace("server.client}", "server.nothing}"));
        assert_eq!(
            e,
            "p.yaml: firewall.allow[0].to: \"server.nothing\" is no GROUP.SERVICE of this plan (server.client)"
        );
        let e = error(&GOOD.replace("from: dependents", "from: 10.1.2.3/8"));
        assert!(e.contains("firewall.allow[0].from"), "{e}");
        let e = error(&GOOD.replace("count: 2", "count: \"{{ servers \""));
        assert!(e.starts_with("p.yaml: groups.server.count: template:"), "{e}");
        let e = error(&format!("{GOOD}hooks:\n  created:\n    - {{action: hosts, script: x.sh}}\n"));
        assert_eq!(e, "p.yaml: hooks.created[0]: a hook is one of action, script, run or playbook");
        let e = error(&format!("{GOOD}hooks:\n  created:\n    - {{script: x.sh, on: [nobody]}}\n"));
        assert_eq!(e, "p.yaml: hooks.created[0]: on: no group nobody");
        let e = error(&format!("{GOOD}hooks:\n  exploded:\n    - {{action: hosts}}\n"));
        assert!(e.contains("unknown variant `exploded`"), "{e}");
        let e = error(&GOOD.replace("    count: 2\n", "    count: 2\n    volumes: [{name: data, size: 10X}]\n"));
        assert_eq!(e, "p.yaml: groups.server.volumes[0].size: unknown size unit \"X\" (use M, G or T)");
        let e = error(&format!("{GOOD}parameters:\n  n: {{type: integer, default: many, description: x}}\n"));
        assert_eq!(e, "p.yaml: parameters.n.default: \"many\" is not a integer");
    }

    #[test]
    fn settings_are_typed_and_secrets_never_shown() {
        let text = format!(
            "{GOOD}parameters:\n  n: {{type: integer, default: 3, minimum: 1, description: x}}\n  pw: {{type: string, secret: true, description: y}}\n  on: {{type: boolean, default: false, description: z}}\n"
        );
        let plan = parse(&text, "p").unwrap();
        let set = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(parameters(&plan, &[]).unwrap_err(), "parameter pw has no default: give --set pw=VALUE");
        let values = parameters(&plan, &[set("pw", "hunter2"), set("n", "5"), set("on", "yes")]).unwrap();
        assert_eq!((values["n"].as_i64(), values["on"].as_bool()), (Some(5), Some(true)));
        assert_eq!(parameters(&plan, &[set("pw", "x"), set("n", "0")]).unwrap_err(), "--set n: 0 is outside 1..");
        assert!(parameters(&plan, &[set("pw", "x"), set("n", "five")]).unwrap_err().contains("not a whole number"));
        assert!(
            parameters(&plan, &[set("nope", "1")])
                .unwrap_err()
                .starts_with("--set nope: the plan has no such parameter")
        );
        let plan = parse(&text.replace("type: string, secret: true", "type: integer, secret: true"), "p").unwrap();
        let e = parameters(&plan, &[set("pw", "hunter2")]).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_pattern_holds_for_set_default_and_generated_values_and_bounds_itself() {
        let text = format!(
            "{GOOD}parameters:\n  pw: {{type: string, secret: true, generate: true, pattern: '[A-Za-z0-9._+=-]{{12,128}}', description: y}}\n  tag: {{type: string, default: blue, pattern: '[a-z]+', description: z}}\n"
        );
        let plan = parse(&text, "p").unwrap();
        validate(&plan, "p").unwrap();
        let set = |k: &str, v: &str| (k.to_string(), v.to_string());
        // Generated values match; a set one is checked whole (anchored), a secret never shown.
        assert!(parameters(&plan, &[]).is_ok());
        parameters(&plan, &[set("pw", "Good.password+=-1")]).unwrap();
        for hostile in ["x'; DROP USER root; -- xx", "$(reboot)xxxxxxxx", "good-password\nand more", "short"] {
            let e = parameters(&plan, &[set("pw", hostile)]).unwrap_err();
            assert_eq!(e, "--set pw: the value does not match the pattern [A-Za-z0-9._+=-]{12,128}", "{hostile:?}");
        }
        let e = parameters(&plan, &[set("tag", "Blue!")]).unwrap_err();
        assert_eq!(e, "--set tag: Blue! does not match the pattern [a-z]+");
        // The plan's own pattern: a default outside it, a pattern on an integer, a pattern
        // that does not compile, one too big to build (refused, not built).
        let e = error(&text.replace("default: blue", "default: Blue"));
        assert_eq!(e, "p.yaml: parameters.tag.default: Blue does not match the pattern [a-z]+");
        let e =
            error(&format!("{GOOD}parameters:\n  n: {{type: integer, default: 1, pattern: '1', description: x}}\n"));
        assert_eq!(e, "p.yaml: parameters.n.pattern: a pattern is for a string");
        let e = error(&text.replace("'[a-z]+'", "'[a-z'"));
        assert!(e.starts_with("p.yaml: parameters.tag.pattern: not a pattern: error: unclosed character class"), "{e}");
        let started = std::time::Instant::now();
        let e = error(&text.replace("'[a-z]+'", "'(((a{1000}){1000}){1000})'"));
        assert!(e.starts_with("p.yaml: parameters.tag.pattern: not a pattern:"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
        // A generated value the pattern refuses is said plainly (the plan cannot work).
        let plan = parse(&text.replace("{12,128}", "{30}"), "p").unwrap();
        let e = parameters(&plan, &[]).unwrap_err();
        assert!(
            e.starts_with("parameter pw: a generated value (24 letters and digits): the value does not match"),
            "{e}"
        );
    }
}
