//! `lct-plan diff`: what `create` or `scale` would do, changing nothing.

use crate::state::Home;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use lct_api::{AnyProvider, Provider};
use lct_core::record::{Name, Node, ProviderName};

use serde_json::Value;

use crate::PlanRef;
use crate::cluster::{Trust, kept_parameters};
use crate::setting::Settings;
use crate::spec::{cluster_record, node_specs, placed, warn_unwise};
use crate::state::{find_cluster, saved_plan};
use crate::suggest::did_you_mean;

/// What an operation would do, changing nothing: nodes made and deleted, the record's
/// changes, the events raised.
pub async fn diff(
    home: &Home,
    name: &Name,
    reference: Option<&str>,
    sets: &Settings,
    counts: &[(Name, u32)],
    trust: Trust,
) -> anyhow::Result<Vec<String>> {
    let previous = find_cluster(home, name)?;
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
        (Some((s, _)), None) => (saved_plan(home, name)?, s.provider, s.counts.clone(), s.members.clone(), s.created),
        (None, None) => bail!("cluster {name} was not made by lct-plan here: give a plan to compare with"),
    };
    let plan = loaded.plan.clone();
    sets.warn_visible_secrets(&plan);
    let params = kept_parameters(&plan, previous.as_ref().map(|(s, _)| s), &sets.all())?;
    crate::template::check_plan(&loaded, name.as_str(), &params)?;
    for (g, n) in counts {
        if !plan.groups.contains_key(g) {
            let close = did_you_mean(g.as_str(), plan.groups.keys().map(Name::as_str));
            bail!("cluster {name} has no group {g}{close}");
        }
        state_counts.insert(g.clone(), *n);
    }
    let specs = node_specs(&plan, name, &params, &state_counts, provider)?;
    warn_unwise(&plan, &loaded.text, &loaded.source, name, &params, &state_counts)?;
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
    let store = home.records();
    let old = store.get_or_new(name)?;
    let new = cluster_record(home, &plan, name, &params, provider, old.clone()).map_err(|e| placed(e, &loaded))?;
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
