//! The client parses what the real API sent: every recorded response of the resources lct
//! reads (shared/linode-api/cassettes, real traffic recorded by linodego) is decoded into
//! lct's types, and every error body into the error type.

use std::path::PathBuf;

use lct_api::linode::types::*;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/linode-api")
}

fn parse<T: DeserializeOwned>(body: &Value) -> Result<(), String> {
    serde_path_to_error::deserialize::<_, T>(body.clone()).map(|_| ()).map_err(|e| e.to_string())
}

fn page<T: DeserializeOwned>(body: &Value) -> Result<(), String> {
    parse::<Page<T>>(body)
}

/// The type a response decodes into, by method and path (`{n}` for a number).
fn check(method: &str, path: &str, body: &Value) -> Option<Result<(), String>> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let n = |s: &str| s.parse::<u64>().is_ok();
    let list = method == "GET";
    Some(match segs.as_slice() {
        ["linode", "instances"] if list => page::<Instance>(body),
        ["linode", "instances"] => parse::<Instance>(body),
        ["linode", "instances", id] if n(id) && method != "DELETE" => parse::<Instance>(body),
        ["linode", "instances", id, "clone"] if n(id) => parse::<Instance>(body),
        ["linode", "instances", _, "disks"] if list => page::<Disk>(body),
        ["linode", "instances", _, "disks"] => parse::<Disk>(body),
        ["linode", "instances", _, "disks", d] if n(d) && method != "DELETE" => parse::<Disk>(body),
        ["linode", "instances", _, "configs"] if list => page::<InstanceConfig>(body),
        ["linode", "instances", _, "configs"] => parse::<InstanceConfig>(body),
        ["linode", "instances", _, "configs", c] if n(c) && method != "DELETE" => parse::<InstanceConfig>(body),
        ["linode", "instances", _, "ips"] if method == "POST" => parse::<IpAddress>(body),
        ["linode", "instances", _, "volumes"] => page::<Volume>(body),
        ["linode", "types"] => page::<LinodeType>(body),
        ["linode", "types", _] => parse::<LinodeType>(body),
        ["linode", "stackscripts"] if list => page::<StackScript>(body),
        ["linode", "stackscripts"] => parse::<StackScript>(body),
        ["linode", "stackscripts", id] if n(id) && method != "DELETE" => parse::<StackScript>(body),
        ["images"] if list => page::<Image>(body),
        ["images"] => parse::<Image>(body),
        ["images", "upload"] => parse::<ImageUpload>(body),
        ["images", id] if id.contains("%2F") && method != "DELETE" => parse::<Image>(body),
        ["volumes"] if list => page::<Volume>(body),
        ["volumes"] => parse::<Volume>(body),
        ["volumes", id] if n(id) && method != "DELETE" => parse::<Volume>(body),
        ["domains"] if list => page::<Domain>(body),
        ["domains"] => parse::<Domain>(body),
        ["domains", id] if n(id) && method != "DELETE" => parse::<Domain>(body),
        ["domains", _, "clone"] => parse::<Domain>(body),
        ["domains", _, "records"] if list => page::<DomainRecord>(body),
        ["domains", _, "records"] => parse::<DomainRecord>(body),
        ["domains", _, "records", r] if n(r) && method != "DELETE" => parse::<DomainRecord>(body),
        ["networking", "firewalls"] if list => page::<Firewall>(body),
        ["networking", "firewalls"] => parse::<Firewall>(body),
        ["networking", "firewalls", id] if n(id) && method != "DELETE" => parse::<Firewall>(body),
        ["networking", "firewalls", _, "rules"] => parse::<FirewallRules>(body),
        ["networking", "firewalls", _, "devices"] if list => page::<FirewallDevice>(body),
        ["networking", "firewalls", _, "devices"] => parse::<FirewallDevice>(body),
        ["networking", "firewalls", _, "devices", d] if n(d) && method != "DELETE" => parse::<FirewallDevice>(body),
        ["networking", "ips", _] if method != "DELETE" => parse::<IpAddress>(body),
        ["regions"] => page::<Region>(body),
        ["account", "events"] => page::<Event>(body),
        ["account", "events", id] if n(id) => parse::<Event>(body),
        ["tags"] if list => page::<Tag>(body),
        ["tags"] => parse::<Tag>(body),
        ["nodebalancers"] if list => page::<NodeBalancer>(body),
        ["nodebalancers"] => parse::<NodeBalancer>(body),
        ["nodebalancers", id] if n(id) && method != "DELETE" => parse::<NodeBalancer>(body),
        ["nodebalancers", _, "configs"] if list => page::<NodeBalancerConfig>(body),
        ["nodebalancers", _, "configs"] => parse::<NodeBalancerConfig>(body),
        ["nodebalancers", _, "configs", c] if n(c) && method != "DELETE" => parse::<NodeBalancerConfig>(body),
        ["nodebalancers", _, "configs", _, "nodes"] if list => page::<NodeBalancerNode>(body),
        ["nodebalancers", _, "configs", _, "nodes"] => parse::<NodeBalancerNode>(body),
        ["nodebalancers", _, "configs", _, "nodes", id] if n(id) && method != "DELETE" => {
            parse::<NodeBalancerNode>(body)
        }
        _ => return None,
    })
}

#[test]
fn every_recorded_response_of_lcts_resources_parses() {
    let dir = shared().join("cassettes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (shared/linode-api must sit beside the repository)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let (mut parsed, mut errors_parsed) = (0, 0);
    let mut failures = Vec::new();
    for file in &files {
        let cassette: Value = serde_norway::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for interaction in cassette["interactions"].as_array().into_iter().flatten() {
            let method = interaction["request"]["method"].as_str().unwrap_or_default();
            let url = interaction["request"]["url"].as_str().unwrap_or_default();
            let path = url
                .split('?')
                .next()
                .unwrap_or_default()
                .trim_start_matches("https://api.linode.com")
                .trim_start_matches("/v4beta")
                .trim_start_matches("/v4");
            let code = interaction["response"]["code"].as_u64().unwrap_or(0);
            let text = interaction["response"]["body"].as_str().unwrap_or_default();
            if text.trim().is_empty() {
                continue;
            }
            let Ok(body) = serde_json::from_str::<Value>(text) else {
                failures.push(format!("{}: {method} {path}: body is not JSON", file.display()));
                continue;
            };
            if !(200..300).contains(&code) {
                match parse::<ApiErrors>(&body) {
                    Ok(()) => errors_parsed += 1,
                    Err(e) => failures.push(format!("{}: {method} {path} ({code}): {e}", file.display())),
                }
                continue;
            }
            if body == serde_json::json!({}) {
                continue; // actions and deletes
            }
            match check(method, path, &body) {
                Some(Ok(())) => parsed += 1,
                Some(Err(e)) => failures.push(format!("{}: {method} {path}: {e}", file.display())),
                None => {}
            }
        }
    }
    assert!(failures.is_empty(), "{} responses do not parse:\n{}", failures.len(), failures.join("\n"));
    assert!(parsed > 500, "only {parsed} responses checked");
    assert!(errors_parsed > 100, "only {errors_parsed} error bodies checked");
    eprintln!("{parsed} recorded responses and {errors_parsed} error bodies parse");
}
