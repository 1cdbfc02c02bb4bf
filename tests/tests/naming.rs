//! One naming rule (lct-core's `naming`): lct-hosts and lct-dns give every node the same
//! fully qualified name, for clusters with and without a domain of their own.

use std::collections::BTreeMap;

use lct_tests::Env;

fn node(cluster: &str, name: &str, last: u8) -> String {
    let (private, public) = (format!("192.168.128.{last}"), format!("203.0.113.{last}"));
    lct_tests::fixtures::node(cluster, "server", name, &private, Some(&public))
}

/// node -> its canonical (first) name in lct-hosts' private entries.
fn hosts_names(env: &Env, input: &str, extra_env: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut cmd = env.command("lct-hosts", &["render", "--no-ipv6"]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = lct_tests::run_command(cmd, input).ok();
    out.json_lines()
        .iter()
        .filter(|l| l["kind"] == "host-entry")
        .map(|l| (l["node"].as_str().unwrap().to_string(), l["names"][0].as_str().unwrap().to_string()))
        .collect()
}

/// node address -> the name of lct-dns's internal A record for it (not the group's).
fn dns_names(env: &Env, input: &str, args: &[&str], extra_env: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut all = vec!["zone", "--serial", "1", "--no-reverse"];
    all.extend_from_slice(args);
    let mut cmd = env.command("lct-dns", &all);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = lct_tests::run_command(cmd, input).ok();
    out.json_lines()
        .iter()
        .filter(|l| l["kind"] == "dns-record" && l["type"] == "A" && l["view"] == "internal")
        .map(|l| {
            (l["name"].as_str().unwrap().trim_end_matches('.').to_string(), l["data"].as_str().unwrap().to_string())
        })
        .filter(|(name, _)| !name.starts_with("server.") && !name.starts_with("ns1."))
        .map(|(name, addr)| (addr, name))
        .collect()
}

#[test]
fn hosts_and_dns_agree_on_every_fqdn() {
    let env = Env::new();
    // zk has a domain inside the zone, pg none (so pg.PARENT), far a domain outside the zone.
    env.run("lct-inventory", &["clusters", "set", "zk", "--domain", "zk.prod.lct.internal"]).ok();
    env.run("lct-inventory", &["clusters", "set", "far", "--domain", "far.example.org"]).ok();
    let input = [node("zk", "zk-1", 1), node("zk", "zk-2", 2), node("pg", "pg-1", 3), node("far", "far-1", 4)].concat();

    let hosts = hosts_names(&env, &input, &[]);
    assert_eq!(hosts["zk-1"], "zk-1.zk.prod.lct.internal");
    assert_eq!(hosts["pg-1"], "pg-1.pg.lct.internal");
    assert_eq!(hosts["far-1"], "far-1.far.example.org");

    let dns = dns_names(&env, &input, &["--domain", "lct.internal"], &[]);
    let by_address = |last: u8| dns.get(&format!("192.168.128.{last}")).cloned();
    assert_eq!(by_address(1).as_deref(), Some(hosts["zk-1"].as_str()));
    assert_eq!(by_address(2).as_deref(), Some(hosts["zk-2"].as_str()));
    assert_eq!(by_address(3).as_deref(), Some(hosts["pg-1"].as_str()));
    // Outside the zone: not served by it (and never under a name hosts does not give).
    assert_eq!(by_address(4), None);
    // The zone of far's own domain serves it, under the same name.
    let far = dns_names(&env, &input, &["--domain", "example.org"], &[]);
    assert_eq!(far.get("192.168.128.4").map(String::as_str), Some(hosts["far-1"].as_str()));

    // Another parent (LCT_DOMAIN) moves the clusters without a domain, in both tools alike.
    let parent = [("LCT_DOMAIN", "corp.internal")];
    let hosts = hosts_names(&env, &input, &parent);
    assert_eq!(hosts["pg-1"], "pg-1.pg.corp.internal");
    assert_eq!(hosts["zk-1"], "zk-1.zk.prod.lct.internal");
    let dns = dns_names(&env, &input, &[], &parent);
    assert_eq!(dns.get("192.168.128.3"), Some(&hosts["pg-1"]));
}
