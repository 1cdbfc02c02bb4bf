//! lct-plan on the command line: packaged plans, validation errors that name the place.

use lct_tests::Env;

#[test]
fn list_show_validate_and_errors_that_name_the_place() {
    let env = Env::new();
    let list = env.run("lct-plan", &["list"]).ok();
    assert!(
        list.stdout.contains("package:zookeeper") && list.stdout.contains("package:postgres-ha"),
        "{}",
        list.stdout
    );
    // hdfs-ha says plainly what it downloads, and the pin it checks.
    let show = env.run("lct-plan", &["show", "package:hdfs-ha"]).ok();
    assert!(
        show.stdout.contains("Downloads (checked by SHA-256 before use):")
            && show.stdout.contains(
                "https://archive.apache.org/dist/hadoop/common/hadoop-3.4.0/hadoop-3.4.0.tar.gz sha256:e311a784"
            ),
        "{}",
        show.stdout
    );
    let show = env.run("lct-plan", &["show", "package:postgres-ha"]).ok();
    assert!(show.stdout.contains("Downloads: nothing outside Debian's archive."), "{}", show.stdout);
    assert!(show.stdout.contains("superuser_password   string   <secret>"), "{}", show.stdout);
    env.run("lct-plan", &["validate", "package:zookeeper", "--set", "servers=5"]).ok();
    let out = env.run("lct-plan", &["validate", "package:zookeeper", "--set", "servers=five"]);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("--set servers=five: not a whole number"), "{}", out.stderr);

    let file = env.state.path().join("plan.yaml");
    std::fs::write(&file, "description: x\ngroups:\n  server:\n    count: 1\n    colour: blue\n").unwrap();
    let out = env.run("lct-plan", &["validate", file.to_str().unwrap()]);
    assert_eq!(out.status, 1);
    assert!(
        out.stderr.contains(&format!(
            "{}: line 5, column 5: field groups.server.colour: unknown field `colour`",
            file.display()
        )),
        "{}",
        out.stderr
    );
    // A hook's script must be in the plan's directory.
    std::fs::write(
        &file,
        "description: x\ngroups:\n  server: {count: 1}\nhooks:\n  created:\n    - {script: install.sh, on: [server]}\n",
    )
    .unwrap();
    let out = env.run("lct-plan", &["validate", file.to_str().unwrap()]);
    assert!(
        out.stderr.contains("hooks.created[0]: ") && out.stderr.contains("install.sh: no such file"),
        "{}",
        out.stderr
    );
    std::fs::write(env.state.path().join("install.sh"), "#!/bin/sh\n").unwrap();
    env.run("lct-plan", &["validate", file.to_str().unwrap()]).ok();
    let out = env.run("lct-plan", &["validate", "package:nothing"]);
    assert!(
        out.stderr.contains(
            "no packaged plan \"nothing\"; there are: zookeeper, dns-private, hdfs-ha, rabbitmq, postgres-ha, redis-sentinel, etcd, mariadb-galera, glusterfs"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn plans_by_url_are_https_only_unless_allowed_and_checked_against_their_pin() {
    let env = Env::new();
    let dir = env.state.path().join("served");
    std::fs::create_dir_all(&dir).unwrap();
    let text = "description: served\ngroups:\n  node: {count: 1}\n";
    std::fs::write(dir.join("p.yaml"), text).unwrap();
    let port = lct_tests::free_port();
    let mut server = std::process::Command::new("python3");
    server.args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()]).current_dir(&dir);
    let _server = lct_tests::Background::spawn(server);
    let url = format!("http://127.0.0.1:{port}/p.yaml");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = env.run("lct-plan", &["validate", &url]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("plans by URL over HTTPS only (--allow-http"), "{}", out.stderr);
    env.run("lct-plan", &["validate", "--allow-http", &url]).ok();
    let sha = {
        let out = std::process::Command::new("sha256sum").arg(dir.join("p.yaml")).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
    };
    env.run("lct-plan", &["validate", "--allow-http", &format!("{url}#sha256={sha}")]).ok();
    let wrong = "0".repeat(64);
    let out = env.run("lct-plan", &["validate", "--allow-http", &format!("{url}#sha256={wrong}")]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains(&format!("its SHA-256 is {sha}, not the pinned {wrong}")), "{}", out.stderr);
    let out = env.run("lct-plan", &["validate", "--allow-http", &format!("{url}#md5=abc")]);
    assert!(out.stderr.contains("the only fragment a plan URL takes is #sha256=HEX"), "{}", out.stderr);
}

#[test]
fn a_create_refused_for_bad_input_writes_nothing() {
    let env = Env::new();
    let file = env.state.path().join("cli.yaml");
    std::fs::write(
        &file,
        "description: x\ngroups:\n  node: {count: 1}\ndepends_on:\n  web: {cluster: nowhere, services: [server.web]}\n",
    )
    .unwrap();
    let out = env.run("lct-plan", &["create", "cli", file.to_str().unwrap()]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("cluster nowhere has no plan here; create it first"), "{}", out.stderr);
    let bad_set = env.run("lct-plan", &["create", "zk", "package:zookeeper", "--set", "servers=0"]);
    assert_ne!(bad_set.status, 0);
    assert!(bad_set.stderr.contains("--set servers: 0 is outside 1..9"), "{}", bad_set.stderr);
    // Nothing of either: no plan state, no cluster record.
    assert!(!env.state.path().join("plans").join("cli").exists());
    assert!(!env.state.path().join("plans").join("zk").exists());
    assert!(env.run("lct-inventory", &["clusters", "list", "-o", "jsonl"]).ok().stdout.trim().is_empty());
}

#[test]
fn the_reconcile_units_verify() {
    let env = Env::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/systemd/");
    let service = std::fs::read_to_string(format!("{dir}lct-plan-reconcile.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/local/bin/lct-plan reconcile") && service.contains("Type=oneshot"));
    // systemd-analyze checks that ExecStart exists: point it at the binary just built.
    let local = service.replace("/usr/local/bin/lct-plan", lct_tests::bin("lct-plan").to_str().unwrap());
    std::fs::write(env.state.path().join("lct-plan-reconcile.service"), local).unwrap();
    std::fs::copy(format!("{dir}lct-plan-reconcile.timer"), env.state.path().join("lct-plan-reconcile.timer")).unwrap();
    // The watching one (docs/state.md): a long-running service stopped by SIGTERM.
    let watch = std::fs::read_to_string(format!("{dir}lct-plan-reconcile-watch.service")).unwrap();
    assert!(watch.contains("ExecStart=/usr/local/bin/lct-plan reconcile --watch") && watch.contains("Type=simple"));
    let local = watch.replace("/usr/local/bin/lct-plan", lct_tests::bin("lct-plan").to_str().unwrap());
    std::fs::write(env.state.path().join("lct-plan-reconcile-watch.service"), local).unwrap();
    for unit in ["lct-plan-reconcile.service", "lct-plan-reconcile.timer", "lct-plan-reconcile-watch.service"] {
        let path = env.state.path().join(unit);
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no", path.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("lct-plan-reconcile")).collect();
        assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify {unit}:\n{stderr}");
    }
}

#[test]
fn operations_on_unknown_clusters_and_bad_arguments_are_refused_clearly() {
    let env = Env::new();
    for args in
        [&["scale", "nope", "server", "3"][..], &["status", "nope"], &["fire", "nope", "created"], &["stop", "nope"]]
    {
        let out = env.run("lct-plan", args);
        assert_eq!(out.status, 1, "{args:?}");
        assert!(out.stderr.contains("cluster nope was not made by lct-plan here"), "{args:?}: {}", out.stderr);
    }
    let out = env.run("lct-plan", &["fire", "nope", "exploded"]);
    assert_eq!(out.status, 2);
    assert!(out.stderr.contains("no event \"exploded\""), "{}", out.stderr);
    // Nothing ran yet: reconcile of no clusters is a quiet success.
    assert_eq!(env.run("lct-plan", &["reconcile"]).ok().stdout, "");
    // A plan by URL carries its scripts inline, so its pin covers them.
    let file = env.state.path().join("p.yaml");
    std::fs::write(&file, "description: x\ngroups:\n  node: {count: 1}\nhooks:\n  created:\n    - {run: \"echo hi\", on: [node]}\n    - {playbook: site.yml, on: [node]}\n").unwrap();
    let out = env.run("lct-plan", &["validate", file.to_str().unwrap()]);
    assert!(out.stderr.contains("hooks.created[1]: a playbook runs on the controller"), "{}", out.stderr);
}

/// A client of ZooKeeper that names the plan its dependency is made from, asking for
/// `services`.
fn zookeeper_client(services: &str) -> String {
    format!(
        "description: a ZooKeeper client\ngroups:\n  node: {{count: 1}}\ndepends_on:\n  zookeeper:\n    cluster: zk\n    plan: package:zookeeper\n    services: [{services}]\n    uses: [connect]\n"
    )
}

#[test]
fn a_dependent_plan_asking_for_what_its_dependency_does_not_open_is_refused_at_validate() {
    let env = Env::new();
    let file = env.state.path().join("client.yaml");
    let validate = |services: &str| {
        std::fs::write(&file, zookeeper_client(services)).unwrap();
        env.run("lct-plan", &["validate", file.to_str().unwrap()])
    };
    // ZooKeeper's quorum and election ports are its servers' own.
    let out = validate("server.client, server.quorum");
    assert_eq!(out.status, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "{}: line 8, column 31: field depends_on.zookeeper.services[1]: server.quorum (2888/tcp, 3888/tcp) is not \
             opened to dependents by package:zookeeper; it opens to dependents: server.client (2181/tcp)",
            file.display()
        )),
        "{}",
        out.stderr
    );
    // A port the plan does not open at all (ZooKeeper's admin server, 8080).
    let out = validate("server.admin");
    assert_eq!(out.status, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("depends_on.zookeeper.services[0]: package:zookeeper has no service server.admin; it opens to dependents: server.client (2181/tcp)"),
        "{}",
        out.stderr
    );
    // show says what a plan opens to dependents.
    let show = env.run("lct-plan", &["show", "package:zookeeper"]).ok();
    assert!(show.stdout.contains("Opens to its dependents: server.client (2181/tcp)"), "{}", show.stdout);
    // What it offers is taken; the packaged dependents name package:zookeeper too.
    validate("server.client").ok();
    for package in ["package:postgres-ha", "package:hdfs-ha"] {
        env.run("lct-plan", &["validate", package]).ok();
    }
    // A value it does not offer.
    std::fs::write(&file, zookeeper_client("server.client").replace("[connect]", "[password]")).unwrap();
    let out = env.run("lct-plan", &["validate", file.to_str().unwrap()]);
    assert!(
        out.stderr.contains(
            "depends_on.zookeeper.uses[0]: package:zookeeper offers no value \"password\"; it offers: connect"
        ),
        "{}",
        out.stderr
    );
}

/// The hdfs-ha plan's Hadoop configuration (its hook's `settings`, run by Python as on a
/// node): every HDFS port binds the node's private address unless `listen_public`.
#[test]
fn hdfs_ports_bind_the_private_address_unless_the_plan_says_public() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/lct-plan/plans/hdfs-ha/hadoop.py");
    let settings = |public: bool| -> serde_json::Value {
        let program = format!(
            r#"
import importlib.util, json
spec = importlib.util.spec_from_file_location("hadoop", {script:?})
hadoop = importlib.util.module_from_spec(spec); spec.loader.exec_module(hadoop)
nodes = [dict(name=f"h-{{g}}-1", group=g, private_ipv4=[f"192.168.128.{{i + 2}}"], public_ipv4=[f"203.0.113.{{i + 2}}"])
         for i, g in enumerate(["namenode", "journalnode", "datanode"])]
by_group = {{n["group"]: [n] for n in nodes}}
fqdn = {{n["name"]: n["name"] + ".h.lct.internal" for n in nodes}}
out = {{}}
for n in nodes:
    core, hdfs = hadoop.settings("h", nodes, by_group, fqdn, "zk-1:2181", n["name"], {public})
    out[n["name"]] = hdfs
print(json.dumps(out))
"#,
            script = script.display().to_string(),
            public = if public { "True" } else { "False" },
        );
        let out = std::process::Command::new("python3").args(["-c", &program]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let binds = [
        "dfs.namenode.rpc-bind-host",
        "dfs.namenode.servicerpc-bind-host",
        "dfs.namenode.http-bind-host",
        "dfs.journalnode.rpc-address",
        "dfs.journalnode.http-address",
        "dfs.datanode.address",
        "dfs.datanode.http.address",
        "dfs.datanode.ipc.address",
    ];
    let private = settings(false);
    for (i, node) in ["h-namenode-1", "h-journalnode-1", "h-datanode-1"].iter().enumerate() {
        let hdfs = &private[node];
        let own = format!("192.168.128.{}", i + 2);
        for key in binds {
            let value = hdfs[key].as_str().unwrap_or_else(|| panic!("{node}: no {key}"));
            assert!(value == own || value.starts_with(&format!("{own}:")), "{node}: {key} = {value}, not {own}");
        }
        let text = hdfs.to_string();
        assert!(!text.contains("0.0.0.0") && !text.contains("203.0.113."), "{node}: {text}");
    }
    let public = settings(true);
    assert_eq!(public["h-namenode-1"]["dfs.namenode.rpc-bind-host"], "0.0.0.0");
    assert_eq!(public["h-datanode-1"]["dfs.datanode.address"], "0.0.0.0:9866");
}
