//! The generic create, update and delete of resources without behaviour of their own, and
//! the id in a path: shared by every resource's routes.

use serde_json::{Value, json};

use crate::state::*;

pub(crate) fn id_of(seg: &str) -> Result<u64, Reply> {
    seg.parse::<u64>().map_err(|_| error(404, "Not found", None))
}

/// Generic create for the resources without behaviour of their own.
pub(crate) fn create_plain(s: &mut State, kind: &'static str, parent: Option<u64>, mut v: Value) -> Value {
    let id = s.id();
    let now = s.now();
    let created = s.time_string(now);
    // Which resources carry their times, as the recorded responses show.
    let stamped = !matches!(kind, "nb_configs" | "nb_nodes" | "tags" | "firewall_devices");
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), json!(id));
        if stamped {
            m.entry("created").or_insert(json!(created));
            m.entry("updated").or_insert(json!(created));
        }
        if let Some(p) = parent {
            m.insert("_parent".into(), json!(p));
        }
    }
    s.kind(kind).insert(id, Obj::new(v.clone()));
    public(&v)
}

pub(crate) fn update_plain(
    s: &mut State,
    kind: &'static str,
    id: u64,
    parent: Option<u64>,
    body: &Value,
    fields: &[&str],
) -> Reply {
    if let Err(e) = s.find(kind, id, parent) {
        return e;
    }
    let now = s.now();
    let obj = s.kind(kind).get_mut(&id).expect("found");
    let mut v = obj.at(now);
    for f in fields {
        if let Some(val) = body.get(*f) {
            v[*f] = val.clone();
        }
    }
    obj.v = v.clone();
    obj.timeline.retain(|(t, _)| *t > now);
    ok(public(&obj.at(now)))
}

pub(crate) fn delete_plain(s: &mut State, kind: &'static str, id: u64, parent: Option<u64>) -> Reply {
    if let Err(e) = s.find(kind, id, parent) {
        return e;
    }
    s.kind(kind).remove(&id);
    ok(json!({}))
}
