//! `lct-plan reconcile` and the mesh: it syncs a cluster's mesh and undoes drift on every member.

use lct_tests::Env;
use lct_tests::fixtures::mesh::MeshDown;
use serde_json::Value;

use super::fw_lab;

/// Creates cluster `name` from a plan of three namespace nodes over regions a and b
/// (round-robin: NAME-1 and NAME-3 in a, NAME-2 in b), `rest` ending the plan's text.
fn create_spread(env: &Env, name: &str, rest: &str) {
    let plan = env.state.path().join(format!("{name}.yaml"));
    let groups = "description: spread over the mesh\ngroups:\n  server:\n    count: 3\n    image: lct/netns\n    regions: [a, b]\n";
    std::fs::write(&plan, format!("{groups}{rest}")).unwrap();
    env.run("lct-plan", &["create", name, plan.to_str().unwrap()]).ok();
}

/// `lct-plan reconcile` syncs the mesh of a cluster that has one: the plan names no
/// `mesh-sync` (its nodes joined the mesh by hand), a leader is deleted behind lct's back (no
/// event moves it), and reconcile gives region a another leader, whose firewalls follow: the
/// regions reach each other again over the mesh through default-deny tables.
#[test]
#[ignore = "needs root: network namespaces, nftables and wireguard-go (scripts/test runs it as root)"]
fn reconcile_syncs_the_mesh_of_a_cluster_that_has_one() {
    lct_tests::fixtures::dns::require(&["wg", "wireguard-go"]);
    let env = Env::new();
    create_spread(
        &env,
        "sp",
        "    services:\n      quorum:\n        ports: [2888/tcp]\nfirewall:\n  admin: [\"203.0.113.254/32\"]\n  allow:\n    \
         - {from: self, to: server.quorum}\nhooks:\n  created:\n    - action: firewall\n",
    );
    let _down = MeshDown::new(&env, "");
    env.run("lct-mesh", &["sync"]).ok();
    env.run("lct-fw", &["push"]).ok();
    // Round-robin over [a, b]: sp-1 and sp-3 in a (sp-1 leads), sp-2 in b.
    let recorded = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(env.state.path().join("mesh.json")).unwrap()).unwrap()
    };
    assert_eq!(recorded()["leaders"]["a"], "sp-1", "{}", recorded());
    let mesh = |n: &str| recorded()["members"][n]["address"].as_str().unwrap().to_string();
    let _listen = fw_lab::Listeners::start(&env, "sp-3", &[2888]);
    assert!(fw_lab::connects(&env, "sp-2", &mesh("sp-3"), 2888), "sp-2 -> sp-3 through sp-1");

    env.run("lct-api", &["delete", "sp-1"]).ok();
    let out = env.run("lct-plan", &["reconcile", "sp", "-o", "jsonl"]).ok();
    assert!(out.stdout.contains("\"mesh-sync\""), "{}", out.stdout);
    assert_eq!(recorded()["leaders"]["a"], "sp-3", "{}", recorded());
    assert!(fw_lab::connects(&env, "sp-2", &mesh("sp-3"), 2888), "sp-2 -> sp-3, a's new leader");
    env.run("lct-plan", &["destroy", "sp"]).ok();
}

/// `lct-plan reconcile` is the drift repair: it verifies every mesh member, not only the
/// nodes whose planned configuration changed since they last applied it. A member's mesh
/// routes flushed by hand and the other region's leader's interface deleted (its wireguard-go
/// ends with it) are put back, and the regions reach each other over the mesh again. The
/// plan's `mesh-sync` of an event stays incremental: that sync trusts the record of what each
/// node applied, and would have touched neither node.
#[test]
#[ignore = "needs root: network namespaces and wireguard-go (scripts/test runs it as root)"]
fn reconcile_repairs_mesh_drift_on_every_member() {
    lct_tests::fixtures::dns::require(&["wg", "wireguard-go"]);
    let env = Env::new();
    create_spread(&env, "dr", "hooks:\n  created:\n    - action: mesh-sync\n");
    let _down = MeshDown::new(&env, "");
    // Round-robin over [a, b]: dr-1 and dr-3 in a (dr-1 leads), dr-2 in b (leads).
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(env.state.path().join("mesh.json")).unwrap()).unwrap();
    assert!(recorded["leaders"]["a"] == "dr-1" && recorded["leaders"]["b"] == "dr-2", "{recorded}");
    let member = |n: &str, field: &str| recorded["members"][n][field].as_str().unwrap().to_string();
    let (dr2, dr3) = (member("dr-2", "address"), member("dr-3", "address"));
    assert!(env.pings("dr-3", &dr2) && env.pings("dr-2", &dr3), "dr-3 <-> dr-2 across regions");

    // Drift behind lct's back: dr-3's mesh routes (proto 77) and dr-2's WireGuard interface.
    env.in_ns("dr-3", &["ip", "route", "flush", "proto", "77"]).ok();
    let dr2_iface = member("dr-2", "local_interface");
    env.in_ns("dr-2", &["ip", "link", "del", &dr2_iface]).ok();
    assert!(!env.pings("dr-3", &dr2), "the drift cut dr-3 off from region b");

    let out = env.run("lct-plan", &["reconcile", "dr", "-o", "jsonl"]).ok();
    assert!(out.stdout.contains("\"mesh-sync\""), "{}", out.stdout);
    let routes = env.in_ns("dr-3", &["ip", "-4", "route", "show", "proto", "77"]).ok().stdout;
    assert!(!routes.trim().is_empty(), "dr-3's mesh routes are back");
    assert_eq!(env.in_ns("dr-2", &["ip", "link", "show", &dr2_iface]).status, 0, "dr-2's interface is back");
    // dr-2's new WireGuard has no session: its own first packet makes one with a's leader
    // (which, holding the old session, would send into it for a while before it noticed).
    let started = std::time::Instant::now();
    while !(env.pings("dr-2", &dr3) && env.pings("dr-3", &dr2)) {
        let shown = env.in_ns("dr-2", &["wg", "show", &dr2_iface]);
        assert!(
            started.elapsed().as_secs() < 10,
            "dr-3 <-> dr-2 over the mesh again: {}{}",
            shown.stdout,
            shown.stderr
        );
    }
    env.run("lct-plan", &["destroy", "dr"]).ok();
}
