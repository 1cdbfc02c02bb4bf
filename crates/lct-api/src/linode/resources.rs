//! Every resource of the API that lct exposes on the command line, as a table: where it
//! lives, what it is called, which verbs it has. One generic path serves them all, with the
//! client's paging, limits and retries, and creates that never duplicate (checked by label).

use serde_json::{Value, json};

use super::api::Linode;
use super::client::{ApiFailure, Outcome};

/// One resource.
#[derive(Debug)]
pub struct Resource {
    /// The command-line name (`instances`).
    pub name: &'static str,
    /// The record kind printed for each item (`linode-instance`).
    pub kind: &'static str,
    /// The collection's path; `{}` are the parents' ids, in order.
    pub path: &'static str,
    pub parents: &'static [&'static str],
    pub list: bool,
    pub create: bool,
    pub update: bool,
    pub delete: bool,
    /// `POST PATH/ID/ACTION` verbs.
    pub actions: &'static [&'static str],
    /// The field that names an item (the create's idempotency key).
    pub key: Option<&'static str>,
}

const fn r(
    name: &'static str,
    kind: &'static str,
    path: &'static str,
    parents: &'static [&'static str],
    verbs: (bool, bool, bool, bool),
    actions: &'static [&'static str],
    key: Option<&'static str>,
) -> Resource {
    Resource {
        name,
        kind,
        path,
        parents,
        list: verbs.0,
        create: verbs.1,
        update: verbs.2,
        delete: verbs.3,
        actions,
        key,
    }
}

pub const RESOURCES: &[Resource] = &[
    r(
        "instances",
        "linode-instance",
        "/linode/instances",
        &[],
        (true, true, true, true),
        &["boot", "shutdown", "reboot", "clone"],
        Some("label"),
    ),
    r(
        "disks",
        "linode-disk",
        "/linode/instances/{}/disks",
        &["INSTANCE"],
        (true, true, true, true),
        &[],
        Some("label"),
    ),
    r(
        "configs",
        "linode-config",
        "/linode/instances/{}/configs",
        &["INSTANCE"],
        (true, true, true, true),
        &[],
        Some("label"),
    ),
    r("ips", "linode-ips", "/linode/instances/{}/ips", &["INSTANCE"], (false, true, false, false), &[], None),
    r("images", "linode-image", "/images", &[], (true, true, true, true), &[], Some("label")),
    r("volumes", "linode-volume", "/volumes", &[], (true, true, true, true), &["attach", "detach"], Some("label")),
    r("domains", "linode-domain", "/domains", &[], (true, true, true, true), &[], Some("domain")),
    r("records", "linode-domain-record", "/domains/{}/records", &["DOMAIN"], (true, true, true, true), &[], None),
    r("firewalls", "linode-firewall", "/networking/firewalls", &[], (true, true, true, true), &[], Some("label")),
    r(
        "firewall-rules",
        "linode-firewall-rules",
        "/networking/firewalls/{}/rules",
        &["FIREWALL"],
        (false, false, true, false),
        &[],
        None,
    ),
    r(
        "firewall-devices",
        "linode-firewall-device",
        "/networking/firewalls/{}/devices",
        &["FIREWALL"],
        (true, true, false, true),
        &[],
        None,
    ),
    r("regions", "linode-region", "/regions", &[], (true, false, false, false), &[], None),
    r("types", "linode-type", "/linode/types", &[], (true, false, false, false), &[], None),
    r("events", "linode-event", "/account/events", &[], (true, false, false, false), &[], None),
    r("tags", "linode-tag", "/tags", &[], (true, true, false, true), &[], Some("label")),
    r("stackscripts", "linode-stackscript", "/linode/stackscripts", &[], (true, true, true, true), &[], Some("label")),
    r("nodebalancers", "linode-nodebalancer", "/nodebalancers", &[], (true, true, true, true), &[], Some("label")),
    r(
        "nodebalancer-configs",
        "linode-nodebalancer-config",
        "/nodebalancers/{}/configs",
        &["NODEBALANCER"],
        (true, true, true, true),
        &[],
        None,
    ),
    r(
        "nodebalancer-nodes",
        "linode-nodebalancer-node",
        "/nodebalancers/{}/configs/{}/nodes",
        &["NODEBALANCER", "CONFIG"],
        (true, true, true, true),
        &[],
        Some("label"),
    ),
];

pub fn find(name: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.name == name)
}

impl Resource {
    /// The verbs it has, for help and errors.
    pub fn verbs(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.list {
            v.push("list");
        }
        v.push("get");
        if self.create {
            v.push("create");
        }
        if self.update {
            v.push("update");
        }
        if self.delete {
            v.push("delete");
        }
        v.extend(self.actions);
        v
    }

    /// The collection path with the parents' ids filled in.
    pub fn collection(&self, parents: &[String]) -> String {
        let mut out = String::new();
        let mut ids = parents.iter();
        let mut rest = self.path;
        while let Some(at) = rest.find("{}") {
            out.push_str(&rest[..at]);
            out.push_str(ids.next().map(String::as_str).unwrap_or(""));
            rest = &rest[at + 2..];
        }
        out.push_str(rest);
        out
    }

    /// Whether the resource is one object per parent rather than a collection of items.
    pub fn singular(&self) -> bool {
        matches!(self.name, "ips" | "firewall-rules")
    }
}

/// What a command asks of a resource.
pub struct Call<'a> {
    pub resource: &'static Resource,
    pub verb: &'a str,
    /// Parents' ids, then the item's id when the verb needs one.
    pub ids: Vec<String>,
    pub filter: Option<Value>,
    pub body: Option<Value>,
    pub wait: bool,
}

fn usage(message: String) -> ApiFailure {
    ApiFailure::Invalid { field: "arguments".into(), message }
}

/// Whether `verb` with `ids` makes sense for `res`; the message says what would.
pub fn check(res: &Resource, verb: &str, ids: &[String]) -> Result<(), String> {
    let verbs = res.verbs();
    let upload = res.name == "images" && verb == "upload";
    if !(verbs.contains(&verb) || upload) {
        return Err(format!("{} has no verb {verb}; it has: {}", res.name, verbs.join(", ")));
    }
    let needs_id = !matches!(verb, "list" | "create" | "upload") && !res.singular();
    let mut names: Vec<&str> = res.parents.to_vec();
    if needs_id {
        names.push("ID");
    }
    if ids.len() != names.len() {
        let takes = if names.is_empty() { "no ids".to_string() } else { names.join(" ") };
        return Err(format!("{} {verb} takes {takes}", res.name));
    }
    Ok(())
}

/// Runs a call; the items it returns, each as the API sent it.
pub async fn run(api: &Linode, call: Call<'_>) -> Result<Vec<Value>, ApiFailure> {
    let res = call.resource;
    check(res, call.verb, &call.ids).map_err(usage)?;
    let parents = res.parents.len();
    let collection = res.collection(&call.ids[..parents]);
    let item = |id: &str| format!("{collection}/{id}");
    let body = call.body.clone().unwrap_or(json!({}));
    let c = &api.client;
    Ok(match call.verb {
        "list" => {
            if res.name == "events" {
                let mut events: Vec<Value> = c.list(&collection, call.filter.as_ref()).await?;
                events.reverse(); // oldest first, as a log reads
                events
            } else {
                c.list(&collection, call.filter.as_ref()).await?
            }
        }
        "get" if res.singular() => vec![c.get(&collection).await?],
        "get" => vec![c.get(&item(&call.ids[parents])).await?],
        "create" => {
            let made: Value =
                match res.key.and_then(|k| body.get(k).and_then(Value::as_str).map(|v| (k, v.to_string()))) {
                    // Never twice: an unknown outcome is looked up by its name first.
                    Some((key, name)) => {
                        api.create_once(&collection, &body, || {
                            let (collection, name) = (collection.clone(), name.clone());
                            async move {
                                // Where the API filters on the name, it does the looking.
                                let filter = matches!(res.name, "instances" | "volumes" | "images" | "domains")
                                    .then(|| json!({ key: name }));
                                let all: Vec<Value> = c.list(&collection, filter.as_ref()).await?;
                                Ok(all.into_iter().find(|v| v[key] == json!(name)))
                            }
                        })
                        .await?
                    }
                    None => c.post(&collection, &body, Outcome::Report).await?,
                };
            vec![wait_for(api, res, &call.ids[..parents], made, call.wait).await?]
        }
        "update" if res.singular() => vec![c.put(&collection, &body).await?],
        "update" => vec![c.put(&item(&call.ids[parents]), &body).await?],
        "delete" => {
            let path = item(&call.ids[parents]);
            if !c.delete(&path).await? {
                return Err(ApiFailure::Api {
                    method: "DELETE".into(),
                    path,
                    status: 404,
                    errors: vec![super::types::ApiError { reason: "Not found".into(), field: None }],
                });
            }
            Vec::new()
        }
        "clone" => {
            let id: u64 = call.ids[parents].parse().map_err(|_| usage("ID: a number".into()))?;
            let made = api.clone_instance(id, &body).await?;
            let made = to_json(&made);
            vec![wait_for(api, res, &[], made, call.wait).await?]
        }
        action => {
            let id = &call.ids[parents];
            c.action(&format!("{}/{action}", item(id)), &body).await?;
            if call.wait {
                let now: Value = c.get(&item(id)).await?;
                vec![wait_for(api, res, &call.ids[..parents], now, true).await?]
            } else {
                Vec::new()
            }
        }
    })
}

/// With `--wait`, what a create or action leads to: an instance running (or offline), a disk
/// ready, a volume active (and attached as asked), an image available.
async fn wait_for(
    api: &Linode,
    res: &Resource,
    parents: &[String],
    made: Value,
    wait: bool,
) -> Result<Value, ApiFailure> {
    if !wait {
        return Ok(made);
    }
    use super::types::InstanceStatus::*;
    let id = made["id"].as_u64();
    Ok(match (res.name, id) {
        ("instances", Some(id)) => {
            let want = if made["status"] == json!("shutting_down") { vec![Offline] } else { vec![Running, Offline] };
            to_json(&api.wait_instance(id, &want).await?)
        }
        ("disks", Some(id)) => {
            let linode: u64 = parents[0].parse().map_err(|_| usage("INSTANCE: a number".into()))?;
            to_json(&api.wait_disk(linode, id).await?)
        }
        ("volumes", Some(id)) => to_json(&api.wait_volume(id).await?),
        ("images", _) => match made["id"].as_str() {
            Some(id) => to_json(&api.wait_image(id).await?),
            None => made,
        },
        _ => made,
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("API types serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let nodes = find("nodebalancer-nodes").unwrap();
        assert_eq!(nodes.collection(&["7".into(), "9".into()]), "/nodebalancers/7/configs/9/nodes");
        assert_eq!(find("disks").unwrap().collection(&["42".into()]), "/linode/instances/42/disks");
        assert!(find("instances").unwrap().verbs().contains(&"clone"));
        let mut names: Vec<&str> = RESOURCES.iter().map(|r| r.name).collect();
        names.dedup();
        assert_eq!(names.len(), RESOURCES.len());
    }
}
