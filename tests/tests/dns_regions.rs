//! lct-dns answers by the asker's region: three regions of the local cloud whose private
//! ranges overlap, joined by lct-mesh (wireguard-go in namespace nodes); one server in region
//! a answers every region with the address that works from there (each answer is pinged from
//! where it was asked), and its public side with the external view only, whatever source an
//! asker forges. Needs root.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use lct_tests::{Background, Env};

/// Takes the mesh down however the test ends (wireguard-go would outlive the lab otherwise).
struct Down<'a>(&'a Env, String);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.run_with_input("lct-mesh", &["down"], &self.1);
    }
}

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
    let down = Down(&env, input.clone());
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

    // The zones as each region sees them (`zone --region`: other regions' members by their
    // mesh addresses), and a server on a-2 that answers each region from its own.
    let dir = env.state.path().join("dns");
    std::fs::create_dir_all(&dir).unwrap();
    for region in ["a", "b", "c"] {
        let network = format!("local:{region}");
        let zones =
            env.run_with_input("lct-dns", &["zone", "--domain", "lct.internal", "--region", &network], &input).ok();
        std::fs::write(dir.join(format!("zones-{region}.jsonl")), zones.stdout).unwrap();
    }
    let clients = |nodes: &[&str]| nodes.iter().map(|n| format!("\"{}/32\"", mesh[*n])).collect::<Vec<_>>().join(", ");
    let (a2_private, a2_mesh, a2_public) = (private("a-2"), mesh["a-2"].clone(), public("a-2"));
    let config = format!(
        "records = {records:?}\n\
         listen = [\"{a2_private}:53\", \"{a2_mesh}:53\", \"{a2_public}:53\"]\n\
         # Region a: its private network, and its members' mesh addresses.\n\
         internal = [\"192.168.128.0/17\", {a_clients}]\n\
         public = [\"{a2_public}:53\"]\n\
         state = {state:?}\n\
         udp_sockets = 1\n\
         [rate_limit]\nresponses_per_second = 0\n\
         [[region]]\nnetwork = \"local:b\"\nrecords = {b:?}\nclients = [{b_clients}]\n\
         [[region]]\nnetwork = \"local:c\"\nrecords = {c:?}\nclients = [{c_clients}]\n",
        records = dir.join("zones-a.jsonl"),
        a_clients = clients(&["a-1", "a-2"]),
        state = dir.join("state"),
        b = dir.join("zones-b.jsonl"),
        b_clients = clients(&["b-1", "b-2"]),
        c = dir.join("zones-c.jsonl"),
        c_clients = clients(&["c-1", "c-2"]),
    );
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
