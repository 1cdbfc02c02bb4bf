//! lct-dns answers by the asker's region: three regions of the local cloud whose private
//! ranges overlap, joined by lct-mesh (wireguard-go in namespace nodes); one server in region
//! a answers every region with the address that works from there (each answer is pinged from
//! where it was asked), and its public side with the external view only, whatever source an
//! asker forges, its configuration rendered by package:dns-private's `configure.py regions`
//! (what the `dns` action runs on the primary). Needs root. Without root: that rendering
//! over three regions and membership changes, and its bad input.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use lct_tests::fixtures::mesh::MeshDown;
use lct_tests::{Background, Env};

/// dig inside `node`'s namespace: the A answers for `name` at `server`, sorted (`extra`:
/// more of dig's options, such as `-b SOURCE`).
fn ask(env: &Env, node: &str, server: &str, name: &str, extra: &[&str]) -> Vec<String> {
    let at = format!("@{server}");
    let mut args = vec!["dig", "+short", "+time=1", "+tries=3", at.as_str()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[name, "A"]);
    let mut v: Vec<String> = env.in_ns(node, &args).stdout.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// One answer, as [`ask`] returns it.
fn one(address: &str) -> Vec<String> {
    vec![address.to_string()]
}

/// dig's whole answer (every section), as [`ask`] asks.
fn whole_answer(env: &Env, node: &str, server: &str, name: &str, extra: &[&str]) -> String {
    let at = format!("@{server}");
    // +nocmd: the command line (with a forged source in it) is not part of the answer.
    let mut args = vec!["dig", "+nocmd", "+time=1", "+tries=3", at.as_str()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[name, "A"]);
    env.in_ns(node, &args).stdout
}

#[test]
#[ignore = "needs root: network namespaces and wireguard-go (scripts/test runs it as root)"]
fn a_server_answers_each_region_with_the_address_that_works_from_there() {
    lct_tests::fixtures::dns::require(&["wg", "wireguard-go", "dig"]);
    let env = Env::new();
    for (cluster, region, names) in
        [("ra", "a", ["a-1", "a-2"]), ("rb", "b", ["b-1", "b-2"]), ("rc", "c", ["c-1", "c-2"])]
    {
        env.run("lct-api", &["create", "--cluster", cluster, "--region", region, "--name", names[0], names[1]]).ok();
    }
    let input = env.run("lct-inventory", &["query", "-o", "jsonl"]).ok().stdout;
    let down = MeshDown::new(&env, &input);
    let sync = env.run_with_input("lct-mesh", &["sync"], &input).ok();
    let mesh: BTreeMap<String, String> = sync
        .json_lines()
        .iter()
        .map(|n| (n["node"].as_str().unwrap().to_string(), n["address"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(mesh.len(), 6, "{}", sync.stdout);
    let private = |node: &str| env.node_address(node, "private_ipv4");
    let public = |node: &str| env.node_address(node, "public_ipv4");
    // The ranges overlap: region a's a-2 and region b's b-2 hold one private address.
    assert_eq!(private("a-2"), private("b-2"));
    assert_eq!(private("a-1"), private("c-1"));

    // A server on a-2 configured as package:dns-private's primary is: its own view as region
    // a sees it (what the `dns` action's `lct-dns update --region` makes), then the plan's
    // `configure.py regions` (what the `dns` action runs there next) renders every other
    // region's view (`zone --region`: other regions' members by their mesh addresses) and
    // the configuration that answers each region from its own.
    let dir = env.state.path().join("dns");
    std::fs::create_dir_all(&dir).unwrap();
    let (a2_private, a2_mesh, a2_public) = (private("a-2"), mesh["a-2"].clone(), public("a-2"));
    let settings = serde_json::json!({
        "node": "a-2", "domain": "lct.internal", "internal": "192.168.128.0/17", "private": a2_private,
        "public": a2_public, "secondary": null, "dnssec": "off", "stats": false, "state": dir.join("state"),
    });
    std::fs::write(dir.join("dns-private.json"), settings.to_string()).unwrap();
    env.run("lct-dns", &["keygen", "lct-update", "--out", dir.join("lct-update.key").to_str().unwrap()]).ok();
    let mut region_args = vec!["--region=local:a".to_string()];
    region_args.extend(mesh.iter().map(|(node, address)| format!("--mesh-address={node}={address}")));
    let mut own = vec!["zone", "--domain", "lct.internal", "--parent-domain", "lct.internal"];
    own.extend(region_args.iter().map(String::as_str));
    std::fs::write(dir.join("zones.jsonl"), env.run_with_input("lct-dns", &own, &input).ok().stdout).unwrap();
    let rendered = render_regions(&env, &dir, &region_args, &input).ok();
    assert!(rendered.stdout.contains("2 region views"), "{}", rendered.stdout);
    // One socket, and no response rate limit: the attack below asks many times from one
    // source (top-level keys go before the rendered tables).
    let config = std::fs::read_to_string(dir.join("dns.toml")).unwrap();
    let config = format!("udp_sockets = 1\n{config}\n[rate_limit]\nresponses_per_second = 0\n");
    std::fs::write(dir.join("dns.toml"), config).unwrap();
    let mut serve = Command::new("ip");
    serve
        .args(["netns", "exec", &env.ns("a-2")])
        .arg(lct_tests::bin("lct-dns"))
        .args(["-v", "serve", "--config", dir.join("dns.toml").to_str().unwrap()])
        .env("LCT_STATE_DIR", &dir);
    let _server = Background::spawn_logged(serve, &dir.join("lct-dns.log"));
    let a2_name = "a-2.ra.lct.internal";
    lct_tests::fixtures::until("the server in region a answers", Duration::from_secs(20), || {
        !ask(&env, "a-1", &a2_private, a2_name, &[]).is_empty()
    });

    // Region a asks for its own node: the private address (a-2's, 192.168.128.2, which in
    // region b is b-2's), over the private network or the mesh alike.
    assert_eq!(ask(&env, "a-1", &a2_private, a2_name, &[]), one(&a2_private));
    assert_eq!(ask(&env, "a-1", &a2_mesh, a2_name, &[]), one(&a2_private));
    assert!(env.pings("a-1", &a2_private));
    // Region b asks the server by its mesh address (over b's leader, the tunnel, a's
    // leader): region a's node by its mesh address, which reaches it from there.
    for node in ["b-1", "b-2"] {
        assert_eq!(ask(&env, node, &a2_mesh, a2_name, &[]), one(&a2_mesh), "{node} asks for a-2");
        assert!(env.pings(node, &a2_mesh), "{node} reaches a-2 at the address it was given");
    }
    assert_eq!(ask(&env, "b-2", &a2_mesh, "c-1.rc.lct.internal", &[]), one(&mesh["c-1"]));
    // Region c asks for a node of its own: c's private address (192.168.128.1, which in
    // region a is a-1's), and it reaches c-1 there.
    assert_eq!(ask(&env, "c-2", &a2_mesh, "c-1.rc.lct.internal", &[]), one(&private("c-1")));
    assert!(env.pings("c-2", &private("c-1")));
    assert_eq!(ask(&env, "c-2", &a2_mesh, a2_name, &[]), one(&a2_mesh), "region a from c: the mesh");
    // The outside: public addresses.
    assert_eq!(ask(&env, "outside", &a2_public, a2_name, &[]), one(&a2_public));

    // Attack: the outside forges a source of region b's (b-2's mesh address) or of the
    // private range toward the server's public address, and a route makes the answer come
    // back to it (an attacker who sees replies). The public side answers the external view:
    // no private or mesh address in any section.
    let outside_public = {
        let route = env.in_ns("outside", &["ip", "-4", "-o", "route", "get", &a2_public]).ok().stdout;
        route.split_whitespace().skip_while(|w| *w != "src").nth(1).unwrap().to_string()
    };
    for forged in [mesh["b-2"].clone(), "192.168.128.77".to_string()] {
        let host = format!("{forged}/32");
        env.in_ns("outside", &["ip", "addr", "add", &host, "dev", "lo"]).ok();
        // (a-2 has a route to b-2's mesh address, through its leader: put back after.)
        let kept = env.in_ns("a-2", &["ip", "route", "show", &host]).ok().stdout.trim().to_string();
        env.in_ns("a-2", &["ip", "route", "replace", &host, "via", &outside_public]).ok();
        let answer = whole_answer(&env, "outside", &a2_public, a2_name, &["-b", &forged]);
        assert!(answer.contains("status: NOERROR"), "{forged}: {answer}");
        let short = ask(&env, "outside", &a2_public, a2_name, &["-b", &forged]);
        assert_eq!(short, one(&a2_public), "a source of {forged} on the public side");
        assert!(!answer.contains("192.168.") && !answer.contains("100.64."), "{forged}: {answer}");
        let other = whole_answer(&env, "outside", &a2_public, "c-1.rc.lct.internal", &["-b", &forged]);
        assert!(other.contains(&public("c-1")) && !other.contains("192.168.") && !other.contains("100.64."), "{other}");
        env.in_ns("a-2", &["ip", "route", "del", &host]).ok();
        if !kept.is_empty() {
            let mut back = vec!["ip", "route", "replace"];
            back.extend(kept.split_whitespace());
            env.in_ns("a-2", &back).ok();
        }
        env.in_ns("outside", &["ip", "addr", "del", &host, "dev", "lo"]).ok();
    }
    // The mesh route is back: region b is answered over the mesh again.
    assert_eq!(ask(&env, "b-2", &a2_mesh, a2_name, &[]), one(&a2_mesh));
    drop(down);
}

/// package:dns-private's configure.py, which the `dns` action runs on the primary as
/// `regions` (here with `--etc` and `--no-reload`: rendered into `dir`, no service touched),
/// lct's programs first on PATH; the inventory on stdin.
fn render_regions(env: &Env, dir: &std::path::Path, args: &[String], input: &str) -> lct_tests::Run {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/lct-plan/plans/dns-private/configure.py");
    let bin = lct_tests::bin("lct-dns");
    let path = format!("{}:{}", bin.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new("python3");
    command
        .arg(script)
        .arg("regions")
        .args(args)
        .arg(format!("--etc={}", dir.display()))
        .arg("--no-reload")
        .env("PATH", path)
        .env("LCT_STATE_DIR", env.state.path());
    lct_tests::run_command(command, input)
}

/// The settings configure.py keeps on a primary (node dns-1, region a, public side on).
fn primary_settings(dir: &std::path::Path, dnssec: &str) -> String {
    serde_json::json!({
        "node": "dns-1", "domain": "lct.internal", "internal": "192.168.128.0/17",
        "private": "192.168.128.2", "public": "203.0.113.2", "secondary": "192.168.128.3",
        "dnssec": dnssec, "stats": false, "state": dir.join("state"),
    })
    .to_string()
}

/// A node record of the inventory.
fn node_line(cluster: &str, name: &str, region: &str, private: &str, public: &str) -> String {
    serde_json::json!({
        "kind": "node", "cluster": cluster, "group": "g", "name": name, "provider": "local", "region": region,
        "status": "running", "private_ipv4": [private], "public_ipv4": [public], "private_ipv6": [],
        "public_ipv6": [], "tags": []
    })
    .to_string()
        + "\n"
}

#[test]
fn the_plan_renders_a_view_per_region_and_follows_membership() {
    let env = Env::new();
    let dir = env.state.path().join("etc");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dns-private.json"), primary_settings(&dir, "off")).unwrap();
    for key in ["lct-update", "lct-transfer"] {
        env.run("lct-dns", &["keygen", key, "--out", dir.join(format!("{key}.key")).to_str().unwrap()]).ok();
    }
    // Overlapping private ranges: dns-1 (a), b-1 (b) and c-1 (c) hold 192.168.128.2.
    let mut input = node_line("dns", "dns-1", "a", "192.168.128.2", "203.0.113.2")
        + &node_line("dns", "dns-2", "a", "192.168.128.3", "203.0.113.3")
        + &node_line("rb", "b-1", "b", "192.168.128.2", "203.0.113.12")
        + &node_line("rb", "b-2", "b", "192.168.128.4", "203.0.113.14")
        + &node_line("rc", "c-1", "c", "192.168.128.2", "203.0.113.22");
    let mesh = |members: &[(&str, &str)]| -> Vec<String> {
        std::iter::once("--region=local:a".to_string())
            .chain(members.iter().map(|(n, a)| format!("--mesh-address={n}={a}")))
            .collect()
    };
    let all = [
        ("dns-1", "100.64.0.1"),
        ("dns-2", "100.64.0.2"),
        ("b-1", "100.64.0.3"),
        ("b-2", "100.64.0.4"),
        ("c-1", "100.64.0.5"),
    ];
    // The primary's own view as the `dns` action's update makes it (`--region`, the mesh).
    let mut own = vec!["zone", "--domain", "lct.internal", "--parent-domain", "lct.internal"];
    let own_args = mesh(&all);
    own.extend(own_args.iter().map(String::as_str));
    std::fs::write(dir.join("zones.jsonl"), env.run_with_input("lct-dns", &own, &input).ok().stdout).unwrap();

    let first = render_regions(&env, &dir, &mesh(&all), &input).ok();
    assert!(first.stdout.contains("2 region views: restarted"), "{}", first.stdout);
    let config = std::fs::read_to_string(dir.join("dns.toml")).unwrap();
    // Listens on its mesh address too; the public side answers the external view only; its
    // region's members' mesh addresses are internal; b and c answered from their views.
    assert!(config.contains(r#"listen = ["192.168.128.2:53", "100.64.0.1:53", "203.0.113.2:53"]"#), "{config}");
    assert!(config.contains(r#"public = ["203.0.113.2:53"]"#), "{config}");
    assert!(config.contains(r#"internal = ["192.168.128.0/17", "100.64.0.1/32", "100.64.0.2/32"]"#), "{config}");
    assert!(
        config.contains("network = \"local:b\"") && config.contains(r#"clients = ["100.64.0.3/32", "100.64.0.4/32"]"#),
        "{config}"
    );
    assert!(config.contains("network = \"local:c\"") && config.contains(r#"clients = ["100.64.0.5/32"]"#), "{config}");
    // lct-dns takes it as it is: every view loaded and checked, as at start.
    let loaded = lct_dns::config::Config::load(&dir.join("dns.toml")).unwrap();
    loaded.load_served(Some(&[])).unwrap();
    // Region b's view: its own node by its private address, region a's by its mesh address.
    let b_view = std::fs::read_to_string(dir.join("zones-local-b.jsonl")).unwrap();
    let answers = |view: &str, name: &str| -> Vec<String> {
        view.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["name"].as_str() == Some(name) && r["type"] == "A" && r["view"] != "external")
            .map(|r| r["data"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(answers(&b_view, "b-1.rb.lct.internal."), ["192.168.128.2"], "{b_view}");
    assert_eq!(answers(&b_view, "dns-1.dns.lct.internal."), ["100.64.0.1"], "{b_view}");
    assert_eq!(
        answers(&b_view, "ns1.lct.internal."),
        ["100.64.0.1"],
        "region b reaches the server by its mesh address"
    );

    // Nothing changed: nothing reloaded, also in another second (`lct-dns zone`'s serial is
    // the time: a view rendered again keeps its last serial when its records are the same).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = render_regions(&env, &dir, &mesh(&all), &input).ok();
    assert!(again.stdout.contains("unchanged"), "{}", again.stdout);
    // b-2 removed (node-removed): b's view and clients lose it; a reload, not a restart.
    input = input.lines().filter(|l| !l.contains("\"b-2\"")).map(|l| format!("{l}\n")).collect();
    let left: Vec<_> = all.iter().copied().filter(|(n, _)| *n != "b-2").collect();
    let second = render_regions(&env, &dir, &mesh(&left), &input).ok();
    assert!(second.stdout.contains("2 region views: reloaded"), "{}", second.stdout);
    let config = std::fs::read_to_string(dir.join("dns.toml")).unwrap();
    assert!(config.contains(r#"clients = ["100.64.0.3/32"]"#) && !config.contains("100.64.0.4"), "{config}");
    assert!(
        answers(&std::fs::read_to_string(dir.join("zones-local-b.jsonl")).unwrap(), "b-2.rb.lct.internal.").is_empty()
    );
    // Region c leaves the mesh: its view goes.
    let left: Vec<_> = left.into_iter().filter(|(n, _)| *n != "c-1").collect();
    render_regions(&env, &dir, &mesh(&left), &input).ok();
    let config = std::fs::read_to_string(dir.join("dns.toml")).unwrap();
    assert!(!config.contains("local:c"), "{config}");

    // Bad input: a signed zone cannot have region views (lct-dns would answer them unsigned):
    // refused, naming why, and the configuration is left as it was.
    std::fs::write(dir.join("dns-private.json"), primary_settings(&dir, "on")).unwrap();
    let signed = render_regions(&env, &dir, &mesh(&left), &input);
    assert_ne!(signed.status, 0);
    assert!(signed.stderr.contains("dnssec"), "{}", signed.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("dns.toml")).unwrap(), config);
    // The server's node named in another region than the inventory says: refused.
    std::fs::write(dir.join("dns-private.json"), primary_settings(&dir, "off")).unwrap();
    let elsewhere: Vec<String> =
        std::iter::once("--region=local:b".to_string()).chain(mesh(&left).into_iter().skip(1)).collect();
    let wrong = render_regions(&env, &dir, &elsewhere, &input);
    assert_ne!(wrong.status, 0);
    assert!(wrong.stderr.contains("dns-1 is not a node of local:b"), "{}", wrong.stderr);
    // Not a mesh member (yet): no region views, nothing changed.
    let outside = render_regions(&env, &dir, &mesh(&[("b-1", "100.64.0.3")]), &input).ok();
    assert!(outside.stdout.contains("not a mesh member yet"), "{}", outside.stdout);
    assert_eq!(std::fs::read_to_string(dir.join("dns.toml")).unwrap(), config);
}

#[test]
fn mesh_addresses_on_the_command_line_are_checked() {
    let env = Env::new();
    let zone = |extra: &[&str]| {
        let mut args = vec!["zone", "--domain", "lct.internal"];
        args.extend_from_slice(extra);
        env.run_with_input("lct-dns", &args, "")
    };
    for (extra, says) in [
        (&["--region=local:a", "--mesh-address=-a=100.64.0.1"][..], "\"-a\""),
        (&["--region=local:a", "--mesh-address=a/b=100.64.0.1"][..], "\"a/b\""),
        (&["--region=local:a", "--mesh-address=a-1=fd00::1"][..], "\"fd00::1\" is not an IPv4 address"),
        (&["--region=local:a", "--mesh-address=a-1"][..], "expected NODE=IPV4"),
        (&["--mesh-address=a-1=100.64.0.1"][..], "--region"),
    ] {
        let run = zone(extra);
        assert_eq!(run.status, 2, "{extra:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{extra:?}: {}", run.stderr);
    }
    // Given, they stand for the store's mesh: a member of another region by its mesh address.
    let input = node_line("rb", "b-1", "b", "192.168.128.2", "203.0.113.12");
    let run = env
        .run_with_input(
            "lct-dns",
            &["zone", "--domain", "lct.internal", "--region=local:a", "--mesh-address=b-1=100.64.0.3"],
            &input,
        )
        .ok();
    assert!(run.stdout.contains("\"100.64.0.3\"") && !run.stdout.contains("192.168.128.2"), "{}", run.stdout);
}

/// `lct-dns zone` of lct.internal as region `network` sees it, at `serial`, no reverse zones:
/// `mesh` the members' mesh addresses.
fn region_zone(env: &Env, network: &str, serial: &str, mesh: &[(&str, &str)], nodes: &str) -> String {
    let mut args = vec!["zone".to_string(), "--domain=lct.internal".into(), "--no-reverse".into()];
    args.extend([format!("--serial={serial}"), format!("--region={network}")]);
    args.extend(mesh.iter().map(|(n, a)| format!("--mesh-address={n}={a}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.run_with_input("lct-dns", &args, nodes).ok().stdout
}

#[test]
fn a_regions_secondary_transfers_that_regions_view_with_its_own_key() {
    use lct_tests::fixtures::dns::{addresses, dig, keygen, lct_dns, lct_dns_config, secret};
    lct_tests::fixtures::dns::require(&["dig"]);
    let env = Env::new();
    let dir = env.state.path().to_path_buf();
    keygen(&env, &dir, &["xfr-b", "xfr-a"]);
    // dns-1 (region a) and b-1 (region b) hold one private address; b-2 comes later.
    let mesh = [("dns-1", "100.64.0.1"), ("b-1", "100.64.0.3"), ("b-2", "100.64.0.4")];
    let nodes = node_line("dns", "dns-1", "a", "192.168.128.2", "203.0.113.2")
        + &node_line("rb", "b-1", "b", "192.168.128.2", "203.0.113.12");
    std::fs::write(dir.join("zones.jsonl"), region_zone(&env, "local:a", "1", &mesh, &nodes)).unwrap();
    std::fs::write(dir.join("zones-local-b.jsonl"), region_zone(&env, "local:b", "1", &mesh, &nodes)).unwrap();
    let (port, secondary_port) = (lct_tests::free_port(), lct_tests::free_port());
    // The primary: region b's askers are 127.0.0.1 here (a region's secondary asks the SOA
    // from its mesh address, which is one of its region's clients), its own region 127.0.0.2.
    let d = dir.display();
    let primary = format!(
        "internal = [\"127.0.0.2/32\"]\n\n[[secondary]]\nkey = \"xfr-a.key\"\nview = \"internal\"\n\n\
         [[secondary]]\nkey = \"xfr-b.key\"\nview = \"internal\"\nregion = \"local:b\"\n\
         notify = [\"127.0.0.1:{secondary_port}\"]\n\n\
         [[region]]\nnetwork = \"local:b\"\nrecords = \"{d}/zones-local-b.jsonl\"\nclients = [\"127.0.0.1/32\"]\n"
    );
    let config = lct_dns_config(&dir, "primary", Some("zones.jsonl"), port, &primary);
    let primary_server = lct_dns(&dir, "primary.toml", "primary.log");
    lct_tests::fixtures::until("the primary answers", Duration::from_secs(20), || {
        !addresses(port, "b-1.rb.lct.internal").is_empty()
    });

    // Region b's key transfers region b's view: its own b-1 private, region a's dns-1 by its
    // mesh address; the primary's own region's key, region a's view (b-1 by mesh address).
    let axfr = |key: &str| {
        let tsig = format!("hmac-sha256:{key}:{}", secret(&dir.join(format!("{key}.key"))));
        dig(port, &["-y", &tsig, "lct.internal", "AXFR"])
    };
    let b_view = axfr("xfr-b");
    assert!(b_view.contains("b-1.rb.lct.internal.\t") && b_view.contains("192.168.128.2"), "{b_view}");
    assert!(b_view.contains("100.64.0.1") && !b_view.contains("100.64.0.3"), "region b's view: {b_view}");
    let a_view = axfr("xfr-a");
    assert!(a_view.contains("100.64.0.3") && !a_view.contains("100.64.0.1"), "region a's view: {a_view}");
    // Region b's key asking with the zone's name in another case, with its trailing dot, or
    // by IXFR from serial 0: region b's view every time, never the primary's own.
    let tsig_b = format!("hmac-sha256:xfr-b:{}", secret(&dir.join("xfr-b.key")));
    for (name, kind) in [("LCT.Internal.", "AXFR"), ("lct.INTERNAL", "IXFR=0"), ("lct.internal.", "IXFR=1")] {
        let view = dig(port, &["-y", &tsig_b, "+tcp", name, kind]);
        assert!(view.contains("100.64.0.1") && !view.contains("100.64.0.3"), "{name} {kind}: {view}");
    }

    // An lct-dns secondary with region b's key serves region b's view.
    let follow = format!(
        "internal = [\"127.0.0.0/8\"]\n\n{}",
        lct_tests::fixtures::dns::primary_section("lct.internal", port, "xfr-b.key")
    );
    lct_dns_config(&dir, "secondary", None, secondary_port, &follow);
    let _secondary = lct_dns(&dir, "secondary.toml", "secondary.log");
    let b1 = ["192.168.128.2"];
    lct_tests::fixtures::dns::until_answers(secondary_port, "b-1.rb.lct.internal", &b1, Duration::from_secs(20));
    assert_eq!(addresses(secondary_port, "dns-1.dns.lct.internal"), ["100.64.0.1"]);

    // b-2 joins: region b's view rendered again, the primary reloaded (SIGHUP); the NOTIFY
    // that follows brings it to the secondary at once (its SOA refresh is an hour).
    let nodes = nodes + &node_line("rb", "b-2", "b", "192.168.128.4", "203.0.113.14");
    std::fs::write(dir.join("zones-local-b.jsonl"), region_zone(&env, "local:b", "2", &mesh, &nodes)).unwrap();
    Command::new("kill").args(["-HUP", &primary_server.0.id().to_string()]).status().unwrap();
    let b2 = vec!["192.168.128.4".to_string()];
    let seen = lct_tests::fixtures::settle(
        Duration::from_secs(10),
        || addresses(secondary_port, "b-2.rb.lct.internal"),
        |seen| *seen == b2,
    );
    let log = std::fs::read_to_string(dir.join("primary.log")).unwrap();
    let secondary_log = std::fs::read_to_string(dir.join("secondary.log")).unwrap();
    assert_eq!(seen, b2, "the secondary after the primary's reload:\n{log}\n{secondary_log}");
    assert!(log.contains("region local:b's view notified"), "{log}");

    // Bad input: a region's secondary of a region not served, or of the external view, is
    // refused at start naming the field.
    for (from, to, says) in [
        ("region = \"local:b\"", "region = \"local:x\"", "secondary[1].region: local:x is not one of the [[region]]"),
        ("view = \"internal\"\nregion", "view = \"external\"\nregion", "secondary[1].view: a region's secondary"),
    ] {
        let text = std::fs::read_to_string(&config).unwrap().replacen(from, to, 1);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let e = lct_dns::config::Config::load(&bad).expect_err("refused").to_string();
        assert!(e.contains(says), "{e}");
    }
}

/// A primary's configuration directory with dns-private's settings, its keys and its own
/// zones, for three regions: dns-1 (the primary, a), dns-2 and dns-3 (b) are the plan's
/// servers; region c has an app node only. The `regions` arguments and inventory returned.
fn region_secondaries_setup(env: &Env) -> (std::path::PathBuf, Vec<String>, String) {
    let dir = env.state.path().join("etc");
    std::fs::create_dir_all(&dir).unwrap();
    let mut settings: serde_json::Value = serde_json::from_str(&primary_settings(&dir, "off")).unwrap();
    settings["cluster"] = "dns".into();
    std::fs::write(dir.join("dns-private.json"), settings.to_string()).unwrap();
    for key in ["lct-update", "lct-transfer"] {
        env.run("lct-dns", &["keygen", key, "--out", dir.join(format!("{key}.key")).to_str().unwrap()]).ok();
    }
    let ns = |name: &str, region: &str, private: &str| {
        node_line("dns", name, region, private, "203.0.113.9").replace("\"group\":\"g\"", "\"group\":\"ns\"")
    };
    let input = ns("dns-1", "a", "192.168.128.2")
        + &ns("dns-2", "b", "192.168.128.2")
        + &ns("dns-3", "b", "192.168.128.3")
        + &node_line("rc", "c-1", "c", "192.168.128.2", "203.0.113.22");
    let args: Vec<String> = [
        "--region=local:a",
        "--mesh-address=dns-1=100.64.0.1",
        "--mesh-address=dns-2=100.64.0.2",
        "--mesh-address=dns-3=100.64.0.3",
        "--mesh-address=c-1=100.64.0.4",
    ]
    .map(String::from)
    .into();
    let mut own = vec!["zone", "--domain", "lct.internal", "--parent-domain", "lct.internal"];
    own.extend(args.iter().map(String::as_str));
    std::fs::write(dir.join("zones.jsonl"), env.run_with_input("lct-dns", &own, &input).ok().stdout).unwrap();
    (dir, args, input)
}

#[test]
fn the_plan_gives_each_region_with_a_secondary_a_key_of_its_own() {
    use lct_tests::fixtures::dns::secret;
    let env = Env::new();
    let (dir, args, input) = region_secondaries_setup(&env);
    render_regions(&env, &dir, &args, &input).ok();
    let config = std::fs::read_to_string(dir.join("dns.toml")).unwrap();
    // One [[secondary]] for region b (both its servers), none for c (no server there).
    let expected = "[[secondary]]\nkey = \"lct-transfer-local-b.key\"\nview = \"internal\"\nregion = \"local:b\"\n\
                    notify = [\"100.64.0.2:53\", \"100.64.0.3:53\"]\nallow = [\"100.64.0.2/32\", \"100.64.0.3/32\"]\n";
    assert!(config.contains(expected), "{config}");
    assert_eq!(config.matches("region = ").count(), 1, "{config}");
    // Its key: 0600, a secret of its own (not the transfer key's), the same on every render.
    let key = dir.join("lct-transfer-local-b.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let region_secret = secret(&key);
    assert_ne!(region_secret, secret(&dir.join("lct-transfer.key")));
    assert!(!dir.join("lct-transfer-local-c.key").exists());
    // lct-dns takes it (the region's key read from beside the configuration, as from the
    // unit's credentials).
    let loaded = lct_dns::config::Config::load(&dir.join("dns.toml")).unwrap();
    loaded.load_served(Some(&[])).unwrap();
    render_regions(&env, &dir, &args, &input).ok();
    assert_eq!(secret(&key), region_secret, "rendered again: the same key");
}

/// A region's key left readable by others (an operator's copy, an older writer) is narrowed
/// to 0600 on the next render although its text is the same; a file planted at the temporary
/// path (world-readable, or a link elsewhere) is never written through.
#[test]
fn a_region_key_is_0600_whatever_was_there_before() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let (dir, args, input) = region_secondaries_setup(&env);
    render_regions(&env, &dir, &args, &input).ok();
    let key = dir.join("lct-transfer-local-b.key");
    let mode = |path: &std::path::Path| std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777;
    let text = std::fs::read_to_string(&key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    render_regions(&env, &dir, &args, &input).ok();
    assert_eq!(mode(&key), 0o600, "an unchanged key readable by others stays so");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
    // Gone, and a link at its temporary path to a file others read: the key is written to a
    // new file of its own (0600), the link's target untouched.
    std::fs::remove_file(&key).unwrap();
    let decoy = dir.join("decoy");
    std::fs::write(&decoy, "").unwrap();
    std::fs::set_permissions(&decoy, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&decoy, dir.join("lct-transfer-local-b.key.lct-tmp")).unwrap();
    render_regions(&env, &dir, &args, &input).ok();
    assert_eq!((mode(&key), std::fs::read_to_string(&key).unwrap()), (0o600, text));
    assert_eq!(std::fs::read_to_string(&decoy).unwrap(), "", "written through a link");
    // A world-readable file left there by a crash: the same.
    std::fs::remove_file(&key).unwrap();
    let tmp = dir.join("lct-transfer-local-b.key.lct-tmp");
    std::fs::write(&tmp, "").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
    render_regions(&env, &dir, &args, &input).ok();
    assert_eq!(mode(&key), 0o600);
}
