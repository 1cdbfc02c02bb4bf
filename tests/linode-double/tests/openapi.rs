//! The double answers as the API's own specification says: every response of a scripted tour
//! of the endpoints lct uses (errors too) is validated against the OpenAPI schema of its
//! operation and status (shared/linode-api, v4.189.0).

use std::path::PathBuf;
use std::time::Duration;

use lct_api::linode::client::{ApiFailure, Client, Outcome, RetryPolicy};
use lct_api::linode::credentials::Token;
use lct_api::linode::limits::Limiter;
use lct_linode_double::{Config, Double};
use reqwest_free::Http;
use serde_json::{Value, json};

/// A tiny validator for the (dereferenced) OpenAPI 3.0 schemas: types, nullable, enum,
/// properties, required, additionalProperties: false, items, allOf/oneOf/anyOf.
fn validate(schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    if v.is_null() && schema["nullable"] == json!(true) {
        return;
    }
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            validate(s, v, at, errors);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let ok = options.iter().any(|s| {
                let mut e = Vec::new();
                validate(s, v, at, &mut e);
                e.is_empty()
            });
            if !ok {
                errors.push(format!("{at}: matches none of {key}"));
            }
        }
    }
    if let Some(choices) = schema["enum"].as_array()
        && !v.is_null()
        && !choices.contains(v)
    {
        errors.push(format!("{at}: {v} is not one of {}", Value::Array(choices.clone())));
    }
    let Some(t) = schema["type"].as_str() else { return };
    let ok = match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(format!("{at}: expected {t}, got {v}"));
        return;
    }
    if let (Some(required), Some(obj)) = (schema["required"].as_array(), v.as_object()) {
        for key in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(key) {
                errors.push(format!("{at}.{key}: required, missing"));
            }
        }
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), v.as_object()) {
        for (k, val) in obj {
            match props.get(k) {
                Some(s) => validate(s, val, &format!("{at}.{k}"), errors),
                None if schema["additionalProperties"] == json!(false) => {
                    errors.push(format!("{at}.{k}: not in the schema"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            validate(items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// The spec's path template that `path` matches (`/linode/instances/7` ->
/// `/{apiVersion}/linode/instances/{linodeId}`), preferring literal segments.
fn template<'a>(spec: &'a Value, path: &str) -> Option<&'a str> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut best: Option<(&str, usize)> = None;
    for t in spec["paths"].as_object()?.keys() {
        let tsegs: Vec<&str> = t.trim_start_matches('/').split('/').skip(1).collect();
        if tsegs.len() != segs.len() {
            continue;
        }
        let mut literal = 0;
        let ok = tsegs.iter().zip(&segs).all(|(t, s)| {
            if t.starts_with('{') {
                true
            } else {
                literal += 1;
                t == s
            }
        });
        if ok && best.is_none_or(|(_, l)| literal > l) {
            best = Some((t, literal));
        }
    }
    best.map(|(t, _)| t)
}

fn check(spec: &Value, method: &str, path: &str, status: u16, body: &Value, errors: &mut Vec<String>) -> bool {
    let path = path.split('?').next().unwrap_or(path).replace("%2F", "/");
    // Image ids hold a slash; the spec names them as one parameter.
    let lookup = if path.starts_with("/images/") && !path.starts_with("/images/upload") {
        "/images/{imageId}".to_string()
    } else {
        path.clone()
    };
    let t =
        if lookup == "/images/{imageId}" { Some("/{apiVersion}/images/{imageId}") } else { template(spec, &lookup) };
    let Some(t) = t else {
        errors.push(format!("{method} {path}: no such path in the spec"));
        return false;
    };
    let op = &spec["paths"][t][method.to_lowercase()];
    if op.is_null() {
        errors.push(format!("{method} {path}: no such operation in the spec"));
        return false;
    }
    let responses = &op["responses"];
    let response =
        if responses[status.to_string()].is_object() { &responses[status.to_string()] } else { &responses["default"] };
    let schema = &response["content"]["application/json"]["schema"];
    if schema.is_null() {
        errors.push(format!("{method} {path} {status}: no schema for this status"));
        return false;
    }
    validate(schema, body, &format!("{method} {path} {status}"), errors);
    true
}

mod reqwest_free {
    //! Requests through lct's own client (its retries off), keeping status and body.
    use super::*;

    pub struct Http {
        pub client: Client,
        pub runtime: tokio::runtime::Runtime,
    }

    impl Http {
        pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let query: Vec<(&str, String)> = if method == "GET" && !path.contains("?one") {
                vec![("page", "1".into()), ("page_size", "100".into())]
            } else {
                Vec::new()
            };
            let path = path.replace("?one", "");
            match self.runtime.block_on(self.client.call(m, &path, &query, None, body.as_ref(), Outcome::Retry)) {
                Ok(v) => (200, v),
                Err(ApiFailure::Api { status, errors, .. }) => (status, json!({ "errors": errors })),
                Err(e) => panic!("{method} {path}: {e}"),
            }
        }
    }
}

/// Where the real API (as recorded) differs from its published schema, the double does as the
/// real API does: these differences are allowed, and each must be in the recordings.
const RECORDED_DEVIATIONS: &[(&str, &str)] = &[
    ("site_type", "not in the schema"),
    ("disk_encryption", "not in the schema"),
    ("entities", "not in the schema"),
    ("udp_check_port", "not in the schema"),
    ("udp_session_timeout", "not in the schema"),
    ("created", "not in the schema"),
    ("updated", "not in the schema"),
    ("last_successful", "got null"),
    ("rdns", "got null"),
    ("secondary_entity", "got null"),
    ("rate", "got null"),
    ("gateway", "got null"),
    ("duration", "got null"),
    ("status", "\"Unknown\" is not one of"),
    // A profile's empty device slots, and a disk's volume_id, are null in the real answers.
    ("volume_id", "got null"),
    ("sda", "got null"),
    ("sdb", "got null"),
    ("sdc", "got null"),
    ("sdd", "got null"),
    ("sde", "got null"),
    ("sdf", "got null"),
    ("sdg", "got null"),
    ("sdh", "got null"),
];

fn allowed(error: &str) -> bool {
    RECORDED_DEVIATIONS.iter().any(|(field, what)| {
        error.split(':').next().is_some_and(|at| at.ends_with(&format!(".{field}"))) && error.contains(what)
    })
}

#[test]
fn every_allowed_deviation_is_in_the_recordings() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/linode-api/cassettes");
    let all: String = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    for (field, what) in RECORDED_DEVIATIONS {
        let seen = match *what {
            "got null" => all.contains(&format!("\"{field}\": null")),
            w if w.contains("Unknown") => all.contains(&format!("\"{field}\": \"Unknown\"")),
            _ => all.contains(&format!("\"{field}\":")),
        };
        assert!(seen, "{field} ({what}) is not in the recorded traffic");
    }
}

fn spec() -> Value {
    let spec_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/linode-api/openapi-v4.189.0-cluster-subset.yaml");
    serde_norway::from_str(&std::fs::read_to_string(&spec_path).expect("the spec beside the repository")).unwrap()
}

#[test]
fn the_validator_holds_responses_to_required_fields() {
    // A config interface must name its purpose (one of the spec's `required` in responses).
    let spec = spec();
    let path = "/linode/instances/1/configs/2/interfaces/3";
    let good = json!({"id": 3, "purpose": "public", "primary": true, "active": true, "ipam_address": null,
                      "label": null, "vpc_id": null, "subnet_id": null, "ipv4": null, "ip_ranges": []});
    let mut errors = Vec::new();
    check(&spec, "GET", path, 200, &good, &mut errors);
    assert!(errors.iter().all(|e| !e.contains("purpose")), "{errors:?}");
    let mut bad = good.clone();
    bad.as_object_mut().unwrap().remove("purpose");
    let mut errors = Vec::new();
    check(&spec, "GET", path, 200, &bad, &mut errors);
    assert!(errors.iter().any(|e| e.ends_with(".purpose: required, missing")), "{errors:?}");
}

#[test]
fn a_tour_of_the_double_matches_the_openapi_schemas() {
    let spec = spec();
    let double = Double::start(Config::fast());
    let retry = RetryPolicy { attempts: 1, ..RetryPolicy::default() };
    let client = Client::new(double.url(), Token::new(double.token()), Limiter::new(), retry).unwrap();
    let http = Http { client, runtime: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap() };
    let mut errors = Vec::new();
    let mut checked = 0;
    let mut go = |method: &str, path: &str, body: Option<Value>| -> Value {
        let (status, v) = http.call(method, path, body);
        if check(&spec, method, path, status, &v, &mut errors) {
            checked += 1;
        }
        v
    };
    let one = |p: String| format!("{p}?one");
    go("GET", "/regions", None);
    go("GET", &one("/regions/us-east".into()), None);
    go("GET", "/linode/types", None);
    go("GET", &one("/linode/types/g6-nanode-1".into()), None);
    let body = json!({"label":"tour-1","region":"us-east","type":"g6-standard-1","image":"linode/debian12","root_pass":"a-Long-pass-123","private_ip":true,"tags":["lct"]});
    let inst = go("POST", "/linode/instances", Some(body));
    let id = inst["id"].as_u64().expect("an instance");
    go("GET", "/linode/instances", None);
    go("GET", &one(format!("/linode/instances/{id}")), None);
    double.advance(60.0);
    go("PUT", &format!("/linode/instances/{id}"), Some(json!({"tags":["lct","x"]})));
    go("POST", &format!("/linode/instances/{id}/shutdown"), None);
    double.advance(60.0);
    go("POST", &format!("/linode/instances/{id}/boot"), None);
    double.advance(60.0);
    go("POST", &format!("/linode/instances/{id}/reboot"), None);
    double.advance(60.0);
    go("GET", &one(format!("/linode/instances/{id}/ips")), None);
    let bare = go("POST", "/linode/instances", Some(json!({"label":"tour-2","region":"us-east","type":"g6-nanode-1"})));
    let bare_id = bare["id"].as_u64().unwrap();
    go("POST", &format!("/linode/instances/{bare_id}/ips"), Some(json!({"type":"ipv4","public":false})));
    double.advance(60.0);
    let disk = go("POST", &format!("/linode/instances/{bare_id}/disks"), Some(json!({"label":"data","size":1024})));
    go("GET", &format!("/linode/instances/{bare_id}/disks"), None);
    double.advance(60.0);
    go("GET", &one(format!("/linode/instances/{bare_id}/disks/{}", disk["id"])), None);
    let config = go(
        "POST",
        &format!("/linode/instances/{bare_id}/configs"),
        Some(json!({"label":"boot","devices":{"sda":{"disk_id":disk["id"]}}})),
    );
    go("GET", &format!("/linode/instances/{bare_id}/configs"), None);
    go("GET", &one(format!("/linode/instances/{bare_id}/configs/{}", config["id"])), None);
    // The helper-disk way (nodes from lct images): a disk from an image, a raw one, a profile
    // changed to boot the other, a boot of a named profile, a resize while offline.
    let helper = go(
        "POST",
        &format!("/linode/instances/{bare_id}/disks"),
        Some(json!({"label":"lct-helper","size":2048,"image":"linode/debian12","root_pass":"aComplex#Passw0rd-here"})),
    );
    double.advance(60.0);
    let raw = go(
        "POST",
        &format!("/linode/instances/{bare_id}/disks"),
        Some(json!({"label":"lct-root","size":512,"filesystem":"raw"})),
    );
    double.advance(60.0);
    let devices = json!({"sda":{"disk_id":helper["id"]},"sdb":{"disk_id":raw["id"]}});
    go(
        "PUT",
        &format!("/linode/instances/{bare_id}/configs/{}", config["id"]),
        Some(json!({"root_device":"/dev/sda","devices":devices})),
    );
    go("POST", &format!("/linode/instances/{bare_id}/boot"), Some(json!({"config_id": config["id"]})));
    double.advance(60.0);
    go("POST", &format!("/linode/instances/{bare_id}/shutdown"), None);
    double.advance(60.0);
    go("POST", &format!("/linode/instances/{bare_id}/disks/{}/resize", disk["id"]), Some(json!({"size":900})));
    double.advance(60.0);
    go("POST", &format!("/linode/instances/{id}/clone"), Some(json!({"label":"tour-clone"})));
    go("GET", "/images", None);
    go("GET", &one("/images/linode%2Fdebian12".into()), None);
    let img = go("POST", "/images", Some(json!({"disk_id": disk["id"], "label": "tour-image"})));
    go("GET", &one(format!("/images/{}", img["id"].as_str().unwrap().replace('/', "%2F"))), None);
    go("POST", "/images/upload", Some(json!({"label":"tour-upload","region":"us-east"})));
    let vol = go("POST", "/volumes", Some(json!({"label":"tour-vol","size":20,"region":"us-east"})));
    go("GET", "/volumes", None);
    double.advance(60.0);
    go("POST", &format!("/volumes/{}/attach", vol["id"]), Some(json!({"linode_id": id})));
    double.advance(60.0);
    go("GET", &one(format!("/volumes/{}", vol["id"])), None);
    go("POST", &format!("/volumes/{}/detach", vol["id"]), None);
    let dom =
        go("POST", "/domains", Some(json!({"domain":"tour.example","type":"master","soa_email":"ops@tour.example"})));
    go("GET", "/domains", None);
    go("PUT", &format!("/domains/{}", dom["id"]), Some(json!({"ttl_sec":300})));
    let rec = go(
        "POST",
        &format!("/domains/{}/records", dom["id"]),
        Some(json!({"type":"A","name":"www","target":"203.0.113.9"})),
    );
    go("GET", &format!("/domains/{}/records", dom["id"]), None);
    go("GET", &one(format!("/domains/{}/records/{}", dom["id"], rec["id"])), None);
    go("PUT", &format!("/domains/{}/records/{}", dom["id"], rec["id"]), Some(json!({"ttl_sec":60})));
    let fw = go(
        "POST",
        "/networking/firewalls",
        Some(
            json!({"label":"tour-fw","rules":{"inbound":[{"action":"ACCEPT","protocol":"TCP","ports":"22","addresses":{"ipv4":["0.0.0.0/0"]}}],"inbound_policy":"DROP","outbound_policy":"ACCEPT"}}),
        ),
    );
    go("GET", "/networking/firewalls", None);
    go("GET", &one(format!("/networking/firewalls/{}/rules", fw["id"])), None);
    go(
        "PUT",
        &format!("/networking/firewalls/{}/rules", fw["id"]),
        Some(json!({"inbound":[],"inbound_policy":"ACCEPT","outbound_policy":"ACCEPT"})),
    );
    let dev =
        go("POST", &format!("/networking/firewalls/{}/devices", fw["id"]), Some(json!({"type":"linode","id": id})));
    go("GET", &format!("/networking/firewalls/{}/devices", fw["id"]), None);
    go("GET", &one(format!("/networking/firewalls/{}/devices/{}", fw["id"], dev["id"])), None);
    let events = go("GET", "/account/events", None);
    go("GET", &one(format!("/account/events/{}", events["data"][0]["id"])), None);
    go("POST", "/tags", Some(json!({"label":"tour-tag"})));
    go("GET", "/tags", None);
    let ss = go(
        "POST",
        "/linode/stackscripts",
        Some(json!({"label":"tour-ss","script":"#!/bin/sh\ntrue\n","images":["linode/debian12"]})),
    );
    go("GET", "/linode/stackscripts", None);
    go("GET", &one(format!("/linode/stackscripts/{}", ss["id"])), None);
    let nb = go("POST", "/nodebalancers", Some(json!({"region":"us-east","label":"tour-nb"})));
    go("GET", "/nodebalancers", None);
    let nbc = go("POST", &format!("/nodebalancers/{}/configs", nb["id"]), Some(json!({"port":80,"protocol":"http"})));
    go("GET", &format!("/nodebalancers/{}/configs", nb["id"]), None);
    let node = go(
        "POST",
        &format!("/nodebalancers/{}/configs/{}/nodes", nb["id"], nbc["id"]),
        Some(json!({"label":"tour-node","address":"192.168.128.9:80"})),
    );
    go("GET", &format!("/nodebalancers/{}/configs/{}/nodes", nb["id"], nbc["id"]), None);
    go("GET", &one(format!("/nodebalancers/{}/configs/{}/nodes/{}", nb["id"], nbc["id"], node["id"])), None);
    // Errors, in the spec's error shape.
    go("GET", &one("/linode/instances/999999".into()), None);
    go("POST", "/linode/instances", Some(json!({"label":"x","region":"us-east","type":"g6-nanode-1"})));
    go("POST", "/volumes", Some(json!({"label":"tour-vol-2","size":5,"region":"us-east"})));
    // Deletes.
    go("DELETE", &format!("/nodebalancers/{}", nb["id"]), None);
    go("DELETE", &format!("/domains/{}/records/{}", dom["id"], rec["id"]), None);
    go("DELETE", &format!("/domains/{}", dom["id"]), None);
    go("DELETE", &format!("/networking/firewalls/{}", fw["id"]), None);
    double.advance(60.0);
    go("DELETE", &format!("/volumes/{}", vol["id"]), None);
    go("DELETE", &format!("/linode/instances/{bare_id}"), None);
    errors.retain(|e| !allowed(e));
    assert!(errors.is_empty(), "{} mismatches with the spec:\n{}", errors.len(), errors.join("\n"));
    assert!(checked >= 60, "only {checked} responses checked");
    let _ = Duration::ZERO;
}
