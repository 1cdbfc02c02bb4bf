//! Cloud Firewalls and NodeBalancers: the networking resources' paths.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::crud::{create_plain, delete_plain, id_of, update_plain};
use crate::state::*;

/// `/networking/firewalls/...` and `/nodebalancers/...`.
pub(crate) fn route(
    s: &mut State,
    method: &str,
    segs: &[&str],
    query: &HashMap<String, String>,
    filter: Option<&str>,
    body: &Value,
) -> Result<Reply, Reply> {
    Ok(match (method, segs) {
        // Cloud Firewalls.
        ("GET", ["networking", "firewalls"]) => s.list("firewalls", None, query, filter),
        ("POST", ["networking", "firewalls"]) => {
            let label = body["label"].as_str().ok_or_else(|| error(400, "label is required", Some("label")))?;
            check_label(label)?;
            let rules = firewall_rules(&body["rules"])?;
            let v = json!({ "label": label, "status": "enabled", "rules": rules, "tags": body["tags"].as_array().cloned().unwrap_or_default(), "entities": [] });
            let made = create_plain(s, "firewalls", None, v);
            let fid = made["id"].as_u64().expect("an id");
            for l in body["devices"]["linodes"].as_array().cloned().unwrap_or_default() {
                let inst = s.find("instances", l.as_u64().unwrap_or(0), None)?;
                let d = json!({ "entity": { "id": l, "type": "linode", "label": inst["label"], "url": format!("/v4/linode/instances/{l}") } });
                create_plain(s, "firewall_devices", Some(fid), d);
            }
            ok(made)
        }
        ("GET", ["networking", "firewalls", id]) => ok(public(&s.find("firewalls", id_of(id)?, None)?)),
        ("PUT", ["networking", "firewalls", id]) => {
            update_plain(s, "firewalls", id_of(id)?, None, body, &["label", "status", "tags"])
        }
        ("DELETE", ["networking", "firewalls", id]) => {
            let id = id_of(id)?;
            s.remove_children("firewall_devices", id);
            delete_plain(s, "firewalls", id, None)
        }
        ("GET", ["networking", "firewalls", id, "rules"]) => {
            ok(s.find("firewalls", id_of(id)?, None)?["rules"].clone())
        }
        ("PUT", ["networking", "firewalls", id, "rules"]) => {
            let id = id_of(id)?;
            s.find("firewalls", id, None)?;
            let rules = firewall_rules(body)?;
            let now = s.now();
            let obj = s.kind("firewalls").get_mut(&id).expect("found");
            obj.v = obj.at(now);
            obj.v["rules"] = rules.clone();
            ok(rules)
        }
        ("GET", ["networking", "firewalls", id, "devices"]) => {
            let id = id_of(id)?;
            s.find("firewalls", id, None)?;
            s.list("firewall_devices", Some(id), query, filter)
        }
        ("POST", ["networking", "firewalls", id, "devices"]) => {
            let fid = id_of(id)?;
            s.find("firewalls", fid, None)?;
            if body["type"] != json!("linode") && body["type"] != json!("nodebalancer") {
                return Err(error(400, "type must be linode or nodebalancer", Some("type")));
            }
            let eid = body["id"].as_u64().ok_or_else(|| error(400, "id is required", Some("id")))?;
            let kind = if body["type"] == json!("linode") { "instances" } else { "nodebalancers" };
            let e = s.find(kind, eid, None).map_err(|_| error(400, "Entity not found", Some("id")))?;
            let url = if kind == "instances" {
                format!("/v4/linode/instances/{eid}")
            } else {
                format!("/v4/nodebalancers/{eid}")
            };
            let d = json!({ "entity": { "id": eid, "type": body["type"], "label": e["label"], "url": url } });
            ok(create_plain(s, "firewall_devices", Some(fid), d))
        }
        ("GET", ["networking", "firewalls", id, "devices", d]) => {
            ok(public(&s.find("firewall_devices", id_of(d)?, Some(id_of(id)?))?))
        }
        ("DELETE", ["networking", "firewalls", id, "devices", d]) => {
            delete_plain(s, "firewall_devices", id_of(d)?, Some(id_of(id)?))
        }
        // NodeBalancers, their configs and nodes.
        ("GET", ["nodebalancers"]) => s.list("nodebalancers", None, query, filter),
        ("POST", ["nodebalancers"]) => {
            let region = body["region"].as_str().ok_or_else(|| error(400, "region is required", Some("region")))?;
            if !REGIONS.iter().any(|r| r.0 == region) {
                return Err(error(400, "Region does not exist.", Some("region")));
            }
            if let Some(l) = body["label"].as_str() {
                check_label(l)?;
            }
            let n = s.next_id + 1;
            let v = json!({
                "label": body["label"].as_str().map_or(format!("nodebalancer{n}"), str::to_string), "region": region,
                "hostname": format!("nb-{n}.newark.nodebalancer.example"), "ipv4": format!("203.0.113.{}", n % 250 + 1),
                "ipv6": format!("2001:db8:1::{n:x}"), "client_conn_throttle": body["client_conn_throttle"].as_u64().unwrap_or(0),
                "tags": body["tags"].as_array().cloned().unwrap_or_default(), "transfer": { "in": null, "out": null, "total": null },
            });
            ok(create_plain(s, "nodebalancers", None, v))
        }
        ("GET", ["nodebalancers", id]) => ok(public(&s.find("nodebalancers", id_of(id)?, None)?)),
        ("PUT", ["nodebalancers", id]) => {
            update_plain(s, "nodebalancers", id_of(id)?, None, body, &["label", "client_conn_throttle", "tags"])
        }
        ("DELETE", ["nodebalancers", id]) => {
            let id = id_of(id)?;
            s.remove_children("nb_configs", id);
            delete_plain(s, "nodebalancers", id, None)
        }
        ("GET", ["nodebalancers", id, "configs"]) => {
            let id = id_of(id)?;
            s.find("nodebalancers", id, None)?;
            s.list("nb_configs", Some(id), query, filter)
        }
        ("POST", ["nodebalancers", id, "configs"]) => {
            let nb = id_of(id)?;
            s.find("nodebalancers", nb, None)?;
            let port = body["port"].as_u64().unwrap_or(80);
            if !(1..=65_535).contains(&port) {
                return Err(error(400, "Port must be between 1 and 65535", Some("port")));
            }
            let protocol = body["protocol"].as_str().unwrap_or("http");
            if !["http", "https", "tcp", "udp"].contains(&protocol) {
                return Err(error(400, "Invalid protocol", Some("protocol")));
            }
            let v = json!({
                "port": port, "protocol": protocol, "algorithm": body["algorithm"].as_str().unwrap_or("roundrobin"),
                "stickiness": body["stickiness"].as_str().unwrap_or("none"), "check": body["check"].as_str().unwrap_or("none"),
                "check_interval": 0, "check_timeout": 30, "check_attempts": 3, "check_path": "", "check_body": "",
                "check_passive": true, "proxy_protocol": "none", "cipher_suite": "recommended", "ssl_commonname": "",
                "ssl_fingerprint": "", "ssl_cert": null, "ssl_key": null, "nodebalancer_id": nb,
                "nodes_status": { "up": 0, "down": 0 }, "udp_check_port": 80, "udp_session_timeout": 16,
            });
            ok(create_plain(s, "nb_configs", Some(nb), v))
        }
        ("GET", ["nodebalancers", id, "configs", c]) => {
            ok(public(&s.find("nb_configs", id_of(c)?, Some(id_of(id)?))?))
        }
        ("DELETE", ["nodebalancers", id, "configs", c]) => {
            let c = id_of(c)?;
            s.remove_children("nb_nodes", c);
            delete_plain(s, "nb_configs", c, Some(id_of(id)?))
        }
        ("GET", ["nodebalancers", id, "configs", c, "nodes"]) => {
            let c = id_of(c)?;
            s.find("nb_configs", c, Some(id_of(id)?))?;
            s.list("nb_nodes", Some(c), query, filter)
        }
        ("POST", ["nodebalancers", id, "configs", c, "nodes"]) => {
            let (nb, c) = (id_of(id)?, id_of(c)?);
            s.find("nb_configs", c, Some(nb))?;
            let label = body["label"].as_str().ok_or_else(|| error(400, "label is required", Some("label")))?;
            check_label_len(label, "label")?;
            let address = body["address"].as_str().ok_or_else(|| error(400, "address is required", Some("address")))?;
            let ok_address = address.rsplit_once(':').is_some_and(|(ip, port)| {
                ip.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_private()) && port.parse::<u16>().is_ok()
            });
            if !ok_address {
                return Err(error(400, "Must be a private IPv4 address with a port (192.168.x.x:80)", Some("address")));
            }
            let v = json!({
                "label": label, "address": address, "status": "Unknown", "weight": body["weight"].as_u64().unwrap_or(100),
                "mode": body["mode"].as_str().unwrap_or("accept"), "config_id": c, "nodebalancer_id": nb,
            });
            ok(create_plain(s, "nb_nodes", Some(c), v))
        }
        ("GET", ["nodebalancers", _, "configs", c, "nodes", n]) => {
            ok(public(&s.find("nb_nodes", id_of(n)?, Some(id_of(c)?))?))
        }
        ("DELETE", ["nodebalancers", _, "configs", c, "nodes", n]) => {
            delete_plain(s, "nb_nodes", id_of(n)?, Some(id_of(c)?))
        }
        _ => error(404, "Not found", None),
    })
}

/// A ruleset as the API checks it: at most 25 rules, known actions and protocols.
fn firewall_rules(rules: &Value) -> Result<Value, Reply> {
    let mut out = json!({
        "inbound": rules["inbound"].as_array().cloned().unwrap_or_default(),
        "outbound": rules["outbound"].as_array().cloned().unwrap_or_default(),
        "inbound_policy": rules["inbound_policy"].as_str().unwrap_or("ACCEPT"),
        "outbound_policy": rules["outbound_policy"].as_str().unwrap_or("ACCEPT"),
    });
    let count = out["inbound"].as_array().map_or(0, Vec::len) + out["outbound"].as_array().map_or(0, Vec::len);
    if count > 25 {
        return Err(error(400, "A firewall may have at most 25 rules.", Some("rules")));
    }
    for dir in ["inbound", "outbound"] {
        for (i, r) in out[dir].as_array().cloned().unwrap_or_default().iter().enumerate() {
            let field = |f: &str| format!("rules.{dir}[{i}].{f}");
            if !matches!(r["action"].as_str(), Some("ACCEPT" | "DROP")) {
                return Err(error(400, "Must be ACCEPT or DROP", Some(&field("action"))));
            }
            if !matches!(r["protocol"].as_str(), Some("TCP" | "UDP" | "ICMP" | "IPENCAP")) {
                return Err(error(400, "Must be TCP, UDP, ICMP or IPENCAP", Some(&field("protocol"))));
            }
        }
    }
    for p in ["inbound_policy", "outbound_policy"] {
        if !matches!(out[p].as_str(), Some("ACCEPT" | "DROP")) {
            return Err(error(400, "Must be ACCEPT or DROP", Some(&format!("rules.{p}"))));
        }
    }
    out["version"] = json!(1);
    out["fingerprint"] = json!("0011223344");
    Ok(out)
}
