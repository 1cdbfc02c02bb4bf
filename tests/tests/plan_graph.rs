//! `lct-plan graph`: plans and clusters as DOT that Graphviz reads, with the nodes and edges a
//! packaged plan has, text that cannot break out of its label, and SVG through `dot` (a
//! clear error without it). No root needed; Graphviz (scripts/setup installs it) is.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use lct_tests::{Env, Run, run_command};
use serde_json::Value;

/// What Graphviz made of a DOT text: every object's name and label, every edge as
/// (tail label, head label, edge label).
struct Drawn {
    objects: Vec<(String, String)>,
    edges: BTreeSet<(String, String, String)>,
}

fn graphviz(dot: &str) -> Drawn {
    let mut command = Command::new("dot");
    command.arg("-Tjson");
    let run = run_command(command, dot);
    assert_eq!(run.status, 0, "dot refused the graph: {}\n{dot}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).expect("dot -Tjson");
    let objects: Vec<(String, String)> = doc["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| (o["name"].as_str().unwrap().to_string(), o["label"].as_str().unwrap_or_default().to_string()))
        .collect();
    let label = |id: &Value| objects[id.as_u64().unwrap() as usize].1.clone();
    let edges = doc["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .map(|e| (label(&e["tail"]), label(&e["head"]), e["label"].as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Drawn { objects, edges }
}

fn edge(tail: &str, head: &str, label: &str) -> (String, String, String) {
    (tail.to_string(), head.to_string(), label.to_string())
}

#[test]
fn packaged_plans_draw_their_groups_services_flows_and_dependency() {
    let env = Env::new();
    let dot =
        env.run("lct-plan", &["graph", "--plan", "zk=package:zookeeper", "--plan", "pg=package:postgres-ha"]).ok();
    let drawn = graphviz(&dot.stdout);
    let labels: BTreeSet<&str> = drawn.objects.iter().map(|(_, l)| l.as_str()).collect();
    for expected in [
        "cluster zk\\npackage:zookeeper",
        "cluster pg\\npackage:postgres-ha",
        "server × 3\\ndebian-12 g6-standard-1",
        "db × 2\\ndebian-12 g6-standard-2",
        "client\\n2181/tcp\\n(open to dependents)",
        "quorum\\n2888/tcp 3888/tcp",
        "postgres\\n5432/tcp\\n(open to dependents)",
        "patroni\\n8008/tcp",
        "offers connect",
        "offers primary",
        "203.0.113.254/32",
    ] {
        assert!(labels.contains(expected), "no {expected:?} in {labels:?}");
    }
    assert_eq!(drawn.objects.len(), 11, "two clusters, their eight nodes and the admin network: {labels:?}");
    let server = "server × 3\\ndebian-12 g6-standard-1";
    let db = "db × 2\\ndebian-12 g6-standard-2";
    for expected in [
        // pg depends on zk's client service and reads its offered `connect`.
        edge(db, "client\\n2181/tcp\\n(open to dependents)", "zookeeper: server.client"),
        edge("offers connect", db, "uses connect"),
        // The firewall's flows: each cluster's own, and SSH from the admin network.
        edge(server, "quorum\\n2888/tcp 3888/tcp", ""),
        edge(server, "client\\n2181/tcp\\n(open to dependents)", ""),
        edge(db, "patroni\\n8008/tcp", ""),
        edge("203.0.113.254/32", server, "ssh"),
        edge("203.0.113.254/32", db, "ssh"),
    ] {
        assert!(drawn.edges.contains(&expected), "no edge {expected:?} in {:#?}", drawn.edges);
    }
    // Nothing reaches zk's quorum from pg.
    assert!(!drawn.edges.iter().any(|(t, h, _)| t == db && h.starts_with("quorum")), "{:#?}", drawn.edges);
}

#[test]
fn clusters_made_here_are_drawn_with_their_scaled_sizes() {
    let env = Env::new();
    // A cluster as lct-plan keeps it: its state and its plan's copy.
    let dir = env.state.path().join("plans/zk");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plan.yaml"), include_str!("../../crates/lct-plan/plans/zookeeper/plan.yaml")).unwrap();
    let state = r#"{"name":"zk","source":"package:zookeeper","provider":"local","parameters":{"servers":3},"counts":{"server":5}}"#;
    std::fs::write(dir.join("cluster.json"), state).unwrap();
    for args in [&["graph"][..], &["graph", "zk"]] {
        let drawn = graphviz(&env.run("lct-plan", args).ok().stdout);
        let labels: Vec<&str> = drawn.objects.iter().map(|(_, l)| l.as_str()).collect();
        assert!(labels.contains(&"server × 5\\ndebian-12 g6-standard-1"), "{args:?}: {labels:?}");
    }
    let missing = env.run("lct-plan", &["graph", "pg"]);
    assert_eq!(missing.status, 1);
    assert!(missing.stderr.contains("cluster pg was not made by lct-plan here"), "{}", missing.stderr);
}

/// A plan whose free texts and parameter values try to end a DOT string, add an edge or a
/// node, with a twin whose same fields hold plain words.
fn plan_with(text: &str) -> String {
    let yaml_text = serde_json::to_string(text).unwrap(); // a JSON string is a YAML string
    format!(
        r#"description: {yaml_text}
parameters:
  other:
    type: string
    default: {yaml_text}
    description: the cluster it uses
groups:
  web:
    count: 2
    type: {yaml_text}
    services:
      http:
        ports: [80/tcp]
        description: {yaml_text}
firewall:
  allow:
    - {{from: self, to: web.http}}
depends_on:
  backend:
    cluster: "{{{{ other }}}}"
    services: [api.http]
"#
    )
}

#[test]
fn hostile_text_stays_inside_its_label() {
    let env = Env::new();
    let hostile = "x\" -> \"evil\" [label=\"pwned\"]; evil2 [shape=box]; }\n digraph y { \\\"";
    let drawn: Vec<Drawn> = [hostile, "plain words"]
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let path = env.state.path().join(format!("p{i}.yaml"));
            std::fs::write(&path, plan_with(text)).unwrap();
            let dot = env.run("lct-plan", &["graph", "--plan", &format!("web={}", path.display())]).ok();
            graphviz(&dot.stdout)
        })
        .collect();
    let (evil, plain) = (&drawn[0], &drawn[1]);
    // The same picture: no node or edge more.
    assert_eq!(evil.objects.len(), plain.objects.len(), "{:?}\n{:?}", evil.objects, plain.objects);
    assert_eq!(evil.edges.len(), plain.edges.len(), "{:#?}\n{:#?}", evil.edges, plain.edges);
    let names: Vec<&str> = evil.objects.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!names.iter().any(|n| n.contains("evil")), "{names:?}");
    // The text is shown as written (a line break as DOT's \n, a backslash as \\).
    let node_type = evil.objects.iter().find(|(_, l)| l.starts_with("web × 2")).expect("the group").1.clone();
    assert_eq!(
        node_type,
        "web × 2\\ndebian-12 x\" -> \"evil\" [label=\"pwned\"]; evil2 [shape=box]; }\\n digraph y { \\\\\""
    );
    assert!(
        evil.objects.iter().any(|(_, l)| l.starts_with("cluster x\" -> \"evil\"")),
        "the dependency's cluster name (a parameter's value) is one label: {:?}",
        evil.objects
    );
}

#[test]
fn svg_through_graphviz_and_a_clear_error_without_it() {
    let env = Env::new();
    let svg = env.run("lct-plan", &["graph", "--plan", "package:zookeeper", "--format", "svg"]).ok();
    assert!(svg.stdout.contains("<svg") && svg.stdout.contains("cluster zookeeper"), "{}", svg.stdout);
    // Without `dot` on the PATH: said, with the way out.
    let empty = env.state.path().join("no-tools");
    std::fs::create_dir(&empty).unwrap();
    let mut command = env.command("lct-plan", &["graph", "--plan", "package:zookeeper", "--format", "svg"]);
    command.env("PATH", &empty).stdin(Stdio::null());
    let run = Run::from(command.output().unwrap());
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("Graphviz's `dot` is not installed"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}
