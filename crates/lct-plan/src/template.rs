//! Plan templates, bounded: every render has a budget of steps (minijinja's fuel) and of
//! output bytes, so a template that loops for ever or renders megabytes fails at once, with
//! the field's file, line and column, at `validate`, `diff` and `create` alike.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::error::PlanError;
use crate::load::Loaded;
use crate::plan::Count;

/// Steps one render may take: thousands of times what the packaged plans use (a loop over
/// a hundred nodes is a few thousand), a few milliseconds of work.
pub const FUEL: u64 = 200_000;

/// Bytes one render may write: a list of a thousand nodes' names fits many times over.
pub const MAX_OUTPUT: usize = 256 * 1024;

/// Renders `template` over `ctx` within [`FUEL`] and [`MAX_OUTPUT`]; the error says which
/// bound was hit, or what minijinja found.
pub fn render(template: &str, ctx: &Value) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(FUEL));
    let compiled = env.template_from_str(template).map_err(|e| format!("template: {e}"))?;
    let mut out = Capped { bytes: Vec::new(), over: false };
    match compiled.render_captured_to(ctx, &mut out).map(drop) {
        Ok(_) => String::from_utf8(out.bytes).map_err(|_| "template: its output is not UTF-8".into()),
        Err(_) if out.over => Err(format!("template: renders more than {} KiB (the limit)", MAX_OUTPUT / 1024)),
        Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => {
            Err(format!("template: takes more than {FUEL} steps (the limit; a loop without end?)"))
        }
        // `{e}`, not `{e:#}`: minijinja's long form lists the variables a template read, with
        // their values (a secret parameter's too).
        Err(e) => Err(format!("template: {e}")),
    }
}

/// A writer that refuses to grow past [`MAX_OUTPUT`].
struct Capped {
    bytes: Vec<u8>,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_OUTPUT {
            self.over = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The context plan templates see: the parameters, the cluster's name, and `admin_cidr`
/// (the network that reaches SSH: `LCT_ADMIN_CIDR`, else the local cloud's outside
/// namespace), which a parameter of that name overrides.
pub fn context(cluster: &str, params: &BTreeMap<String, Value>) -> Value {
    let mut ctx = serde_json::Map::new();
    let admin =
        std::env::var("LCT_ADMIN_CIDR").ok().filter(|a| !a.is_empty()).unwrap_or_else(|| "203.0.113.254/32".into());
    ctx.insert("admin_cidr".into(), json!(admin));
    for (k, v) in params {
        ctx.insert(k.clone(), v.clone());
    }
    ctx.insert("cluster".into(), json!(cluster));
    Value::Object(ctx)
}

/// Renders every template of a plan once, as cluster `cluster` with `params` would
/// (offers over a stand-in inventory of the groups' sizes), so that one which does not end,
/// renders too much or fails stops the operation before anything is made. The error names
/// the field and where it is in the plan's text.
pub fn check_plan(loaded: &Loaded, cluster: &str, params: &BTreeMap<String, Value>) -> Result<(), PlanError> {
    let plan = &loaded.plan;
    let ctx = context(cluster, params);
    let fail = |path: Vec<String>, message: String| {
        let (line, column) = crate::locate::locate(&loaded.text, &path);
        PlanError::Parse {
            file: loaded.source.clone(),
            line,
            column,
            field: format!("field {}: ", dotted(&path)),
            message,
        }
    };
    let field = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let mut inventory = serde_json::Map::new();
    for (g, group) in &plan.groups {
        let count = match &group.count {
            Count::Fixed(n) => *n,
            Count::Template(t) => {
                let path = field(&["groups", g.as_str(), "count"]);
                let text = render(t, &ctx).map_err(|m| fail(path.clone(), m))?;
                text.trim().parse().map_err(|_| fail(path, format!("{:?} is not a count", text.trim())))?
            }
        };
        if count > crate::plan::MAX_GROUP_NODES {
            let message = format!("{count} nodes, over the {} a group may have", crate::plan::MAX_GROUP_NODES);
            return Err(fail(field(&["groups", g.as_str(), "count"]), message));
        }
        let mut nodes = Vec::new();
        // Every name is rendered (a template may loop on `index`); the stand-in inventory
        // for the offers keeps a few.
        for index in 1..=count {
            let mut c = ctx.clone();
            c["group"] = json!(g);
            c["index"] = json!(index);
            let name = render(&group.hostname, &c).map_err(|m| fail(field(&["groups", g.as_str(), "hostname"]), m))?;
            if nodes.len() < 16 {
                nodes.push(json!({
                    "name": name, "fqdn": format!("{name}.{cluster}.example"),
                    "private_ipv4": format!("10.0.0.{index}"), "public_ipv4": format!("203.0.113.{index}"),
                }));
            }
        }
        inventory.insert(g.to_string(), Value::Array(nodes));
    }
    for (i, admin) in plan.firewall.admin.iter().enumerate() {
        render(admin, &ctx).map_err(|m| fail(field(&["firewall", "admin", &i.to_string()]), m))?;
    }
    if let Some(domain) = &plan.names.domain {
        render(domain, &ctx).map_err(|m| fail(field(&["names", "domain"]), m))?;
    }
    for (role, dep) in &plan.depends_on {
        render(&dep.cluster, &ctx).map_err(|m| fail(field(&["depends_on", role, "cluster"]), m))?;
    }
    let mut with_nodes = ctx.clone();
    with_nodes["nodes"] = Value::Object(inventory);
    for (name, offer) in &plan.offers {
        render(offer, &with_nodes).map_err(|m| fail(field(&["offers", name]), m))?;
    }
    Ok(())
}

fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for p in path {
        if p.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{p}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_stop_at_their_bounds() {
        let ctx = json!({"n": 3});
        assert_eq!(render("{{ n * 2 }}", &ctx).unwrap(), "6");
        let started = std::time::Instant::now();
        let e = render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", &ctx)
            .unwrap_err();
        assert!(e.contains("takes more than 200000 steps"), "{e}");
        let e = render("{{ 'x' * 10000000 }}", &ctx).unwrap_err();
        assert!(e.contains("renders more than 256 KiB"), "{e}");
        let e = render("{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}", &ctx).unwrap_err();
        assert!(e.contains("renders more than 256 KiB"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn a_failing_template_does_not_show_the_values_it_read() {
        let e = render("{{ pw ~ (1 // 0) }}", &json!({"pw": "hunter2"})).unwrap_err();
        assert!(e.starts_with("template: invalid operation: unable to calculate 1 // 0"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn every_packaged_plan_renders_within_the_bounds() {
        for p in crate::PACKAGES {
            let loaded = crate::PlanRef::Package(p.name.into()).load().unwrap();
            let required: Vec<(String, String)> = loaded
                .plan
                .parameters
                .iter()
                .filter(|(_, param)| param.default.is_none() && !param.generate)
                .map(|(name, _)| (name.clone(), "zk".to_string()))
                .collect();
            let values = crate::parameters(&loaded.plan, &required).unwrap();
            check_plan(&loaded, "example", &values).unwrap_or_else(|e| panic!("package:{}: {e}", p.name));
        }
    }
}
