//! package:dns-private's region views end to end (issue 23): the plan spread over regions a,
//! b and c on machine nodes (the primary and a secondary in a, a secondary in b and in c),
//! an app cluster of namespace nodes in the three regions (their private ranges overlap),
//! all joined by the mesh. Each region asks the primary (its own region at its private
//! address, the others over the mesh) and its own region's secondary, and gets for every
//! node the address that works from there: its private one in its own region, its mesh
//! address from another; the asker reaches it there. Then a node is added in one region and
//! one removed in another, and every view follows after the plans' events; with the
//! primary's lct-dns stopped, each region's secondary still answers its region. Needs root.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lct_tests::Env;
use lct_tests::fixtures::mesh::MeshDown;

/// One namespace node per region and one more in a and b: the smallest cluster that keeps a
/// member in every region when one node goes. Its events sync the mesh (over it and every
/// cluster already in the mesh: the DNS servers), push hosts files and then the `dns` action,
/// which renders every region's view on the primary.
const APP_PLAN: &str = r#"description: Askers in three regions, reaching each other by name through the mesh
groups:
  node:
    count: 5
    image: lct/netns
    regions: [a, b, c]
    hostname: "{{ cluster }}-{{ index }}"
hooks:
  created:
    - action: mesh-sync
    - action: hosts
    - action: dns
  node-added:
    - action: mesh-sync
    - action: hosts
    - action: dns
  node-removed:
    - action: mesh-sync
    - action: hosts
    - action: dns
"#;

/// package:dns-private as it is packaged, spread over regions a, b and c (with `servers=4`:
/// the primary and a secondary in a, a secondary in b and in c), its nodes in the mesh before
/// `hosts`, `configure.py` and the `dns` action (the primary listens on its mesh address, a
/// secondary of another region reaches it there, the action passes the mesh to
/// `configure.py regions`).
fn dns_plan() -> String {
    let packaged = std::fs::read_to_string(plans_dir().join("dns-private/plan.yaml")).unwrap();
    let edits = [
        (
            "    hostname: \"{{ cluster }}-{{ index }}\"\n",
            "    regions: [a, b, c]\n    hostname: \"{{ cluster }}-{{ index }}\"\n",
        ),
        ("  created:\n    - action: install\n", "  created:\n    - action: install\n    - action: mesh-sync\n"),
    ];
    edits.iter().fold(packaged, |plan, (from, to)| {
        assert_eq!(plan.matches(from).count(), 1, "package:dns-private changed: {from:?}");
        plan.replace(from, to)
    })
}

fn plans_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/lct-plan/plans")
}

/// A plan's files in the state directory: plan.yaml and, from `package`, its scripts.
fn plan_files(env: &Env, name: &str, plan: &str, package: Option<(&str, &[&str])>) -> String {
    let dir = env.state.path().join(format!("{name}-plan"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plan.yaml"), plan).unwrap();
    if let Some((package, scripts)) = package {
        for script in scripts {
            std::fs::copy(plans_dir().join(package).join(script), dir.join(script)).unwrap();
        }
    }
    dir.join("plan.yaml").to_str().unwrap().to_string()
}

/// dig inside namespace node `node`: the A answers for `name` at `server`, sorted.
fn ask(env: &Env, node: &str, server: &str, name: &str) -> Vec<String> {
    let at = format!("@{server}");
    let out = env.in_ns(node, &["dig", "+short", "+time=1", "+tries=3", &at, name, "A"]);
    let mut v: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// [`ask`] until the answer is `expected` (a view reloaded by SIGHUP, or a secondary's
/// IXFR after NOTIFY, lands a moment after the event that made it), or the answer after 10 s.
fn asked(env: &Env, node: &str, server: &str, name: &str, expected: &[String]) -> Vec<String> {
    lct_tests::fixtures::settle(Duration::from_secs(10), || ask(env, node, server, name), |v| v == expected)
}

/// What the test knows of the nodes: region, private address, and mesh address (from the
/// mesh's record), read again after each membership change.
struct Seen {
    region: BTreeMap<String, String>,
    private: BTreeMap<String, String>,
    mesh: BTreeMap<String, String>,
}

impl Seen {
    fn read(env: &Env) -> Seen {
        let nodes = env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().json_lines();
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(env.state.path().join("mesh.json")).unwrap()).unwrap();
        let name = |n: &serde_json::Value| n["name"].as_str().unwrap().to_string();
        Seen {
            region: nodes.iter().map(|n| (name(n), n["region"].as_str().unwrap().to_string())).collect(),
            private: nodes.iter().map(|n| (name(n), n["private_ipv4"][0].as_str().unwrap().to_string())).collect(),
            mesh: record["members"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(n, m)| (n.clone(), m["address"].as_str().unwrap().to_string()))
                .collect(),
        }
    }

    /// The address `target` should resolve to for an asker in `region`.
    fn expected(&self, region: &str, target: &str) -> String {
        if self.region[target] == region { self.private[target].clone() } else { self.mesh[target].clone() }
    }
}

/// The fully qualified name of a node (its cluster is its name's part before the dash).
fn fqdn(node: &str) -> String {
    let cluster = node.rsplit_once('-').unwrap().0;
    format!("{node}.{cluster}.lct.internal")
}

/// Every asker asks `server(its region)` for every target, gets the address that works from
/// its region, and reaches the target there.
fn every_region_resolves(env: &Env, seen: &Seen, askers: &[&str], targets: &[&str], server: impl Fn(&str) -> String) {
    for asker in askers {
        let region = &seen.region[*asker];
        let server = server(region);
        for target in targets {
            let expected = seen.expected(region, target);
            let want = vec![expected.clone()];
            assert_eq!(
                asked(env, asker, &server, &fqdn(target), &want),
                want,
                "{asker} (region {region}) asks {server} for {target} (region {})",
                seen.region[*target]
            );
            assert!(env.pings(asker, &expected), "{asker} reaches {target} at {expected}, the address it was given");
        }
    }
}

/// No asker of `askers` gets `target` from `server(its region)`.
fn nobody_resolves(env: &Env, seen: &Seen, askers: &[&str], target: &str, server: impl Fn(&str) -> String) {
    for asker in askers {
        let server = server(&seen.region[*asker]);
        let seen = asked(env, asker, &server, &fqdn(target), &[]);
        assert_eq!(seen, Vec::<String>::new(), "{asker} asks {server}: {target} is gone");
    }
}

#[test]
#[ignore = "needs root: network namespaces, systemd-nspawn machines and wireguard-go (scripts/test runs it as root)"]
fn the_dns_private_plan_answers_each_region_with_the_address_that_works_from_there() {
    lct_tests::fixtures::dns::require(&["wg", "wireguard-go", "dig"]);
    let started = Instant::now();
    let env = Env::new();
    let _down = MeshDown::new(&env, "");
    let dns = plan_files(&env, "dns", &dns_plan(), Some(("dns-private", &["configure.py"])));
    let app = plan_files(&env, "app", APP_PLAN, None);
    env.run("lct-plan", &["create", "dns", &dns, "--set", "servers=4"]).ok();
    env.run("lct-plan", &["create", "app", &app]).ok();
    let created = started.elapsed();

    // dns-1 (the primary) and dns-4 in region a, dns-2 in b, dns-3 in c; app-1 and app-4 in
    // a, app-2 and app-5 in b, app-3 in c. The ranges overlap.
    let seen = Seen::read(&env);
    let names = ["dns-1", "dns-2", "dns-3", "dns-4", "app-1", "app-2", "app-3", "app-4", "app-5"];
    let regions: Vec<&str> = names.iter().map(|n| seen.region[*n].as_str()).collect();
    assert_eq!(regions, ["a", "b", "c", "a", "a", "b", "c", "a", "b"]);
    let in_region = |r: &str| -> Vec<&String> {
        names.iter().filter(|n| seen.region[**n] == r).map(|n| &seen.private[*n]).collect()
    };
    assert!(in_region("a").iter().any(|a| in_region("b").contains(a)), "the ranges overlap: {:?}", seen.private);
    assert_eq!(seen.mesh.len(), 9, "every node is a mesh member: {:?}", seen.mesh);

    // The primary: its own region at its private address, the others over the mesh.
    let primary = |region: &str| seen.expected(region, "dns-1");
    let askers = ["app-1", "app-2", "app-3"];
    every_region_resolves(&env, &seen, &askers, &["app-1", "app-2", "app-3", "app-5", "dns-1"], primary);
    // Each region's secondary, asked at its private address in its region: region a's (dns-4)
    // transfers the primary's own view, b's and c's their region's with their region's key.
    let secondary_of = |region: &str| -> String {
        let node = match region {
            "a" => "dns-4",
            "b" => "dns-2",
            _ => "dns-3",
        };
        seen.private[node].clone()
    };
    every_region_resolves(&env, &seen, &askers, &["app-1", "app-2", "app-3", "dns-1"], secondary_of);

    // Membership: app-6 comes in region c (scale: node-added), app-4 (region a) goes behind
    // lct's back (reconcile: node-removed). Each event's `dns` action renders every view again;
    // the secondaries hear of it by NOTIFY.
    env.run("lct-plan", &["scale", "app", "node", "6"]).ok();
    env.run("lct-api", &["delete", "app-4"]).ok();
    env.run("lct-plan", &["reconcile", "app"]).ok();
    let seen = Seen::read(&env);
    assert_eq!(seen.region["app-6"], "c");
    assert!(!seen.mesh.contains_key("app-4"), "app-4 left the mesh: {:?}", seen.mesh);
    let primary = |region: &str| seen.expected(region, "dns-1");
    let secondary_of = |region: &str| -> String {
        seen.private[match region {
            "a" => "dns-4",
            "b" => "dns-2",
            _ => "dns-3",
        }]
        .clone()
    };
    for server in [&primary as &dyn Fn(&str) -> String, &secondary_of] {
        every_region_resolves(&env, &seen, &askers, &["app-6", "app-2"], server);
        nobody_resolves(&env, &seen, &askers, "app-4", server);
    }

    // The primary down: every region's askers get their region's view from its secondary.
    env.ssh("dns-1", "systemctl stop lct-dns").ok();
    // (dig says why it got no answer on stdout too: no line of it is an address.)
    let unanswered = ask(&env, "app-1", &seen.private["dns-1"], &fqdn("app-1"));
    assert!(!unanswered.iter().any(|l| l.parse::<std::net::Ipv4Addr>().is_ok()), "dns-1 answers: {unanswered:?}");
    every_region_resolves(&env, &seen, &askers, &["app-1", "app-2", "app-3", "app-6"], secondary_of);
    eprintln!("create dns and app {:.1} s, whole test {:.1} s", created.as_secs_f64(), started.elapsed().as_secs_f64());
}
